//! Sequential decisions for "events per request" metrics (errors, slow requests): regression
//! beyond tolerance, within tolerance, or not enough evidence yet.

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
