//! The table of instances an engine keeps between decides, kept up to date from the daemon's
//! delta snapshots.

/// What the pool needs of an engine's `instance` record.
pub trait PoolEntry: Clone {
    /// The instance's handle.
    fn handle(&self) -> u64;
    /// Whether the instance has ended (terminated, failed or rejected).
    fn ended(&self) -> bool;
    /// Whether it counts toward the pool: below `terminating`, and not draining (a draining
    /// instance is leaving).
    fn counts(&self) -> bool;

    /// The original rule: running-failed, or a health other than ok/unknown, while it counts;
    /// a zombie at any state.
    fn unhealthy(&self) -> bool;
    /// Whether it is running (or past it): it has reported in.
    fn up(&self) -> bool;
}

/// The live instances, in handle order (oldest first).
#[derive(Clone, Debug)]
pub struct Pool<T> {
    live: Vec<T>,
}

impl<T> Pool<T> {
    /// An empty pool.
    pub const fn new() -> Self {
        Pool { live: Vec::new() }
    }
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool::new()
    }
}

impl<T: PoolEntry> Pool<T> {
    /// Applies one snapshot's instances: a full snapshot replaces the table; otherwise each
    /// record replaces the instance's entry, and an ended one removes it. Applying the same
    /// records twice leaves the same table.
    pub fn apply(&mut self, full: bool, instances: &[T]) {
        if full {
            self.live.clear();
        }
        for i in instances {
            // Handles grow, so a new instance usually goes at the end.
            let at = match self.live.last() {
                Some(last) if last.handle() < i.handle() => Err(self.live.len()),
                None => Err(0),
                _ => self.live.binary_search_by_key(&i.handle(), T::handle),
            };
            match (at, i.ended()) {
                (Ok(n), false) => self.live[n] = i.clone(),
                (Ok(n), true) => {
                    self.live.remove(n);
                }
                (Err(n), false) => self.live.insert(n, i.clone()),
                (Err(_), true) => {}
            }
        }
    }

    /// The live instances, oldest first.
    pub fn instances(&self) -> &[T] {
        &self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Entry(u64, bool);

    impl PoolEntry for Entry {
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

    fn handles(p: &Pool<Entry>) -> Vec<u64> {
        p.instances().iter().map(|e| e.0).collect()
    }

    #[test]
    fn deltas_insert_in_order_replace_and_remove() {
        let mut p = Pool::default();
        p.apply(true, &[Entry(1, false), Entry(3, false)]);
        p.apply(false, &[Entry(2, false), Entry(5, false), Entry(3, true)]);
        assert_eq!(handles(&p), vec![1, 2, 5]);
        p.apply(false, &[Entry(9, true), Entry(1, false)]);
        assert_eq!(
            handles(&p),
            vec![1, 2, 5],
            "an unknown ended instance is ignored"
        );
    }

    #[test]
    fn applying_twice_is_harmless() {
        let mut p = Pool::default();
        p.apply(true, &[Entry(1, false), Entry(2, false)]);
        let delta = [Entry(2, true), Entry(4, false)];
        p.apply(false, &delta);
        p.apply(false, &delta);
        assert_eq!(handles(&p), vec![1, 4]);
    }

    #[test]
    fn a_full_snapshot_replaces_the_table() {
        let mut p = Pool::default();
        p.apply(true, &[Entry(1, false), Entry(2, false)]);
        p.apply(true, &[Entry(7, false), Entry(8, true)]);
        assert_eq!(handles(&p), vec![7]);
    }
}
