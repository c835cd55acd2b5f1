//! The oracle: Wald's sequential probability ratio tests that know the scenario's true
//! nominal rates. It is the speed limit of the rollout benchmark (no rule that must find the
//! rates out from the data can be much faster at the same error rates), not a rule anyone
//! could deploy.
//!
//! It makes the same claims as vigil's rule, with the same levels, but tests simple
//! hypotheses with known rates, on the canary's requests alone (it knows the stable's
//! rates, so it needs no comparison):
//! - one SPRT per metric: errors per request, and requests slower than the bucket bounds
//!   nearest the stable's true p50, p90 and p99;
//! - H0 ("no worse than the tolerance", here the exposure bound's good side): the canary's
//!   rate equals the stable's true rate; H1 ("regressed"): the rate of a canary at the
//!   exposure bound of the next weight ([`Promotion::bound`]; for latency, a stable slowed by
//!   that factor);
//! - every SPRT is restarted at each step, at vigil's levels: errors `alpha / 2`, each
//!   latency bound `alpha / 6`, spent over the steps (step `k` gets `6 / (pi^2 k^2)` of
//!   them), and `beta` for accepting H0;
//! - the rollout is aborted when any SPRT accepts H1, advanced when every one accepts H0.
//!
//! The oracle knows the stable's true rates in each interval, drift and pods included
//! ([`super::IntervalTruth`]). The canary's own pods still differ a little from the stable's,
//! so its error rates can exceed the nominal ones slightly.

use super::{
    Answer, BUCKETS, Detector, DetectorFactory, Look, Tolerances, Truth, VersionTruth,
    nearest_bound,
};
use crate::judge::decision::Promotion;
use crate::stats::sprt::{SprtDecision, bernoulli_llr, boundaries};

/// Makes [`Oracle`] detectors.
#[derive(Debug, Clone, Copy)]
pub struct OracleFactory {
    /// The false-abort level (as vigil's).
    pub alpha: f64,
    /// The promotion error level (as vigil's).
    pub beta: f64,
    /// The guard of each metric as a multiple of its tolerance (as vigil's).
    pub guard_factor: f64,
    /// The tolerances.
    pub tolerances: Tolerances,
}

impl DetectorFactory for OracleFactory {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn make(&self, truth: &Truth, tolerances: Tolerances) -> Box<dyn Detector> {
        Box::new(Oracle::new(
            truth,
            OracleFactory {
                tolerances,
                ..*self
            },
        ))
    }
}

/// What one of the oracle's tests counts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    Errors,
    /// Requests above `BUCKETS[bound]`.
    Slow {
        bound: usize,
    },
}

/// One SPRT: its log-likelihood ratio so far and its decision, once made.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Test {
    metric: Metric,
    /// The ratio of H1 to H0 (a rate ratio for errors, a latency factor for slow requests).
    bound: f64,
    upper: f64,
    lower: f64,
    llr: f64,
    decision: Option<SprtDecision>,
}

/// One rollout's oracle.
#[derive(Debug, Clone)]
pub struct Oracle {
    truth: Truth,
    config: OracleFactory,
    metrics: Vec<Metric>,
    tests: Vec<Test>,
    step: Option<usize>,
    restarts: usize,
}

/// The probability that a request of `version`, whose latency median is `median` and which
/// is `slower` times slower, exceeds `le`.
fn slow_probability(version: &VersionTruth, median: f64, le: f64, slower: f64) -> f64 {
    1.0 - version.latency_cdf_with_median(le / slower.max(1e-9), median)
}

impl Oracle {
    /// The oracle for a scenario with `truth`.
    pub fn new(truth: &Truth, config: OracleFactory) -> Self {
        let mut metrics = vec![Metric::Errors];
        for q in super::vigil::QUANTILES {
            let bound = nearest_bound(truth.stable.latency_quantile(q));
            let slow = Metric::Slow { bound };
            if !metrics.contains(&slow) {
                metrics.push(slow);
            }
        }
        Self {
            truth: *truth,
            config,
            metrics,
            tests: Vec::new(),
            step: None,
            restarts: 0,
        }
    }

    /// Restarts every SPRT for a step whose pass gives the canary weight `next`; step `k`
    /// gets `alpha * 6 / (pi^2 k^2)`.
    fn restart(&mut self, next: f64) {
        self.restarts += 1;
        let c = self.config;
        let alpha = crate::judge::decision::step_alpha(c.alpha, self.restarts);
        let promotion = |tolerance: f64| Promotion {
            beta: c.beta,
            guard: c.guard_factor * tolerance,
        };
        let latency_tests = (self.metrics.len() - 1).max(1) as f64;
        self.tests = self
            .metrics
            .iter()
            .filter_map(|m| {
                let (level, bound) = match *m {
                    Metric::Errors => (alpha / 2.0, promotion(c.tolerances.errors).bound(next)),
                    Metric::Slow { .. } => (
                        alpha / 2.0 / latency_tests,
                        promotion(c.tolerances.latency).bound(next),
                    ),
                };
                let b = boundaries(level, c.beta)?;
                Some(Test {
                    metric: *m,
                    bound,
                    upper: b.upper,
                    lower: b.lower,
                    llr: 0.0,
                    decision: None,
                })
            })
            .collect();
    }
}

impl Detector for Oracle {
    fn analyse(&mut self, look: &Look<'_>) -> Answer {
        let next = look.next_weight.unwrap_or(1.0);
        if self.step != Some(look.step) {
            self.step = Some(look.step);
            self.restart(next);
        }
        let interval = look.interval;
        let canary = &interval.canary;
        let t = interval.truth;
        let stable = self.truth.stable;
        for test in self.tests.iter_mut().filter(|t| t.decision.is_none()) {
            let (hits, p0, p1) = match test.metric {
                Metric::Errors => {
                    let p0 = t.stable_error_rate.clamp(1e-12, 1.0 - 1e-12);
                    (canary.errors, p0, (p0 * test.bound).min(1.0 - 1e-12))
                }
                Metric::Slow { bound } => {
                    let le = BUCKETS[bound];
                    let hits = canary.buckets.iter().skip(bound + 1).sum();
                    let p0 = slow_probability(&stable, t.stable_median, le, 1.0);
                    let p1 = slow_probability(&stable, t.stable_median, le, test.bound);
                    (hits, p0, p1)
                }
            };
            test.llr += bernoulli_llr(hits, canary.requests, p1, p0);
            if test.llr >= test.upper {
                test.decision = Some(SprtDecision::AcceptH1);
            } else if test.llr <= test.lower {
                test.decision = Some(SprtDecision::AcceptH0);
            }
        }
        let decisions: Vec<Option<SprtDecision>> = self.tests.iter().map(|t| t.decision).collect();
        if decisions.contains(&Some(SprtDecision::AcceptH1)) {
            Answer::Fail
        } else if decisions.iter().all(|d| *d == Some(SprtDecision::AcceptH0)) {
            Answer::Pass
        } else {
            Answer::Hold
        }
    }
}
