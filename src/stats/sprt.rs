//! Wald's sequential probability ratio test (SPRT) for a Bernoulli rate, with Wald's closed-form
//! approximations of its operating characteristic and expected sample size.
//!
//! The test compares two simple hypotheses about the success probability of independent
//! trials, `H0: p = p0` against `H1: p = p1`, and after every trial looks at the log likelihood
//! ratio
//!
//! ```text
//! llr = hits * ln(p1 / p0) + misses * ln((1 - p1) / (1 - p0))
//! ```
//!
//! It accepts `H1` once `llr >= ln A` and `H0` once `llr <= ln B`, with Wald's boundaries
//! `A = (1 - beta) / alpha` and `B = beta / (1 - alpha)`; `alpha` and `beta` are (approximate
//! upper bounds of) the two error probabilities.
//!
//! Wald's approximations ignore the overshoot of the boundary at the stopping time, so the true
//! error probabilities are a little smaller and the true expected sample sizes a little larger
//! than the formulas here; they are the textbook oracle a simulation or an implementation is
//! checked against, and a planning tool ("how many requests until the test decides?").
//!
//! For a true probability `p`, let `z` be the log likelihood ratio of one trial (`ln(p1/p0)`
//! with probability `p`, `ln((1-p1)/(1-p0))` otherwise). Wald's `h` is the non-zero root of
//! `E[exp(h z)] = 1`; `h = 1` at `p0` and `h = -1` at `p1`. Then
//!
//! ```text
//! OC(p)   = (A^h - 1) / (A^h - B^h)                   (probability of accepting H0)
//! E[N]    = (OC ln B + (1 - OC) ln A) / E[z]           (E[z] != 0)
//! E[N]    = -ln A ln B / E[z^2]                         (E[z] == 0, the limit h -> 0)
//! ```
//!
//! All functions are pure and panic-free; invalid input gives `None` (or NaN where the
//! signature is a plain number, as documented on each function).

/// Relative width of `h` below which the expected sample size uses its `h -> 0` limit: there
/// the general formula is a ratio of two quantities that both vanish, and its rounding error
/// (about `1e-16 / |h|`) exceeds the error of the limit (about `|h|`).
const SMALL_H: f64 = 1e-8;

/// Wald's stopping boundaries, in log-likelihood-ratio units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boundaries {
    /// `ln((1 - beta) / alpha)`: accept `H1` once the log likelihood ratio reaches it.
    pub upper: f64,
    /// `ln(beta / (1 - alpha))`: accept `H0` once the log likelihood ratio falls to it.
    pub lower: f64,
}

/// Wald's boundaries for type I error `alpha` and type II error `beta`.
///
/// `None` unless both are positive and `alpha + beta < 1` (otherwise the boundaries would not
/// enclose 0 and the test would stop before the first trial).
pub fn boundaries(alpha: f64, beta: f64) -> Option<Boundaries> {
    if !(alpha > 0.0 && beta > 0.0 && alpha + beta < 1.0) {
        return None;
    }
    let upper = (-beta).ln_1p() - alpha.ln();
    let lower = beta.ln() - (-alpha).ln_1p();
    (upper.is_finite() && lower.is_finite() && upper > 0.0 && lower < 0.0)
        .then_some(Boundaries { upper, lower })
}

/// `true` for a probability in `[0, 1]` (not NaN).
fn is_probability(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

/// `count * ln(a / b)` with `0 * ln(..) = 0`.
fn weighted_log_ratio(count: f64, a: f64, b: f64) -> f64 {
    if count == 0.0 {
        0.0
    } else {
        count * (a / b).ln()
    }
}

/// Log likelihood ratio of `hits` successes in `n` Bernoulli trials, `H1: p = p1` against
/// `H0: p = p0` (`0 * ln(..)` counts as 0).
///
/// 0 when `n == 0` or `p1 == p0`. `+inf` (or `-inf`) when the data are impossible under `H0`
/// (or `H1`) only, e.g. a hit when `p0 == 0`. NaN when `hits > n`, a probability is outside
/// `[0, 1]` or NaN, or the data are impossible under both hypotheses.
pub fn bernoulli_llr(hits: u64, n: u64, p1: f64, p0: f64) -> f64 {
    if n == 0 || p1 == p0 {
        return 0.0;
    }
    if hits > n || !is_probability(p1) || !is_probability(p0) {
        return f64::NAN;
    }
    let misses = (n - hits) as f64;
    weighted_log_ratio(hits as f64, p1, p0) + weighted_log_ratio(misses, 1.0 - p1, 1.0 - p0)
}

/// Kullback-Leibler divergence of Bernoulli(`a`) from Bernoulli(`b`), in nats:
/// `a ln(a/b) + (1-a) ln((1-a)/(1-b))`, with `0 * ln(..) = 0`.
///
/// `+inf` when `a` puts mass where `b` has none (e.g. `b == 0 < a`); 0 when the result would be
/// NaN (NaN or out-of-range input).
pub fn bernoulli_kl(a: f64, b: f64) -> f64 {
    let kl = weighted_log_ratio(a, a, b) + weighted_log_ratio(1.0 - a, 1.0 - a, 1.0 - b);
    if kl.is_nan() { 0.0 } else { kl }
}

/// Expected log likelihood ratio (`H1: p1` against `H0: p0`) of one Bernoulli trial whose true
/// success probability is `p_true`: `p_true ln(p1/p0) + (1 - p_true) ln((1-p1)/(1-p0))`, which
/// equals `KL(p_true || p0) - KL(p_true || p1)`.
///
/// Negative when the truth is closer to `p0` (in KL), positive when closer to `p1`, 0 at the
/// indifference point. 0 when `p1 == p0`; NaN when a probability is outside `[0, 1]` or NaN,
/// or the result is undefined (`inf - inf`).
pub fn expected_llr_per_trial(p_true: f64, p1: f64, p0: f64) -> f64 {
    if !is_probability(p_true) || !is_probability(p1) || !is_probability(p0) {
        return f64::NAN;
    }
    if p1 == p0 {
        return 0.0;
    }
    weighted_log_ratio(p_true, p1, p0) + weighted_log_ratio(1.0 - p_true, 1.0 - p1, 1.0 - p0)
}

/// The per-trial increments of the log likelihood ratio, for `p0, p1` in `(0, 1)`, distinct.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// `ln(p1/p0)`, the increment of a hit.
    hit: f64,
    /// `ln((1-p1)/(1-p0))`, the increment of a miss (opposite sign to `hit`).
    miss: f64,
}

impl Steps {
    fn new(p1: f64, p0: f64) -> Option<Self> {
        let open = |p: f64| p > 0.0 && p < 1.0;
        if !(open(p0) && open(p1)) || p0 == p1 {
            return None;
        }
        let hit = (p1 / p0).ln();
        let miss = (-p1).ln_1p() - (-p0).ln_1p();
        (hit.is_finite() && miss.is_finite() && hit != 0.0 && miss != 0.0 && hit * miss < 0.0)
            .then_some(Self { hit, miss })
    }

    /// `E[z]` when the truth is `p`.
    fn mean(&self, p: f64) -> f64 {
        p * self.hit + (1.0 - p) * self.miss
    }

    /// `E[z^2]` when the truth is `p`.
    fn second_moment(&self, p: f64) -> f64 {
        p * self.hit * self.hit + (1.0 - p) * self.miss * self.miss
    }

    /// The cumulant generating function `ln E[exp(h z)]` for the truth `p` in `(0, 1)`.
    fn cgf(&self, p: f64, h: f64) -> f64 {
        let (x, y) = (h * self.hit, h * self.miss);
        if x.max(y) <= 1.0 {
            // Accurate near h = 0, where both terms are close to 1.
            (p * x.exp_m1() + (1.0 - p) * y.exp_m1()).ln_1p()
        } else {
            let (a, b) = (p.ln() + x, (-p).ln_1p() + y);
            let m = a.max(b);
            m + ((a - m).exp() + (b - m).exp()).ln()
        }
    }

    /// Wald's `h`: the non-zero root of `E[exp(h z)] = 1` for the truth `p` in `(0, 1)`, or 0
    /// when `E[z] = 0` (the double root).
    ///
    /// The cumulant generating function is convex with value 0 at `h = 0`, so its secant slope
    /// `cgf(h) / h` (equal to `E[z]` at 0) increases with `h`; the root is found by bisection
    /// on that slope, whose only zero is Wald's `h`.
    fn wald_h(&self, p: f64) -> Option<f64> {
        let mu = self.mean(p);
        if mu == 0.0 {
            return Some(0.0);
        }
        let slope = |h: f64| if h == 0.0 { mu } else { self.cgf(p, h) / h };
        // Bracket: `lo` with a negative slope, `hi` with a positive one.
        let (mut lo, mut hi) = if mu < 0.0 { (0.0, 1.0) } else { (-1.0, 0.0) };
        let mut bracketed = false;
        for _ in 0..1100 {
            if mu < 0.0 {
                if slope(hi) > 0.0 {
                    bracketed = true;
                    break;
                }
                lo = hi;
                hi *= 2.0;
            } else {
                if slope(lo) < 0.0 {
                    bracketed = true;
                    break;
                }
                hi = lo;
                lo *= 2.0;
            }
        }
        if !bracketed {
            return None;
        }
        for _ in 0..2000 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            let s = slope(mid);
            if s.is_nan() {
                return None;
            }
            if s < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let h = 0.5 * (lo + hi);
        h.is_finite().then_some(h)
    }
}

/// Probabilities of accepting `H0` and `H1`, `(OC, 1 - OC)`, for Wald's `h`, each computed
/// without cancellation or overflow.
fn acceptance(h: f64, b: Boundaries) -> (f64, f64) {
    let (la, lb) = (b.upper, b.lower);
    let d = la - lb;
    if h == 0.0 {
        return (la / d, -lb / d);
    }
    if h > 0.0 {
        // Divide (A^h - 1) / (A^h - B^h) through by A^h.
        let den = (-h * d).exp_m1();
        (
            (-h * la).exp_m1() / den,
            (-h * la).exp() * (h * lb).exp_m1() / den,
        )
    } else {
        // Divide through by B^h, the larger power when h < 0.
        let den = (h * d).exp_m1();
        (
            (-h * lb).exp() * (h * la).exp_m1() / den,
            (-h * lb).exp_m1() / den,
        )
    }
}

/// Wald's operating characteristic and expected sample size, `(OC, E[N])`.
fn oc_and_asn(alpha: f64, beta: f64, p_true: f64, p1: f64, p0: f64) -> Option<(f64, f64)> {
    let bounds = boundaries(alpha, beta)?;
    let steps = Steps::new(p1, p0)?;
    if !is_probability(p_true) {
        return None;
    }
    let mu = steps.mean(p_true);
    let (la, lb) = (bounds.upper, bounds.lower);
    let (oc, accept_h1, h) = if p_true == p0 {
        (1.0 - alpha, alpha, 1.0)
    } else if p_true == p1 {
        (beta, 1.0 - beta, -1.0)
    } else if p_true == 0.0 || p_true == 1.0 {
        // A deterministic walk: it only ever moves towards one boundary (h -> +-inf).
        if mu < 0.0 {
            (1.0, 0.0, f64::INFINITY)
        } else {
            (0.0, 1.0, f64::NEG_INFINITY)
        }
    } else {
        let h = steps.wald_h(p_true)?;
        let (oc, accept_h1) = acceptance(h, bounds);
        (oc, accept_h1, h)
    };
    let asn = if mu == 0.0 || (h * (la - lb)).abs() < SMALL_H {
        -la * lb / steps.second_moment(p_true)
    } else {
        (oc * lb + accept_h1 * la) / mu
    };
    (oc.is_finite() && asn.is_finite() && asn > 0.0).then_some((oc.clamp(0.0, 1.0), asn))
}

/// Wald's approximation of the operating characteristic: the probability that the SPRT with
/// errors `alpha`, `beta` for `H0: p0` against `H1: p1` accepts `H0` when the true success
/// probability is `p_true`. `1 - alpha` at `p0`, `beta` at `p1`.
///
/// `None` unless [`boundaries`] accepts `alpha`, `beta`; `p0`, `p1` are distinct and in
/// `(0, 1)`; and `p_true` is in `[0, 1]`.
pub fn operating_characteristic(
    alpha: f64,
    beta: f64,
    p_true: f64,
    p1: f64,
    p0: f64,
) -> Option<f64> {
    oc_and_asn(alpha, beta, p_true, p1, p0).map(|(oc, _)| oc)
}

/// Wald's approximation of the expected number of trials until the SPRT with errors `alpha`,
/// `beta` for `H0: p0` against `H1: p1` crosses a boundary, when the true success probability
/// is `p_true`: `(OC ln B + (1 - OC) ln A) / E[z]`, or its limit `-ln A ln B / E[z^2]` at the
/// indifference point `E[z] = 0` (used within a relative `1e-8` of it in `h`).
///
/// The overshoot of the boundary is ignored, so the true expectation is somewhat larger (by
/// about the mean overshoot divided by `|E[z]|`). `None` for the same input as
/// [`operating_characteristic`].
pub fn expected_sample_size(alpha: f64, beta: f64, p_true: f64, p1: f64, p0: f64) -> Option<f64> {
    oc_and_asn(alpha, beta, p_true, p1, p0).map(|(_, asn)| asn)
}

/// The decision of an SPRT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SprtDecision {
    /// The log likelihood ratio fell to the lower boundary.
    AcceptH0,
    /// The log likelihood ratio reached the upper boundary.
    AcceptH1,
}

/// A running Bernoulli SPRT of `H0: p = p0` against `H1: p = p1`.
///
/// Observations may come one trial at a time or in batches; the boundaries are checked after
/// each [`Sprt::observe`], so a batch can carry the log likelihood ratio past a boundary by
/// more than a single trial would. The first boundary crossed decides, and the decision stays
/// (later observations still accumulate into [`Sprt::llr`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Sprt {
    bounds: Boundaries,
    p0: f64,
    p1: f64,
    hits: u64,
    trials: u64,
    llr: f64,
    decision: Option<SprtDecision>,
}

impl Sprt {
    /// A test with errors `alpha` and `beta` (see [`boundaries`]); `None` unless `p0` and `p1`
    /// are distinct and in `(0, 1)` and the boundaries exist.
    pub fn new(alpha: f64, beta: f64, p0: f64, p1: f64) -> Option<Self> {
        let bounds = boundaries(alpha, beta)?;
        Steps::new(p1, p0)?;
        Some(Self {
            bounds,
            p0,
            p1,
            hits: 0,
            trials: 0,
            llr: 0.0,
            decision: None,
        })
    }

    /// Adds `hits` successes out of `n` trials and returns the decision so far. Ignored when
    /// `hits > n`.
    pub fn observe(&mut self, hits: u64, n: u64) -> Option<SprtDecision> {
        if hits > n || n == 0 {
            return self.decision;
        }
        self.hits = self.hits.saturating_add(hits);
        self.trials = self.trials.saturating_add(n);
        // Recomputed from the totals: no rounding error accumulates over many observations.
        self.llr = bernoulli_llr(self.hits, self.trials, self.p1, self.p0);
        if self.decision.is_none() {
            if self.llr >= self.bounds.upper {
                self.decision = Some(SprtDecision::AcceptH1);
            } else if self.llr <= self.bounds.lower {
                self.decision = Some(SprtDecision::AcceptH0);
            }
        }
        self.decision
    }

    /// The log likelihood ratio of everything observed (0 before the first observation).
    pub fn llr(&self) -> f64 {
        self.llr
    }

    /// The decision, once a boundary has been crossed.
    pub fn decision(&self) -> Option<SprtDecision> {
        self.decision
    }

    /// Forgets all observations and the decision; the hypotheses and boundaries stay.
    pub fn reset(&mut self) {
        self.hits = 0;
        self.trials = 0;
        self.llr = 0.0;
        self.decision = None;
    }

    /// The boundaries in use.
    pub fn boundaries(&self) -> Boundaries {
        self.bounds
    }

    /// Successes observed so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Trials observed so far.
    pub fn trials(&self) -> u64 {
        self.trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::random::Rng;

    /// `a` within `tol` relative of `b` (or `tol` absolute near 0).
    #[track_caller]
    fn assert_near(a: f64, b: f64, tol: f64, what: &str) {
        let ok = a == b || (a - b).abs() <= tol * b.abs().max(1.0);
        assert!(ok, "{what}: got {a:e}, expected {b:e}");
    }

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/fixtures/stats/sprt.json")).expect("json")
    }

    #[test]
    fn matches_reference() {
        let v = fixture();
        let cases = v["cases"].as_array().expect("cases");
        assert!(cases.len() >= 150);
        for (i, c) in cases.iter().enumerate() {
            let f = |k: &str| c[k].as_f64().expect(k);
            let (alpha, beta, p0, p1, p) = (f("alpha"), f("beta"), f("p0"), f("p1"), f("p_true"));
            let what = |s: &str| format!("case {i} (a={alpha} b={beta} p0={p0} p1={p1} p={p}) {s}");
            let b = boundaries(alpha, beta).expect("boundaries");
            assert_near(b.upper, f("upper"), 1e-12, &what("upper"));
            assert_near(b.lower, f("lower"), 1e-12, &what("lower"));
            assert_near(
                expected_llr_per_trial(p, p1, p0),
                f("expected_llr"),
                1e-9,
                &what("E[z]"),
            );
            assert_near(bernoulli_kl(p, p0), f("kl_true_p0"), 1e-9, &what("KL p0"));
            assert_near(bernoulli_kl(p, p1), f("kl_true_p1"), 1e-9, &what("KL p1"));
            let oc = operating_characteristic(alpha, beta, p, p1, p0).expect("oc");
            // OC spans many orders of magnitude: relative where it is not tiny.
            let oc_ref = f("oc");
            assert!(
                (oc - oc_ref).abs() <= 1e-9 * oc_ref.max(1e-6),
                "{}: {oc:e} vs {oc_ref:e}",
                what("OC")
            );
            let asn = expected_sample_size(alpha, beta, p, p1, p0).expect("asn");
            assert_near(asn, f("asn"), 1e-9, &what("E[N]"));
            if let Some(h) = c["h"].as_f64() {
                let steps = Steps::new(p1, p0).expect("steps");
                let mine = steps.wald_h(p).expect("h");
                assert!(
                    (mine - h).abs() <= 1e-9 * h.abs().max(1e-3),
                    "{}",
                    what("h")
                );
            }
        }
        for (i, c) in v["llr"].as_array().expect("llr").iter().enumerate() {
            let u = |k: &str| c[k].as_u64().expect(k);
            let f = |k: &str| c[k].as_f64().expect(k);
            let llr = bernoulli_llr(u("hits"), u("n"), f("p1"), f("p0"));
            assert_near(llr, f("llr"), 1e-12, &format!("llr case {i}"));
        }
    }

    #[test]
    fn closed_forms_at_the_hypotheses() {
        for (alpha, beta) in [(0.05, 0.05), (0.01, 0.2), (0.2, 0.01)] {
            for (p0, p1) in [(0.005, 0.006), (0.1, 0.2 / 1.1), (0.6, 0.5)] {
                let oc0 = operating_characteristic(alpha, beta, p0, p1, p0).expect("oc0");
                let oc1 = operating_characteristic(alpha, beta, p1, p1, p0).expect("oc1");
                assert_eq!(oc0, 1.0 - alpha);
                assert_eq!(oc1, beta);
                // The general root finder agrees with the closed forms h = 1 and h = -1.
                let steps = Steps::new(p1, p0).expect("steps");
                let near = |p: f64| p * (1.0 + 1e-12);
                assert_near(steps.wald_h(near(p0)).expect("h0"), 1.0, 1e-9, "h(p0)");
                assert_near(steps.wald_h(near(p1)).expect("h1"), -1.0, 1e-9, "h(p1)");
                // E[N] at p0: ((1-alpha) ln B + alpha ln A) / -KL(p0 || p1).
                let b = boundaries(alpha, beta).expect("b");
                let n0 = ((1.0 - alpha) * b.lower + alpha * b.upper) / -bernoulli_kl(p0, p1);
                assert_near(
                    expected_sample_size(alpha, beta, p0, p1, p0).expect("n0"),
                    n0,
                    1e-12,
                    "E[N] at p0",
                );
                let n1 = (beta * b.lower + (1.0 - beta) * b.upper) / bernoulli_kl(p1, p0);
                assert_near(
                    expected_sample_size(alpha, beta, p1, p1, p0).expect("n1"),
                    n1,
                    1e-12,
                    "E[N] at p1",
                );
                // The OC curve falls from 1 to 0 as the truth moves from p0 past p1.
                let mut last = 1.0;
                for i in 0..=40 {
                    let p = p0 + (p1 - p0) * (i as f64 / 20.0 - 0.5);
                    let oc = operating_characteristic(alpha, beta, p, p1, p0).expect("oc");
                    assert!(oc <= last + 1e-12, "OC not monotone at {p}");
                    last = oc;
                }
            }
        }
    }

    #[test]
    fn smooth_through_the_indifference_point() {
        // E[N] near E[z] = 0 switches between the general formula and its limit.
        let (p0, p1) = (0.5, 0.6);
        let steps = Steps::new(p1, p0).expect("steps");
        let star = -steps.miss / (steps.hit - steps.miss);
        let at = expected_sample_size(0.05, 0.05, star, p1, p0).expect("at");
        for d in [1e-12, 1e-10, 1e-8, 1e-6, 1e-4] {
            for p in [star - d, star + d] {
                let n = expected_sample_size(0.05, 0.05, p, p1, p0).expect("n");
                assert!(
                    (n - at).abs() <= 1e-6 * at + 10.0 * d * at,
                    "{p}: {n} vs {at}"
                );
                let oc = operating_characteristic(0.05, 0.05, p, p1, p0).expect("oc");
                assert!((oc - 0.5).abs() < 30.0 * d + 1e-9, "{p}: OC {oc}");
            }
        }
    }

    #[test]
    fn invalid_input() {
        assert!(boundaries(0.0, 0.1).is_none());
        assert!(boundaries(0.5, 0.5).is_none());
        assert!(boundaries(f64::NAN, 0.1).is_none());
        assert!(boundaries(0.1, -0.1).is_none());
        assert!(boundaries(0.1, f64::INFINITY).is_none());
        let b = boundaries(0.05, 0.2).expect("b");
        assert!(b.upper > 0.0 && b.lower < 0.0);

        assert_eq!(bernoulli_llr(3, 0, 0.6, 0.5), 0.0);
        assert_eq!(bernoulli_llr(3, 10, 0.5, 0.5), 0.0);
        assert!(bernoulli_llr(11, 10, 0.6, 0.5).is_nan());
        assert!(bernoulli_llr(1, 10, 1.5, 0.5).is_nan());
        assert!(bernoulli_llr(1, 10, f64::NAN, 0.5).is_nan());
        assert_eq!(bernoulli_llr(1, 10, 0.1, 0.0), f64::INFINITY);
        assert_near(
            bernoulli_llr(0, 10, 0.1, 0.0),
            10.0 * 0.9f64.ln(),
            1e-15,
            "llr",
        );
        assert_eq!(bernoulli_llr(10, 10, 1.0, 0.5), 10.0 * 2f64.ln());

        assert_eq!(bernoulli_kl(0.3, 0.3), 0.0);
        assert_eq!(bernoulli_kl(f64::NAN, 0.3), 0.0);
        assert_eq!(bernoulli_kl(0.3, f64::NAN), 0.0);
        assert_eq!(bernoulli_kl(0.0, 0.0), 0.0);
        assert_eq!(bernoulli_kl(0.5, 0.0), f64::INFINITY);
        assert!((bernoulli_kl(0.0, 0.5) - 2f64.ln()).abs() < 1e-15);

        assert_eq!(expected_llr_per_trial(0.5, 0.5, 0.5), 0.0);
        assert!(expected_llr_per_trial(-0.1, 0.6, 0.5).is_nan());
        let z = expected_llr_per_trial(0.3, 0.6, 0.5);
        assert!((z - (bernoulli_kl(0.3, 0.5) - bernoulli_kl(0.3, 0.6))).abs() < 1e-15);

        for (a, b, p, p1, p0) in [
            (0.05, 0.05, 0.5, 0.5, 0.5),
            (0.05, 0.05, 0.5, 0.6, 0.0),
            (0.05, 0.05, 0.5, 1.0, 0.5),
            (0.05, 0.05, 1.5, 0.6, 0.5),
            (0.05, 0.05, f64::NAN, 0.6, 0.5),
            (0.6, 0.5, 0.5, 0.6, 0.5),
            (0.05, f64::NAN, 0.5, 0.6, 0.5),
        ] {
            assert!(operating_characteristic(a, b, p, p1, p0).is_none());
            assert!(expected_sample_size(a, b, p, p1, p0).is_none());
        }
        // Extreme but valid input gives finite answers.
        for p in [0.0, 1e-300, 1e-12, 0.5, 1.0 - 1e-12, 1.0] {
            let oc = operating_characteristic(1e-12, 1e-12, p, 0.5 + 1e-9, 0.5).expect("oc");
            assert!((0.0..=1.0).contains(&oc));
            let n = expected_sample_size(1e-12, 1e-12, p, 0.5 + 1e-9, 0.5).expect("n");
            assert!(n.is_finite() && n > 0.0);
        }

        assert!(Sprt::new(0.05, 0.05, 0.5, 0.5).is_none());
        assert!(Sprt::new(0.05, 0.05, 0.0, 0.5).is_none());
        assert!(Sprt::new(0.5, 0.5, 0.4, 0.5).is_none());
    }

    #[test]
    fn sprt_accumulates_and_keeps_its_decision() {
        let mut t = Sprt::new(0.05, 0.05, 0.5, 0.6).expect("sprt");
        let b = t.boundaries();
        assert_eq!(t.decision(), None);
        assert_eq!(t.observe(11, 10), None, "hits > n is ignored");
        assert_eq!((t.hits(), t.trials(), t.llr()), (0, 0, 0.0));
        t.observe(6, 10);
        assert_near(t.llr(), bernoulli_llr(6, 10, 0.6, 0.5), 1e-15, "llr");
        // Misses only: each adds ln(0.8); ln(1/19) / ln(0.8) = 13.2, so the 10 + 14th trial.
        let mut decided_at = None;
        for i in 0..40 {
            if t.observe(0, 1).is_some() && decided_at.is_none() {
                decided_at = Some(i + 1);
            }
        }
        assert_eq!(t.decision(), Some(SprtDecision::AcceptH0));
        let need = ((b.lower - bernoulli_llr(6, 10, 0.6, 0.5)) / 0.8f64.ln()).ceil() as usize;
        assert_eq!(decided_at, Some(need));
        // Overwhelming later evidence for H1 does not change the decision.
        t.observe(1000, 1000);
        assert!(t.llr() > b.upper);
        assert_eq!(t.decision(), Some(SprtDecision::AcceptH0));
        t.reset();
        assert_eq!(
            (t.hits(), t.trials(), t.llr(), t.decision()),
            (0, 0, 0.0, None)
        );
        assert_eq!(t.observe(30, 30), Some(SprtDecision::AcceptH1));
    }

    /// Runs the SPRT trial by trial `runs` times; returns (mean sample size, share accepting H0).
    fn simulate(seed: u64, runs: usize, sprt: &Sprt, p_true: f64) -> (f64, f64) {
        let mut rng = Rng::new(seed);
        let (mut total, mut accepted_h0) = (0u64, 0usize);
        for _ in 0..runs {
            let mut t = sprt.clone();
            t.reset();
            let decision = loop {
                let hit = u64::from(rng.uniform() < p_true);
                if let Some(d) = t.observe(hit, 1) {
                    break d;
                }
            };
            total += t.trials();
            accepted_h0 += usize::from(decision == SprtDecision::AcceptH0);
        }
        (total as f64 / runs as f64, accepted_h0 as f64 / runs as f64)
    }

    #[test]
    fn monte_carlo_agrees_with_wald() {
        // Small steps relative to the boundaries, so the overshoot Wald ignores is small.
        let cases = [
            (0.05, 0.05, 0.5, 0.6, 0.5),
            (0.05, 0.05, 0.5, 0.6, 0.6),
            (0.05, 0.05, 0.5, 0.6, 0.55),
            (0.05, 0.05, 0.5, 0.6, 0.45),
            (0.05, 0.1, 0.3, 0.25, 0.27),
            (0.05, 0.1, 0.3, 0.25, 0.3),
            (0.05, 0.1, 0.3, 0.25, 0.25),
            (0.05, 0.05, 0.1, 0.2 / 1.1, 0.1),
        ];
        for (i, &(alpha, beta, p0, p1, p)) in cases.iter().enumerate() {
            let sprt = Sprt::new(alpha, beta, p0, p1).expect("sprt");
            let (mean_n, oc) = simulate(100 + i as u64, 1500, &sprt, p);
            let wald_n = expected_sample_size(alpha, beta, p, p1, p0).expect("n");
            let wald_oc = operating_characteristic(alpha, beta, p, p1, p0).expect("oc");
            assert!(
                (mean_n / wald_n - 1.0).abs() < 0.1,
                "case {i}: simulated E[N] {mean_n:.1} vs Wald {wald_n:.1}"
            );
            assert!(
                (oc - wald_oc).abs() < 0.04,
                "case {i}: simulated OC {oc:.3} vs Wald {wald_oc:.3}"
            );
        }
    }
}
