//! An oracle: Wald's sequential probability ratio test that knows the scenario's true
//! nominal parameters. It is the yardstick for detection speed (no test that must find the
//! parameters out from the data can be much faster at the same error rate), not a rule
//! anyone could deploy.
//!
//! Its null hypothesis is the boundary of the tolerances it is given: a canary exactly
//! `1 + tolerance` times worse than stable. The benchmark gives it none, so it tests "no
//! change", the same null as the e-process behind vigil's abort decision. It looks at the
//! canary's data alone, per request, for one metric:
//! - errors: each request fails or not (Bernoulli), H0 = the stable's true error rate times
//!   `1 + tolerance`, H1 = the canary's true error rate in that interval (for the
//!   intermittent scenario the oracle knows which intervals are bad; good intervals add
//!   nothing);
//! - latency: each request exceeds a threshold or not (Bernoulli), H0 = the exceedance
//!   probability of the stable's latency made `1 + tolerance` times longer, H1 = the canary's
//!   true exceedance probability. The threshold is the stable's true p50 or p99, whichever
//!   the canary changes most (largest Kullback-Leibler divergence per request). Detectors see
//!   only bucket counts, so the threshold is the bucket bound nearest (in log scale) to that
//!   quantile, and the exceedance probabilities are the exact ones at that bound.
//!
//! The metric is the one whose per-request divergence is largest. In A/A scenarios nothing
//! regresses, so the oracle tests H1 = twice the stable's error rate, which measures its
//! false-abort rate. The log-likelihood ratio is summed over intervals and the rollout is
//! aborted when it reaches `ln(1/alpha)`; under H0 this happens with probability at most
//! `alpha` (Wald).
//!
//! The oracle knows only the nominal rates: it ignores pod heterogeneity and the shared
//! drift, which make the canary's actual rates differ somewhat from them. Its false-abort
//! rate can therefore exceed `alpha` slightly, and its power differ slightly from Wald's.

use super::{
    BUCKETS, Detector, DetectorFactory, ErrorPattern, Interval, Tolerances, Truth, VersionTruth,
};

/// The alternative error-rate factor the oracle tests in A/A scenarios.
pub const AA_ERROR_FACTOR: f64 = 2.0;

/// What the oracle tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    /// Errors per request: H0 rate `p0`; H1 is the canary's rate in each interval.
    Errors {
        /// The stable's true error rate.
        p0: f64,
        /// The canary's true error rate when it is bad.
        p1: f64,
        /// When the canary is bad.
        pattern: ErrorPattern,
    },
    /// Latency above `BUCKETS[bound]`: probability `q0` under H0, `q1` under H1.
    Exceedance {
        /// Index into [`BUCKETS`] of the threshold.
        bound: usize,
        /// Exceedance probability of the stable version.
        q0: f64,
        /// Exceedance probability of the canary.
        q1: f64,
    },
}

/// Kullback-Leibler divergence of Bernoulli(q1) from Bernoulli(q0), in nats.
pub fn bernoulli_kl(q1: f64, q0: f64) -> f64 {
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    let kl = term(q1, q0) + term(1.0 - q1, 1.0 - q0);
    if kl.is_nan() { 0.0 } else { kl }
}

/// Index of the bucket bound nearest to `x` in log scale.
fn nearest_bound(x: f64) -> usize {
    let mut best = 0;
    for (i, le) in BUCKETS.iter().enumerate() {
        if (le / x).ln().abs() < (BUCKETS[best] / x).ln().abs() {
            best = i;
        }
    }
    best
}

/// The latency test at the bound nearest to the stable's true quantile `p`, against the
/// stable's latency made `1 + tolerance` times longer.
fn exceedance(stable: &VersionTruth, canary: &VersionTruth, p: f64, tolerance: f64) -> Test {
    let bound = nearest_bound(stable.latency_quantile(p));
    let le = BUCKETS[bound];
    Test::Exceedance {
        bound,
        q0: 1.0 - stable.latency_cdf(le / (1.0 + tolerance)),
        q1: 1.0 - canary.latency_cdf(le),
    }
}

impl Test {
    /// Divergence per request of H1 from H0 (at the canary's bad error rate).
    pub fn divergence(&self) -> f64 {
        match *self {
            Test::Errors { p0, p1, .. } => bernoulli_kl(p1, p0),
            Test::Exceedance { q0, q1, .. } => bernoulli_kl(q1, q0),
        }
    }

    /// The most informative test of the metric that regresses in `truth`, against the
    /// boundary of `tolerances`.
    pub fn for_truth(truth: &Truth, tolerances: Tolerances) -> Self {
        let (s, c) = (&truth.stable, &truth.canary);
        let p0 = (s.error_rate * (1.0 + tolerances.errors)).min(1.0);
        if truth.is_aa() {
            return Test::Errors {
                p0,
                p1: (s.error_rate * AA_ERROR_FACTOR).min(1.0),
                pattern: ErrorPattern::Always,
            };
        }
        let candidates = [
            Test::Errors {
                p0,
                p1: c.error_rate,
                pattern: truth.canary_errors,
            },
            exceedance(s, c, 0.5, tolerances.latency),
            exceedance(s, c, 0.99, tolerances.latency),
        ];
        // Only a canary worse than the boundary can be detected; of those, the test with the
        // most information per request.
        let worse = |t: &Test| match *t {
            Test::Errors { p0, p1, .. } => p1 > p0,
            Test::Exceedance { q0, q1, .. } => q1 > q0,
        };
        let mut best = candidates[0];
        for t in candidates.into_iter().filter(worse) {
            if !worse(&best) || t.divergence() > best.divergence() {
                best = t;
            }
        }
        best
    }
}

/// Makes [`Oracle`] detectors.
#[derive(Debug, Clone, Copy)]
pub struct OracleFactory {
    /// Wald's bound on the false-abort probability.
    pub alpha: f64,
    /// The tolerances whose boundary is the null hypothesis.
    pub tolerances: Tolerances,
}

impl DetectorFactory for OracleFactory {
    fn name(&self) -> String {
        "oracle-sprt".to_string()
    }

    fn make(&self, truth: &Truth) -> Box<dyn Detector> {
        Box::new(Oracle::new(truth, self.alpha, self.tolerances))
    }
}

/// One rollout's oracle SPRT.
#[derive(Debug, Clone)]
pub struct Oracle {
    test: Test,
    threshold: f64,
    llr: f64,
}

impl Oracle {
    /// The oracle for a scenario with `truth`, aborting at likelihood ratio `1/alpha`.
    pub fn new(truth: &Truth, alpha: f64, tolerances: Tolerances) -> Self {
        Self {
            test: Test::for_truth(truth, tolerances),
            threshold: (1.0 / alpha).ln(),
            llr: 0.0,
        }
    }

    /// What it tests.
    pub fn test(&self) -> Test {
        self.test
    }

    /// The log-likelihood ratio so far.
    pub fn llr(&self) -> f64 {
        self.llr
    }
}

/// Log-likelihood ratio of `hits` successes in `n` Bernoulli trials, H1 `p1` vs H0 `p0`.
fn bernoulli_llr(hits: u64, n: u64, p1: f64, p0: f64) -> f64 {
    if p1 == p0 || n == 0 {
        return 0.0;
    }
    let misses = n.saturating_sub(hits) as f64;
    let hits = hits as f64;
    let part = |count: f64, a: f64, b: f64| {
        if count == 0.0 {
            0.0
        } else {
            count * (a / b).ln()
        }
    };
    part(hits, p1, p0) + part(misses, 1.0 - p1, 1.0 - p0)
}

impl Detector for Oracle {
    fn name(&self) -> String {
        "oracle-sprt".to_string()
    }

    fn observe(&mut self, interval: &Interval) -> bool {
        let canary = &interval.canary;
        self.llr += match self.test {
            Test::Errors { p0, p1, pattern } => {
                let p = if pattern.is_bad(interval.index) {
                    p1
                } else {
                    p0
                };
                bernoulli_llr(canary.errors, canary.requests, p, p0)
            }
            Test::Exceedance { bound, q0, q1 } => {
                let above: u64 = canary.buckets.iter().skip(bound + 1).sum();
                let n: u64 = canary.buckets.iter().sum();
                bernoulli_llr(above, n, q1, q0)
            }
        };
        // An infinite ratio (an event impossible under H0) is decisive; NaN is not.
        self.llr >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sim::{SimConfig, rollout_seed, scenario, scenarios, simulate};

    fn named(name: &str) -> crate::bench::sim::Scenario {
        scenario(name).unwrap_or_else(|| panic!("no scenario {name}"))
    }

    #[test]
    fn picks_the_metric_that_regresses() {
        // As the benchmark runs it: against "no change".
        let none = Tolerances {
            errors: 0.0,
            latency: 0.0,
        };
        let test = |name: &str| Test::for_truth(&named(name).truth, none);
        assert!(matches!(test("errors-x2"), Test::Errors { p1, .. } if (p1 - 0.01).abs() < 1e-12));
        assert!(matches!(test("aa-medium"), Test::Errors { p1, .. } if (p1 - 0.01).abs() < 1e-12));
        assert!(matches!(
            test("intermittent-errors"),
            Test::Errors {
                pattern: ErrorPattern::Alternating { block: 3 },
                ..
            }
        ));
        // The median shift is seen best around the median (0.1 s is nearest to 80 ms)...
        assert!(matches!(
            test("latency-median+10%"),
            Test::Exceedance { bound: 4, .. }
        ));
        // ...and the tail around the stable's p99 (0.25 s is nearest to 256 ms), where the
        // exceedance doubles.
        match test("latency-tail-p99x2") {
            Test::Exceedance { bound: 5, q0, q1 } => {
                assert!((q1 - 0.02).abs() < 1e-9, "{q1}");
                assert!(q0 > 0.01 && q0 < 0.012, "{q0}");
            }
            other => panic!("{other:?}"),
        }
        // Against a tolerance's boundary the null moves: a 5% slower stable exceeds 0.25 s
        // more often.
        match Test::for_truth(&named("latency-tail-p99x2").truth, Tolerances::default()) {
            Test::Exceedance { bound: 5, q0, .. } => assert!(q0 > 0.012, "{q0}"),
            other => panic!("{other:?}"),
        }
        for s in scenarios() {
            assert!(
                Test::for_truth(&s.truth, none).divergence() > 0.0,
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn aa_false_abort_rate_is_at_most_alpha() {
        let alpha = 0.01;
        let config = SimConfig::default();
        let scenario = named("aa-medium");
        let rollouts = 2000;
        let aborted = (0..rollouts)
            .filter(|&r| {
                let mut oracle = Oracle::new(&scenario.truth, alpha, Tolerances::default());
                simulate(&scenario, &config, rollout_seed(17, 1, r))
                    .iter()
                    .any(|i| oracle.observe(i))
            })
            .count();
        assert!(
            aborted as f64 / rollouts as f64 <= alpha,
            "{aborted} of {rollouts}"
        );
    }

    #[test]
    fn detects_fivefold_errors_quickly() {
        let config = SimConfig::default();
        let scenario = named("errors-x5");
        let mut times = Vec::new();
        for r in 0..200 {
            let mut oracle = Oracle::new(&scenario.truth, 0.01, Tolerances::default());
            if let Some(i) = simulate(&scenario, &config, rollout_seed(3, 5, r))
                .iter()
                .position(|i| oracle.observe(i))
            {
                times.push(i);
            }
        }
        assert!(times.len() >= 195, "{}", times.len());
        times.sort_unstable();
        assert!(
            times[times.len() / 2] <= 12,
            "median {}",
            times[times.len() / 2]
        );
    }

    #[test]
    fn llr_adds_up_per_request() {
        let l = bernoulli_llr(3, 100, 0.02, 0.01);
        let expected = 3.0 * 2f64.ln() + 97.0 * (0.98f64 / 0.99).ln();
        assert!((l - expected).abs() < 1e-12);
        assert_eq!(bernoulli_llr(0, 0, 0.02, 0.01), 0.0);
        assert_eq!(bernoulli_llr(5, 10, 0.01, 0.01), 0.0);
    }
}
