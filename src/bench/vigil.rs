//! vigil's own rule in the detection benchmark: the judge's sequential e-processes, fed one
//! interval at a time exactly as a rollout would feed them.
//!
//! Errors: the canary/stable error-rate ratio. Latency: the rate of requests slower than the
//! stable's bucket bounds near p50, p90 and p99. The rollout is aborted at the first interval
//! where either shows a regression as the judge defines it: a harmful change shown against
//! "no change" by an anytime-valid e-process, with its estimate beyond the tolerance. Each
//! family runs at `alpha / 2`, so the chance of aborting an unchanged canary over the whole
//! rollout is at most `alpha`.

use super::{Detector, DetectorFactory, Interval, Tolerances, Truth};
use crate::judge::decision::{Call, LatencyEvidence, Sides};
use crate::template::Direction;

/// Makes vigil detectors.
#[derive(Debug, Clone)]
pub struct VigilFactory {
    /// The overall level.
    pub alpha: f64,
    /// The error and latency tolerances, the same every detector gets.
    pub tolerances: Tolerances,
}

/// The quantiles whose exceedance rates are watched.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

impl DetectorFactory for VigilFactory {
    fn name(&self) -> String {
        "vigil (sequential)".into()
    }

    fn make(&self, _truth: &Truth) -> Box<dyn Detector> {
        Box::new(VigilDetector {
            errors: Sides::new(Direction::Increase, self.alpha / 2.0),
            latency: LatencyEvidence::new(
                &QUANTILES,
                Direction::Increase,
                self.tolerances.latency,
                self.alpha / 2.0,
            ),
            error_bound: 1.0 + self.tolerances.errors,
        })
    }
}

struct VigilDetector {
    errors: Sides,
    latency: LatencyEvidence,
    error_bound: f64,
}

impl Detector for VigilDetector {
    fn name(&self) -> String {
        "vigil (sequential)".into()
    }

    fn observe(&mut self, interval: &Interval) -> bool {
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
        let regressed = |call: Call| matches!(call, Call::Regression { .. });
        regressed(self.errors.call()) || self.latency.sides().iter().any(|s| regressed(s.call()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sim::{SimConfig, rollout_seed, scenario, simulate};

    fn aborted(name: &str, rollouts: usize) -> usize {
        let s = scenario(name).unwrap();
        let factory = VigilFactory {
            alpha: 0.01,
            tolerances: Tolerances::default(),
        };
        (0..rollouts)
            .filter(|r| {
                let mut d = factory.make(&s.truth);
                simulate(&s, &SimConfig::default(), rollout_seed(5, 0, *r))
                    .iter()
                    .any(|i| d.observe(i))
            })
            .count()
    }

    #[test]
    fn unchanged_canaries_are_rarely_aborted_and_bad_ones_always() {
        // alpha = 1%: at most 4 of 200 leaves room for sampling error.
        assert!(aborted("aa-medium", 200) <= 4);
        assert_eq!(aborted("errors-x5", 50), 50);
    }
}
