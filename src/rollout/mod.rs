//! The rollout as a pure state machine: steps, weights and decisions.
//!
//! Nothing here talks to Kubernetes, Prometheus or a clock. The controller observes the
//! world ([`Observation`]), asks [`machine::analysis_due`] whether an analysis should run,
//! runs it, and hands everything to [`machine::decide`], which returns the next [`State`]
//! (stored in the Release's `status` through its wire form), the [`World`] the cluster should converge to, and the
//! [`Event`]s to record. Because the desired world is a function of the state alone, a
//! controller that restarts at any moment re-applies the same world and neither repeats
//! nor skips a step or a traffic change.

pub mod machine;
pub mod plan;
pub mod state;

pub use plan::StepAt;
pub use state::{Attempt, Bake, Flight, Promotion, Stage, State, StepState, Traffic};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a rollout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// First seen: the target is not adopted yet.
    #[default]
    Initializing,
    /// Adopted; waiting for a new pod template to roll out.
    Waiting,
    /// A canary is running and moving through the steps.
    Progressing,
    /// Held by `spec.paused`, or by a pause step without a duration until a manual promote.
    Paused,
    /// All steps passed: the stable Deployment is rolling to the new template.
    Promoting,
    /// Promoted, and watched for the bake time against the old version's past; rolled back
    /// to the previous revision on a regression.
    Baking,
    /// The last release was promoted; waiting for the next one.
    Succeeded,
    /// The last release was aborted and rolled back; waiting for the next one.
    Failed,
}

impl Phase {
    /// The name used in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Waiting => "Waiting",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Promoting => "Promoting",
            Phase::Baking => "Baking",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Every phase, for metrics that export one series per phase.
    pub const ALL: [Phase; 8] = [
        Phase::Initializing,
        Phase::Waiting,
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoting,
        Phase::Baking,
        Phase::Succeeded,
        Phase::Failed,
    ];

    /// Every phase Flagger names (its `CanaryPhase` values).
    pub const FLAGGER: [&'static str; 11] = [
        "Initializing",
        "Initialized",
        "Waiting",
        "Progressing",
        "WaitingPromotion",
        "Promoting",
        "Finalising",
        "Succeeded",
        "Failed",
        "Terminating",
        "Terminated",
    ];

    /// The name Flagger gives the phase, for the payloads of Flagger-compatible webhooks
    /// (Flagger has no `Paused`, and its `Waiting` means held by a `confirm-rollout` gate):
    ///
    /// | vigil | Flagger |
    /// | --- | --- |
    /// | `Initializing` | `Initializing` |
    /// | `Waiting` (no new revision) | `Initialized` |
    /// | `Progressing`, `Paused` | `Progressing` |
    /// | `Promoting` | `Promoting` |
    /// | `Baking` | `Finalising` |
    /// | `Succeeded` | `Succeeded` |
    /// | `Failed` | `Failed` |
    pub fn flagger(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Waiting => "Initialized",
            Phase::Progressing | Phase::Paused => "Progressing",
            Phase::Promoting => "Promoting",
            Phase::Baking => "Finalising",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Whether a release is in flight: traffic or replicas may be on the canary, or the
    /// promoted release is baking (an abort rolls it back).
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Baking
        )
    }
}

/// A request routed to the canary regardless of the weight (A/B testing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    /// Route requests carrying this header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// Route requests whose cookie of this name is `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// A header condition of an A/B step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// The header's name.
    pub name: String,
    /// The exact value; without it (and without `regex`) the value `always` routes to the
    /// canary, as ingress-nginx's canary-by-header does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// A regular expression the value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// One step of a rollout, in the core's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send this share (0-100) of traffic to the canary, then hold until the step's gate
    /// passes: at least `min_duration`, and a passing background analysis at this weight.
    Weight {
        /// Canary share in percent.
        weight: u8,
    },
    /// Hold for a while, or until a manual promote when `duration` is `None`.
    Pause {
        /// How long.
        duration: Option<Duration>,
    },
    /// Run the step's own analysis (by index into the Release's steps) until it passes.
    Analysis,
    /// Set the canary's replica count explicitly.
    Replicas {
        /// The count.
        count: i32,
    },
    /// Route matching requests to the canary (A/B), then hold like a weight step.
    Match {
        /// The conditions.
        matches: Vec<Match>,
    },
    /// Copy this share (1-100) of stable's requests to the canary, throwing its answers
    /// away, with no user served by it (weight 0); then hold like a weight step.
    Mirror {
        /// Percent of stable's requests.
        percent: u8,
    },
}

/// A step with its own timing.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// What the step does.
    pub step: Step,
    /// How often analyses run during this step.
    pub interval: Duration,
    /// The least time the step lasts.
    pub min_duration: Duration,
}

/// The kinds of release gates: webhooks asked at fixed points of a rollout.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    /// Before a new revision's canary starts (no canary Deployment yet); a refusal holds
    /// the release in `Waiting`, and the gate is asked again at every reconcile (at least
    /// every interval of the first step).
    ConfirmRollout,
    /// Before the first traffic shift; a failure aborts.
    PreRollout,
    /// At every analysis interval while the canary has traffic; a failure counts as a
    /// failed check.
    Rollout,
    /// Before each increase of the canary's weight; a failure holds, and the gate is asked
    /// again after an interval.
    ConfirmTrafficIncrease,
    /// Before promotion; a failure holds, and the gate is asked again after an interval.
    ConfirmPromotion,
    /// After success or failure; informational.
    PostRollout,
    /// At every analysis interval; a 2xx answer aborts.
    Rollback,
    /// On each of the rollout's events (the Kubernetes Events vigil records); informational:
    /// sent without waiting, the answer is logged only.
    Event,
}

impl GateKind {
    /// The name used in specs and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::ConfirmRollout => "confirm-rollout",
            GateKind::PreRollout => "pre-rollout",
            GateKind::Rollout => "rollout",
            GateKind::ConfirmTrafficIncrease => "confirm-traffic-increase",
            GateKind::ConfirmPromotion => "confirm-promotion",
            GateKind::PostRollout => "post-rollout",
            GateKind::Rollback => "rollback",
            GateKind::Event => "event",
        }
    }
}

/// The answer of the gates of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateResult {
    /// Which gates.
    pub kind: GateKind,
    /// Every gate of the kind answered 2xx (for `rollback`: at least one did, asking to
    /// roll back).
    pub passed: bool,
    /// Which gate said what, in words.
    pub message: String,
}

/// The rollout's settings, converted from the Release's spec and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The steps, in order; never empty.
    pub steps: Vec<PlannedStep>,
    /// Failed analyses that abort the rollout (at least 1).
    pub failure_limit: u32,
    /// Inconclusive analyses that abort the rollout; 0 means no limit.
    pub inconclusive_limit: u32,
    /// Consecutive analyses that could not run (Prometheus down, bad query) that abort it.
    pub consecutive_error_limit: u32,
    /// How long the canary (or, when promoting, the stable Deployment) may take to become
    /// available.
    pub progress_deadline: Duration,
    /// How long an aborted canary keeps its replicas before scaling to zero (after the
    /// traffic is all back on stable).
    pub abort_scale_down_delay: Duration,
    /// The weights an abort hands traffic back through, decreasing to 0, one per
    /// `abort_step_interval` (those below the weight at the abort); empty: at once.
    pub abort_steps: Vec<u8>,
    /// How long each of `abort_steps` holds.
    pub abort_step_interval: Duration,
    /// Skip every analysis: advance on time alone.
    pub skip_analysis: bool,
    /// Scale the canary's replicas with its traffic share.
    pub scale_with_weight: bool,
    /// The weight is set by replica counts (no router).
    pub replicas_router: bool,
    /// Canary steps, or blue-green (whose steps the plan was built from: see
    /// [`Strategy::BlueGreen`]).
    pub strategy: Strategy,
    /// How long a promoted release is watched (its analysis is [`AnalysisScope::Bake`]'s);
    /// `None`: no bake, the release succeeds once promoted.
    pub bake: Option<Duration>,
    /// Check that the canary's share of requests follows the weight.
    pub check_split: bool,
    /// The kinds of release gates configured.
    pub gates: Vec<GateKind>,
    /// What each analysis runs: the background analysis and each analysis step's (by the
    /// step's index). A scope runs an analysis exactly when it has an entry.
    pub analyses: BTreeMap<AnalysisScope, AnalysisSetup>,
}

/// How a release moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Step by step, as the steps say.
    #[default]
    Canary,
    /// Blue-green: the new version at full size behind a preview Service, judged by an
    /// analysis step (the pre-promotion analysis), then, after a pause step for `vigil
    /// promote` when promotion is manual, all traffic at once: a weight step of 100 held for
    /// the scale-down delay, during which the background analysis (the post-promotion one)
    /// may roll back.
    BlueGreen,
}

/// A template an analysis runs, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemplateUse {
    /// The template's name.
    pub name: String,
    /// A cluster-wide template, rather than one in the rollout's namespace.
    pub cluster_scope: bool,
}

/// What one analysis runs: its templates and the arguments they get.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnalysisSetup {
    /// The templates, in order.
    pub templates: Vec<TemplateUse>,
    /// The arguments, by name.
    pub args: BTreeMap<String, String>,
}

/// An operator's request, from `vigil promote|abort`, the API or an alert.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// What is asked.
    pub action: RequestAction,
    /// Why, in words (shown in status and events).
    #[serde(default)]
    pub reason: String,
    /// When it was asked.
    pub at: DateTime<Utc>,
}

/// What an operator can ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestAction {
    /// Pass the current step's gate and go to the next step.
    Promote,
    /// Skip every remaining step and promote now.
    PromoteFull,
    /// Abort and roll back.
    Abort,
}

/// The outcome of one analysis run.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisOutcome {
    /// Evidence that the canary is within tolerance.
    Pass {
        /// Summary in words.
        summary: String,
    },
    /// Evidence of a regression. `critical` when a critical metric failed.
    Fail {
        /// Summary in words.
        summary: String,
        /// A critical metric failed: abort at once.
        critical: bool,
    },
    /// Not enough evidence either way yet (marginal, or too little data).
    Inconclusive {
        /// Summary in words.
        summary: String,
    },
    /// The analysis could not run (Prometheus down, template missing, bad query).
    Error {
        /// What went wrong and what to do.
        message: String,
    },
}

impl AnalysisOutcome {
    /// `pass`, `fail`, `inconclusive` or `error`: the verdict as status and metrics name it.
    pub fn verdict(&self) -> &'static str {
        match self {
            AnalysisOutcome::Pass { .. } => "pass",
            AnalysisOutcome::Fail { .. } => "fail",
            AnalysisOutcome::Inconclusive { .. } => "inconclusive",
            AnalysisOutcome::Error { .. } => "error",
        }
    }

    /// The summary in words (the message of an error).
    pub fn summary(&self) -> &str {
        match self {
            AnalysisOutcome::Pass { summary }
            | AnalysisOutcome::Fail { summary, .. }
            | AnalysisOutcome::Inconclusive { summary } => summary,
            AnalysisOutcome::Error { message } => message,
        }
    }
}

/// What the controller saw in the cluster at this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The current time.
    pub now: DateTime<Utc>,
    /// The revision (hash) of the target Deployment's current pod template.
    pub template_revision: String,
    /// The target Deployment's `spec.replicas`.
    pub target_replicas: i32,
    /// The HorizontalPodAutoscaler that scales the target, if one does.
    pub autoscaler: Option<Autoscaler>,
    /// Available replicas of the canary Deployment running `canary_revision` (0 when it is
    /// missing, runs another revision, or its status is out of date).
    pub canary_available: i32,
    /// The target Deployment runs only its current template, with every replica available.
    pub stable_rolled: bool,
    /// `spec.paused` of the Release.
    pub paused: bool,
    /// A pending operator request.
    pub request: Option<Request>,
    /// The result of the analysis [`machine::analysis_due`] asked for, if one ran.
    pub analysis: Option<(AnalysisDue, AnalysisOutcome)>,
    /// The answers of the gates [`machine::gates_due`] asked for.
    pub gates: Vec<GateResult>,
}

/// A HorizontalPodAutoscaler scaling the target Deployment, as the reconcile saw it. While
/// one does, it owns the stable replica count: vigil sizes the canary on the count the HPA
/// wants for stable now, never sets stable's, and never restores a count from before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscaler {
    /// The replicas it wants for the target now (`status.desiredReplicas`).
    pub desired: i32,
    /// `spec.minReplicas` (1 when unset).
    pub min: i32,
    /// `spec.maxReplicas`.
    pub max: i32,
}

/// What the canary's replicas are sized on: the stable replica count, and the autoscaler
/// that sets it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// The target's `spec.replicas`, or the autoscaler's desired count within its bounds.
    pub replicas: i32,
    /// The target's autoscaler.
    pub autoscaler: Option<Autoscaler>,
}

impl From<i32> for Size {
    fn from(replicas: i32) -> Self {
        Size {
            replicas,
            autoscaler: None,
        }
    }
}

impl Observation {
    /// What the canary is sized on now.
    pub fn size(&self) -> Size {
        Size {
            replicas: self.autoscaler.map_or(self.target_replicas, |a| {
                a.desired.clamp(a.min.max(1), a.max.max(a.min.max(1)))
            }),
            autoscaler: self.autoscaler,
        }
    }
}

/// Which analysis to run, over which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisDue {
    /// Background templates or the current step's own.
    pub scope: AnalysisScope,
    /// Window start: when the canary first received traffic in this step (step analyses)
    /// or in this rollout (background analyses).
    pub from: DateTime<Utc>,
    /// Window end: now.
    pub to: DateTime<Utc>,
    /// The how-many-th analysis of this rollout this is (1-based), for alpha spending.
    pub look: u32,
    /// Where the rollout stands, for the judge.
    pub position: StepPosition,
    /// When the new version took all the traffic, when the old one serves none in the
    /// window (a blue-green release after its switch): the analysis then judges the new
    /// version against the old one's requests over a window as long before this time (a
    /// before/after comparison). `None`: both versions side by side over the window.
    pub baseline_before: Option<DateTime<Utc>>,
}

/// Where a rollout stands when an analysis runs: what a pass would do, and the step's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPosition {
    /// The canary weight (percent) a pass leads to: the next step's weight, or 100 when no
    /// later step sets one (a pass then ends in promotion).
    pub next_weight: u8,
    /// The current step, 1-based.
    pub step: u32,
    /// When the current step began (its weight was applied).
    pub step_start: DateTime<Utc>,
    /// The weight (percent) the router was told, when the canary's traffic is split by weight
    /// alone (no A/B match in force, a traffic router, the split check on).
    pub weight: Option<u8>,
}

/// Whose templates an analysis uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnalysisScope {
    /// The Release's `analysis` templates.
    Background,
    /// The analysis step at this index.
    Step(usize),
    /// The bake after the promotion: the new version, now the stable Deployment's, against
    /// the old one's requests before the release.
    Bake,
}

/// The verdict of one analysis, kept in status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The step it ran in.
    pub step: u32,
    /// The canary weight at the time.
    pub weight: u8,
    /// `pass`, `fail`, `inconclusive` or `error`.
    pub verdict: String,
    /// The reasons, in words.
    pub summary: String,
}

/// How many analysis records status keeps.
pub const KEPT_ANALYSES: usize = 10;

/// How the message reporting a stalled promotion begins. The machine decides from
/// [`Promotion::stall_reported`]; a status format without a field for it can tell it from
/// this message, which the promotion keeps until it ends.
pub const STALLED: &str = "stalled: ";

/// The canary Deployment the world should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryWorld {
    /// Its pod template revision.
    pub revision: String,
    /// Its replica count.
    pub replicas: i32,
}

/// What the cluster should look like for a state: the reconciler converges to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// `spec.paused` of the target Deployment.
    pub stable_paused: bool,
    /// The target's replica count, when vigil manages it (replicas router, during a rollout).
    pub stable_replicas: Option<i32>,
    /// The canary Deployment; `None` means it should not exist.
    pub canary: Option<CanaryWorld>,
    /// The canary's traffic share in percent (0 removes canary routing).
    pub weight: u8,
    /// A/B conditions.
    pub matches: Vec<Match>,
    /// The share (percent) of stable's requests mirrored to the canary; `None`: no mirror.
    pub mirror: Option<u8>,
    /// Pin the stable Service to the stable pods (while canary pods run beside them).
    pub pin_stable: bool,
    /// Put this revision's pod template (the one before the release, from the target's
    /// ReplicaSets) back into the target: a rollback after a failed bake.
    pub restore: Option<String>,
}

/// Something worth a Kubernetes Event and a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What kind of thing happened.
    pub kind: EventKind,
    /// In words.
    pub message: String,
}

/// The kinds of rollout events. Their kebab-case names (`step-advanced`) are the stable
/// names notifications and their filters use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The target Deployment was adopted.
    Adopted,
    /// A new release started.
    Started,
    /// The canary moved to another step.
    StepAdvanced,
    /// The rollout is paused.
    Paused,
    /// The rollout resumed.
    Resumed,
    /// An analysis failed.
    AnalysisFailed,
    /// An analysis was inconclusive.
    AnalysisInconclusive,
    /// An analysis could not run.
    AnalysisError,
    /// The rollout was aborted and traffic rolled back.
    Aborted,
    /// The stable Deployment is rolling to the new template.
    Promoting,
    /// The release completed.
    Succeeded,
    /// A new template replaced the one under test, or the template went back to stable.
    Superseded,
    /// Something takes longer than it should.
    Stalled,
}

impl EventKind {
    /// Every kind, in order.
    pub const ALL: [EventKind; 13] = [
        EventKind::Adopted,
        EventKind::Started,
        EventKind::StepAdvanced,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::AnalysisFailed,
        EventKind::AnalysisInconclusive,
        EventKind::AnalysisError,
        EventKind::Aborted,
        EventKind::Promoting,
        EventKind::Succeeded,
        EventKind::Superseded,
        EventKind::Stalled,
    ];

    /// The stable kebab-case name, e.g. `step-advanced`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Adopted => "adopted",
            EventKind::Started => "started",
            EventKind::StepAdvanced => "step-advanced",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::AnalysisFailed => "analysis-failed",
            EventKind::AnalysisInconclusive => "analysis-inconclusive",
            EventKind::AnalysisError => "analysis-error",
            EventKind::Aborted => "aborted",
            EventKind::Promoting => "promoting",
            EventKind::Succeeded => "succeeded",
            EventKind::Superseded => "superseded",
            EventKind::Stalled => "stalled",
        }
    }

    /// The Kubernetes Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            EventKind::Adopted => "Adopted",
            EventKind::Started => "Started",
            EventKind::StepAdvanced => "StepAdvanced",
            EventKind::Paused => "Paused",
            EventKind::Resumed => "Resumed",
            EventKind::AnalysisFailed => "AnalysisFailed",
            EventKind::AnalysisInconclusive => "AnalysisInconclusive",
            EventKind::AnalysisError => "AnalysisError",
            EventKind::Aborted => "Aborted",
            EventKind::Promoting => "Promoting",
            EventKind::Succeeded => "Succeeded",
            EventKind::Superseded => "Superseded",
            EventKind::Stalled => "Stalled",
        }
    }

    /// Whether the event is a warning.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            EventKind::AnalysisFailed
                | EventKind::AnalysisError
                | EventKind::Aborted
                | EventKind::Stalled
                | EventKind::AnalysisInconclusive
        )
    }
}

/// The machine's answer for one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The next state, to store in status.
    pub state: State,
    /// The world to converge to.
    pub world: World,
    /// Events to record.
    pub events: Vec<Event>,
    /// When to look again at the latest.
    pub requeue: Duration,
    /// Whether the operator request in the observation was consumed.
    pub request_done: bool,
    /// Whether this decision wrote `state.message` (an event, or news such as waiting for
    /// replicas); otherwise the stored message stands.
    pub new_message: bool,
}
