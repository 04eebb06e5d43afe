//! Parsing the values the command line gives: settings, sensors, env vars, paths, engines.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The default state dir.
pub(super) fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("epu")
}

/// A finite number: JSON has no inf or nan, and no setting takes them.
pub(super) fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `KEY=VALUE` settings into a JSON object; a value that is valid JSON is taken as
/// such (`5`, `true`, `{"a":1}`), anything else as a string.
pub(super) fn parse_settings(items: &[String]) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("'{item}' is not KEY=VALUE");
        };
        if k.is_empty() {
            bail!("'{item}' has an empty key");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(map)
}

/// Parses `epu domain add --sensor` (see its help) into a checked sensor spec. `command=` takes
/// the rest of the text, commas included, and runs it with `sh -c` in `cwd`.
pub(super) fn parse_sensor(text: &str, cwd: &Path) -> Result<crate::model::sensor::SensorSpec> {
    let mut map = Map::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            bail!("sensor '{text}': '{rest}' is not KEY=VALUE");
        };
        let key = key.trim();
        let (value, next) = match key {
            "command" => (after, ""),
            _ => after.split_once(',').unwrap_or((after, "")),
        };
        let value = match key {
            "command" => json!(["sh", "-c", value]),
            "interval_ms" | "timeout_ms" | "stale_after_ms" => serde_json::from_str(value)
                .map_err(|_| anyhow::anyhow!("sensor '{text}': {key} must be a number"))?,
            _ => Value::String(value.to_string()),
        };
        map.insert(key.to_string(), value);
        rest = next;
    }
    if map.get("kind").and_then(Value::as_str) == Some("command") {
        map.insert("cwd".into(), json!(cwd));
    }
    let spec: crate::model::sensor::SensorSpec = serde_json::from_value(Value::Object(map))
        .map_err(|e| anyhow::anyhow!("sensor '{text}': {e}"))?;
    crate::model::sensor::check_all(std::slice::from_ref(&spec))?;
    Ok(spec)
}

pub(super) fn parse_env(items: &[String]) -> Result<Map<String, Value>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Value::String(v.to_string()))),
            _ => bail!("'{i}' is not KEY=VALUE"),
        })
        .collect()
}

pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()?.join(p))
}

/// An engine argument as the daemon needs it: a bundled name or an OCI reference as is, a path
/// made absolute.
pub(super) fn engine_arg(engine: String) -> Result<String> {
    if crate::engine::bundled::get(&engine).is_some() || crate::oci::is_oci(&engine) {
        return Ok(engine);
    }
    Ok(absolute(Path::new(&engine))?.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_json_values_or_strings() {
        let m =
            parse_settings(&["n=5".into(), "s=abc".into(), "b=true".into(), "e=".into()]).unwrap();
        assert_eq!(m["n"], 5);
        assert_eq!(m["s"], "abc");
        assert_eq!(m["b"], true);
        assert_eq!(m["e"], "");
        assert!(parse_settings(&["novalue".into()]).is_err());
        assert!(parse_settings(&["=1".into()]).is_err());
    }

    #[test]
    fn sensor_specs_parse_from_the_command_line() {
        use crate::model::sensor::SensorSpec;
        let cwd = Path::new("/tmp");
        let a = parse_sensor(
            "kind=amqp,name=q,url=amqp://127.0.0.1:5672/%2f,queue=work,interval_ms=200",
            cwd,
        )
        .unwrap();
        assert!(
            matches!(a, SensorSpec::Amqp { interval_ms: 200, ref queue, .. } if queue == "work")
        );
        let c = parse_sensor("kind=command,name=c,command=echo 1,2 | cut -d, -f1", cwd).unwrap();
        let SensorSpec::Command {
            command, cwd: dir, ..
        } = c
        else {
            panic!("not a command sensor");
        };
        assert_eq!(command, ["sh", "-c", "echo 1,2 | cut -d, -f1"]);
        assert_eq!(dir.as_deref(), Some(cwd));
        for (bad, needle) in [
            ("kind=pushed", "name"),
            ("kind=amqp,name=q,queue=w", "url"),
            ("kind=pushed,name=p,stale_after_ms=soon", "must be a number"),
            ("kind=pushed,name=p,junk", "KEY=VALUE"),
            ("kind=pushed,name=p,colour=red", "colour"),
        ] {
            let err = format!("{:#}", parse_sensor(bad, cwd).unwrap_err());
            assert!(err.contains(needle), "{bad}: expected '{needle}' in {err}");
        }
    }
}
