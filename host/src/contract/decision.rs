//! Checks an engine's decision before anything is carried out.

use crate::engine::bindings::{Decision, Launch};
use crate::store::InstanceRecord;
use std::collections::HashSet;

/// The most vars one launch may carry, and their bytes (keys and values) in all.
pub const MAX_LAUNCH_VARS: usize = 64;
pub const MAX_LAUNCH_VAR_BYTES: usize = 8 << 10;

/// Why a decision was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InvalidDecision {
    #[error("destroy names handle {0}, which is not a live instance of this domain")]
    UnknownInstance(u64),
    #[error("destroy names handle {0} twice")]
    DuplicateDestroy(u64),
    #[error("launching {launch} would make {total} instances, over max_instances = {max}")]
    OverMax { launch: u64, total: u64, max: u32 },
    #[error("the decision is {size} bytes, over the cap of {max} (max_decision_bytes)")]
    TooBig { size: u64, max: u32 },
    #[error("launch {0} has a count of 0: leave it out")]
    EmptyLaunch(usize),
    #[error("launch {index} has {count} vars, over the cap of {MAX_LAUNCH_VARS}")]
    TooManyVars { index: usize, count: usize },
    #[error("launch {index} has {bytes} bytes of vars, over the cap of {MAX_LAUNCH_VAR_BYTES}")]
    VarsTooBig { index: usize, bytes: usize },
}

/// What one var of a launch costs the host to hold, beyond its text.
const VAR_BYTES: usize = std::mem::size_of::<(String, String)>();
/// What one launch costs the host to hold, beyond its vars.
const LAUNCH_BYTES: usize = std::mem::size_of::<Launch>();

/// The bytes of a launch's vars: keys and values.
fn var_bytes(l: &Launch) -> usize {
    l.vars.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The bytes a decision makes the host hold: its memo, each launch with its vars, and each
/// destroyed handle.
pub fn size(d: &Decision) -> u64 {
    let launches: usize = d
        .launches
        .iter()
        .map(|l| LAUNCH_BYTES + l.vars.len() * VAR_BYTES + var_bytes(l))
        .sum();
    let handles = d.destroy.len() * std::mem::size_of::<u64>();
    (d.memo.as_ref().map_or(0, Vec::len) + launches + handles) as u64
}

/// Accepts a decision only if it is at most `max_bytes`, every launch launches something with
/// vars within their caps, every destroyed handle is a live instance of the domain (each named
/// once), and the launches keep the domain within `max_instances`.
pub fn check(
    d: &Decision,
    live: &[InstanceRecord],
    max: u32,
    max_bytes: u32,
) -> Result<(), InvalidDecision> {
    let bytes = size(d);
    if bytes > u64::from(max_bytes) {
        return Err(InvalidDecision::TooBig {
            size: bytes,
            max: max_bytes,
        });
    }
    for (index, l) in d.launches.iter().enumerate() {
        if l.count == 0 {
            return Err(InvalidDecision::EmptyLaunch(index));
        }
        if l.vars.len() > MAX_LAUNCH_VARS {
            let count = l.vars.len();
            return Err(InvalidDecision::TooManyVars { index, count });
        }
        let bytes = var_bytes(l);
        if bytes > MAX_LAUNCH_VAR_BYTES {
            return Err(InvalidDecision::VarsTooBig { index, bytes });
        }
    }
    let handles: HashSet<u64> = live.iter().map(|i| i.handle).collect();
    let mut seen = HashSet::new();
    for &h in &d.destroy {
        if !handles.contains(&h) {
            return Err(InvalidDecision::UnknownInstance(h));
        }
        if !seen.insert(h) {
            return Err(InvalidDecision::DuplicateDestroy(h));
        }
    }
    let launch: u64 = d.launches.iter().map(|l| u64::from(l.count)).sum();
    let staying = live
        .iter()
        .filter(|i| i.state < crate::model::InstanceState::Terminating && !seen.contains(&i.handle))
        .count() as u64;
    if launch > 0 && staying + launch > u64::from(max) {
        return Err(InvalidDecision::OverMax {
            launch,
            total: staying + launch,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::{EngineStatus, Launch};
    use crate::model::InstanceState;

    fn rec(handle: u64, state: InstanceState) -> InstanceRecord {
        InstanceRecord::for_test(handle, state, 0)
    }

    fn decision(launch: u32, destroy: &[u64]) -> Decision {
        Decision {
            launches: (launch > 0)
                .then_some(Launch {
                    count: launch,
                    vars: vec![],
                })
                .into_iter()
                .collect(),
            destroy: destroy.to_vec(),
            next_decide_ms: None,
            memo: None,
            status: EngineStatus::Pending,
        }
    }

    #[test]
    fn refuses_decisions_over_the_size_cap() {
        let mut d = decision(0, &[]);
        d.memo = Some(vec![0; 1001]);
        assert_eq!(
            check(&d, &[], 5, 1000),
            Err(InvalidDecision::TooBig {
                size: 1001,
                max: 1000
            })
        );
        d.memo = Some(vec![0; 1000]);
        assert_eq!(check(&d, &[], 5, 1000), Ok(()));
    }

    #[test]
    fn empty_launches_count_and_are_refused() {
        let mut d = decision(0, &[]);
        d.launches = vec![
            Launch {
                count: 0,
                vars: vec![]
            };
            50_000
        ];
        assert!(size(&d) >= 50_000 * 24, "{}", size(&d));
        assert!(matches!(
            check(&d, &[], 5, 1 << 30),
            Err(InvalidDecision::EmptyLaunch(0))
        ));
    }

    #[test]
    fn launch_vars_are_capped_in_count_and_bytes() {
        let mut d = decision(1, &[]);
        d.launches[0].vars = vec![("k".into(), "v".repeat(MAX_LAUNCH_VAR_BYTES))];
        assert!(matches!(
            check(&d, &[], 5, 1 << 30),
            Err(InvalidDecision::VarsTooBig { index: 0, .. })
        ));
        d.launches[0].vars = vec![("k".into(), "v".into()); MAX_LAUNCH_VARS + 1];
        assert!(matches!(
            check(&d, &[], 5, 1 << 30),
            Err(InvalidDecision::TooManyVars { index: 0, .. })
        ));
        d.launches[0].vars.pop();
        assert_eq!(check(&d, &[], 5, 1 << 30), Ok(()));
    }

    #[test]
    fn accepts_within_bounds() {
        let live = vec![
            rec(1, InstanceState::Running),
            rec(2, InstanceState::Running),
        ];
        assert_eq!(check(&decision(1, &[1]), &live, 2, 1000), Ok(()));
    }

    #[test]
    fn refuses_foreign_and_duplicate_handles() {
        let live = vec![rec(1, InstanceState::Running)];
        assert_eq!(
            check(&decision(0, &[99]), &live, 5, 1000),
            Err(InvalidDecision::UnknownInstance(99))
        );
        assert_eq!(
            check(&decision(0, &[1, 1]), &live, 5, 1000),
            Err(InvalidDecision::DuplicateDestroy(1))
        );
    }

    #[test]
    fn refuses_launches_over_max_but_not_counting_terminating() {
        let live = vec![
            rec(1, InstanceState::Running),
            rec(20, InstanceState::Terminating),
        ];
        assert!(matches!(
            check(&decision(2, &[]), &live, 2, 1000),
            Err(InvalidDecision::OverMax { total: 3, .. })
        ));
        assert_eq!(check(&decision(1, &[]), &live, 2, 1000), Ok(()));
        assert!(check(&decision(u32::MAX, &[]), &live, 1000, 1000).is_err());
    }

    /// What the checks mean, stated apart from how `check` does them: a decision is accepted
    /// exactly when it is within the byte cap (a launch costs 32 bytes and a var 48 beyond its
    /// text), every launch is of at least one instance with vars within their caps, it
    /// destroys only live handles, each once, and launches nothing or stays within max
    /// (instances being destroyed do not count).
    fn accepted(d: &Decision, live: &[InstanceRecord], max: u32, max_bytes: u32) -> bool {
        let memo = d.memo.as_ref().map_or(0, Vec::len) as u64;
        let text =
            |l: &Launch| -> u64 { l.vars.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum() };
        let launches: u64 = d
            .launches
            .iter()
            .map(|l| 32 + 48 * l.vars.len() as u64 + text(l))
            .sum();
        let launches_ok = d
            .launches
            .iter()
            .all(|l| l.count > 0 && l.vars.len() <= 64 && text(l) <= 8192);
        let bytes = memo + launches + 8 * d.destroy.len() as u64;
        let unique: HashSet<u64> = d.destroy.iter().copied().collect();
        let known = d
            .destroy
            .iter()
            .all(|h| live.iter().any(|i| i.handle == *h));
        let launch: u64 = d.launches.iter().map(|l| u64::from(l.count)).sum();
        let staying = live
            .iter()
            .filter(|i| i.state < InstanceState::Terminating && !unique.contains(&i.handle))
            .count() as u64;
        bytes <= u64::from(max_bytes)
            && launches_ok
            && known
            && unique.len() == d.destroy.len()
            && (launch == 0 || staying + launch <= u64::from(max))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: crate::proptest_cases(2000),
            ..Default::default()
        })]

        /// Decisions from a fuzzed engine: any launches (up to u32::MAX each), any handles
        /// (live, foreign, repeated), any memo and vars, against any live set and caps.
        #[test]
        fn check_accepts_exactly_the_decisions_within_bounds(
            live in proptest::collection::btree_map(0u64..24, 0usize..8, 0..12),
            counts in proptest::collection::vec(
                proptest::prop_oneof![0u32..4, proptest::prelude::any::<u32>()], 0..4),
            vars in proptest::collection::vec(("[a-z]{0,8}", ".{0,40}"), 0..3),
            destroy in proptest::collection::vec(0u64..30, 0..8),
            memo in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)),
            max in 0u32..16,
            max_bytes in 0u32..2000,
        ) {
            let live: Vec<InstanceRecord> = live
                .into_iter()
                .map(|(h, s)| rec(h, InstanceState::ALL[s]))
                .collect();
            let d = Decision {
                launches: counts
                    .into_iter()
                    .map(|count| Launch { count, vars: vars.clone() })
                    .collect(),
                destroy,
                next_decide_ms: None,
                memo,
                status: EngineStatus::Stable,
            };
            let result = check(&d, &live, max, max_bytes);
            proptest::prop_assert_eq!(result.is_ok(), accepted(&d, &live, max, max_bytes), "{:?}", result);
        }
    }
}
