//! Kayenta's published rule (Netflix / Spinnaker automated canary analysis), as a baseline.
//!
//! Two metrics, each a time series with one point per interval and version: the error rate
//! (errors / requests) and the p99 latency (estimated from the interval's buckets like
//! Prometheus `histogram_quantile`). Intervals without requests give no point (Kayenta's NaN
//! strategy "remove"). After every interval the whole window so far is judged, once each
//! side of each metric has at least [`MIN_POINTS`] points:
//! - a Mann-Whitney U comparison of canary points with stable points at 98% confidence
//!   (two-sided), summarized as Kayenta does by the Hodges-Lehmann shift estimate and its
//!   confidence interval ([`hodges_lehmann`]);
//! - the metric is High if the interval's lower end is above 0 and exceeds 25% of the
//!   estimate, and the mean ratio canary / stable exceeds `allowedIncrease` = 1 + tolerance;
//!   both metrics are "increase is bad", so Low never fails;
//! - the score is the share of passing metrics (0-100), forced to 0 when the critical error
//!   rate metric is High;
//! - the rollout is aborted at the first score at or below the marginal score (75);
//! - each step is one canary analysis whose lifetime is [`MIN_POINTS`] intervals: at its end
//!   a score above the marginal score advances the canary (Spinnaker's canary stage
//!   continues the pipeline), so a healthy canary moves on a fixed schedule.
//!
//! Kayenta classifies on the interval alone (the p-value is not part of its rule), so this
//! does too. [`hodges_lehmann`] computes the interval as R's `wilcox.test(conf.int = TRUE)`,
//! which Kayenta calls, does (checked against R in the statistics' tests).

use super::{Answer, Detector, DetectorFactory, Look, Tolerances, Truth};
use crate::stats::mann_whitney::hodges_lehmann;

/// Points each side needs before a metric is judged.
pub const MIN_POINTS: usize = 3;
/// Kayenta's confidence level.
pub const CONFIDENCE: f64 = 0.98;
/// The recommended marginal score: at or below it the rollout is aborted.
pub const MARGINAL_SCORE: f64 = 75.0;
/// The recommended pass score (reported for completeness; never an abort).
pub const PASS_SCORE: f64 = 95.0;
/// Share of the estimate that the interval's lower end must exceed for High.
pub const LOWER_SHARE: f64 = 0.25;

/// How Kayenta classified one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Not significantly worse (or within the allowed increase).
    Pass,
    /// Significantly and materially higher than stable.
    High,
    /// Too few points to judge.
    Nodata,
}

/// Classifies canary points against stable points the way Kayenta's Mann-Whitney classifier
/// does for a metric whose increase is bad.
pub fn classify(canary: &[f64], stable: &[f64], allowed_increase: f64) -> Classification {
    if canary.len() < MIN_POINTS || stable.len() < MIN_POINTS {
        return Classification::Nodata;
    }
    let Some(shift) = hodges_lehmann(canary, stable, CONFIDENCE) else {
        return Classification::Nodata;
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (c, s) = (mean(canary), mean(stable));
    let ratio = if s > 0.0 {
        c / s
    } else if c > 0.0 {
        f64::INFINITY
    } else {
        1.0
    };
    let significant = shift.low > 0.0 && shift.low > LOWER_SHARE * shift.estimate;
    if significant && ratio > allowed_increase {
        Classification::High
    } else {
        Classification::Pass
    }
}

/// Makes [`Kayenta`] detectors.
#[derive(Debug, Clone, Copy)]
pub struct KayentaFactory {
    /// Allowed increases of error rate and latency.
    pub tolerances: Tolerances,
}

impl DetectorFactory for KayentaFactory {
    fn name(&self) -> &'static str {
        "kayenta"
    }

    fn make(&self, _truth: &Truth, tolerances: Tolerances) -> Box<dyn Detector> {
        Box::new(Kayenta::new(tolerances))
    }
}

/// One rollout's Kayenta analysis over a growing window.
#[derive(Debug, Clone)]
pub struct Kayenta {
    tolerances: Tolerances,
    canary_errors: Vec<f64>,
    stable_errors: Vec<f64>,
    canary_p99: Vec<f64>,
    stable_p99: Vec<f64>,
    last_score: Option<f64>,
    step: Option<usize>,
    in_step: usize,
}

impl Kayenta {
    /// A fresh analysis.
    pub fn new(tolerances: Tolerances) -> Self {
        Self {
            tolerances,
            canary_errors: Vec::new(),
            stable_errors: Vec::new(),
            canary_p99: Vec::new(),
            stable_p99: Vec::new(),
            last_score: None,
            step: None,
            in_step: 0,
        }
    }

    /// The score of the last judgement, if one was made.
    pub fn last_score(&self) -> Option<f64> {
        self.last_score
    }

    /// Score 0-100 of the window so far; `None` until every metric has enough points.
    fn score(&self) -> Option<f64> {
        let errors = classify(
            &self.canary_errors,
            &self.stable_errors,
            1.0 + self.tolerances.errors,
        );
        let latency = classify(
            &self.canary_p99,
            &self.stable_p99,
            1.0 + self.tolerances.latency,
        );
        if errors == Classification::Nodata || latency == Classification::Nodata {
            return None;
        }
        if errors == Classification::High {
            // The error rate is critical.
            return Some(0.0);
        }
        let metrics = [errors, latency];
        let passing = metrics
            .iter()
            .filter(|&&m| m == Classification::Pass)
            .count();
        Some(100.0 * passing as f64 / metrics.len() as f64)
    }
}

impl Detector for Kayenta {
    fn analyse(&mut self, look: &Look<'_>) -> Answer {
        if self.step != Some(look.step) {
            self.step = Some(look.step);
            self.in_step = 0;
        }
        self.in_step += 1;
        let interval = look.interval;
        let push = |v: Option<f64>, to: &mut Vec<f64>| {
            if let Some(x) = v.filter(|x| x.is_finite()) {
                to.push(x);
            }
        };
        push(interval.canary.error_rate(), &mut self.canary_errors);
        push(interval.stable.error_rate(), &mut self.stable_errors);
        push(interval.canary.latency_quantile(0.99), &mut self.canary_p99);
        push(interval.stable.latency_quantile(0.99), &mut self.stable_p99);
        self.last_score = self.score();
        match self.last_score {
            Some(s) if s <= MARGINAL_SCORE => Answer::Fail,
            Some(_) if self.in_step >= MIN_POINTS => Answer::Pass,
            _ => Answer::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BUCKETS, Interval, VersionInterval};

    fn version(requests: u64, errors: u64, slow: u64) -> VersionInterval {
        let mut buckets = vec![0; BUCKETS.len() + 1];
        buckets[4] = requests - slow;
        buckets[6] = slow;
        VersionInterval {
            requests,
            errors,
            buckets,
        }
    }

    fn interval(index: usize, stable: VersionInterval, canary: VersionInterval) -> Interval {
        Interval {
            index,
            seconds: 60.0,
            weight: 0.5,
            canary_share: 0.5,
            stable,
            canary,
            truth: Default::default(),
        }
    }

    fn analyse(k: &mut Kayenta, i: &Interval) -> Answer {
        k.analyse(&Look {
            interval: i,
            step: 0,
            next_weight: Some(1.0),
        })
    }

    #[test]
    fn flags_an_obvious_fivefold_error_regression() {
        let mut k = Kayenta::new(Tolerances::default());
        let mut aborted_at = None;
        for i in 0..10 {
            let jitter = (i % 3) as u64;
            let step = interval(
                i,
                version(1000, 5 + jitter, 20),
                version(1000, 25 + jitter, 20),
            );
            if analyse(&mut k, &step) == Answer::Fail {
                aborted_at = Some(i);
                break;
            }
        }
        assert_eq!(aborted_at, Some(MIN_POINTS - 1));
        assert_eq!(k.last_score(), Some(0.0));
    }

    #[test]
    fn passes_identical_versions_after_its_lifetime() {
        let mut k = Kayenta::new(Tolerances::default());
        let answers: Vec<Answer> = (0..4)
            .map(|i| {
                let jitter = (i % 4) as u64;
                let v = version(1000, 5 + jitter, 20);
                analyse(&mut k, &interval(i, v.clone(), v))
            })
            .collect();
        assert_eq!(
            answers,
            [Answer::Hold, Answer::Hold, Answer::Pass, Answer::Pass]
        );
        assert_eq!(k.last_score(), Some(100.0));
    }

    #[test]
    fn within_tolerance_is_a_pass() {
        // Canary 10% worse on every point: significant, but within the 20% allowed.
        let stable: Vec<f64> = (0..20).map(|i| 1.0 + 0.01 * i as f64).collect();
        let canary: Vec<f64> = stable.iter().map(|x| x * 1.1).collect();
        assert_eq!(classify(&canary, &stable, 1.2), Classification::Pass);
        assert_eq!(classify(&canary, &stable, 1.05), Classification::High);
        assert_eq!(
            classify(&canary[..2], &stable, 1.05),
            Classification::Nodata
        );
    }
}
