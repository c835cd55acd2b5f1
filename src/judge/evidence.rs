//! Turns query answers into the evidence each test needs: counts, buckets or points.

use crate::data::QueryResult;
use crate::stats::histogram::Bucket;
use crate::stats::outliers::{self, OutlierMode};
use crate::template::{DEFAULT_IQR_FACTOR, NanStrategy, OutlierStrategy};
use std::collections::BTreeMap;

/// Cumulative bucket counts over the window from a `sum by (le)` answer.
pub fn buckets(result: &QueryResult, warnings: &mut Vec<String>) -> Result<Vec<Bucket>, String> {
    let mut out = Vec::with_capacity(result.series.len());
    let mut skipped = 0usize;
    for series in &result.series {
        let Some(le) = series.labels.get("le") else {
            return Err(format!(
                "the query returned a series without an `le` label ({}); a histogram query must \
                 keep the buckets, e.g. sum by (le) (increase(x_bucket{{...}}[{{{{ interval }}}}]))",
                format_labels(&series.labels)
            ));
        };
        let le = parse_le(le).ok_or_else(|| format!("bucket bound le={le:?} is not a number"))?;
        let mut count = 0.0;
        for &(_, v) in &series.points {
            if v.is_finite() && v >= 0.0 {
                count += v;
            } else {
                skipped += 1;
            }
        }
        out.push(Bucket { le, count });
    }
    if skipped > 0 {
        warnings.push(format!(
            "{skipped} NaN, infinite or negative bucket points were ignored"
        ));
    }
    if !out.is_empty() && !out.iter().any(|b| b.le == f64::INFINITY) {
        return Err(
            "the buckets have no le=\"+Inf\" bucket, so the request count is unknown; \
             query the whole histogram (all le values)"
                .into(),
        );
    }
    Ok(out)
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Every point of every series, after the template's NaN strategy.
pub fn points(
    result: &QueryResult,
    nan: NanStrategy,
    nan_value: Option<f64>,
    warnings: &mut Vec<String>,
) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    let mut removed = 0usize;
    for series in &result.series {
        for &(_, v) in &series.points {
            if v.is_finite() {
                out.push(v);
                continue;
            }
            match (nan, nan_value) {
                (NanStrategy::Replace, Some(r)) if v.is_nan() => out.push(r),
                (NanStrategy::Fail, _) => {
                    return Err(format!(
                        "the query returned {v} and the metric says nan: fail; fix the query (e.g. guard divisions) or choose nan: remove"
                    ));
                }
                _ => removed += 1,
            }
        }
    }
    if removed > 0 {
        warnings.push(format!("{removed} NaN or infinite points were removed"));
    }
    Ok(out)
}

/// One value per step: the mean of the step's points over all series (after the template's
/// NaN strategy), keyed by time stamp in milliseconds. With several series (one per Pod,
/// say) that is the mean per series, which does not grow with the number of Pods.
pub fn step_points(
    result: &QueryResult,
    nan: NanStrategy,
    nan_value: Option<f64>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<i64, f64>, String> {
    let mut sums: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    let mut removed = 0usize;
    for series in &result.series {
        for &(t, v) in &series.points {
            let value = if v.is_finite() {
                v
            } else {
                match (nan, nan_value) {
                    (NanStrategy::Replace, Some(r)) if v.is_nan() => r,
                    (NanStrategy::Fail, _) => {
                        return Err(format!(
                            "the query returned {v} and the metric says nan: fail; fix the query (e.g. guard divisions) or choose nan: remove"
                        ));
                    }
                    _ => {
                        removed += 1;
                        continue;
                    }
                }
            };
            let entry = sums.entry(millis(t)).or_insert((0.0, 0.0));
            entry.0 += value;
            entry.1 += 1.0;
        }
    }
    if removed > 0 {
        warnings.push(format!("{removed} NaN or infinite points were removed"));
    }
    Ok(sums
        .into_iter()
        .map(|(t, (sum, n))| (t, sum / n))
        .filter(|(_, v)| v.is_finite())
        .collect())
}

/// Applies the template's outlier strategy to points (after NaN handling).
pub fn without_outliers(
    points: Vec<f64>,
    strategy: OutlierStrategy,
    factor: Option<f64>,
    warnings: &mut Vec<String>,
) -> Vec<f64> {
    let mode = match strategy {
        OutlierStrategy::Keep => return points,
        OutlierStrategy::Remove => OutlierMode::Remove,
        OutlierStrategy::Replace => OutlierMode::Replace,
    };
    let k = factor.unwrap_or(DEFAULT_IQR_FACTOR);
    let (out, touched) = outliers::apply(&points, mode, k);
    if touched > 0 {
        let verb = if mode == OutlierMode::Remove {
            "removed"
        } else {
            "moved onto the fences"
        };
        warnings.push(format!(
            "{touched} outlying points (outside {k} IQR fences) were {verb}"
        ));
    }
    out
}

/// Time stamps in milliseconds, so points of different queries line up exactly.
fn millis(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

/// Per-step counts: each step's finite, non-negative values summed over all series.
pub fn step_counts(result: &QueryResult) -> BTreeMap<i64, f64> {
    let mut steps = BTreeMap::new();
    for series in &result.series {
        for &(t, v) in &series.points {
            let entry = steps.entry(millis(t)).or_insert(0.0);
            if v.is_finite() && v >= 0.0 {
                *entry += v;
            }
        }
    }
    steps
}

/// Per-step cumulative buckets of a `sum by (le)` answer.
pub fn step_buckets(result: &QueryResult) -> Result<BTreeMap<i64, Vec<Bucket>>, String> {
    let mut steps: BTreeMap<i64, Vec<Bucket>> = BTreeMap::new();
    for series in &result.series {
        let Some(le) = series.labels.get("le").and_then(|le| parse_le(le)) else {
            return Err("a histogram series without a numeric `le` label".into());
        };
        for &(t, v) in &series.points {
            let count = if v.is_finite() && v >= 0.0 { v } else { 0.0 };
            steps
                .entry(millis(t))
                .or_default()
                .push(Bucket { le, count });
        }
    }
    Ok(steps)
}
