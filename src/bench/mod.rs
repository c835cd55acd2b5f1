//! The detection benchmark: simulated canary-versus-stable rollouts with known truth, and
//! detectors (abort rules) that watch them interval by interval.
//!
//! - [`sim`] simulates the traffic of one rollout (Poisson arrivals, log-normal latencies,
//!   pod heterogeneity and a shared drift) for each named scenario;
//! - [`vigil`] is vigil's own rule: the judge's sequential e-processes;
//! - [`kayenta`], [`flagger`] and [`oracle`] are the baseline detectors;
//! - [`detection`] runs every detector on the same simulated rollouts and reports false-abort
//!   rates, detection power and time to detect.
//!
//! A detector sees only what a real one could read from Prometheus: per-interval request,
//! error and latency-bucket counts of both versions ([`Interval`]). Only the oracle is given
//! the scenario's [`Truth`].

pub mod fake_prometheus;
pub mod flagger;
pub mod kayenta;
pub mod oracle;
pub mod rollouts;
pub mod sim;
pub mod vigil;

use crate::stats::histogram::{self, Bucket};
use serde::Serialize;

/// Latency bucket upper bounds in seconds (the last bucket is +Inf and not listed).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Index into [`BUCKETS`] of the bound nearest to `x` in log scale.
pub fn nearest_bound(x: f64) -> usize {
    let mut best = 0;
    for (i, le) in BUCKETS.iter().enumerate() {
        if (le / x).ln().abs() < (BUCKETS[best] / x).ln().abs() {
            best = i;
        }
    }
    best
}

/// One version's traffic in one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionInterval {
    /// Requests served in the interval.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// per-bucket (NOT cumulative) counts, len BUCKETS.len()+1 (last = +Inf)
    pub buckets: Vec<u64>,
}

impl VersionInterval {
    /// The interval's buckets as Prometheus reports them: cumulative, ending in `+Inf`.
    pub fn cumulative_buckets(&self) -> Vec<Bucket> {
        let mut running = 0.0;
        self.buckets
            .iter()
            .zip(
                BUCKETS
                    .iter()
                    .copied()
                    .chain(std::iter::once(f64::INFINITY)),
            )
            .map(|(&count, le)| {
                running += count as f64;
                Bucket { le, count: running }
            })
            .collect()
    }

    /// The latency quantile `q` exactly as Prometheus `histogram_quantile` computes it from
    /// this interval's buckets; `None` without observations.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        histogram::quantile(q, &self.cumulative_buckets())
    }

    /// Errors per request; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// What every detector sees after each interval of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// 0-based position of the interval in the rollout.
    pub index: usize,
    /// seconds in the interval
    pub seconds: f64,
    /// The canary weight the router was told to apply (0..1).
    pub weight: f64,
    /// canary share of the requests that actually reached it in this interval (0..1); it
    /// differs from `weight` when the split is off
    pub canary_share: f64,
    /// The stable version's traffic.
    pub stable: VersionInterval,
    /// The canary's traffic.
    pub canary: VersionInterval,
    /// The stable version's true rates in this interval (pod average and drift included):
    /// for the oracle only.
    pub truth: IntervalTruth,
}

/// The stable version's true behaviour in one interval, which only the oracle may read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntervalTruth {
    /// The stable's error rate.
    pub stable_error_rate: f64,
    /// The stable's latency median (the nominal one times the pods' and drift's factors).
    pub stable_median: f64,
}

/// What a detector answers at an analysis, as the controller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Go on to the next step (or promote, at the last one).
    Pass,
    /// Stay at this step and look again after the next interval.
    Hold,
    /// Abort and roll back.
    Fail,
}

/// One analysis of a closed-loop rollout: the interval just observed and where the rollout
/// stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look<'a> {
    /// The interval that just ended.
    pub interval: &'a Interval,
    /// 0-based index of the rollout step the interval belongs to.
    pub step: usize,
    /// The weight a pass would set next (0..1); `None` when a pass promotes.
    pub next_weight: Option<f64>,
}

/// A rule that judges a rollout interval by interval: pass, hold or fail.
pub trait Detector: Send {
    /// Sees the interval before the rollout began, when the stable version served everything
    /// (a real judge can query the stable's history); ignored unless the rule uses it.
    fn baseline(&mut self, _interval: &Interval) {}
    /// Sees one more interval and answers.
    fn analyse(&mut self, look: &Look<'_>) -> Answer;
    /// Whether the rule finds the traffic split off (the canary's share of requests is not
    /// what its weight says); only rules that check the split say so.
    fn split_off(&self) -> bool {
        false
    }
    /// Why the last answer was given, in a few words (the analysis summary).
    fn reason(&self) -> Option<String> {
        None
    }
}

/// Makes a fresh detector for each rollout, given the scenario's truth (only the oracle may
/// use the truth).
pub trait DetectorFactory: Send + Sync {
    /// The name of the detectors it makes: `vigil`, `oracle`, `kayenta` or `flagger`.
    fn name(&self) -> &'static str;
    /// A detector for one rollout of a scenario whose templates have `tolerances`.
    fn make(&self, truth: &Truth, tolerances: Tolerances) -> Box<dyn Detector>;
}

/// The latency tail of a version: its slowest `fraction` of requests are `factor` times
/// slower than the log-normal body would make them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tail {
    /// Share of requests in the slowed tail (e.g. 0.02).
    pub fraction: f64,
    /// How many times slower they are (e.g. 2).
    pub factor: f64,
}

/// The nominal behaviour of one version (before pod heterogeneity and drift).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VersionTruth {
    /// Chance that a request fails.
    pub error_rate: f64,
    /// Median latency in seconds.
    pub latency_median: f64,
    /// Log-scale spread of latency (sigma of the log-normal).
    pub latency_sigma: f64,
    /// A slowed tail, if any.
    pub tail: Option<Tail>,
}

impl VersionTruth {
    /// `P(latency <= x)` for a version whose median is `median` (the nominal median times
    /// any pod and drift factors).
    pub fn latency_cdf_with_median(&self, x: f64, median: f64) -> f64 {
        let sigma = self.latency_sigma.max(1e-12);
        let body = |x: f64| -> f64 {
            if x <= 0.0 || median <= 0.0 {
                return 0.0;
            }
            crate::stats::normal_cdf((x / median).ln() / sigma)
        };
        match self.tail {
            None => body(x),
            Some(tail) => {
                let keep = 1.0 - tail.fraction;
                let cut = median * (sigma * inverse_normal_cdf(keep)).exp();
                if x <= cut {
                    body(x)
                } else if x <= cut * tail.factor {
                    keep
                } else {
                    body(x / tail.factor)
                }
            }
        }
    }

    /// `P(latency <= x)` at the nominal median.
    pub fn latency_cdf(&self, x: f64) -> f64 {
        self.latency_cdf_with_median(x, self.latency_median)
    }

    /// The true latency quantile `p` (0 < p < 1) at the nominal median.
    pub fn latency_quantile(&self, p: f64) -> f64 {
        let body = self.latency_median * (self.latency_sigma * inverse_normal_cdf(p)).exp();
        match self.tail {
            Some(tail) if p > 1.0 - tail.fraction => body * tail.factor,
            _ => body,
        }
    }
}

/// When the canary's error rate applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPattern {
    /// In every interval.
    Always,
    /// Only in alternating blocks of `block` intervals, starting with a bad block
    /// (intervals `0..block` bad, `block..2*block` good, ...); in good blocks the canary
    /// fails at the stable version's rate.
    Alternating {
        /// Intervals per block.
        block: usize,
    },
}

impl ErrorPattern {
    /// Whether the canary's own error rate applies in interval `index`.
    pub fn is_bad(&self, index: usize) -> bool {
        match *self {
            ErrorPattern::Always => true,
            ErrorPattern::Alternating { block } => (index / block.max(1)).is_multiple_of(2),
        }
    }
}

/// The true parameters of a scenario: what the oracle knows and the other detectors must
/// find out from the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Truth {
    /// The stable version.
    pub stable: VersionTruth,
    /// The canary, once its regression (if any) has begun.
    pub canary: VersionTruth,
    /// When the canary's error rate applies.
    pub canary_errors: ErrorPattern,
    /// The canary behaves exactly like stable until its weight first reaches this share
    /// (a bug that shows only under load); `None`: from the start.
    pub onset_weight: Option<f64>,
}

impl Truth {
    /// The canary's nominal error rate in interval `index`, once its regression has begun.
    pub fn canary_error_rate_at(&self, index: usize) -> f64 {
        if self.canary_errors.is_bad(index) {
            self.canary.error_rate
        } else {
            self.stable.error_rate
        }
    }

    /// The canary's behaviour in interval `index`: `regressed` says whether its onset has
    /// come (always true without an onset). Returns the version and its error rate.
    pub fn canary_at(&self, index: usize, regressed: bool) -> (VersionTruth, f64) {
        if regressed || self.onset_weight.is_none() {
            (self.canary, self.canary_error_rate_at(index))
        } else {
            (self.stable, self.stable.error_rate)
        }
    }

    /// Whether the canary behaves exactly like stable (an A/A scenario).
    pub fn is_aa(&self) -> bool {
        self.stable == self.canary
    }
}

/// How much worse than stable a canary may be before a detector should object: relative
/// increases, e.g. 0.2 = 20% more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Allowed relative increase of the error rate.
    pub errors: f64,
    /// Allowed relative increase of latency.
    pub latency: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            errors: 0.20,
            latency: 0.05,
        }
    }
}

/// Standard-normal quantile; NaN outside (0, 1).
fn inverse_normal_cdf(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    Normal::standard().inverse_cdf(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_simulated_sources_buckets() {
        assert_eq!(BUCKETS, crate::source::simulated::DEFAULT_BUCKETS);
    }

    #[test]
    fn tail_doubles_p99_and_keeps_the_median() {
        let stable = VersionTruth {
            error_rate: 0.005,
            latency_median: 0.08,
            latency_sigma: 0.5,
            tail: None,
        };
        let canary = VersionTruth {
            tail: Some(Tail {
                fraction: 0.02,
                factor: 2.0,
            }),
            ..stable
        };
        for p in [0.5, 0.99] {
            // The quantile function and the distribution function agree.
            for v in [stable, canary] {
                let x = v.latency_quantile(p);
                assert!((v.latency_cdf(x) - p).abs() < 1e-9, "{p}");
            }
        }
        assert!((canary.latency_quantile(0.5) / stable.latency_quantile(0.5) - 1.0).abs() < 1e-12);
        assert!(
            (canary.latency_quantile(0.99) / stable.latency_quantile(0.99) - 2.0).abs() < 1e-12
        );
    }

    #[test]
    fn quantile_of_an_interval_follows_histogram_quantile() {
        let mut v = VersionInterval {
            requests: 10,
            errors: 0,
            buckets: vec![0; BUCKETS.len() + 1],
        };
        v.buckets[4] = 10; // all in (0.05, 0.1]
        let p50 = v.latency_quantile(0.5).unwrap_or(f64::NAN);
        assert!((p50 - 0.075).abs() < 1e-12);
        assert_eq!(VersionInterval::default().latency_quantile(0.5), None);
        assert_eq!(VersionInterval::default().error_rate(), None);
    }
}
