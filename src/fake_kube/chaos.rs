//! Seeded random faults (see [`super::FakeKube::chaos`]): each Kubernetes API request may be
//! answered 500, 429 with `Retry-After`, or not at all for a while (a timeout); each watch
//! may be cut mid-way or, when it resumes from a resourceVersion, answered 410 Gone. The
//! draws come from one generator seeded by [`Chaos::seed`], so the same requests in the same
//! order meet the same faults.

use std::collections::BTreeMap;
use std::time::Duration;

/// The kinds of fault, as [`super::FakeKube::injected`] counts them.
pub const FAULT_KINDS: [&str; 5] = [
    "server_error",
    "throttled",
    "timeout",
    "watch_dropped",
    "watch_expired",
];

/// The chances of each fault, per request (per watch for the last two).
#[derive(Clone, Debug)]
pub struct Chaos {
    /// The generator's seed.
    pub seed: u64,
    /// Answer 500 InternalError.
    pub server_error: f64,
    /// Answer 429 TooManyRequests with `Retry-After: retry_after` (whole seconds).
    pub throttled: f64,
    pub retry_after: u64,
    /// Answer nothing for `hold`, then 504 Timeout (as an API server's own request timeout
    /// does); a client whose timeout is shorter than `hold` gives up first.
    pub timeout: f64,
    pub hold: Duration,
    /// Cut a watch stream (the connection is reset, without the chunked body's end) after a
    /// random time up to `drop_within`.
    pub watch_dropped: f64,
    pub drop_within: Duration,
    /// Answer a watch that resumes from a resourceVersion with an ERROR event 410 Expired,
    /// as after a compaction.
    pub watch_expired: f64,
    /// Clients (the [`super::CLIENT_HEADER`]'s values) that never meet a fault: a test's own.
    pub spared: Vec<String>,
}

impl Chaos {
    /// No faults at all, with this seed: set the chances wanted.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            server_error: 0.0,
            throttled: 0.0,
            retry_after: 1,
            timeout: 0.0,
            hold: Duration::from_secs(10),
            watch_dropped: 0.0,
            drop_within: Duration::from_secs(5),
            watch_expired: 0.0,
            spared: Vec::new(),
        }
    }
}

/// What a request meets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fate {
    Answer,
    /// An error status (500, or 429 with the seconds of `Retry-After`).
    Status(u16, Option<u64>),
    /// No answer for this long, then 504.
    Hold(Duration),
}

/// What a watch meets besides its request's [`Fate`].
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct WatchFate {
    /// Answer with ERROR 410 Expired (only when resuming from a resourceVersion).
    pub expire: bool,
    /// Cut the stream after this long.
    pub drop_after: Option<Duration>,
}

/// The generator and the counts of faults injected.
pub struct ChaosState {
    pub config: Chaos,
    rng: u64,
    pub injected: BTreeMap<&'static str, u64>,
}

impl ChaosState {
    pub fn new(config: Chaos) -> Self {
        Self {
            rng: config.seed,
            config,
            injected: FAULT_KINDS.iter().map(|k| (*k, 0)).collect(),
        }
    }

    /// SplitMix64, as a uniform draw in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Draws the fate of one request (one draw), and counts the fault.
    pub fn request(&mut self) -> Fate {
        let u = self.uniform();
        let c = &self.config;
        let (fate, kind) = if u < c.server_error {
            (Fate::Status(500, None), "server_error")
        } else if u < c.server_error + c.throttled {
            (Fate::Status(429, Some(c.retry_after)), "throttled")
        } else if u < c.server_error + c.throttled + c.timeout {
            (Fate::Hold(c.hold), "timeout")
        } else {
            return Fate::Answer;
        };
        *self.injected.entry(kind).or_default() += 1;
        fate
    }

    /// Draws the fate of a watch that is answered (three draws whatever the outcome); an
    /// expiry is counted here, a drop when it happens ([`ChaosState::dropped`]).
    pub fn watch(&mut self, resuming: bool) -> WatchFate {
        let (expire, drop, when) = (self.uniform(), self.uniform(), self.uniform());
        let c = &self.config;
        if resuming && expire < c.watch_expired {
            *self.injected.entry("watch_expired").or_default() += 1;
            return WatchFate {
                expire: true,
                drop_after: None,
            };
        }
        WatchFate {
            expire: false,
            drop_after: (drop < c.watch_dropped).then(|| c.drop_within.mul_f64(when)),
        }
    }

    /// Counts a watch cut.
    pub fn dropped(&mut self) {
        *self.injected.entry("watch_dropped").or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_fates_and_the_shares_follow_the_chances() {
        let config = Chaos {
            server_error: 0.1,
            throttled: 0.2,
            timeout: 0.05,
            watch_dropped: 0.5,
            watch_expired: 0.25,
            ..Chaos::seeded(7)
        };
        let draw = |config: &Chaos| {
            let mut state = ChaosState::new(config.clone());
            let fates: Vec<Fate> = (0..20_000).map(|_| state.request()).collect();
            let watches: Vec<WatchFate> = (0..20_000).map(|i| state.watch(i % 2 == 0)).collect();
            (fates, watches, state.injected)
        };
        let (a, b) = (draw(&config), draw(&config));
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        let other = draw(&Chaos {
            seed: 8,
            ..config.clone()
        });
        assert_ne!(a.0, other.0);
        let share = |kind: &str| a.2[kind] as f64 / 20_000.0;
        assert!((share("server_error") - 0.1).abs() < 0.01, "{:?}", a.2);
        assert!((share("throttled") - 0.2).abs() < 0.01, "{:?}", a.2);
        assert!((share("timeout") - 0.05).abs() < 0.01, "{:?}", a.2);
        // Only the resuming half of the watches can expire.
        assert!((share("watch_expired") - 0.125).abs() < 0.01, "{:?}", a.2);
        let cut = a.1.iter().filter(|w| w.drop_after.is_some()).count() as f64;
        assert!((cut / 20_000.0 - 0.5 * 0.875).abs() < 0.02, "{cut}");
        assert!(
            a.1.iter()
                .filter_map(|w| w.drop_after)
                .all(|d| d < Duration::from_secs(5))
        );
        assert!(a.0.contains(&Fate::Status(429, Some(1))));
    }

    #[test]
    fn no_chances_no_faults() {
        let mut state = ChaosState::new(Chaos::seeded(1));
        assert!((0..1000).all(|_| state.request() == Fate::Answer));
        assert!((0..1000).all(|_| state.watch(true) == WatchFate::default()));
        assert!(state.injected.values().all(|n| *n == 0));
    }
}
