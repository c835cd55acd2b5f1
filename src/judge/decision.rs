//! Sequential decisions for "events per request" metrics (errors, slow requests): regression
//! beyond tolerance, within tolerance, or not enough evidence yet.

use crate::stats::histogram::{self, Bucket};
use crate::stats::sequential::{RateSequence, events_needed};
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

/// The evidence for one harmful direction.
#[derive(Debug, Clone)]
struct Side {
    /// Against "no change" (ratio 1): is there a harmful change at all?
    change: RateSequence,
    /// Against the tolerance's boundary: is any change within tolerance?
    tolerance: RateSequence,
    /// The latest boundary ratio.
    boundary: f64,
    /// Whether a larger ratio is the harmful one.
    upward: bool,
    /// The look at which a regression beyond tolerance was first shown.
    regression: Option<usize>,
}

impl Side {
    fn new(alpha: f64, upward: bool) -> Self {
        Self {
            change: RateSequence::new(alpha),
            tolerance: RateSequence::new(alpha),
            boundary: 1.0,
            upward,
            regression: None,
        }
    }

    fn observe(&mut self, [ce, cn, se, sn]: [f64; 4], boundary: f64) {
        self.boundary = boundary;
        self.change.observe(ce, cn, se, sn, 1.0);
        self.tolerance.observe(ce, cn, se, sn, boundary);
        let harmful = if self.upward {
            self.change.crossed_above()
        } else {
            self.change.crossed_below()
        };
        let beyond = self.change.estimate().is_some_and(|e| {
            if self.upward {
                e > boundary
            } else {
                e < boundary
            }
        });
        if self.regression.is_none() && harmful.is_some() && beyond {
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

    fn harm_e(&self) -> f64 {
        if self.upward {
            self.change.max_e_above()
        } else {
            self.change.max_e_below()
        }
    }

    fn safe_e(&self) -> f64 {
        if self.upward {
            self.tolerance.max_e_below()
        } else {
            self.tolerance.max_e_above()
        }
    }
}

/// The evidence for one comparison. A regression is a harmful change shown against "no
/// change" by an anytime-valid e-process, whose estimate is beyond the tolerance: so an
/// unchanged canary is failed with probability at most `alpha` however often one looks, and
/// a significant change within tolerance is not failed. Safety is shown against the
/// tolerance's boundary: evidence that any change is within it. For `either`, each direction
/// runs at half the level.
#[derive(Debug, Clone)]
pub struct Sides {
    upper: Option<Side>,
    lower: Option<Side>,
    /// The level of each one-sided process.
    pub alpha: f64,
}

impl Sides {
    /// Fresh evidence for `direction` at overall level `alpha`.
    pub fn new(direction: Direction, alpha: f64) -> Self {
        let side_alpha = if direction == Direction::Either {
            alpha / 2.0
        } else {
            alpha
        };
        Self {
            upper: (direction != Direction::Decrease).then(|| Side::new(side_alpha, true)),
            lower: (direction != Direction::Increase).then(|| Side::new(side_alpha, false)),
            alpha: side_alpha,
        }
    }

    /// Adds one interval, (canary events, canary requests, stable events, stable requests),
    /// with the boundary ratios that tolerance allows above and below.
    pub fn observe(&mut self, counts: [f64; 4], upper: f64, lower: f64) {
        if let Some(s) = &mut self.upper {
            s.observe(counts, upper);
        }
        if let Some(s) = &mut self.lower {
            s.observe(counts, lower);
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

    /// The largest e-value for a harmful change (against no change) seen at any look.
    pub fn harm_e(&self) -> f64 {
        self.sides().map(Side::harm_e).fold(0.0, f64::max)
    }

    /// The smallest e-value among the sides that must show safety.
    pub fn safe_e(&self) -> f64 {
        self.sides().map(Side::safe_e).fold(f64::INFINITY, f64::min)
    }

    /// The anytime-valid p-value for a harmful change: `min(1, 1/e)`, doubled for either
    /// direction (each side runs at half the level).
    pub fn p_value(&self) -> f64 {
        let sides = self.sides().count() as f64;
        (sides / self.harm_e()).min(1.0)
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

    /// Roughly how many more requests (all versions) an unchanged canary needs before safety
    /// can be shown against the latest boundary, at the current traffic share and event rate.
    pub fn more_requests(&self) -> Option<f64> {
        let boundary = self.sides().next()?.boundary;
        let (ce, cn, se, sn) = self.totals();
        let requests = cn + sn;
        let rate = (ce + se) / requests;
        if !(requests > 0.0 && rate > 0.0) {
            return None;
        }
        let needed = events_needed(self.alpha, cn / requests, boundary)? / rate;
        Some((needed - requests).max(0.0))
    }
}

/// Sequential evidence about latency from histogram buckets: for each quantile, the rate of
/// requests slower than the stable version's bucket bound nearest that quantile, canary vs
/// stable. The bound, and the exceedance ratio a latency `1 + tolerance` times longer would
/// cause, come from earlier steps of the stable version only, so they are fixed before each
/// step's data are seen. Each quantile's e-processes run at `alpha` divided by the number of
/// quantiles.
#[derive(Debug, Clone)]
pub struct LatencyEvidence {
    quantiles: Vec<f64>,
    tolerance: f64,
    sides: Vec<Sides>,
    past: Vec<Bucket>,
}

impl LatencyEvidence {
    /// Fresh evidence for `quantiles` at overall level `alpha`.
    pub fn new(quantiles: &[f64], direction: Direction, tolerance: f64, alpha: f64) -> Self {
        let level = alpha / quantiles.len().max(1) as f64;
        Self {
            quantiles: quantiles.to_vec(),
            tolerance,
            sides: quantiles
                .iter()
                .map(|_| Sides::new(direction, level))
                .collect(),
            past: Vec::new(),
        }
    }

    /// Adds one step: each version's cumulative buckets over the step.
    pub fn observe(&mut self, stable: &[Bucket], canary: &[Bucket]) {
        let now_stable = histogram::normalize(stable);
        let now_canary = histogram::normalize(canary);
        let past_total = histogram::total(&self.past);
        let above =
            |b: &[Bucket], x: f64| histogram::count_at(x, b).map(|c| histogram::total(b) - c);
        if past_total > 0.0 {
            for (q, sides) in self.quantiles.iter().zip(self.sides.iter_mut()) {
                let Some(bound) = histogram::bound_near_quantile(*q, &self.past) else {
                    continue;
                };
                // A latency `1 + tolerance` times longer puts about `(1 + tolerance)^e` times
                // as many requests above the bound, `e` the tail's elasticity there.
                let Some(elasticity) = histogram::tail_elasticity(bound, &self.past) else {
                    continue;
                };
                let up = (1.0 + self.tolerance).powf(elasticity);
                let down = if self.tolerance < 1.0 {
                    (1.0 - self.tolerance).powf(elasticity)
                } else {
                    0.0
                };
                let (Some(c_above), Some(s_above)) =
                    (above(&now_canary, bound), above(&now_stable, bound))
                else {
                    continue;
                };
                let counts = [
                    c_above,
                    histogram::total(&now_canary),
                    s_above,
                    histogram::total(&now_stable),
                ];
                sides.observe(counts, up, down.max(1e-6));
            }
        }
        // Adding cumulative lists with the same bounds: `normalize` sums equal bounds.
        let mut merged = std::mem::take(&mut self.past);
        merged.extend(now_stable);
        self.past = histogram::normalize(&merged);
    }

    /// The evidence per quantile, in the order given.
    pub fn sides(&self) -> &[Sides] {
        &self.sides
    }
}
