//! What npreserving remembers across restarts and swaps, in its memo: which instance serves
//! each unique, and in devmode the failures it will not compensate for.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The memo's contents. Empty when there is nothing to remember.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memo {
    /// Generic instances that failed while devmode was on.
    pub failures: u32,
    /// The handle of the instance serving each unique.
    pub uniques: BTreeMap<String, u64>,
    /// Uniques whose instance failed while devmode was on: not relaunched until it is off.
    pub failed: BTreeSet<String>,
}

impl Memo {
    /// Reads a memo: a JSON object, or the 4-byte failure count of earlier versions. A memo
    /// that is neither is no memo: the uniques are then recovered by their vars.
    pub fn parse(bytes: &[u8]) -> Memo {
        if let Ok(old) = <[u8; 4]>::try_from(bytes) {
            if old[0] != b'{' {
                return Memo {
                    failures: u32::from_le_bytes(old),
                    ..Memo::default()
                };
            }
        }
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
            return Memo::default();
        };
        let uniques = map.get("uniques").and_then(Value::as_object);
        let failed = map.get("failed").and_then(Value::as_array);
        Memo {
            failures: map
                .get("failures")
                .and_then(Value::as_u64)
                .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
            uniques: uniques
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect(),
            failed: failed
                .into_iter()
                .flatten()
                .filter_map(|v| Some(v.as_str()?.to_string()))
                .collect(),
        }
    }

    /// The memo's bytes: empty when there is nothing to remember.
    pub fn encode(&self) -> Vec<u8> {
        if *self == Memo::default() {
            return Vec::new();
        }
        let mut out = serde_json::Map::new();
        if self.failures > 0 {
            out.insert("failures".into(), json!(self.failures));
        }
        if !self.uniques.is_empty() {
            out.insert("uniques".into(), json!(self.uniques));
        }
        if !self.failed.is_empty() {
            out.insert("failed".into(), json!(self.failed));
        }
        Value::Object(out).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_the_old_count() {
        let m = Memo {
            failures: 2,
            uniques: [("a".to_string(), 7)].into(),
            failed: ["b".to_string()].into(),
        };
        assert_eq!(Memo::parse(&m.encode()), m);
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            r#"{"failed":["b"],"failures":2,"uniques":{"a":7}}"#
        );
        assert_eq!(Memo::parse(&3u32.to_le_bytes()).failures, 3);
        assert!(Memo::default().encode().is_empty());
        assert_eq!(Memo::parse(b"garbage"), Memo::default());
    }
}
