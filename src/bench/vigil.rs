//! vigil's own rule in the detection benchmark: the judge's sequential e-processes, fed one
//! interval at a time exactly as a rollout would feed them.
//!
//! Errors: the canary/stable error-rate ratio against `1 + error tolerance`. Latency: the rate
//! of requests slower than the stable's bucket bounds near p50, p90 and p99 against what a
//! latency `1 + latency tolerance` times longer would cause. Each family runs at `alpha / 2`,
//! so the chance of aborting an unchanged canary over the whole rollout is at most `alpha`.

use super::{BUCKETS, Detector, DetectorFactory, Interval, Tolerances, Truth, VersionInterval};
use crate::judge::decision::{Call, LatencyEvidence, Sides};
use crate::stats::histogram::Bucket;
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

/// A version's buckets in the interval, cumulative as Prometheus reports them.
fn cumulative(v: &VersionInterval) -> Vec<Bucket> {
    let mut running = 0.0;
    v.buckets
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
        self.latency.observe(&cumulative(s), &cumulative(c));
        let regressed = |call: Call| matches!(call, Call::Regression { .. });
        regressed(self.errors.call()) || self.latency.sides().iter().any(|s| regressed(s.call()))
    }
}
