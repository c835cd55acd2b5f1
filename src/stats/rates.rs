//! Comparison of error rates (errors out of requests) between the canary and
//! the stable version.

use statrs::distribution::{Binomial, DiscreteCDF};

use super::mann_whitney::Interval;
use super::{Alternative, normal_cdf, normal_sf, two_sided_z};

/// Largest total error count (after rounding) for which the exact conditional
/// binomial test is used; above it the two-proportion z test is used.
pub const EXACT_MAX_ERRORS: f64 = 2000.0;

/// Result of comparing the canary's error rate with the stable one's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateComparison {
    /// Canary errors / canary total.
    pub canary_rate: f64,
    /// Stable errors / stable total.
    pub stable_rate: f64,
    /// Rate ratio canary / stable with a Katz log-scale confidence interval.
    ///
    /// When either error count is zero, 0.5 is added to both error counts and
    /// both totals (Haldane correction) for the estimate and the interval, so
    /// the result stays finite and contains the plausible values.
    pub ratio: Interval,
    /// p-value for the requested alternative.
    pub p_value: f64,
    /// For the two-proportion test the pooled z statistic; for the exact test
    /// the canary's (rounded) error count.
    pub statistic: f64,
    /// `"exact conditional binomial"` or `"two-proportion z"`.
    pub test: &'static str,
}

/// Compares error rates of the canary and the stable version.
///
/// Counts may be non-integer (Prometheus `increase()`). `None` if any input is
/// non-finite or negative, a total is zero, errors exceed their total, or
/// `confidence` is not strictly between 0 and 1.
///
/// * Exact conditional test when `k = round(canary_errors) +
///   round(stable_errors) <= 2000`: given `k` errors in all, under equal rates
///   the canary's share is `Binomial(k, p0)` with
///   `p0 = canary_total / (canary_total + stable_total)`. `Greater` is
///   `P(X >= ce)`, `Less` is `P(X <= ce)`, `TwoSided` is
///   `min(1, 2 min(P(X >= ce), P(X <= ce)))` (doubling the smaller tail, not
///   SciPy's two-sided likelihood ordering). `k = 0` gives p = 1.
/// * Otherwise the pooled two-proportion z test on the unrounded counts,
///   `z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2))`; two-sided p is
///   `2 P(Z > |z|)`.
pub fn compare_rates(
    canary_errors: f64,
    canary_total: f64,
    stable_errors: f64,
    stable_total: f64,
    alternative: Alternative,
    confidence: f64,
) -> Option<RateComparison> {
    let (ce, ct, se, st) = (canary_errors, canary_total, stable_errors, stable_total);
    let valid = |v: f64| v.is_finite() && v >= 0.0;
    if !(valid(ce) && valid(ct) && valid(se) && valid(st)) {
        return None;
    }
    if ct <= 0.0 || st <= 0.0 || ce > ct || se > st {
        return None;
    }
    let z_crit = two_sided_z(confidence)?;
    let ratio = katz_interval(ce, ct, se, st, z_crit)?;

    let ce_round = ce.round();
    let k = ce_round + se.round();
    let (p_value, statistic, test) = if k <= EXACT_MAX_ERRORS {
        let p = if k == 0.0 {
            1.0
        } else {
            let p0 = ct / (ct + st);
            let dist = Binomial::new(p0, k as u64).ok()?;
            let x = ce_round as u64;
            let upper = if x == 0 { 1.0 } else { dist.sf(x - 1) };
            let lower = dist.cdf(x);
            match alternative {
                Alternative::Greater => upper,
                Alternative::Less => lower,
                Alternative::TwoSided => 2.0 * upper.min(lower),
            }
        };
        (p, ce_round, "exact conditional binomial")
    } else {
        let p1 = ce / ct;
        let p2 = se / st;
        let pooled = (ce + se) / (ct + st);
        let sd = (pooled * (1.0 - pooled) * (1.0 / ct + 1.0 / st)).sqrt();
        let z = if sd > 0.0 { (p1 - p2) / sd } else { 0.0 };
        let p = match alternative {
            Alternative::Greater => normal_sf(z),
            Alternative::Less => normal_cdf(z),
            Alternative::TwoSided => 2.0 * normal_sf(z.abs()),
        };
        (p, z, "two-proportion z")
    };
    Some(RateComparison {
        canary_rate: ce / ct,
        stable_rate: se / st,
        ratio,
        p_value: if p_value.is_nan() {
            1.0
        } else {
            p_value.clamp(0.0, 1.0)
        },
        statistic,
        test,
    })
}

/// Katz log-scale interval for the ratio of two rates, with a 0.5 correction
/// on every count when an error count is zero.
fn katz_interval(ce: f64, ct: f64, se: f64, st: f64, z: f64) -> Option<Interval> {
    let (a, n1, b, n2) = if ce == 0.0 || se == 0.0 {
        (ce + 0.5, ct + 0.5, se + 0.5, st + 0.5)
    } else {
        (ce, ct, se, st)
    };
    let estimate = (a / n1) / (b / n2);
    let var = (1.0 / a - 1.0 / n1 + 1.0 / b - 1.0 / n2).max(0.0);
    let half = z * var.sqrt();
    if estimate.is_nan() {
        return None;
    }
    let log_est = estimate.ln();
    // Extreme (e.g. subnormal) counts can give inf - inf: fall back to the
    // uninformative bound rather than NaN.
    let low = (log_est - half).exp();
    let high = (log_est + half).exp();
    Some(Interval {
        estimate,
        low: if low.is_nan() { 0.0 } else { low },
        high: if high.is_nan() { f64::INFINITY } else { high },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::{alternative, assert_close};

    #[test]
    fn matches_reference() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stats/rates.json"))
                .expect("json");
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() >= 30);
        for (i, c) in cases.iter().enumerate() {
            let f = |k: &str| c[k].as_f64().expect(k);
            let alt = alternative(c["alternative"].as_str().expect("alt"));
            let r = compare_rates(
                f("canary_errors"),
                f("canary_total"),
                f("stable_errors"),
                f("stable_total"),
                alt,
                f("confidence"),
            )
            .expect("result");
            let what = |s: &str| format!("case {i} {alt:?} {s}");
            assert_eq!(r.test, c["test"].as_str().expect("test"), "case {i}");
            assert_close(r.p_value, f("p"), &what("p"));
            assert_close(r.statistic, f("statistic"), &what("statistic"));
            assert_close(r.canary_rate, f("canary_rate"), &what("canary rate"));
            assert_close(r.stable_rate, f("stable_rate"), &what("stable rate"));
            assert_close(r.ratio.estimate, f("ratio"), &what("ratio"));
            assert_close(r.ratio.low, f("low"), &what("low"));
            assert_close(r.ratio.high, f("high"), &what("high"));
            assert!(r.ratio.low <= r.ratio.estimate && r.ratio.estimate <= r.ratio.high);
        }
    }

    #[test]
    fn rejects_invalid_input() {
        let t = Alternative::TwoSided;
        assert!(compare_rates(1.0, 0.0, 1.0, 10.0, t, 0.95).is_none());
        assert!(compare_rates(1.0, 10.0, 1.0, -10.0, t, 0.95).is_none());
        assert!(compare_rates(11.0, 10.0, 1.0, 10.0, t, 0.95).is_none());
        assert!(compare_rates(-1.0, 10.0, 1.0, 10.0, t, 0.95).is_none());
        assert!(compare_rates(f64::NAN, 10.0, 1.0, 10.0, t, 0.95).is_none());
        assert!(compare_rates(1.0, f64::INFINITY, 1.0, 10.0, t, 0.95).is_none());
        assert!(compare_rates(1.0, 10.0, 1.0, 10.0, t, 0.0).is_none());
        assert!(compare_rates(1.0, 10.0, 1.0, 10.0, t, 1.0).is_none());
    }

    #[test]
    fn sound_edge_cases() {
        for alt in [
            Alternative::TwoSided,
            Alternative::Greater,
            Alternative::Less,
        ] {
            // Every request failed on both sides (z test with zero variance).
            let r = compare_rates(5000.0, 5000.0, 9000.0, 9000.0, alt, 0.95).expect("r");
            assert_eq!(r.test, "two-proportion z");
            assert_eq!(r.statistic, 0.0);
            assert!(r.p_value >= 0.5);
            assert_close(r.ratio.estimate, 1.0, "ratio");
            // Tiny fractional counts that round to zero errors.
            let r = compare_rates(0.3, 0.6, 0.2, 1e9, alt, 0.95).expect("r");
            assert_eq!(r.p_value, 1.0);
            assert!(r.ratio.low.is_finite() && r.ratio.high.is_finite());
            // All canary requests failed, stable clean.
            let r = compare_rates(10.0, 10.0, 0.0, 1000.0, alt, 0.95).expect("r");
            assert!(r.ratio.low > 1.0 && r.ratio.high.is_finite());
        }
        let r = compare_rates(10.0, 10.0, 0.0, 1000.0, Alternative::Greater, 0.95).expect("r");
        assert!(r.p_value < 1e-15);
        // p0 rounds to 1.0: still a valid (trivial) answer.
        for alt in [
            Alternative::TwoSided,
            Alternative::Greater,
            Alternative::Less,
        ] {
            let r = compare_rates(5.0, 1e20, 1.0, 1.0, alt, 0.95).expect("r");
            assert!((0.0..=1.0).contains(&r.p_value));
            assert!(r.ratio.low <= r.ratio.estimate && r.ratio.estimate <= r.ratio.high);
        }
    }
}
