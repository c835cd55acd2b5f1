//! Building and checking a [`Plan`], and naming where a rollout stands in it.

use super::{AnalysisScope, AnalysisSetup, Phase, Plan, PlannedStep, State, Step, Strategy};
use std::time::Duration;

/// Default analysis interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default failure limit: the first failed analysis aborts.
pub const DEFAULT_FAILURE_LIMIT: u32 = 1;
/// Default consecutive error limit.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// Default time a blue-green release keeps the old version scaled after the switch.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
/// Default delay before an aborted canary scales down.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

impl Plan {
    /// A plan of weight steps (`stepWeights: [10, 50, 100]`) with defaults elsewhere.
    pub fn from_weights(weights: &[u8], interval: Duration) -> Plan {
        Plan {
            steps: weights
                .iter()
                .map(|&weight| PlannedStep {
                    step: Step::Weight { weight },
                    interval,
                    min_duration: interval,
                })
                .collect(),
            failure_limit: DEFAULT_FAILURE_LIMIT,
            inconclusive_limit: 0,
            consecutive_error_limit: DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
            abort_scale_down_delay: DEFAULT_ABORT_SCALE_DOWN_DELAY,
            abort_steps: Vec::new(),
            abort_step_interval: DEFAULT_INTERVAL,
            skip_analysis: false,
            bake: None,
            scale_with_weight: false,
            replicas_router: false,
            strategy: Strategy::Canary,
            check_split: true,
            gates: Vec::new(),
            // The background analysis runs; which templates is the caller's business.
            analyses: [(AnalysisScope::Background, AnalysisSetup::default())].into(),
        }
    }

    /// Whether a background analysis runs (over the whole rollout, beside the steps).
    pub fn background_analysis(&self) -> bool {
        self.analyses.contains_key(&AnalysisScope::Background)
    }

    /// The templates and arguments of the analysis in `scope`; none when it has none.
    pub fn analysis(&self, scope: AnalysisScope) -> AnalysisSetup {
        self.analyses.get(&scope).cloned().unwrap_or_default()
    }

    /// The name of every template the plan's analyses use, in order, each once.
    pub fn template_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for setup in self.analyses.values() {
            for t in &setup.templates {
                if !names.contains(&t.name) {
                    names.push(t.name.clone());
                }
            }
        }
        names
    }

    /// Checks what the types cannot: at least one step, weights within 0-100, limits of at
    /// least 1, intervals above zero.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err(
                "the Release has no steps: set steps or stepWeights (e.g. [10, 50, 100])".into(),
            );
        }
        if let Some(w) = self.abort_steps.iter().find(|w| **w > 100) {
            return Err(format!("abort.steps: weight {w} is above 100"));
        }
        if !self.abort_steps.windows(2).all(|w| w[0] > w[1]) {
            return Err(format!(
                "abort.steps {:?} must decrease, e.g. [50, 10, 0]",
                self.abort_steps
            ));
        }
        if self.abort_steps.last().is_some_and(|w| *w != 0) {
            return Err(format!(
                "abort.steps {:?} must end at 0, where all traffic is back on stable",
                self.abort_steps
            ));
        }
        if !self.abort_steps.is_empty() && self.abort_step_interval.is_zero() {
            return Err("abort.interval must be above zero".into());
        }
        for (i, s) in self.steps.iter().enumerate() {
            if let Step::Weight { weight } = s.step
                && weight > 100
            {
                return Err(format!("step {}: weight {weight} is above 100", i + 1));
            }
            if let Step::Mirror { percent } = s.step
                && !(1..=100).contains(&percent)
            {
                return Err(format!(
                    "step {}: mirror percent {percent} is not within 1-100",
                    i + 1
                ));
            }
            if let Step::Replicas { count } = s.step
                && count < 0
            {
                return Err(format!("step {}: replicas {count} is negative", i + 1));
            }
            if s.interval.is_zero() {
                return Err(format!(
                    "step {}: the analysis interval must be above zero",
                    i + 1
                ));
            }
            if let Step::Match { matches } = &s.step
                && (matches.is_empty()
                    || matches
                        .iter()
                        .any(|m| m.header.is_none() && m.cookie.is_none()))
            {
                return Err(format!(
                    "step {}: each match needs a header or a cookie",
                    i + 1
                ));
            }
        }
        if self.failure_limit == 0 || self.consecutive_error_limit == 0 {
            return Err("failureLimit and consecutiveErrorLimit must be at least 1".into());
        }
        Ok(())
    }

    /// How often analyses run at the step of index `step`: its interval, past the steps (a
    /// bake) the last step's.
    pub fn interval_at(&self, step: usize) -> Duration {
        self.steps
            .get(step)
            .or(self.steps.last())
            .map_or(DEFAULT_INTERVAL, |s| s.interval)
    }

    /// The canary's traffic share a step asks for, if it sets one.
    pub fn weight_of(&self, step: usize) -> Option<u8> {
        match self.steps.get(step).map(|s| &s.step) {
            Some(Step::Weight { weight }) => Some(*weight),
            _ => None,
        }
    }

    /// The number of the step at `index` (from 0) as people count, from 1: `2` in `step 2/3`;
    /// an index past the last step (a full promotion) gives the last. Event and status
    /// messages name a step by it.
    pub fn step_number(&self, index: u32) -> usize {
        (index as usize + 1).min(self.steps.len())
    }

    /// Where `state` stands: before the release, on a step, or at the promotion.
    pub fn step_at(&self, state: &State) -> StepAt {
        match state.phase() {
            Phase::Initializing | Phase::Waiting => StepAt::Before,
            Phase::Promoting | Phase::Succeeded => StepAt::Promotion,
            Phase::Baking => StepAt::Bake,
            Phase::Progressing | Phase::Paused | Phase::Failed => {
                StepAt::Step(self.step_number(state.current_step()))
            }
        }
    }

    /// The step `state` is at, in words: `step 2/3 (50%)`, or `before the release` and
    /// `promotion` outside the steps. Timelines and reports (replayed or live) label steps so.
    pub fn step_label(&self, state: &State) -> String {
        match self.step_at(state) {
            StepAt::Before => "before the release".into(),
            StepAt::Promotion => "promotion".into(),
            StepAt::Bake => "bake".into(),
            StepAt::Step(number) => {
                let step = self
                    .steps
                    .get(state.current_step() as usize)
                    .map(|s| &s.step);
                let what = match step {
                    Some(Step::Analysis) if self.strategy == Strategy::BlueGreen => {
                        " (preview)".into()
                    }
                    Some(Step::Pause { duration: None })
                        if self.strategy == Strategy::BlueGreen =>
                    {
                        " (awaiting promotion)".into()
                    }
                    Some(Step::Weight { .. }) if self.strategy == Strategy::BlueGreen => {
                        " (switched)".into()
                    }
                    Some(Step::Weight { weight }) => format!(" ({weight}%)"),
                    Some(Step::Pause { .. }) => " (pause)".into(),
                    Some(Step::Analysis) => " (analysis)".into(),
                    Some(Step::Replicas { count }) => format!(" ({count} replicas)"),
                    Some(Step::Match { .. }) => " (A/B)".into(),
                    Some(Step::Mirror { percent }) => format!(" (mirror {percent}%)"),
                    None => String::new(),
                };
                format!("step {number}/{}{what}", self.steps.len())
            }
        }
    }
}

/// Where a rollout stands in its plan ([`Plan::step_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAt {
    /// Before the release: no canary yet.
    Before,
    /// On the step of this number, counted from 1 ([`Plan::step_number`]).
    Step(usize),
    /// Past the steps: promoting, or promoted.
    Promotion,
    /// Promoted and baking.
    Bake,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Attempt, Flight, Promotion, Stage};

    #[test]
    fn weights_become_weight_steps_and_are_checked() {
        let plan = Plan::from_weights(&[10, 50, 100], DEFAULT_INTERVAL);
        assert_eq!(plan.steps.len(), 3);
        assert_eq!(plan.weight_of(1), Some(50));
        assert!(plan.check().is_ok());
        assert!(
            Plan::from_weights(&[10, 150], DEFAULT_INTERVAL)
                .check()
                .is_err()
        );
        assert!(Plan::from_weights(&[], DEFAULT_INTERVAL).check().is_err());
    }

    #[test]
    fn a_step_is_labelled_by_its_number_and_what_it_does() {
        let plan = Plan::from_weights(&[10, 50, 100], DEFAULT_INTERVAL);
        let at = |phase, current_step| {
            let release = Attempt {
                current_step,
                ..Attempt::new("r2", chrono::DateTime::UNIX_EPOCH, 4)
            };
            let flight = Flight::new(release.clone());
            let stage = match phase {
                Phase::Initializing => Stage::Initializing,
                Phase::Waiting => Stage::Waiting { withdrawn: None },
                Phase::Progressing => Stage::Progressing(flight),
                Phase::Paused => Stage::Progressing(Flight {
                    paused: true,
                    ..flight
                }),
                Phase::Promoting => Stage::Promoting(Promotion {
                    release,
                    traffic: flight.traffic,
                    since: chrono::DateTime::UNIX_EPOCH,
                    stall_reported: false,
                }),
                Phase::Baking => Stage::Baking(crate::rollout::Bake {
                    release,
                    since: chrono::DateTime::UNIX_EPOCH,
                    previous: "r1".into(),
                    last_analysis_at: None,
                    consecutive_errors: 0,
                    rollback: None,
                }),
                Phase::Succeeded => Stage::Succeeded(release),
                Phase::Failed => Stage::Failed {
                    release,
                    aborted_at: chrono::DateTime::UNIX_EPOCH,
                    from_weight: 0,
                },
            };
            State {
                stage,
                ..State::default()
            }
        };
        let label = |phase, step| plan.step_label(&at(phase, step));
        assert_eq!(label(Phase::Waiting, 0), "before the release");
        assert_eq!(label(Phase::Progressing, 1), "step 2/3 (50%)");
        assert_eq!(label(Phase::Failed, 0), "step 1/3 (10%)");
        assert_eq!(label(Phase::Promoting, 2), "promotion");
        // Past the last step (a full promotion aborted) the number stays the last.
        assert_eq!(plan.step_number(7), 3);
        assert_eq!(label(Phase::Paused, 7), "step 3/3");
        assert_eq!(plan.step_at(&at(Phase::Succeeded, 2)), StepAt::Promotion);
    }
}
