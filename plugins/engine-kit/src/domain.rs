//! What an engine keeps of its domain between decides, kept up to date from the daemon's delta
//! snapshots: the live instances and their details, the latest reading of each sensor, and the
//! memo.

use crate::pool::{Pool, PoolEntry};
use std::collections::BTreeMap;

/// What the table of readings needs of an engine's `sensor-reading` record.
pub trait ReadingEntry: Clone {
    /// The sensor's name.
    fn name(&self) -> &str;
}

/// What the table of details needs of an engine's `instance-details` record.
pub trait DetailsEntry: Clone {
    /// The instance's handle.
    fn handle(&self) -> u64;
    /// The instance's name in the daemon.
    fn id(&self) -> &str;
    /// The vars it was launched with.
    fn vars(&self) -> &[(String, String)];
}

/// A snapshot record, as [`Domain::apply`] takes its parts.
pub trait SnapshotParts<I, S, D> {
    fn parts(&self) -> Parts<'_, I, S, D>;
}

/// Implements [`PoolEntry`], [`ReadingEntry`], [`DetailsEntry`] and [`SnapshotParts`] for an
/// engine's generated records, given its `instance`, `instance-state`, `health`,
/// `sensor-reading`, `instance-details` and `snapshot` types:
/// `engine_kit::entries!(Instance, InstanceState, Health, SensorReading, InstanceDetails, Snapshot);`.
#[macro_export]
macro_rules! entries {
    ($instance:ty, $state:ident, $health:ident, $reading:ty, $details:ty, $snapshot:ty) => {
        impl $crate::SnapshotParts<$instance, $reading, $details> for $snapshot {
            fn parts(&self) -> $crate::Parts<'_, $instance, $reading, $details> {
                $crate::Parts {
                    full: self.full,
                    instances: &self.instances,
                    details: self.details.as_deref(),
                    readings: self.sensors.as_deref(),
                    memo: self.memo.as_deref(),
                }
            }
        }
        impl $crate::DetailsEntry for $details {
            fn handle(&self) -> u64 {
                self.handle
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn vars(&self) -> &[(String, String)] {
                &self.vars
            }
        }
        impl $crate::PoolEntry for $instance {
            fn handle(&self) -> u64 {
                self.handle
            }
            fn ended(&self) -> bool {
                self.state >= $state::Terminated
            }
            fn counts(&self) -> bool {
                self.state < $state::Terminating && !self.draining
            }

            fn unhealthy(&self) -> bool {
                let bad_health = !matches!(self.health, $health::Ok | $health::Unknown);
                self.health == $health::Zombie
                    || (self.counts() && (self.state == $state::RunningFailed || bad_health))
            }
            fn up(&self) -> bool {
                self.state >= $state::Running
            }
        }
        impl $crate::ReadingEntry for $reading {
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// An engine's tables of one domain: `I` is its `instance` record, `S` its `sensor-reading`,
/// `D` its `instance-details`.
#[derive(Clone, Debug)]
pub struct Domain<I, S, D> {
    pool: Pool<I>,
    details: BTreeMap<u64, D>,
    readings: Vec<S>,
    memo: Vec<u8>,
}

impl<I, S, D> Domain<I, S, D> {
    /// Empty tables.
    pub const fn new() -> Self {
        Domain {
            pool: Pool::new(),
            details: BTreeMap::new(),
            readings: Vec::new(),
            memo: Vec::new(),
        }
    }
}

impl<I, S, D> Default for Domain<I, S, D> {
    fn default() -> Self {
        Domain::new()
    }
}

/// One snapshot's parts, as [`Domain::apply`] takes them.
pub struct Parts<'a, I, S, D> {
    pub full: bool,
    pub instances: &'a [I],
    pub details: Option<&'a [D]>,
    pub readings: Option<&'a [S]>,
    pub memo: Option<&'a [u8]>,
}

impl<I: PoolEntry, S: ReadingEntry, D: DetailsEntry> Domain<I, S, D> {
    /// Applies one snapshot's parts. A full snapshot replaces every table (no memo clears it);
    /// a delta updates the instances as [`Pool::apply`] does, keeps the details of new ones and
    /// drops those of ended ones, replaces the kept reading of each sensor it has, and leaves
    /// the memo. Applying the same snapshot twice is harmless.
    pub fn apply(&mut self, parts: Parts<'_, I, S, D>) {
        let Parts {
            full,
            instances,
            details,
            readings,
            memo,
        } = parts;
        self.pool.apply(full, instances);
        if full {
            self.details.clear();
            self.readings.clear();
            self.memo.clear();
        }
        for d in details.unwrap_or_default() {
            self.details.insert(d.handle(), d.clone());
        }
        for i in instances.iter().filter(|i| i.ended()) {
            self.details.remove(&i.handle());
        }
        for r in readings.unwrap_or_default() {
            match self.readings.iter_mut().find(|k| k.name() == r.name()) {
                Some(kept) => *kept = r.clone(),
                None => self.readings.push(r.clone()),
            }
        }
        if let Some(memo) = memo {
            self.memo = memo.to_vec();
        }
    }

    /// Keeps the memo a decision returns (none keeps the current one). The daemon gives it back
    /// only on a full snapshot.
    pub fn remember(&mut self, memo: Option<&[u8]>) {
        if let Some(memo) = memo {
            self.memo = memo.to_vec();
        }
    }

    /// The live instances, oldest first.
    pub fn instances(&self) -> &[I] {
        self.pool.instances()
    }

    /// A live instance's details, if the daemon gave them.
    pub fn details(&self, handle: u64) -> Option<&D> {
        self.details.get(&handle)
    }

    /// The latest reading of every sensor that has one.
    pub fn readings(&self) -> &[S] {
        &self.readings
    }

    /// The latest reading of a sensor, if it has one.
    pub fn reading(&self, name: &str) -> Option<&S> {
        self.readings.iter().find(|r| r.name() == name)
    }

    /// The memo in force.
    pub fn memo(&self) -> &[u8] {
        &self.memo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance: its handle, and whether it ended.
    #[derive(Clone, Debug, PartialEq)]
    struct Inst(u64, bool);

    #[allow(non_snake_case)]
    fn Live(handle: u64) -> Inst {
        Inst(handle, false)
    }

    impl PoolEntry for Inst {
        fn handle(&self) -> u64 {
            self.0
        }
        fn ended(&self) -> bool {
            self.1
        }
        fn counts(&self) -> bool {
            !self.1
        }
        fn unhealthy(&self) -> bool {
            false
        }
        fn up(&self) -> bool {
            true
        }
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Reading(&'static str, f64);

    #[derive(Clone, Debug, PartialEq)]
    struct Details(u64, Vec<(String, String)>);

    impl DetailsEntry for Details {
        fn handle(&self) -> u64 {
            self.0
        }
        fn id(&self) -> &str {
            "i"
        }
        fn vars(&self) -> &[(String, String)] {
            &self.1
        }
    }

    type D = Domain<Inst, Reading, Details>;

    fn parts<'a>(
        full: bool,
        instances: &'a [Inst],
        readings: Option<&'a [Reading]>,
        memo: Option<&'a [u8]>,
    ) -> Parts<'a, Inst, Reading, Details> {
        Parts {
            full,
            instances,
            details: None,
            readings,
            memo,
        }
    }

    impl ReadingEntry for Reading {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn deltas_replace_readings_by_sensor_and_keep_the_memo() {
        let mut d = D::new();
        let first = [Reading("q", 1.0), Reading("cpu", 0.5)];
        d.apply(parts(true, &[Live(1)], Some(&first), Some(b"m1")));
        d.apply(parts(false, &[Live(2)], Some(&[Reading("q", 7.0)]), None));
        assert_eq!(d.reading("q"), Some(&Reading("q", 7.0)));
        assert_eq!(d.reading("cpu"), Some(&Reading("cpu", 0.5)));
        assert_eq!(d.memo(), b"m1");
        assert_eq!(d.instances(), [Live(1), Live(2)]);
        d.remember(Some(b"m2"));
        d.apply(parts(false, &[], None, None));
        assert_eq!(
            d.memo(),
            b"m2",
            "a delta leaves the memo the engine returned"
        );
    }

    #[test]
    fn a_full_snapshot_replaces_every_table() {
        let mut d = D::new();
        d.apply(parts(
            true,
            &[Live(1)],
            Some(&[Reading("q", 1.0)]),
            Some(b"m"),
        ));
        d.apply(parts(true, &[Live(4)], None, None));
        assert_eq!(d.reading("q"), None);
        assert!(
            d.memo().is_empty(),
            "a full snapshot without a memo clears it"
        );
        assert_eq!(d.instances(), [Live(4)]);
    }

    #[test]
    fn details_come_once_and_go_with_their_instance() {
        let mut d = D::new();
        let vars = vec![("k".to_string(), "v".to_string())];
        let given = [Details(1, vars.clone()), Details(2, vec![])];
        let both = [Live(1), Live(2)];
        let mut p = parts(true, &both, None, None);
        p.details = Some(&given);
        d.apply(p);
        d.apply(parts(false, &[Live(1)], None, None));
        assert_eq!(
            d.details(1).map(|x| x.vars()),
            Some(&vars[..]),
            "kept across deltas"
        );
        d.apply(parts(false, &[Inst(2, true)], None, None));
        assert_eq!(d.details(2), None, "dropped when the instance ends");
        d.apply(parts(true, &[Live(3)], None, None));
        assert_eq!(d.details(1), None, "a full snapshot replaces them");
    }
}
