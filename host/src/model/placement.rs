//! Where in a cluster a domain may run: the nodes it names, and the labels a node must carry.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most node names, and the most labels, one placement (or one node) may give.
pub const MAX_PLACEMENT_ITEMS: usize = 32;

/// A domain's placement. Empty means any node (a `process` domain is still held to the host
/// its workers run on). Both parts must hold: a node named in `nodes` (if any are named) that
/// carries every label in `labels`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The nodes that may own the domain; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Labels (`--label KEY=VALUE` of `epu daemon`) a node must carry, every one of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.labels.is_empty()
    }

    /// Whether a node of this name and with these labels may own the domain.
    pub fn admits(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.nodes.is_empty() || self.nodes.iter().any(|n| n == node))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// Checks the node names and labels.
    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(
            self.nodes.len() <= MAX_PLACEMENT_ITEMS,
            "placement.nodes names {} nodes; at most {MAX_PLACEMENT_ITEMS}",
            self.nodes.len()
        );
        for n in &self.nodes {
            super::check_domain_name(n).map_err(|_| {
                anyhow::anyhow!(
                    "placement.nodes: invalid node name '{n}': use 1-64 letters, digits, '-', \
                     '_' or '.'"
                )
            })?;
        }
        check_labels("placement.labels", &self.labels)
    }
}

/// Checks a set of labels: at most [`MAX_PLACEMENT_ITEMS`], each key and value 1-63 letters,
/// digits, '-', '_' or '.'.
pub fn check_labels(what: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    anyhow::ensure!(
        labels.len() <= MAX_PLACEMENT_ITEMS,
        "{what} has {} labels; at most {MAX_PLACEMENT_ITEMS}",
        labels.len()
    );
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    for (k, v) in labels {
        anyhow::ensure!(
            word(k) && word(v),
            "{what}: invalid label '{k}={v}': a key and a value are 1-63 letters, digits, '-', \
             '_' or '.'"
        );
    }
    Ok(())
}

/// Parses `KEY=VALUE` labels (repeatable flags), checked.
pub fn parse_labels(what: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{what}: '{item}' is not KEY=VALUE"))?;
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            anyhow::bail!("{what}: label '{k}' is given twice");
        }
    }
    check_labels(what, &labels)?;
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> BTreeMap<String, String> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        parse_labels("labels", &items).unwrap()
    }

    #[test]
    fn a_placement_admits_a_named_node_that_carries_every_label() {
        let any = Placement::default();
        assert!(any.admits("a", &labels(&[])));
        let p = Placement {
            nodes: vec!["a".into(), "b".into()],
            labels: labels(&["zone=x"]),
        };
        assert!(p.admits("a", &labels(&["zone=x", "gpu=1"])));
        assert!(!p.admits("a", &labels(&["zone=y"])));
        assert!(!p.admits("a", &labels(&[])));
        assert!(!p.admits("c", &labels(&["zone=x"])));
        let by_label = Placement {
            nodes: vec![],
            labels: labels(&["zone=x", "gpu=1"]),
        };
        assert!(by_label.admits("c", &labels(&["gpu=1", "zone=x"])));
        assert!(!by_label.admits("c", &labels(&["zone=x"])));
    }

    #[test]
    fn bad_names_and_labels_are_refused_by_name() {
        let bad_node = Placement {
            nodes: vec!["no/slash".into()],
            ..Default::default()
        };
        let e = bad_node.check().unwrap_err().to_string();
        assert!(e.contains("no/slash"), "{e}");
        let e = parse_labels("--label", &["zone".into()]).unwrap_err();
        assert!(e.to_string().contains("'zone' is not KEY=VALUE"), "{e}");
        let e = parse_labels("--label", &["zone=a b".into()]).unwrap_err();
        assert!(e.to_string().contains("zone=a b"), "{e}");
        let e = parse_labels("--label", &["a=1".into(), "a=2".into()]).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let many: Vec<String> = (0..=MAX_PLACEMENT_ITEMS)
            .map(|i| format!("k{i}=v"))
            .collect();
        assert!(parse_labels("--label", &many).is_err());
    }
}
