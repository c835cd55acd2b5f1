//! The decisions: [`analysis_due`], [`decide`] and [`desired`]. All three are pure.

use super::{
    AnalysisDue, AnalysisOutcome, AnalysisRecord, AnalysisScope, CanaryWorld, Decision, Event,
    EventKind, GateKind, KEPT_ANALYSES, Observation, Phase, Plan, RequestAction, State, Step,
    StepPosition, World,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// How often to look while waiting for Deployments to become available.
const POLL: Duration = Duration::from_secs(5);
/// How often to look when nothing is in flight (watches wake the controller earlier).
const IDLE: Duration = Duration::from_secs(300);

fn since(now: DateTime<Utc>, then: Option<DateTime<Utc>>) -> Duration {
    then.and_then(|t| (now - t).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero())
}

/// Whether the rollout holds for `spec.paused` or an open-ended pause step.
fn held(plan: &Plan, state: &State, spec_paused: bool) -> bool {
    spec_paused
        || (state.step_started_at.is_some()
            && matches!(
                plan.steps.get(state.current_step as usize).map(|s| &s.step),
                Some(Step::Pause { duration: None })
            ))
}

/// Which analysis should run now, if any. The controller runs it and passes the outcome in
/// [`Observation::analysis`].
pub fn analysis_due(plan: &Plan, state: &State, now: DateTime<Utc>) -> Option<AnalysisDue> {
    if plan.skip_analysis || !matches!(state.phase, Phase::Progressing | Phase::Paused) {
        return None;
    }
    let index = state.current_step as usize;
    let planned = plan.steps.get(index)?;
    let step_start = state.step_started_at?;
    let (scope, since) = match planned.step {
        Step::Analysis => (AnalysisScope::Step(index), step_start),
        _ if plan.background_analysis => (AnalysisScope::Background, state.traffic_since?),
        _ => return None,
    };
    // One interval of the stable alone before the canary's traffic: the stable's latency
    // there sets the first interval's comparison bounds, fixed before the canary's data.
    let from = before(since, planned.interval);
    if state.weight == 0 && state.matches.is_empty() {
        return None;
    }
    let last = state.last_analysis_at.filter(|t| *t >= step_start);
    let due = after(last.unwrap_or(step_start), planned.interval);
    let next_weight = plan.steps[index + 1..]
        .iter()
        .find_map(|s| match s.step {
            Step::Weight { weight } => Some(weight),
            _ => None,
        })
        .unwrap_or(100);
    (now >= due).then_some(AnalysisDue {
        scope,
        from,
        to: now,
        look: state.looks + 1,
        position: StepPosition {
            next_weight,
            step: state.current_step + 1,
            step_start,
            // With replica counts as the router, the share follows the pods and their load,
            // not the weight: no split check.
            weight: (plan.check_split && !plan.replicas_router && state.matches.is_empty())
                .then_some(state.weight),
        },
    })
}

/// Which release gates should be asked now. The controller calls their webhooks and
/// passes the answers in [`Observation::gates`].
pub fn gates_due(plan: &Plan, state: &State, obs: &Observation) -> Vec<GateKind> {
    let has = |k: GateKind| plan.gates.contains(&k);
    let mut due = Vec::new();
    if !matches!(state.phase, Phase::Progressing | Phase::Paused) {
        return due;
    }
    let now = obs.now;
    let index = state.current_step as usize;
    // rollout and rollback: once per interval while the canary has traffic.
    if let (Some(planned), Some(start)) = (plan.steps.get(index), state.step_started_at)
        && (state.weight > 0 || !state.matches.is_empty())
    {
        let last = state.last_gate_at.filter(|t| *t >= start);
        if now >= after(last.unwrap_or(start), planned.interval) {
            due.extend(
                [GateKind::Rollout, GateKind::Rollback]
                    .into_iter()
                    .filter(|k| has(*k)),
            );
        }
    }
    if state.phase != Phase::Progressing || obs.paused || state.step_started_at.is_some() {
        return due;
    }
    if state.gate_retry_at.is_some_and(|t| now < t) {
        return due;
    }
    match plan.steps.get(index) {
        None => {
            if has(GateKind::ConfirmPromotion) {
                due.push(GateKind::ConfirmPromotion);
            }
        }
        Some(planned) => {
            let world = desired(plan, state, obs.target_replicas, now);
            let ready = obs.canary_available >= world.canary.map_or(0, |c| c.replicas);
            if ready {
                if sends_traffic(&planned.step)
                    && state.traffic_since.is_none()
                    && has(GateKind::PreRollout)
                {
                    due.push(GateKind::PreRollout);
                }
                if increases(&planned.step, state.weight) && has(GateKind::ConfirmTrafficIncrease) {
                    due.push(GateKind::ConfirmTrafficIncrease);
                }
            }
        }
    }
    due
}

fn sends_traffic(step: &Step) -> bool {
    matches!(step, Step::Weight { weight } if *weight > 0) || matches!(step, Step::Match { .. })
}

fn increases(step: &Step, weight: u8) -> bool {
    matches!(step, Step::Weight { weight: w } if *w > weight)
}

/// The canary's replica count for a traffic share.
fn replicas_for(plan: &Plan, state: &State, total: i32, weight: u8) -> i32 {
    if let Some(n) = state.canary_replicas {
        return n;
    }
    if plan.scale_with_weight || plan.replicas_router {
        let share = (f64::from(total) * f64::from(weight) / 100.0).ceil() as i32;
        share.clamp(1, total.max(1))
    } else {
        total.max(1)
    }
}

/// The weight the canary's replicas are sized for: the next weight step's while it waits to
/// begin (scale first, then shift traffic), the applied weight otherwise.
fn sizing_weight(plan: &Plan, state: &State) -> u8 {
    match plan.weight_of(state.current_step as usize) {
        Some(next) if state.step_started_at.is_none() && state.phase == Phase::Progressing => {
            next.max(state.weight)
        }
        _ => state.weight,
    }
}

/// The world the cluster should have for `state`. `target_replicas` is the target
/// Deployment's `spec.replicas` now.
pub fn desired(plan: &Plan, state: &State, target_replicas: i32, now: DateTime<Utc>) -> World {
    let total = state.stable_replicas.unwrap_or(target_replicas);
    let revision = state.canary_revision.clone().unwrap_or_default();
    let canary = match state.phase {
        Phase::Progressing | Phase::Paused | Phase::Promoting => Some(CanaryWorld {
            revision,
            replicas: replicas_for(plan, state, total, sizing_weight(plan, state)),
        }),
        Phase::Failed if state.canary_revision.is_some() => {
            let keep = state
                .aborted_at
                .is_some_and(|t| now < after(t, plan.abort_scale_down_delay));
            Some(CanaryWorld {
                revision,
                replicas: if keep {
                    state.canary_replicas.unwrap_or(0)
                } else {
                    0
                },
            })
        }
        _ => None,
    };
    let stable_replicas = match state.phase {
        _ if !plan.replicas_router => None,
        Phase::Progressing | Phase::Paused => {
            let canary = canary.as_ref().map_or(0, |c| c.replicas);
            Some((total - canary).max(0))
        }
        Phase::Promoting => Some(total),
        Phase::Failed if state.stable_replicas.is_some() => Some(total),
        _ => None,
    };
    let pin_stable =
        state.phase != Phase::Promoting && canary.as_ref().is_some_and(|c| c.replicas > 0);
    let (weight, matches) = match state.phase {
        Phase::Progressing | Phase::Paused | Phase::Promoting => {
            (state.weight, state.matches.clone())
        }
        _ => (0, Vec::new()),
    };
    World {
        stable_paused: state.phase != Phase::Promoting,
        stable_replicas,
        canary,
        weight,
        matches,
        pin_stable,
    }
}

struct Machine<'a> {
    plan: &'a Plan,
    obs: &'a Observation,
    s: State,
    events: Vec<Event>,
    request_done: bool,
}

impl Machine<'_> {
    /// The answer of a gate kind: `None` when it was not asked in this observation.
    fn gate(&self, kind: GateKind) -> Option<&super::GateResult> {
        self.obs.gates.iter().find(|g| g.kind == kind)
    }

    /// Whether a configured confirm or pre-rollout gate lets the rollout go on. Holds (and
    /// schedules the next ask) when it said no or was not asked yet; aborts when a
    /// pre-rollout gate failed. Returns false when the caller must stop here.
    fn gate_allows(&mut self, kind: GateKind, interval: Duration) -> bool {
        if !self.plan.gates.contains(&kind) {
            return true;
        }
        let label = self.step_name();
        match self.gate(kind).cloned() {
            None => {
                self.s.message = format!("{label}: asking the {} webhooks", kind.as_str());
                false
            }
            Some(g) if g.passed => {
                self.s.gate_retry_at = None;
                true
            }
            Some(g) if kind == GateKind::PreRollout => {
                self.abort(format!("the pre-rollout webhook refused: {}", g.message));
                false
            }
            Some(g) => {
                self.s.gate_retry_at = Some(after(self.obs.now, interval));
                let message = format!(
                    "{label}: holding: the {} webhook refused: {}; asking again in {}s",
                    kind.as_str(),
                    g.message,
                    interval.as_secs()
                );
                if self.s.message != message {
                    self.event(EventKind::Stalled, message);
                }
                false
            }
        }
    }

    /// Applies the answers of `rollout` and `rollback` gates. Returns false when the
    /// rollout was aborted.
    fn periodic_gates(&mut self) -> bool {
        let mut asked = false;
        if let Some(g) = self.gate(GateKind::Rollback).cloned() {
            asked = true;
            if g.passed {
                self.abort(format!("the rollback webhook asked for it: {}", g.message));
                return false;
            }
        }
        if let Some(g) = self.gate(GateKind::Rollout).cloned() {
            asked = true;
            if !g.passed {
                self.s.failed_checks += 1;
                let limit = self.plan.failure_limit;
                self.event(
                    EventKind::AnalysisFailed,
                    format!(
                        "{}: the rollout webhook failed ({} of {limit}): {}",
                        self.step_name(),
                        self.s.failed_checks,
                        g.message
                    ),
                );
                if self.s.failed_checks >= limit {
                    self.abort(format!(
                        "{} failed checks: {}",
                        self.s.failed_checks, g.message
                    ));
                    return false;
                }
            }
        }
        if asked {
            self.s.last_gate_at = Some(self.obs.now);
        }
        true
    }

    fn event(&mut self, kind: EventKind, message: impl Into<String>) {
        let message = message.into();
        self.s.message.clone_from(&message);
        self.events.push(Event { kind, message });
    }

    /// `step 2/3`: how event and status messages name the step ([`Plan::step_number`]);
    /// timelines say what it does too ([`Plan::step_label`]).
    fn step_name(&self) -> String {
        let of = self.plan.steps.len();
        format!("step {}/{of}", self.plan.step_number(self.s.current_step))
    }

    fn start(&mut self, revision: &str, superseded: Option<String>) {
        let now = self.obs.now;
        let stable_replicas = self.s.stable_replicas.filter(|_| self.s.phase.in_flight());
        let keep = State {
            phase: Phase::Progressing,
            stable_revision: self.s.stable_revision.clone(),
            canary_revision: Some(revision.to_string()),
            steps: self.plan.steps.len() as u32,
            stable_replicas: Some(stable_replicas.unwrap_or(self.obs.target_replicas)),
            started_at: Some(now),
            waiting_since: Some(now),
            ..State::default()
        };
        self.s = keep;
        match superseded {
            Some(old) => self.event(
                EventKind::Superseded,
                format!("revision {revision} replaced {old} under test: starting over"),
            ),
            None => self.event(
                EventKind::Started,
                format!(
                    "new revision {revision}: starting the canary ({} steps)",
                    self.plan.steps.len()
                ),
            ),
        }
    }

    fn abort(&mut self, reason: String) {
        let world = desired(self.plan, &self.s, self.obs.target_replicas, self.obs.now);
        self.s.canary_replicas = world.canary.map(|c| c.replicas);
        self.s.phase = Phase::Failed;
        self.s.failed_revision = self.s.canary_revision.clone();
        self.s.aborted_at = Some(self.obs.now);
        self.s.weight = 0;
        self.s.matches.clear();
        self.s.waiting_since = None;
        self.s.promoting_since = None;
        self.event(
            EventKind::Aborted,
            format!(
                "aborted at {}: {reason}; traffic is back on stable",
                self.step_name()
            ),
        );
    }

    fn promote(&mut self) {
        self.s.phase = Phase::Promoting;
        self.s.promoting_since = Some(self.obs.now);
        self.s.current_step = self.plan.steps.len() as u32;
        self.s.step_started_at = None;
        self.event(
            EventKind::Promoting,
            "every step passed: the stable Deployment rolls to the new revision",
        );
    }

    fn succeed(&mut self) {
        self.s.phase = Phase::Succeeded;
        self.s.stable_revision = self.s.canary_revision.clone();
        self.s.failed_revision = None;
        self.s.weight = 0;
        self.s.matches.clear();
        self.s.canary_replicas = None;
        self.s.stable_replicas = None;
        self.s.promoting_since = None;
        let revision = self.s.canary_revision.clone().unwrap_or_default();
        self.event(
            EventKind::Succeeded,
            format!("revision {revision} is promoted and serves all traffic"),
        );
    }

    /// Applies an analysis outcome. Returns false when it aborted the rollout.
    fn record(&mut self, due: AnalysisDue, outcome: &AnalysisOutcome) -> bool {
        let (verdict, summary) = (outcome.verdict(), outcome.summary().to_string());
        self.s.looks += 1;
        self.s.last_analysis_at = Some(due.to);
        self.s.last_verdict = Some(verdict.to_string());
        self.s.analyses.push(AnalysisRecord {
            at: due.to,
            step: self.s.current_step,
            weight: self.s.weight,
            verdict: verdict.to_string(),
            summary: summary.clone(),
        });
        if self.s.analyses.len() > KEPT_ANALYSES {
            let extra = self.s.analyses.len() - KEPT_ANALYSES;
            self.s.analyses.drain(..extra);
        }
        let label = self.step_name();
        match outcome {
            AnalysisOutcome::Pass { .. } => {
                self.s.consecutive_errors = 0;
                self.s.step_passed = true;
                self.s.message = format!("{label}: analysis passed: {summary}");
            }
            AnalysisOutcome::Fail { critical, .. } => {
                self.s.consecutive_errors = 0;
                self.s.failed_checks += 1;
                let limit = self.plan.failure_limit;
                self.event(
                    EventKind::AnalysisFailed,
                    format!(
                        "{label}: analysis failed ({} of {limit}): {summary}",
                        self.s.failed_checks
                    ),
                );
                if *critical || self.s.failed_checks >= limit {
                    let why = if *critical {
                        format!("a critical metric failed: {summary}")
                    } else {
                        format!("{} failed analyses: {summary}", self.s.failed_checks)
                    };
                    self.abort(why);
                    return false;
                }
            }
            AnalysisOutcome::Inconclusive { .. } => {
                self.s.consecutive_errors = 0;
                self.s.inconclusive_checks += 1;
                let limit = self.plan.inconclusive_limit;
                let of = if limit > 0 {
                    format!(" ({} of {limit})", self.s.inconclusive_checks)
                } else {
                    String::new()
                };
                self.event(
                    EventKind::AnalysisInconclusive,
                    format!("{label}: analysis inconclusive{of}, holding: {summary}"),
                );
                if limit > 0 && self.s.inconclusive_checks >= limit {
                    self.abort(format!(
                        "{} inconclusive analyses: {summary}",
                        self.s.inconclusive_checks
                    ));
                    return false;
                }
            }
            AnalysisOutcome::Error { .. } => {
                self.s.consecutive_errors += 1;
                let limit = self.plan.consecutive_error_limit;
                self.event(
                    EventKind::AnalysisError,
                    format!(
                        "{label}: analysis could not run ({} in a row, limit {limit}), holding: {summary}",
                        self.s.consecutive_errors
                    ),
                );
                if self.s.consecutive_errors >= limit {
                    self.abort(format!(
                        "the analysis could not run {} times in a row: {summary}",
                        self.s.consecutive_errors
                    ));
                    return false;
                }
            }
        }
        true
    }

    /// Moves through the steps as far as the observation allows.
    fn progress(&mut self) {
        let now = self.obs.now;
        for _ in 0..=self.plan.steps.len() {
            let index = self.s.current_step as usize;
            let Some(planned) = self.plan.steps.get(index).cloned() else {
                let interval = self
                    .plan
                    .steps
                    .last()
                    .map_or(super::plan::DEFAULT_INTERVAL, |s| s.interval);
                if self.gate_allows(GateKind::ConfirmPromotion, interval) {
                    self.promote();
                }
                return;
            };
            let Some(started) = self.s.step_started_at else {
                // Begin the step once the canary has the replicas it needs.
                let world = desired(self.plan, &self.s, self.obs.target_replicas, now);
                let needed = world.canary.as_ref().map_or(0, |c| c.replicas);
                if self.obs.canary_available < needed {
                    let waiting = *self.s.waiting_since.get_or_insert(now);
                    if since(now, Some(waiting)) > self.plan.progress_deadline {
                        self.abort(format!(
                            "the canary has {} of {needed} replicas available after the progress deadline ({}s)",
                            self.obs.canary_available,
                            self.plan.progress_deadline.as_secs()
                        ));
                    } else {
                        self.s.message = format!(
                            "{}: waiting for the canary: {} of {needed} replicas available",
                            self.step_name(),
                            self.obs.canary_available
                        );
                    }
                    return;
                }
                self.s.waiting_since = None;
                if sends_traffic(&planned.step)
                    && self.s.traffic_since.is_none()
                    && !self.gate_allows(GateKind::PreRollout, planned.interval)
                {
                    return;
                }
                if increases(&planned.step, self.s.weight)
                    && !self.gate_allows(GateKind::ConfirmTrafficIncrease, planned.interval)
                {
                    return;
                }
                self.begin(&planned.step);
                if !self.gate_open(&planned, now, now) {
                    return;
                }
                self.advance();
                continue;
            };
            if !self.gate_open(&planned, started, now) {
                return;
            }
            self.advance();
        }
    }

    fn begin(&mut self, step: &Step) {
        let now = self.obs.now;
        self.s.step_started_at = Some(now);
        self.s.step_passed = false;
        let label = self.step_name();
        match step {
            Step::Weight { weight } => {
                self.s.weight = *weight;
                self.s.matches.clear();
                if *weight > 0 {
                    self.s.traffic_since.get_or_insert(now);
                }
                self.event(
                    EventKind::StepAdvanced,
                    format!("{label}: {weight}% of traffic to the canary"),
                );
            }
            Step::Match { matches } => {
                self.s.matches.clone_from(matches);
                self.s.traffic_since.get_or_insert(now);
                self.event(
                    EventKind::StepAdvanced,
                    format!("{label}: matching requests to the canary (A/B)"),
                );
            }
            Step::Pause { duration: Some(d) } => self.event(
                EventKind::StepAdvanced,
                format!("{label}: pause for {}s", d.as_secs()),
            ),
            Step::Pause { duration: None } => {
                self.s.phase = Phase::Paused;
                self.event(
                    EventKind::Paused,
                    format!("{label}: paused until `vigil promote`"),
                );
            }
            Step::Analysis => {
                self.event(EventKind::StepAdvanced, format!("{label}: analysis step"))
            }
            Step::Replicas { count } => {
                self.s.canary_replicas = Some(*count);
                self.event(
                    EventKind::StepAdvanced,
                    format!("{label}: {count} canary replicas"),
                );
            }
        }
    }

    /// Whether the step that started at `started` may end now.
    fn gate_open(
        &self,
        planned: &super::PlannedStep,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let elapsed = since(now, Some(started));
        let analysed = self.plan.skip_analysis || self.s.step_passed;
        match &planned.step {
            Step::Weight { .. } | Step::Match { .. } => {
                let least = planned.min_duration.max(if self.plan.background_analysis {
                    planned.interval
                } else {
                    Duration::ZERO
                });
                elapsed >= least && (analysed || !self.plan.background_analysis)
            }
            Step::Pause { duration: Some(d) } => elapsed >= *d,
            Step::Pause { duration: None } => false,
            Step::Analysis => analysed && elapsed >= planned.min_duration,
            Step::Replicas { count } => self.obs.canary_available >= *count,
        }
    }

    fn advance(&mut self) {
        self.s.current_step += 1;
        self.s.step_started_at = None;
        self.s.step_passed = false;
        if self.s.phase == Phase::Paused && !self.obs.paused {
            self.s.phase = Phase::Progressing;
        }
    }
}

/// Decides what to do next from the plan, the stored state and what was observed.
pub fn decide(plan: &Plan, state: &State, obs: &Observation) -> Decision {
    let mut m = Machine {
        plan,
        obs,
        s: state.clone(),
        events: Vec::new(),
        request_done: false,
    };
    m.s.steps = plan.steps.len() as u32;
    let revision = obs.template_revision.as_str();
    match m.s.phase {
        Phase::Initializing => {
            m.s.stable_revision = Some(revision.to_string());
            m.s.phase = Phase::Waiting;
            m.event(
                EventKind::Adopted,
                format!("adopted the Deployment at revision {revision}; waiting for a new one"),
            );
        }
        Phase::Waiting | Phase::Succeeded | Phase::Failed => {
            if obs.request.is_some() {
                m.request_done = true;
            }
            let is_stable = m.s.stable_revision.as_deref() == Some(revision);
            let is_failed = m.s.failed_revision.as_deref() == Some(revision);
            if !is_stable && !is_failed {
                // The canary Deployment is created from this decision's world; its
                // availability is judged on the next observation.
                m.start(revision, None);
            }
        }
        Phase::Progressing | Phase::Paused | Phase::Promoting => in_flight(&mut m),
    }
    let world = desired(plan, &m.s, obs.target_replicas, obs.now);
    let requeue = requeue(plan, &m.s, obs.now);
    Decision {
        state: m.s,
        world,
        events: m.events,
        requeue,
        request_done: m.request_done,
    }
}

fn in_flight(m: &mut Machine<'_>) {
    let obs = m.obs;
    let revision = obs.template_revision.as_str();
    if m.s.canary_revision.as_deref() != Some(revision) {
        let old = m.s.canary_revision.clone().unwrap_or_default();
        if m.s.stable_revision.as_deref() == Some(revision) {
            m.s.phase = Phase::Waiting;
            m.s.weight = 0;
            m.s.matches.clear();
            m.s.canary_replicas = None;
            m.event(
                EventKind::Superseded,
                format!(
                    "the Deployment's template went back to the stable revision {revision}: revision {old} is withdrawn"
                ),
            );
            return;
        }
        m.start(revision, Some(old));
        return;
    }
    if let Some(request) = &obs.request {
        m.request_done = true;
        if request.action == RequestAction::Abort {
            let why = if request.reason.is_empty() {
                "abort requested".to_string()
            } else {
                request.reason.clone()
            };
            m.abort(why);
            return;
        }
    }
    if let Some((due, outcome)) = &obs.analysis
        && !m.record(*due, outcome)
    {
        return;
    }
    if !m.periodic_gates() {
        return;
    }
    if m.s.phase == Phase::Promoting {
        if obs.stable_rolled {
            m.succeed();
        } else if since(obs.now, m.s.promoting_since) > m.plan.progress_deadline
            && !m.s.message.starts_with("stalled")
        {
            m.event(
                EventKind::Stalled,
                format!(
                    "stalled: the stable Deployment has not finished rolling to the new revision after {}s; traffic stays on the canary",
                    m.plan.progress_deadline.as_secs()
                ),
            );
        }
        return;
    }
    if let Some(request) = &obs.request {
        match request.action {
            RequestAction::PromoteFull => {
                m.promote();
                return;
            }
            RequestAction::Promote => {
                if m.s.step_started_at.is_some() {
                    m.advance();
                    if m.s.phase == Phase::Paused && !held(m.plan, &m.s, obs.paused) {
                        m.s.phase = Phase::Progressing;
                    }
                }
            }
            RequestAction::Abort => {}
        }
    }
    if obs.paused {
        if m.s.phase != Phase::Paused {
            m.s.phase = Phase::Paused;
            m.event(EventKind::Paused, format!("paused at {}", m.step_name()));
        }
        return;
    }
    if m.s.phase == Phase::Paused {
        if held(m.plan, &m.s, false) {
            return;
        }
        m.s.phase = Phase::Progressing;
        m.event(EventKind::Resumed, format!("resumed at {}", m.step_name()));
    }
    m.progress();
}

fn requeue(plan: &Plan, s: &State, now: DateTime<Utc>) -> Duration {
    let clamp = |d: Duration| d.clamp(Duration::from_secs(1), Duration::from_secs(60));
    match s.phase {
        Phase::Progressing => {
            let Some(planned) = plan.steps.get(s.current_step as usize) else {
                return match s.gate_retry_at {
                    Some(t) if t > now => clamp(since(t, Some(now))),
                    _ => Duration::from_secs(1),
                };
            };
            let Some(started) = s.step_started_at else {
                return match s.gate_retry_at {
                    Some(t) if t > now => clamp(since(t, Some(now))),
                    _ if confirm_gates(plan) => Duration::from_secs(1),
                    _ => POLL,
                };
            };
            let mut next = after(started, planned.min_duration.max(planned.interval));
            if let Step::Pause { duration: Some(d) } = planned.step {
                next = after(started, d);
            }
            if let Some(due) = analysis_due_at(plan, s) {
                next = next.min(due);
            }
            clamp(since(next, Some(now)).max(Duration::from_secs(1)))
        }
        Phase::Paused => analysis_due_at(plan, s)
            .map_or(Duration::from_secs(60), |due| clamp(since(due, Some(now)))),
        Phase::Promoting => POLL,
        Phase::Failed => match s.aborted_at {
            Some(t) if now < after(t, plan.abort_scale_down_delay) => {
                clamp(since(after(t, plan.abort_scale_down_delay), Some(now)))
            }
            _ => IDLE,
        },
        _ => IDLE,
    }
}

/// Whether a gate may be waiting to be asked before a step begins.
fn confirm_gates(plan: &Plan) -> bool {
    plan.gates.iter().any(|k| {
        matches!(
            k,
            GateKind::PreRollout | GateKind::ConfirmTrafficIncrease | GateKind::ConfirmPromotion
        )
    })
}

fn analysis_due_at(plan: &Plan, s: &State) -> Option<DateTime<Utc>> {
    let planned = plan.steps.get(s.current_step as usize)?;
    let start = s.step_started_at?;
    let last = s.last_analysis_at.filter(|t| *t >= start);
    Some(after(last.unwrap_or(start), planned.interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{HeaderMatch, Match, PlannedStep, Request};
    use chrono::TimeZone;

    const MIN: Duration = Duration::from_secs(60);

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
    }

    fn plan() -> Plan {
        Plan::from_weights(&[10, 50, 100], MIN)
    }

    fn obs(now: i64, rev: &str, available: i32) -> Observation {
        Observation {
            now: t(now),
            template_revision: rev.into(),
            target_replicas: 4,
            canary_available: available,
            stable_rolled: false,
            paused: false,
            request: None,
            analysis: None,
            gates: Vec::new(),
        }
    }

    fn waiting() -> State {
        State {
            phase: Phase::Waiting,
            stable_revision: Some("r1".into()),
            ..State::default()
        }
    }

    /// A rollout of r2 at step `step` (begun at `started`), weight `weight`.
    fn at_step(step: u32, weight: u8, started: i64) -> State {
        State {
            phase: Phase::Progressing,
            stable_revision: Some("r1".into()),
            canary_revision: Some("r2".into()),
            current_step: step,
            steps: 3,
            weight,
            stable_replicas: Some(4),
            started_at: Some(t(0)),
            step_started_at: Some(t(started)),
            traffic_since: Some(t(0)),
            ..State::default()
        }
    }

    fn with_analysis(
        mut o: Observation,
        state: &State,
        plan: &Plan,
        outcome: AnalysisOutcome,
    ) -> Observation {
        let due = analysis_due(plan, state, o.now).expect("an analysis is due");
        o.analysis = Some((due, outcome));
        o
    }

    fn pass() -> AnalysisOutcome {
        AnalysisOutcome::Pass {
            summary: "all metrics within tolerance".into(),
        }
    }
    fn fail(critical: bool) -> AnalysisOutcome {
        AnalysisOutcome::Fail {
            summary: "error-rate x3".into(),
            critical,
        }
    }
    fn inconclusive() -> AnalysisOutcome {
        AnalysisOutcome::Inconclusive {
            summary: "too few requests".into(),
        }
    }
    fn error() -> AnalysisOutcome {
        AnalysisOutcome::Error {
            message: "Prometheus unreachable".into(),
        }
    }
    fn request(action: RequestAction) -> Option<Request> {
        Some(Request {
            action,
            reason: String::new(),
            at: t(0),
        })
    }
    fn kinds(d: &Decision) -> Vec<EventKind> {
        d.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn adopts_the_target_and_pauses_it() {
        let d = decide(&plan(), &State::default(), &obs(0, "r1", 0));
        assert_eq!(d.state.phase, Phase::Waiting);
        assert_eq!(d.state.stable_revision.as_deref(), Some("r1"));
        assert_eq!(kinds(&d), [EventKind::Adopted]);
        assert!(d.world.stable_paused);
        assert_eq!(d.world.canary, None);
        assert_eq!(d.world.weight, 0);
    }

    #[test]
    fn nothing_happens_while_the_template_is_the_stable_one() {
        let d = decide(&plan(), &waiting(), &obs(0, "r1", 0));
        assert_eq!(
            d.state,
            State {
                steps: 3,
                ..waiting()
            }
        );
        assert!(d.events.is_empty());
    }

    #[test]
    fn a_new_template_starts_a_canary_and_waits_for_it() {
        let d = decide(&plan(), &waiting(), &obs(0, "r2", 0));
        assert_eq!(d.state.phase, Phase::Progressing);
        assert_eq!(d.state.canary_revision.as_deref(), Some("r2"));
        assert_eq!(d.state.weight, 0);
        assert_eq!(d.state.step_started_at, None);
        assert_eq!(d.state.stable_replicas, Some(4));
        assert_eq!(kinds(&d), [EventKind::Started]);
        assert_eq!(
            d.world.canary,
            Some(CanaryWorld {
                revision: "r2".into(),
                replicas: 4
            })
        );
        assert_eq!(d.world.weight, 0);
        assert!(
            d.world.pin_stable,
            "stable Service must not select canary pods"
        );
        assert_eq!(d.requeue, POLL);
    }

    #[test]
    fn the_first_weight_is_set_once_the_canary_is_available() {
        let started = decide(&plan(), &waiting(), &obs(0, "r2", 0)).state;
        let d = decide(&plan(), &started, &obs(5, "r2", 4));
        assert_eq!(d.state.weight, 10);
        assert_eq!(d.state.current_step, 0);
        assert_eq!(d.state.step_started_at, Some(t(5)));
        assert_eq!(d.state.traffic_since, Some(t(5)));
        assert_eq!(d.world.weight, 10);
        assert_eq!(kinds(&d), [EventKind::StepAdvanced]);
    }

    #[test]
    fn a_weight_step_holds_until_an_interval_and_a_passing_analysis() {
        let p = plan();
        let s = at_step(0, 10, 0);
        assert_eq!(analysis_due(&p, &s, t(30)), None, "not before one interval");
        let d = decide(&p, &s, &obs(30, "r2", 4));
        assert_eq!((d.state.current_step, d.state.weight), (0, 10));
        let due = analysis_due(&p, &s, t(60)).unwrap();
        // The window starts one interval before the canary's traffic: the stable's baseline.
        assert_eq!(
            (due.scope, due.from, due.to, due.look),
            (AnalysisScope::Background, t(-60), t(60), 1)
        );
        // A pass leads to the next weight step, 50%; the step began with the traffic.
        assert_eq!(
            due.position,
            StepPosition {
                next_weight: 50,
                step: 1,
                step_start: t(0),
                weight: Some(10),
            }
        );
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.current_step, d.state.weight), (1, 50));
        assert_eq!(d.state.looks, 1);
        assert_eq!(d.state.last_verdict.as_deref(), Some("pass"));
        assert_eq!(d.state.analyses.len(), 1);
        assert_eq!(d.state.step_started_at, Some(t(60)));
    }

    #[test]
    fn a_passing_analysis_before_the_minimum_duration_waits_for_it() {
        let mut p = plan();
        p.steps[0].min_duration = Duration::from_secs(300);
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.current_step, 0);
        assert!(d.state.step_passed);
        let d = decide(&p, &d.state, &obs(300, "r2", 4));
        assert_eq!(d.state.current_step, 1);
    }

    #[test]
    fn one_failed_analysis_aborts_by_default() {
        let p = plan();
        let s = at_step(1, 50, 0);
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(60, "r2", 4), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase, Phase::Failed);
        assert_eq!(d.state.weight, 0);
        assert_eq!(d.state.failed_revision.as_deref(), Some("r2"));
        assert_eq!(kinds(&d), [EventKind::AnalysisFailed, EventKind::Aborted]);
        assert!(
            d.state.message.contains("error-rate x3"),
            "{}",
            d.state.message
        );
        assert_eq!(d.world.weight, 0);
        assert!(d.world.stable_paused);
        // The canary keeps its replicas for abortScaleDownDelay, then scales to zero.
        assert_eq!(d.world.canary.as_ref().unwrap().replicas, 4);
        assert!(d.world.pin_stable);
        let later = desired(&p, &d.state, 4, t(60 + 31));
        assert_eq!(later.canary.unwrap().replicas, 0);
        assert!(!later.pin_stable);
    }

    #[test]
    fn failures_below_the_limit_hold_and_count() {
        let mut p = plan();
        p.failure_limit = 2;
        let s = at_step(0, 10, 0);
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(60, "r2", 4), &s, &p, fail(false)),
        );
        assert_eq!(
            (d.state.phase, d.state.failed_checks, d.state.current_step),
            (Phase::Progressing, 1, 0)
        );
        let s = d.state;
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(120, "r2", 4), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase, Phase::Failed);
    }

    #[test]
    fn a_failing_critical_metric_aborts_at_once() {
        let mut p = plan();
        p.failure_limit = 5;
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, fail(true)));
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(d.state.message.contains("critical"));
    }

    #[test]
    fn inconclusive_holds_and_its_limit_aborts() {
        let mut p = plan();
        let s = at_step(0, 10, 0);
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(60, "r2", 4), &s, &p, inconclusive()),
        );
        assert_eq!(
            (d.state.phase, d.state.current_step, d.state.weight),
            (Phase::Progressing, 0, 10)
        );
        assert_eq!(d.state.inconclusive_checks, 1);
        p.inconclusive_limit = 2;
        let s = d.state;
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(120, "r2", 4), &s, &p, inconclusive()),
        );
        assert_eq!(d.state.phase, Phase::Failed);
    }

    #[test]
    fn errors_hold_never_promote_and_abort_at_the_consecutive_limit() {
        let mut p = plan();
        p.consecutive_error_limit = 2;
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, error()));
        assert_eq!(
            (
                d.state.phase,
                d.state.current_step,
                d.state.consecutive_errors
            ),
            (Phase::Progressing, 0, 1)
        );
        assert!(!d.state.step_passed);
        // A pass in between resets the count.
        let s = d.state;
        let d = decide(&p, &s, &with_analysis(obs(120, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.consecutive_errors, 0);
        let mut s = d.state;
        s.current_step = 0;
        s.step_started_at = Some(t(120));
        let d = decide(&p, &s, &with_analysis(obs(180, "r2", 4), &s, &p, error()));
        let s = d.state;
        let d = decide(&p, &s, &with_analysis(obs(240, "r2", 4), &s, &p, error()));
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(d.state.message.contains("could not run 2 times"));
    }

    #[test]
    fn spec_paused_holds_and_resume_continues() {
        let p = plan();
        let s = at_step(0, 10, 0);
        let mut o = obs(120, "r2", 4);
        o.paused = true;
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase, Phase::Paused);
        assert_eq!(kinds(&d), [EventKind::Paused]);
        assert_eq!(d.world.weight, 10, "pausing keeps the traffic where it is");
        let paused = d.state;
        // Analyses keep running while paused, and a failure still aborts.
        let d = decide(
            &p,
            &paused,
            &with_analysis(o.clone(), &paused, &p, fail(false)),
        );
        assert_eq!(d.state.phase, Phase::Failed);
        // Resume.
        let d = decide(
            &p,
            &paused,
            &with_analysis(obs(120, "r2", 4), &paused, &p, pass()),
        );
        assert_eq!(d.state.phase, Phase::Progressing);
        assert_eq!(kinds(&d), [EventKind::Resumed, EventKind::StepAdvanced]);
        assert_eq!(d.state.weight, 50);
    }

    #[test]
    fn a_pause_step_without_duration_waits_for_promote() {
        let mut p = plan();
        p.steps.insert(
            1,
            PlannedStep {
                step: Step::Pause { duration: None },
                interval: MIN,
                min_duration: Duration::ZERO,
            },
        );
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.phase, d.state.current_step), (Phase::Paused, 1));
        let d = decide(&p, &d.state, &obs(4000, "r2", 4));
        assert_eq!(
            (d.state.phase, d.state.current_step),
            (Phase::Paused, 1),
            "no timeout"
        );
        let mut o = obs(4000, "r2", 4);
        o.request = request(RequestAction::Promote);
        let d = decide(&p, &d.state, &o);
        assert!(d.request_done);
        assert_eq!(
            (d.state.phase, d.state.current_step, d.state.weight),
            (Phase::Progressing, 2, 50)
        );
    }

    #[test]
    fn a_timed_pause_step_ends_by_itself() {
        let mut p = plan();
        p.steps.insert(
            1,
            PlannedStep {
                step: Step::Pause {
                    duration: Some(Duration::from_secs(600)),
                },
                interval: MIN,
                min_duration: Duration::ZERO,
            },
        );
        let mut s = at_step(1, 10, 100);
        s.last_analysis_at = Some(t(650));
        assert_eq!(decide(&p, &s, &obs(650, "r2", 4)).state.current_step, 1);
        assert_eq!(decide(&p, &s, &obs(700, "r2", 4)).state.current_step, 2);
    }

    #[test]
    fn promote_skips_a_gate_and_promote_full_skips_the_rest() {
        let p = plan();
        let s = at_step(0, 10, 0);
        let mut o = obs(10, "r2", 4);
        o.request = request(RequestAction::Promote);
        let d = decide(&p, &s, &o);
        assert_eq!((d.state.current_step, d.state.weight), (1, 50));
        o.request = request(RequestAction::PromoteFull);
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase, Phase::Promoting);
        assert!(!d.world.stable_paused);
        assert!(!d.world.pin_stable);
        assert!(d.request_done);
    }

    #[test]
    fn abort_request_rolls_back() {
        let mut o = obs(10, "r2", 4);
        o.request = Some(Request {
            action: RequestAction::Abort,
            reason: "alert HighErrorRate firing".into(),
            at: t(9),
        });
        let d = decide(&plan(), &at_step(1, 50, 0), &o);
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(d.state.message.contains("HighErrorRate"));
        assert_eq!(d.world.weight, 0);
        assert!(d.request_done);
    }

    #[test]
    fn requests_outside_a_rollout_are_consumed_and_ignored() {
        let mut o = obs(10, "r1", 0);
        o.request = request(RequestAction::Abort);
        let d = decide(&plan(), &waiting(), &o);
        assert!(d.request_done);
        assert_eq!(d.state.phase, Phase::Waiting);
    }

    #[test]
    fn a_new_revision_mid_rollout_starts_over() {
        let d = decide(&plan(), &at_step(1, 50, 0), &obs(10, "r3", 4));
        assert_eq!(d.state.canary_revision.as_deref(), Some("r3"));
        assert_eq!((d.state.current_step, d.state.weight), (0, 0));
        assert_eq!(kinds(&d), [EventKind::Superseded]);
        assert_eq!(d.world.weight, 0);
        assert_eq!(d.world.canary.unwrap().revision, "r3");
    }

    #[test]
    fn the_template_going_back_to_stable_withdraws_the_canary() {
        let d = decide(&plan(), &at_step(1, 50, 0), &obs(10, "r1", 4));
        assert_eq!(d.state.phase, Phase::Waiting);
        assert_eq!(d.world.canary, None);
        assert_eq!(d.world.weight, 0);
    }

    #[test]
    fn a_canary_that_never_becomes_available_is_aborted_at_the_deadline() {
        let started = decide(&plan(), &waiting(), &obs(0, "r2", 0)).state;
        let d = decide(&plan(), &started, &obs(599, "r2", 1));
        assert_eq!(d.state.phase, Phase::Progressing);
        assert!(d.state.message.contains("1 of 4"), "{}", d.state.message);
        let d = decide(&plan(), &started, &obs(601, "r2", 1));
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(d.state.message.contains("progress deadline"));
    }

    #[test]
    fn promotion_waits_for_the_stable_rollout_then_cleans_up() {
        let p = plan();
        let s = at_step(2, 100, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.phase, Phase::Promoting);
        assert_eq!(d.world.weight, 100);
        assert!(!d.world.stable_paused);
        let promoting = d.state;
        let d = decide(&p, &promoting, &obs(100, "r2", 4));
        assert_eq!(d.state.phase, Phase::Promoting);
        let d = decide(&p, &promoting, &obs(60 + 601, "r2", 4));
        assert_eq!(kinds(&d), [EventKind::Stalled]);
        assert_eq!(
            decide(&p, &d.state, &obs(700, "r2", 4)).events,
            vec![],
            "stalled is said once"
        );
        let mut o = obs(120, "r2", 4);
        o.stable_rolled = true;
        let d = decide(&p, &promoting, &o);
        assert_eq!(d.state.phase, Phase::Succeeded);
        assert_eq!(d.state.stable_revision.as_deref(), Some("r2"));
        assert_eq!(
            d.world,
            World {
                stable_paused: true,
                stable_replicas: None,
                canary: None,
                weight: 0,
                matches: vec![],
                pin_stable: false
            }
        );
        assert_eq!(kinds(&d), [EventKind::Succeeded]);
    }

    #[test]
    fn a_failed_revision_is_not_retried_but_the_next_one_is() {
        let mut s = at_step(1, 50, 0);
        s.phase = Phase::Failed;
        s.failed_revision = Some("r2".into());
        s.aborted_at = Some(t(0));
        let d = decide(&plan(), &s, &obs(1000, "r2", 0));
        assert_eq!(d.state.phase, Phase::Failed);
        let d = decide(&plan(), &s, &obs(1000, "r3", 0));
        assert_eq!(d.state.phase, Phase::Progressing);
        assert_eq!(d.state.canary_revision.as_deref(), Some("r3"));
    }

    #[test]
    fn deciding_again_from_the_same_status_repeats_nothing() {
        // A controller that restarts re-reads status and re-observes: same decision, same
        // world, no second traffic change.
        let p = plan();
        let s = at_step(0, 10, 0);
        let o = with_analysis(obs(60, "r2", 4), &s, &p, pass());
        let first = decide(&p, &s, &o);
        assert_eq!(first, decide(&p, &s, &o));
        // After the status write, a restart sees the new state: it does not advance again.
        let again = decide(&p, &first.state, &obs(61, "r2", 4));
        assert_eq!((again.state.current_step, again.state.weight), (1, 50));
        assert!(again.events.is_empty());
        assert_eq!(again.world, first.world);
    }

    #[test]
    fn replicas_follow_the_weight_and_scale_before_traffic_moves() {
        let mut p = plan();
        p.scale_with_weight = true;
        let started = decide(&p, &waiting(), &obs(0, "r2", 0));
        assert_eq!(
            started.world.canary.as_ref().unwrap().replicas,
            1,
            "10% of 4"
        );
        let s = decide(&p, &started.state, &obs(5, "r2", 1)).state;
        assert_eq!(s.weight, 10);
        let d = decide(&p, &s, &with_analysis(obs(65, "r2", 1), &s, &p, pass()));
        // Step 2 (50%) waits for 2 canary replicas before moving traffic.
        assert_eq!(
            (
                d.state.current_step,
                d.state.weight,
                d.state.step_started_at
            ),
            (1, 10, None)
        );
        assert_eq!(d.world.canary.as_ref().unwrap().replicas, 2);
        assert_eq!(d.world.weight, 10);
        let d = decide(&p, &d.state, &obs(70, "r2", 2));
        assert_eq!((d.state.weight, d.world.canary.unwrap().replicas), (50, 2));
    }

    #[test]
    fn the_replicas_router_splits_the_stable_replicas() {
        let mut p = plan();
        p.replicas_router = true;
        let s = at_step(1, 50, 0);
        let w = desired(&p, &s, 2, t(0));
        assert_eq!(
            (w.canary.unwrap().replicas, w.stable_replicas),
            (2, Some(2)),
            "uses the recorded 4, not the scaled-down 2"
        );
        let s = at_step(2, 100, 0);
        assert_eq!(desired(&p, &s, 0, t(0)).stable_replicas, Some(0));
        let mut promoting = s.clone();
        promoting.phase = Phase::Promoting;
        assert_eq!(
            desired(&p, &promoting, 0, t(0)).stable_replicas,
            Some(4),
            "restored to promote"
        );
    }

    #[test]
    fn skip_analysis_advances_on_time_alone() {
        let mut p = plan();
        p.skip_analysis = true;
        let s = at_step(0, 10, 0);
        assert_eq!(analysis_due(&p, &s, t(600)), None);
        assert_eq!(decide(&p, &s, &obs(59, "r2", 4)).state.current_step, 0);
        assert_eq!(decide(&p, &s, &obs(60, "r2", 4)).state.current_step, 1);
    }

    #[test]
    fn an_analysis_step_judges_its_own_window() {
        let mut p = plan();
        p.steps.insert(
            1,
            PlannedStep {
                step: Step::Analysis,
                interval: Duration::from_secs(120),
                min_duration: Duration::ZERO,
            },
        );
        let mut s = at_step(1, 10, 300);
        s.last_analysis_at = Some(t(280));
        assert_eq!(analysis_due(&p, &s, t(419)), None);
        let due = analysis_due(&p, &s, t(420)).unwrap();
        assert_eq!((due.scope, due.from), (AnalysisScope::Step(1), t(180)));
        assert_eq!((due.position.step_start, due.position.step), (t(300), 2));
        let d = decide(&p, &s, &with_analysis(obs(420, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.current_step, d.state.weight), (2, 50));
    }

    #[test]
    fn a_match_step_routes_by_header_and_the_next_weight_clears_it() {
        let mut p = plan();
        let m = Match {
            header: Some(HeaderMatch {
                name: "X-Canary".into(),
                exact: Some("yes".into()),
                regex: None,
            }),
            cookie: None,
        };
        p.steps.insert(
            0,
            PlannedStep {
                step: Step::Match {
                    matches: vec![m.clone()],
                },
                interval: MIN,
                min_duration: MIN,
            },
        );
        let started = decide(&p, &waiting(), &obs(0, "r2", 0)).state;
        let started = decide(&p, &started, &obs(0, "r2", 4)).state;
        assert_eq!((started.weight, &started.matches), (0, &vec![m.clone()]));
        assert_eq!(desired(&p, &started, 4, t(0)).matches, vec![m]);
        let d = decide(
            &p,
            &started,
            &with_analysis(obs(60, "r2", 4), &started, &p, pass()),
        );
        assert_eq!((d.state.weight, d.state.matches.len()), (10, 0));
    }

    #[test]
    fn a_whole_rollout_applies_each_weight_once_and_in_order() {
        let mut p = plan();
        p.scale_with_weight = true;
        let mut state = decide(&p, &State::default(), &obs(0, "r1", 0)).state;
        let mut now = 10;
        let mut weights = Vec::new();
        let mut available = 0;
        let mut rolled = false;
        for _ in 0..200 {
            let mut o = obs(now, "r2", available);
            o.stable_rolled = rolled;
            if let Some(due) = analysis_due(&p, &state, t(now)) {
                o.analysis = Some((due, pass()));
            }
            let d = decide(&p, &state, &o);
            if weights.last() != Some(&d.world.weight) {
                weights.push(d.world.weight);
            }
            available = d.world.canary.as_ref().map_or(0, |c| c.replicas);
            rolled = !d.world.stable_paused;
            state = d.state;
            if state.phase == Phase::Succeeded {
                break;
            }
            now += d.requeue.as_secs() as i64;
        }
        assert_eq!(state.phase, Phase::Succeeded);
        assert_eq!(weights, [0, 10, 50, 100, 0]);
        assert_eq!(state.looks, 3);
        assert_eq!(state.stable_revision.as_deref(), Some("r2"));
    }

    fn gate(kind: GateKind, passed: bool) -> crate::rollout::GateResult {
        crate::rollout::GateResult {
            kind,
            passed,
            message: format!("hook answered {}", if passed { 200 } else { 403 }),
        }
    }

    fn gated(kinds: &[GateKind]) -> Plan {
        let mut p = plan();
        p.gates = kinds.to_vec();
        p
    }

    #[test]
    fn a_pre_rollout_gate_is_asked_before_the_first_shift_and_a_refusal_aborts() {
        let p = gated(&[GateKind::PreRollout]);
        let started = decide(&p, &waiting(), &obs(0, "r2", 0)).state;
        assert!(
            gates_due(&p, &started, &obs(1, "r2", 0)).is_empty(),
            "not before the canary is ready"
        );
        let o = obs(1, "r2", 4);
        assert_eq!(gates_due(&p, &started, &o), [GateKind::PreRollout]);
        let d = decide(&p, &started, &o);
        assert_eq!(d.state.weight, 0, "no traffic before the gate answered");
        let mut o = obs(2, "r2", 4);
        o.gates = vec![gate(GateKind::PreRollout, true)];
        assert_eq!(decide(&p, &started, &o).state.weight, 10);
        o.gates = vec![gate(GateKind::PreRollout, false)];
        let d = decide(&p, &started, &o);
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(
            d.state.message.contains("pre-rollout"),
            "{}",
            d.state.message
        );
    }

    #[test]
    fn a_refused_confirm_promotion_holds_and_asks_again_next_interval() {
        let p = gated(&[GateKind::ConfirmPromotion]);
        let s = at_step(2, 100, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!(
            (d.state.phase, d.state.current_step),
            (Phase::Progressing, 3),
            "held before promotion"
        );
        let held = d.state;
        let o = obs(61, "r2", 4);
        assert_eq!(gates_due(&p, &held, &o), [GateKind::ConfirmPromotion]);
        let mut o = obs(61, "r2", 4);
        o.gates = vec![gate(GateKind::ConfirmPromotion, false)];
        let d = decide(&p, &held, &o);
        assert_eq!(d.state.phase, Phase::Progressing);
        assert_eq!(kinds(&d), [EventKind::Stalled]);
        assert!(d.state.message.contains("403"));
        let refused = d.state;
        assert!(
            gates_due(&p, &refused, &obs(100, "r2", 4)).is_empty(),
            "not again before an interval"
        );
        assert_eq!(
            gates_due(&p, &refused, &obs(121, "r2", 4)),
            [GateKind::ConfirmPromotion]
        );
        let mut o = obs(121, "r2", 4);
        o.gates = vec![gate(GateKind::ConfirmPromotion, true)];
        assert_eq!(decide(&p, &refused, &o).state.phase, Phase::Promoting);
    }

    #[test]
    fn a_refused_traffic_increase_keeps_the_weight() {
        let p = gated(&[GateKind::ConfirmTrafficIncrease]);
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.current_step, d.state.weight), (1, 10));
        let mut o = obs(61, "r2", 4);
        assert_eq!(
            gates_due(&p, &d.state, &o),
            [GateKind::ConfirmTrafficIncrease]
        );
        o.gates = vec![gate(GateKind::ConfirmTrafficIncrease, false)];
        let held = decide(&p, &d.state, &o);
        assert_eq!(held.state.weight, 10);
        o.gates = vec![gate(GateKind::ConfirmTrafficIncrease, true)];
        assert_eq!(decide(&p, &d.state, &o).state.weight, 50);
    }

    #[test]
    fn rollout_gates_count_as_checks_and_rollback_gates_abort() {
        let mut p = gated(&[GateKind::Rollout, GateKind::Rollback]);
        p.failure_limit = 2;
        let s = at_step(0, 10, 0);
        assert!(gates_due(&p, &s, &obs(30, "r2", 4)).is_empty());
        assert_eq!(
            gates_due(&p, &s, &obs(60, "r2", 4)),
            [GateKind::Rollout, GateKind::Rollback]
        );
        let mut o = obs(60, "r2", 4);
        o.gates = vec![
            gate(GateKind::Rollout, false),
            gate(GateKind::Rollback, false),
        ];
        let d = decide(&p, &s, &o);
        assert_eq!(
            (d.state.phase, d.state.failed_checks),
            (Phase::Progressing, 1)
        );
        assert_eq!(d.state.last_gate_at, Some(t(60)));
        assert!(gates_due(&p, &d.state, &obs(90, "r2", 4)).is_empty());
        o.gates = vec![gate(GateKind::Rollback, true)];
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase, Phase::Failed);
        assert!(d.state.message.contains("rollback webhook"));
    }

    #[test]
    fn status_round_trips_through_json() {
        let s = at_step(1, 50, 0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["phase"], "Progressing");
        assert_eq!(json["currentStep"], 1);
        let back: State = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}
