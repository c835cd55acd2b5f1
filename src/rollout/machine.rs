//! The decisions: [`analysis_due`], [`decide`] and [`desired`]. All three are pure.

use super::{
    AnalysisDue, AnalysisOutcome, AnalysisRecord, AnalysisScope, Attempt, Bake, CanaryWorld,
    Decision, Event, EventKind, Flight, GateKind, KEPT_ANALYSES, Observation, Plan, Promotion,
    RequestAction, STALLED, Size, Stage, State, Step, StepPosition, StepState, Strategy, World,
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

/// Whether the flight holds for `spec.paused` or an open-ended pause step.
fn held(plan: &Plan, f: &Flight, spec_paused: bool) -> bool {
    spec_paused
        || (f.step.began().is_some()
            && matches!(
                plan.steps
                    .get(f.release.current_step as usize)
                    .map(|s| &s.step),
                Some(Step::Pause { duration: None })
            ))
}

/// Which analysis should run now, if any. The controller runs it and passes the outcome in
/// [`Observation::analysis`].
pub fn analysis_due(plan: &Plan, state: &State, now: DateTime<Utc>) -> Option<AnalysisDue> {
    if plan.skip_analysis {
        return None;
    }
    if let Stage::Baking(b) = &state.stage {
        return bake_due(plan, b, now);
    }
    let f = state.flight()?;
    let index = f.release.current_step as usize;
    let planned = plan.steps.get(index)?;
    let step_start = f.step.began()?;
    // An analysis step runs whether users reach the canary or not: before any traffic (a
    // blue-green preview) it judges the test or mirrored traffic sent to the canary Service.
    // The background analysis needs users' traffic on the canary.
    let (scope, since) = match planned.step {
        Step::Analysis => (AnalysisScope::Step(index), step_start),
        _ if plan.background_analysis() && f.traffic.flows() => {
            (AnalysisScope::Background, f.traffic_since?)
        }
        _ => return None,
    };
    // After a blue-green switch the old version serves nobody: the new one is judged from
    // the switch on against the old one's requests before it.
    let baseline_before = (scope == AnalysisScope::Background
        && plan.strategy == Strategy::BlueGreen
        && f.traffic.weight == 100)
        .then_some(since);
    // One interval of the stable alone before the canary's traffic: the stable's latency
    // there sets the first interval's comparison bounds, fixed before the canary's data.
    let from = match baseline_before {
        Some(switch) => switch,
        None => before(since, planned.interval),
    };
    let last = f.last_analysis_at.filter(|t| *t >= step_start);
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
        look: f.release.looks + 1,
        position: StepPosition {
            next_weight,
            step: f.release.current_step + 1,
            step_start,
            // With replica counts as the router, the share follows the pods and their load,
            // not the weight: no split check.
            weight: (plan.check_split && !plan.replicas_router && f.traffic.matches.is_empty())
                .then_some(f.traffic.weight),
        },
        baseline_before,
    })
}

/// When the bake's next analysis is due: an interval (the last step's) after the last one,
/// or after the bake began.
fn bake_due_at(plan: &Plan, b: &Bake) -> DateTime<Utc> {
    after(
        b.last_analysis_at.unwrap_or(b.since),
        plan.interval_at(plan.steps.len()),
    )
}

/// The bake's analysis, when one is due: the promoted version (now the stable Deployment's)
/// since the promotion, against the old version's requests before the release began.
fn bake_due(plan: &Plan, b: &Bake, now: DateTime<Utc>) -> Option<AnalysisDue> {
    if b.rollback.is_some() || !plan.analyses.contains_key(&AnalysisScope::Bake) {
        return None;
    }
    (now >= bake_due_at(plan, b)).then_some(AnalysisDue {
        scope: AnalysisScope::Bake,
        from: b.since,
        to: now,
        look: b.release.looks + 1,
        position: StepPosition {
            next_weight: 100,
            step: plan.steps.len() as u32,
            step_start: b.since,
            weight: None,
        },
        baseline_before: Some(b.release.started_at),
    })
}

/// Which release gates should be asked now. The controller calls their webhooks and
/// passes the answers in [`Observation::gates`].
pub fn gates_due(plan: &Plan, state: &State, obs: &Observation) -> Vec<GateKind> {
    let has = |k: GateKind| plan.gates.contains(&k);
    let mut due = Vec::new();
    let Some(f) = state.flight() else {
        if has(GateKind::ConfirmRollout) && new_revision(state, obs) {
            due.push(GateKind::ConfirmRollout);
        }
        return due;
    };
    let now = obs.now;
    let index = f.release.current_step as usize;
    // rollout and rollback: once per interval while the canary has traffic.
    if let (Some(planned), Some(start)) = (plan.steps.get(index), f.step.began())
        && f.traffic.flows()
    {
        let last = f.last_gate_at.filter(|t| *t >= start);
        if now >= after(last.unwrap_or(start), planned.interval) {
            due.extend(
                [GateKind::Rollout, GateKind::Rollback]
                    .into_iter()
                    .filter(|k| has(*k)),
            );
        }
    }
    let StepState::Pending { gate_retry_at, .. } = f.step else {
        return due;
    };
    if f.paused || obs.paused || gate_retry_at.is_some_and(|t| now < t) {
        return due;
    }
    match plan.steps.get(index) {
        None => {
            if has(GateKind::ConfirmPromotion) {
                due.push(GateKind::ConfirmPromotion);
            }
        }
        Some(planned) => {
            let ready = obs.canary_available >= canary_replicas(plan, f, obs.size());
            if ready {
                if sends_traffic(&planned.step)
                    && f.traffic_since.is_none()
                    && has(GateKind::PreRollout)
                {
                    due.push(GateKind::PreRollout);
                }
                if increases(&planned.step, f.traffic.weight)
                    && has(GateKind::ConfirmTrafficIncrease)
                {
                    due.push(GateKind::ConfirmTrafficIncrease);
                }
            }
        }
    }
    due
}

/// Whether an idle Release (waiting, succeeded or failed) sees a revision to start a canary
/// of: neither the stable one nor the one that failed last.
fn new_revision(state: &State, obs: &Observation) -> bool {
    let revision = obs.template_revision.as_str();
    matches!(
        state.stage,
        Stage::Waiting { .. } | Stage::Succeeded(_) | Stage::Failed { .. }
    ) && state.stable_revision.as_deref() != Some(revision)
        && state.failed_revision() != Some(revision)
}

fn sends_traffic(step: &Step) -> bool {
    matches!(step, Step::Weight { weight } if *weight > 0)
        || matches!(step, Step::Match { .. } | Step::Mirror { .. })
}

fn increases(step: &Step, weight: u8) -> bool {
    matches!(step, Step::Weight { weight: w } if *w > weight)
}

/// The replica count the release's traffic is sized on: the autoscaler's for stable now,
/// else the one the release recorded at its start, else the target's now.
fn total(release: &Attempt, size: Size) -> i32 {
    match size.autoscaler {
        Some(_) => size.replicas,
        None => release.stable_replicas.unwrap_or(size.replicas),
    }
}

/// The canary's replica count for a traffic share.
fn replicas_for(plan: &Plan, release: &Attempt, size: Size, weight: u8) -> i32 {
    if let Some(n) = release.canary_replicas {
        return n;
    }
    let total = total(release, size);
    let ceil = |x: f64| x.ceil() as i32;
    match size.autoscaler {
        // The autoscaler keeps stable's pods, so the canary's share of all pods is its
        // weight when it has weight/(100-weight) times stable's; within the HPA's maximum.
        Some(hpa) if plan.replicas_router => {
            let w = f64::from(weight.min(100));
            let n = match weight {
                100.. => total,
                _ => ceil(f64::from(total) * w / (100.0 - w)),
            };
            n.clamp(1, hpa.max.max(1))
        }
        _ if plan.scale_with_weight || plan.replicas_router => {
            ceil(f64::from(total) * f64::from(weight) / 100.0).clamp(1, total.max(1))
        }
        _ => total.max(1),
    }
}

/// The weight the canary's replicas are sized for: the next weight step's while it waits to
/// begin (scale first, then shift traffic), the applied weight otherwise.
fn sizing_weight(plan: &Plan, f: &Flight) -> u8 {
    let next = match plan
        .steps
        .get(f.release.current_step as usize)
        .map(|s| &s.step)
    {
        Some(Step::Weight { weight }) => Some(*weight),
        // Mirrored requests load the canary as served ones would.
        Some(Step::Mirror { percent }) => Some(*percent),
        _ => None,
    };
    let now = f.traffic.weight.max(f.traffic.mirror.unwrap_or(0));
    match next {
        Some(next) if f.step.began().is_none() && !f.paused => next.max(now),
        _ => now,
    }
}

/// Since when a step that has not begun waits for the canary: from `now` if it did not yet.
fn waiting_since(step: &mut StepState, now: DateTime<Utc>) -> DateTime<Utc> {
    match step {
        StepState::Pending { waiting_since, .. } => *waiting_since.get_or_insert(now),
        StepState::Begun { at, .. } => *at,
    }
}

/// The weights an abort from `from_weight` hands traffic back through, each held for
/// `abort_step_interval`: the plan's `abort_steps` below it; empty when it goes back at once.
fn abort_steps(plan: &Plan, from_weight: u8) -> Vec<u8> {
    let steps: Vec<u8> = plan
        .abort_steps
        .iter()
        .copied()
        .filter(|w| *w < from_weight)
        .collect();
    if steps.iter().all(|w| *w == 0) {
        Vec::new()
    } else {
        steps
    }
}

/// Where an abort stands at `now`: the canary's weight, and when the canary next changes:
/// its next weight while traffic steps back, else its scale-down (the scale-down delay
/// after the weight reached 0).
fn draining(
    plan: &Plan,
    aborted_at: DateTime<Utc>,
    from_weight: u8,
    now: DateTime<Utc>,
) -> (u8, DateTime<Utc>) {
    let steps = abort_steps(plan, from_weight);
    let interval = plan.abort_step_interval.max(Duration::from_secs(1));
    let at_step = |k: u64| {
        after(
            aborted_at,
            interval.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX)),
        )
    };
    let passed = since(now, Some(aborted_at)).as_secs() / interval.as_secs();
    let weight = usize::try_from(passed)
        .ok()
        .and_then(|k| steps.get(k).copied())
        .unwrap_or(0);
    let next = match weight {
        0 => {
            let drained = at_step(steps.len().saturating_sub(1) as u64);
            after(drained, plan.abort_scale_down_delay)
        }
        _ => at_step(passed + 1),
    };
    (weight, next)
}

/// The canary's replica count during a flight.
fn canary_replicas(plan: &Plan, f: &Flight, size: Size) -> i32 {
    replicas_for(plan, &f.release, size, sizing_weight(plan, f))
}

/// The canary's replica count during a promotion.
fn promotion_replicas(plan: &Plan, p: &Promotion, size: Size) -> i32 {
    replicas_for(plan, &p.release, size, p.traffic.weight)
}

/// The world the cluster should have for `state`. `size` is the target Deployment's
/// `spec.replicas` now, or its autoscaler's (an `i32` converts).
pub fn desired(plan: &Plan, state: &State, size: impl Into<Size>, now: DateTime<Utc>) -> World {
    let size = size.into();
    let canary = |release: &Attempt, replicas: i32| {
        Some(CanaryWorld {
            revision: release.canary_revision.clone(),
            replicas,
        })
    };
    // Stable's replicas are the router's to set, unless an autoscaler sets them.
    let router = |replicas: i32| {
        Some(replicas).filter(|_| plan.replicas_router && size.autoscaler.is_none())
    };
    let mut world = World {
        stable_paused: true,
        stable_replicas: None,
        canary: None,
        weight: 0,
        matches: Vec::new(),
        mirror: None,
        pin_stable: false,
        restore: None,
    };
    match &state.stage {
        Stage::Progressing(f) => {
            let replicas = canary_replicas(plan, f, size);
            world.canary = canary(&f.release, replicas);
            world.stable_replicas = router((total(&f.release, size) - replicas).max(0));
            world.weight = f.traffic.weight;
            world.matches.clone_from(&f.traffic.matches);
            world.mirror = f.traffic.mirror;
        }
        Stage::Promoting(p) => {
            world.stable_paused = false;
            world.canary = canary(&p.release, promotion_replicas(plan, p, size));
            world.stable_replicas = router(total(&p.release, size));
            world.weight = p.traffic.weight;
            world.matches.clone_from(&p.traffic.matches);
        }
        Stage::Failed {
            release,
            aborted_at,
            from_weight,
        } => {
            // Traffic goes back (in steps, if the plan says so); the canary keeps its
            // replicas until the scale-down delay after the last step.
            let (weight, next) = draining(plan, *aborted_at, *from_weight, now);
            world.weight = weight;
            let keep = weight > 0 || now < next;
            let replicas = if keep {
                release.canary_replicas.unwrap_or(0)
            } else {
                0
            };
            world.canary = canary(release, replicas);
            if release.stable_replicas.is_some() {
                world.stable_replicas = router(total(release, size));
            }
        }
        // Traffic and replicas are the stable Deployment's; a rollback restores the template
        // before the release and lets the target roll to it.
        Stage::Baking(b) => {
            if b.rollback.is_some() {
                world.stable_paused = false;
                world.restore = Some(b.previous.clone());
            }
        }
        // A withdrawn release gives back the replicas it took from stable.
        Stage::Waiting {
            withdrawn: Some(release),
        } if release.stable_replicas.is_some() => {
            world.stable_replicas = router(total(release, size));
        }
        Stage::Initializing | Stage::Waiting { .. } | Stage::Succeeded(_) => {}
    }
    world.pin_stable = !matches!(state.stage, Stage::Promoting(_))
        && world.canary.as_ref().is_some_and(|c| c.replicas > 0);
    world
}

/// Records an analysis's verdict in the release, keeping the latest [`KEPT_ANALYSES`].
fn note(r: &mut Attempt, at: DateTime<Utc>, weight: u8, outcome: &AnalysisOutcome) {
    let verdict = outcome.verdict();
    r.last_verdict = Some(verdict.to_string());
    r.analyses.push(AnalysisRecord {
        at,
        step: r.current_step,
        weight,
        verdict: verdict.to_string(),
        summary: outcome.summary().to_string(),
    });
    if r.analyses.len() > KEPT_ANALYSES {
        let extra = r.analyses.len() - KEPT_ANALYSES;
        r.analyses.drain(..extra);
    }
}

/// One decision in the making: what it decides from, and what it has said so far. The stage
/// is passed along and returned by the functions that move it.
struct Machine<'a> {
    plan: &'a Plan,
    obs: &'a Observation,
    stable_revision: Option<String>,
    message: String,
    new_message: bool,
    events: Vec<Event>,
    request_done: bool,
}

/// What a check of a flight leads to: go on, or abort for this reason.
type Checked = Result<(), String>;

impl Machine<'_> {
    /// The answer of a gate kind: `None` when it was not asked in this observation.
    fn gate(&self, kind: GateKind) -> Option<&super::GateResult> {
        self.obs.gates.iter().find(|g| g.kind == kind)
    }

    /// Sets the status message, without an event.
    fn say(&mut self, message: String) {
        self.message = message;
        self.new_message = true;
    }

    fn event(&mut self, kind: EventKind, message: impl Into<String>) {
        let message = message.into();
        self.say(message.clone());
        self.events.push(Event { kind, message });
    }

    /// `step 2/3`: how event and status messages name the step ([`Plan::step_number`]);
    /// timelines say what it does too ([`Plan::step_label`]).
    fn step_name(&self, release: &Attempt) -> String {
        let of = self.plan.steps.len();
        format!("step {}/{of}", self.plan.step_number(release.current_step))
    }

    /// Whether a configured confirm or pre-rollout gate lets the flight go on: `Ok(false)`
    /// holds (and schedules the next ask) when it said no or was not asked yet; a refused
    /// pre-rollout gate aborts.
    fn gate_allows(
        &mut self,
        f: &mut Flight,
        kind: GateKind,
        interval: Duration,
    ) -> Result<bool, String> {
        if !self.plan.gates.contains(&kind) {
            return Ok(true);
        }
        let label = self.step_name(&f.release);
        let retry = match self.gate(kind).cloned() {
            None => {
                self.say(format!("{label}: asking the {} webhooks", kind.as_str()));
                return Ok(false);
            }
            Some(g) if kind == GateKind::PreRollout && !g.passed => {
                return Err(format!("the pre-rollout webhook refused: {}", g.message));
            }
            Some(g) if g.passed => None,
            Some(g) => {
                let message = format!(
                    "{label}: holding: the {} webhook refused: {}; asking again in {}s",
                    kind.as_str(),
                    g.message,
                    interval.as_secs()
                );
                // One Stalled event per held step: the first refusal; later ones only
                // update the message.
                let first_refusal = matches!(
                    f.step,
                    StepState::Pending {
                        gate_retry_at: None,
                        ..
                    }
                );
                if first_refusal {
                    self.event(EventKind::Stalled, message);
                } else {
                    self.say(message);
                }
                Some(after(self.obs.now, interval))
            }
        };
        if let StepState::Pending { gate_retry_at, .. } = &mut f.step {
            *gate_retry_at = retry;
        }
        Ok(retry.is_none())
    }

    /// Applies the answers of `rollout` and `rollback` gates.
    fn periodic_gates(&mut self, f: &mut Flight) -> Checked {
        let mut asked = false;
        if let Some(g) = self.gate(GateKind::Rollback).cloned() {
            asked = true;
            if g.passed {
                return Err(format!("the rollback webhook asked for it: {}", g.message));
            }
        }
        if let Some(g) = self.gate(GateKind::Rollout).cloned() {
            asked = true;
            if !g.passed {
                f.release.failed_checks += 1;
                let failed = f.release.failed_checks;
                let limit = self.plan.failure_limit;
                self.event(
                    EventKind::AnalysisFailed,
                    format!(
                        "{}: the rollout webhook failed ({failed} of {limit}): {}",
                        self.step_name(&f.release),
                        g.message
                    ),
                );
                if failed >= limit {
                    return Err(format!("{failed} failed checks: {}", g.message));
                }
            }
        }
        if asked {
            f.last_gate_at = Some(self.obs.now);
        }
        Ok(())
    }

    /// Whether the `confirm-rollout` gates (if any) let a new revision's canary start; when
    /// they do not, says so (an event the first time) and the release waits.
    fn rollout_confirmed(&mut self, revision: &str) -> bool {
        if !self.plan.gates.contains(&GateKind::ConfirmRollout) {
            return true;
        }
        match self.gate(GateKind::ConfirmRollout).cloned() {
            Some(g) if g.passed => true,
            None => {
                self.say(format!(
                    "new revision {revision}: asking the confirm-rollout webhooks"
                ));
                false
            }
            Some(g) => {
                let message = format!(
                    "new revision {revision}: waiting: the confirm-rollout webhook refused: {}",
                    g.message
                );
                if self.message != message {
                    self.event(EventKind::Stalled, message);
                }
                false
            }
        }
    }

    fn start(
        &mut self,
        revision: &str,
        superseded: Option<String>,
        stable_replicas: Option<i32>,
    ) -> Stage {
        let stable_replicas = stable_replicas.unwrap_or(self.obs.target_replicas);
        let release = Attempt::new(revision, self.obs.now, stable_replicas);
        match superseded {
            Some(old) => self.event(
                EventKind::Superseded,
                format!("revision {revision} replaced {old} under test: starting over"),
            ),
            None => {
                let what = match self.plan.strategy {
                    Strategy::BlueGreen => {
                        "starting the new version at full size behind the preview Service"
                            .to_string()
                    }
                    Strategy::Canary => {
                        format!("starting the canary ({} steps)", self.plan.steps.len())
                    }
                };
                self.event(
                    EventKind::Started,
                    format!("new revision {revision}: {what}"),
                )
            }
        }
        Stage::Progressing(Flight::new(release))
    }

    /// Ends the release: traffic back on stable; the canary keeps `canary_replicas` until
    /// the scale-down delay has passed.
    fn abort(
        &mut self,
        mut release: Attempt,
        canary_replicas: i32,
        from_weight: u8,
        reason: String,
    ) -> Stage {
        release.canary_replicas = Some(canary_replicas);
        let back = match abort_steps(self.plan, from_weight).as_slice() {
            [] | [0] => "traffic is back on stable".to_string(),
            steps => {
                let weights: Vec<String> = steps.iter().map(|w| format!("{w}%")).collect();
                format!(
                    "traffic goes back to stable in steps of {}s: {}",
                    self.plan.abort_step_interval.as_secs(),
                    weights.join(" -> ")
                )
            }
        };
        self.event(
            EventKind::Aborted,
            format!("aborted at {}: {reason}; {back}", self.step_name(&release)),
        );
        Stage::Failed {
            release,
            aborted_at: self.obs.now,
            from_weight,
        }
    }

    fn abort_flight(&mut self, f: Flight, reason: String) -> Stage {
        let replicas = canary_replicas(self.plan, &f, self.obs.size());
        self.abort(f.release, replicas, f.traffic.weight, reason)
    }

    fn promote(&mut self, f: Flight) -> Stage {
        let mut release = f.release;
        release.current_step = self.plan.steps.len() as u32;
        let what = match self.plan.strategy {
            Strategy::BlueGreen => {
                "the scale-down delay passed: the stable Deployment rolls to the new revision while the new version serves all traffic"
            }
            Strategy::Canary => {
                "every step passed: the stable Deployment rolls to the new revision"
            }
        };
        self.event(EventKind::Promoting, what);
        Stage::Promoting(Promotion {
            release,
            traffic: f.traffic,
            since: self.obs.now,
            stall_reported: false,
        })
    }

    fn succeed(&mut self, mut release: Attempt) -> Stage {
        self.stable_revision = Some(release.canary_revision.clone());
        release.canary_replicas = None;
        release.stable_replicas = None;
        self.event(
            EventKind::Succeeded,
            format!(
                "revision {} is promoted and serves all traffic",
                release.canary_revision
            ),
        );
        Stage::Succeeded(release)
    }

    /// The promotion is complete: the new version is the stable one, watched for `duration`
    /// with the old one restorable.
    fn bake(&mut self, mut release: Attempt, duration: Duration) -> Stage {
        let previous = self.stable_revision.clone().unwrap_or_default();
        self.stable_revision = Some(release.canary_revision.clone());
        release.canary_replicas = None;
        release.stable_replicas = None;
        self.event(
            EventKind::StepAdvanced,
            format!(
                "revision {} is promoted and serves all traffic; baking for {}s: judged against revision {previous}'s requests before the release, and rolled back to it on a regression",
                release.canary_revision,
                duration.as_secs()
            ),
        );
        Stage::Baking(Bake {
            release,
            since: self.obs.now,
            previous,
            last_analysis_at: None,
            consecutive_errors: 0,
            rollback: None,
        })
    }

    /// Starts the rollback of a bake to the previous revision.
    fn roll_back(&mut self, mut b: Bake, reason: String) -> Stage {
        let baked = since(self.obs.now, Some(b.since)).as_secs();
        self.event(
            EventKind::Aborted,
            format!(
                "bake failed after {baked}s: {reason}; the Deployment rolls back to revision {}",
                b.previous
            ),
        );
        b.rollback = Some(self.obs.now);
        Stage::Baking(b)
    }

    /// A reconcile of a bake: judged until the bake time is over, or rolling back.
    fn baking(&mut self, mut b: Bake) -> Stage {
        let obs = self.obs;
        if let Some(rollback) = b.rollback {
            if obs.template_revision == b.previous && obs.stable_rolled {
                self.stable_revision = Some(b.previous.clone());
                self.say(format!(
                    "rolled back to revision {}; revision {} is not retried until the template changes",
                    b.previous, b.release.canary_revision
                ));
                return Stage::Failed {
                    release: b.release,
                    aborted_at: rollback,
                    from_weight: 0,
                };
            }
            self.say(format!(
                "rolling the Deployment back to revision {}",
                b.previous
            ));
            return Stage::Baking(b);
        }
        let revision = obs.template_revision.as_str();
        if revision != b.release.canary_revision {
            // Someone released again: the bake ends, and the new revision is released
            // against this one from the next reconcile, as any other.
            self.event(
                EventKind::Superseded,
                format!(
                    "revision {revision} replaced revision {} during its bake ({}s of {}s): it stays the stable revision",
                    b.release.canary_revision,
                    since(obs.now, Some(b.since)).as_secs(),
                    self.plan.bake.unwrap_or_default().as_secs()
                ),
            );
            return Stage::Succeeded(b.release);
        }
        if let Some(why) = self.abort_requested() {
            return self.roll_back(b, why);
        }
        if let Some((due, outcome)) = &obs.analysis {
            let r = &mut b.release;
            r.looks += 1;
            note(r, due.to, 100, outcome);
            b.last_analysis_at = Some(due.to);
            let summary = outcome.summary().to_string();
            match outcome {
                AnalysisOutcome::Pass { .. } => {
                    b.consecutive_errors = 0;
                    self.say(format!("bake: analysis passed: {summary}"));
                }
                AnalysisOutcome::Fail { critical, .. } => {
                    b.consecutive_errors = 0;
                    b.release.failed_checks += 1;
                    let failed = b.release.failed_checks;
                    let limit = self.plan.failure_limit;
                    self.event(
                        EventKind::AnalysisFailed,
                        format!("bake: analysis failed ({failed} of {limit}): {summary}"),
                    );
                    if *critical {
                        return self.roll_back(b, format!("a critical metric failed: {summary}"));
                    }
                    if failed >= limit {
                        return self.roll_back(b, format!("{failed} failed analyses: {summary}"));
                    }
                }
                AnalysisOutcome::Inconclusive { .. } => {
                    b.consecutive_errors = 0;
                    self.event(
                        EventKind::AnalysisInconclusive,
                        format!("bake: analysis inconclusive, baking on: {summary}"),
                    );
                }
                AnalysisOutcome::Error { .. } => {
                    b.consecutive_errors += 1;
                    self.event(
                        EventKind::AnalysisError,
                        format!(
                            "bake: analysis could not run ({} in a row), baking on: {summary}",
                            b.consecutive_errors
                        ),
                    );
                }
            }
        }
        let duration = self.plan.bake.unwrap_or_default();
        if since(obs.now, Some(b.since)) >= duration {
            let how = match b.release.last_verdict.as_deref() {
                Some("pass") => "without a regression".to_string(),
                Some(v) => format!(
                    "without a failed analysis (the last was {v}: the bake could not show it healthy)"
                ),
                None => "without an analysis".to_string(),
            };
            self.event(
                EventKind::Succeeded,
                format!(
                    "revision {} baked for {}s {how} and serves all traffic",
                    b.release.canary_revision,
                    duration.as_secs()
                ),
            );
            return Stage::Succeeded(b.release);
        }
        Stage::Baking(b)
    }

    /// When the template no longer is the release's: the release is withdrawn (the
    /// template went back to stable) or superseded by a new one.
    fn replaced(&mut self, release: &Attempt) -> Option<Stage> {
        let revision = self.obs.template_revision.as_str();
        if release.canary_revision == revision {
            return None;
        }
        let old = release.canary_revision.clone();
        let back_to_stable = self.stable_revision.as_deref() == Some(revision);
        // A new revision needs the confirm-rollout webhooks' yes like any other: the one
        // under test is withdrawn meanwhile, and the idle rollout asks for the new one.
        let unconfirmed = self.plan.gates.contains(&GateKind::ConfirmRollout);
        if back_to_stable || unconfirmed {
            let why = match back_to_stable {
                true => {
                    format!("the Deployment's template went back to the stable revision {revision}")
                }
                false => format!(
                    "new revision {revision} replaced it; the confirm-rollout webhooks are asked before its canary starts"
                ),
            };
            self.event(
                EventKind::Superseded,
                format!("{why}: revision {old} is withdrawn"),
            );
            return Some(Stage::Waiting {
                withdrawn: Some(Attempt {
                    canary_replicas: None,
                    ..release.clone()
                }),
            });
        }
        Some(self.start(revision, Some(old), release.stable_replicas))
    }

    /// Applies an analysis outcome.
    fn record(&mut self, f: &mut Flight, due: AnalysisDue, outcome: &AnalysisOutcome) -> Checked {
        let summary = outcome.summary().to_string();
        let r = &mut f.release;
        r.looks += 1;
        f.last_analysis_at = Some(due.to);
        note(r, due.to, f.traffic.weight, outcome);
        let label = self.step_name(&f.release);
        match outcome {
            AnalysisOutcome::Pass { .. } => {
                f.consecutive_errors = 0;
                if let StepState::Begun { passed, .. } = &mut f.step {
                    *passed = true;
                }
                self.say(format!("{label}: analysis passed: {summary}"));
            }
            AnalysisOutcome::Fail { critical, .. } => {
                f.consecutive_errors = 0;
                f.release.failed_checks += 1;
                let failed = f.release.failed_checks;
                let limit = self.plan.failure_limit;
                self.event(
                    EventKind::AnalysisFailed,
                    format!("{label}: analysis failed ({failed} of {limit}): {summary}"),
                );
                if *critical {
                    return Err(format!("a critical metric failed: {summary}"));
                }
                if failed >= limit {
                    return Err(format!("{failed} failed analyses: {summary}"));
                }
            }
            AnalysisOutcome::Inconclusive { .. } => {
                f.consecutive_errors = 0;
                f.release.inconclusive_checks += 1;
                let inconclusive = f.release.inconclusive_checks;
                let limit = self.plan.inconclusive_limit;
                let of = if limit > 0 {
                    format!(" ({inconclusive} of {limit})")
                } else {
                    String::new()
                };
                self.event(
                    EventKind::AnalysisInconclusive,
                    format!("{label}: analysis inconclusive{of}, holding: {summary}"),
                );
                if limit > 0 && inconclusive >= limit {
                    return Err(format!("{inconclusive} inconclusive analyses: {summary}"));
                }
            }
            AnalysisOutcome::Error { .. } => {
                f.consecutive_errors += 1;
                let errors = f.consecutive_errors;
                let limit = self.plan.consecutive_error_limit;
                self.event(
                    EventKind::AnalysisError,
                    format!(
                        "{label}: analysis could not run ({errors} in a row, limit {limit}), holding: {summary}"
                    ),
                );
                if errors >= limit {
                    return Err(format!(
                        "the analysis could not run {errors} times in a row: {summary}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Consumes the observation's request, if there is one; the reason, when it asks for an
    /// abort.
    fn abort_requested(&mut self) -> Option<String> {
        let request = self.obs.request.as_ref()?;
        self.request_done = true;
        (request.action == RequestAction::Abort).then(|| {
            if request.reason.is_empty() {
                "abort requested".to_string()
            } else {
                request.reason.clone()
            }
        })
    }

    /// A reconcile of a release moving through its steps (or held there).
    fn progressing(&mut self, mut f: Flight) -> Stage {
        let obs = self.obs;
        if let Some(next) = self.replaced(&f.release) {
            return next;
        }
        if let Some(why) = self.abort_requested() {
            return self.abort_flight(f, why);
        }
        if let Some((due, outcome)) = &obs.analysis
            && let Err(why) = self.record(&mut f, *due, outcome)
        {
            return self.abort_flight(f, why);
        }
        if let Err(why) = self.periodic_gates(&mut f) {
            return self.abort_flight(f, why);
        }
        match obs.request.as_ref().map(|r| r.action) {
            Some(RequestAction::PromoteFull) => return self.promote(f),
            Some(RequestAction::Promote) if f.step.began().is_some() => {
                self.advance(&mut f);
                if f.paused && !held(self.plan, &f, obs.paused) {
                    f.paused = false;
                }
            }
            _ => {}
        }
        if obs.paused {
            if !f.paused {
                f.paused = true;
                self.event(
                    EventKind::Paused,
                    format!("paused at {}", self.step_name(&f.release)),
                );
            }
            return Stage::Progressing(f);
        }
        if f.paused {
            if held(self.plan, &f, false) {
                return Stage::Progressing(f);
            }
            f.paused = false;
            self.event(
                EventKind::Resumed,
                format!("resumed at {}", self.step_name(&f.release)),
            );
        }
        self.progress(f)
    }

    /// A reconcile of a promotion: done once the stable Deployment has rolled. No analysis
    /// nor gate is due while promoting ([`analysis_due`], [`gates_due`]).
    fn promoting(&mut self, mut p: Promotion) -> Stage {
        let obs = self.obs;
        if let Some(next) = self.replaced(&p.release) {
            return next;
        }
        if let Some(why) = self.abort_requested() {
            let replicas = promotion_replicas(self.plan, &p, obs.size());
            return self.abort(p.release, replicas, p.traffic.weight, why);
        }
        if obs.stable_rolled {
            return match self.plan.bake {
                Some(duration) => self.bake(p.release, duration),
                None => self.succeed(p.release),
            };
        }
        if !p.stall_reported && since(obs.now, Some(p.since)) > self.plan.progress_deadline {
            p.stall_reported = true;
            self.event(
                EventKind::Stalled,
                format!(
                    "{STALLED}the stable Deployment has not finished rolling to the new revision after {}s; traffic stays on the canary",
                    self.plan.progress_deadline.as_secs()
                ),
            );
        }
        Stage::Promoting(p)
    }

    /// Moves through the steps as far as the observation allows.
    fn progress(&mut self, mut f: Flight) -> Stage {
        let now = self.obs.now;
        for _ in 0..=self.plan.steps.len() {
            let index = f.release.current_step as usize;
            let Some(planned) = self.plan.steps.get(index).cloned() else {
                let interval = self
                    .plan
                    .steps
                    .last()
                    .map_or(super::plan::DEFAULT_INTERVAL, |s| s.interval);
                return match self.gate_allows(&mut f, GateKind::ConfirmPromotion, interval) {
                    Ok(true) => self.promote(f),
                    Ok(false) => Stage::Progressing(f),
                    Err(why) => self.abort_flight(f, why),
                };
            };
            let started = match f.step.began() {
                Some(at) => at,
                None => {
                    // Begin the step once the canary has the replicas it needs.
                    let needed = canary_replicas(self.plan, &f, self.obs.size());
                    if self.obs.canary_available < needed {
                        let waiting = waiting_since(&mut f.step, now);
                        if since(now, Some(waiting)) > self.plan.progress_deadline {
                            let why = format!(
                                "the canary has {} of {needed} replicas available after the progress deadline ({}s)",
                                self.obs.canary_available,
                                self.plan.progress_deadline.as_secs()
                            );
                            return self.abort_flight(f, why);
                        }
                        self.say(format!(
                            "{}: waiting for the canary: {} of {needed} replicas available",
                            self.step_name(&f.release),
                            self.obs.canary_available
                        ));
                        return Stage::Progressing(f);
                    }
                    if let StepState::Pending { waiting_since, .. } = &mut f.step {
                        *waiting_since = None;
                    }
                    let mut gates = Vec::new();
                    if sends_traffic(&planned.step) && f.traffic_since.is_none() {
                        gates.push(GateKind::PreRollout);
                    }
                    if increases(&planned.step, f.traffic.weight) {
                        gates.push(GateKind::ConfirmTrafficIncrease);
                    }
                    for kind in gates {
                        match self.gate_allows(&mut f, kind, planned.interval) {
                            Ok(true) => {}
                            Ok(false) => return Stage::Progressing(f),
                            Err(why) => return self.abort_flight(f, why),
                        }
                    }
                    self.begin(&mut f, &planned.step);
                    now
                }
            };
            if !self.gate_open(&f, &planned, started, now) {
                return Stage::Progressing(f);
            }
            self.advance(&mut f);
        }
        Stage::Progressing(f)
    }

    fn begin(&mut self, f: &mut Flight, step: &Step) {
        let now = self.obs.now;
        f.step = StepState::Begun {
            at: now,
            passed: false,
        };
        let label = self.step_name(&f.release);
        match step {
            Step::Weight { weight } => {
                f.traffic.weight = *weight;
                f.traffic.matches.clear();
                f.traffic.mirror = None;
                if *weight > 0 {
                    f.traffic_since.get_or_insert(now);
                }
                let what = match self.plan.strategy {
                    Strategy::BlueGreen => format!(
                        "all traffic switched to the new version; the old one stays scaled for {}s",
                        self.plan
                            .steps
                            .get(f.release.current_step as usize)
                            .map_or(0, |s| s.min_duration.as_secs())
                    ),
                    Strategy::Canary => format!("{weight}% of traffic to the canary"),
                };
                self.event(EventKind::StepAdvanced, format!("{label}: {what}"));
            }
            Step::Mirror { percent } => {
                f.traffic.mirror = Some(*percent);
                f.traffic.matches.clear();
                f.traffic_since.get_or_insert(now);
                self.event(
                    EventKind::StepAdvanced,
                    format!(
                        "{label}: {percent}% of stable's requests mirrored to the canary; its answers are thrown away, no user is served by it"
                    ),
                );
            }
            Step::Match { matches } => {
                f.traffic.matches.clone_from(matches);
                f.traffic.mirror = None;
                f.traffic_since.get_or_insert(now);
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
                f.paused = true;
                let what = match self.plan.strategy {
                    Strategy::BlueGreen => "the switch waits for `vigil promote`",
                    Strategy::Canary => "paused until `vigil promote`",
                };
                self.event(EventKind::Paused, format!("{label}: {what}"));
            }
            Step::Analysis => {
                let what = match self.plan.strategy {
                    Strategy::BlueGreen => {
                        "the new version is up behind the preview Service: pre-promotion analysis"
                    }
                    Strategy::Canary => "analysis step",
                };
                self.event(EventKind::StepAdvanced, format!("{label}: {what}"))
            }
            Step::Replicas { count } => {
                f.release.canary_replicas = Some(*count);
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
        f: &Flight,
        planned: &super::PlannedStep,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> bool {
        let elapsed = since(now, Some(started));
        let analysed = self.plan.skip_analysis || f.step.passed();
        match &planned.step {
            // Blue-green's mirror only feeds the preview's analysis, the next step.
            Step::Mirror { .. } if self.plan.strategy == Strategy::BlueGreen => true,
            Step::Weight { .. } | Step::Match { .. } | Step::Mirror { .. } => {
                elapsed >= least_duration(self.plan, planned)
                    && (analysed || !self.plan.background_analysis())
            }
            Step::Pause { duration: Some(d) } => elapsed >= *d,
            Step::Pause { duration: None } => false,
            Step::Analysis => analysed && elapsed >= planned.min_duration,
            Step::Replicas { count } => self.obs.canary_available >= *count,
        }
    }

    fn advance(&mut self, f: &mut Flight) {
        f.release.current_step += 1;
        f.step = StepState::NEXT;
        if f.paused && !self.obs.paused {
            f.paused = false;
        }
    }
}

/// Decides what to do next from the plan, the stored state and what was observed.
pub fn decide(plan: &Plan, state: &State, obs: &Observation) -> Decision {
    let mut m = Machine {
        plan,
        obs,
        stable_revision: state.stable_revision.clone(),
        message: state.message.clone(),
        new_message: false,
        events: Vec::new(),
        request_done: false,
    };
    let revision = obs.template_revision.as_str();
    // A new revision waiting on its confirm-rollout gates.
    let mut held = false;
    let stage = match state.stage.clone() {
        Stage::Initializing => {
            m.stable_revision = Some(revision.to_string());
            m.event(
                EventKind::Adopted,
                format!("adopted the Deployment at revision {revision}; waiting for a new one"),
            );
            Stage::Waiting { withdrawn: None }
        }
        stage @ (Stage::Waiting { .. } | Stage::Succeeded(_) | Stage::Failed { .. }) => {
            if obs.request.is_some() {
                m.request_done = true;
            }
            let is_stable = m.stable_revision.as_deref() == Some(revision);
            let is_failed = state.failed_revision() == Some(revision);
            if is_stable || is_failed {
                stage
            } else if !m.rollout_confirmed(revision) {
                held = true;
                stage
            } else {
                // The canary Deployment is created from this decision's world; its
                // availability is judged on the next observation.
                m.start(revision, None, None)
            }
        }
        Stage::Progressing(f) => m.progressing(f),
        Stage::Promoting(p) => m.promoting(p),
        Stage::Baking(b) => m.baking(b),
    };
    let state = State {
        stage,
        stable_revision: m.stable_revision,
        steps: plan.steps.len() as u32,
        message: m.message,
    };
    let world = desired(plan, &state, obs.size(), obs.now);
    let mut requeue = requeue(plan, &state, obs.now);
    if held {
        // Asked again like a confirmation during a flight: at the first step's interval.
        let interval = plan.steps.first().map_or(POLL, |s| s.interval);
        requeue = requeue.min(interval.clamp(Duration::from_secs(1), Duration::from_secs(60)));
    }
    Decision {
        state,
        world,
        events: m.events,
        requeue,
        request_done: m.request_done,
        new_message: m.new_message,
    }
}

/// The least time a step lasts before it may end: a traffic step lasts its `minDuration`,
/// and at least one analysis interval when analyses run beside it; the other kinds wait at
/// least an interval too (their own end comes from their analysis, pause or replicas).
fn least_duration(plan: &Plan, planned: &super::PlannedStep) -> Duration {
    match planned.step {
        Step::Weight { .. } | Step::Match { .. } | Step::Mirror { .. }
            if !plan.background_analysis() =>
        {
            planned.min_duration
        }
        _ => planned.min_duration.max(planned.interval),
    }
}

fn requeue(plan: &Plan, s: &State, now: DateTime<Utc>) -> Duration {
    let clamp = |d: Duration| d.clamp(Duration::from_secs(1), Duration::from_secs(60));
    match &s.stage {
        Stage::Progressing(f) if f.paused => analysis_due_at(plan, f)
            .map_or(Duration::from_secs(60), |due| clamp(since(due, Some(now)))),
        Stage::Progressing(f) => {
            let planned = plan.steps.get(f.release.current_step as usize);
            let (planned, started) = match (planned, f.step) {
                (Some(planned), StepState::Begun { at, .. }) => (planned, at),
                (planned, StepState::Pending { gate_retry_at, .. }) => {
                    return match gate_retry_at {
                        Some(t) if t > now => clamp(since(t, Some(now))),
                        _ if planned.is_none() || confirm_gates(plan) => Duration::from_secs(1),
                        _ => POLL,
                    };
                }
                // Past the last step, a step has not begun.
                (None, StepState::Begun { .. }) => return Duration::from_secs(1),
            };
            let mut next = after(started, least_duration(plan, planned));
            if let Step::Pause { duration: Some(d) } = planned.step {
                next = after(started, d);
            }
            if let Some(due) = analysis_due_at(plan, f) {
                next = next.min(due);
            }
            clamp(since(next, Some(now)).max(Duration::from_secs(1)))
        }
        Stage::Promoting(_) => POLL,
        Stage::Baking(b) if b.rollback.is_some() => POLL,
        Stage::Baking(b) => {
            let end = plan.bake.map_or(now, |d| after(b.since, d));
            let next = match plan.analyses.contains_key(&AnalysisScope::Bake) {
                true => bake_due_at(plan, b).min(end),
                false => end,
            };
            clamp(since(next, Some(now)).max(Duration::from_secs(1)))
        }
        Stage::Failed {
            aborted_at,
            from_weight,
            ..
        } => {
            let (_, until) = draining(plan, *aborted_at, *from_weight, now);
            if now < until {
                clamp(since(until, Some(now)))
            } else {
                IDLE
            }
        }
        Stage::Initializing | Stage::Waiting { .. } | Stage::Succeeded(_) => IDLE,
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

fn analysis_due_at(plan: &Plan, f: &Flight) -> Option<DateTime<Utc>> {
    let planned = plan.steps.get(f.release.current_step as usize)?;
    let start = f.step.began()?;
    let last = f.last_analysis_at.filter(|t| *t >= start);
    Some(after(last.unwrap_or(start), planned.interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{HeaderMatch, Match, Phase, PlannedStep, Request, Traffic};
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
            autoscaler: None,
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
            stage: Stage::Waiting { withdrawn: None },
            stable_revision: Some("r1".into()),
            ..State::default()
        }
    }

    /// A rollout of r2 at step `step` (begun at `started`), weight `weight`.
    fn at_step(step: u32, weight: u8, started: i64) -> State {
        let release = Attempt {
            current_step: step,
            ..Attempt::new("r2", t(0), 4)
        };
        State {
            stage: Stage::Progressing(Flight {
                traffic: Traffic {
                    weight,
                    matches: Vec::new(),
                    mirror: None,
                },
                step: StepState::Begun {
                    at: t(started),
                    passed: false,
                },
                traffic_since: Some(t(0)),
                ..Flight::new(release)
            }),
            stable_revision: Some("r1".into()),
            steps: 3,
            ..State::default()
        }
    }

    fn flight(s: &State) -> &Flight {
        s.flight().expect("a release in flight")
    }

    fn flight_mut(s: &mut State) -> &mut Flight {
        match &mut s.stage {
            Stage::Progressing(f) => f,
            other => panic!("no release in flight: {other:?}"),
        }
    }

    fn release(s: &State) -> &Attempt {
        s.release().expect("a release")
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
        assert_eq!(d.state.phase(), Phase::Waiting);
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
    fn a_decision_says_whether_it_wrote_the_message() {
        let d = decide(&plan(), &waiting(), &obs(0, "r1", 0));
        assert!(!d.new_message, "nothing new: {}", d.state.message);
        let d = decide(&plan(), &waiting(), &obs(0, "r2", 0));
        assert!(d.new_message);
        // Waiting for replicas says so again at every look, with the counts.
        assert!(decide(&plan(), &d.state, &obs(1, "r2", 0)).new_message);
        let mut s = at_step(0, 10, 0);
        s.message = "dry run: step 1/3: 10% of traffic to the canary".into();
        let d = decide(&plan(), &s, &obs(30, "r2", 4));
        assert!(!d.new_message);
        assert_eq!(d.state.message, s.message, "the stored message stands");
    }

    #[test]
    fn a_new_template_starts_a_canary_and_waits_for_it() {
        let d = decide(&plan(), &waiting(), &obs(0, "r2", 0));
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert_eq!(d.state.canary_revision(), Some("r2"));
        assert_eq!(d.state.weight(), 0);
        assert_eq!(d.state.step_started_at(), None);
        assert_eq!(release(&d.state).stable_replicas, Some(4));
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
        assert_eq!(d.state.weight(), 10);
        assert_eq!(d.state.current_step(), 0);
        assert_eq!(d.state.step_started_at(), Some(t(5)));
        assert_eq!(flight(&d.state).traffic_since, Some(t(5)));
        assert_eq!(d.world.weight, 10);
        assert_eq!(kinds(&d), [EventKind::StepAdvanced]);
    }

    #[test]
    fn a_weight_step_holds_until_an_interval_and_a_passing_analysis() {
        let p = plan();
        let s = at_step(0, 10, 0);
        assert_eq!(analysis_due(&p, &s, t(30)), None, "not before one interval");
        let d = decide(&p, &s, &obs(30, "r2", 4));
        assert_eq!((d.state.current_step(), d.state.weight()), (0, 10));
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
        assert_eq!((d.state.current_step(), d.state.weight()), (1, 50));
        assert_eq!(release(&d.state).looks, 1);
        assert_eq!(d.state.last_verdict(), Some("pass"));
        assert_eq!(d.state.analyses().len(), 1);
        assert_eq!(d.state.step_started_at(), Some(t(60)));
    }

    #[test]
    fn a_passing_analysis_before_the_minimum_duration_waits_for_it() {
        let mut p = plan();
        p.steps[0].min_duration = Duration::from_secs(300);
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.current_step(), 0);
        assert!(flight(&d.state).step.passed());
        let d = decide(&p, &d.state, &obs(300, "r2", 4));
        assert_eq!(d.state.current_step(), 1);
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
        assert_eq!(d.state.phase(), Phase::Failed);
        assert_eq!(d.state.weight(), 0);
        assert_eq!(d.state.failed_revision(), Some("r2"));
        assert_eq!(kinds(&d), [EventKind::AnalysisFailed, EventKind::Aborted]);
        // The controller records such a decision before it changes the world.
        assert!(!s.withdraws() && d.state.withdraws());
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
            (
                d.state.phase(),
                release(&d.state).failed_checks,
                d.state.current_step()
            ),
            (Phase::Progressing, 1, 0)
        );
        let s = d.state;
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(120, "r2", 4), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
    }

    #[test]
    fn a_failing_critical_metric_aborts_at_once() {
        let mut p = plan();
        p.failure_limit = 5;
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, fail(true)));
        assert_eq!(d.state.phase(), Phase::Failed);
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
            (d.state.phase(), d.state.current_step(), d.state.weight()),
            (Phase::Progressing, 0, 10)
        );
        assert_eq!(release(&d.state).inconclusive_checks, 1);
        p.inconclusive_limit = 2;
        let s = d.state;
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(120, "r2", 4), &s, &p, inconclusive()),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
    }

    #[test]
    fn errors_hold_never_promote_and_abort_at_the_consecutive_limit() {
        let mut p = plan();
        p.consecutive_error_limit = 2;
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, error()));
        assert_eq!(
            (
                d.state.phase(),
                d.state.current_step(),
                flight(&d.state).consecutive_errors
            ),
            (Phase::Progressing, 0, 1)
        );
        assert!(!flight(&d.state).step.passed());
        // A pass in between resets the count.
        let s = d.state;
        let d = decide(&p, &s, &with_analysis(obs(120, "r2", 4), &s, &p, pass()));
        assert_eq!(flight(&d.state).consecutive_errors, 0);
        let mut s = d.state;
        let f = flight_mut(&mut s);
        f.release.current_step = 0;
        f.step = StepState::Begun {
            at: t(120),
            passed: false,
        };
        let d = decide(&p, &s, &with_analysis(obs(180, "r2", 4), &s, &p, error()));
        let s = d.state;
        let d = decide(&p, &s, &with_analysis(obs(240, "r2", 4), &s, &p, error()));
        assert_eq!(d.state.phase(), Phase::Failed);
        assert!(d.state.message.contains("could not run 2 times"));
    }

    #[test]
    fn spec_paused_holds_and_resume_continues() {
        let p = plan();
        let s = at_step(0, 10, 0);
        let mut o = obs(120, "r2", 4);
        o.paused = true;
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase(), Phase::Paused);
        assert_eq!(kinds(&d), [EventKind::Paused]);
        assert_eq!(d.world.weight, 10, "pausing keeps the traffic where it is");
        let paused = d.state;
        // Analyses keep running while paused, and a failure still aborts.
        let d = decide(
            &p,
            &paused,
            &with_analysis(o.clone(), &paused, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
        // Resume.
        let d = decide(
            &p,
            &paused,
            &with_analysis(obs(120, "r2", 4), &paused, &p, pass()),
        );
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert_eq!(kinds(&d), [EventKind::Resumed, EventKind::StepAdvanced]);
        assert_eq!(d.state.weight(), 50);
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
        assert_eq!(
            (d.state.phase(), d.state.current_step()),
            (Phase::Paused, 1)
        );
        let d = decide(&p, &d.state, &obs(4000, "r2", 4));
        assert_eq!(
            (d.state.phase(), d.state.current_step()),
            (Phase::Paused, 1),
            "no timeout"
        );
        let mut o = obs(4000, "r2", 4);
        o.request = request(RequestAction::Promote);
        let d = decide(&p, &d.state, &o);
        assert!(d.request_done);
        assert_eq!(
            (d.state.phase(), d.state.current_step(), d.state.weight()),
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
        flight_mut(&mut s).last_analysis_at = Some(t(650));
        assert_eq!(decide(&p, &s, &obs(650, "r2", 4)).state.current_step(), 1);
        assert_eq!(decide(&p, &s, &obs(700, "r2", 4)).state.current_step(), 2);
    }

    #[test]
    fn promote_skips_a_gate_and_promote_full_skips_the_rest() {
        let p = plan();
        let s = at_step(0, 10, 0);
        let mut o = obs(10, "r2", 4);
        o.request = request(RequestAction::Promote);
        let d = decide(&p, &s, &o);
        assert_eq!((d.state.current_step(), d.state.weight()), (1, 50));
        o.request = request(RequestAction::PromoteFull);
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase(), Phase::Promoting);
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
        assert_eq!(d.state.phase(), Phase::Failed);
        assert!(d.state.message.contains("HighErrorRate"));
        assert_eq!(d.world.weight, 0);
        assert!(d.request_done);
    }

    #[test]
    fn a_gradual_abort_hands_traffic_back_step_by_step_then_scales_down() {
        let mut p = plan();
        p.abort_steps = vec![50, 10, 0];
        p.abort_step_interval = MIN;
        let mut o = obs(100, "r2", 4);
        o.request = request(RequestAction::Abort);
        let d = decide(&p, &at_step(1, 50, 0), &o);
        assert_eq!(d.state.phase(), Phase::Failed);
        assert!(
            d.state.message.contains("in steps of 60s: 10% -> 0%"),
            "{}",
            d.state.message
        );
        // (seconds after the abort) -> (weight, canary replicas, requeue)
        let cases = [
            (0, 10, 4, 60),
            (59, 10, 4, 1),
            (60, 0, 4, 30),
            (89, 0, 4, 1),
            (91, 0, 0, 3600),
        ];
        for (after, weight, replicas, requeue) in cases {
            let now = t(100 + after);
            let w = desired(&p, &d.state, 4, now);
            assert_eq!(
                (
                    w.weight,
                    w.canary.map(|c| c.replicas),
                    super::requeue(&p, &d.state, now)
                ),
                (
                    weight,
                    Some(replicas),
                    Duration::from_secs(requeue).min(IDLE)
                ),
                "{after}s after the abort"
            );
        }
        // From 100% (an abort while promoting) every step is taken; from 10% or without
        // steps, traffic goes back at once.
        let from = |weight: u8, steps: Vec<u8>| {
            let mut p = p.clone();
            p.abort_steps = steps;
            (0..4)
                .map(|i| draining(&p, t(0), weight, t(i * 60)).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(from(100, vec![50, 10, 0]), [50, 10, 0, 0]);
        assert_eq!(from(10, vec![50, 10, 0]), [0, 0, 0, 0]);
        assert_eq!(from(50, vec![]), [0, 0, 0, 0]);
    }

    #[test]
    fn abort_steps_must_decrease_to_zero() {
        let check = |steps: Vec<u8>| {
            let mut p = plan();
            p.abort_steps = steps;
            p.check()
        };
        assert!(check(vec![50, 10, 0]).is_ok());
        assert!(
            check(vec![10, 50, 0])
                .unwrap_err()
                .contains("must decrease")
        );
        assert!(check(vec![50, 10]).unwrap_err().contains("must end at 0"));
        assert!(check(vec![150, 0]).unwrap_err().contains("above 100"));
    }

    #[test]
    fn requests_outside_a_rollout_are_consumed_and_ignored() {
        let mut o = obs(10, "r1", 0);
        o.request = request(RequestAction::Abort);
        let d = decide(&plan(), &waiting(), &o);
        assert!(d.request_done);
        assert_eq!(d.state.phase(), Phase::Waiting);
    }

    #[test]
    fn a_new_revision_mid_rollout_starts_over() {
        let d = decide(&plan(), &at_step(1, 50, 0), &obs(10, "r3", 4));
        assert_eq!(d.state.canary_revision(), Some("r3"));
        assert_eq!((d.state.current_step(), d.state.weight()), (0, 0));
        assert_eq!(kinds(&d), [EventKind::Superseded]);
        assert_eq!(d.world.weight, 0);
        assert_eq!(d.world.canary.unwrap().revision, "r3");
    }

    #[test]
    fn the_template_going_back_to_stable_withdraws_the_canary() {
        let d = decide(&plan(), &at_step(1, 50, 0), &obs(10, "r1", 4));
        assert_eq!(d.state.phase(), Phase::Waiting);
        assert_eq!(d.world.canary, None);
        assert_eq!(d.world.weight, 0);
    }

    #[test]
    fn a_canary_that_never_becomes_available_is_aborted_at_the_deadline() {
        let started = decide(&plan(), &waiting(), &obs(0, "r2", 0)).state;
        let d = decide(&plan(), &started, &obs(599, "r2", 1));
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert!(d.state.message.contains("1 of 4"), "{}", d.state.message);
        let d = decide(&plan(), &started, &obs(601, "r2", 1));
        assert_eq!(d.state.phase(), Phase::Failed);
        assert!(d.state.message.contains("progress deadline"));
    }

    #[test]
    fn promotion_waits_for_the_stable_rollout_then_cleans_up() {
        let p = plan();
        let s = at_step(2, 100, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.phase(), Phase::Promoting);
        assert_eq!(d.world.weight, 100);
        assert!(!d.world.stable_paused);
        let promoting = d.state;
        let d = decide(&p, &promoting, &obs(100, "r2", 4));
        assert_eq!(d.state.phase(), Phase::Promoting);
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
        assert_eq!(d.state.phase(), Phase::Succeeded);
        assert_eq!(d.state.stable_revision.as_deref(), Some("r2"));
        assert_eq!(
            d.world,
            World {
                stable_paused: true,
                stable_replicas: None,
                canary: None,
                weight: 0,
                matches: vec![],
                mirror: None,
                pin_stable: false,
                restore: None,
            }
        );
        assert_eq!(kinds(&d), [EventKind::Succeeded]);
    }

    #[test]
    fn a_failed_revision_is_not_retried_but_the_next_one_is() {
        let mut s = at_step(1, 50, 0);
        s.stage = Stage::Failed {
            release: release(&s).clone(),
            aborted_at: t(0),
            from_weight: 50,
        };
        let d = decide(&plan(), &s, &obs(1000, "r2", 0));
        assert_eq!(d.state.phase(), Phase::Failed);
        let d = decide(&plan(), &s, &obs(1000, "r3", 0));
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert_eq!(d.state.canary_revision(), Some("r3"));
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
        assert_eq!((again.state.current_step(), again.state.weight()), (1, 50));
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
        assert_eq!(s.weight(), 10);
        let d = decide(&p, &s, &with_analysis(obs(65, "r2", 1), &s, &p, pass()));
        // Step 2 (50%) waits for 2 canary replicas before moving traffic.
        assert_eq!(
            (
                d.state.current_step(),
                d.state.weight(),
                d.state.step_started_at()
            ),
            (1, 10, None)
        );
        assert_eq!(d.world.canary.as_ref().unwrap().replicas, 2);
        assert_eq!(d.world.weight, 10);
        let d = decide(&p, &d.state, &obs(70, "r2", 2));
        assert_eq!(
            (d.state.weight(), d.world.canary.unwrap().replicas),
            (50, 2)
        );
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
        promoting.stage = Stage::Promoting(Promotion {
            release: release(&s).clone(),
            traffic: flight(&s).traffic.clone(),
            since: t(0),
            stall_reported: false,
        });
        assert_eq!(
            desired(&p, &promoting, 0, t(0)).stable_replicas,
            Some(4),
            "restored to promote"
        );
    }

    fn hpa(desired: i32, min: i32, max: i32) -> Size {
        let autoscaler = Some(crate::rollout::Autoscaler { desired, min, max });
        Observation {
            autoscaler,
            ..obs(0, "r2", 0)
        }
        .size()
    }

    #[test]
    fn with_an_hpa_the_canary_follows_its_desired_count_and_stable_is_left_to_it() {
        // (router, weight, HPA desired/min/max) -> canary replicas. The release recorded 4.
        let cases = [
            // scaleCanaryWithWeight: weight x the HPA's count now, not the recorded 4.
            (false, 50, hpa(10, 2, 20), 5),
            (false, 10, hpa(10, 2, 20), 1),
            (false, 50, hpa(3, 2, 20), 2),
            // The HPA's bounds hold even if its status is outside them.
            (false, 50, hpa(40, 2, 20), 10),
            (false, 50, hpa(1, 6, 20), 3),
            // The replicas router: stable keeps the HPA's pods, so the canary gets
            // weight/(100-weight) of them to carry its weight's share, within the maximum.
            (true, 50, hpa(10, 2, 20), 10),
            (true, 10, hpa(9, 2, 20), 1),
            (true, 80, hpa(10, 2, 20), 20),
            (true, 100, hpa(10, 2, 20), 10),
        ];
        for (replicas_router, weight, size, want) in cases {
            let mut p = plan();
            p.scale_with_weight = !replicas_router;
            p.replicas_router = replicas_router;
            let w = desired(&p, &at_step(1, weight, 0), size, t(0));
            assert_eq!(
                (w.canary.unwrap().replicas, w.stable_replicas),
                (want, None),
                "router {replicas_router}, weight {weight}, {size:?}"
            );
        }
        // Without an HPA the replicas router does set stable's replicas.
        let mut p = plan();
        p.replicas_router = true;
        assert_eq!(
            desired(&p, &at_step(1, 50, 0), 4, t(0)).stable_replicas,
            Some(2)
        );
    }

    #[test]
    fn with_an_hpa_an_aborted_canary_is_not_scaled_back_up_nor_stable_restored() {
        let mut p = plan();
        p.replicas_router = true;
        let mut s = at_step(1, 50, 0);
        s.stage = Stage::Failed {
            release: Attempt {
                canary_replicas: Some(2),
                ..release(&s).clone()
            },
            aborted_at: t(0),
            from_weight: 50,
        };
        // The HPA scales up after the abort: the canary keeps its 2 for the delay, then 0.
        let during = desired(&p, &s, hpa(12, 2, 20), t(1));
        assert_eq!(
            (during.canary.unwrap().replicas, during.stable_replicas),
            (2, None)
        );
        let after = desired(&p, &s, hpa(12, 2, 20), t(600));
        assert_eq!(
            (after.canary.unwrap().replicas, after.stable_replicas),
            (0, None)
        );
    }

    #[test]
    fn a_traffic_step_without_analyses_is_woken_at_its_min_duration() {
        // No analysis beside the steps: a step lasts its minDuration, not the (unused)
        // analysis interval, and the reconcile is requeued for that moment.
        let mut p = plan();
        p.analyses.remove(&AnalysisScope::Background);
        p.steps[0].min_duration = Duration::from_secs(5);
        let s = at_step(0, 10, 0);
        assert_eq!(super::requeue(&p, &s, t(1)), Duration::from_secs(4));
        assert_eq!(decide(&p, &s, &obs(4, "r2", 4)).state.current_step(), 0);
        assert_eq!(decide(&p, &s, &obs(5, "r2", 4)).state.current_step(), 1);
        // With analyses beside it, the step still waits for one interval's analysis.
        let p = plan();
        assert_eq!(super::requeue(&p, &s, t(1)), Duration::from_secs(59));
    }

    #[test]
    fn skip_analysis_advances_on_time_alone() {
        let mut p = plan();
        p.skip_analysis = true;
        let s = at_step(0, 10, 0);
        assert_eq!(analysis_due(&p, &s, t(600)), None);
        assert_eq!(decide(&p, &s, &obs(59, "r2", 4)).state.current_step(), 0);
        assert_eq!(decide(&p, &s, &obs(60, "r2", 4)).state.current_step(), 1);
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
        flight_mut(&mut s).last_analysis_at = Some(t(280));
        assert_eq!(analysis_due(&p, &s, t(419)), None);
        let due = analysis_due(&p, &s, t(420)).unwrap();
        assert_eq!((due.scope, due.from), (AnalysisScope::Step(1), t(180)));
        assert_eq!((due.position.step_start, due.position.step), (t(300), 2));
        let d = decide(&p, &s, &with_analysis(obs(420, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.current_step(), d.state.weight()), (2, 50));
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
        assert_eq!(
            (started.weight(), &flight(&started).traffic.matches),
            (0, &vec![m.clone()])
        );
        assert_eq!(desired(&p, &started, 4, t(0)).matches, vec![m]);
        let d = decide(
            &p,
            &started,
            &with_analysis(obs(60, "r2", 4), &started, &p, pass()),
        );
        assert_eq!(
            (d.state.weight(), flight(&d.state).traffic.matches.len()),
            (10, 0)
        );
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
            if state.phase() == Phase::Succeeded {
                break;
            }
            now += d.requeue.as_secs() as i64;
        }
        assert_eq!(state.phase(), Phase::Succeeded);
        assert_eq!(weights, [0, 10, 50, 100, 0]);
        assert_eq!(release(&state).looks, 3);
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
    fn a_confirm_rollout_gate_holds_a_new_revision_until_it_passes() {
        let p = gated(&[GateKind::ConfirmRollout, GateKind::Event]);
        let idle = waiting();
        assert!(
            gates_due(&p, &idle, &obs(0, "r1", 0)).is_empty(),
            "not for the stable revision"
        );
        // A new revision: asked before anything starts; no answer yet holds.
        let o = obs(0, "r2", 0);
        assert_eq!(gates_due(&p, &idle, &o), [GateKind::ConfirmRollout]);
        let d = decide(&p, &idle, &o);
        assert_eq!(d.state.phase(), Phase::Waiting);
        assert!(d.world.canary.is_none(), "no canary before the gate passed");
        // Refused: still waiting, one Stalled event, asked again within the interval.
        let mut o = obs(1, "r2", 0);
        o.gates = vec![gate(GateKind::ConfirmRollout, false)];
        let d = decide(&p, &idle, &o);
        assert_eq!(d.state.phase(), Phase::Waiting);
        assert_eq!(kinds(&d), [EventKind::Stalled]);
        assert!(
            d.state.message.contains("confirm-rollout"),
            "{}",
            d.state.message
        );
        assert!(d.requeue <= p.steps[0].interval, "{:?}", d.requeue);
        let again = decide(&p, &d.state, &o);
        assert!(again.events.is_empty(), "the same refusal is not repeated");
        // Passed: the canary starts.
        o.gates = vec![gate(GateKind::ConfirmRollout, true)];
        let d = decide(&p, &d.state, &o);
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert_eq!(kinds(&d), [EventKind::Started]);
        // Never asked during a flight; `event` gates are never due (they are sent).
        assert!(gates_due(&p, &d.state, &obs(2, "r2", 4)).is_empty());
        // A revision replacing r2 mid-flight is asked about too: r2 is withdrawn (traffic
        // back on stable) and r3 waits for the gate, then starts.
        let d = decide(&p, &d.state, &obs(3, "r3", 4));
        assert_eq!(d.state.phase(), Phase::Waiting);
        assert_eq!(kinds(&d), [EventKind::Superseded]);
        assert!(
            d.state.message.contains("confirm-rollout"),
            "{}",
            d.state.message
        );
        assert_eq!((d.world.weight, d.world.canary.as_ref()), (0, None));
        let o = obs(4, "r3", 0);
        assert_eq!(gates_due(&p, &d.state, &o), [GateKind::ConfirmRollout]);
        let mut o = o;
        o.gates = vec![gate(GateKind::ConfirmRollout, true)];
        let d = decide(&p, &d.state, &o);
        assert_eq!(
            (d.state.phase(), d.state.canary_revision()),
            (Phase::Progressing, Some("r3"))
        );
    }

    #[test]
    fn a_withdrawn_release_gives_stable_its_replicas_back() {
        let mut p = plan();
        p.replicas_router = true;
        // At 50% the replicas router took 2 of stable's 4; the template goes back to r1.
        let d = decide(&p, &at_step(1, 50, 0), &obs(10, "r1", 2));
        assert_eq!(d.state.phase(), Phase::Waiting);
        assert_eq!(
            (d.world.canary.as_ref(), d.world.stable_replicas),
            (None, Some(4))
        );
        // An HPA owns the count: left to it.
        let w = desired(&p, &d.state, hpa(6, 2, 10), t(11));
        assert_eq!(w.stable_replicas, None);
    }

    #[test]
    fn gate_payloads_name_flagger_phases_only() {
        for phase in Phase::ALL {
            assert!(Phase::FLAGGER.contains(&phase.flagger()), "{phase:?}");
        }
        assert_eq!(Phase::Paused.flagger(), "Progressing");
        assert_eq!(Phase::Waiting.flagger(), "Initialized");
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
        assert_eq!(d.state.weight(), 0, "no traffic before the gate answered");
        let mut o = obs(2, "r2", 4);
        o.gates = vec![gate(GateKind::PreRollout, true)];
        assert_eq!(decide(&p, &started, &o).state.weight(), 10);
        o.gates = vec![gate(GateKind::PreRollout, false)];
        let d = decide(&p, &started, &o);
        assert_eq!(d.state.phase(), Phase::Failed);
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
            (d.state.phase(), d.state.current_step()),
            (Phase::Progressing, 3),
            "held before promotion"
        );
        let held = d.state;
        let o = obs(61, "r2", 4);
        assert_eq!(gates_due(&p, &held, &o), [GateKind::ConfirmPromotion]);
        let mut o = obs(61, "r2", 4);
        o.gates = vec![gate(GateKind::ConfirmPromotion, false)];
        let d = decide(&p, &held, &o);
        assert_eq!(d.state.phase(), Phase::Progressing);
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
        // Refused again: still held, the message kept current, no second Stalled event.
        let mut o = obs(121, "r2", 4);
        o.gates = vec![gate(GateKind::ConfirmPromotion, false)];
        let d = decide(&p, &refused, &o);
        assert_eq!(d.state.phase(), Phase::Progressing);
        assert!(kinds(&d).is_empty(), "{:?}", d.events);
        assert!(d.state.message.contains("403"));
        let refused = d.state;
        let mut o = obs(181, "r2", 4);
        o.gates = vec![gate(GateKind::ConfirmPromotion, true)];
        assert_eq!(decide(&p, &refused, &o).state.phase(), Phase::Promoting);
    }

    #[test]
    fn a_refused_traffic_increase_keeps_the_weight() {
        let p = gated(&[GateKind::ConfirmTrafficIncrease]);
        let s = at_step(0, 10, 0);
        let d = decide(&p, &s, &with_analysis(obs(60, "r2", 4), &s, &p, pass()));
        assert_eq!((d.state.current_step(), d.state.weight()), (1, 10));
        let mut o = obs(61, "r2", 4);
        assert_eq!(
            gates_due(&p, &d.state, &o),
            [GateKind::ConfirmTrafficIncrease]
        );
        o.gates = vec![gate(GateKind::ConfirmTrafficIncrease, false)];
        let held = decide(&p, &d.state, &o);
        assert_eq!(held.state.weight(), 10);
        o.gates = vec![gate(GateKind::ConfirmTrafficIncrease, true)];
        assert_eq!(decide(&p, &d.state, &o).state.weight(), 50);
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
            (d.state.phase(), release(&d.state).failed_checks),
            (Phase::Progressing, 1)
        );
        assert_eq!(flight(&d.state).last_gate_at, Some(t(60)));
        assert!(gates_due(&p, &d.state, &obs(90, "r2", 4)).is_empty());
        o.gates = vec![gate(GateKind::Rollback, true)];
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase(), Phase::Failed);
        assert!(d.state.message.contains("rollback webhook"));
    }

    /// A blue-green plan as `api::plan` builds it: a preview judged by the pre-promotion
    /// analysis (when `pre`), a pause for `vigil promote` (unless `auto`), and the switch held
    /// 30 s with the post-promotion analysis in the background; 10 s intervals.
    fn blue_green(pre: bool, auto: bool) -> Plan {
        let interval = Duration::from_secs(10);
        let mut p = Plan::from_weights(&[100], interval);
        p.strategy = Strategy::BlueGreen;
        p.steps[0].min_duration = Duration::from_secs(30);
        if !auto {
            p.steps.insert(
                0,
                PlannedStep {
                    step: Step::Pause { duration: None },
                    interval,
                    min_duration: Duration::ZERO,
                },
            );
        }
        if pre {
            p.steps.insert(
                0,
                PlannedStep {
                    step: Step::Analysis,
                    interval,
                    min_duration: Duration::ZERO,
                },
            );
            p.analyses.insert(
                AnalysisScope::Step(0),
                crate::rollout::AnalysisSetup::default(),
            );
        }
        p.check().expect("a valid plan");
        p
    }

    /// Runs `decide` and returns the state, checking the world's weight and canary size.
    fn step(p: &Plan, s: &State, o: Observation, weight: u8, canary: i32) -> State {
        let d = decide(p, s, &o);
        assert_eq!(
            (d.world.weight, d.world.canary.as_ref().map(|c| c.replicas)),
            (weight, Some(canary)),
            "{}",
            d.state.message
        );
        d.state
    }

    #[test]
    fn blue_green_judges_the_full_size_preview_then_switches_at_once_and_promotes() {
        let p = blue_green(true, true);
        // The new version comes up at full size, with no traffic, the Service on stable.
        let s = step(&p, &waiting(), obs(0, "r2", 0), 0, 4);
        assert!(desired(&p, &s, 4, t(0)).pin_stable);
        assert!(
            s.message.contains("full size behind the preview"),
            "{}",
            s.message
        );
        let d = decide(&p, &s, &obs(5, "r2", 3));
        assert_eq!(d.state.step_started_at(), None, "all 4 replicas first");
        // The preview's analysis runs without users' traffic on it.
        let s = step(&p, &d.state, obs(6, "r2", 4), 0, 4);
        assert_eq!(p.step_label(&s), "step 1/2 (preview)");
        assert!(
            s.message.contains("pre-promotion analysis"),
            "{}",
            s.message
        );
        assert_eq!(analysis_due(&p, &s, t(15)), None);
        let due = analysis_due(&p, &s, t(16)).expect("the pre-promotion analysis");
        assert_eq!(
            (due.scope, due.from, due.position.weight),
            (AnalysisScope::Step(0), t(-4), Some(0))
        );
        let inconclusive_then = step(
            &p,
            &s,
            with_analysis(obs(16, "r2", 4), &s, &p, inconclusive()),
            0,
            4,
        );
        assert_eq!(inconclusive_then.current_step(), 0, "holds until it passes");
        // A pass switches all traffic at once; the old version stays (stable untouched).
        let d = decide(
            &p,
            &inconclusive_then,
            &with_analysis(obs(26, "r2", 4), &inconclusive_then, &p, pass()),
        );
        assert_eq!((d.world.weight, d.world.stable_replicas), (100, None));
        assert!(d.world.stable_paused, "the old version keeps running");
        assert!(
            d.state.message.contains("all traffic switched") && d.state.message.contains("30s"),
            "{}",
            d.state.message
        );
        assert_eq!(p.step_label(&d.state), "step 2/2 (switched)");
        let switched = d.state;
        // The post-promotion analysis runs during the scale-down delay; no promotion
        // before the delay nor before a pass.
        let due = analysis_due(&p, &switched, t(36)).expect("post-promotion analysis");
        assert_eq!(due.scope, AnalysisScope::Background);
        let s = step(
            &p,
            &switched,
            with_analysis(obs(36, "r2", 4), &switched, &p, pass()),
            100,
            4,
        );
        assert_eq!(s.phase(), Phase::Progressing, "the delay has not passed");
        let d = decide(&p, &s, &obs(56, "r2", 4));
        assert_eq!(d.state.phase(), Phase::Promoting);
        assert_eq!(d.world.weight, 100, "traffic stays on the new version");
        assert!(!d.world.stable_paused, "stable rolls to the new template");
        let mut o = obs(70, "r2", 4);
        o.stable_rolled = true;
        let d = decide(&p, &d.state, &o);
        assert_eq!(d.state.phase(), Phase::Succeeded);
        assert_eq!((d.world.weight, d.world.canary.clone()), (0, None));
    }

    #[test]
    fn blue_green_rolls_back_instantly_on_a_failed_post_promotion_analysis() {
        let p = blue_green(false, true);
        let s = step(&p, &waiting(), obs(0, "r2", 0), 0, 4);
        let switched = step(&p, &s, obs(5, "r2", 4), 100, 4);
        let d = decide(
            &p,
            &switched,
            &with_analysis(obs(15, "r2", 4), &switched, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
        assert_eq!(d.world.weight, 0, "all traffic back at once");
        assert!(d.world.stable_paused, "the old version never stopped");
        assert_eq!(d.world.stable_replicas, None);
        assert!(d.world.pin_stable, "the Service selects the old pods again");
        assert!(
            d.state.message.contains("traffic is back on stable"),
            "{}",
            d.state.message
        );
    }

    #[test]
    fn a_bad_preview_is_rolled_back_before_any_user_reaches_it() {
        let p = blue_green(true, true);
        let s = step(&p, &waiting(), obs(0, "r2", 0), 0, 4);
        let s = step(&p, &s, obs(5, "r2", 4), 0, 4);
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(15, "r2", 4), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
        assert_eq!(d.world.weight, 0);
        match &d.state.stage {
            Stage::Failed { from_weight, .. } => assert_eq!(*from_weight, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_auto_promotion_the_switch_waits_for_a_promote() {
        let p = blue_green(true, false);
        let s = step(&p, &waiting(), obs(0, "r2", 0), 0, 4);
        let s = step(&p, &s, obs(5, "r2", 4), 0, 4);
        let d = decide(&p, &s, &with_analysis(obs(15, "r2", 4), &s, &p, pass()));
        assert_eq!(d.state.phase(), Phase::Paused);
        assert_eq!(d.world.weight, 0);
        assert_eq!(p.step_label(&d.state), "step 2/3 (awaiting promotion)");
        assert!(d.state.message.contains("waits for `vigil promote`"));
        let held = step(&p, &d.state, obs(600, "r2", 4), 0, 4);
        assert_eq!(held.phase(), Phase::Paused, "no promotion by time");
        let mut o = obs(601, "r2", 4);
        o.request = request(RequestAction::Promote);
        let d = decide(&p, &held, &o);
        assert_eq!((d.state.phase(), d.world.weight), (Phase::Progressing, 100));
        assert!(d.request_done);
    }

    #[test]
    fn a_mirror_step_copies_requests_to_a_canary_no_user_reaches_and_is_judged() {
        let mut p = Plan::from_weights(&[10, 100], MIN);
        p.scale_with_weight = true;
        p.steps.insert(
            0,
            PlannedStep {
                step: Step::Mirror { percent: 50 },
                interval: MIN,
                min_duration: MIN,
            },
        );
        let s = decide(&p, &waiting(), &obs(0, "r2", 0)).state;
        // Sized for the mirrored half of stable's requests, not for weight 0.
        assert_eq!(desired(&p, &s, 4, t(0)).canary.map(|c| c.replicas), Some(2));
        let d = decide(&p, &s, &obs(5, "r2", 2));
        assert_eq!((d.world.weight, d.world.mirror), (0, Some(50)));
        assert_eq!(p.step_label(&d.state), "step 1/3 (mirror 50%)");
        assert!(
            d.state.message.contains("mirrored to the canary"),
            "{}",
            d.state.message
        );
        let s = d.state;
        assert_eq!(flight(&s).traffic_since, Some(t(5)));
        let due = analysis_due(&p, &s, t(65)).expect("judged while mirrored");
        assert_eq!(
            (due.scope, due.position.weight),
            (AnalysisScope::Background, Some(0))
        );
        // A pass moves on to users' traffic; the mirror goes.
        let d = decide(&p, &s, &with_analysis(obs(65, "r2", 2), &s, &p, pass()));
        assert_eq!((d.world.weight, d.world.mirror), (10, None));
        // A failure while mirroring aborts before any user was served.
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(65, "r2", 2), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Failed);
        assert_eq!((d.world.weight, d.world.mirror), (0, None));
    }

    /// A one-step plan (100% for a minute) with a 30-minute bake judged every minute.
    fn baking_plan() -> Plan {
        let mut p = Plan::from_weights(&[100], MIN);
        p.bake = Some(Duration::from_secs(1800));
        p.analyses.insert(
            AnalysisScope::Bake,
            crate::rollout::AnalysisSetup::default(),
        );
        p
    }

    /// r2 released at 0 over r1, promoted, the stable Deployment rolled at 200: baking.
    fn baked(p: &Plan) -> State {
        let s = step(p, &waiting(), obs(0, "r2", 0), 0, 4);
        let s = step(p, &s, obs(5, "r2", 4), 100, 4);
        let d = decide(p, &s, &with_analysis(obs(65, "r2", 4), &s, p, pass()));
        assert_eq!(d.state.phase(), Phase::Promoting);
        let mut o = obs(200, "r2", 4);
        o.stable_rolled = true;
        let d = decide(p, &d.state, &o);
        assert_eq!(d.state.phase(), Phase::Baking);
        d.state
    }

    #[test]
    fn a_bake_judges_the_promoted_version_against_its_past_and_then_succeeds() {
        let p = baking_plan();
        let s = baked(&p);
        assert_eq!(s.stable_revision.as_deref(), Some("r2"), "r2 is stable now");
        assert!(s.message.contains("baking for 1800s") && s.message.contains("revision r1"));
        let w = desired(&p, &s, 4, t(200));
        assert_eq!((w.canary, w.weight, w.restore), (None, 0, None));
        assert!(w.stable_paused, "adopted for the next release");
        assert_eq!(analysis_due(&p, &s, t(259)), None);
        let due = analysis_due(&p, &s, t(260)).expect("the bake's analysis");
        assert_eq!(
            (
                due.scope,
                due.from,
                due.baseline_before,
                due.position.step_start
            ),
            (AnalysisScope::Bake, t(200), Some(t(0)), t(200))
        );
        assert_eq!(due.position.weight, None, "no split to check");
        let s = decide(&p, &s, &with_analysis(obs(260, "r2", 0), &s, &p, pass())).state;
        assert_eq!(s.phase(), Phase::Baking);
        // Inconclusive and erroring analyses do not end the bake early, either way.
        let s = decide(
            &p,
            &s,
            &with_analysis(obs(320, "r2", 0), &s, &p, inconclusive()),
        )
        .state;
        let s = decide(&p, &s, &with_analysis(obs(380, "r2", 0), &s, &p, error())).state;
        assert_eq!(s.phase(), Phase::Baking);
        let s = decide(&p, &s, &with_analysis(obs(440, "r2", 0), &s, &p, pass())).state;
        assert_eq!(
            decide(&p, &s, &obs(1999, "r2", 0)).state.phase(),
            Phase::Baking
        );
        let d = decide(&p, &s, &obs(2000, "r2", 0));
        assert_eq!(d.state.phase(), Phase::Succeeded);
        assert_eq!(kinds(&d), [EventKind::Succeeded]);
        assert!(
            d.state
                .message
                .contains("baked for 1800s without a regression"),
            "{}",
            d.state.message
        );
    }

    #[test]
    fn a_failed_bake_rolls_the_deployment_back_to_the_previous_revision() {
        let p = baking_plan();
        let s = baked(&p);
        let d = decide(
            &p,
            &s,
            &with_analysis(obs(260, "r2", 0), &s, &p, fail(false)),
        );
        assert_eq!(d.state.phase(), Phase::Baking);
        assert_eq!(kinds(&d), [EventKind::AnalysisFailed, EventKind::Aborted]);
        assert!(!s.withdraws() && d.state.withdraws());
        assert!(
            d.state.message.contains("rolls back to revision r1"),
            "{}",
            d.state.message
        );
        assert_eq!(
            (d.world.restore.as_deref(), d.world.stable_paused),
            (Some("r1"), false),
            "r1's template goes back and the Deployment rolls"
        );
        assert_eq!(
            analysis_due(&p, &d.state, t(400)),
            None,
            "no judging while rolling back"
        );
        // The template is r1 again but not rolled yet: still rolling back.
        let s = decide(&p, &d.state, &obs(265, "r1", 0)).state;
        assert_eq!(s.phase(), Phase::Baking);
        let mut o = obs(300, "r1", 0);
        o.stable_rolled = true;
        let d = decide(&p, &s, &o);
        assert_eq!(d.state.phase(), Phase::Failed);
        assert_eq!(d.state.stable_revision.as_deref(), Some("r1"));
        assert_eq!(d.state.failed_revision(), Some("r2"), "not retried");
        assert_eq!(d.world.restore, None);
        assert!(d.world.stable_paused);
        // Settled: nothing starts while the template is r1.
        assert_eq!(
            decide(&p, &d.state, &obs(400, "r1", 0)).state.phase(),
            Phase::Failed
        );
    }

    #[test]
    fn an_abort_rolls_a_bake_back_and_a_new_revision_ends_it() {
        let p = baking_plan();
        let s = baked(&p);
        let mut o = obs(300, "r2", 0);
        o.request = request(RequestAction::Abort);
        let d = decide(&p, &s, &o);
        assert!(d.request_done);
        assert_eq!(d.world.restore.as_deref(), Some("r1"));
        assert!(
            d.state.message.contains("abort requested"),
            "{}",
            d.state.message
        );
        // Another release during the bake: r2 stays stable, r3 is released against it.
        let d = decide(&p, &s, &obs(300, "r3", 0));
        assert_eq!(d.state.phase(), Phase::Succeeded);
        assert_eq!(kinds(&d), [EventKind::Superseded]);
        let d = decide(&p, &d.state, &obs(301, "r3", 0));
        assert_eq!(
            (d.state.phase(), d.state.canary_revision()),
            (Phase::Progressing, Some("r3"))
        );
        assert_eq!(d.state.stable_revision.as_deref(), Some("r2"));
    }

    #[test]
    fn a_blue_green_preview_can_be_judged_on_mirrored_requests() {
        let mut p = blue_green(true, true);
        p.steps.insert(
            0,
            PlannedStep {
                step: Step::Mirror { percent: 50 },
                interval: Duration::from_secs(10),
                min_duration: Duration::ZERO,
            },
        );
        let setup = p.analyses.remove(&AnalysisScope::Step(0)).unwrap();
        p.analyses.insert(AnalysisScope::Step(1), setup);
        p.check().unwrap();
        let s = step(&p, &waiting(), obs(0, "r2", 0), 0, 4);
        // Once the preview is up, the mirror starts and the preview's analysis with it.
        let d = decide(&p, &s, &obs(5, "r2", 4));
        assert_eq!((d.world.weight, d.world.mirror), (0, Some(50)));
        assert_eq!(p.step_label(&d.state), "step 2/3 (preview)");
        let due = analysis_due(&p, &d.state, t(15)).expect("the pre-promotion analysis");
        assert_eq!(due.scope, AnalysisScope::Step(1));
        // A pass switches all traffic; the mirror goes with the switch.
        let s = d.state;
        let d = decide(&p, &s, &with_analysis(obs(15, "r2", 4), &s, &p, pass()));
        assert_eq!((d.world.weight, d.world.mirror), (100, None));
    }
}
