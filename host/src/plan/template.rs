//! `${service.attr}` references: the attributes that a plan's services publish, used in later
//! services and in domains. Every string of a spec may hold them; `${` always starts one.

use anyhow::{bail, Result};
use serde_json::Value;
use std::collections::BTreeMap;

/// One `${service.attr}` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    pub service: String,
    pub attr: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${{{}.{}}}", self.service, self.attr)
    }
}

/// The attributes published so far: service → attribute → value.
pub type Attrs = BTreeMap<String, BTreeMap<String, String>>;

/// Splits `text` into literal pieces and references.
fn parse(text: &str) -> Result<Vec<Result<&str, Ref>>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push(Ok(&rest[..at]));
        let Some(end) = rest[at..].find('}') else {
            bail!("'{text}': '${{' is not closed by '}}'");
        };
        let inner = &rest[at + 2..at + end];
        let Some((service, attr)) = inner.split_once('.') else {
            bail!("'{text}': '${{{inner}}}' is not ${{service.attribute}}");
        };
        if service.is_empty() || attr.is_empty() {
            bail!("'{text}': '${{{inner}}}' is not ${{service.attribute}}");
        }
        out.push(Err(Ref {
            service: service.to_string(),
            attr: attr.to_string(),
        }));
        rest = &rest[at + end + 1..];
    }
    out.push(Ok(rest));
    Ok(out)
}

/// Every reference in `value`'s strings (keys included), with the dotted path of the value
/// that holds it.
pub fn refs_in(value: &Value) -> Result<Vec<(String, Ref)>> {
    let mut out = Vec::new();
    walk_refs(value, String::new(), &mut out)?;
    Ok(out)
}

fn walk_refs(value: &Value, path: String, out: &mut Vec<(String, Ref)>) -> Result<()> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => {
            for piece in parse(s).map_err(|e| anyhow::anyhow!("{path}: {e}"))? {
                if let Err(r) = piece {
                    out.push((path.clone(), r));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk_refs(v, join(&i.to_string()), out)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk_refs(v, join(k), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with its references replaced by their values.
pub fn fill_str(text: &str, attrs: &Attrs) -> Result<String> {
    let mut out = String::new();
    for piece in parse(text)? {
        match piece {
            Ok(lit) => out.push_str(lit),
            Err(r) => out.push_str(lookup(&r, attrs)?),
        }
    }
    Ok(out)
}

fn lookup<'a>(r: &Ref, attrs: &'a Attrs) -> Result<&'a str> {
    let published = attrs.get(&r.service);
    match published.and_then(|a| a.get(&r.attr)) {
        Some(v) => Ok(v),
        None => {
            let had: Vec<&str> = published
                .into_iter()
                .flat_map(|a| a.keys().map(String::as_str))
                .collect();
            bail!(
                "{r}: service '{}' did not publish '{}' (it published: {})",
                r.service,
                r.attr,
                if had.is_empty() {
                    "nothing".to_string()
                } else {
                    had.join(", ")
                }
            )
        }
    }
}

/// `value` with the references in its strings replaced. With `typed`, a string that is one
/// reference and nothing else becomes the JSON number or boolean its value spells, if it does
/// (so `preserve_n = "${sizer.n}"` gives the engine a number).
pub fn fill(value: &Value, attrs: &Attrs, typed: bool) -> Result<Value> {
    Ok(match value {
        Value::String(s) => {
            let filled = fill_str(s, attrs)?;
            let single = matches!(parse(s)?.as_slice(), [Ok(""), Err(_), Ok("")]);
            match serde_json::from_str::<Value>(&filled) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) if typed && single => v,
                _ => Value::String(filled),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill(v, attrs, typed))
                .collect::<Result<_>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill(v, attrs, typed)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs() -> Attrs {
        let mut a = Attrs::new();
        a.entry("kv".into())
            .or_default()
            .insert("port".into(), "4100".into());
        a
    }

    #[test]
    fn references_are_found_with_their_paths_and_filled() {
        let v = json!({"env": {"URL": "http://127.0.0.1:${kv.port}/x"}, "n": "${kv.port}", "k": 3});
        let refs = refs_in(&v).unwrap();
        let paths: Vec<&str> = refs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["env.URL", "n"]);
        assert_eq!(refs[0].1.to_string(), "${kv.port}");
        let filled = fill(&v, &attrs(), true).unwrap();
        assert_eq!(filled["env"]["URL"], "http://127.0.0.1:4100/x");
        assert_eq!(filled["n"], 4100);
        assert_eq!(fill(&v, &attrs(), false).unwrap()["n"], "4100");
    }

    #[test]
    fn bad_references_are_errors() {
        for (text, needle) in [
            ("${kv.port", "not closed"),
            ("${kvport}", "not ${service.attribute}"),
            ("${.port}", "not ${service.attribute}"),
        ] {
            let err = refs_in(&json!(text)).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = fill_str("${kv.host}", &attrs()).unwrap_err().to_string();
        assert!(
            err.contains("did not publish 'host'") && err.contains("port"),
            "{err}"
        );
    }
}
