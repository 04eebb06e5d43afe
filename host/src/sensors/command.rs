//! The command sensor: runs a program and reads the number on the last line it prints.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Runs `command` once (killed after `timeout`) and parses its reading.
pub async fn read(
    command: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<f64, String> {
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("running {program:?}: {e}"))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("{program:?} ran longer than {} ms", timeout.as_millis()))?
        .map_err(|e| format!("running {program:?}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.lines().next().unwrap_or_default();
        return Err(format!("{program:?} failed ({}): {why}", out.status));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// The number on the last non-empty line of `stdout`.
fn parse(stdout: &str) -> Result<f64, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or("the command printed nothing")?;
    match line.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("the command printed '{line}', not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_is_the_reading() {
        assert_eq!(parse("starting\n 42 \n\n"), Ok(42.0));
        assert_eq!(parse("1.5"), Ok(1.5));
        assert!(parse("").unwrap_err().contains("nothing"));
        assert!(parse("12 messages").unwrap_err().contains("not a number"));
        assert!(parse("inf").is_err());
    }

    #[tokio::test]
    async fn failures_say_why() {
        let sh = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
        let t = Duration::from_secs(5);
        assert_eq!(read(&sh("echo 7"), None, t).await, Ok(7.0));
        let err = read(&sh("echo broken >&2; exit 3"), None, t)
            .await
            .unwrap_err();
        assert!(err.contains("broken"), "{err}");
        let err = read(&sh("sleep 5"), None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        let err = read(&["/nonexistent/x".to_string()], None, t)
            .await
            .unwrap_err();
        assert!(err.contains("nonexistent"), "{err}");
    }
}
