//! Anytime-valid (sequential) inference for rates of events per request, canary vs stable.
//!
//! A rollout looks at its data again and again; a test repeated at every look loses its error
//! guarantee. The e-processes here keep it: however often one looks, the chance that an
//! e-value ever reaches `1/alpha` while the null hypothesis holds is at most `alpha` (Ville's
//! inequality).
//!
//! The model follows Lindon & Malek, "Anytime-Valid Inference for Multinomial Count Data"
//! (NeurIPS 2022): each version's events (errors, or requests slower than a bound) form a
//! Poisson process whose rate is proportional to its traffic. Given that `k` events happened in
//! an interval, the number that came from the canary is binomial with success probability
//!
//! ```text
//! q(rho) = pi * rho / (pi * rho + 1 - pi)
//! ```
//!
//! where `pi` is the canary's share of the interval's requests and `rho` the ratio of the
//! canary's event rate to stable's. Conditioning on `k` removes the unknown base rate, so the
//! test needs no estimate of it and stays valid when the traffic share changes between steps.
//!
//! Two one-sided e-processes are kept for a boundary ratio `rho0` (e.g. `1 + tolerance`):
//! - `above`: evidence that `rho > rho0` (a regression beyond tolerance), a mixture over
//!   alternatives `rho0 * e^d` of likelihood ratios against `rho0`;
//! - `below`: evidence that `rho < rho0` (any change is within tolerance), the mirror image.
//!
//! Because the binomial family has a monotone likelihood ratio in `rho`, each likelihood ratio
//! of an alternative above `rho0` against `rho0` is a supermartingale for every `rho <= rho0`,
//! so `above` is valid for the whole composite null `rho <= rho0`, and likewise `below`.
//! Each e-process is the average of two: a mixture over alternatives `rho0 * e^d` with a
//! discrete log-uniform prior over effect sizes `d` from 0.03 to 3 (ratios x1.03 to x20),
//! robust to the size of the effect; and a predictable plug-in, whose alternative at each
//! step is the ratio estimated from the earlier steps (pushed past the boundary), which
//! learns the effect and then gains evidence almost as fast as a test that knew it. An
//! average of e-processes is an e-process, so validity is kept at the cost of a factor 2.
//! The boundary may change from step to step if it is fixed before the step's data are seen
//! (the latency test derives it from earlier steps).

/// Effect sizes (natural-log ratio multipliers) of the mixture.
const GRID: usize = 10;
const D_MIN: f64 = 0.05;
const D_MAX: f64 = 2.5;
/// The plug-in alternative is at least this far (in log ratio) past the boundary.
const PLUG_IN_MIN: f64 = 0.03;

/// One interval's counts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    canary_events: f64,
    events: f64,
    share: f64,
    boundary: f64,
}

/// The running evidence about the ratio of the canary's event rate to stable's.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSequence {
    deltas: Vec<f64>,
    log_weight: f64,
    log_above: Vec<f64>,
    log_below: Vec<f64>,
    plug_in_above: f64,
    plug_in_below: f64,
    max_log_e_above: f64,
    max_log_e_below: f64,
    first_above: Option<usize>,
    first_below: Option<usize>,
    steps: Vec<Step>,
    looks: usize,
    canary_events: f64,
    canary_requests: f64,
    stable_events: f64,
    stable_requests: f64,
    threshold_log: f64,
}

fn binomial_log_lr(x: f64, k: f64, q1: f64, q0: f64) -> f64 {
    // x * ln(q1/q0) + (k - x) * ln((1-q1)/(1-q0)), with 0 * ln(..) = 0.
    let mut lr = 0.0;
    if x > 0.0 {
        lr += x * (q1.ln() - q0.ln());
    }
    if k - x > 0.0 {
        lr += (k - x) * ((1.0 - q1).ln() - (1.0 - q0).ln());
    }
    lr
}

/// The log-likelihood ratio of one interval's split of events between the versions, for a
/// rate ratio `rho1` against `rho0` (canary over stable), in the conditional binomial model
/// above: the canary's events given all events, with the canary's share of the requests.
/// `None` without events, requests on either side, or with non-finite input.
pub fn interval_log_lr(
    canary_events: f64,
    canary_requests: f64,
    stable_events: f64,
    stable_requests: f64,
    rho1: f64,
    rho0: f64,
) -> Option<f64> {
    let inputs = [
        canary_events,
        canary_requests,
        stable_events,
        stable_requests,
    ];
    if !(inputs.iter().all(|v| v.is_finite() && *v >= 0.0)
        && rho1.is_finite()
        && rho0.is_finite()
        && rho1 > 0.0
        && rho0 > 0.0)
    {
        return None;
    }
    let x = canary_events.round();
    let k = x + stable_events.round();
    if k <= 0.0 || canary_requests <= 0.0 || stable_requests <= 0.0 {
        return None;
    }
    let share = canary_requests / (canary_requests + stable_requests);
    Some(binomial_log_lr(
        x,
        k,
        canary_probability(share, rho1),
        canary_probability(share, rho0),
    ))
}

/// `e^x`, capped at 1e300 so overwhelming evidence stays a finite number in reports.
fn capped_exp(x: f64) -> f64 {
    x.min(690.0).exp()
}

fn canary_probability(share: f64, rho: f64) -> f64 {
    share * rho / (share * rho + 1.0 - share)
}

fn log_sum_exp(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The mixture's effect sizes: log-spaced from `D_MIN` to `D_MAX`.
fn deltas() -> Vec<f64> {
    let ratio = (D_MAX / D_MIN).ln() / (GRID - 1) as f64;
    (0..GRID)
        .map(|i| D_MIN * (ratio * i as f64).exp())
        .collect()
}

impl RateSequence {
    /// Empty evidence; decisions are made at level `alpha` (an e-value of `1/alpha`).
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha > 0.0 && alpha < 1.0 {
            alpha
        } else {
            0.01
        };
        Self {
            deltas: deltas(),
            log_weight: -(GRID as f64).ln(),
            log_above: vec![0.0; GRID],
            log_below: vec![0.0; GRID],
            plug_in_above: 0.0,
            plug_in_below: 0.0,
            max_log_e_above: 0.0,
            max_log_e_below: 0.0,
            first_above: None,
            first_below: None,
            steps: Vec::new(),
            looks: 0,
            canary_events: 0.0,
            canary_requests: 0.0,
            stable_events: 0.0,
            stable_requests: 0.0,
            threshold_log: (1.0 / alpha).ln(),
        }
    }

    /// Adds one interval: events and requests per version, and the boundary ratio `rho0`
    /// (fixed before this interval's data were seen). Counts are rounded to whole events;
    /// non-finite or negative input is ignored.
    pub fn observe(
        &mut self,
        canary_events: f64,
        canary_requests: f64,
        stable_events: f64,
        stable_requests: f64,
        boundary: f64,
    ) {
        self.looks += 1;
        let valid = [
            canary_events,
            canary_requests,
            stable_events,
            stable_requests,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
            && boundary.is_finite()
            && boundary > 0.0;
        if !valid {
            return;
        }
        // The plug-in alternative comes from the earlier steps only.
        let past = self.estimate().map(f64::ln);
        self.canary_events += canary_events;
        self.canary_requests += canary_requests;
        self.stable_events += stable_events;
        self.stable_requests += stable_requests;
        let x = canary_events.round();
        let k = x + stable_events.round();
        if k <= 0.0 || canary_requests <= 0.0 || stable_requests <= 0.0 {
            return;
        }
        let share = canary_requests / (canary_requests + stable_requests);
        let q0 = canary_probability(share, boundary);
        let log_boundary = boundary.ln();
        let (up, down) = match past {
            Some(l) => (
                l.max(log_boundary + PLUG_IN_MIN),
                l.min(log_boundary - PLUG_IN_MIN),
            ),
            None => (log_boundary + 0.5, log_boundary - 0.5),
        };
        self.plug_in_above += binomial_log_lr(x, k, canary_probability(share, up.exp()), q0);
        self.plug_in_below += binomial_log_lr(x, k, canary_probability(share, down.exp()), q0);
        for (i, d) in self.deltas.iter().enumerate() {
            let up = canary_probability(share, boundary * d.exp());
            let down = canary_probability(share, boundary * (-d).exp());
            self.log_above[i] += binomial_log_lr(x, k, up, q0);
            self.log_below[i] += binomial_log_lr(x, k, down, q0);
        }
        self.steps.push(Step {
            canary_events: x,
            events: k,
            share,
            boundary,
        });
        let look = self.looks;
        let above = self.log_e_above();
        let below = self.log_e_below();
        self.max_log_e_above = self.max_log_e_above.max(above);
        self.max_log_e_below = self.max_log_e_below.max(below);
        if self.first_above.is_none() && above >= self.threshold_log {
            self.first_above = Some(look);
        }
        if self.first_below.is_none() && below >= self.threshold_log {
            self.first_below = Some(look);
        }
    }

    fn log_e_above(&self) -> f64 {
        let mixture = log_sum_exp(self.log_above.iter().map(|l| l + self.log_weight));
        log_sum_exp([mixture, self.plug_in_above].into_iter()) - 2f64.ln()
    }

    fn log_e_below(&self) -> f64 {
        let mixture = log_sum_exp(self.log_below.iter().map(|l| l + self.log_weight));
        log_sum_exp([mixture, self.plug_in_below].into_iter()) - 2f64.ln()
    }

    /// The current e-value for "the ratio is above the boundary".
    pub fn e_above(&self) -> f64 {
        capped_exp(self.log_e_above())
    }

    /// The current e-value for "the ratio is below the boundary".
    pub fn e_below(&self) -> f64 {
        capped_exp(self.log_e_below())
    }

    /// The largest e-value for "above" seen at any look; the anytime-valid p-value is its
    /// reciprocal (capped at 1).
    pub fn max_e_above(&self) -> f64 {
        capped_exp(self.max_log_e_above)
    }

    /// The largest e-value for "below" seen at any look.
    pub fn max_e_below(&self) -> f64 {
        capped_exp(self.max_log_e_below)
    }

    /// The look (1-based) at which "above" first reached `1/alpha`, if it did.
    pub fn crossed_above(&self) -> Option<usize> {
        self.first_above
    }

    /// The look (1-based) at which "below" first reached `1/alpha`, if it did.
    pub fn crossed_below(&self) -> Option<usize> {
        self.first_below
    }

    /// The level the process decides at: it crosses when an e-value reaches `1 / level`.
    pub fn level(&self) -> f64 {
        (-self.threshold_log).exp()
    }

    /// How many intervals were observed.
    pub fn looks(&self) -> usize {
        self.looks
    }

    /// Totals so far: (canary events, canary requests, stable events, stable requests).
    pub fn totals(&self) -> (f64, f64, f64, f64) {
        (
            self.canary_events,
            self.canary_requests,
            self.stable_events,
            self.stable_requests,
        )
    }

    /// The pooled ratio of event rates, canary over stable; with no event on a side, 0.5 is
    /// added to both event counts so the estimate stays finite.
    pub fn estimate(&self) -> Option<f64> {
        let (ce, cn, se, sn) = self.totals();
        if cn <= 0.0 || sn <= 0.0 {
            return None;
        }
        let (ce, se) = if ce == 0.0 || se == 0.0 {
            (ce + 0.5, se + 0.5)
        } else {
            (ce, se)
        };
        Some((ce / cn) / (se / sn))
    }

    /// The two-sided e-value against a point ratio `rho`: the mean of the mixtures above and
    /// below it, over all intervals so far.
    fn log_e_at(&self, rho: f64) -> f64 {
        let mut above = [0.0; GRID];
        let mut below = [0.0; GRID];
        for s in &self.steps {
            // Steps judged against a moving boundary are re-expressed on the same scale: the
            // ratio `rho` is relative to the boundary of its step.
            let scaled = rho * s.boundary / self.steps[0].boundary;
            let q0 = canary_probability(s.share, scaled);
            for (i, d) in self.deltas.iter().enumerate() {
                above[i] += binomial_log_lr(
                    s.canary_events,
                    s.events,
                    canary_probability(s.share, scaled * d.exp()),
                    q0,
                );
                below[i] += binomial_log_lr(
                    s.canary_events,
                    s.events,
                    canary_probability(s.share, scaled * (-d).exp()),
                    q0,
                );
            }
        }
        let half = self.log_weight - 2f64.ln();
        log_sum_exp(above.iter().chain(&below).map(|l| l + half))
    }

    /// A `1 - alpha` confidence sequence for the ratio (relative to the first step's
    /// boundary scale, i.e. the plain rate ratio when the boundary was constant): every ratio
    /// whose two-sided e-value is below `1/alpha`. `None` without any event.
    pub fn confidence_sequence(&self, alpha: f64) -> Option<(f64, f64)> {
        if self.steps.is_empty() || !(alpha > 0.0 && alpha < 1.0) {
            return None;
        }
        let threshold = (1.0 / alpha).ln();
        let center = self.mle_log_ratio()?;
        let inside = |log_rho: f64| self.log_e_at(log_rho.exp()) < threshold;
        if !inside(center) {
            // Cannot happen for a proper mixture at the maximum likelihood; be safe anyway.
            return Some((center.exp(), center.exp()));
        }
        let bound = |direction: f64| {
            // Walk out in doubling steps until outside, then bisect.
            let mut inner = center;
            let mut step = 0.05;
            let mut outer = center + direction * step;
            while inside(outer) {
                inner = outer;
                step *= 2.0;
                outer = center + direction * step;
                if step > 40.0 {
                    return direction * f64::INFINITY;
                }
            }
            for _ in 0..30 {
                let mid = 0.5 * (inner + outer);
                if inside(mid) {
                    inner = mid;
                } else {
                    outer = mid;
                }
            }
            inner
        };
        Some((bound(-1.0).exp(), bound(1.0).exp()))
    }

    /// The maximum-likelihood log ratio over all intervals (by bisection on the score).
    fn mle_log_ratio(&self) -> Option<f64> {
        if self.steps.is_empty() {
            return None;
        }
        let base = self.steps[0].boundary;
        let score = |log_rho: f64| {
            self.steps
                .iter()
                .map(|s| {
                    let q = canary_probability(s.share, log_rho.exp() * s.boundary / base);
                    s.canary_events - s.events * q
                })
                .sum::<f64>()
        };
        let (mut lo, mut hi) = (-20.0, 20.0);
        if score(lo) <= 0.0 {
            return Some(lo);
        }
        if score(hi) >= 0.0 {
            return Some(hi);
        }
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if score(mid) > 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(0.5 * (lo + hi))
    }
}

/// Roughly how many events (both versions together) an unchanged canary needs before the
/// "below" e-process can show the ratio is under `boundary`, with canary share `share`:
/// `ln(1/alpha)` divided by the per-event Kullback-Leibler divergence, plus 30% for the
/// mixture's cost of not knowing the effect size.
pub fn events_needed(alpha: f64, share: f64, boundary: f64) -> Option<f64> {
    if !(alpha > 0.0 && alpha < 1.0 && share > 0.0 && share < 1.0 && boundary > 0.0)
        || boundary == 1.0
    {
        return None;
    }
    let q = share;
    let q0 = canary_probability(share, boundary);
    let kl = q * (q / q0).ln() + (1.0 - q) * ((1.0 - q) / (1.0 - q0)).ln();
    (kl > 0.0).then(|| 1.3 * (1.0 / alpha).ln() / kl)
}

/// The significance level for look number `look` (1-based) when a fixed-sample test is
/// repeated: `alpha * 6 / (pi^2 * look^2)`, whose sum over all looks is `alpha`.
pub fn alpha_for_look(alpha: f64, look: u32) -> f64 {
    let look = f64::from(look.max(1));
    alpha * 6.0 / (std::f64::consts::PI.powi(2) * look * look)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::random::Rng;

    fn poisson(rng: &mut Rng, lambda: f64) -> f64 {
        rng.poisson(lambda)
    }

    /// Simulates `looks` intervals with canary share `share` and rate ratio `rho`.
    fn run(seed: u64, rho: f64, boundary: f64, looks: usize, rate: f64) -> RateSequence {
        let mut rng = Rng::new(seed);
        let mut seq = RateSequence::new(0.01);
        for i in 0..looks {
            let share = if i < looks / 2 { 0.1 } else { 0.5 };
            let (nc, ns) = (1000.0 * share, 1000.0 * (1.0 - share));
            let ce = poisson(&mut rng, nc * rate * rho);
            let se = poisson(&mut rng, ns * rate);
            seq.observe(ce, nc, se, ns, boundary);
        }
        seq
    }

    #[test]
    fn unchanged_canary_rarely_crosses_over_many_looks() {
        // 1000 rollouts of 100 looks each at the boundary itself (the hardest null).
        let crossed = (0..1000)
            .filter(|s| run(*s, 1.0, 1.0, 100, 0.01).crossed_above().is_some())
            .count();
        assert!(
            crossed <= 10,
            "{crossed} of 1000 unchanged canaries crossed at alpha 0.01"
        );
    }

    #[test]
    fn regression_is_found_quickly() {
        let seq = run(1, 5.0, 1.2, 30, 0.01);
        let look = seq.crossed_above().expect("x5 found");
        assert!(look <= 5, "x5 found only at look {look}");
        assert!(seq.crossed_below().is_none());
    }

    #[test]
    fn within_tolerance_is_shown_safe_with_enough_data() {
        let seq = run(2, 1.0, 1.5, 60, 0.02);
        assert!(
            seq.crossed_below().is_some(),
            "e below {}",
            seq.max_e_below()
        );
        assert!(seq.crossed_above().is_none());
        let (lo, hi) = seq.confidence_sequence(0.01).unwrap();
        assert!(lo < 1.0 && 1.0 < hi && hi < 1.5, "[{lo}, {hi}]");
        let estimate = seq.estimate().unwrap();
        assert!((0.85..1.15).contains(&estimate), "{estimate}");
    }

    #[test]
    fn zero_events_are_sound() {
        let mut seq = RateSequence::new(0.01);
        seq.observe(0.0, 1000.0, 0.0, 9000.0, 1.2);
        assert_eq!(seq.e_above(), 1.0);
        assert!(seq.confidence_sequence(0.01).is_none());
        // Errors only on stable: no evidence of a canary regression, some that it is better.
        for _ in 0..20 {
            seq.observe(0.0, 1000.0, 40.0, 9000.0, 1.2);
        }
        assert!(seq.e_above() < 1.0);
        assert!(seq.crossed_below().is_some());
        let (lo, hi) = seq.confidence_sequence(0.01).unwrap();
        assert!(lo < 0.1 && hi < 1.0, "[{lo}, {hi}]");
    }

    #[test]
    fn bad_input_is_ignored() {
        let mut seq = RateSequence::new(0.01);
        seq.observe(f64::NAN, 10.0, 1.0, 10.0, 1.0);
        seq.observe(1.0, -10.0, 1.0, 10.0, 1.0);
        seq.observe(1.0, 10.0, 1.0, 10.0, f64::INFINITY);
        assert_eq!(seq.e_above(), 1.0);
        assert_eq!(seq.looks(), 3);
    }

    #[test]
    fn swapping_versions_mirrors_the_evidence() {
        let mut a = RateSequence::new(0.01);
        let mut b = RateSequence::new(0.01);
        a.observe(30.0, 500.0, 10.0, 500.0, 1.0);
        b.observe(10.0, 500.0, 30.0, 500.0, 1.0);
        assert!((a.e_above() - b.e_below()).abs() < 1e-9 * a.e_above());
        let (lo, hi) = a.confidence_sequence(0.05).unwrap();
        let (lo2, hi2) = b.confidence_sequence(0.05).unwrap();
        assert!((lo * hi2 - 1.0).abs() < 1e-6 && (hi * lo2 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn planning_helpers() {
        let n = events_needed(0.01, 0.1, 1.5).unwrap();
        assert!((300.0..1500.0).contains(&n), "{n}");
        assert!(events_needed(0.01, 0.1, 1.0).is_none());
        let total: f64 = (1..10_000).map(|t| alpha_for_look(0.01, t)).sum();
        assert!(total <= 0.01 && total > 0.0099);
    }
}
