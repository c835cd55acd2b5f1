//! The rollout's state, typed: where the rollout is ([`Stage`]) carries the data that exists
//! only there, so that e.g. a waiting rollout cannot have a step start, nor a progressing
//! one an abort time.
//!
//! The Release's status stores it in a flat, versioned wire form (`api::status`), converted
//! at the edge where the reconciler reads and writes status; nothing here knows that form.

use super::{AnalysisRecord, Match, Phase};
use chrono::{DateTime, Utc};

/// All rollout state: what the machine decides from and the Release's status shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Where the rollout is, with what exists only there.
    pub stage: Stage,
    /// The revision the stable Deployment runs (a hash of its pod template); `None` until
    /// the target is adopted.
    pub stable_revision: Option<String>,
    /// The number of steps of the plan.
    pub steps: u32,
    /// What is going on, in words.
    pub message: String,
}

/// Where a rollout is in its life, with the data of that stage. [`State::phase`] names it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Stage {
    /// First seen: the target is not adopted yet.
    #[default]
    Initializing,
    /// Adopted; waiting for a new pod template to roll out.
    Waiting {
        /// The release withdrawn because the template went back to the stable one, kept as
        /// its record; `None` after the adoption.
        withdrawn: Option<Attempt>,
    },
    /// A canary is running and moving through the steps, or held there
    /// ([`Flight::paused`]).
    Progressing(Flight),
    /// All steps passed: the stable Deployment is rolling to the new template.
    Promoting(Promotion),
    /// Promoted and watched for the plan's bake time; rolled back on a regression.
    Baking(Bake),
    /// The release was promoted; waiting for the next one. The release is its record.
    Succeeded(Attempt),
    /// The release was aborted and rolled back; its revision is not retried until the
    /// template changes again.
    Failed {
        /// The aborted release; its canary keeps `canary_replicas` until the scale-down
        /// delay has passed.
        release: Attempt,
        /// When it was aborted.
        aborted_at: DateTime<Utc>,
        /// The canary's weight when it was aborted, which the plan's `abort_steps` hand
        /// back to stable from.
        from_weight: u8,
    },
}

/// One attempt to release a revision: the revision under test and what became of it. It outlives its flight as
/// the record status shows (step, counts, analyses).
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The revision under test (a hash of the pod template). Empty when a status without it
    /// was read: no template has that revision.
    pub canary_revision: String,
    /// When the release started.
    pub started_at: DateTime<Utc>,
    /// The index of the current step (the number of steps once promoting).
    pub current_step: u32,
    /// The target's replica count when the release started; restored afterwards. `None`
    /// once promoted.
    pub stable_replicas: Option<i32>,
    /// The canary's replicas set by a `replicas` step, or kept after an abort.
    pub canary_replicas: Option<i32>,
    /// Analyses run.
    pub looks: u32,
    /// Failed analyses and `rollout` gate refusals.
    pub failed_checks: u32,
    /// Inconclusive analyses.
    pub inconclusive_checks: u32,
    /// The last verdict: `pass`, `fail`, `inconclusive` or `error`.
    pub last_verdict: Option<String>,
    /// The latest analyses, newest last (at most [`super::KEPT_ANALYSES`]).
    pub analyses: Vec<AnalysisRecord>,
}

impl Attempt {
    /// A release of `canary_revision` starting at `now`, with the target's `stable_replicas`.
    pub fn new(canary_revision: &str, now: DateTime<Utc>, stable_replicas: i32) -> Attempt {
        Attempt {
            canary_revision: canary_revision.to_string(),
            started_at: now,
            current_step: 0,
            stable_replicas: Some(stable_replicas),
            canary_replicas: None,
            looks: 0,
            failed_checks: 0,
            inconclusive_checks: 0,
            last_verdict: None,
            analyses: Vec::new(),
        }
    }
}

/// The canary's routing: its share of traffic and the A/B conditions in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// The canary's traffic share in percent, as applied.
    pub weight: u8,
    /// The A/B conditions in force, if any.
    pub matches: Vec<Match>,
    /// The share (percent) of stable's requests copied to the canary, responses discarded,
    /// while a mirror step is in force.
    pub mirror: Option<u8>,
}

impl Traffic {
    /// Whether the canary gets requests: a weight above zero, an A/B condition, or copies
    /// of stable's.
    pub fn flows(&self) -> bool {
        self.weight > 0 || !self.matches.is_empty() || self.mirror.is_some()
    }
}

/// A release moving through its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    /// The release.
    pub release: Attempt,
    /// The canary's routing.
    pub traffic: Traffic,
    /// Where the current step stands.
    pub step: StepState,
    /// Held by `spec.paused`, or by a pause step without a duration until a manual promote
    /// (the `Paused` phase).
    pub paused: bool,
    /// When the canary first received traffic: the start of the background analysis window.
    pub traffic_since: Option<DateTime<Utc>>,
    /// When the last analysis ran.
    pub last_analysis_at: Option<DateTime<Utc>>,
    /// When the `rollout` and `rollback` gates were last asked.
    pub last_gate_at: Option<DateTime<Utc>>,
    /// Analyses in a row that could not run.
    pub consecutive_errors: u32,
}

impl Flight {
    /// The flight of a new release: no traffic yet, waiting for the canary from `now`.
    pub fn new(release: Attempt) -> Flight {
        let now = release.started_at;
        Flight {
            release,
            traffic: Traffic::default(),
            step: StepState::Pending {
                waiting_since: Some(now),
                gate_retry_at: None,
            },
            paused: false,
            traffic_since: None,
            last_analysis_at: None,
            last_gate_at: None,
            consecutive_errors: 0,
        }
    }
}

/// Where the current step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Not begun: waiting for the canary's replicas, or for a confirm gate.
    Pending {
        /// Since when the rollout waits for the canary to become available.
        waiting_since: Option<DateTime<Utc>>,
        /// A confirm gate said no: it is asked again from this time.
        gate_retry_at: Option<DateTime<Utc>>,
    },
    /// Begun: its weight was applied.
    Begun {
        /// When.
        at: DateTime<Utc>,
        /// Whether its analysis has passed.
        passed: bool,
    },
}

impl StepState {
    /// A step not begun, with nothing waited for yet.
    pub const NEXT: StepState = StepState::Pending {
        waiting_since: None,
        gate_retry_at: None,
    };

    /// When the step began, if it has.
    pub fn began(&self) -> Option<DateTime<Utc>> {
        match self {
            StepState::Begun { at, .. } => Some(*at),
            StepState::Pending { .. } => None,
        }
    }

    /// Whether the step has begun and its analysis passed.
    pub fn passed(&self) -> bool {
        matches!(self, StepState::Begun { passed: true, .. })
    }
}

/// A promoted release watched for its bake time.
#[derive(Debug, Clone, PartialEq)]
pub struct Bake {
    /// The promoted release; its analyses go on counting.
    pub release: Attempt,
    /// When the promotion completed: the bake's window starts here.
    pub since: DateTime<Utc>,
    /// The revision before the release, which a rollback restores.
    pub previous: String,
    /// When the last bake analysis ran.
    pub last_analysis_at: Option<DateTime<Utc>>,
    /// Bake analyses in a row that could not run.
    pub consecutive_errors: u32,
    /// When the rollback to `previous` began, after a failed bake analysis: the target rolls
    /// back to it, and the release ends as failed once it has.
    pub rollback: Option<DateTime<Utc>>,
}

/// The stable Deployment rolling to the new template.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The promoted release.
    pub release: Attempt,
    /// The canary's routing, kept while the stable Deployment rolls.
    pub traffic: Traffic,
    /// When the promotion began.
    pub since: DateTime<Utc>,
    /// Whether the promotion was reported stalled (past the progress deadline); it is
    /// reported once.
    pub stall_reported: bool,
}

impl State {
    /// Whether the release is being taken back from the users: aborted (traffic back on
    /// stable, at once or step by step), or a bake rolling the target back. Such a decision
    /// is recorded before the world is changed for it: once made it must stand, whatever a
    /// later analysis (say one that finds no data) would decide from the state before it.
    pub fn withdraws(&self) -> bool {
        match &self.stage {
            Stage::Failed { .. } => true,
            Stage::Baking(b) => b.rollback.is_some(),
            _ => false,
        }
    }

    /// Where the rollout is, by name.
    pub fn phase(&self) -> Phase {
        match &self.stage {
            Stage::Initializing => Phase::Initializing,
            Stage::Waiting { .. } => Phase::Waiting,
            Stage::Progressing(f) if f.paused => Phase::Paused,
            Stage::Progressing(_) => Phase::Progressing,
            Stage::Promoting(_) => Phase::Promoting,
            Stage::Baking(_) => Phase::Baking,
            Stage::Succeeded(_) => Phase::Succeeded,
            Stage::Failed { .. } => Phase::Failed,
        }
    }

    /// The release in flight, or the last one's record.
    pub fn release(&self) -> Option<&Attempt> {
        match &self.stage {
            Stage::Initializing => None,
            Stage::Waiting { withdrawn } => withdrawn.as_ref(),
            Stage::Progressing(f) => Some(&f.release),
            Stage::Promoting(p) => Some(&p.release),
            Stage::Baking(b) => Some(&b.release),
            Stage::Succeeded(r) | Stage::Failed { release: r, .. } => Some(r),
        }
    }

    /// The release moving through its steps, if one is.
    pub fn flight(&self) -> Option<&Flight> {
        match &self.stage {
            Stage::Progressing(f) => Some(f),
            _ => None,
        }
    }

    /// The canary's routing while it has some (progressing, paused or promoting).
    pub fn traffic(&self) -> Option<&Traffic> {
        match &self.stage {
            Stage::Progressing(f) => Some(&f.traffic),
            Stage::Promoting(p) => Some(&p.traffic),
            _ => None,
        }
    }

    /// The canary's traffic share in percent, as applied (0 without a canary in flight).
    pub fn weight(&self) -> u8 {
        self.traffic().map_or(0, |t| t.weight)
    }

    /// The index of the current (or last) release's step.
    pub fn current_step(&self) -> u32 {
        self.release().map_or(0, |r| r.current_step)
    }

    /// The revision under test, or last tested.
    pub fn canary_revision(&self) -> Option<&str> {
        self.release().map(|r| r.canary_revision.as_str())
    }

    /// The aborted revision, not retried until the template changes again.
    pub fn failed_revision(&self) -> Option<&str> {
        match &self.stage {
            Stage::Failed { release, .. } => Some(&release.canary_revision),
            _ => None,
        }
    }

    /// When the current step began, if a step is running.
    pub fn step_started_at(&self) -> Option<DateTime<Utc>> {
        self.flight().and_then(|f| f.step.began())
    }

    /// The release's last verdict.
    pub fn last_verdict(&self) -> Option<&str> {
        self.release().and_then(|r| r.last_verdict.as_deref())
    }

    /// The release's latest analyses, newest last.
    pub fn analyses(&self) -> &[AnalysisRecord] {
        self.release().map_or(&[], |r| &r.analyses)
    }
}
