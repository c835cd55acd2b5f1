//! Prometheus histogram buckets: normalization, `histogram_quantile`-compatible
//! quantiles with order-statistic intervals, interpolated counts at any value, and a
//! chi-square test comparing two versions' latency distributions.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::mann_whitney::Interval;
use super::two_sided_z;

/// Minimum expected count per cell in [`chi_square_homogeneity`].
pub const MIN_EXPECTED: f64 = 5.0;

/// One cumulative histogram bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Upper bound (inclusive); may be `f64::INFINITY`.
    pub le: f64,
    /// Cumulative count of observations `<= le`.
    pub count: f64,
}

/// Sorts buckets by `le`, merges buckets with equal `le` (summing their
/// counts, as Prometheus does), drops buckets whose `le` is NaN or whose count
/// is not finite, and makes the cumulative counts monotonic by carrying the
/// running maximum forward (as `histogram_quantile` does; negative counts are
/// raised to 0). The `+Inf` bucket is kept.
pub fn normalize(buckets: &[Bucket]) -> Vec<Bucket> {
    let mut sorted: Vec<Bucket> = buckets
        .iter()
        .copied()
        .filter(|b| !b.le.is_nan() && b.count.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.le.total_cmp(&b.le));
    let mut merged: Vec<Bucket> = Vec::with_capacity(sorted.len());
    for b in sorted {
        match merged.last_mut() {
            // `==` so that -0.0 and 0.0 merge.
            Some(last) if last.le == b.le => last.count += b.count,
            _ => merged.push(b),
        }
    }
    let mut running = 0.0_f64;
    for b in &mut merged {
        running = running.max(b.count);
        b.count = running;
    }
    merged
}

/// Total number of observations: the count of the `+Inf` bucket (or of the
/// largest bucket if `+Inf` is missing) after [`normalize`]; 0 if empty.
pub fn total(buckets: &[Bucket]) -> f64 {
    normalize(buckets).last().map_or(0.0, |b| b.count)
}

/// The cumulative count at `x`, interpolated linearly within its bucket (the lower bound of
/// the first bucket is 0), as `histogram_quantile` assumes observations spread evenly within
/// a bucket. `buckets` must be normalized. `None` for NaN, or `x` beyond the last finite
/// bound (nothing is known inside the `+Inf` bucket).
pub fn count_at(x: f64, buckets: &[Bucket]) -> Option<f64> {
    if x.is_nan() {
        return None;
    }
    let mut lower = (0.0, 0.0);
    for b in buckets {
        if x <= b.le {
            if !b.le.is_finite() {
                return None;
            }
            let (l, c) = lower;
            if x <= l || b.le <= l {
                return Some(c);
            }
            return Some(c + (b.count - c) * ((x - l) / (b.le - l)).clamp(0.0, 1.0));
        }
        lower = (b.le, b.count);
    }
    None
}

/// The tail's elasticity at a bucket bound: how fast the share of observations above a value
/// falls as the value grows, `-d ln S / d ln x`, estimated at the finite bound `bound` as the
/// mean of the log-survival slopes of the bucket just below and the bucket just above it
/// (one of them where the other is unusable). A value `f` times smaller than `bound` then
/// has about `f^elasticity` times as many observations above it. `buckets` must be
/// normalized; `None` when neither neighbouring bucket gives a slope.
pub fn tail_elasticity(bound: f64, buckets: &[Bucket]) -> Option<f64> {
    let total = buckets.last()?.count;
    let index = buckets.iter().position(|b| b.le == bound)?;
    let above = |i: usize| total - buckets[i].count;
    let slope = |lo: usize, hi: usize| {
        let (l, u) = (buckets[lo].le, buckets[hi].le);
        let (s_l, s_u) = (above(lo), above(hi));
        (l > 0.0 && u.is_finite() && s_l > 0.0 && s_u > 0.0 && u > l)
            .then(|| (s_l / s_u).ln() / (u / l).ln())
    };
    let below = index.checked_sub(1).and_then(|i| slope(i, index));
    let after = (index + 1 < buckets.len())
        .then(|| slope(index, index + 1))
        .flatten();
    match (below, after) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

/// The finite, positive bucket bound nearest to the `q` quantile on a log scale, so the share
/// of observations above it is as close to `1 - q` as the buckets allow. `buckets` must be
/// normalized.
pub fn bound_near_quantile(q: f64, buckets: &[Bucket]) -> Option<f64> {
    let value = quantile(q, buckets)?;
    if value.is_nan() || value <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .map(|b| b.le)
        .filter(|le| le.is_finite() && *le > 0.0)
        .min_by(|a, b| (a / value).ln().abs().total_cmp(&(b / value).ln().abs()))
}

/// Normalized buckets usable for quantiles: at least two, ending in `+Inf`,
/// with a positive total.
fn quantile_buckets(buckets: &[Bucket]) -> Option<Vec<Bucket>> {
    let b = normalize(buckets);
    let last = b.last()?;
    if b.len() < 2 || last.le != f64::INFINITY || last.count <= 0.0 {
        return None;
    }
    Some(b)
}

/// Value at cumulative rank `rank` by Prometheus's interpolation, on buckets
/// that passed [`quantile_buckets`].
fn value_at_rank(rank: f64, b: &[Bucket]) -> Option<f64> {
    let n = b.len();
    let i = b[..n - 1]
        .iter()
        .position(|bucket| bucket.count >= rank)
        .unwrap_or(n - 1);
    if i == n - 1 {
        return Some(b[n - 2].le);
    }
    if i == 0 && b[0].le <= 0.0 {
        return Some(b[0].le);
    }
    let (start, count, rank) = if i > 0 {
        (
            b[i - 1].le,
            b[i].count - b[i - 1].count,
            rank - b[i - 1].count,
        )
    } else {
        (0.0, b[0].count, rank)
    };
    let value = if count > 0.0 {
        start + (b[i].le - start) * (rank / count)
    } else {
        // Only reachable for rank 0 in an empty first bucket (Prometheus
        // would return NaN): the lower bound is the sound answer.
        start
    };
    (!value.is_nan()).then_some(value)
}

/// Quantile `q` exactly as Prometheus `histogram_quantile` computes it.
///
/// After [`normalize`]: `rank = q * total`; the first bucket whose cumulative
/// count is `>= rank` is chosen; if it is the `+Inf` bucket the upper bound of
/// the bucket below is returned; the first bucket's lower bound is 0 (unless
/// its upper bound is `<= 0`, in which case that bound is returned); otherwise
/// the value is interpolated linearly inside the bucket.
///
/// `None` if `q` is outside `[0, 1]` (or NaN), there is no `+Inf` bucket,
/// fewer than two buckets, or the total is 0.
pub fn quantile(q: f64, buckets: &[Bucket]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let b = quantile_buckets(buckets)?;
    let n = b[b.len() - 1].count;
    value_at_rank(q * n, &b)
}

/// [`quantile`] with a distribution-free order-statistic interval.
///
/// With `n` the total count, the bounds are the values interpolated (as in
/// [`quantile`]) at ranks `n q -/+ z sqrt(n q (1 - q))`, clamped to `[0, n]`,
/// where `z` is the two-sided normal critical value for `confidence` (the
/// normal approximation of the binomial count below the true quantile).
/// Bucket resolution still applies: bounds never leave the buckets the ranks
/// fall in, and ranks in the `+Inf` bucket give the largest finite bound.
///
/// `None` when [`quantile`] is `None` or `confidence` is not in `(0, 1)`.
pub fn quantile_interval(q: f64, buckets: &[Bucket], confidence: f64) -> Option<Interval> {
    let z = two_sided_z(confidence)?;
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let b = quantile_buckets(buckets)?;
    let n = b[b.len() - 1].count;
    let rank = q * n;
    let half = z * (n * q * (1.0 - q)).max(0.0).sqrt();
    Some(Interval {
        estimate: value_at_rank(rank, &b)?,
        low: value_at_rank((rank - half).clamp(0.0, n), &b)?,
        high: value_at_rank((rank + half).clamp(0.0, n), &b)?,
    })
}

/// Result of a chi-square test of homogeneity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homogeneity {
    /// Pearson chi-square statistic (no continuity correction).
    pub statistic: f64,
    /// Degrees of freedom: number of bins after merging, minus 1.
    pub df: f64,
    /// Upper-tail p-value.
    pub p_value: f64,
}

/// Non-cumulative counts of both (normalized) histograms on the `le` bounds
/// they have in common.
fn aligned_counts(a: &[Bucket], b: &[Bucket]) -> Vec<(f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let (mut prev_a, mut prev_b) = (0.0, 0.0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        if a[i].le == b[j].le {
            out.push((a[i].count - prev_a, b[j].count - prev_b));
            prev_a = a[i].count;
            prev_b = b[j].count;
            i += 1;
            j += 1;
        } else if a[i].le < b[j].le {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Merges adjacent bins left to right until every expected count is at least
/// [`MIN_EXPECTED`]; a trailing group that falls short joins the previous bin.
fn merge_bins(bins: &[(f64, f64)], total_a: f64, total_b: f64) -> Vec<(f64, f64)> {
    let grand = total_a + total_b;
    let smaller = total_a.min(total_b);
    let mut merged: Vec<(f64, f64)> = Vec::new();
    let mut open: Option<(f64, f64)> = None;
    for &(x, y) in bins {
        let (ca, cb) = open.unwrap_or((0.0, 0.0));
        let (ca, cb) = (ca + x, cb + y);
        if (ca + cb) * smaller / grand >= MIN_EXPECTED {
            merged.push((ca, cb));
            open = None;
        } else {
            open = Some((ca, cb));
        }
    }
    if let Some((ca, cb)) = open {
        match merged.last_mut() {
            Some(last) => {
                last.0 += ca;
                last.1 += cb;
            }
            None => merged.push((ca, cb)),
        }
    }
    merged
}

/// Chi-square test that two histograms (canary `a`, stable `b`) come from the
/// same distribution: a 2 x K contingency table of per-bucket counts.
///
/// Both histograms are [`normalize`]d and aligned on the `le` bounds they have
/// in common (the intersection; observations above the largest common bound
/// are left out if `+Inf` is missing on a side). Adjacent bins are then merged
/// left to right until every expected count is at least 5 (a short trailing
/// group joins the previous bin), so sparse tails do not inflate the
/// statistic. `df = K - 1` for the K merged bins.
///
/// `None` if either side's aligned total is 0 or fewer than 2 bins remain.
pub fn chi_square_homogeneity(a: &[Bucket], b: &[Bucket]) -> Option<Homogeneity> {
    let bins = aligned_counts(&normalize(a), &normalize(b));
    let total_a: f64 = bins.iter().map(|p| p.0).sum();
    let total_b: f64 = bins.iter().map(|p| p.1).sum();
    if !(total_a > 0.0 && total_b > 0.0) {
        return None;
    }
    let merged = merge_bins(&bins, total_a, total_b);
    if merged.len() < 2 {
        return None;
    }
    let grand = total_a + total_b;
    let mut statistic = 0.0;
    for &(x, y) in &merged {
        let column = x + y;
        for (observed, row) in [(x, total_a), (y, total_b)] {
            let expected = row * column / grand;
            statistic += (observed - expected).powi(2) / expected;
        }
    }
    let df = (merged.len() - 1) as f64;
    let p_value = ChiSquared::new(df).ok()?.sf(statistic);
    Some(Homogeneity {
        statistic,
        df,
        p_value: if p_value.is_nan() {
            1.0
        } else {
            p_value.clamp(0.0, 1.0)
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn count_at_interpolates_within_buckets() {
        let b = super::normalize(&[
            super::Bucket {
                le: 0.1,
                count: 10.0,
            },
            super::Bucket {
                le: 0.5,
                count: 50.0,
            },
            super::Bucket {
                le: f64::INFINITY,
                count: 60.0,
            },
        ]);
        assert_eq!(super::count_at(0.05, &b), Some(5.0));
        assert!((super::count_at(0.3, &b).unwrap() - 30.0).abs() < 1e-9);
        assert_eq!(super::count_at(0.5, &b), Some(50.0));
        assert_eq!(super::count_at(0.7, &b), None);
        // Above 0.1: 50; above 0.5: 10; the bucket above 0.5 is +Inf: one slope, 1.
        assert!((super::tail_elasticity(0.5, &b).unwrap() - 1.0).abs() < 1e-12);
        // At 0.1 the bucket below starts at 0 (no log slope): only the slope above counts.
        assert!((super::tail_elasticity(0.1, &b).unwrap() - 1.0).abs() < 1e-12);
        let lognormal: Vec<super::Bucket> = [0.05, 0.1, 0.25, 0.5, f64::INFINITY]
            .iter()
            .map(|&le| {
                let cdf = if le.is_finite() {
                    crate::stats::normal_cdf((le / 0.08_f64).ln() / 0.5)
                } else {
                    1.0
                };
                super::Bucket {
                    le,
                    count: 1e6 * cdf,
                }
            })
            .collect();
        // The true elasticity of this log-normal at 0.25 is about 5.2; the estimate is close.
        let e = super::tail_elasticity(0.25, &lognormal).unwrap();
        assert!((4.6..5.8).contains(&e), "{e}");
        // The median is 0.3: 0.5 is nearer than 0.1 on a log scale.
        assert_eq!(super::bound_near_quantile(0.5, &b), Some(0.5));
        assert_eq!(super::bound_near_quantile(0.1, &b), Some(0.1));
        // In the +Inf bucket the quantile is the largest finite bound, as in Prometheus.
        assert_eq!(super::bound_near_quantile(0.99, &b), Some(0.5));
    }

    use super::*;
    use crate::stats::testutil::{assert_close, floats};

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/stats/histogram.json"))
            .expect("json")
    }

    fn buckets(v: &serde_json::Value) -> Vec<Bucket> {
        v.as_array()
            .expect("buckets")
            .iter()
            .map(|pair| {
                let le = match &pair[0] {
                    serde_json::Value::String(s) if s == "+Inf" => f64::INFINITY,
                    other => other.as_f64().expect("le"),
                };
                Bucket {
                    le,
                    count: pair[1].as_f64().expect("count"),
                }
            })
            .collect()
    }

    fn b(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(le, count)| Bucket { le, count })
            .collect()
    }

    #[test]
    fn quantile_matches_reimplementation() {
        let fx = fixture();
        let cases = fx["quantile"].as_array().expect("cases");
        assert!(cases.len() > 50);
        for (i, c) in cases.iter().enumerate() {
            let q = c["q"].as_f64().expect("q");
            let got = quantile(q, &buckets(&c["buckets"]));
            let what = format!("case {i} {} q={q}", c["name"]);
            match c["expected"].as_f64() {
                None => assert_eq!(got, None, "{what}"),
                Some(e) => assert_close(got.expect(&what), e, &what),
            }
        }
    }

    #[test]
    fn quantile_interval_matches_reimplementation() {
        let fx = fixture();
        for (i, c) in fx["interval"].as_array().expect("cases").iter().enumerate() {
            let q = c["q"].as_f64().expect("q");
            let conf = c["confidence"].as_f64().expect("conf");
            let got = quantile_interval(q, &buckets(&c["buckets"]), conf).expect("interval");
            let e = &c["expected"];
            let what = format!("case {i} {} q={q}", c["name"]);
            assert_close(got.estimate, e["estimate"].as_f64().expect("e"), &what);
            assert_close(got.low, e["low"].as_f64().expect("low"), &what);
            assert_close(got.high, e["high"].as_f64().expect("high"), &what);
            assert!(
                got.low <= got.estimate && got.estimate <= got.high,
                "{what}"
            );
        }
    }

    #[test]
    fn chi_square_matches_scipy() {
        let fx = fixture();
        for c in fx["chi_square"].as_array().expect("cases") {
            let what = c["name"].as_str().expect("name");
            let a = buckets(&c["a"]);
            let bb = buckets(&c["b"]);
            let r = chi_square_homogeneity(&a, &bb).expect(what);
            // The merged table the reference was computed on.
            let table = c["table"].as_array().expect("table");
            let expected: Vec<(f64, f64)> = floats(&table[0])
                .into_iter()
                .zip(floats(&table[1]))
                .collect();
            let na = normalize(&a);
            let nb = normalize(&bb);
            let bins = aligned_counts(&na, &nb);
            let ta: f64 = bins.iter().map(|p| p.0).sum();
            let tb: f64 = bins.iter().map(|p| p.1).sum();
            let merged = merge_bins(&bins, ta, tb);
            assert_eq!(merged.len(), expected.len(), "{what}");
            for (m, e) in merged.iter().zip(&expected) {
                assert_close(m.0, e.0, what);
                assert_close(m.1, e.1, what);
            }
            assert_close(r.statistic, c["statistic"].as_f64().expect("s"), what);
            assert_close(r.df, c["df"].as_f64().expect("df"), what);
            assert_close(r.p_value, c["p"].as_f64().expect("p"), what);
        }
    }

    #[test]
    fn normalize_sorts_merges_and_fixes_monotonicity() {
        let raw = b(&[
            (f64::INFINITY, 10.0),
            (0.5, 7.0),
            (f64::NAN, 3.0),
            (0.1, 2.0),
            (0.5, 1.0),
            (0.2, f64::NAN),
            (0.3, 6.0),
            (0.4, 5.0),
        ]);
        let n = normalize(&raw);
        assert_eq!(
            n,
            b(&[
                (0.1, 2.0),
                (0.3, 6.0),
                (0.4, 6.0),
                (0.5, 8.0),
                (f64::INFINITY, 10.0)
            ])
        );
        assert_eq!(total(&raw), 10.0);
        assert_eq!(total(&[]), 0.0);
        assert_eq!(total(&b(&[(1.0, 4.0), (2.0, 9.0)])), 9.0);
        assert!(normalize(&[]).is_empty());
    }

    #[test]
    fn quantile_edges() {
        let h = b(&[(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)]);
        assert_eq!(quantile(0.0, &h), Some(0.0));
        assert_eq!(quantile(0.5, &h), Some(1.5));
        assert_eq!(quantile(f64::NAN, &h), None);
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile_interval(0.5, &h, 1.0), None);
        assert_eq!(quantile_interval(0.5, &h, f64::NAN), None);
        assert_eq!(quantile_interval(1.5, &h, 0.9), None);
        let i = quantile_interval(1.0, &h, 0.9).expect("interval");
        assert_eq!((i.low, i.estimate, i.high), (2.0, 2.0, 2.0));
    }

    #[test]
    fn chi_square_edges() {
        let h = b(&[(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 30.0)]);
        let zero = b(&[(1.0, 0.0), (2.0, 0.0), (f64::INFINITY, 0.0)]);
        let disjoint = b(&[(1.5, 10.0), (2.5, 20.0)]);
        let tiny = b(&[(1.0, 1.0), (2.0, 2.0), (f64::INFINITY, 3.0)]);
        assert_eq!(chi_square_homogeneity(&h, &zero), None);
        assert_eq!(chi_square_homogeneity(&h, &disjoint), None);
        assert_eq!(chi_square_homogeneity(&[], &[]), None);
        // Too few observations to form two bins with expected >= 5.
        assert_eq!(chi_square_homogeneity(&tiny, &tiny), None);
        let r = chi_square_homogeneity(&h, &h).expect("same");
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn tail_only_regression_is_detected() {
        let stable = b(&[
            (0.05, 200_000.0),
            (0.1, 500_000.0),
            (0.2, 800_000.0),
            (0.4, 950_000.0),
            (0.8, 985_000.0),
            (1.6, 995_000.0),
            (3.2, 1_000_000.0),
            (f64::INFINITY, 1_000_000.0),
        ]);
        let canary = b(&[
            (0.05, 200_000.0),
            (0.1, 500_000.0),
            (0.2, 800_000.0),
            (0.4, 950_000.0),
            (0.8, 970_000.0),
            (1.6, 980_000.0),
            (3.2, 1_000_000.0),
            (f64::INFINITY, 1_000_000.0),
        ]);
        let r = chi_square_homogeneity(&canary, &stable).expect("test");
        assert!(r.p_value < 1e-6, "{r:?}");
        let p99 = |h: &[Bucket]| quantile(0.99, h).expect("p99");
        let p50 = |h: &[Bucket]| quantile(0.5, h).expect("p50");
        assert_close(p99(&canary) / p99(&stable), 2.0, "p99 ratio");
        assert_eq!(p50(&canary), p50(&stable));
        // The p99 intervals do not overlap at this sample size.
        let ic = quantile_interval(0.99, &canary, 0.99).expect("canary");
        let is = quantile_interval(0.99, &stable, 0.99).expect("stable");
        assert!(ic.low > is.high, "{ic:?} {is:?}");
    }
}
