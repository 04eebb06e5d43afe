//! What an engine keeps of its domain between decides, kept up to date from the daemon's delta
//! snapshots: the live instances, the latest reading of each sensor, and the memo.

use crate::pool::{Pool, PoolEntry};

/// What the table of readings needs of an engine's `sensor-reading` record.
pub trait ReadingEntry: Clone {
    /// The sensor's name.
    fn name(&self) -> &str;
}

/// Implements [`PoolEntry`] and [`ReadingEntry`] for an engine's generated records, given its
/// `instance`, `instance-state` and `sensor-reading` types:
/// `engine_kit::entries!(Instance, InstanceState, SensorReading);`.
#[macro_export]
macro_rules! entries {
    ($instance:ty, $state:ident, $reading:ty) => {
        impl $crate::PoolEntry for $instance {
            fn handle(&self) -> u64 {
                self.handle
            }
            fn ended(&self) -> bool {
                self.state >= $state::Terminated
            }
        }
        impl $crate::ReadingEntry for $reading {
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// An engine's tables of one domain: `I` is its `instance` record, `S` its `sensor-reading`.
#[derive(Clone, Debug)]
pub struct Domain<I, S> {
    pool: Pool<I>,
    readings: Vec<S>,
    memo: Vec<u8>,
}

impl<I, S> Domain<I, S> {
    /// Empty tables.
    pub const fn new() -> Self {
        Domain {
            pool: Pool::new(),
            readings: Vec::new(),
            memo: Vec::new(),
        }
    }
}

impl<I, S> Default for Domain<I, S> {
    fn default() -> Self {
        Domain::new()
    }
}

impl<I: PoolEntry, S: ReadingEntry> Domain<I, S> {
    /// Applies one snapshot's parts. A full snapshot replaces every table (no memo clears it);
    /// a delta updates the instances as [`Pool::apply`] does, replaces the kept reading of each
    /// sensor it has, and leaves the memo. Applying the same snapshot twice is harmless.
    pub fn apply(
        &mut self,
        full: bool,
        instances: &[I],
        readings: Option<&[S]>,
        memo: Option<&[u8]>,
    ) {
        self.pool.apply(full, instances);
        if full {
            self.readings.clear();
            self.memo.clear();
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

    #[derive(Clone, Debug, PartialEq)]
    struct Inst(u64);

    impl PoolEntry for Inst {
        fn handle(&self) -> u64 {
            self.0
        }
        fn ended(&self) -> bool {
            false
        }
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Reading(&'static str, f64);

    impl ReadingEntry for Reading {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn deltas_replace_readings_by_sensor_and_keep_the_memo() {
        let mut d: Domain<Inst, Reading> = Domain::new();
        let first = [Reading("q", 1.0), Reading("cpu", 0.5)];
        d.apply(true, &[Inst(1)], Some(&first), Some(b"m1"));
        d.apply(false, &[Inst(2)], Some(&[Reading("q", 7.0)]), None);
        assert_eq!(d.reading("q"), Some(&Reading("q", 7.0)));
        assert_eq!(d.reading("cpu"), Some(&Reading("cpu", 0.5)));
        assert_eq!(d.memo(), b"m1");
        assert_eq!(d.instances(), [Inst(1), Inst(2)]);
        d.remember(Some(b"m2"));
        d.apply(false, &[], None, None);
        assert_eq!(
            d.memo(),
            b"m2",
            "a delta leaves the memo the engine returned"
        );
    }

    #[test]
    fn a_full_snapshot_replaces_every_table() {
        let mut d: Domain<Inst, Reading> = Domain::new();
        d.apply(true, &[Inst(1)], Some(&[Reading("q", 1.0)]), Some(b"m"));
        d.apply(true, &[Inst(4)], None, None);
        assert_eq!(d.reading("q"), None);
        assert!(
            d.memo().is_empty(),
            "a full snapshot without a memo clears it"
        );
        assert_eq!(d.instances(), [Inst(4)]);
    }
}
