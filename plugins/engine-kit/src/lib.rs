//! What the bundled Rust engines share: strict parsing of their JSON configs, the tables an
//! engine keeps of its domain between decides, and the component's exports
//! ([`export_engine!`]).
//!
//! Every engine takes numbers or numeric strings for numeric keys and rejects anything else
//! with an error that names the key, so that `"2.7"` is never silently read as 2. [`Domain`]
//! keeps the instances, readings and memo that the delta snapshots update.

pub mod about;
pub mod component;
pub mod domain;
pub mod pool;
pub use about::{About, Key, Kind};
pub use component::EngineConfig;
pub use domain::{DetailsEntry, Domain, Parts, ReadingEntry, SnapshotParts};
pub use pool::{Pool, PoolEntry};

use serde_json::{Map, Value};

/// A var list: (name, value) pairs.
pub type Vars = Vec<(String, String)>;

/// Refuses a minimum above a maximum, naming both keys.
pub fn min_within_max(
    min_key: &str,
    min: u32,
    max_key: &str,
    max: Option<u32>,
) -> Result<(), String> {
    match max {
        Some(max) if min > max => Err(format!(
            "{min_key} ({min}) must not be above {max_key} ({max})"
        )),
        _ => Ok(()),
    }
}

/// Parses a config text that must be a JSON object.
pub fn object(text: &str) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("config is not valid JSON: {e}"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("config must be a JSON object".into()),
    }
}

/// The error for a key the engine does not know.
pub fn unknown_key(key: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match close {
        Some((_, k)) => format!(
            "unknown key '{key}': did you mean '{k}'? (known keys: {})",
            known.join(", ")
        ),
        None => format!("unknown key '{key}' (known keys: {})", known.join(", ")),
    }
}

/// A whole number from 0 to u32::MAX, given as a JSON number or a numeric string.
pub fn non_negative_int(key: &str, value: &Value) -> Result<u32, String> {
    let bad = || format!("{key} must be a whole number >= 0, got {value}");
    let n = match value {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => s.trim().parse::<u64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    u32::try_from(n).map_err(|_| bad())
}

/// A finite number, given as a JSON number or a numeric string.
pub fn number(key: &str, value: &Value) -> Result<f64, String> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite())
        .ok_or_else(|| format!("{key} must be a number, got {value}"))
}

/// A boolean, given as JSON true/false or the strings "true"/"false".
pub fn boolean(key: &str, value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(format!("{key} must be true or false, got {value}")),
    }
}

/// An object whose values are strings.
pub fn string_map(key: &str, value: &Value) -> Result<Vec<(String, String)>, String> {
    let bad = || format!("{key} must be an object of strings, got {value}");
    let map: &Map<String, Value> = value.as_object().ok_or_else(bad)?;
    map.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(bad)?.to_string())))
        .collect()
}

/// A scalar as var text: a string as it is, a number or boolean as JSON writes it.
pub fn scalar(key: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(value.to_string()),
        _ => Err(format!(
            "{key} must be a string, number or boolean, got {value}"
        )),
    }
}

/// An object whose values are scalars, as vars (see [`scalar`]).
pub fn scalar_map(key: &str, value: &Value) -> Result<Vec<(String, String)>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{key} must be an object, got {value}"))?;
    map.iter()
        .map(|(k, v)| Ok((k.clone(), scalar(&format!("{key}.{k}"), v)?)))
        .collect()
}

/// The warning for a key of the original engine that has no meaning here.
pub fn ignored_key(key: &str, why: &str) -> String {
    format!("{key} is ignored: {why}")
}

/// A non-empty string.
pub fn name(key: &str, value: &Value) -> Result<String, String> {
    match value.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{key} must be a non-empty string, got {value}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_numbers_come_as_numbers_or_numeric_strings() {
        assert_eq!(non_negative_int("k", &json!(3)), Ok(3));
        assert_eq!(non_negative_int("k", &json!(" 7 ")), Ok(7));
        for bad in [
            json!("abc"),
            json!(2.7),
            json!("2.7"),
            json!(-1),
            json!(true),
            json!(null),
            json!([]),
            json!(5_000_000_000u64),
        ] {
            let err = non_negative_int("k", &bad).unwrap_err();
            assert!(err.contains("k must be a whole number"), "{bad}: {err}");
        }
    }

    #[test]
    fn numbers_come_as_numbers_or_numeric_strings() {
        assert_eq!(number("k", &json!(2.5)), Ok(2.5));
        assert_eq!(number("k", &json!(" -3 ")), Ok(-3.0));
        for bad in [
            json!("x"),
            json!("inf"),
            json!("NaN"),
            json!(true),
            json!(null),
        ] {
            assert!(number("k", &bad)
                .unwrap_err()
                .contains("k must be a number"));
        }
    }

    #[test]
    fn booleans_strings_and_objects() {
        assert_eq!(boolean("b", &json!("true")), Ok(true));
        assert_eq!(boolean("b", &json!(false)), Ok(false));
        assert!(boolean("b", &json!("yes")).is_err());
        assert_eq!(
            string_map("m", &json!({"a": "1"})),
            Ok(vec![("a".into(), "1".into())])
        );
        assert!(string_map("m", &json!({"a": 1})).is_err());
        assert_eq!(name("s", &json!("q")), Ok("q".into()));
        assert!(name("s", &json!("")).is_err());
        assert!(object("[1]").unwrap_err().contains("JSON object"));
        assert!(object("{").unwrap_err().contains("not valid JSON"));
        assert!(unknown_key("x", &["a", "b"]).contains("a, b"));
        assert_eq!(
            scalar_map("u", &json!({"a": 1, "b": "x", "c": true})),
            Ok(vec![
                ("a".into(), "1".into()),
                ("b".into(), "x".into()),
                ("c".into(), "true".into())
            ])
        );
        assert!(scalar_map("u", &json!({"a": [1]}))
            .unwrap_err()
            .contains("u.a must be"));
    }
}
