//! Mann-Whitney U test, Hodges-Lehmann shift estimate and the common-language
//! effect size, all comparing a canary sample (first) with a stable one.

use super::{Alternative, normal_sf, two_sided_z};

/// Largest sample size (per side) for which the exact null distribution is used.
pub const EXACT_MAX_N: usize = 50;

/// Largest number of pairwise differences the Hodges-Lehmann estimator forms.
pub const MAX_PAIRS: usize = 1_000_000;

/// Result of a Mann-Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the first sample (the canary): the number of pairs
    /// `(x_i, y_j)` with `x_i > y_j`, ties counting one half.
    pub u: f64,
    /// Signed, tie-corrected standardized statistic `(U - n1 n2 / 2) / sigma`,
    /// without continuity correction (positive when the canary tends to be
    /// larger; 0 when every value is tied). Reported for both methods.
    pub z: f64,
    /// p-value for the requested alternative.
    pub p_value: f64,
    /// `"exact"` or `"normal approximation"`.
    pub method: &'static str,
}

/// A point estimate with a confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Point estimate.
    pub estimate: f64,
    /// Lower confidence bound.
    pub low: f64,
    /// Upper confidence bound.
    pub high: f64,
}

/// Rank-sum bookkeeping for two samples.
struct Ranks {
    n1: usize,
    n2: usize,
    /// U statistic of the first sample.
    u1: f64,
    /// Sum over tie groups of `t^3 - t`.
    tie_term: f64,
}

fn non_nan(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| !x.is_nan()).collect()
}

/// Ranks the pooled samples (mid-ranks for ties). `None` if a side is empty.
fn rank(x: &[f64], y: &[f64]) -> Option<Ranks> {
    let x = non_nan(x);
    let y = non_nan(y);
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        // `==` (not total_cmp) so that -0.0 and 0.0 tie.
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // 1-based ranks i+1..=j, mid-rank is their mean.
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        let in_x = pooled[i..j].iter().filter(|p| p.1).count() as f64;
        rank_sum_x += in_x * mid_rank;
        tie_term += t * t * t - t;
        i = j;
    }
    let n1 = x.len() as f64;
    Some(Ranks {
        n1: x.len(),
        n2: y.len(),
        u1: rank_sum_x - n1 * (n1 + 1.0) / 2.0,
        tie_term,
    })
}

/// `P(U <= j)` under the null for sample sizes `m` and `n` with no ties.
///
/// The counts of U are the coefficients of the Gaussian binomial
/// `[m+n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)`, built up factor
/// by factor and truncated at degree `j`. Every partial product is itself a
/// Gaussian binomial (non-negative, unimodal coefficients), so the lower tail is
/// computed without catastrophic cancellation; upper tails are obtained through
/// the symmetry `P(U >= u) = P(U <= m n - u)`.
fn exact_cdf(j: u64, m: usize, n: usize) -> f64 {
    let (m, n) = if m <= n { (m, n) } else { (n, m) };
    let mn = (m * n) as u64;
    if j >= mn {
        return 1.0;
    }
    let (counts, total) = exact_counts(j as usize, m, n);
    (counts.iter().sum::<f64>() / total).clamp(0.0, 1.0)
}

/// The null counts of U = 0..=j for sample sizes `m <= n`, and their total `C(m+n, m)`.
fn exact_counts(j: usize, m: usize, n: usize) -> (Vec<f64>, f64) {
    let mut c = vec![0.0_f64; j + 1];
    c[0] = 1.0;
    for i in 1..=m {
        let up = n + i;
        if up <= j {
            for t in (up..=j).rev() {
                c[t] -= c[t - up];
            }
        }
        for t in i..=j {
            c[t] += c[t - i];
        }
    }
    let mut total = 1.0_f64;
    for i in 1..=m {
        total = total * (n + i) as f64 / i as f64;
    }
    (c, total)
}

/// R's `qwilcox(p, m, n)` for `p < 1/2`: the smallest `q` with `P(U <= q) >= p`.
fn exact_quantile(p: f64, m: usize, n: usize) -> u64 {
    let (m, n) = if m <= n { (m, n) } else { (n, m) };
    let half = m * n / 2;
    let (counts, total) = exact_counts(half, m, n);
    let mut below = 0.0;
    for (q, c) in counts.iter().enumerate() {
        below += c;
        // A relative slack against rounding in the division, as R's qwilcox allows.
        if below / total >= p * (1.0 - 64.0 * f64::EPSILON) {
            return q as u64;
        }
    }
    half as u64
}

/// Mann-Whitney U test of the canary sample `x` against the stable sample `y`.
///
/// NaN values are ignored; `None` if either side is then empty.
///
/// * Exact null distribution when there are no ties at all in the pooled
///   sample and both sides have at most [`EXACT_MAX_N`] values (matches
///   SciPy `mannwhitneyu(..., method="exact")`).
/// * Otherwise the tie-corrected normal approximation with continuity
///   correction (matches SciPy `method="asymptotic", use_continuity=True`).
///
/// Two-sided p-values are twice the smaller tail, capped at 1, as in SciPy.
pub fn mann_whitney_u(x: &[f64], y: &[f64], alternative: Alternative) -> Option<MannWhitney> {
    let r = rank(x, y)?;
    let n1 = r.n1 as f64;
    let n2 = r.n2 as f64;
    let n = n1 + n2;
    let mn = n1 * n2;
    let u1 = r.u1;
    let u2 = mn - u1;
    let mu = mn / 2.0;
    let var = mn / 12.0 * ((n + 1.0) - r.tie_term / (n * (n - 1.0)).max(1.0));
    let sigma = var.max(0.0).sqrt();
    let z = if sigma > 0.0 { (u1 - mu) / sigma } else { 0.0 };

    let exact = r.tie_term == 0.0 && r.n1 <= EXACT_MAX_N && r.n2 <= EXACT_MAX_N;
    let p_value = if exact {
        // No ties: U is an integer. P(U >= u) = P(U <= mn - u).
        let cdf = |u: f64| exact_cdf(u.round().max(0.0) as u64, r.n1, r.n2);
        match alternative {
            Alternative::Greater => cdf(u2),
            Alternative::Less => cdf(u1),
            Alternative::TwoSided => 2.0 * cdf(u1.min(u2)),
        }
    } else {
        let (u, factor) = match alternative {
            Alternative::Greater => (u1, 1.0),
            Alternative::Less => (u2, 1.0),
            Alternative::TwoSided => (u1.max(u2), 2.0),
        };
        if sigma > 0.0 {
            factor * normal_sf((u - mu - 0.5) / sigma)
        } else {
            // Every value tied: no evidence either way.
            1.0
        }
    };
    Some(MannWhitney {
        u: u1,
        z,
        p_value: if p_value.is_nan() {
            1.0
        } else {
            p_value.clamp(0.0, 1.0)
        },
        method: if exact {
            "exact"
        } else {
            "normal approximation"
        },
    })
}

/// Evenly spaced order statistics: `sorted[floor((i + 1/2) n / k)]`, `i < k`.
fn thin(sorted: &[f64], k: usize) -> Vec<f64> {
    let (n, k) = (sorted.len() as u128, k as u128);
    (0..k)
        .filter_map(|i| sorted.get(((2 * i + 1) * n / (2 * k)) as usize).copied())
        .collect()
}

/// Sample sizes after thinning so that `k1 * k2 <= MAX_PAIRS`.
fn thinned_sizes(n1: usize, n2: usize) -> (usize, usize) {
    if n1.saturating_mul(n2) <= MAX_PAIRS {
        return (n1, n2);
    }
    let scale = (MAX_PAIRS as f64 / (n1 as f64 * n2 as f64)).sqrt();
    let k1 = ((n1 as f64 * scale).floor() as usize).clamp(1, n1);
    let k2 = (MAX_PAIRS / k1).min(n2);
    (k1, k2)
}

/// Hodges-Lehmann estimate of the shift canary minus stable, with the confidence
/// interval R's `wilcox.test(x, y, conf.int = TRUE)` gives.
///
/// The estimate is the median of all pairwise differences `x_i - y_j` (mean of the two
/// middle ones for an even count, like `numpy.median`). If `n1 n2` exceeds [`MAX_PAIRS`],
/// each sample is first thinned deterministically to evenly spaced order statistics
/// (`sorted[floor((i + 1/2) n / k)]`) so that `k1 k2 <= MAX_PAIRS`, for the estimate only.
///
/// The interval follows R:
/// - exact, when both samples have fewer than 50 values and the pooled sample has no ties:
///   `[d_(qu), d_(n1 n2 - qu + 1)]` of the sorted differences (1-based), with `qu` the
///   `(1 - confidence) / 2` quantile of the exact null distribution of U (at least 1);
/// - otherwise, by inverting the normal approximation of the test with tie and continuity
///   correction: the shifts `d` at which `(U(x - d) - n1 n2 / 2 -+ 1/2) / sigma` crosses
///   `-+z`, found by bisection on all the data (R uses `uniroot` with tolerance 1e-4).
///
/// NaN values are ignored. `None` if a side is empty, any value is infinite, or
/// `confidence` is not strictly between 0 and 1.
pub fn hodges_lehmann(x: &[f64], y: &[f64], confidence: f64) -> Option<Interval> {
    let z = two_sided_z(confidence)?;
    let mut x = non_nan(x);
    let mut y = non_nan(y);
    if x.is_empty() || y.is_empty() || x.iter().chain(y.iter()).any(|v| v.is_infinite()) {
        return None;
    }
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    let (n1, n2) = (x.len(), y.len());
    let (k1, k2) = thinned_sizes(n1, n2);
    let estimate = {
        let tx = if k1 < n1 { thin(&x, k1) } else { x.clone() };
        let ty = if k2 < n2 { thin(&y, k2) } else { y.clone() };
        let d = sorted_differences(&tx, &ty);
        let mid = d.len() / 2;
        if d.len() % 2 == 1 {
            d[mid]
        } else {
            (d[mid - 1] + d[mid]) / 2.0
        }
    };
    // Constant samples: the shift is known exactly (R gives up here: no spread to rank).
    if x.first() == x.last() && y.first() == y.last() {
        return Some(Interval {
            estimate,
            low: estimate,
            high: estimate,
        });
    }
    let alpha = 1.0 - confidence;
    let pooled_ties = rank(&x, &y).is_none_or(|r| r.tie_term > 0.0);
    let (low, high) = if n1 < EXACT_MAX_N && n2 < EXACT_MAX_N && !pooled_ties {
        let d = sorted_differences(&x, &y);
        let total = d.len() as u64;
        // qwilcox(alpha / 2): the smallest q with P(U <= q) >= alpha / 2.
        let qu = exact_quantile(alpha / 2.0, n1, n2).max(1);
        let ql = total - qu;
        (d[(qu - 1) as usize], d[ql as usize])
    } else {
        let lower = invert_shift(&x, &y, z)?;
        let upper = invert_shift(&x, &y, -z)?;
        (lower, upper)
    };
    Some(Interval {
        estimate,
        low,
        high,
    })
}

/// Every pairwise difference `x_i - y_j`, sorted.
fn sorted_differences(x: &[f64], y: &[f64]) -> Vec<f64> {
    let mut d: Vec<f64> = Vec::with_capacity(x.len() * y.len());
    for &a in x {
        d.extend(y.iter().map(|&b| a - b));
    }
    d.sort_unstable_by(f64::total_cmp);
    d
}

/// The normal-approximation statistic of the test of `x - shift` against `y`, with tie and
/// continuity correction, as R's `wilcox.test` computes it for its interval. `x` and `y`
/// must be sorted. `None` when every value is tied (no spread).
fn shifted_z(x: &[f64], y: &[f64], shift: f64) -> Option<f64> {
    if !shift.is_finite() {
        return None;
    }
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    // Merge x - shift with y, counting for each x value the y values below it (ties count
    // half) and collecting the sizes of tied groups.
    let (mut i, mut j) = (0, 0);
    let mut u = 0.0;
    let mut tie_term = 0.0;
    while i < x.len() || j < y.len() {
        let next = match (x.get(i), y.get(j)) {
            (Some(a), Some(b)) => (a - shift).min(*b),
            (Some(a), None) => a - shift,
            (None, Some(b)) => *b,
            (None, None) => break,
        };
        let mut in_x = 0.0;
        while i < x.len() && x[i] - shift == next {
            in_x += 1.0;
            i += 1;
        }
        let mut in_y = 0.0;
        while j < y.len() && y[j] == next {
            in_y += 1.0;
            j += 1;
        }
        if in_x == 0.0 && in_y == 0.0 {
            // Only a non-finite `x - shift` gets here (it equals nothing); give up.
            return None;
        }
        // y values below this group: j minus those in it.
        u += in_x * ((j as f64 - in_y) + in_y / 2.0);
        let t = in_x + in_y;
        tie_term += t * t * t - t;
    }
    let dz = u - n1 * n2 / 2.0;
    let n = n1 + n2;
    let sigma = ((n1 * n2 / 12.0) * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    if sigma.is_nan() || sigma <= 0.0 {
        return None;
    }
    Some((dz - 0.5 * dz.signum()) / sigma)
}

/// The shift at which [`shifted_z`] crosses `zq` (it falls as the shift grows), clamped to
/// the range of pairwise differences, as R's interval root finder does.
fn invert_shift(x: &[f64], y: &[f64], zq: f64) -> Option<f64> {
    let (first_x, last_x) = (*x.first()?, *x.last()?);
    let (first_y, last_y) = (*y.first()?, *y.last()?);
    let (mut lo, mut hi) = (first_x - last_y, last_x - first_y);
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    if shifted_z(x, y, lo)? - zq <= 0.0 {
        return Some(lo);
    }
    if shifted_z(x, y, hi)? - zq >= 0.0 {
        return Some(hi);
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if shifted_z(x, y, mid)? - zq > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// Common-language effect size `P(X > Y) + P(X = Y) / 2 = U / (n1 n2)`,
/// where `X` is a canary value and `Y` a stable one.
///
/// NaN values are ignored; `None` if a side is then empty.
pub fn common_language_effect_size(x: &[f64], y: &[f64]) -> Option<f64> {
    let r = rank(x, y)?;
    Some(r.u1 / (r.n1 as f64 * r.n2 as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::{Lcg, alternative, assert_close, floats};

    fn fixture(text: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        v["cases"].as_array().expect("cases").clone()
    }

    #[test]
    fn matches_scipy() {
        let cases = fixture(include_str!("../../tests/fixtures/stats/mann_whitney.json"));
        assert!(cases.len() >= 60);
        for (i, c) in cases.iter().enumerate() {
            let x = floats(&c["x"]);
            let y = floats(&c["y"]);
            let alt = alternative(c["alternative"].as_str().expect("alt"));
            let r = mann_whitney_u(&x, &y, alt).expect("result");
            let method = match c["method"].as_str().expect("method") {
                "exact" => "exact",
                _ => "normal approximation",
            };
            assert_eq!(r.method, method, "case {i}");
            assert_close(r.u, c["u"].as_f64().expect("u"), &format!("case {i} u"));
            assert_close(
                r.p_value,
                c["p"].as_f64().expect("p"),
                &format!(
                    "case {i} ({} {:?}, n={}/{}) p",
                    method,
                    alt,
                    x.len(),
                    y.len()
                ),
            );
        }
    }

    #[test]
    fn exact_tail_is_accurate_for_extremes() {
        // Complete separation: P = 1 / C(m+n, m).
        let x: Vec<f64> = (0..20).map(|i| 100.0 + i as f64).collect();
        let y: Vec<f64> = (0..25).map(|i| i as f64).collect();
        let r = mann_whitney_u(&x, &y, Alternative::Greater).expect("result");
        let mut binom = 1.0;
        for i in 1..=20 {
            binom = binom * (25 + i) as f64 / i as f64;
        }
        assert_eq!(r.method, "exact");
        assert_eq!(r.u, 500.0);
        assert_close(r.p_value, 1.0 / binom, "p");
        assert!(r.p_value > 0.0);
        let r = mann_whitney_u(&x, &y, Alternative::Less).expect("result");
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(mann_whitney_u(&[], &[1.0], Alternative::TwoSided).is_none());
        assert!(mann_whitney_u(&[1.0], &[], Alternative::TwoSided).is_none());
        assert!(mann_whitney_u(&[f64::NAN], &[1.0], Alternative::TwoSided).is_none());
        // NaN is ignored.
        let a = mann_whitney_u(&[1.0, f64::NAN, 3.0], &[2.0, 0.5], Alternative::Less);
        let b = mann_whitney_u(&[1.0, 3.0], &[2.0, 0.5], Alternative::Less);
        assert_eq!(a, b);
        // Every value tied, both methods' branches.
        for n in [3, 80] {
            let v = vec![7.0; n];
            for alt in [
                Alternative::TwoSided,
                Alternative::Greater,
                Alternative::Less,
            ] {
                let r = mann_whitney_u(&v, &v, alt).expect("result");
                assert_eq!(r.p_value, 1.0);
                assert_eq!(r.z, 0.0);
                assert_eq!(r.u, (n * n) as f64 / 2.0);
            }
        }
        // Infinities are ordinary extreme ranks.
        let r = mann_whitney_u(
            &[f64::INFINITY, 5.0, f64::INFINITY],
            &[f64::NEG_INFINITY, 1.0],
            Alternative::Greater,
        )
        .expect("result");
        assert_eq!(r.u, 6.0);
        assert!(r.p_value > 0.0 && r.p_value <= 1.0);
        // -0.0 and 0.0 tie.
        let r = mann_whitney_u(&[0.0], &[-0.0], Alternative::TwoSided).expect("result");
        assert_eq!(r.u, 0.5);
        assert_eq!(r.method, "normal approximation");
    }

    #[test]
    fn swapping_samples_mirrors_the_test() {
        let mut rng = Lcg(1);
        for round in 0..200 {
            let n1 = 1 + (rng.uniform() * 90.0) as usize;
            let n2 = 1 + (rng.uniform() * 90.0) as usize;
            let ties = round % 2 == 0;
            let draw = |rng: &mut Lcg, n: usize, shift: f64| -> Vec<f64> {
                rng.sample(n)
                    .into_iter()
                    .map(|v| {
                        let v = v + shift;
                        if ties { (v * 8.0).floor() } else { v }
                    })
                    .collect()
            };
            let x = draw(&mut rng, n1, 0.1);
            let y = draw(&mut rng, n2, 0.0);
            let g = mann_whitney_u(&x, &y, Alternative::Greater).expect("g");
            let l = mann_whitney_u(&y, &x, Alternative::Less).expect("l");
            let t1 = mann_whitney_u(&x, &y, Alternative::TwoSided).expect("t1");
            let t2 = mann_whitney_u(&y, &x, Alternative::TwoSided).expect("t2");
            assert_close(g.p_value, l.p_value, "greater vs swapped less");
            assert_close(t1.p_value, t2.p_value, "two-sided swapped");
            assert_close(l.u, (n1 * n2) as f64 - g.u, "U swapped");
            assert_close(l.z, -g.z, "z swapped");
        }
    }

    #[test]
    fn invariant_to_positive_scaling() {
        let mut rng = Lcg(2);
        for round in 0..100 {
            let n1 = 2 + round % 70;
            let n2 = 3 + (round * 7) % 90;
            let x = rng.sample(n1);
            let y: Vec<f64> = rng.sample(n2).into_iter().map(|v| v * 1.2).collect();
            let scale = 1e-3 + rng.uniform() * 1e4;
            let xs: Vec<f64> = x.iter().map(|v| v * scale).collect();
            let ys: Vec<f64> = y.iter().map(|v| v * scale).collect();
            for alt in [
                Alternative::TwoSided,
                Alternative::Greater,
                Alternative::Less,
            ] {
                let a = mann_whitney_u(&x, &y, alt).expect("a");
                let b = mann_whitney_u(&xs, &ys, alt).expect("b");
                assert_eq!(a.p_value, b.p_value);
                assert_eq!(a.u, b.u);
            }
        }
    }

    #[test]
    fn calibrated_under_the_null() {
        let mut rng = Lcg(3);
        let runs = 2000;
        let mut rejections = 0;
        for _ in 0..runs {
            let x = rng.sample(50);
            let y = rng.sample(50);
            let r = mann_whitney_u(&x, &y, Alternative::TwoSided).expect("r");
            assert_eq!(r.method, "exact");
            if r.p_value < 0.05 {
                rejections += 1;
            }
        }
        let rate = rejections as f64 / runs as f64;
        assert!((0.03..=0.07).contains(&rate), "rejection rate {rate}");
    }

    #[test]
    fn hodges_lehmann_matches_numpy() {
        let cases = fixture(include_str!(
            "../../tests/fixtures/stats/hodges_lehmann.json"
        ));
        for (i, c) in cases.iter().enumerate() {
            let x = floats(&c["x"]);
            let y = floats(&c["y"]);
            let conf = c["confidence"].as_f64().expect("confidence");
            let r = hodges_lehmann(&x, &y, conf).expect("result");
            let what = format!("case {i} (n={}/{})", x.len(), y.len());
            // numpy gives the estimate (the median of pairwise differences, thinned above
            // MAX_PAIRS); the interval is checked against R in the next test.
            assert_close(r.estimate, c["estimate"].as_f64().expect("e"), &what);
            assert!(r.low <= r.estimate && r.estimate <= r.high, "{what}");
        }
    }

    #[test]
    fn hodges_lehmann_interval_matches_r() {
        let cases = fixture(include_str!(
            "../../tests/fixtures/stats/hodges_lehmann_r.json"
        ));
        assert!(cases.len() >= 20);
        for (i, c) in cases.iter().enumerate() {
            let x = floats(&c["x"]);
            let y = floats(&c["y"]);
            let conf = c["confidence"].as_f64().expect("confidence");
            let r = hodges_lehmann(&x, &y, conf).expect("result");
            let what = format!("case {i} (n={}/{}, confidence {conf})", x.len(), y.len());
            let (low, high) = (
                c["low"].as_f64().expect("low"),
                c["high"].as_f64().expect("high"),
            );
            if c["exact"].as_bool().expect("exact") {
                // Order statistics of the differences: the same numbers.
                assert_close(r.low, low, &what);
                assert_close(r.high, high, &what);
                assert_close(r.estimate, c["r_estimate"].as_f64().expect("e"), &what);
            } else {
                // R finds the crossing with uniroot at tolerance 1e-4.
                let near = |a: f64, b: f64| (a - b).abs() <= 2e-4 + 1e-6 * b.abs();
                assert!(near(r.low, low), "{what}: low {} vs R {low}", r.low);
                assert!(near(r.high, high), "{what}: high {} vs R {high}", r.high);
            }
        }
    }

    #[test]
    fn hodges_lehmann_edges() {
        assert!(hodges_lehmann(&[], &[1.0], 0.95).is_none());
        assert!(hodges_lehmann(&[1.0], &[2.0], 1.0).is_none());
        assert!(hodges_lehmann(&[1.0], &[2.0], f64::NAN).is_none());
        assert!(hodges_lehmann(&[f64::INFINITY], &[2.0], 0.95).is_none());
        let r = hodges_lehmann(&[3.0, f64::NAN], &[1.0], 0.95).expect("r");
        assert_eq!(
            r,
            Interval {
                estimate: 2.0,
                low: 2.0,
                high: 2.0
            }
        );
        // Thinning kicks in and keeps the pair count bounded.
        assert_eq!(thinned_sizes(1, 5_000_000), (1, 1_000_000));
        assert_eq!(thinned_sizes(3000, 3000), (1000, 1000));
        let (a, b) = thinned_sizes(1500, 800);
        assert!(a * b <= MAX_PAIRS && a <= 1500 && b <= 800);
        // A pure shift is recovered exactly.
        let mut rng = Lcg(4);
        let y = rng.sample(2000);
        let x: Vec<f64> = rng.sample(1500).into_iter().map(|v| v + 0.25).collect();
        let r = hodges_lehmann(&x, &y, 0.95).expect("r");
        assert!((r.estimate - 0.25).abs() < 0.03, "{r:?}");
        assert!(r.low < 0.25 && 0.25 < r.high, "{r:?}");
    }

    #[test]
    fn common_language_effect_size_counts_pairs() {
        assert_eq!(common_language_effect_size(&[], &[1.0]), None);
        assert_eq!(common_language_effect_size(&[2.0], &[1.0]), Some(1.0));
        assert_eq!(common_language_effect_size(&[1.0], &[1.0]), Some(0.5));
        // pairs: 3>1, 3>2, 3=3 (half), 0 beats nothing -> 2.5 / 6
        let v = common_language_effect_size(&[3.0, 0.0], &[1.0, 2.0, 3.0]).expect("v");
        assert_close(v, 2.5 / 6.0, "cles");
    }
}
