//! A Flagger-style fixed-threshold rule on the canary alone, as a baseline.
//!
//! Each interval is one analysis run with Flagger's builtin checks: request success rate at
//! least [`FlaggerFactory::min_success_rate`] and p99 latency (from the canary's buckets of
//! that interval, like `histogram_quantile`) at most [`FlaggerFactory::max_p99_seconds`].
//! A run where every check passes advances the canary to the next weight (promoting it after
//! the last), Flagger's fixed schedule. A run where any check fails counts one failed check
//! and holds the weight; an interval in which the canary served no requests fails too
//! (Flagger's "no values found"). The rollout is rolled back once the failed checks reach the
//! threshold; like Flagger's `threshold`, failed checks accumulate over the whole analysis
//! and are not reset by passing runs. The stable version is never looked at.

use super::{Answer, Detector, DetectorFactory, Interval, Look, Tolerances, Truth};

/// Makes [`Flagger`] detectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlaggerFactory {
    /// Lowest acceptable success rate (0..1).
    pub min_success_rate: f64,
    /// Highest acceptable p99 latency in seconds.
    pub max_p99_seconds: f64,
    /// Failed checks that roll the canary back.
    pub threshold: usize,
}

impl Default for FlaggerFactory {
    fn default() -> Self {
        Self {
            min_success_rate: 0.99,
            max_p99_seconds: 0.5,
            threshold: 5,
        }
    }
}

impl DetectorFactory for FlaggerFactory {
    fn name(&self) -> &'static str {
        "flagger"
    }

    fn make(&self, _truth: &Truth, _tolerances: Tolerances) -> Box<dyn Detector> {
        Box::new(Flagger::new(*self))
    }
}

/// One rollout's Flagger analysis.
#[derive(Debug, Clone)]
pub struct Flagger {
    rule: FlaggerFactory,
    failed: usize,
}

impl Flagger {
    /// A fresh analysis with `rule`.
    pub fn new(rule: FlaggerFactory) -> Self {
        Self { rule, failed: 0 }
    }

    /// Failed checks so far.
    pub fn failed_checks(&self) -> usize {
        self.failed
    }

    /// Whether one interval passes every check.
    fn passes(&self, interval: &Interval) -> bool {
        let canary = &interval.canary;
        let (Some(error_rate), Some(p99)) = (canary.error_rate(), canary.latency_quantile(0.99))
        else {
            // No values found.
            return false;
        };
        1.0 - error_rate >= self.rule.min_success_rate && p99 <= self.rule.max_p99_seconds
    }
}

impl Detector for Flagger {
    fn analyse(&mut self, look: &Look<'_>) -> Answer {
        if self.passes(look.interval) {
            return Answer::Pass;
        }
        self.failed += 1;
        if self.failed >= self.rule.threshold {
            Answer::Fail
        } else {
            Answer::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BUCKETS, VersionInterval};

    fn healthy(requests: u64) -> VersionInterval {
        let mut buckets = vec![0; BUCKETS.len() + 1];
        buckets[4] = requests;
        VersionInterval {
            requests,
            errors: 0,
            buckets,
        }
    }

    fn interval(index: usize, canary: VersionInterval) -> Interval {
        Interval {
            index,
            seconds: 60.0,
            weight: 0.1,
            canary_share: 0.1,
            stable: healthy(1000),
            canary,
            truth: Default::default(),
        }
    }

    fn look(i: &Interval) -> Look<'_> {
        Look {
            interval: i,
            step: 0,
            next_weight: Some(0.5),
        }
    }

    #[test]
    fn zero_traffic_intervals_hold_then_abort_after_five() {
        let mut f = Flagger::new(FlaggerFactory::default());
        let answers: Vec<Answer> = (0..5)
            .map(|i| f.analyse(&look(&interval(i, VersionInterval::default()))))
            .collect();
        use Answer::{Fail, Hold};
        assert_eq!(answers, [Hold, Hold, Hold, Hold, Fail]);
        assert_eq!(f.failed_checks(), 5);
    }

    #[test]
    fn failed_checks_accumulate_across_passing_runs() {
        let mut f = Flagger::new(FlaggerFactory::default());
        let mut aborted = None;
        for i in 0..20 {
            let canary = if i % 2 == 0 {
                VersionInterval {
                    errors: 2,
                    ..healthy(100)
                }
            } else {
                healthy(100)
            };
            if f.analyse(&look(&interval(i, canary))) == Answer::Fail {
                aborted = Some(i);
                break;
            }
        }
        assert_eq!(aborted, Some(8));
    }

    #[test]
    fn healthy_passes_on_schedule_and_slow_p99_fails() {
        let mut f = Flagger::new(FlaggerFactory::default());
        assert!((0..40).all(|i| f.analyse(&look(&interval(i, healthy(100)))) == Answer::Pass));
        assert_eq!(f.failed_checks(), 0);
        let mut slow = healthy(100);
        slow.buckets[4] = 90;
        slow.buckets[7] = 10; // 10% between 0.5 and 1 s
        assert!(!Flagger::new(FlaggerFactory::default()).passes(&interval(0, slow)));
    }
}
