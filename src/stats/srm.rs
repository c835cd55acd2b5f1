//! Sample-ratio mismatch (SRM): is the canary's observed share of requests consistent with
//! the weight the router was told to give it?
//!
//! A router that does not split traffic as configured (pods not ready, a stale weight, sticky
//! clients, a mesh that rounds weights) makes every comparison between canary and stable
//! suspect, so the split is tested on its own, continuously, and anytime-valid: however often
//! one looks, the chance that the check ever reports a mismatch while the router is faithful
//! is at most `alpha` (Ville's inequality).
//!
//! # Model
//!
//! Under the null hypothesis each of the `n_i` requests of interval `i` goes to the canary
//! independently with probability `w_i`, the expected share the router was told (fixed before
//! the interval's requests are counted), so the canary count is `Binomial(n_i, w_i)` given
//! `n_i` and the past. The evidence is the product over intervals of
//!
//! ```text
//! m_i(x_i) / Binomial(x_i; n_i, w_i)
//! ```
//!
//! where `m_i` is a beta-binomial predictive distribution chosen from earlier intervals only.
//! Whatever the `m_i` are, each factor has expectation `sum_x m_i(x) = 1` under the null given
//! the past, so the product is a non-negative martingale with mean 1: an e-process for any
//! sequence of expected shares and valid at any stopping time.
//!
//! # The predictive distribution
//!
//! The first interval uses the prior `Beta(k w, k (1 - w))` of Lindon & Malek, "Anytime-Valid
//! Inference for Multinomial Count Data" (NeurIPS 2022): a Dirichlet prior centred on the null
//! with concentration `k` ([`DEFAULT_CONCENTRATION`] = 100 by default: the prior weighs as much
//! as 100 requests, a prior standard deviation of the share of about `sqrt(w (1 - w) / 101)`,
//! i.e. 3 percentage points at `w = 0.1`. Mismatches of that order are found within a few
//! thousand requests and large ones (half the weight) within hundreds; the price of spreading
//! the prior is that after `n` requests the e-value is about `sqrt(k / n) exp(z^2 / 2)` for a
//! z-score `z`, so the evidence needed grows slowly, like `ln(n / k) / 2`).
//!
//! Later intervals need the evidence carried across changes of the expected share, so the
//! mismatch is parameterised as an odds ratio: the canary's true share `q` satisfies
//! `q / (1 - q) = rho * w / (1 - w)` (the router treats the canary's weight as if it were
//! `rho` times too large, or too small). `rho` is estimated from the earlier intervals, with
//! the prior's pseudo-counts, as the ratio of observed to expected requests on the canary over
//! the same ratio on stable:
//!
//! ```text
//! rho = [(X + k w) / (E + k w)] / [(N - X + k (1 - w)) / (N - E + k (1 - w))]
//! ```
//!
//! (`X` canary requests, `N` requests, `E = sum n_j w_j` expected canary requests so far, `w`
//! the new interval's share). The predictive for the new interval is the beta-binomial with
//! mean `q` from that `rho` and weight `k + N`, i.e. `Beta((k + N) q, (k + N) (1 - q))`.
//!
//! While the expected share stays constant this is exactly the conjugate Beta posterior, and
//! the product of predictives telescopes to the fixed-sample Bayes factor of the pooled counts
//! ([`e_value_fixed`]), Lindon & Malek's Dirichlet-multinomial e-value. When the share changes
//! the update is a predictable approximation of a posterior over `rho`; it affects power only,
//! never validity.
//!
//! # Relation to fixed-sample tests
//!
//! A Bayes factor is an average of likelihood ratios, so it never exceeds the largest one,
//! `exp(G / 2)` with `G = 2 sum O ln(O / E)` the likelihood-ratio (G-test) statistic; hence a
//! batch the G-test finds unremarkable (p > 0.2, `G < 1.64`) has an e-value below 2.3, and
//! the binomial and chi-square tests agree closely. The converse holds only up to a sample
//! size: at a fixed p-value the e-value falls like `sqrt(k / n)` as `n` grows (Lindley's
//! paradox), so a tiny p-value at a huge `n` (a fraction of a percent of mismatch in a billion
//! requests) may not be a mismatch here. `1 / e` is a valid p-value but not always larger
//! than the binomial test's: for 0 of 10 requests at a share of 1% it is 0.996, the binomial
//! p-value 1.
//!
//! # Limitations
//!
//! The null is independent routing of each request. Session affinity or consistent hashing
//! routes whole clients, which makes the counts over-dispersed relative to the binomial; the
//! check then reports a mismatch that is real at the request level but may be intended.
//! Prometheus `increase()` counts are rounded to whole requests.

use statrs::function::gamma::ln_gamma;

/// The default concentration of the prior: it weighs as much as this many requests.
pub const DEFAULT_CONCENTRATION: f64 = 100.0;

/// The largest log e-value reported as a number: `e^690` (about 1e300) keeps every e-value
/// finite in reports; the log form is not capped.
const LOG_E_CAP: f64 = 690.0;

/// `e^x`, capped at `e^690`.
fn capped_exp(x: f64) -> f64 {
    x.min(LOG_E_CAP).exp()
}

/// `x ln(x / m) + m - x`, the deviance term of a count `x` with mean `m`, without cancellation
/// when `x` is close to `m` (Loader, "Fast and Accurate Computation of Binomial
/// Probabilities", 2000).
fn bd0(x: f64, m: f64) -> f64 {
    if x == 0.0 {
        return m;
    }
    let d = x - m;
    if d.abs() < 0.1 * (x + m) {
        let v = d / (x + m);
        let v2 = v * v;
        let mut sum = d * v;
        let mut term = 2.0 * x * v;
        for j in 1..1000 {
            term *= v2;
            let next = sum + term / f64::from(2 * j + 1);
            if next == sum {
                return next;
            }
            sum = next;
        }
        sum
    } else {
        x * (x / m).ln() + m - x
    }
}

/// The remainder of Stirling's series, `ln Gamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2)`.
fn stirling_remainder(z: f64) -> f64 {
    if z >= 10.0 {
        let r = 1.0 / z;
        let r2 = r * r;
        // Bernoulli-number series; the first omitted term is below 1e-17 at z = 10.
        r * (1.0 / 12.0
            - r2 * (1.0 / 360.0
                - r2 * (1.0 / 1260.0
                    - r2 * (1.0 / 1680.0 - r2 * (1.0 / 1188.0 - r2 * (691.0 / 360_360.0))))))
    } else {
        let half_ln_two_pi = 0.5 * std::f64::consts::TAU.ln();
        ln_gamma(z) - ((z - 0.5) * z.ln() - z + half_ln_two_pi)
    }
}

/// `ln [ B(a + x, b + n - x) / (B(a, b) w^x (1 - w)^(n - x)) ]`: the log of the beta-binomial
/// probability of `x` of `n` over the binomial one with probability `w` (the binomial
/// coefficients cancel). Needs `0 <= x <= n`, `a, b > 0` and `0 < w < 1`.
///
/// With Stirling's formula for each log gamma, the large terms (of order `n ln n`) cancel
/// analytically into deviance terms `bd0`, so the result is accurate to about 1e-15 relative to
/// its size instead of 1e-16 `n ln n` absolute.
fn log_factor(x: f64, n: f64, w: f64, a: f64, b: f64) -> f64 {
    let y = n - x;
    let (s, t) = (a + x, b + y);
    let (u, u0) = (s + t, a + b);
    let posterior = bd0(s, u * w) + bd0(t, u * (1.0 - w));
    let prior = bd0(a, u0 * w) + bd0(b, u0 * (1.0 - w));
    let logs = -0.5 * (s.ln() + t.ln() - u.ln() - a.ln() - b.ln() + u0.ln());
    let rest = stirling_remainder(s) + stirling_remainder(t)
        - stirling_remainder(u)
        - stirling_remainder(a)
        - stirling_remainder(b)
        + stirling_remainder(u0);
    posterior - prior + logs + rest
}

/// `true` for a share strictly between 0 and 1.
fn is_open_share(w: f64) -> bool {
    w > 0.0 && w < 1.0
}

/// Natural log of [`e_value_fixed`] (not capped).
///
/// `None` unless `canary <= total`, `0 < share < 1` and `concentration` is positive and
/// finite.
pub fn log_e_value_fixed(canary: u64, total: u64, share: f64, concentration: f64) -> Option<f64> {
    if canary > total
        || !is_open_share(share)
        || !(concentration > 0.0 && concentration.is_finite())
    {
        return None;
    }
    if total == 0 {
        return Some(0.0);
    }
    let (a, b) = (concentration * share, concentration * (1.0 - share));
    if !(a > 0.0 && b > 0.0) {
        return None;
    }
    let v = log_factor(canary as f64, total as f64, share, a, b);
    (!v.is_nan()).then_some(v)
}

/// The e-value of one batch: `canary` of `total` requests went to the canary, which should
/// have received a share `share` of them. It is the Bayes factor of the `Beta(k share,
/// k (1 - share))` mixture of binomial likelihoods (`k = concentration`) against
/// `Binomial(total, share)`, Lindon & Malek's Dirichlet-multinomial e-value for two
/// categories; [`DEFAULT_CONCENTRATION`] is the usual `k`.
///
/// 1 for an empty batch; capped at `e^690`. `None` for the input [`log_e_value_fixed`]
/// rejects.
pub fn e_value_fixed(canary: u64, total: u64, share: f64, concentration: f64) -> Option<f64> {
    log_e_value_fixed(canary, total, share, concentration).map(capped_exp)
}

/// The running check of a canary's share of requests (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitCheck {
    concentration: f64,
    threshold_log: f64,
    canary: f64,
    total: f64,
    expected_canary: f64,
    log_e: f64,
    first_mismatch: Option<usize>,
    observations: usize,
}

impl SplitCheck {
    /// A check at level `alpha` (a mismatch once the e-value reaches `1/alpha`) with the
    /// default concentration ([`DEFAULT_CONCENTRATION`]). `None` unless `0 < alpha < 1`.
    pub fn new(alpha: f64) -> Option<Self> {
        Self::with_concentration(alpha, DEFAULT_CONCENTRATION)
    }

    /// A check at level `alpha` whose prior weighs as much as `concentration` requests. `None`
    /// unless `0 < alpha < 1` and `concentration` is positive and finite.
    pub fn with_concentration(alpha: f64, concentration: f64) -> Option<Self> {
        if !(alpha > 0.0 && alpha < 1.0 && concentration > 0.0 && concentration.is_finite()) {
            return None;
        }
        Some(Self {
            concentration,
            threshold_log: -alpha.ln(),
            canary: 0.0,
            total: 0.0,
            expected_canary: 0.0,
            log_e: 0.0,
            first_mismatch: None,
            observations: 0,
        })
    }

    /// Adds one interval: `canary_requests` of `total_requests` went to the canary, whose
    /// expected share (the router's weight, fixed before the interval) is `expected_share`.
    ///
    /// Counts are rounded to whole requests. Ignored when a value is non-finite or negative,
    /// the share is not strictly between 0 and 1, the interval is empty after rounding, or the
    /// canary count exceeds the total.
    pub fn observe(&mut self, canary_requests: f64, total_requests: f64, expected_share: f64) {
        let finite = canary_requests.is_finite() && total_requests.is_finite();
        if !finite || canary_requests < 0.0 || total_requests < 0.0 {
            return;
        }
        if !is_open_share(expected_share) {
            return;
        }
        let (x, n, w) = (
            canary_requests.round(),
            total_requests.round(),
            expected_share,
        );
        if n <= 0.0 || x > n {
            return;
        }
        let (a, b) = self.predictive(w);
        if !(a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite()) {
            return;
        }
        let factor = log_factor(x, n, w, a, b);
        if factor.is_nan() {
            return;
        }
        self.log_e += factor;
        self.canary += x;
        self.total += n;
        self.expected_canary += n * w;
        self.observations += 1;
        if self.first_mismatch.is_none() && self.log_e >= self.threshold_log {
            self.first_mismatch = Some(self.observations);
        }
    }

    /// The beta-binomial predictive `Beta(a, b)` for an interval with expected share `w`,
    /// from the earlier intervals only.
    fn predictive(&self, w: f64) -> (f64, f64) {
        let k = self.concentration;
        let (kc, ks) = (k * w, k * (1.0 - w));
        if self.total <= 0.0 {
            return (kc, ks);
        }
        let (x, n, e) = (self.canary, self.total, self.expected_canary);
        // ln of the odds ratio rho, then the log odds of the predictive mean.
        let log_rho = (x + kc).ln() - (e + kc).ln() - (n - x + ks).ln() + (n - e + ks).ln();
        let log_odds = w.ln() - (-w).ln_1p() + log_rho;
        let weight = k + n;
        // q = 1 / (1 + e^-l), 1 - q = 1 / (1 + e^l), each without cancellation.
        let q = 1.0 / (1.0 + (-log_odds).exp());
        let not_q = 1.0 / (1.0 + log_odds.exp());
        (weight * q, weight * not_q)
    }

    /// The e-value: the evidence of a mismatch so far (1 before any data; capped at `e^690`).
    pub fn e_value(&self) -> f64 {
        capped_exp(self.log_e)
    }

    /// Natural log of the e-value (not capped).
    pub fn log_e_value(&self) -> f64 {
        self.log_e
    }

    /// Whether the e-value has reached `1/alpha` at some observation. The answer stays `true`
    /// once it is: the guarantee (probability at most `alpha` under a faithful router) is for
    /// the e-value *ever* reaching the threshold, so a later fall of the e-value does not
    /// withdraw the finding.
    pub fn mismatch(&self) -> bool {
        self.first_mismatch.is_some()
    }

    /// The (1-based) observation at which the e-value first reached `1/alpha`, if it has.
    pub fn first_mismatch(&self) -> Option<usize> {
        self.first_mismatch
    }

    /// Whether the split is off, significantly and materially: [`SplitCheck::mismatch`], and
    /// the observed share differs from the expected one by more than `tolerance` of it
    /// (routers only approximate their weights; with millions of requests any small
    /// difference is significant).
    pub fn off_by_more_than(&self, tolerance: f64) -> bool {
        self.mismatch()
            && match (self.observed_share(), self.expected_share()) {
                (Some(o), Some(e)) if e > 0.0 => (o / e - 1.0).abs() > tolerance,
                _ => false,
            }
    }

    /// The canary's share of all requests observed (after rounding); `None` before any.
    pub fn observed_share(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.canary / self.total)
    }

    /// The expected share over all requests observed: the mean of the intervals' expected
    /// shares weighted by their requests; `None` before any.
    pub fn expected_share(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.expected_canary / self.total)
    }

    /// `(canary requests, total requests)` accepted so far, after rounding.
    pub fn totals(&self) -> (f64, f64) {
        (self.canary, self.total)
    }

    /// The number of intervals accepted so far.
    pub fn observations(&self) -> usize {
        self.observations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::random::Rng;

    fn fixture() -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stats/srm.json"))
                .expect("json");
        v["cases"].as_array().expect("cases").clone()
    }

    /// A case's fields: (canary, total, share, concentration).
    fn inputs(c: &serde_json::Value) -> (u64, u64, f64, f64) {
        (
            c["canary"].as_u64().expect("canary"),
            c["total"].as_u64().expect("total"),
            c["share"].as_f64().expect("share"),
            c["concentration"].as_f64().expect("concentration"),
        )
    }

    #[test]
    fn matches_reference() {
        let cases = fixture();
        assert!(cases.len() >= 300);
        for (i, c) in cases.iter().enumerate() {
            let (x, n, w, k) = inputs(c);
            let log_e = log_e_value_fixed(x, n, w, k).expect("log e");
            let reference = c["log_e"].as_f64().expect("log_e");
            // 1e-9 absolute in ln e is 1e-9 relative in e.
            assert!(
                (log_e - reference).abs() <= 1e-9 * reference.abs().max(1.0),
                "case {i} ({x} of {n}, share {w}, k {k}): ln e {log_e} vs {reference}"
            );
            let e = e_value_fixed(x, n, w, k).expect("e");
            match c["e"].as_f64() {
                Some(r) => assert!((e - r).abs() <= 1e-9 * r, "case {i}: e {e:e} vs {r:e}"),
                None => assert_eq!(e, LOG_E_CAP.exp(), "case {i}: capped"),
            }
        }
    }

    #[test]
    fn relation_to_fixed_sample_tests() {
        let (mut quiet, mut loud) = (0, 0);
        for (i, c) in fixture().iter().enumerate() {
            let (x, n, w, k) = inputs(c);
            let f = |key: &str| c[key].as_f64().expect(key);
            let log_e = log_e_value_fixed(x, n, w, k).expect("log e");
            let (binom_p, chi2_p) = (f("binom_p"), f("chi2_p"));
            // A mixture of likelihood ratios never exceeds the largest, exp(G / 2).
            assert!(log_e <= f("g") / 2.0 + 1e-9, "case {i}: ln e {log_e} > G/2");
            // What SciPy finds unremarkable is no evidence here.
            if binom_p > 0.2 || chi2_p > 0.2 {
                quiet += 1;
                assert!(
                    log_e < 10f64.ln(),
                    "case {i}: e {} at p {binom_p}",
                    log_e.exp()
                );
            }
            // What both SciPy tests reject at 1e-6 in a canary-sized batch (1e3 to 1e5
            // requests) is strong evidence here, for the priors a check would use (k <= 1000).
            // Not a theorem: at a fixed p-value the e-value falls like sqrt(k / n).
            if binom_p < 1e-6 && chi2_p < 1e-6 && n >= 1000 && k <= 1000.0 {
                loud += 1;
                assert!(
                    log_e > 100f64.ln(),
                    "case {i}: e {} at p {binom_p}",
                    log_e.exp()
                );
            }
        }
        assert!(
            quiet >= 50 && loud >= 50,
            "{quiet} quiet and {loud} loud cases"
        );
    }

    #[test]
    fn constant_share_telescopes_to_the_fixed_sample_bayes_factor() {
        let mut rng = Rng::new(7);
        for (w, k) in [(0.1, 100.0), (0.5, 10.0), (0.02, 1000.0)] {
            let mut check = SplitCheck::with_concentration(0.05, k).expect("check");
            let (mut x, mut n) = (0u64, 0u64);
            for i in 0..30u64 {
                let total = 50 + 37 * i;
                let canary = binomial(&mut rng, total, w * 1.1);
                check.observe(canary as f64, total as f64, w);
                x += canary;
                n += total;
                let pooled = log_e_value_fixed(x, n, w, k).expect("pooled");
                let diff = (check.log_e_value() - pooled).abs();
                assert!(
                    diff <= 1e-9 * pooled.abs().max(1.0),
                    "w {w} step {i}: {diff:e}"
                );
            }
            assert_eq!(check.totals(), (x as f64, n as f64));
        }
    }

    /// An exact binomial draw by inversion, searching outwards from the mode.
    fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
        let nf = n as f64;
        let mode = ((nf + 1.0) * p).floor().min(nf);
        let ln_pmf = ln_gamma(nf + 1.0) - ln_gamma(mode + 1.0) - ln_gamma(nf - mode + 1.0)
            + mode * p.ln()
            + (nf - mode) * (-p).ln_1p();
        let odds = p / (1.0 - p);
        let u = rng.uniform();
        let mut cumulative = ln_pmf.exp();
        if u <= cumulative {
            return mode as u64;
        }
        let (mut lo, mut hi) = (mode, mode);
        let (mut p_lo, mut p_hi) = (cumulative, cumulative);
        while lo > 0.0 || hi < nf {
            if hi < nf {
                hi += 1.0;
                p_hi *= (nf - hi + 1.0) / hi * odds;
                cumulative += p_hi;
                if u <= cumulative {
                    return hi as u64;
                }
            }
            if lo > 0.0 {
                p_lo *= lo / (nf - lo + 1.0) / odds;
                lo -= 1.0;
                cumulative += p_lo;
                if u <= cumulative {
                    return lo as u64;
                }
            }
        }
        mode as u64
    }

    /// One rollout: `looks` intervals of `n` requests; the router's share at interval `i` is
    /// `share(i)`, the canary's true share `truth(share)`.
    fn rollout(
        seed: u64,
        looks: usize,
        n: u64,
        share: impl Fn(usize) -> f64,
        truth: impl Fn(f64) -> f64,
    ) -> SplitCheck {
        let mut rng = Rng::new(seed);
        let mut check = SplitCheck::new(0.05).expect("check");
        for i in 0..looks {
            let w = share(i);
            let x = binomial(&mut rng, n, truth(w));
            check.observe(x as f64, n as f64, w);
        }
        check
    }

    /// 10% for the first half of `looks`, then 50%.
    fn step_up(looks: usize) -> impl Fn(usize) -> f64 {
        move |i| if i < looks / 2 { 0.1 } else { 0.5 }
    }

    #[test]
    fn binomial_sampler_is_exact_enough() {
        let mut rng = Rng::new(3);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| binomial(&mut rng, 1000, 0.1) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 100.0).abs() < 0.2, "mean {mean}");
        assert!((var / 90.0 - 1.0).abs() < 0.04, "variance {var}");
    }

    #[test]
    fn faithful_router_rarely_raises_an_alarm() {
        // 1000 rollouts of 100 intervals with the share changing from 10% to 50%.
        let runs = 1000;
        let alarms = (0..runs)
            .filter(|s| rollout(*s, 100, 500, step_up(100), |w| w).mismatch())
            .count();
        // alpha = 0.05: at most 50 expected; 3 binomial standard deviations of slack.
        assert!(
            alarms <= 50 + 21,
            "{alarms} of {runs} faithful rollouts alarmed"
        );
    }

    #[test]
    fn half_weight_canary_is_found_within_a_few_intervals() {
        // The canary should get 10% but gets 5%, 1200 requests per interval.
        for seed in 0..20 {
            let check = rollout(seed, 10, 1200, |_| 0.1, |_| 0.05);
            let at = check.first_mismatch().expect("found");
            assert!(at <= 2, "seed {seed}: found at interval {at}");
            assert!((check.observed_share().expect("share") - 0.05).abs() < 0.01);
            assert!((check.expected_share().expect("share") - 0.1).abs() < 1e-12);
        }
        // A milder mismatch (12% instead of 10%, then 60% instead of 50%) is found too.
        let check = rollout(1, 100, 1200, step_up(100), |w| w * 1.2);
        assert!(check.mismatch(), "e {}", check.e_value());
    }

    #[test]
    fn mixed_shares_are_pooled() {
        let mut check = SplitCheck::new(0.01).expect("check");
        assert_eq!(check.observed_share(), None);
        assert_eq!(check.expected_share(), None);
        assert_eq!(check.e_value(), 1.0);
        check.observe(10.0, 100.0, 0.1);
        check.observe(150.4, 300.0, 0.5);
        assert_eq!(check.totals(), (160.0, 400.0));
        assert_eq!(check.observed_share(), Some(0.4));
        assert!((check.expected_share().expect("w") - 0.4).abs() < 1e-15);
        assert!(check.e_value() < 1.0, "faithful data: {}", check.e_value());
        assert!(!check.mismatch());
        assert_eq!(check.observations(), 2);
    }

    #[test]
    fn bad_input_is_ignored() {
        let mut check = SplitCheck::new(0.05).expect("check");
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        for (x, n, w) in [
            (nan, 10.0, 0.1),
            (1.0, inf, 0.1),
            (-1.0, 10.0, 0.1),
            (1.0, -10.0, 0.1),
            (1.0, 10.0, 0.0),
            (1.0, 10.0, 1.0),
            (1.0, 10.0, nan),
            (11.0, 10.0, 0.1),
            (0.0, 0.4, 0.1),
            (5.0, 1e300, 1e-300),
        ] {
            check.observe(x, n, w);
        }
        assert!(check.log_e_value().is_finite());
        let (x, n) = check.totals();
        assert!(x <= n);
        assert!(SplitCheck::new(0.0).is_none());
        assert!(SplitCheck::new(1.0).is_none());
        assert!(SplitCheck::new(nan).is_none());
        assert!(SplitCheck::with_concentration(0.05, 0.0).is_none());
        assert!(SplitCheck::with_concentration(0.05, inf).is_none());
        assert!(e_value_fixed(11, 10, 0.1, 100.0).is_none());
        assert!(e_value_fixed(1, 10, 0.0, 100.0).is_none());
        assert!(e_value_fixed(1, 10, 1.0, 100.0).is_none());
        assert!(e_value_fixed(1, 10, nan, 100.0).is_none());
        assert!(e_value_fixed(1, 10, 0.1, -1.0).is_none());
        assert!(e_value_fixed(1, 10, 0.1, nan).is_none());
        assert_eq!(e_value_fixed(0, 0, 0.1, 100.0), Some(1.0));
        // Extreme but valid input stays finite (and capped).
        let e = e_value_fixed(u64::MAX / 2, u64::MAX, 1e-9, 1e-6).expect("e");
        assert!(e.is_finite() && e > 1.0);
        let e = e_value_fixed(1, u64::MAX, 0.5, 1e12).expect("e");
        assert!(e.is_finite());
        let e = e_value_fixed(3, 7, 1e-300, 100.0).expect("e");
        assert!(e.is_finite() && e > 1.0);
    }
}
