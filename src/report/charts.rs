//! The numbers behind the HTML report's charts, taken from a metric's fetched data
//! ([`MetricData`]): per-version time series (error rate per step, a latency quantile per
//! step, plain values), a histogram's distribution over its buckets, Wilson score intervals
//! of error rates, and downsampling of long series. Pure functions that never panic on odd
//! data: NaN, infinite and missing values are skipped.

use crate::data::{QueryResult, Role};
use crate::judge::MetricData;
use crate::stats::histogram;
use crate::template::QueryPart;
use std::collections::BTreeMap;

/// Points of a time series: (Unix seconds, value), in time order.
pub type Points = Vec<(f64, f64)>;

/// The most points a plotted line keeps; longer series are downsampled.
pub const MAX_POINTS: usize = 400;

/// The normal quantile of a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

fn answer(data: &MetricData, role: Role, part: QueryPart) -> Option<&QueryResult> {
    data.results.get(&(role, part))
}

/// Finite values per step (milliseconds), each reduced over the series of the answer:
/// summed (counts) or averaged (readings).
fn per_step(result: Option<&QueryResult>, sum: bool) -> BTreeMap<i64, f64> {
    let mut steps: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for series in result.map(|r| r.series.as_slice()).unwrap_or_default() {
        for &(t, v) in &series.points {
            if t.is_finite() && v.is_finite() {
                let entry = steps.entry((t * 1000.0).round() as i64).or_default();
                entry.0 += v;
                entry.1 += 1.0;
            }
        }
    }
    steps
        .into_iter()
        .map(|(t, (total, n))| (t, if sum { total } else { total / n }))
        .collect()
}

fn seconds(t: i64) -> f64 {
    t as f64 / 1000.0
}

/// A ratio metric's error rate (errors / total) per step; steps without requests are left out.
pub fn error_rate(data: &MetricData, role: Role) -> Points {
    let errors = per_step(answer(data, role, QueryPart::Errors), true);
    per_step(answer(data, role, QueryPart::Total), true)
        .into_iter()
        .filter(|(_, total)| *total > 0.0)
        .map(|(t, total)| {
            let e = errors.get(&t).copied().unwrap_or(0.0);
            (seconds(t), e / total)
        })
        .collect()
}

/// A series or threshold metric's values per step (the mean when several series answer).
pub fn values(data: &MetricData, role: Role) -> Points {
    per_step(answer(data, role, QueryPart::Query), false)
        .into_iter()
        .map(|(t, v)| (seconds(t), v))
        .collect()
}

/// The upper bound of a bucket from its `le` label (`+Inf` included).
fn bound(le: &str) -> Option<f64> {
    match le.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        text => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}

/// A histogram answer's cumulative bucket counts per step: step -> [(le, count)] by le.
fn buckets_per_step(result: Option<&QueryResult>) -> BTreeMap<i64, Vec<(f64, f64)>> {
    let mut steps: BTreeMap<i64, Vec<(f64, f64)>> = BTreeMap::new();
    for series in result.map(|r| r.series.as_slice()).unwrap_or_default() {
        let Some(le) = series.labels.get("le").and_then(|l| bound(l)) else {
            continue;
        };
        for &(t, v) in &series.points {
            if t.is_finite() && v.is_finite() {
                let buckets = steps.entry((t * 1000.0).round() as i64).or_default();
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some(bucket) => bucket.1 += v,
                    None => buckets.push((le, v)),
                }
            }
        }
    }
    for buckets in steps.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    steps
}

/// A histogram metric's `q` latency quantile per step, as Prometheus' `histogram_quantile`
/// computes it ([`histogram::quantile`]); steps without requests are left out.
pub fn quantile(data: &MetricData, role: Role, q: f64) -> Points {
    buckets_per_step(answer(data, role, QueryPart::Query))
        .into_iter()
        .filter_map(|(t, buckets)| {
            let buckets: Vec<histogram::Bucket> = buckets
                .into_iter()
                .map(|(le, count)| histogram::Bucket { le, count })
                .collect();
            let value = histogram::quantile(q, &buckets)?;
            value.is_finite().then_some((seconds(t), value))
        })
        .collect()
}

/// One bucket of a distribution: its upper bound and the requests that fell into it
/// (not cumulative) over the whole window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's `le` bound (infinite for `+Inf`).
    pub le: f64,
    /// Requests in `(previous le, le]`.
    pub count: f64,
}

/// A histogram metric's requests per bucket, summed over the window, in `le` order.
pub fn distribution(data: &MetricData, role: Role) -> Vec<Bucket> {
    let mut cumulative: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for buckets in buckets_per_step(answer(data, role, QueryPart::Query)).into_values() {
        for (le, count) in buckets {
            // Sort keys: the bits of a non-negative float order like the float.
            cumulative
                .entry(le.max(0.0).to_bits())
                .or_insert((le, 0.0))
                .1 += count;
        }
    }
    let mut previous = 0.0;
    cumulative
        .into_values()
        .map(|(le, total)| {
            let count = (total - previous).max(0.0);
            previous = previous.max(total);
            Bucket { le, count }
        })
        .collect()
}

/// The Wilson score interval of `errors` out of `n` at normal quantile `z`, or `None`
/// without requests or with nonsensical counts.
pub fn wilson(errors: f64, n: f64, z: f64) -> Option<[f64; 2]> {
    if !(n > 0.0 && n.is_finite() && errors >= 0.0 && errors <= n && z.is_finite()) {
        return None;
    }
    let p = errors / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

/// `points` without non-finite values, and at most `max` of them: the first and last point
/// and, in between, the lowest and highest point of each of equal slices, in time order, so
/// spikes survive. `max` below 4 is taken as 4.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Points {
    let finite: Points = points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    let max = max.max(4);
    if finite.len() <= max {
        return finite;
    }
    let (first, last) = (finite[0], finite[finite.len() - 1]);
    let inner = &finite[1..finite.len() - 1];
    let slices = (max - 2) / 2;
    let mut out = Vec::with_capacity(max);
    out.push(first);
    for k in 0..slices {
        let slice = &inner[k * inner.len() / slices..(k + 1) * inner.len() / slices];
        let low = slice
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.1.total_cmp(&b.1.1));
        let high = slice
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        if let (Some((i, lo)), Some((j, hi))) = (low, high) {
            match i.cmp(&j) {
                std::cmp::Ordering::Less => out.extend([*lo, *hi]),
                std::cmp::Ordering::Greater => out.extend([*hi, *lo]),
                std::cmp::Ordering::Equal => out.push(*lo),
            }
        }
    }
    out.push(last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Series;

    fn result(series: Vec<(Option<&str>, Points)>) -> QueryResult {
        QueryResult {
            series: series
                .into_iter()
                .map(|(le, points)| Series {
                    labels: le
                        .map(|le| BTreeMap::from([("le".to_string(), le.to_string())]))
                        .unwrap_or_default(),
                    points,
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn wilson_matches_scipy() {
        // Reference values from scipy's binomtest(k, n).proportion_ci(method="wilson"):
        // tests/fixtures/report/wilson.py prints them.
        let cases = [
            (
                (30.0, 1000.0),
                [0.021_093_738_828_834_696, 0.042_503_414_147_587_126],
            ),
            ((0.0, 50.0), [0.0, 0.071_347_599_133_358_72]),
            ((5.0, 5.0), [0.565_517_535_216_825_1, 1.0]),
        ];
        for ((k, n), [lo, hi]) in cases {
            let Some([a, b]) = wilson(k, n, Z95) else {
                panic!("no interval for {k}/{n}");
            };
            assert!(
                (a - lo).abs() < 1e-12 && (b - hi).abs() < 1e-12,
                "{k}/{n}: [{a}, {b}]"
            );
        }
        assert_eq!(wilson(1.0, 0.0, Z95), None);
        assert_eq!(wilson(f64::NAN, 10.0, Z95), None);
        assert_eq!(wilson(11.0, 10.0, Z95), None);
    }

    #[test]
    fn quantiles_per_step_interpolate_like_prometheus() {
        let mut data = MetricData::default();
        let bucket = |le: &'static str, at_60: f64, at_120: f64| {
            (Some(le), vec![(60.0, at_60), (120.0, at_120)])
        };
        data.results.insert(
            (Role::Canary, QueryPart::Query),
            result(vec![
                bucket("0.1", 50.0, 50.0),
                bucket("0.5", 90.0, 60.0),
                bucket("1", 100.0, 60.0),
                bucket("+Inf", 100.0, 100.0),
            ]),
        );
        let at = |q: f64| quantile(&data, Role::Canary, q);
        // 60: rank 50 is the top of the first bucket, which starts at 0; rank 70 is halfway
        // through (0.1, 0.5]; rank 25 halfway through the first bucket.
        assert!((at(0.5)[0].1 - 0.1).abs() < 1e-12);
        assert!((at(0.7)[0].1 - 0.3).abs() < 1e-12);
        assert!((at(0.25)[0].1 - 0.05).abs() < 1e-12);
        // 120: rank 99 falls in +Inf, which answers the highest finite bound.
        assert_eq!(at(0.99)[1], (120.0, 1.0));
    }

    #[test]
    fn extraction_skips_nan_and_missing_data() {
        let mut data = MetricData::default();
        assert!(error_rate(&data, Role::Canary).is_empty());
        assert!(quantile(&data, Role::Canary, 0.99).is_empty());
        assert!(distribution(&data, Role::Canary).is_empty());
        data.results.insert(
            (Role::Canary, QueryPart::Errors),
            result(vec![(
                None,
                vec![(60.0, 1.0), (120.0, f64::NAN), (180.0, 2.0)],
            )]),
        );
        data.results.insert(
            (Role::Canary, QueryPart::Total),
            result(vec![(
                None,
                vec![(60.0, 10.0), (120.0, 10.0), (180.0, 0.0)],
            )]),
        );
        // 120: errors NaN counts as none; 180: no requests, left out
        assert_eq!(
            error_rate(&data, Role::Canary),
            vec![(60.0, 0.1), (120.0, 0.0)]
        );
        data.results.insert(
            (Role::Stable, QueryPart::Query),
            result(vec![
                (Some("0.1"), vec![(60.0, 5.0), (120.0, f64::INFINITY)]),
                (Some("+Inf"), vec![(60.0, 10.0), (120.0, 4.0)]),
                (Some("bogus"), vec![(60.0, 1.0)]),
                (None, vec![(60.0, 1.0)]),
            ]),
        );
        let d = distribution(&data, Role::Stable);
        assert_eq!(
            d,
            vec![
                Bucket {
                    le: 0.1,
                    count: 5.0
                },
                Bucket {
                    le: f64::INFINITY,
                    count: 9.0
                }
            ]
        );
        let q = quantile(&data, Role::Stable, 0.5);
        assert_eq!(q.len(), 1, "the second step has only +Inf");
        assert!((q[0].1 - 0.1).abs() < 1e-12);
    }

    #[test]
    fn downsampling_keeps_ends_and_bounds_the_count() {
        let points: Points = (0..10_000)
            .map(|i| (i as f64, if i == 5000 { 1e6 } else { (i % 7) as f64 }))
            .collect();
        let d = downsample(&points, MAX_POINTS);
        assert!(d.len() <= MAX_POINTS, "{}", d.len());
        assert!(d.len() > MAX_POINTS / 2);
        assert_eq!(d.first(), points.first());
        assert_eq!(d.last(), points.last());
        assert!(d.contains(&(5000.0, 1e6)), "the spike survives");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "time order");
        let short = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)];
        assert_eq!(downsample(&short, MAX_POINTS), vec![(0.0, 1.0), (2.0, 3.0)]);
        assert!(downsample(&[], 10).is_empty());
    }
}
