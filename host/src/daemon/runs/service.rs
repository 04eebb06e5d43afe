//! A run's base services as processes: starting one, waiting until it is ready and has
//! published its attributes, checking it again, and stopping it so that nothing of it is left.

use crate::model::ProcessDeployable;
use crate::plan::{Readiness, ServiceSpec};
use crate::provisioner::process::os::{self as process, STATE_DIR_VAR};
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How much of a program's output an error or a status shows.
const OUTPUT_TAIL: usize = 2000;
/// How long a terminate program may run.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a service of a run keeps its files, and what its programs get in their environment.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub state_dir: PathBuf,
    pub run: String,
    pub spec: ServiceSpec,
}

impl ServiceContext {
    fn dir(&self) -> PathBuf {
        self.state_dir.join("runs").join(&self.run)
    }

    /// The file the service writes its attributes to, as a JSON object.
    pub fn output_file(&self) -> PathBuf {
        self.dir().join(format!("{}.json", self.spec.name))
    }

    /// The log of the service's start process.
    pub fn log_file(&self) -> PathBuf {
        self.dir().join(format!("{}.log", self.spec.name))
    }

    /// The environment of every program of the service: its own env, its deps, and where
    /// it belongs.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .chain(&self.spec.deps)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend([
            (STATE_DIR_VAR.into(), self.state_dir.display().to_string()),
            ("EPU_RUN".into(), self.run.clone()),
            ("EPU_SERVICE".into(), self.spec.name.clone()),
            (
                process::SERVICE_ID_VAR.into(),
                format!("{}/{}", self.run, self.spec.name),
            ),
            (
                "EPU_SERVICE_OUTPUT".into(),
                self.output_file().display().to_string(),
            ),
        ]);
        env
    }

    /// Starts the service's start program in its own process group.
    pub fn start(&self) -> Result<process::Spawned> {
        std::fs::create_dir_all(self.dir())?;
        let _ = std::fs::remove_file(self.output_file());
        let dep = ProcessDeployable {
            command: self.spec.start.clone(),
            env: BTreeMap::new(),
            cwd: self.spec.cwd.clone(),
            grace_seconds: self.spec.grace_seconds,
            inherit_env: self.spec.inherit_env.clone(),
        };
        process::spawn(&dep, &self.env(), &self.log_file())
    }

    /// The attributes published so far, if the output file holds a JSON object.
    fn published(&self) -> Result<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.output_file())?;
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", self.output_file().display()))?;
        Ok(value
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect())
    }

    /// Waits until the service is ready: its readiness program exits 0 and it has published
    /// every attribute it declares. Fails at once if the start program exits non-zero, or
    /// after the last try. Returns what it published.
    pub async fn await_ready(
        &self,
        child: &mut tokio::process::Child,
    ) -> Result<BTreeMap<String, String>, String> {
        let check = self.spec.ready.clone().unwrap_or_else(|| Readiness {
            command: Vec::new(),
            timeout_seconds: 10.0,
            retries: 60,
            interval_ms: 500,
        });
        let mut last = String::new();
        for attempt in 1..=check.retries {
            if let Ok(Some(status)) = child.try_wait() {
                if !status.success() {
                    return Err(format!(
                        "its start program exited ({status}):\n{}",
                        tail_of_file(&self.log_file())
                    ));
                }
            }
            let ready = if check.command.is_empty() {
                Ok(String::new())
            } else {
                self.run_program(&check.command, &[], check.timeout_seconds)
                    .await
            };
            match (ready, self.published()) {
                (Ok(_), published) => {
                    let attrs = published.unwrap_or_default();
                    let missing: Vec<&str> = self
                        .spec
                        .publishes
                        .iter()
                        .filter(|k| !attrs.contains_key(*k))
                        .map(String::as_str)
                        .collect();
                    if missing.is_empty() {
                        return Ok(attrs);
                    }
                    last = format!(
                        "it has not published {} to {}",
                        missing.join(", "),
                        self.output_file().display()
                    );
                }
                (Err(why), _) => last = why,
            }
            if attempt < check.retries {
                tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
            }
        }
        Err(format!(
            "not ready after {} tries; the last: {last}",
            check.retries
        ))
    }

    /// Runs the readiness program once; Ok with its output when it exits 0.
    pub async fn check_ready(&self) -> Result<String, String> {
        match &self.spec.ready {
            Some(r) => self.run_program(&r.command, &[], r.timeout_seconds).await,
            None => Ok(String::new()),
        }
    }

    /// Stops the service: its terminate program (if any), then SIGTERM to the start
    /// program's group, SIGKILL after the grace, and SIGKILL to any process left with the
    /// service's id. Returns the terminate program's output.
    pub async fn stop(&self, process: Option<(i32, u64)>) -> String {
        let mut out = String::new();
        if let Some(term) = &self.spec.terminate {
            let extra = process
                .map(|(pid, _)| ("EPU_SERVICE_PID".to_string(), pid.to_string()))
                .into_iter()
                .collect::<Vec<_>>();
            out = match self
                .run_program(term, &extra, TERMINATE_TIMEOUT.as_secs_f64())
                .await
            {
                Ok(o) => o,
                Err(e) => format!("the terminate program failed: {e}"),
            };
        }
        if let Some((pid, start)) = process {
            if process::is_alive(pid, start) {
                process::signal_group(pid, Signal::SIGTERM);
                let deadline = Instant::now()
                    + crate::model::secs(self.spec.grace_seconds.min(crate::model::GRACE_RANGE.1));
                while process::is_alive(pid, start) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if process::is_alive(pid, start) {
                    process::signal_group(pid, Signal::SIGKILL);
                }
            }
        }
        self.sweep().await;
        out
    }

    /// Kills every process left with the service's id (its start program's children too).
    pub async fn sweep(&self) {
        let id = format!("{}/{}", self.run, self.spec.name);
        for _ in 0..100 {
            let left: Vec<_> = process::scan_services(&self.state_dir)
                .into_iter()
                .filter(|(_, _, v)| *v == id)
                .collect();
            if left.is_empty() {
                break;
            }
            for (pid, ..) in left {
                process::kill(pid);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one of the service's programs to its end, in its own process group, killed
    /// after `timeout_seconds`. Ok with its output when it exits 0, else why, with the output.
    async fn run_program(
        &self,
        command: &[String],
        extra: &[(String, String)],
        timeout_seconds: f64,
    ) -> Result<String, String> {
        let (program, args) = command.split_first().ok_or("no program")?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(self.env())
            .envs(extra.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.spec.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let pid = child.id().map(|p| p as i32);
        let timeout = crate::model::secs(timeout_seconds);
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = tail(&text);
                if out.status.success() {
                    Ok(text)
                } else {
                    Err(format!("{program} exited ({}): {text}", out.status))
                }
            }
            Ok(Err(e)) => Err(format!("{program}: {e}")),
            Err(_) => {
                if let Some(pid) = pid {
                    process::signal_group(pid, Signal::SIGKILL);
                }
                Err(format!(
                    "{program} did not finish within {timeout_seconds} s"
                ))
            }
        }
    }
}

/// The end of `text`, at most [`OUTPUT_TAIL`] bytes.
fn tail(text: &str) -> String {
    let text = text.trim_end();
    let mut from = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    text[from..].to_string()
}

/// The end of a log file.
pub fn tail_of_file(path: &Path) -> String {
    tail(&std::fs::read_to_string(path).unwrap_or_default())
}
