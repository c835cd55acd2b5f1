//! The traffic simulator: one closed-loop rollout of a canary beside a stable version,
//! interval by interval, with known true parameters. The rollout's controller sets the
//! weight before each interval; the simulator splits that interval's traffic by it and
//! scales the canary's pods to match.
//!
//! Model, per rollout:
//! - requests arrive as a Poisson process at the scenario's total rate (which may ramp up
//!   during the rollout) and are split by the canary's weight (or, in a scenario whose split
//!   is off, by a share that differs from it);
//! - each version runs several pods (stable [`SimConfig::stable_pods`], the canary a number
//!   proportional to its weight, at least 1) that share the version's traffic evenly; each pod
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
//!
//! Every draw of a rollout comes from one seeded stream, and the per-rollout factors (pods,
//! drift) are drawn first, so every detector meets the same pods and drift in a rollout.

use super::{
    BUCKETS, ErrorPattern, Interval, IntervalTruth, Tail, Tolerances, Truth, VersionInterval,
    VersionTruth,
};
use crate::source::simulated::Rng;
use serde::Serialize;

/// How rollouts are simulated, independent of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimConfig {
    /// Length of one interval in seconds.
    pub interval_seconds: f64,
    /// Pods of the stable version (the canary gets `round(weight * stable_pods)`, at least 1).
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

    /// Pods the canary runs at `weight`.
    pub fn canary_pods(&self, weight: f64) -> usize {
        ((weight * self.stable_pods as f64).round() as usize).max(1)
    }
}

/// What a good judge should do with a scenario's canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Healthy (or within tolerance): promote it; every abort is a false abort.
    Healthy,
    /// Worse than the tolerance: abort it (or at least never promote it).
    Regression,
    /// Healthy, but the router does not split as the weight says: hold or abort it, naming
    /// the split.
    SplitOff,
}

/// A named benchmark scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Name used by `--scenario`.
    pub name: &'static str,
    /// What a good judge does with it.
    pub kind: Kind,
    /// Total requests per second over both versions at the start of the rollout.
    pub rps: f64,
    /// The total rate grows linearly to `rps * ramp` over the horizon (1 = steady).
    pub ramp: f64,
    /// The canary receives `split` times the share its weight says (1 = a correct split).
    pub split: f64,
    /// Tolerances of this scenario's templates, when they differ from the run's.
    pub tolerances: Option<Tolerances>,
    /// The true parameters.
    pub truth: Truth,
}

impl Scenario {
    /// The total request rate at `minute` of a rollout whose horizon is `horizon` minutes.
    pub fn rps_at(&self, minute: f64, horizon: f64) -> f64 {
        let progress = if horizon > 0.0 {
            (minute / horizon).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.rps.max(0.0) * (1.0 + (self.ramp - 1.0) * progress)
    }
}

/// Base error rate of every scenario.
pub const BASE_ERROR_RATE: f64 = 0.005;
/// Median latency of every scenario, in seconds.
pub const BASE_MEDIAN: f64 = 0.080;
/// Log-normal sigma of latency in every scenario.
pub const BASE_SIGMA: f64 = 0.5;
/// Total request rate of every scenario that does not name one.
pub const BASE_RPS: f64 = 20.0;

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
    let scenario = |name, kind, canary: VersionTruth| Scenario {
        name,
        kind,
        rps: BASE_RPS,
        ramp: 1.0,
        split: 1.0,
        tolerances: None,
        truth: Truth {
            stable: base,
            canary,
            canary_errors: ErrorPattern::Always,
            onset_weight: None,
        },
    };
    let aa = |name, rps| Scenario {
        rps,
        ..scenario(name, Kind::Healthy, base)
    };
    let errors = |factor: f64| VersionTruth {
        error_rate: BASE_ERROR_RATE * factor,
        ..base
    };
    let median = |factor: f64| VersionTruth {
        latency_median: BASE_MEDIAN * factor,
        ..base
    };
    let late = |name, canary| {
        let mut s = scenario(name, Kind::Regression, canary);
        s.truth.onset_weight = Some(0.5);
        s
    };
    let sparse = VersionTruth {
        error_rate: 0.0005,
        ..base
    };
    let mut intermittent = scenario("intermittent", Kind::Regression, errors(3.0));
    intermittent.truth.canary_errors = ErrorPattern::Alternating { block: 3 };
    vec![
        aa("aa-2rps", 2.0),
        aa("aa-20rps", 20.0),
        aa("aa-200rps", 200.0),
        aa("aa-2000rps", 2000.0),
        scenario("errors-x1.5", Kind::Regression, errors(1.5)),
        scenario("errors-x2", Kind::Regression, errors(2.0)),
        scenario("errors-x5", Kind::Regression, errors(5.0)),
        scenario("latency+10%", Kind::Regression, median(1.10)),
        scenario("latency+25%", Kind::Regression, median(1.25)),
        scenario(
            "p99-x2",
            Kind::Regression,
            VersionTruth {
                tail: Some(Tail {
                    fraction: 0.02,
                    factor: 2.0,
                }),
                ..base
            },
        ),
        intermittent,
        late("late-errors-x3", errors(3.0)),
        late("late-latency+25%", median(1.25)),
        Scenario {
            tolerances: Some(Tolerances {
                errors: 0.20,
                ..Tolerances::default()
            }),
            ..scenario("within-tolerance", Kind::Healthy, errors(1.1))
        },
        Scenario {
            split: 0.5,
            ..scenario("split-off", Kind::SplitOff, base)
        },
        Scenario {
            truth: Truth {
                stable: sparse,
                canary: sparse,
                canary_errors: ErrorPattern::Always,
                onset_weight: None,
            },
            ..scenario("sparse-errors", Kind::Healthy, base)
        },
        Scenario {
            ramp: 3.0,
            ..scenario("diurnal", Kind::Healthy, base)
        },
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

/// A version's average rates over its pods in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct MeanRates {
    error_rate: f64,
    slow_rate: f64,
    /// Geometric mean of the pods' latency medians.
    median: f64,
}

/// Draws one version's interval: `requests` is the expected number of requests, spread
/// evenly over the first `pods` pods. Also returns the version's average error rate and
/// share of requests above `BUCKETS[slow_bound]`.
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
    slow_bound: usize,
) -> (VersionInterval, MeanRates) {
    let cells = BUCKETS.len() + 1;
    let mut failed = vec![0.0; cells];
    let mut ok = vec![0.0; cells];
    let mut probabilities = vec![0.0; cells];
    let n_pods = n_pods.clamp(1, pods.error.len().max(1));
    let per_pod = requests / n_pods as f64;
    let mut mean = MeanRates::default();
    for (pod_error, pod_latency) in pods.error.iter().zip(&pods.latency).take(n_pods) {
        let rate = (error_rate * pod_error * drift_error).clamp(0.0, 1.0);
        bucket_probabilities(
            version,
            version.latency_median * pod_latency * drift_latency,
            &mut probabilities,
        );
        mean.error_rate += rate / n_pods as f64;
        mean.median += (version.latency_median * pod_latency * drift_latency).ln() / n_pods as f64;
        mean.slow_rate += probabilities.iter().skip(slow_bound + 1).sum::<f64>() / n_pods as f64;
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
    mean.median = mean.median.exp();
    (out, mean)
}

/// What the canary did to users in one interval, beyond what stable would have done with
/// the same requests: the benchmark's harm.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Excess {
    /// Failed requests beyond the stable's rate.
    pub errors: f64,
    /// Requests slower than the stable's p99 bound, beyond the stable's share of them.
    pub slow: f64,
}

/// Index into [`BUCKETS`] of the bound nearest (in log scale) to the stable's true p99:
/// requests above it are "slow" in the harm figures.
pub fn slow_bound(stable: &VersionTruth) -> usize {
    super::nearest_bound(stable.latency_quantile(0.99))
}

/// One rollout in progress: call [`Simulation::next`] with the weight of each interval.
pub struct Simulation<'a> {
    scenario: &'a Scenario,
    config: &'a SimConfig,
    horizon_minutes: f64,
    rng: Rng,
    stable_pods: Pods,
    canary_pods: Pods,
    drift_error: Drift,
    drift_latency: Drift,
    index: usize,
    regressed: bool,
    slow_bound: usize,
    seed: u64,
}

impl<'a> Simulation<'a> {
    /// A rollout of `scenario`, deterministic from `seed`, whose traffic ramp (if any) spans
    /// `horizon_minutes`.
    pub fn new(
        scenario: &'a Scenario,
        config: &'a SimConfig,
        seed: u64,
        horizon_minutes: f64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let stable_pods = Pods::draw(&mut rng, config.stable_pods.max(1), config);
        let canary_pods = Pods::draw(&mut rng, config.stable_pods.max(1), config);
        let drift_error = Drift::new(&mut rng, config.drift_sd, config.drift_reversion);
        let drift_latency = Drift::new(&mut rng, config.drift_sd, config.drift_reversion);
        Self {
            scenario,
            config,
            horizon_minutes,
            rng,
            stable_pods,
            canary_pods,
            drift_error,
            drift_latency,
            index: 0,
            regressed: false,
            slow_bound: slow_bound(&scenario.truth.stable),
            seed,
        }
    }

    /// The interval before the rollout, with all traffic on stable. It is drawn from its own
    /// stream, so the rollout's intervals are the same with or without it.
    pub fn baseline(&self) -> Interval {
        let mut rng = Rng::new(self.seed ^ 0x5bd1_e995_u64.rotate_left(17));
        let total = self.scenario.rps_at(0.0, self.horizon_minutes) * self.config.interval_seconds;
        let truth = &self.scenario.truth;
        let (stable, mean) = draw_version(
            &mut rng,
            &truth.stable,
            truth.stable.error_rate,
            total,
            &self.stable_pods,
            self.config.stable_pods,
            self.drift_error.factor(),
            self.drift_latency.factor(),
            self.slow_bound,
        );
        Interval {
            index: 0,
            seconds: self.config.interval_seconds,
            weight: 0.0,
            canary_share: 0.0,
            stable,
            canary: VersionInterval {
                requests: 0,
                errors: 0,
                buckets: vec![0; BUCKETS.len() + 1],
            },
            truth: IntervalTruth {
                stable_error_rate: mean.error_rate,
                stable_median: mean.median,
            },
        }
    }

    /// Whether the canary's regression has begun.
    pub fn regressed(&self) -> bool {
        self.regressed || self.scenario.truth.onset_weight.is_none()
    }

    /// The next interval at canary weight `weight` (0..1), with the harm the canary did in it.
    pub fn next(&mut self, weight: f64) -> (Interval, Excess) {
        let weight = weight.clamp(0.0, 1.0);
        let index = self.index;
        if index > 0 {
            self.drift_error.advance(&mut self.rng);
            self.drift_latency.advance(&mut self.rng);
        }
        self.index += 1;
        let truth = &self.scenario.truth;
        if truth.onset_weight.is_some_and(|w| weight + 1e-9 >= w) {
            self.regressed = true;
        }
        let share = (weight * self.scenario.split).clamp(0.0, 1.0);
        let minute = index as f64 * self.config.interval_seconds / 60.0;
        let total =
            self.scenario.rps_at(minute, self.horizon_minutes) * self.config.interval_seconds;
        let (canary_version, canary_rate) = truth.canary_at(index, self.regressed());
        let (drift_e, drift_l) = (self.drift_error.factor(), self.drift_latency.factor());
        let (stable, stable_mean) = draw_version(
            &mut self.rng,
            &truth.stable,
            truth.stable.error_rate,
            total * (1.0 - share),
            &self.stable_pods,
            self.config.stable_pods,
            drift_e,
            drift_l,
            self.slow_bound,
        );
        let (canary, _) = draw_version(
            &mut self.rng,
            &canary_version,
            canary_rate,
            total * share,
            &self.canary_pods,
            self.config.canary_pods(weight),
            drift_e,
            drift_l,
            self.slow_bound,
        );
        let n = canary.requests as f64;
        let slow: u64 = canary.buckets.iter().skip(self.slow_bound + 1).sum();
        let excess = Excess {
            errors: canary.errors as f64 - n * stable_mean.error_rate,
            slow: slow as f64 - n * stable_mean.slow_rate,
        };
        let interval = Interval {
            index,
            seconds: self.config.interval_seconds,
            weight,
            canary_share: share,
            stable,
            canary,
            truth: IntervalTruth {
                stable_error_rate: stable_mean.error_rate,
                stable_median: stable_mean.median,
            },
        };
        (interval, excess)
    }

    /// The harm a canary at full traffic would do per interval on average from now on, at
    /// `minute` of the rollout: for a promoted canary, whose harm goes on after the decision.
    pub fn expected_excess_at_full(&self, minute: f64) -> Excess {
        let truth = &self.scenario.truth;
        let (canary, rate) = truth.canary_at(self.index, true);
        let requests =
            self.scenario.rps_at(minute, self.horizon_minutes) * self.config.interval_seconds;
        let le = BUCKETS[self.slow_bound];
        let slow = |v: &VersionTruth| 1.0 - v.latency_cdf(le);
        // Alternating errors are bad half the time.
        let rate = match truth.canary_errors {
            ErrorPattern::Always => rate,
            ErrorPattern::Alternating { .. } => (canary.error_rate + truth.stable.error_rate) / 2.0,
        };
        Excess {
            errors: requests * (rate - truth.stable.error_rate),
            slow: requests * (slow(&canary) - slow(&truth.stable)),
        }
    }
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

    /// Sums of the stable's and canary's counts over `intervals` intervals at `weight`.
    fn totals(
        scenario: &Scenario,
        config: &SimConfig,
        weight: f64,
        intervals: usize,
    ) -> [VersionInterval; 2] {
        let mut sums = [VersionInterval::default(), VersionInterval::default()];
        let mut sim = Simulation::new(scenario, config, 7, 60.0);
        for _ in 0..intervals {
            let (i, _) = sim.next(weight);
            for (sum, v) in sums.iter_mut().zip([&i.stable, &i.canary]) {
                sum.requests += v.requests;
                sum.errors += v.errors;
                assert_eq!(v.buckets.iter().sum::<u64>(), v.requests);
                assert!(v.errors <= v.requests);
            }
        }
        sums
    }

    #[test]
    fn traffic_is_split_by_the_weight_and_errors_match_the_rate() {
        let s = named("aa-2000rps");
        let config = SimConfig::homogeneous();
        for weight in [0.1, 0.5] {
            let [stable, canary] = totals(&s, &config, weight, 20);
            let n = (stable.requests + canary.requests) as f64;
            assert!((n / (2000.0 * 60.0 * 20.0) - 1.0).abs() < 0.01, "{n}");
            let share = canary.requests as f64 / n;
            assert!((share - weight).abs() < 0.005, "{share} at {weight}");
            for v in [&stable, &canary] {
                let rate = v.errors as f64 / v.requests as f64;
                let sd = (BASE_ERROR_RATE / v.requests as f64).sqrt();
                assert!((rate - BASE_ERROR_RATE).abs() < 4.0 * sd, "{rate}");
            }
        }
    }

    #[test]
    fn a_split_off_canary_gets_half_its_weight() {
        let s = named("split-off");
        let [stable, canary] = totals(&s, &SimConfig::homogeneous(), 0.1, 200);
        let share = canary.requests as f64 / (stable.requests + canary.requests) as f64;
        assert!((share - 0.05).abs() < 0.003, "{share}");
    }

    #[test]
    fn a_late_regression_starts_when_the_weight_reaches_half() {
        let s = Scenario {
            rps: 20_000.0,
            ..named("late-errors-x3")
        };
        let config = SimConfig::homogeneous();
        let mut sim = Simulation::new(&s, &config, 3, 60.0);
        let rate = |i: &Interval| i.canary.errors as f64 / i.canary.requests as f64;
        for _ in 0..5 {
            let (i, excess) = sim.next(0.1);
            assert!(
                (rate(&i) / BASE_ERROR_RATE - 1.0).abs() < 0.2,
                "{}",
                rate(&i)
            );
            // 600 errors expected of 120,000 canary requests: within four standard deviations.
            assert!(excess.errors.abs() < 100.0, "{excess:?}");
            assert!(!sim.regressed());
        }
        let (i, excess) = sim.next(0.5);
        assert!(sim.regressed());
        assert!(
            (rate(&i) / BASE_ERROR_RATE - 3.0).abs() < 0.2,
            "{}",
            rate(&i)
        );
        // Twice the stable's errors in excess: 2 * 0.5% of 600,000 requests.
        assert!((excess.errors / 6000.0 - 1.0).abs() < 0.1, "{excess:?}");
        // Once begun, it stays.
        let (i, _) = sim.next(0.1);
        assert!(
            (rate(&i) / BASE_ERROR_RATE - 3.0).abs() < 0.3,
            "{}",
            rate(&i)
        );
    }

    #[test]
    fn diurnal_traffic_triples_over_the_horizon() {
        let s = named("diurnal");
        assert_eq!(s.rps_at(0.0, 60.0), 20.0);
        assert_eq!(s.rps_at(30.0, 60.0), 40.0);
        assert_eq!(s.rps_at(60.0, 60.0), 60.0);
        assert_eq!(s.rps_at(90.0, 60.0), 60.0);
    }

    #[test]
    fn a_slow_tail_is_excess_slow_requests() {
        let s = Scenario {
            rps: 20_000.0,
            ..named("p99-x2")
        };
        let config = SimConfig::homogeneous();
        let mut sim = Simulation::new(&s, &config, 5, 60.0);
        let (i, excess) = sim.next(0.5);
        // The stable's p99 is near 0.25 s: its slowest 1.1% are above it, the canary's 2%.
        assert_eq!(BUCKETS[slow_bound(&s.truth.stable)], 0.25);
        let n = i.canary.requests as f64;
        assert!(
            (excess.slow / (n * (0.02 - 0.0113)) - 1.0).abs() < 0.1,
            "{excess:?}"
        );
        assert!(excess.errors.abs() < 4.0 * (n * BASE_ERROR_RATE).sqrt());
        let full = sim.expected_excess_at_full(1.0);
        assert!(
            (full.slow / (20_000.0 * 60.0 * (0.02 - 0.0113)) - 1.0).abs() < 0.05,
            "{full:?}"
        );
    }

    #[test]
    fn same_seed_same_rollout_and_the_baseline_does_not_disturb_it() {
        let s = named("errors-x2");
        let config = SimConfig::default();
        let run = |baseline: bool, seed| {
            let mut sim = Simulation::new(&s, &config, seed, 60.0);
            if baseline {
                let b = sim.baseline();
                assert_eq!(b.canary.requests, 0);
                assert!(b.stable.requests > 0);
            }
            (0..5).map(|_| sim.next(0.1).0).collect::<Vec<_>>()
        };
        assert_eq!(run(false, 11), run(true, 11));
        assert_ne!(run(false, 11), run(false, 12));
        assert_ne!(rollout_seed(1, 0, 1), rollout_seed(1, 1, 0));
    }

    #[test]
    fn canary_pods_follow_the_weight_and_the_scenarios_are_the_issues() {
        let config = SimConfig::default();
        let pods: Vec<usize> = [0.0, 0.1, 0.5, 1.0]
            .iter()
            .map(|&w| config.canary_pods(w))
            .collect();
        assert_eq!(pods, [1, 1, 5, 10]);
        let names: Vec<&str> = scenarios().iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "aa-2rps",
                "aa-20rps",
                "aa-200rps",
                "aa-2000rps",
                "errors-x1.5",
                "errors-x2",
                "errors-x5",
                "latency+10%",
                "latency+25%",
                "p99-x2",
                "intermittent",
                "late-errors-x3",
                "late-latency+25%",
                "within-tolerance",
                "split-off",
                "sparse-errors",
                "diurnal"
            ]
        );
    }
}
