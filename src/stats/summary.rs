//! Descriptive summaries of raw samples.

/// Descriptive statistics of a sample (NaN values excluded).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Number of non-NaN values.
    pub n: usize,
    /// Arithmetic mean (IEEE semantics: NaN if both +inf and -inf occur).
    pub mean: f64,
    /// Median (linear interpolation, like `numpy.median`).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 90th percentile (linear interpolation, numpy's default method).
    pub p90: f64,
}

/// Summarizes `values`, ignoring NaN. `None` if no value remains.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    Some(Summary {
        n,
        mean: mean(&sorted),
        median: quantile_sorted(&sorted, 0.5)?,
        min: sorted[0],
        max: sorted[n - 1],
        p90: quantile_sorted(&sorted, 0.9)?,
    })
}

/// Mean that does not overflow for large finite values.
fn mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if mean.is_finite() || values.iter().any(|v| !v.is_finite()) {
        mean
    } else {
        values.iter().map(|v| v / n).sum()
    }
}

/// Quantile `q` of an ascending-sorted, NaN-free slice by linear interpolation
/// between order statistics (numpy's default `method="linear"`:
/// position `(n - 1) q`).
///
/// `None` if the slice is empty or `q` is outside `[0, 1]` (or NaN).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let position = (sorted.len() - 1) as f64 * q;
    let lower = (position.floor() as usize).min(sorted.len() - 1);
    let upper = (lower + 1).min(sorted.len() - 1);
    let fraction = position - lower as f64;
    let (a, b) = (sorted[lower], sorted[upper]);
    // Avoid inf - inf when both neighbours are the same infinity.
    if fraction == 0.0 || a == b {
        return Some(a);
    }
    // numpy's lerp: interpolate from the nearer end for accuracy.
    let value = if fraction < 0.5 {
        a + (b - a) * fraction
    } else {
        b - (b - a) * (1.0 - fraction)
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::{assert_close, floats};

    #[test]
    fn matches_numpy() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stats/summary.json"))
                .expect("json");
        for (i, c) in v["cases"].as_array().expect("cases").iter().enumerate() {
            let s = summarize(&floats(&c["values"])).expect("summary");
            let f = |k: &str| c[k].as_f64().expect(k);
            let what = format!("case {i}");
            assert_eq!(s.n as f64, f("n"), "{what}");
            assert_close(s.mean, f("mean"), &what);
            assert_close(s.median, f("median"), &what);
            assert_close(s.min, f("min"), &what);
            assert_close(s.max, f("max"), &what);
            assert_close(s.p90, f("p90"), &what);
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[f64::NAN]), None);
        let s = summarize(&[f64::NAN, 2.0, 1.0]).expect("s");
        assert_eq!(
            (s.n, s.mean, s.median, s.min, s.max),
            (2, 1.5, 1.5, 1.0, 2.0)
        );
        let s = summarize(&[f64::MAX, f64::MAX]).expect("s");
        assert_eq!(s.mean, f64::MAX);
        let s = summarize(&[1.0, f64::INFINITY, f64::INFINITY]).expect("s");
        assert_eq!(s.p90, f64::INFINITY);
        assert_eq!(s.median, f64::INFINITY);
        assert_eq!(quantile_sorted(&[], 0.5), None);
        assert_eq!(quantile_sorted(&[1.0], 1.5), None);
        assert_eq!(quantile_sorted(&[1.0], f64::NAN), None);
        assert_eq!(quantile_sorted(&[1.0, 3.0], 1.0), Some(3.0));
        assert_eq!(quantile_sorted(&[1.0, 3.0], 0.25), Some(1.5));
        let json = serde_json::to_string(&summarize(&[1.0]).expect("s")).expect("json");
        assert!(json.contains("\"p90\":1.0"), "{json}");
    }
}
