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

/// The e-processes for one comparison: against `1 + tolerance` when an increase is harmful,
/// `1 - tolerance` when a decrease is, both (each at half the level) for either.
#[derive(Debug, Clone)]
pub struct Sides {
    upper: Option<RateSequence>,
    lower: Option<RateSequence>,
    /// The level of each one-sided process.
    pub alpha: f64,
    last_upper: f64,
    last_lower: f64,
}

impl Sides {
    /// Fresh evidence for `direction` at overall level `alpha`.
    pub fn new(direction: Direction, alpha: f64) -> Self {
        let side_alpha = if direction == Direction::Either {
            alpha / 2.0
        } else {
            alpha
        };
        let make = |wanted: bool| wanted.then(|| RateSequence::new(side_alpha));
        Self {
            upper: make(direction != Direction::Decrease),
            lower: make(direction != Direction::Increase),
            alpha: side_alpha,
            last_upper: 1.0,
            last_lower: 1.0,
        }
    }

    /// Adds one interval with the boundary ratios that tolerance allows above and below.
    pub fn observe(&mut self, counts: [f64; 4], upper: f64, lower: f64) {
        let [ce, cn, se, sn] = counts;
        self.last_upper = upper;
        self.last_lower = lower;
        if let Some(s) = &mut self.upper {
            s.observe(ce, cn, se, sn, upper);
        }
        if let Some(s) = &mut self.lower {
            s.observe(ce, cn, se, sn, lower);
        }
    }

    /// The call so far: a regression at any look wins; safe needs every side safe.
    pub fn call(&self) -> Call {
        let up = self.upper.as_ref().and_then(RateSequence::crossed_above);
        let down = self.lower.as_ref().and_then(RateSequence::crossed_below);
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
                let upper_safe = self
                    .upper
                    .as_ref()
                    .is_none_or(|s| s.crossed_below().is_some());
                let lower_safe = self
                    .lower
                    .as_ref()
                    .is_none_or(|s| s.crossed_above().is_some());
                if upper_safe && lower_safe {
                    Call::Safe
                } else {
                    Call::Undecided
                }
            }
        }
    }

    /// The largest e-value for a harmful change seen at any look.
    pub fn harm_e(&self) -> f64 {
        let up = self.upper.as_ref().map_or(0.0, RateSequence::max_e_above);
        let down = self.lower.as_ref().map_or(0.0, RateSequence::max_e_below);
        up.max(down)
    }

    /// The smallest e-value among the sides that must show safety.
    pub fn safe_e(&self) -> f64 {
        let up = self
            .upper
            .as_ref()
            .map_or(f64::INFINITY, RateSequence::max_e_below);
        let down = self
            .lower
            .as_ref()
            .map_or(f64::INFINITY, RateSequence::max_e_above);
        up.min(down)
    }

    /// The anytime-valid p-value for a harmful change: `min(1, 1/e)`, doubled for either
    /// direction (each side runs at half the level).
    pub fn p_value(&self) -> f64 {
        let sides = if self.upper.is_some() && self.lower.is_some() {
            2.0
        } else {
            1.0
        };
        (sides / self.harm_e()).min(1.0)
    }

    fn any(&self) -> Option<&RateSequence> {
        self.upper.as_ref().or(self.lower.as_ref())
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
        let boundary = if self.upper.is_some() {
            self.last_upper
        } else {
            self.last_lower
        };
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
                // How many stable requests a latency `factor` times longer would push above
                // the bound: the ratio of exceedances that the tolerance allows.
                let shifted = |factor: f64| {
                    histogram::count_at_geometric(bound / factor, &self.past)
                        .map(|c| past_total - c)
                };
                let (Some(past_above), Some(up)) =
                    (above(&self.past, bound), shifted(1.0 + self.tolerance))
                else {
                    continue;
                };
                // A faster canary: unknowable beyond the last finite bucket, and no bound at
                // all for a tolerance of 100% or more.
                let down = if self.tolerance < 1.0 {
                    shifted(1.0 - self.tolerance)
                } else {
                    None
                }
                .unwrap_or(0.0);
                let (Some(c_above), Some(s_above)) =
                    (above(&now_canary, bound), above(&now_stable, bound))
                else {
                    continue;
                };
                if past_above <= 0.0 {
                    continue;
                }
                let counts = [
                    c_above,
                    histogram::total(&now_canary),
                    s_above,
                    histogram::total(&now_stable),
                ];
                sides.observe(counts, up / past_above, (down / past_above).max(1e-6));
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
