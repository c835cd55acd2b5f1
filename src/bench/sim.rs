//! The traffic simulator: one rollout of a canary beside a stable version, interval by
//! interval, with known true parameters.
//!
//! Model, per rollout:
//! - requests arrive as a Poisson process at the scenario's total rate and are split by the
//!   canary share of the current rollout step;
//! - each version runs several pods (stable [`SimConfig::stable_pods`], the canary a number
//!   proportional to its share, at least 1) that share the version's traffic evenly; each pod
//!   has its own multiplicative factors on error rate and latency median (log-normal, median
//!   1), drawn once per rollout;
//! - a slow drift common to both versions multiplies error rate and latency median: a
//!   mean-reverting random walk (an AR(1) process on the log scale, started from its
//!   stationary distribution), the same for both versions in each interval;
//! - each request fails with its pod's error rate; latencies are log-normal (optionally with
//!   a slowed tail, see [`super::Tail`]) and are counted into [`BUCKETS`], independently of
//!   whether the request failed.
//!
//! With Poisson arrivals, the counts of requests in each (failed or not) x (latency bucket)
//! cell are independent Poisson variables, so they are drawn directly as such; requests,
//! errors and bucket counts are sums of those cells and therefore agree exactly (the buckets
//! of an interval add up to its requests). Sums of Poissons over pods are Poisson with the
//! summed mean, so the pods of a version are pooled before drawing.

use super::{BUCKETS, ErrorPattern, Interval, Tail, Truth, VersionInterval, VersionTruth};
use crate::source::simulated::Rng;
use serde::Serialize;

/// One step of a rollout: a canary share held for some intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    /// Canary share of traffic (0..1).
    pub canary_share: f64,
    /// Number of intervals the share is held.
    pub intervals: usize,
}

/// How rollouts are simulated, independent of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// The rollout steps, in order.
    pub steps: Vec<Step>,
    /// Length of one interval in seconds.
    pub interval_seconds: f64,
    /// Pods of the stable version (the canary gets `round(share * stable_pods)`, at least 1).
    pub stable_pods: usize,
    /// Log-scale spread of the per-pod error-rate factor.
    pub pod_error_sigma: f64,
    /// Log-scale spread of the per-pod latency-median factor.
    pub pod_latency_sigma: f64,
    /// Standard deviation of one interval's step of the shared log drift.
    pub drift_sd: f64,
    /// Share of the drift's deviation from 1 that is undone each interval (0 = a plain random
    /// walk, 1 = independent noise).
    pub drift_reversion: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            steps: [0.10, 0.25, 0.50, 0.75]
                .iter()
                .map(|&canary_share| Step {
                    canary_share,
                    intervals: 10,
                })
                .collect(),
            interval_seconds: 60.0,
            stable_pods: 10,
            // Pod-to-pod spread well inside the benchmark's tolerances (errors 20%, latency
            // 5%), as in a healthy fleet: with a wider spread, some "unchanged" canaries
            // would run on pods genuinely worse than the tolerance allows, and finding them
            // would be counted as a false abort.
            pod_error_sigma: 0.05,
            pod_latency_sigma: 0.015,
            drift_sd: 0.02,
            drift_reversion: 0.1,
        }
    }
}

impl SimConfig {
    /// A configuration with neither pod heterogeneity nor drift (for tests and checks).
    pub fn homogeneous() -> Self {
        Self {
            pod_error_sigma: 0.0,
            pod_latency_sigma: 0.0,
            drift_sd: 0.0,
            ..Self::default()
        }
    }

    /// The canary share of each interval of a rollout.
    pub fn shares(&self) -> Vec<f64> {
        self.steps
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.canary_share.clamp(0.0, 1.0), s.intervals))
            .collect()
    }

    /// Number of intervals in a rollout.
    pub fn intervals(&self) -> usize {
        self.steps.iter().map(|s| s.intervals).sum()
    }

    /// Pods the canary runs at `share`.
    pub fn canary_pods(&self, share: f64) -> usize {
        ((share * self.stable_pods as f64).round() as usize).max(1)
    }
}

/// Whether a scenario has a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The canary behaves like stable: every abort is a false abort.
    #[serde(rename = "aa")]
    AA,
    /// The canary is worse: every abort is a detection.
    Regression,
}

/// A named benchmark scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Name used by `--scenario`.
    pub name: &'static str,
    /// A / A or regression.
    pub kind: Kind,
    /// Total requests per second over both versions.
    pub rps: f64,
    /// The true parameters.
    pub truth: Truth,
}

/// Base error rate of every scenario.
pub const BASE_ERROR_RATE: f64 = 0.005;
/// Median latency of every scenario, in seconds.
pub const BASE_MEDIAN: f64 = 0.080;
/// Log-normal sigma of latency in every scenario.
pub const BASE_SIGMA: f64 = 0.5;

/// The nominal stable version of every scenario.
pub fn base_version() -> VersionTruth {
    VersionTruth {
        error_rate: BASE_ERROR_RATE,
        latency_median: BASE_MEDIAN,
        latency_sigma: BASE_SIGMA,
        tail: None,
    }
}

/// Every scenario, in a fixed order (the order is part of each rollout's seed).
pub fn scenarios() -> Vec<Scenario> {
    let base = base_version();
    let aa = |name, rps| Scenario {
        name,
        kind: Kind::AA,
        rps,
        truth: Truth {
            stable: base,
            canary: base,
            canary_errors: ErrorPattern::Always,
        },
    };
    let regression = |name, canary: VersionTruth, canary_errors| Scenario {
        name,
        kind: Kind::Regression,
        rps: 20.0,
        truth: Truth {
            stable: base,
            canary,
            canary_errors,
        },
    };
    let errors = |factor: f64| VersionTruth {
        error_rate: BASE_ERROR_RATE * factor,
        ..base
    };
    let median = |factor: f64| VersionTruth {
        latency_median: BASE_MEDIAN * factor,
        ..base
    };
    vec![
        aa("aa-low", 2.0),
        aa("aa-medium", 20.0),
        aa("aa-high", 200.0),
        regression("errors-x1.5", errors(1.5), ErrorPattern::Always),
        regression("errors-x2", errors(2.0), ErrorPattern::Always),
        regression("errors-x5", errors(5.0), ErrorPattern::Always),
        regression("latency-median+10%", median(1.10), ErrorPattern::Always),
        regression("latency-median+25%", median(1.25), ErrorPattern::Always),
        regression(
            "latency-tail-p99x2",
            VersionTruth {
                tail: Some(Tail {
                    fraction: 0.02,
                    factor: 2.0,
                }),
                ..base
            },
            ErrorPattern::Always,
        ),
        regression(
            "intermittent-errors",
            errors(3.0),
            ErrorPattern::Alternating { block: 3 },
        ),
    ]
}

/// The seed of one rollout, from the base seed, the scenario's index in [`scenarios`] and
/// the rollout's index (SplitMix64-style mixing, so nearby inputs give unrelated streams).
pub fn rollout_seed(base: u64, scenario: usize, rollout: usize) -> u64 {
    let mut rng = Rng::new(base);
    let a = rng.next_u64();
    let mut rng = Rng::new(a ^ (scenario as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = rng.next_u64();
    Rng::new(b ^ (rollout as u64).wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
}

/// Per-rollout factors of one version's pods.
struct Pods {
    error: Vec<f64>,
    latency: Vec<f64>,
}

impl Pods {
    fn draw(rng: &mut Rng, n: usize, config: &SimConfig) -> Self {
        let mut factor = |sigma: f64| (sigma * rng.normal()).exp();
        let error = (0..n).map(|_| factor(config.pod_error_sigma)).collect();
        let latency = (0..n).map(|_| factor(config.pod_latency_sigma)).collect();
        Self { error, latency }
    }
}

/// The shared mean-reverting log drift of one quantity.
struct Drift {
    log: f64,
    sd: f64,
    keep: f64,
}

impl Drift {
    fn new(rng: &mut Rng, sd: f64, reversion: f64) -> Self {
        let keep = (1.0 - reversion).clamp(0.0, 1.0);
        // Stationary spread of the AR(1) process; a plain walk (keep = 1) starts at 0.
        let stationary = if keep < 1.0 {
            sd / (1.0 - keep * keep).sqrt()
        } else {
            0.0
        };
        Self {
            log: stationary * rng.normal(),
            sd,
            keep,
        }
    }

    fn factor(&self) -> f64 {
        self.log.exp()
    }

    fn advance(&mut self, rng: &mut Rng) {
        self.log = self.keep * self.log + self.sd * rng.normal();
    }
}

/// Chance of a latency landing in each bucket (the last is +Inf) at latency median `median`.
fn bucket_probabilities(version: &VersionTruth, median: f64, out: &mut [f64]) {
    let mut previous = 0.0;
    for (slot, &le) in out.iter_mut().zip(BUCKETS.iter()) {
        let cdf = version.latency_cdf_with_median(le, median);
        *slot = (cdf - previous).max(0.0);
        previous = cdf;
    }
    if let Some(last) = out.last_mut() {
        *last = (1.0 - previous).max(0.0);
    }
}

/// Draws one version's interval: `requests` is the expected number of requests, spread
/// evenly over the first `pods` pods.
#[allow(clippy::too_many_arguments)]
fn draw_version(
    rng: &mut Rng,
    version: &VersionTruth,
    error_rate: f64,
    requests: f64,
    pods: &Pods,
    n_pods: usize,
    drift_error: f64,
    drift_latency: f64,
) -> VersionInterval {
    let cells = BUCKETS.len() + 1;
    let mut failed = vec![0.0; cells];
    let mut ok = vec![0.0; cells];
    let mut probabilities = vec![0.0; cells];
    let n_pods = n_pods.clamp(1, pods.error.len().max(1));
    let per_pod = requests / n_pods as f64;
    for (pod_error, pod_latency) in pods.error.iter().zip(&pods.latency).take(n_pods) {
        let rate = (error_rate * pod_error * drift_error).clamp(0.0, 1.0);
        bucket_probabilities(
            version,
            version.latency_median * pod_latency * drift_latency,
            &mut probabilities,
        );
        for (k, p) in probabilities.iter().enumerate() {
            failed[k] += per_pod * rate * p;
            ok[k] += per_pod * (1.0 - rate) * p;
        }
    }
    let mut out = VersionInterval {
        requests: 0,
        errors: 0,
        buckets: vec![0; cells],
    };
    for k in 0..cells {
        let f = rng.poisson(failed[k]) as u64;
        let s = rng.poisson(ok[k]) as u64;
        out.errors += f;
        out.requests += f + s;
        out.buckets[k] = f + s;
    }
    out
}

/// Simulates one rollout of `scenario`, deterministically from `seed`.
pub fn simulate(scenario: &Scenario, config: &SimConfig, seed: u64) -> Vec<Interval> {
    let mut rng = Rng::new(seed);
    let shares = config.shares();
    let max_canary_pods = shares
        .iter()
        .map(|&s| config.canary_pods(s))
        .max()
        .unwrap_or(1);
    let stable_pods = Pods::draw(&mut rng, config.stable_pods.max(1), config);
    let canary_pods = Pods::draw(&mut rng, max_canary_pods, config);
    let mut drift_error = Drift::new(&mut rng, config.drift_sd, config.drift_reversion);
    let mut drift_latency = Drift::new(&mut rng, config.drift_sd, config.drift_reversion);
    let truth = &scenario.truth;
    let mut out = Vec::with_capacity(shares.len());
    for (index, &share) in shares.iter().enumerate() {
        if index > 0 {
            drift_error.advance(&mut rng);
            drift_latency.advance(&mut rng);
        }
        let total = scenario.rps.max(0.0) * config.interval_seconds;
        let stable = draw_version(
            &mut rng,
            &truth.stable,
            truth.stable.error_rate,
            total * (1.0 - share),
            &stable_pods,
            config.stable_pods,
            drift_error.factor(),
            drift_latency.factor(),
        );
        let canary = draw_version(
            &mut rng,
            &truth.canary,
            truth.canary_error_rate_at(index),
            total * share,
            &canary_pods,
            config.canary_pods(share),
            drift_error.factor(),
            drift_latency.factor(),
        );
        out.push(Interval {
            index,
            seconds: config.interval_seconds,
            canary_share: share,
            stable,
            canary,
        });
    }
    out
}

/// The scenario called `name`.
pub fn scenario(name: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Scenario {
        scenario(name).unwrap_or_else(|| panic!("no scenario {name}"))
    }

    /// Sums of the canary's and stable's counts over many rollouts of `scenario`.
    fn totals(scenario: &Scenario, config: &SimConfig, rollouts: usize) -> [VersionInterval; 2] {
        let mut sums = [
            VersionInterval {
                buckets: vec![0; BUCKETS.len() + 1],
                ..Default::default()
            },
            VersionInterval {
                buckets: vec![0; BUCKETS.len() + 1],
                ..Default::default()
            },
        ];
        for r in 0..rollouts {
            for interval in simulate(scenario, config, rollout_seed(1, 0, r)) {
                for (sum, v) in sums.iter_mut().zip([&interval.stable, &interval.canary]) {
                    sum.requests += v.requests;
                    sum.errors += v.errors;
                    for (a, b) in sum.buckets.iter_mut().zip(&v.buckets) {
                        *a += b;
                    }
                }
            }
        }
        sums
    }

    #[test]
    fn requests_and_errors_match_the_parameters() {
        for config in [SimConfig::homogeneous(), SimConfig::default()] {
            let scenario = named("aa-medium");
            let rollouts = 50;
            let [stable, canary] = totals(&scenario, &config, rollouts);
            let shares = config.shares();
            let seconds = config.interval_seconds * rollouts as f64;
            let expected_canary: f64 = shares.iter().map(|s| s * scenario.rps * seconds).sum();
            let expected_stable: f64 = shares
                .iter()
                .map(|s| (1.0 - s) * scenario.rps * seconds)
                .sum();
            for (got, expected) in [
                (canary.requests, expected_canary),
                (stable.requests, expected_stable),
            ] {
                let sd = expected.sqrt();
                assert!(
                    (got as f64 - expected).abs() < 4.0 * sd,
                    "{got} vs {expected}"
                );
            }
            for v in [&stable, &canary] {
                let n = v.requests as f64;
                let rate = v.errors as f64 / n;
                // Binomial sampling error, plus a little for the heterogeneity and drift of
                // the default configuration (median-1 factors: the mean moves by ~1%).
                let sd = (BASE_ERROR_RATE * (1.0 - BASE_ERROR_RATE) / n).sqrt();
                let slack = if config.drift_sd > 0.0 {
                    0.06 * BASE_ERROR_RATE
                } else {
                    0.0
                };
                assert!(
                    (rate - BASE_ERROR_RATE).abs() < 4.0 * sd + slack,
                    "{rate} from {n} requests"
                );
                assert_eq!(v.buckets.iter().sum::<u64>(), v.requests);
            }
        }
    }

    #[test]
    fn every_interval_is_consistent() {
        let config = SimConfig::default();
        for scenario in scenarios() {
            let intervals = simulate(&scenario, &config, 3);
            assert_eq!(intervals.len(), config.intervals());
            for (i, interval) in intervals.iter().enumerate() {
                assert_eq!(interval.index, i);
                for v in [&interval.stable, &interval.canary] {
                    assert_eq!(v.buckets.len(), BUCKETS.len() + 1);
                    assert_eq!(v.buckets.iter().sum::<u64>(), v.requests);
                    assert!(v.errors <= v.requests);
                }
            }
        }
    }

    #[test]
    fn tail_regression_doubles_p99_and_keeps_p50() {
        let scenario = Scenario {
            rps: 20_000.0,
            ..named("latency-tail-p99x2")
        };
        let [stable, canary] = totals(&scenario, &SimConfig::homogeneous(), 2);
        let q = |v: &VersionInterval, p| v.latency_quantile(p).unwrap_or(f64::NAN);
        let p50 = q(&canary, 0.5) / q(&stable, 0.5);
        let p99 = q(&canary, 0.99) / q(&stable, 0.99);
        assert!((p50 - 1.0).abs() < 0.02, "p50 ratio {p50}");
        assert!((p99 - 2.0).abs() < 0.1, "p99 ratio {p99}");
        // And the true quantiles: exactly unchanged and exactly doubled.
        let t = scenario.truth;
        assert!(
            (t.canary.latency_quantile(0.5) / t.stable.latency_quantile(0.5) - 1.0).abs() < 0.02
        );
        assert!(
            (t.canary.latency_quantile(0.99) / t.stable.latency_quantile(0.99) - 2.0).abs() < 1e-9
        );
    }

    #[test]
    fn intermittent_errors_come_in_blocks_of_three() {
        let scenario = Scenario {
            rps: 2_000.0,
            ..named("intermittent-errors")
        };
        let config = SimConfig::homogeneous();
        let mut bad = (0u64, 0u64);
        let mut good = (0u64, 0u64);
        for r in 0..5 {
            for interval in simulate(&scenario, &config, rollout_seed(2, 9, r)) {
                let slot = if (interval.index / 3) % 2 == 0 {
                    &mut bad
                } else {
                    &mut good
                };
                slot.0 += interval.canary.errors;
                slot.1 += interval.canary.requests;
            }
        }
        let rate = |(e, n): (u64, u64)| e as f64 / n as f64;
        let (bad, good) = (rate(bad), rate(good));
        assert!(
            (bad / BASE_ERROR_RATE - 3.0).abs() < 0.15,
            "bad blocks {bad}"
        );
        assert!(
            (good / BASE_ERROR_RATE - 1.0).abs() < 0.1,
            "good blocks {good}"
        );
        let truth = scenario.truth;
        let pattern: Vec<bool> = (0..12)
            .map(|i| truth.canary_error_rate_at(i) > BASE_ERROR_RATE)
            .collect();
        let expected = [true, true, true, false, false, false];
        assert_eq!(pattern, [expected, expected].concat());
    }

    #[test]
    fn same_seed_same_rollout() {
        let config = SimConfig::default();
        let scenario = named("errors-x2");
        assert_eq!(
            simulate(&scenario, &config, 11),
            simulate(&scenario, &config, 11)
        );
        assert_ne!(
            simulate(&scenario, &config, 11),
            simulate(&scenario, &config, 12)
        );
        assert_ne!(rollout_seed(1, 0, 1), rollout_seed(1, 1, 0));
    }

    #[test]
    fn canary_pods_follow_the_share() {
        let config = SimConfig::default();
        let pods: Vec<usize> = [0.0, 0.1, 0.25, 0.5, 0.75]
            .iter()
            .map(|&s| config.canary_pods(s))
            .collect();
        assert_eq!(pods, [1, 1, 3, 5, 8]);
        assert_eq!(config.intervals(), 40);
    }
}
