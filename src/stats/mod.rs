//! Pure statistics for canary analysis: rank tests, rate comparisons, anytime-valid
//! sequential tests and confidence sequences, Prometheus histogram arithmetic and
//! descriptive summaries.
//!
//! Everything here is deterministic and panic-free: functions return `None`
//! (or a conservative answer) for empty, degenerate or non-finite input.
//! Wherever a test involves two samples, the *first* one is the canary.

pub mod confseq;
pub mod histogram;
pub mod mann_whitney;
pub mod outliers;
pub mod random;
pub mod rates;
pub mod sequential;
pub mod sprt;
pub mod srm;
pub mod summary;

pub use mann_whitney::Interval;

use statrs::distribution::{ContinuousCDF, Normal};

/// Which alternative hypothesis; "first sample" is always the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// The canary differs from the stable version in either direction.
    TwoSided,
    /// The canary tends to be larger than the stable version.
    Greater,
    /// The canary tends to be smaller than the stable version.
    Less,
}

/// Two-sided standard-normal critical value `z` with `P(|Z| <= z) = confidence`.
///
/// `None` unless `0 < confidence < 1`.
pub(crate) fn two_sided_z(confidence: f64) -> Option<f64> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let normal = Normal::standard();
    let z = normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    z.is_finite().then_some(z)
}

/// Standard-normal survival function `P(Z > z)` (NaN-safe: NaN maps to 1).
pub(crate) fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    Normal::standard().sf(z)
}

/// Standard-normal distribution function `P(Z <= z)` (NaN-safe: NaN maps to 1).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    Normal::standard().cdf(z)
}

/// Shared helpers for the unit tests of the submodules.
#[cfg(test)]
pub(crate) mod testutil {
    /// `a` is within 1e-6 relative of `b`, or within 1e-9 absolute (near 0).
    pub fn close(a: f64, b: f64) -> bool {
        if a == b {
            return true;
        }
        let diff = (a - b).abs();
        diff <= 1e-6 * b.abs() || diff <= 1e-9
    }

    /// Panics with a readable message unless `close(actual, expected)`.
    #[track_caller]
    pub fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            close(actual, expected),
            "{what}: got {actual:e}, expected {expected:e}"
        );
    }

    /// Tiny deterministic linear congruential generator (Knuth MMIX constants).
    pub struct Lcg(pub u64);

    impl Lcg {
        /// Next uniform value in [0, 1) with 53 random bits.
        pub fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// `n` uniform values in [0, 1).
        pub fn sample(&mut self, n: usize) -> Vec<f64> {
            (0..n).map(|_| self.uniform()).collect()
        }
    }

    /// Parses an alternative as spelled by SciPy.
    pub fn alternative(s: &str) -> super::Alternative {
        match s {
            "two-sided" => super::Alternative::TwoSided,
            "greater" => super::Alternative::Greater,
            "less" => super::Alternative::Less,
            other => panic!("unknown alternative {other}"),
        }
    }

    /// Reads a JSON array of numbers.
    pub fn floats(v: &serde_json::Value) -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::histogram::{Bucket, chi_square_homogeneity, quantile, quantile_interval, total};
    use super::mann_whitney::{common_language_effect_size, hodges_lehmann, mann_whitney_u};
    use super::rates::compare_rates;
    use super::summary::summarize;
    use super::*;

    #[test]
    fn hostile_inputs_do_not_panic() {
        let inf = f64::INFINITY;
        let samples: Vec<Vec<f64>> = vec![
            vec![],
            vec![f64::NAN],
            vec![inf, -inf],
            vec![f64::MAX, -f64::MAX, 0.0, -0.0],
            vec![f64::MIN_POSITIVE, 5e-324, 1.0],
            vec![1.0; 60],
        ];
        let alts = [
            Alternative::TwoSided,
            Alternative::Greater,
            Alternative::Less,
        ];
        for x in &samples {
            let _ = summarize(x);
            for y in &samples {
                let _ = common_language_effect_size(x, y);
                for conf in [0.95, 0.0, 1.0, f64::NAN, 1e-300] {
                    if let Some(i) = hodges_lehmann(x, y, conf) {
                        assert!(i.low <= i.high);
                    }
                }
                for alt in alts {
                    if let Some(r) = mann_whitney_u(x, y, alt) {
                        assert!((0.0..=1.0).contains(&r.p_value), "{x:?} {y:?} {r:?}");
                    }
                }
            }
        }
        let counts = [0.0, 0.4, 1.0, 3000.0, 1e300, inf, f64::NAN, -1.0, 5e-324];
        for &ce in &counts {
            for &ct in &counts {
                for &se in &counts {
                    for &st in &counts {
                        for alt in alts {
                            if let Some(r) = compare_rates(ce, ct, se, st, alt, 0.95) {
                                assert!((0.0..=1.0).contains(&r.p_value), "{r:?}");
                                assert!(!r.ratio.low.is_nan() && !r.ratio.high.is_nan());
                            }
                        }
                    }
                }
            }
        }
        let b = |le: f64, count: f64| Bucket { le, count };
        let hists: Vec<Vec<Bucket>> = vec![
            vec![],
            vec![b(inf, 10.0)],
            vec![b(-inf, 5.0), b(1.0, 8.0), b(inf, 10.0)],
            vec![b(f64::NAN, 1.0), b(1.0, f64::NAN), b(inf, inf)],
            vec![b(0.0, 3.0), b(-0.0, 2.0), b(inf, -4.0)],
            vec![b(1.0, 1e300), b(2.0, f64::MAX), b(inf, f64::MAX)],
        ];
        for h in &hists {
            let _ = total(h);
            for q in [0.0, 0.5, 1.0, f64::NAN, -1.0] {
                if let Some(v) = quantile(q, h) {
                    assert!(!v.is_nan());
                }
                let _ = quantile_interval(q, h, 0.95);
            }
            for g in &hists {
                if let Some(r) = chi_square_homogeneity(h, g) {
                    assert!((0.0..=1.0).contains(&r.p_value));
                }
            }
        }
    }
}
