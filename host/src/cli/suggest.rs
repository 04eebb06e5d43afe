//! "Did you mean": the known name closest to a mistyped one.

use crate::store::Store;
use anyhow::{anyhow, Error};
use std::path::Path;

/// The candidate closest to `name`, if one is close (Jaro-Winkler similarity of 0.8 or more).
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "unknown domain or run 'NAME'", with the closest domain or run of the state dir.
pub(super) fn unknown_target(state_dir: &Path, name: &str) -> Error {
    match crate::store::Store::open_read_only(&state_dir.join("epu.db")) {
        Ok(store) => unknown_in(&store, name),
        Err(_) => anyhow!("unknown domain or run '{name}'"),
    }
}

/// [`unknown_target`] with the store at hand.
pub(super) fn unknown_in(store: &Store, name: &str) -> Error {
    let names = known_targets(store);
    match closest(name, names.iter().map(String::as_str)) {
        Some(c) => anyhow!("unknown domain or run '{name}': did you mean '{c}'?"),
        None => anyhow!("unknown domain or run '{name}'"),
    }
}

/// The domains and runs of a store.
fn known_targets(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = store
        .domains()
        .map(|ds| ds.into_iter().map(|d| d.spec.name).collect())
        .unwrap_or_default();
    let runs = store.runs().unwrap_or_default();
    names.extend(runs.into_iter().map(|r| r.name));
    names
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_close_name_is_suggested_and_a_far_one_is_not() {
        let known = ["workers", "queue-workers", "web"];
        assert_eq!(closest("worker", known), Some("workers"));
        assert_eq!(closest("queue-worker", known), Some("queue-workers"));
        assert_eq!(closest("database", known), None);
    }
}
