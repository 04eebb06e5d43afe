//! Seeded randomness for the torture tests: a run is picked by its seed, and printed so that a
//! failure can be replayed.

/// splitmix64: a seeded generator.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A torture run: its rounds (`rounds_var`, else `default`), its seed (`EPU_TORTURE_SEED`, else
/// the clock) and the environment that replays it.
pub struct Run {
    pub rounds: u64,
    pub seed: u64,
    pub replay: String,
}

impl Run {
    pub fn from_env(rounds_var: &str, default: u64) -> Run {
        let number = |var: &str| std::env::var(var).ok().and_then(|v| v.parse().ok());
        let rounds = number(rounds_var).unwrap_or(default);
        let seed = number("EPU_TORTURE_SEED").unwrap_or_else(|| super::unix_now().to_bits());
        let replay = format!("EPU_TORTURE_SEED={seed} {rounds_var}={rounds}");
        Run {
            rounds,
            seed,
            replay,
        }
    }
}
