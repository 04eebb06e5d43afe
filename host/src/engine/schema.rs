//! What an engine of contract 0.5.0 says it is (its `describe` export): name, version, summary
//! and config schema. The description is checked once when it is taken, within the bounds
//! below, and every config is checked against it before the engine's `initialize` sees it.

use super::bindings::epu::engine::types as wit;
use serde::Serialize;
use serde_json::{Map, Value};

/// The most keys a description may declare.
pub const MAX_KEYS: usize = 256;
/// The most choices one key may declare.
pub const MAX_CHOICES: usize = 64;
/// The longest name, version, key name or choice, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// The longest summary, doc line or default, in bytes.
pub const MAX_DOC_BYTES: usize = 1024;

/// The kind of value a config key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    Integer,
    Number,
    Boolean,
    Text,
    Object,
    Array,
    Any,
}

/// One key of an engine's config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigKey {
    pub name: String,
    pub kind: ValueKind,
    pub doc: String,
    /// The value taken when the key is not given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub required: bool,
    pub nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// Why a config does not fit a schema: the key at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// What an engine says it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub config: Vec<ConfigKey>,
    /// Keys not listed are given to the engine unchecked.
    pub more_keys: bool,
}

impl Description {
    /// Takes an engine's answer to `describe`, refusing one that breaks a bound or is not
    /// consistent (a default that its own key refuses, a range upside down).
    pub fn from_engine(d: wit::Description) -> Result<Description, String> {
        short("name", &d.name, MAX_NAME_BYTES, false)?;
        short("version", &d.version, MAX_NAME_BYTES, false)?;
        short("summary", &d.summary, MAX_DOC_BYTES, true)?;
        if d.config.len() > MAX_KEYS {
            return Err(format!(
                "it declares {} config keys, over the limit of {MAX_KEYS}",
                d.config.len()
            ));
        }
        let mut config: Vec<ConfigKey> = Vec::with_capacity(d.config.len());
        for k in d.config {
            let key = ConfigKey::from_engine(k)?;
            if config.iter().any(|c| c.name == key.name) {
                return Err(format!("it declares the key '{}' twice", key.name));
            }
            config.push(key);
        }
        Ok(Description {
            name: d.name,
            version: d.version,
            summary: d.summary,
            config,
            more_keys: d.more_keys,
        })
    }

    /// The key named `name`.
    pub fn key(&self, name: &str) -> Option<&ConfigKey> {
        self.config.iter().find(|k| k.name == name)
    }

    /// Checks a whole config: every key known, every value of its key's kind and range, every
    /// required key given.
    pub fn check(&self, config: &Map<String, Value>) -> Result<(), ConfigError> {
        let at = |key: &str, message: String| ConfigError {
            key: key.to_string(),
            message,
        };
        for (name, value) in config {
            match self.key(name) {
                Some(key) => key.check(value).map_err(|m| at(name, m))?,
                None if self.more_keys => {}
                None => return Err(at(name, self.unknown(name))),
            }
        }
        match self
            .config
            .iter()
            .find(|k| k.required && !config.contains_key(&k.name))
        {
            Some(k) => Err(at(&k.name, format!("{} is required: {}", k.name, k.doc))),
            None => Ok(()),
        }
    }

    fn unknown(&self, name: &str) -> String {
        let names: Vec<&str> = self.config.iter().map(|k| k.name.as_str()).collect();
        let close = names
            .iter()
            .map(|k| (strsim::jaro_winkler(name, k), k))
            .filter(|(score, _)| *score >= 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let known = if names.is_empty() {
            "it takes no keys".to_string()
        } else {
            format!("known keys: {}", names.join(", "))
        };
        match close {
            Some((_, k)) => format!("unknown key '{name}': did you mean '{k}'? ({known})"),
            None => format!("unknown key '{name}' ({known})"),
        }
    }
}

impl ConfigKey {
    fn from_engine(k: wit::ConfigKey) -> Result<ConfigKey, String> {
        short("a key's name", &k.name, MAX_NAME_BYTES, false)?;
        let name = k.name;
        let at = |what: &str| format!("key '{name}': {what}");
        short(&at("doc"), &k.doc, MAX_DOC_BYTES, true)?;
        let kind = match k.kind {
            wit::ValueKind::Integer => ValueKind::Integer,
            wit::ValueKind::Number => ValueKind::Number,
            wit::ValueKind::Boolean => ValueKind::Boolean,
            wit::ValueKind::Text => ValueKind::Text,
            wit::ValueKind::Object => ValueKind::Object,
            wit::ValueKind::Array => ValueKind::Array,
            wit::ValueKind::Any => ValueKind::Any,
        };
        let numeric = matches!(kind, ValueKind::Integer | ValueKind::Number);
        for (what, bound) in [("min", k.min), ("max", k.max)] {
            match bound {
                Some(_) if !numeric => return Err(at(&format!("{what} is set on a {kind:?} key"))),
                Some(b) if !b.is_finite() => return Err(at(&format!("{what} is not finite"))),
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (k.min, k.max) {
            if min > max {
                return Err(at(&format!("min ({min}) is above max ({max})")));
            }
        }
        if !k.choices.is_empty() && kind != ValueKind::Text {
            return Err(at("choices are set on a key that is not text"));
        }
        if k.choices.len() > MAX_CHOICES {
            return Err(at(&format!(
                "{} choices, over the limit of {MAX_CHOICES}",
                k.choices.len()
            )));
        }
        for c in &k.choices {
            short(&at("a choice"), c, MAX_NAME_BYTES, true)?;
        }
        let default = match &k.default {
            None => None,
            Some(_) if k.required => return Err(at("it is required and has a default")),
            Some(text) => {
                short(&at("default"), text, MAX_DOC_BYTES, true)?;
                Some(
                    serde_json::from_str::<Value>(text)
                        .map_err(|e| at(&format!("default {text:?} is not JSON: {e}")))?,
                )
            }
        };
        let key = ConfigKey {
            name: name.clone(),
            kind,
            doc: k.doc,
            default: None,
            required: k.required,
            nullable: k.nullable,
            min: k.min,
            max: k.max,
            choices: k.choices,
        };
        if let Some(d) = &default {
            key.check(d)
                .map_err(|e| format!("its default does not fit: {e}"))?;
        }
        Ok(ConfigKey { default, ..key })
    }

    /// Checks one value against the key's kind, range and choices; the error starts with the
    /// key's name, as the bundled engines' own do ("preserve_n must be …, got …").
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let name = &self.name;
        let bad = |what: String| Err(format!("{name} must be {what}, got {value}"));
        if value.is_null() && self.nullable {
            return Ok(());
        }
        match self.kind {
            ValueKind::Integer | ValueKind::Number => {
                let n = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite());
                // As the engines say it: "a whole number >= 0" for a count, "a number" or
                // ">= 0" for a number.
                let whole = self.kind == ValueKind::Integer;
                let range = self.range();
                let what = match (whole, n) {
                    (true, _) => format!("a whole number{range}"),
                    (false, Some(_)) => range.trim_start().to_string(),
                    (false, None) => format!("a number{range}"),
                };
                match n {
                    Some(n) if whole && n.fract() != 0.0 => bad(what),
                    Some(n) if self.min.is_some_and(|m| n < m) => bad(what),
                    Some(n) if self.max.is_some_and(|m| n > m) => bad(what),
                    Some(_) => Ok(()),
                    None => bad(what),
                }
            }
            ValueKind::Boolean => match value {
                Value::Bool(_) => Ok(()),
                Value::String(s) if s == "true" || s == "false" => Ok(()),
                _ => bad("true or false".into()),
            },
            ValueKind::Text => match value {
                Value::String(s) if self.choices.is_empty() || self.choices.contains(s) => Ok(()),
                _ if self.choices.is_empty() => bad("a string".into()),
                _ => bad(format!("one of {}", self.choices.join(", "))),
            },
            ValueKind::Object if !value.is_object() => bad("an object".into()),
            ValueKind::Array if !value.is_array() => bad("an array".into()),
            _ => Ok(()),
        }
    }

    /// The key's range in words: " from 0 to 10", " >= 0", or nothing.
    pub fn range(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!(" from {a} to {b}"),
            (Some(a), None) => format!(" >= {a}"),
            (None, Some(b)) => format!(" <= {b}"),
            (None, None) => String::new(),
        }
    }
}

/// Refuses a text over `max` bytes, or an empty one unless `empty_ok`.
fn short(what: &str, text: &str, max: usize, empty_ok: bool) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what} is {} bytes, over {max}", text.len()));
    }
    if text.is_empty() && !empty_ok {
        return Err(format!("{what} is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str, kind: wit::ValueKind) -> wit::ConfigKey {
        wit::ConfigKey {
            name: name.into(),
            kind,
            doc: "what it does".into(),
            default: None,
            required: false,
            nullable: false,
            min: None,
            max: None,
            choices: vec![],
        }
    }

    fn described(config: Vec<wit::ConfigKey>) -> Result<Description, String> {
        Description::from_engine(wit::Description {
            name: "e".into(),
            version: "1.0.0".into(),
            summary: "an engine".into(),
            config,
            more_keys: false,
        })
    }

    fn sample() -> Description {
        let mut n = key("preserve_n", wit::ValueKind::Integer);
        n.min = Some(0.0);
        n.max = Some(10.0);
        n.default = Some("0".into());
        let mut m = key("metric", wit::ValueKind::Text);
        m.required = true;
        let mut agg = key("aggregate", wit::ValueKind::Text);
        agg.choices = vec!["avg".into(), "max".into()];
        described(vec![
            n,
            m,
            agg,
            key("on", wit::ValueKind::Boolean),
            key("vars", wit::ValueKind::Object),
            wit::ConfigKey {
                nullable: true,
                ..key("max", wit::ValueKind::Integer)
            },
            key("max_n", wit::ValueKind::Integer),
        ])
        .unwrap()
    }

    fn check(config: Value) -> Result<(), String> {
        sample()
            .check(config.as_object().unwrap())
            .map_err(|e| format!("{}: {e}", e.key))
    }

    #[test]
    fn a_config_within_the_schema_passes() {
        check(json!({"metric": "cpu", "preserve_n": 3})).unwrap();
        check(json!({"metric": "cpu", "preserve_n": "10", "on": "true", "aggregate": "max"}))
            .unwrap();
        check(json!({"metric": "cpu", "vars": {"a": 1}, "on": false})).unwrap();
        check(json!({"metric": "cpu", "max": null, "max_n": 4})).unwrap();
    }

    #[test]
    fn each_way_out_of_the_schema_is_refused_naming_the_key() {
        let cases = [
            (
                json!({"metric": "c", "preserv_n": 1}),
                "did you mean 'preserve_n'",
            ),
            (json!({"metric": "c", "zzz": 1}), "unknown key 'zzz'"),
            (json!({"metric": "c", "zzz": 1}), "zzz: "),
            (
                json!({"metric": "c", "preserve_n": "abc"}),
                "preserve_n must be",
            ),
            (
                json!({"metric": "c", "preserve_n": 2.5}),
                "a whole number from 0 to 10",
            ),
            (
                json!({"metric": "c", "preserve_n": 11}),
                "preserve_n: preserve_n must",
            ),
            (json!({"metric": "c", "preserve_n": -1}), "preserve_n must"),
            (
                json!({"metric": "c", "on": "yes"}),
                "on must be true or false",
            ),
            (
                json!({"metric": "c", "aggregate": "sum"}),
                "one of avg, max",
            ),
            (json!({"metric": 3}), "metric must be a string"),
            (
                json!({"metric": "c", "vars": [1]}),
                "vars must be an object",
            ),
            (
                json!({"metric": "c", "vars": null}),
                "vars must be an object",
            ),
            (json!({"preserve_n": 1}), "metric: metric is required"),
        ];
        for (config, expected) in cases {
            let err = check(config.clone()).unwrap_err();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn an_inconsistent_or_oversized_description_is_refused() {
        let mut bad_default = key("n", wit::ValueKind::Integer);
        bad_default.default = Some("\"x\"".into());
        let mut upside_down = key("n", wit::ValueKind::Number);
        upside_down.min = Some(5.0);
        upside_down.max = Some(1.0);
        let mut range_on_text = key("t", wit::ValueKind::Text);
        range_on_text.max = Some(1.0);
        let mut not_json = key("n", wit::ValueKind::Integer);
        not_json.default = Some("zero".into());
        for (config, expected) in [
            (vec![bad_default], "default does not fit"),
            (vec![upside_down], "min (5) is above max (1)"),
            (vec![range_on_text], "max is set"),
            (vec![not_json], "is not JSON"),
            (
                vec![key("a", wit::ValueKind::Any), key("a", wit::ValueKind::Any)],
                "twice",
            ),
            (vec![key("", wit::ValueKind::Any)], "is empty"),
            (
                (0..=MAX_KEYS)
                    .map(|i| key(&format!("k{i}"), wit::ValueKind::Any))
                    .collect(),
                "over the limit of 256",
            ),
        ] {
            let err = described(config).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
