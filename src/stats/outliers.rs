//! Outlier handling with Tukey's IQR fences, applied to series points before the tests.

use super::summary::quantile_sorted;

/// What to do with points outside the fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutlierMode {
    /// Leave every point as it is (the rank tests are robust to outliers already).
    #[default]
    Keep,
    /// Drop points outside the fences.
    Remove,
    /// Move points outside the fences onto the nearest fence (winsorizing).
    Replace,
}

/// Tukey's fences `[Q1 - k*IQR, Q3 + k*IQR]` of the finite values, quartiles interpolated
/// linearly (numpy's default). `None` for no finite value or a `k` that is not positive.
pub fn iqr_fences(values: &[f64], k: f64) -> Option<(f64, f64)> {
    if !(k.is_finite() && k > 0.0) {
        return None;
    }
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let q1 = quantile_sorted(&sorted, 0.25)?;
    let q3 = quantile_sorted(&sorted, 0.75)?;
    let iqr = q3 - q1;
    Some((q1 - k * iqr, q3 + k * iqr))
}

/// Applies `mode` with fences at factor `k`; returns the points and how many were changed
/// or removed. Non-finite points are left for the NaN handling.
pub fn apply(values: &[f64], mode: OutlierMode, k: f64) -> (Vec<f64>, usize) {
    let fences = match mode {
        OutlierMode::Keep => None,
        _ => iqr_fences(values, k),
    };
    let Some((lo, hi)) = fences else {
        return (values.to_vec(), 0);
    };
    let mut touched = 0;
    let mut out = Vec::with_capacity(values.len());
    for &v in values {
        if v.is_finite() && (v < lo || v > hi) {
            touched += 1;
            if mode == OutlierMode::Replace {
                out.push(v.clamp(lo, hi));
            }
        } else {
            out.push(v);
        }
    }
    (out, touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_match_numpy_quartiles() {
        // numpy.percentile([1..=8, 100], [25, 75]) = [3, 7]: fences 3 - 6 = -3, 7 + 6 = 13.
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0];
        assert_eq!(iqr_fences(&v, 1.5), Some((-3.0, 13.0)));
        let (kept, n) = apply(&v, OutlierMode::Remove, 1.5);
        assert_eq!((kept.len(), n), (8, 1));
        let (clamped, n) = apply(&v, OutlierMode::Replace, 1.5);
        assert_eq!((clamped[8], n), (13.0, 1));
        assert_eq!(apply(&v, OutlierMode::Keep, 1.5), (v.to_vec(), 0));
    }

    #[test]
    fn degenerate_input() {
        assert_eq!(iqr_fences(&[], 1.5), None);
        assert_eq!(iqr_fences(&[1.0], 0.0), None);
        let v = [f64::NAN, 1.0, 1.0];
        let (out, n) = apply(&v, OutlierMode::Remove, 1.5);
        assert_eq!((out.len(), n), (3, 0));
    }
}
