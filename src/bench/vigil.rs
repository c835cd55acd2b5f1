//! vigil's own rule in the rollout benchmark: the judge's sequential decisions
//! ([`crate::judge::decision`]), fed one interval at a time exactly as a rollout feeds them.
//!
//! - **Abort** when either metric shows a regression: a harmful change against "no change"
//!   by an anytime-valid e-process, with its estimate beyond the tolerance, over the whole
//!   rollout or over the current step alone (restarted at each step, so a regression that
//!   starts late is not diluted). Errors and latency each run at `alpha / 2`, so an
//!   unchanged canary is aborted with probability at most `alpha` over the whole rollout.
//! - **Hold** when the traffic split is off: the canary's share of requests is shown, by an
//!   anytime-valid test ([`crate::stats::srm`]), to differ from the weight set, by more than
//!   the judge's default split tolerance (20% of the weight).
//! - **Pass** (advance) when every metric is shown, at level `beta`, below the exposure bound
//!   of the next weight ([`Promotion`]), or within its tolerance.
//! - **Hold** otherwise.

use super::{Answer, Detector, DetectorFactory, Interval, Look, Tolerances, Truth};
use crate::judge::decision::{Call, LatencyEvidence, Promotion, Sides};
use crate::stats::srm::SplitCheck;
use crate::template::{DEFAULT_SPLIT_TOLERANCE, Direction};

/// The quantiles whose exceedance rates are watched.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Makes vigil detectors.
#[derive(Debug, Clone)]
pub struct VigilFactory {
    /// The overall false-abort level.
    pub alpha: f64,
    /// The promotion error level.
    pub beta: f64,
    /// The guard of each metric as a multiple of its tolerance.
    pub guard_factor: f64,
    /// The error and latency tolerances, the same every detector gets.
    pub tolerances: Tolerances,
}

impl DetectorFactory for VigilFactory {
    fn name(&self) -> &'static str {
        "vigil"
    }

    fn make(&self, _truth: &Truth, tolerances: Tolerances) -> Box<dyn Detector> {
        Box::new(Vigil::new(self, tolerances))
    }
}

/// One rollout's vigil judge.
#[derive(Debug, Clone)]
pub struct Vigil {
    errors: Sides,
    latency: LatencyEvidence,
    split: Option<SplitCheck>,
    error_bound: f64,
    step: usize,
    reason: Option<String>,
}

impl Vigil {
    /// A fresh judge with the factory's levels and `tolerances`.
    pub fn new(factory: &VigilFactory, tolerances: Tolerances) -> Self {
        let promotion = |tolerance: f64| Promotion {
            beta: factory.beta,
            guard: factory.guard_factor * tolerance,
        };
        Self {
            errors: Sides::with_promotion(
                Direction::Increase,
                factory.alpha / 2.0,
                promotion(tolerances.errors),
            ),
            latency: LatencyEvidence::with_promotion(
                &QUANTILES,
                Direction::Increase,
                tolerances.latency,
                factory.alpha / 2.0,
                promotion(tolerances.latency),
            ),
            split: SplitCheck::new(factory.alpha),
            error_bound: 1.0 + tolerances.errors,
            step: 0,
            reason: None,
        }
    }

    fn observe(&mut self, interval: &Interval) {
        let (c, s) = (&interval.canary, &interval.stable);
        self.errors.observe(
            [
                c.errors as f64,
                c.requests as f64,
                s.errors as f64,
                s.requests as f64,
            ],
            self.error_bound,
            1e-6,
        );
        self.latency
            .observe(&s.cumulative_buckets(), &c.cumulative_buckets());
        if let Some(split) = self.split.as_mut().filter(|_| interval.weight < 1.0) {
            split.observe(
                c.requests as f64,
                (c.requests + s.requests) as f64,
                interval.weight,
            );
        }
    }
}

impl Detector for Vigil {
    fn baseline(&mut self, interval: &Interval) {
        // The stable's latency before the rollout sets the first interval's bounds.
        self.latency
            .observe(&interval.stable.cumulative_buckets(), &[]);
    }

    fn analyse(&mut self, look: &Look<'_>) -> Answer {
        if look.step != self.step {
            self.step = look.step;
            self.errors.new_step();
            self.latency.new_step();
        }
        self.observe(look.interval);
        if matches!(self.errors.call(), Call::Regression { .. }) || self.latency.regressed() {
            self.reason = Some("regression".into());
            return Answer::Fail;
        }
        if let Some(split) = self
            .split
            .as_ref()
            .filter(|s| s.off_by_more_than(DEFAULT_SPLIT_TOLERANCE))
        {
            self.reason = Some(format!(
                "traffic split: the canary got {:.1}% of requests, its weight says {:.1}%",
                100.0 * split.observed_share().unwrap_or(f64::NAN),
                100.0 * split.expected_share().unwrap_or(f64::NAN),
            ));
            return Answer::Hold;
        }
        let next = look.next_weight.unwrap_or(1.0);
        if self.errors.promotable(next) && self.latency.promotable(next) {
            self.reason = None;
            Answer::Pass
        } else {
            self.reason = Some("not enough evidence yet".into());
            Answer::Hold
        }
    }

    fn split_off(&self) -> bool {
        self.split
            .as_ref()
            .is_some_and(|s| s.off_by_more_than(DEFAULT_SPLIT_TOLERANCE))
    }

    fn reason(&self) -> Option<String> {
        self.reason.clone()
    }
}
