//! Sequential decisions for "events per request" metrics (errors, slow requests): regression
//! beyond tolerance, within tolerance, or not enough evidence yet.

use crate::stats::histogram::{self, Bucket};
use crate::stats::sequential::{RateSequence, events_needed, interval_log_lr};
use crate::template::Direction;

/// What the evidence says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    /// A regression beyond tolerance: the canary's rate is higher (`true`) or lower (`false`),
    /// first shown at this look.
    Regression { higher: bool, look: usize },
    /// Any change is within tolerance.
    Safe,
    /// Neither yet.
    Undecided,
}

/// How much evidence advancing a rollout needs: the promotion rule.
///
/// A rollout that gives the canary a weight `w` (0..1] lets it do harm in proportion to `w`
/// times its excess rate `rho - 1`. To advance to `w`, the canary's rate ratio must be shown,
/// at confidence `1 - beta` and by an anytime-valid e-process, to be below
/// `1 + guard / w`: the excess of a canary at that bound, at weight `w`, is the excess a
/// canary `1 + guard` times worse would do with all the traffic. A step to 50% thus needs
/// half the evidence-strength of full promotion, and 100% asks for the most: the chance of
/// promoting a canary at or beyond `1 + guard` is at most `beta`, and the chance of giving a
/// weight `w` to one beyond `1 + guard / w` is at most `beta` too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promotion {
    /// The chance of advancing a canary at or beyond the bound.
    pub beta: f64,
    /// The excess (relative to stable, e.g. 0.8 = x1.8) ruled out before full promotion.
    pub guard: f64,
}

impl Promotion {
    /// The rate ratio that must be ruled out before the canary gets weight `next` (0..1].
    pub fn bound(&self, next: f64) -> f64 {
        1.0 + self.guard.max(0.0) / next.clamp(0.01, 1.0)
    }

    /// The lower-side bound for a metric whose decrease is harmful.
    pub fn lower_bound(&self, next: f64) -> f64 {
        (1.0 - self.guard.max(0.0) / next.clamp(0.01, 1.0)).max(1e-6)
    }

    /// The bound on the harmful side: [`Promotion::bound`] when an increase harms,
    /// [`Promotion::lower_bound`] when a decrease does.
    pub fn harmful_bound(&self, next: f64, upward: bool) -> f64 {
        if upward {
            self.bound(next)
        } else {
            self.lower_bound(next)
        }
    }
}

/// One interval's counts with the scale (elasticity) of its boundaries.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Observed {
    counts: [f64; 4],
    elasticity: f64,
}

/// The weight of the "no change" likelihood ratio in the promotion e-process: most canaries
/// are healthy, so most of the prior goes to "no change".
pub const ANCHOR_WEIGHT: f64 = 0.9;

/// The promotion evidence for one exposure bound, fed the whole rollout's history: an
/// e-process for "the ratio is on the good side of the bound", a weighted average of two
/// ([`ANCHOR_WEIGHT`] on the first):
/// - the likelihood ratio of "no change" (ratio 1) against the bound, Wald's SPRT statistic
///   for the hypothesis a healthy canary makes, which gains evidence about as fast as any
///   test can when the canary is unchanged; by the binomial family's monotone likelihood
///   ratio it is a supermartingale for every ratio beyond the bound;
/// - the mixture-and-plug-in e-process of [`RateSequence`] against the bound, which also
///   gains evidence when the canary is better or somewhat worse than stable.
///
/// A weighted average of e-processes is an e-process, so the average crosses `1 / beta` with
/// probability at most `beta` under the null (Ville's inequality).
#[derive(Debug, Clone)]
struct Exposure {
    next: f64,
    sequence: RateSequence,
    anchor: f64,
    crossed: bool,
    upward: bool,
    beta: f64,
}

impl Exposure {
    fn new(next: f64, beta: f64, upward: bool) -> Self {
        Self {
            next,
            sequence: RateSequence::new(beta),
            anchor: 0.0,
            crossed: false,
            upward,
            beta,
        }
    }

    /// Adds one interval against the bound `bound` (already scaled).
    fn observe(&mut self, [ce, cn, se, sn]: [f64; 4], bound: f64) {
        self.sequence.observe(ce, cn, se, sn, bound);
        if let Some(l) = interval_log_lr(ce, cn, se, sn, 1.0, bound) {
            self.anchor += l;
        }
        let mixture = if self.upward {
            self.sequence.e_below()
        } else {
            self.sequence.e_above()
        };
        let e = ANCHOR_WEIGHT * self.anchor.min(690.0).exp() + (1.0 - ANCHOR_WEIGHT) * mixture;
        if e >= 1.0 / self.beta {
            self.crossed = true;
        }
    }
}

/// The evidence for one harmful direction.
#[derive(Debug, Clone)]
struct Side {
    /// Against "no change" (ratio 1) over the whole rollout: is there a harmful change?
    change: RateSequence,
    /// Against "no change" over the current step alone, restarted at each step, so a change
    /// that starts late is not diluted by the healthy steps before it; `None` in the first
    /// step (the whole rollout's process is its process) and while the data belong to
    /// earlier steps that are not judged on their own here.
    step_change: Option<RateSequence>,
    /// Against the tolerance's boundary: is any change within tolerance?
    tolerance: RateSequence,
    /// Against each exposure bound asked for so far.
    exposures: Vec<Exposure>,
    /// The latest tolerance boundary ratio.
    boundary: f64,
    /// Whether a larger ratio is the harmful one.
    upward: bool,
    /// The look at which a regression beyond tolerance was first shown.
    regression: Option<usize>,
    /// The level of the change process over the whole rollout.
    alpha: f64,
}

/// The level of the `k`-th of a series of restarted processes (1-based): `alpha * 6 /
/// (pi^2 k^2)`, so the levels of all of them add up to at most `alpha`.
pub fn step_alpha(alpha: f64, k: usize) -> f64 {
    crate::stats::sequential::alpha_for_look(alpha, u32::try_from(k.max(1)).unwrap_or(u32::MAX))
}

/// The step-restarted change process of the rollout's `k`-th step (1-based), at its share of
/// `alpha`: none for the first step, which the whole rollout's process watches from its
/// start on the same data (a second process there would only spend level), and
/// [`step_alpha`]`(alpha, k - 1)` for each later one.
fn step_process(alpha: f64, k: usize) -> Option<RateSequence> {
    (k > 1).then(|| RateSequence::new(step_alpha(alpha, k - 1)))
}

impl Side {
    fn new(alpha: f64, upward: bool) -> Self {
        // Half the level watches the whole rollout, half is spent over the steps' restarts.
        Self {
            change: RateSequence::new(alpha / 2.0),
            step_change: step_process(alpha / 2.0, 1),
            tolerance: RateSequence::new(alpha),
            exposures: Vec::new(),
            boundary: 1.0,
            upward,
            regression: None,
            alpha,
        }
    }

    fn restart_step(&mut self, k: usize) {
        self.step_change = step_process(self.alpha / 2.0, k);
    }

    fn observe(&mut self, [ce, cn, se, sn]: [f64; 4], boundary: f64) {
        self.boundary = boundary;
        self.change.observe(ce, cn, se, sn, 1.0);
        if let Some(s) = &mut self.step_change {
            s.observe(ce, cn, se, sn, 1.0);
        }
        self.tolerance.observe(ce, cn, se, sn, boundary);
        let beyond = |estimate: Option<f64>| {
            estimate.is_some_and(|e| {
                if self.upward {
                    e > boundary
                } else {
                    e < boundary
                }
            })
        };
        let crossed = |s: &RateSequence| {
            if self.upward {
                s.crossed_above()
            } else {
                s.crossed_below()
            }
            .is_some()
        };
        let whole = crossed(&self.change) && beyond(self.change.estimate());
        let step = self
            .step_change
            .as_ref()
            .is_some_and(|s| crossed(s) && beyond(s.estimate()));
        if self.regression.is_none() && (whole || step) {
            self.regression = Some(self.change.looks());
        }
    }

    fn safe(&self) -> bool {
        if self.upward {
            self.tolerance.crossed_below().is_some()
        } else {
            self.tolerance.crossed_above().is_some()
        }
    }

    /// Whether the rollout may give the canary weight `next`: safety within tolerance, or the
    /// exposure bound's e-process past `1/beta`.
    fn promotable(&self, next: f64) -> bool {
        self.safe()
            || self
                .exposures
                .iter()
                .any(|x| (x.next - next).abs() < 1e-9 && x.crossed)
    }

    fn harm_e(&self) -> f64 {
        let e = |s: &RateSequence| {
            if self.upward {
                s.max_e_above()
            } else {
                s.max_e_below()
            }
        };
        // Each process runs at its own level (e-values are compared with 1 / level): express
        // the step's on the whole rollout's scale.
        let whole = self.alpha / 2.0;
        let step = self
            .step_change
            .as_ref()
            .map_or(0.0, |s| e(s) * s.level() / whole);
        e(&self.change).max(step)
    }

    fn safe_e(&self) -> f64 {
        if self.upward {
            self.tolerance.max_e_below()
        } else {
            self.tolerance.max_e_above()
        }
    }
}

/// The evidence for one comparison, over a whole rollout.
///
/// - **Regression**: a harmful change shown against "no change" by an anytime-valid
///   e-process, whose estimate is beyond the tolerance; so an unchanged canary is failed
///   with probability at most `alpha` however often one looks, and a significant change
///   within tolerance is not failed. Half of `alpha` watches the whole rollout; the other
///   half is spent over e-processes restarted at each later step (step `k` >= 2 gets
///   `alpha / 2 * 6 / (pi^2 (k-1)^2)`; the first step is the whole rollout's process's
///   start), which react to a change that starts late.
/// - **Safety**: evidence that any change is within the tolerance, against its boundary.
/// - **Promotion** ([`Promotion`]): evidence at level `beta` that the ratio is below the
///   exposure bound of the next weight.
///
/// For `either`, each direction runs at half the level.
#[derive(Debug, Clone)]
pub struct Sides {
    upper: Option<Side>,
    lower: Option<Side>,
    history: Vec<Observed>,
    step: usize,
    promotion: Promotion,
    /// The level of each one-sided process.
    pub alpha: f64,
}

impl Sides {
    /// Fresh evidence for `direction` at overall level `alpha`, with the default promotion
    /// rule.
    pub fn new(direction: Direction, alpha: f64) -> Self {
        Self::with_promotion(
            direction,
            alpha,
            Promotion {
                beta: alpha,
                guard: 0.0,
            },
        )
    }

    /// Fresh evidence for `direction` at overall level `alpha` and promotion rule `promotion`.
    pub fn with_promotion(direction: Direction, alpha: f64, promotion: Promotion) -> Self {
        let side_alpha = if direction == Direction::Either {
            alpha / 2.0
        } else {
            alpha
        };
        Self {
            upper: (direction != Direction::Decrease).then(|| Side::new(side_alpha, true)),
            lower: (direction != Direction::Increase).then(|| Side::new(side_alpha, false)),
            history: Vec::new(),
            step: 1,
            promotion,
            alpha: side_alpha,
        }
    }

    /// The rollout moved to another step: restart the step's change processes.
    pub fn new_step(&mut self) {
        self.start_step(self.step + 1);
    }

    /// The data that follow belong to the rollout's `k`-th step (1-based): start its change
    /// processes, at the step's share of the level.
    pub fn start_step(&mut self, k: usize) {
        self.step = k.max(1);
        let k = self.step;
        for s in self.sides_mut() {
            s.restart_step(k);
        }
    }

    /// The data that follow belong to earlier steps, which this judgement does not watch on
    /// their own (their own analyses did): no step process until [`Sides::start_step`].
    pub fn suspend_step(&mut self) {
        for s in self.sides_mut() {
            s.step_change = None;
        }
    }

    fn sides_mut(&mut self) -> impl Iterator<Item = &mut Side> {
        self.upper.iter_mut().chain(self.lower.iter_mut())
    }

    /// Adds one interval, (canary events, canary requests, stable events, stable requests),
    /// with the boundary ratios that tolerance allows above and below, for boundaries whose
    /// scale is the plain ratio (elasticity 1).
    pub fn observe(&mut self, counts: [f64; 4], upper: f64, lower: f64) {
        self.observe_scaled(counts, upper, lower, 1.0);
    }

    /// Like [`Sides::observe`], for events whose rate moves as the metric to the power
    /// `elasticity` (latency exceedances): exposure bounds are raised to that power.
    pub fn observe_scaled(&mut self, counts: [f64; 4], upper: f64, lower: f64, elasticity: f64) {
        let observed = Observed { counts, elasticity };
        self.history.push(observed);
        let promotion = self.promotion;
        for (side, upward, boundary) in [
            (&mut self.upper, true, upper),
            (&mut self.lower, false, lower),
        ] {
            let Some(s) = side else { continue };
            s.observe(counts, boundary);
            for x in &mut s.exposures {
                feed(x, &observed, promotion.harmful_bound(x.next, upward));
            }
        }
    }

    /// Whether the evidence lets the rollout give the canary weight `next` (0..1]: every side
    /// is within tolerance or below the exposure bound at level `beta`, and no regression.
    pub fn promotable(&mut self, next: f64) -> bool {
        if matches!(self.call(), Call::Regression { .. }) {
            return false;
        }
        self.ensure_exposure(next);
        self.sides().all(|s| s.promotable(next))
    }

    /// The ratio the promotion rule must rule out before the canary gets weight `next`, on
    /// the harmful side (the lower one for a metric whose only harm is a decrease), for
    /// reports and the words.
    pub fn exposure_bound(&self, next: f64) -> f64 {
        self.promotion.harmful_bound(next, self.upper.is_some())
    }

    /// The promotion rule in force.
    pub fn promotion(&self) -> Promotion {
        self.promotion
    }

    fn ensure_exposure(&mut self, next: f64) {
        let promotion = self.promotion;
        let history = &self.history;
        for (side, upward) in [(&mut self.upper, true), (&mut self.lower, false)] {
            let Some(side) = side else { continue };
            if side.exposures.iter().any(|x| (x.next - next).abs() < 1e-9) {
                continue;
            }
            let mut exposure = Exposure::new(next, promotion.beta, upward);
            let bound = promotion.harmful_bound(next, upward);
            for o in history {
                feed(&mut exposure, o, bound);
            }
            side.exposures.push(exposure);
        }
    }

    /// The call so far: a regression at any look wins; safe needs every side safe.
    pub fn call(&self) -> Call {
        let up = self.upper.as_ref().and_then(|s| s.regression);
        let down = self.lower.as_ref().and_then(|s| s.regression);
        match (up, down) {
            (Some(a), Some(b)) => Call::Regression {
                higher: a <= b,
                look: a.min(b),
            },
            (Some(look), None) => Call::Regression { higher: true, look },
            (None, Some(look)) => Call::Regression {
                higher: false,
                look,
            },
            (None, None) => {
                if self.sides().all(Side::safe) {
                    Call::Safe
                } else {
                    Call::Undecided
                }
            }
        }
    }

    fn sides(&self) -> impl Iterator<Item = &Side> {
        self.upper.iter().chain(self.lower.iter())
    }

    /// The largest e-value for a harmful change (against no change) seen at any look, on the
    /// scale of the whole rollout's process (`1 / (alpha / 2)` decides).
    pub fn harm_e(&self) -> f64 {
        self.sides().map(Side::harm_e).fold(0.0, f64::max)
    }

    /// The smallest e-value among the sides that must show safety.
    pub fn safe_e(&self) -> f64 {
        self.sides().map(Side::safe_e).fold(f64::INFINITY, f64::min)
    }

    /// The anytime-valid p-value for a harmful change: `min(1, 1/e)` at the whole rollout's
    /// process's level, doubled because that process has half of `alpha`, and doubled again
    /// for either direction.
    pub fn p_value(&self) -> f64 {
        let sides = self.sides().count() as f64;
        (2.0 * sides / self.harm_e()).min(1.0)
    }

    fn any(&self) -> Option<&RateSequence> {
        self.sides().next().map(|s| &s.change)
    }

    /// The pooled rate ratio canary / stable.
    pub fn estimate(&self) -> Option<f64> {
        self.any().and_then(RateSequence::estimate)
    }

    /// A confidence sequence for the rate ratio at level `alpha`.
    pub fn confidence_sequence(&self, alpha: f64) -> Option<(f64, f64)> {
        self.any().and_then(|s| s.confidence_sequence(alpha))
    }

    /// Totals: (canary events, canary requests, stable events, stable requests).
    pub fn totals(&self) -> (f64, f64, f64, f64) {
        self.any()
            .map_or((0.0, 0.0, 0.0, 0.0), RateSequence::totals)
    }

    /// Roughly how many more requests (all versions) an unchanged canary needs before the
    /// promotion rule can advance it to weight `next`, or before safety can be shown against
    /// the tolerance when `next` is `None`, at the current traffic share and event rate.
    pub fn more_requests(&self, next: Option<f64>) -> Option<f64> {
        let side = self.sides().next()?;
        let (boundary, level) = match next {
            Some(w) => (self.exposure_bound(w), self.promotion.beta),
            None => (side.boundary, self.alpha),
        };
        let (ce, cn, se, sn) = self.totals();
        let requests = cn + sn;
        let rate = (ce + se) / requests;
        if !(requests > 0.0 && rate > 0.0) {
            return None;
        }
        let needed = events_needed(level, cn / requests, boundary)? / rate;
        Some((needed - requests).max(0.0))
    }
}

/// Feeds one remembered interval to a promotion e-process against `bound`, raised to the
/// interval's elasticity.
fn feed(exposure: &mut Exposure, o: &Observed, bound: f64) {
    exposure.observe(o.counts, bound.powf(o.elasticity));
}

/// Sequential evidence about latency from histogram buckets: for each quantile, the rate of
/// requests slower than the stable version's bucket bound nearest that quantile, canary vs
/// stable. The bound, and the exceedance ratio a latency `1 + tolerance` times longer would
/// cause, come from earlier steps of the stable version only, so they are fixed before each
/// step's data are seen.
///
/// Beside the quantiles, the **tail** is watched: the rate of requests above the next bucket
/// bound beyond the highest quantile's. Buckets are coarse where the slowest requests are, so
/// a tail that grows (the slowest 2% twice as slow) moves the highest quantile's exceedance
/// rate only a little, but puts many times the stable's share of requests above the next
/// bound. The tail can only fail a canary: it is too sparse to have to vouch for one, and
/// promotion rests on the quantiles. Each quantile's e-processes and the tail's run at
/// `alpha` divided by the number of quantiles plus one.
#[derive(Debug, Clone)]
pub struct LatencyEvidence {
    quantiles: Vec<f64>,
    tolerance: f64,
    sides: Vec<Sides>,
    tail: Sides,
    tail_bound: Option<f64>,
    past: Vec<Bucket>,
}

/// The tolerance of a latency change, as exceedance-rate ratios (above, below) at a bound
/// where the tail's elasticity is `elasticity`.
fn exceedance_bounds(tolerance: f64, elasticity: f64) -> (f64, f64) {
    let up = (1.0 + tolerance).powf(elasticity);
    let down = if tolerance < 1.0 {
        (1.0 - tolerance).powf(elasticity)
    } else {
        0.0
    };
    (up, down.max(1e-6))
}

impl LatencyEvidence {
    /// Fresh evidence for `quantiles` at overall level `alpha`.
    pub fn new(quantiles: &[f64], direction: Direction, tolerance: f64, alpha: f64) -> Self {
        Self::with_promotion(
            quantiles,
            direction,
            tolerance,
            alpha,
            Promotion {
                beta: alpha,
                guard: 0.0,
            },
        )
    }

    /// Fresh evidence for `quantiles` at overall level `alpha`, with a promotion rule whose
    /// guard is a relative change of latency (converted to exceedance rates like the
    /// tolerance). `beta` is not divided among the quantiles: promotion needs every one.
    pub fn with_promotion(
        quantiles: &[f64],
        direction: Direction,
        tolerance: f64,
        alpha: f64,
        promotion: Promotion,
    ) -> Self {
        let level = alpha / (quantiles.len() + 1) as f64;
        Self {
            quantiles: quantiles.to_vec(),
            tolerance,
            sides: quantiles
                .iter()
                .map(|_| Sides::with_promotion(direction, level, promotion))
                .collect(),
            tail: Sides::with_promotion(direction, level, promotion),
            tail_bound: None,
            past: Vec::new(),
        }
    }

    fn all_sides(&mut self) -> impl Iterator<Item = &mut Sides> {
        self.sides.iter_mut().chain(std::iter::once(&mut self.tail))
    }

    /// The rollout moved to another step.
    pub fn new_step(&mut self) {
        self.all_sides().for_each(Sides::new_step);
    }

    /// The data that follow belong to the `k`-th step (see [`Sides::start_step`]).
    pub fn start_step(&mut self, k: usize) {
        self.all_sides().for_each(|s| s.start_step(k));
    }

    /// The data that follow belong to earlier steps (see [`Sides::suspend_step`]).
    pub fn suspend_step(&mut self) {
        self.all_sides().for_each(Sides::suspend_step);
    }

    /// Whether every quantile lets the rollout give the canary weight `next`.
    pub fn promotable(&mut self, next: f64) -> bool {
        // Quantiles never judged (no stable history yet) cannot vouch for the canary.
        !self.sides.is_empty()
            && !self.regressed()
            && self
                .sides
                .iter_mut()
                .all(|s| s.totals().1 > 0.0 && s.promotable(next))
    }

    /// Adds one step: each version's cumulative buckets over the step.
    pub fn observe(&mut self, stable: &[Bucket], canary: &[Bucket]) {
        let now_stable = histogram::normalize(stable);
        let now_canary = histogram::normalize(canary);
        let above =
            |b: &[Bucket], x: f64| histogram::count_at(x, b).map(|c| histogram::total(b) - c);
        let counts_above = |bound: f64| {
            Some([
                above(&now_canary, bound)?,
                histogram::total(&now_canary),
                above(&now_stable, bound)?,
                histogram::total(&now_stable),
            ])
        };
        let mut highest: Option<(f64, f64, f64)> = None; // quantile, bound, elasticity
        if histogram::total(&self.past) > 0.0 {
            for (q, sides) in self.quantiles.iter().zip(self.sides.iter_mut()) {
                let Some(bound) = histogram::bound_near_quantile(*q, &self.past) else {
                    continue;
                };
                // A latency `1 + tolerance` times longer puts about `(1 + tolerance)^e` times
                // as many requests above the bound, `e` the tail's elasticity there.
                let Some(elasticity) = histogram::tail_elasticity(bound, &self.past) else {
                    continue;
                };
                if highest.is_none_or(|(h, ..)| *q > h) {
                    highest = Some((*q, bound, elasticity));
                }
                let (up, down) = exceedance_bounds(self.tolerance, elasticity);
                if let Some(counts) = counts_above(bound) {
                    sides.observe_scaled(counts, up, down, elasticity);
                }
            }
        }
        // The tail: the next bound beyond the highest quantile's. The stable has few or no
        // requests there, so its elasticity is taken as at least the one below it (a tail
        // falls off at least as fast further out, unless it is a power law, where they are
        // equal).
        let tail = highest.and_then(|(_, bound, below)| {
            let next = self
                .past
                .iter()
                .map(|b| b.le)
                .find(|le| le.is_finite() && *le > bound)?;
            let elasticity =
                histogram::tail_elasticity(next, &self.past).map_or(below, |e| e.max(below));
            Some((next, elasticity))
        });
        if let Some((bound, elasticity)) = tail {
            let (up, down) = exceedance_bounds(self.tolerance, elasticity);
            if let Some(counts) = counts_above(bound) {
                self.tail.observe_scaled(counts, up, down, elasticity);
                self.tail_bound = Some(bound);
            }
        }
        // Adding cumulative lists with the same bounds: `normalize` sums equal bounds.
        let mut merged = std::mem::take(&mut self.past);
        merged.extend(now_stable);
        self.past = histogram::normalize(&merged);
    }

    /// The tail's evidence and the latest bound it was judged at, once it has been judged.
    pub fn tail(&self) -> Option<(&Sides, f64)> {
        self.tail_bound.map(|bound| (&self.tail, bound))
    }

    /// Whether any quantile or the tail shows a regression.
    pub fn regressed(&self) -> bool {
        self.sides
            .iter()
            .chain(std::iter::once(&self.tail))
            .any(|s| matches!(s.call(), Call::Regression { .. }))
    }

    /// The evidence per quantile, in the order given, to ask whether it is promotable.
    pub fn sides_mut(&mut self) -> &mut [Sides] {
        &mut self.sides
    }

    /// The evidence per quantile, in the order given.
    pub fn sides(&self) -> &[Sides] {
        &self.sides
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::random::Rng;

    const PROMOTION: Promotion = Promotion {
        beta: 0.05,
        guard: 0.8,
    };

    /// `intervals` intervals of an error comparison at canary share `share`, with the canary
    /// `ratio` times stable's rate (0.5% errors, `rps` requests a second in all).
    fn feed(sides: &mut Sides, rng: &mut Rng, ratio: f64, share: f64, rps: f64, intervals: usize) {
        for _ in 0..intervals {
            let (cn, sn) = (
                rng.poisson(rps * 60.0 * share),
                rng.poisson(rps * 60.0 * (1.0 - share)),
            );
            let ce = rng.poisson(cn * 0.005 * ratio);
            let se = rng.poisson(sn * 0.005);
            sides.observe([ce, cn, se, sn], 1.2, 1e-6);
        }
    }

    #[test]
    fn the_first_step_spends_no_level_of_its_own_and_the_later_ones_share_half() {
        let alpha = 0.01;
        // The whole rollout's process watches the first step from its start.
        assert!(step_process(alpha / 2.0, 1).is_none());
        let level = |k: usize| step_process(alpha / 2.0, k).map_or(0.0, |s| s.level());
        let pi2 = std::f64::consts::PI.powi(2);
        assert!((level(2) - alpha / 2.0 * 6.0 / pi2).abs() < 1e-15);
        assert!((level(3) - alpha / 2.0 * 6.0 / (4.0 * pi2)).abs() < 1e-15);
        let spent: f64 = (2..100_000).map(level).sum();
        assert!(spent <= alpha / 2.0 && spent > 0.49 * alpha, "{spent}");
        // A Sides in its first step has no step process; the second step starts one.
        let mut sides = Sides::new(Direction::Increase, alpha);
        assert!(
            sides
                .upper
                .as_ref()
                .is_some_and(|s| s.step_change.is_none())
        );
        sides.start_step(2);
        let step = sides.upper.as_ref().and_then(|s| s.step_change.as_ref());
        assert!(step.is_some_and(|s| (s.level() - level(2)).abs() < 1e-15));
    }

    #[test]
    fn the_exposure_bound_grows_as_the_next_weight_shrinks() {
        assert!((PROMOTION.bound(1.0) - 1.8).abs() < 1e-12);
        assert!((PROMOTION.bound(0.5) - 2.6).abs() < 1e-12);
        assert!((PROMOTION.bound(0.1) - 9.0).abs() < 1e-12);
        // A weight of 0 is treated as 1%, not a division by zero.
        assert!(PROMOTION.bound(0.0).is_finite());
        assert!((PROMOTION.lower_bound(1.0) - 0.2).abs() < 1e-12);
        assert!(PROMOTION.lower_bound(0.1) > 0.0);
    }

    #[test]
    fn a_healthy_canary_may_go_to_half_the_traffic_before_all_of_it() {
        let mut rng = Rng::new(3);
        let mut sides = Sides::with_promotion(Direction::Increase, 0.005, PROMOTION);
        let mut half = None;
        let mut full = None;
        for minute in 1..=120 {
            feed(&mut sides, &mut rng, 1.0, 0.1, 200.0, 1);
            if half.is_none() && sides.promotable(0.5) {
                half = Some(minute);
            }
            if full.is_none() && sides.promotable(1.0) {
                full = Some(minute);
            }
        }
        let (half, full) = (half.unwrap(), full.unwrap());
        assert!(half < full, "50% at minute {half}, 100% at {full}");
        assert!(matches!(sides.call(), Call::Undecided | Call::Safe));
    }

    #[test]
    fn a_canary_beyond_its_guard_is_rarely_promoted_and_a_large_one_fails() {
        // Exactly at the full-traffic bound: promoted in at most beta of the runs, however
        // long one looks (here 60 looks of 2000 req/s at 50%).
        let promoted = (0..200)
            .filter(|&seed| {
                let mut rng = Rng::new(seed);
                let mut sides = Sides::with_promotion(Direction::Increase, 0.005, PROMOTION);
                (0..60).any(|_| {
                    feed(&mut sides, &mut rng, 1.8, 0.5, 2000.0, 1);
                    sides.promotable(1.0)
                })
            })
            .count();
        assert!(promoted <= 10 + 9, "{promoted} of 200");
        let mut rng = Rng::new(9);
        let mut sides = Sides::with_promotion(Direction::Increase, 0.005, PROMOTION);
        feed(&mut sides, &mut rng, 5.0, 0.5, 200.0, 10);
        assert!(matches!(
            sides.call(),
            Call::Regression { higher: true, .. }
        ));
        assert!(!sides.promotable(0.5));
    }

    #[test]
    fn a_regression_that_starts_at_a_new_step_is_seen_by_the_restarted_process() {
        // 30 healthy minutes at 10%, then x3 errors at 50%: the whole rollout's process is
        // diluted by the healthy step; the step's own process is not.
        let run = |restart: bool| {
            let mut rng = Rng::new(11);
            let mut sides = Sides::with_promotion(Direction::Increase, 0.005, PROMOTION);
            feed(&mut sides, &mut rng, 1.0, 0.1, 20.0, 30);
            if restart {
                sides.new_step();
            }
            (1..=60).find(|_| {
                feed(&mut sides, &mut rng, 3.0, 0.5, 20.0, 1);
                matches!(sides.call(), Call::Regression { .. })
            })
        };
        let (with, without) = (run(true), run(false));
        let with = with.expect("found with the step process");
        assert!(without.is_none_or(|w| with <= w), "{with} vs {without:?}");
    }
}
