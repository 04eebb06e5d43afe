//! The sensors a domain declares, as a plan or `epu domain add --sensor` gives them.

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::PathBuf;

/// One sensor of a domain. Its readings reach the engine under `name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SensorSpec {
    /// The number of ready messages in an AMQP queue, read with a passive queue declare.
    Amqp {
        name: String,
        /// `amqp://user:pass@host:port/vhost` (the vhost URL-encoded: `%2f` is `/`).
        url: String,
        queue: String,
        #[serde(default = "default_interval")]
        interval_ms: u32,
    },
    /// A command run on an interval; the reading is the number on the last line it prints.
    Command {
        name: String,
        /// The program and its arguments.
        command: Vec<String>,
        /// The working directory; the daemon's own when unset.
        #[serde(default)]
        cwd: Option<PathBuf>,
        #[serde(default = "default_interval")]
        interval_ms: u32,
        /// A run that takes longer is killed and counts as a failed reading.
        #[serde(default = "default_timeout")]
        timeout_ms: u32,
    },
    /// Readings sent with `epu sensor push`. Without a push for `stale_after_ms` (when set),
    /// the last reading turns stale.
    Pushed {
        name: String,
        #[serde(default)]
        stale_after_ms: Option<u32>,
    },
}

fn default_interval() -> u32 {
    1000
}

fn default_timeout() -> u32 {
    5000
}

impl SensorSpec {
    pub fn name(&self) -> &str {
        match self {
            Self::Amqp { name, .. } | Self::Command { name, .. } | Self::Pushed { name, .. } => {
                name
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Amqp { .. } => "amqp",
            Self::Command { .. } => "command",
            Self::Pushed { .. } => "pushed",
        }
    }

    /// How old a reading may get, in seconds, before it counts as stale. A polled sensor's
    /// reading is stale once three polls in a row are late.
    pub fn stale_after(&self) -> Option<f64> {
        match self {
            Self::Amqp { interval_ms, .. } => Some(3.0 * f64::from(*interval_ms) / 1000.0),
            Self::Command {
                interval_ms,
                timeout_ms,
                ..
            } => Some(f64::from(3 * interval_ms + timeout_ms) / 1000.0),
            Self::Pushed { stale_after_ms, .. } => stale_after_ms.map(|ms| f64::from(ms) / 1000.0),
        }
    }

    /// Where the readings come from, for people (passwords left out).
    pub fn source(&self) -> String {
        match self {
            Self::Amqp { url, queue, .. } => format!("queue '{queue}' at {}", redact(url)),
            Self::Command { command, .. } => format!("command {command:?}"),
            Self::Pushed { .. } => "epu sensor push".into(),
        }
    }

    fn check(&self) -> Result<()> {
        let name = self.name();
        ensure!(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "invalid sensor name '{name}': use 1-64 letters, digits, '-', '_' or '.'"
        );
        match self {
            Self::Amqp {
                url,
                queue,
                interval_ms,
                ..
            } => {
                if url.starts_with("amqps://") {
                    bail!(
                        "sensor '{name}': amqps (TLS) is not supported by this build; use amqp://"
                    );
                }
                url.parse::<lapin::uri::AMQPUri>()
                    .map_err(|e| anyhow::anyhow!("sensor '{name}': bad AMQP url: {e}"))?;
                ensure!(
                    !queue.is_empty(),
                    "sensor '{name}': the queue name is empty"
                );
                check_interval(name, *interval_ms)?;
            }
            Self::Command {
                command,
                interval_ms,
                timeout_ms,
                ..
            } => {
                ensure!(
                    command.first().is_some_and(|p| !p.is_empty()),
                    "sensor '{name}': the command must name a program"
                );
                check_interval(name, *interval_ms)?;
                ensure!(
                    (10..=3_600_000).contains(timeout_ms),
                    "sensor '{name}': timeout_ms must be from 10 to 3600000, got {timeout_ms}"
                );
            }
            Self::Pushed { stale_after_ms, .. } => {
                ensure!(
                    stale_after_ms.is_none_or(|ms| (1..=MAX_INTERVAL_MS).contains(&ms)),
                    "sensor '{name}': stale_after_ms must be from 1 to {MAX_INTERVAL_MS}"
                );
            }
        }
        Ok(())
    }
}

/// The longest sensor interval or staleness: a day.
const MAX_INTERVAL_MS: u32 = 86_400_000;

fn check_interval(name: &str, ms: u32) -> Result<()> {
    ensure!(
        (10..=MAX_INTERVAL_MS).contains(&ms),
        "sensor '{name}': interval_ms must be from 10 to {MAX_INTERVAL_MS}, got {ms}"
    );
    Ok(())
}

/// Checks every sensor of a domain and that no two share a name.
pub fn check_all(specs: &[SensorSpec]) -> Result<()> {
    let mut names = HashSet::new();
    for s in specs {
        s.check()?;
        ensure!(
            names.insert(s.name()),
            "sensor '{}' is declared twice",
            s.name()
        );
    }
    Ok(())
}

/// A URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &url[scheme_end..scheme_end + at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:***{}",
                &url[..scheme_end],
                &url[scheme_end + at..]
            )
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SensorSpec> {
        let spec: SensorSpec = toml::from_str(text)?;
        check_all(std::slice::from_ref(&spec))?;
        Ok(spec)
    }

    #[test]
    fn each_kind_parses_with_defaults() {
        let a = parse(
            "kind = \"amqp\"\nname = \"q\"\nurl = \"amqp://127.0.0.1:5672/%2f\"\nqueue = \"work\"",
        )
        .unwrap();
        assert_eq!(a.stale_after(), Some(3.0));
        let c = parse("kind = \"command\"\nname = \"c\"\ncommand = [\"echo\", \"4\"]").unwrap();
        assert_eq!(c.stale_after(), Some(8.0));
        let p = parse("kind = \"pushed\"\nname = \"p\"").unwrap();
        assert_eq!(p.stale_after(), None);
    }

    #[test]
    fn bad_sensors_are_rejected_with_the_reason() {
        let cases = [
            ("kind = \"amqp\"\nname = \"q\"\nqueue = \"w\"", "url"),
            (
                "kind = \"amqp\"\nname = \"q\"\nurl = \"http://x\"\nqueue = \"w\"",
                "bad AMQP url",
            ),
            (
                "kind = \"amqp\"\nname = \"q\"\nurl = \"amqps://h/%2f\"\nqueue = \"w\"",
                "amqps",
            ),
            (
                "kind = \"amqp\"\nname = \"q\"\nurl = \"amqp://h/%2f\"\nqueue = \"\"",
                "queue name",
            ),
            (
                "kind = \"command\"\nname = \"c\"\ncommand = []",
                "name a program",
            ),
            (
                "kind = \"command\"\nname = \"c\"\ncommand = [\"x\"]\ninterval_ms = 0",
                "interval_ms",
            ),
            ("kind = \"pushed\"\nname = \"a b\"", "invalid sensor name"),
            ("kind = \"pushed\"\nname = \"p\"\nbogus = 1", "bogus"),
            ("kind = \"sql\"\nname = \"p\"", "sql"),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
        let twice = [
            SensorSpec::Pushed {
                name: "p".into(),
                stale_after_ms: None,
            },
            SensorSpec::Pushed {
                name: "p".into(),
                stale_after_ms: None,
            },
        ];
        assert!(check_all(&twice).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://u:secret@h:5672/%2f"),
            "amqp://u:***@h:5672/%2f"
        );
        assert_eq!(redact("amqp://h:5672/%2f"), "amqp://h:5672/%2f");
        assert_eq!(redact("amqp://u@h/v"), "amqp://u:***@h/v");
    }
}
