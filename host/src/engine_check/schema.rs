//! `epu engine check`'s schema step: the schema an engine declares and its `initialize` must
//! agree. Each key's edges are tried one at a time on top of the checked config: a value the
//! schema allows (its default, its min and max, one inside them for a number, each choice, null
//! where it is nullable) must be accepted, and one it forbids (another kind, a number past the range, a text off the choices,
//! an unknown key, a required key left out) must be refused.
//!
//! A schema says nothing of rules between keys (a minimum not above a maximum). An allowed
//! value refused with an error that names another key is taken as such a rule, and counted,
//! not failed.

use crate::engine::schema::{ConfigKey, Description, ValueKind};
use crate::engine::{CallLimits, EngineError, EngineHost, LoadedEngine};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The most configs one check tries.
const MAX_TRIES: usize = 400;
/// A key no schema declares.
const UNKNOWN_KEY: &str = "no_such_key_in_the_schema";

/// What the schema step found.
#[derive(Debug, Default, Serialize)]
pub struct Agreement {
    /// Configs the schema allows, all accepted (or refused for a rule between keys).
    pub allowed: usize,
    /// Configs the schema forbids, all refused.
    pub forbidden: usize,
    /// Allowed configs refused with an error that names another key.
    pub between_keys: Vec<String>,
    /// Where the two disagree, each in a line.
    pub disagreements: Vec<String>,
}

/// One config to try, and whether the schema allows it.
struct Try {
    key: String,
    config: Map<String, Value>,
    allowed: bool,
    what: String,
}

/// The steps after the scenario: what the engine says it is, and whether its schema and its
/// initialize agree (see the module).
pub(super) fn steps(
    host: &EngineHost,
    loaded: &std::sync::Arc<crate::engine::LoadedEngine>,
    options: &super::CheckOptions,
    report: &mut super::Report,
) {
    let mut step = |name: &'static str, ok: bool, detail: String| {
        if !ok {
            report.failure = Some(format!("{name}: {detail}"));
        }
        report.describe_steps.push(super::Step {
            step: name,
            ok,
            detail,
        });
    };
    let limits = CallLimits::from(&options.limits);
    let d = match host.describe(loaded, limits) {
        Ok(Some(d)) => d,
        Ok(None) => {
            let detail = "none: its config is checked by initialize alone".to_string();
            return step("describe", true, detail);
        }
        Err(e) => return step("describe", false, super::explain(&e, &options.limits)),
    };
    let keys = d.config.len();
    let detail = format!(
        "{} {}: {} ({keys} config keys)",
        d.name, d.version, d.summary
    );
    step("describe", true, detail);
    let base = serde_json::from_str(&options.config).unwrap_or_default();
    let agreement = agree(host, loaded, &d, &base, limits);
    let between = match agreement.between_keys.len() {
        0 => String::new(),
        n => format!(" ({n} allowed ones refused for a rule between keys)"),
    };
    let detail = format!(
        "initialize accepted {} configs the schema allows{between} and refused {} it forbids",
        agreement.allowed, agreement.forbidden
    );
    match agreement.disagreements.first() {
        None => step("schema", true, detail),
        Some(why) => step("schema", false, why.clone()),
    }
    report.description = Some((*d).clone());
    report.schema = Some(agreement);
}

/// Holds the engine's `initialize` against `description` on the configs made from `base`.
pub fn agree(
    host: &EngineHost,
    loaded: &Arc<LoadedEngine>,
    description: &Description,
    base: &Map<String, Value>,
    limits: CallLimits,
) -> Agreement {
    let mut out = Agreement::default();
    if let Err(why) = description.check(base) {
        out.disagreements.push(format!(
            "the config checked was accepted by initialize, and the schema refuses it: {why}"
        ));
    }
    for t in tries(description, base).into_iter().take(MAX_TRIES) {
        let text = Value::Object(t.config.clone()).to_string();
        let answer = host.instantiate_unchecked(loaded, &text, limits);
        match (t.allowed, answer) {
            (true, Ok(_)) => out.allowed += 1,
            (false, Err(EngineError::Rejected(_))) => out.forbidden += 1,
            (true, Err(EngineError::Rejected(why)))
                if names_another_key(description, &t.key, &why) =>
            {
                out.allowed += 1;
                out.between_keys.push(format!("{}: {why}", t.what));
            }
            (true, Err(e)) => out.disagreements.push(format!(
                "the schema allows {}, and initialize refused it: {e}",
                t.what
            )),
            (false, Ok(_)) => out.disagreements.push(format!(
                "the schema forbids {}, and initialize accepted it",
                t.what
            )),
            (false, Err(e)) => out.disagreements.push(format!(
                "the schema forbids {}, and initialize failed on it instead of refusing it: {e}",
                t.what
            )),
        }
    }
    out
}

/// Whether an error names a key of the schema other than `key`.
fn names_another_key(description: &Description, key: &str, why: &str) -> bool {
    let words: Vec<&str> = why
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .collect();
    description
        .config
        .iter()
        .any(|k| k.name != key && words.contains(&k.name.as_str()))
}

/// Every config to try, key by key.
fn tries(description: &Description, base: &Map<String, Value>) -> Vec<Try> {
    let mut out = Vec::new();
    let with = |key: &ConfigKey, value: Value, allowed: bool| {
        let mut config = base.clone();
        config.insert(key.name.clone(), value.clone());
        Try {
            key: key.name.clone(),
            config,
            allowed,
            what: format!("{{\"{}\": {value}}}", key.name),
        }
    };
    for key in &description.config {
        for value in allowed_values(key) {
            out.push(with(key, value, true));
        }
        for value in forbidden_values(key) {
            out.push(with(key, value, false));
        }
        if key.required && base.contains_key(&key.name) {
            let mut config = base.clone();
            config.remove(&key.name);
            out.push(Try {
                key: key.name.clone(),
                config,
                allowed: false,
                what: format!("a config without the required '{}'", key.name),
            });
        }
    }
    if !description.more_keys {
        let mut config = base.clone();
        config.insert(UNKNOWN_KEY.into(), json!(1));
        out.push(Try {
            key: UNKNOWN_KEY.into(),
            config,
            allowed: false,
            what: format!("the unknown key '{UNKNOWN_KEY}'"),
        });
    }
    out
}

/// The values a key's schema allows at its edges.
fn allowed_values(key: &ConfigKey) -> Vec<Value> {
    let mut out: Vec<Value> = key.default.iter().cloned().collect();
    if key.nullable {
        out.push(Value::Null);
    }
    match key.kind {
        ValueKind::Integer => out.extend(key.min.into_iter().chain(key.max).map(number)),
        // A number is tried one inside each end: an engine may take `min` as a bound it
        // must stay above ("> 0"), which a schema cannot say.
        ValueKind::Number => match (key.min, key.max) {
            (Some(a), Some(b)) if b - a <= 2.0 => out.push(number((a + b) / 2.0)),
            (a, b) => out.extend(
                a.map(|a| number(a + 1.0))
                    .into_iter()
                    .chain(b.map(|b| number(b - 1.0))),
            ),
        },
        ValueKind::Boolean => out.extend([json!(true), json!(false), json!("true")]),
        ValueKind::Text => out.extend(key.choices.iter().map(|c| json!(c))),
        _ => {}
    }
    out
}

/// Values a key's schema forbids, just past its edges or of another kind.
fn forbidden_values(key: &ConfigKey) -> Vec<Value> {
    let mut out = Vec::new();
    if !key.nullable && key.kind != ValueKind::Any {
        out.push(Value::Null);
    }
    match key.kind {
        ValueKind::Integer | ValueKind::Number => {
            out.extend([json!("abc"), json!(true)]);
            if key.kind == ValueKind::Integer {
                out.push(json!(key.min.unwrap_or(0.0) + 0.5));
            }
            out.extend(key.min.map(|m| number(m - 1.0)));
            out.extend(key.max.map(|m| number(m + 1.0)));
        }
        ValueKind::Boolean => out.extend([json!("maybe"), json!(2)]),
        ValueKind::Text if key.choices.is_empty() => out.push(json!(42)),
        ValueKind::Text => out.extend([json!(42), json!("not-one-of-the-choices")]),
        ValueKind::Object => out.extend([json!([1]), json!("x")]),
        ValueKind::Array => out.extend([json!({"a": 1}), json!("x")]),
        ValueKind::Any => {}
    }
    out
}

/// A number as JSON: whole numbers without a fraction, as a user would write them.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}
