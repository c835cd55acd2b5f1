//! Replays a Release's rollout over a past time range, offline: the same state machine and
//! judge as the controller, interval by interval, against any [`MetricSource`], with the
//! cluster taken to do at once whatever the machine asks (the canary is ready as soon as it
//! is created, the stable Deployment rolls as soon as it is un-paused).
//!
//! It answers "what would vigil have done in last week's release?", and drives `vigil demo`
//! over the simulated source. Release gates are webhooks of the live system: a replay does
//! not call them and takes them as passed. A pause without a duration is taken as promoted
//! by an operator at once, so that the replay goes on.

pub mod report;

use crate::analysis::{self, Judged};
use crate::data::Window;
use crate::judge::{Outcome, Report, words};
use crate::report::doc::{Mark, MarkKind};
use crate::rollout::machine::{analysis_due, decide, gates_due};
use crate::rollout::{
    AnalysisOutcome, EventKind, GateResult, Observation, Phase, Plan, Request, RequestAction,
    State, Step,
};
use crate::source::MetricSource;
use crate::template::ReleaseAnalysis;
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The pod-template revision the replay calls the stable version.
pub const STABLE_REVISION: &str = "stable";
/// The pod-template revision the replay calls the canary.
pub const CANARY_REVISION: &str = "canary";
/// The replicas the replay's target Deployment has (they only matter for replica steps).
const TARGET_REPLICAS: i32 = 10;
/// The most reconciles a replay runs, against a plan that never ends.
const MAX_TICKS: usize = 100_000;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayInput<'a> {
    /// The Release's plan: steps, analyses, limits.
    pub plan: Plan,
    /// The templates the Release names, by name.
    pub templates: &'a BTreeMap<String, ReleaseAnalysis>,
    /// The stable version's label matchers.
    pub stable: Selector,
    /// The canary's label matchers.
    pub canary_matchers: Selector,
    /// When the release starts.
    pub from: DateTime<Utc>,
    /// When the replay stops at the latest.
    pub to: DateTime<Utc>,
    /// Queries in flight at most, per analysis.
    pub concurrency: usize,
}

impl ReplayInput<'_> {
    /// Judges `templates` over `window` with the Release's `args`, between the replay's
    /// versions; for a bake (`stable_only`), the stable version against its own past, as
    /// the controller does once the stable Deployment runs the new version.
    pub(crate) async fn judge<S: MetricSource>(
        &self,
        source: &S,
        templates: &[ReleaseAnalysis],
        args: &BTreeMap<String, String>,
        (window, baseline, stable_only): (Window, analysis::Baseline, bool),
        look: (u32, crate::judge::Position),
    ) -> (Vec<Judged>, Vec<String>) {
        let canary = if stable_only {
            &self.stable
        } else {
            &self.canary_matchers
        };
        analysis::run_templates(
            source,
            templates,
            args,
            (&self.stable, canary),
            (window, baseline),
            look,
            self.concurrency,
        )
        .await
    }
}

/// Why a replay cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The Release's spec is not valid.
    #[error("the Release is not valid: {0}")]
    Spec(String),
    /// The Release names a template that was not given.
    #[error(
        "the Release uses template {name:?}, which was not given: pass its file with --template (given: {given})"
    )]
    MissingTemplate {
        /// The template's name.
        name: String,
        /// The names given.
        given: String,
    },
    /// The time range is empty.
    #[error("--from ({from}) must be before --to ({to})")]
    Range {
        /// Start.
        from: DateTime<Utc>,
        /// End.
        to: DateTime<Utc>,
    },
}

/// One analysis the replay ran.
#[derive(Debug, Clone)]
pub struct AnalysisRun {
    /// When it ran (the end of its window).
    pub at: DateTime<Utc>,
    /// The step, e.g. `step 2/3 (50%)`.
    pub step: String,
    /// The outcome the state machine was given.
    pub outcome: AnalysisOutcome,
    /// Each template's report with the data it judged.
    pub reports: Vec<Judged>,
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every step passed and the canary was promoted.
    Promoted,
    /// The canary was aborted and rolled back.
    Aborted,
    /// The range ended before the rollout did.
    Unfinished,
}

impl End {
    /// The word used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Promoted => "promoted",
            End::Aborted => "aborted",
            End::Unfinished => "unfinished",
        }
    }
}

/// What a replay found.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// Every decision, in time order.
    pub marks: Vec<Mark>,
    /// Every analysis, in time order.
    pub analyses: Vec<AnalysisRun>,
    /// The rollout's last state.
    pub state: State,
    /// How it ended.
    pub end: End,
    /// When it ended (the last reconcile).
    pub ended_at: DateTime<Utc>,
}

/// Told about a replay as it goes, for progress displays and simulated traffic.
pub trait ReplayObserver {
    /// The state after a reconcile at `now` (the canary's weight is `state.weight()` from now on).
    fn reconciled(&mut self, now: DateTime<Utc>, state: &State) {
        let _ = (now, state);
    }
    /// A decision worth a line.
    fn marked(&mut self, mark: &Mark) {
        let _ = mark;
    }
    /// How long to wait in real time before the next reconcile, `simulated` later: zero
    /// (the default) replays as fast as the source answers; a demo paces itself.
    fn pace(&mut self, simulated: chrono::Duration) -> std::time::Duration {
        let _ = simulated;
        std::time::Duration::ZERO
    }
}

/// Checks the input before anything is queried: the range is not empty and every template
/// the plan uses was given. Returns the plan.
pub fn check<'i>(input: &'i ReplayInput<'_>) -> Result<&'i Plan, ReplayError> {
    if input.from >= input.to {
        return Err(ReplayError::Range {
            from: input.from,
            to: input.to,
        });
    }
    for name in input.plan.template_names() {
        if !input.templates.contains_key(&name) {
            return Err(ReplayError::MissingTemplate {
                name,
                given: given(input.templates),
            });
        }
    }
    Ok(&input.plan)
}

fn given(templates: &BTreeMap<String, ReleaseAnalysis>) -> String {
    if templates.is_empty() {
        "none".into()
    } else {
        templates.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Replays the rollout: the release starts at `from` and the replay stops when the rollout
/// ends or at `to`.
pub async fn run<S: MetricSource>(
    input: &ReplayInput<'_>,
    source: &S,
    observer: &mut dyn ReplayObserver,
) -> Result<ReplayOutcome, ReplayError> {
    let plan = check(input)?;
    let mut state = State::default();
    let mut now = input.from;
    let mut marks = Vec::new();
    let mut analyses = Vec::new();
    let mut revision = STABLE_REVISION;
    let mut end = End::Unfinished;
    for _ in 0..MAX_TICKS {
        if state.phase() == Phase::Waiting {
            // Adopted: the release is the next template change, at once.
            revision = CANARY_REVISION;
        }
        let label = plan.step_label(&state);
        let mut analysis = None;
        let mut brief = String::new();
        if let Some(due) = analysis_due(plan, &state, now) {
            let run = analyse(input, plan, &state, due, source).await;
            brief = match &run.outcome {
                // The first cause, on one line: the others are usually the same.
                AnalysisOutcome::Error { message } => {
                    let first = first_error(&run.reports).unwrap_or(message);
                    crate::judge::words::truncate_bytes(first.lines().next().unwrap_or(""), 200)
                }
                _ => notable_metrics(&run.reports),
            };
            analysis = Some((due, run.outcome.clone()));
            analyses.push(AnalysisRun { step: label, ..run });
        }
        let request = manual_promote(plan, &state, now);
        let mut observation = Observation {
            now,
            template_revision: revision.into(),
            target_replicas: TARGET_REPLICAS,
            autoscaler: None,
            canary_available: TARGET_REPLICAS,
            // Deployments roll at once in a replay: the promotion, and a bake's rollback.
            stable_rolled: state.phase() == Phase::Promoting
                || matches!(&state.stage, crate::rollout::Stage::Baking(b) if b.rollback.is_some()),
            paused: false,
            request,
            analysis,
            gates: Vec::new(),
        };
        observation.gates = gates_due(plan, &state, &observation)
            .into_iter()
            .map(|kind| GateResult {
                kind,
                passed: true,
                message: "not called in a replay".into(),
            })
            .collect();
        let decision = decide(plan, &state, &observation);
        let new_marks = marks_of(
            &observation,
            &brief,
            &decision.events,
            (&state, &decision.state),
            plan,
        );
        if decision.world.restore.is_some() {
            revision = STABLE_REVISION;
        }
        state = decision.state;
        observer.reconciled(now, &state);
        for mark in new_marks {
            observer.marked(&mark);
            marks.push(mark);
        }
        match state.phase() {
            Phase::Succeeded => end = End::Promoted,
            Phase::Failed => end = End::Aborted,
            _ => {}
        }
        if end != End::Unfinished {
            break;
        }
        if state.phase() == Phase::Waiting {
            // Adopted at `from`: the release starts at the same moment.
            continue;
        }
        let next = now + chrono::Duration::from_std(decision.requeue).unwrap_or_default();
        if next > input.to {
            break;
        }
        let next = next.max(now + chrono::Duration::seconds(1));
        let wait = observer.pace(next - now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        now = next;
    }
    Ok(ReplayOutcome {
        marks,
        analyses,
        state,
        end,
        ended_at: now,
    })
}

/// A pause step without a duration waits for `vigil promote`; the replay gives it at once.
fn manual_promote(plan: &Plan, state: &State, now: DateTime<Utc>) -> Option<Request> {
    let step = plan.steps.get(state.current_step() as usize)?;
    (state.phase() == Phase::Paused
        && matches!(step.step, Step::Pause { duration: None })
        && state.step_started_at().is_some())
    .then(|| Request {
        action: RequestAction::Promote,
        reason: "the replay takes the manual promote as given at once".into(),
        at: now,
    })
}

/// Runs the due analysis with the given templates, like the controller does.
async fn analyse<S: MetricSource>(
    input: &ReplayInput<'_>,
    plan: &Plan,
    state: &State,
    due: crate::rollout::AnalysisDue,
    source: &S,
) -> AnalysisRun {
    let setup = plan.analysis(due.scope);
    let interval = plan.interval_at(state.current_step() as usize);
    let step = PromDuration::from_millis(interval.as_millis() as u64);
    let (reports, errors) = match Window::new(due.from, due.to, step) {
        Err(e) => (
            Vec::new(),
            vec![format!("the analysis window is not usable: {e}")],
        ),
        Ok(window) => {
            // check() made sure every named template is there.
            let templates: Vec<ReleaseAnalysis> = setup
                .templates
                .iter()
                .filter_map(|t| input.templates.get(&t.name).cloned())
                .collect();
            input
                .judge(
                    source,
                    &templates,
                    &setup.args,
                    (
                        window,
                        analysis::Baseline::of(&due),
                        due.scope == crate::rollout::AnalysisScope::Bake,
                    ),
                    (due.look, analysis::position(&due)),
                )
                .await
        }
    };
    let judged: Vec<Report> = reports.iter().map(|j| j.report.clone()).collect();
    AnalysisRun {
        at: due.to,
        step: String::new(),
        outcome: analysis::outcome(&judged, &errors),
        reports,
    }
}

/// The marks of one reconcile: an analysis with what it led to, then the other events.
fn marks_of(
    observation: &Observation,
    brief: &str,
    events: &[crate::rollout::Event],
    (before, after): (&State, &State),
    plan: &Plan,
) -> Vec<Mark> {
    let at = observation.now;
    let mut marks = Vec::new();
    let consequence: Vec<&str> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Aborted => Some("abort"),
            EventKind::Promoting => Some("promote"),
            EventKind::StepAdvanced => Some("next step"),
            _ => None,
        })
        .collect();
    if let Some((_, outcome)) = &observation.analysis {
        let (verdict, detail, kind) = match outcome {
            AnalysisOutcome::Pass { .. } => ("passed", "", MarkKind::Advance),
            AnalysisOutcome::Fail { .. } => ("failed", brief, MarkKind::Warn),
            AnalysisOutcome::Inconclusive { .. } => ("inconclusive", brief, MarkKind::Info),
            AnalysisOutcome::Error { .. } => ("could not run", brief, MarkKind::Warn),
        };
        let mut text = format!("analysis {verdict}");
        if !detail.is_empty() {
            text.push_str(&format!(" ({detail})"));
        }
        let mut kind = kind;
        if !consequence.is_empty() {
            text.push_str(&format!(" -> {}", consequence.join(", ")));
            if consequence.contains(&"abort") {
                kind = MarkKind::Abort;
            }
        }
        marks.push(Mark {
            at,
            step: plan.step_label(before),
            weight: after.weight(),
            text,
            kind,
        });
    }
    for event in events {
        let analysed = observation.analysis.is_some();
        let kind = match event.kind {
            // The analysis' mark says these already.
            EventKind::AnalysisFailed
            | EventKind::AnalysisInconclusive
            | EventKind::AnalysisError
            | EventKind::Aborted
                if analysed =>
            {
                continue;
            }
            EventKind::Aborted => MarkKind::Abort,
            EventKind::Promoting | EventKind::Succeeded => MarkKind::Promote,
            EventKind::StepAdvanced => MarkKind::Advance,
            EventKind::AnalysisFailed | EventKind::AnalysisError | EventKind::Stalled => {
                MarkKind::Warn
            }
            _ => MarkKind::Info,
        };
        marks.push(Mark {
            at,
            step: plan.step_label(after),
            weight: after.weight(),
            text: event.message.clone(),
            kind,
        });
    }
    marks
}

/// The metrics that did not pass, in a few words, e.g. `latency +38%, error-rate +290%` for
/// failing ones, or `cpu nodata` when none failed; empty when every metric passed.
pub fn notable_metrics(reports: &[Judged]) -> String {
    let metrics = || reports.iter().flat_map(|j| j.report.metrics.iter());
    let failing: Vec<String> = metrics()
        .filter(|m| matches!(m.outcome, Outcome::High | Outcome::Low))
        .map(|m| match m.estimate {
            Some(e) => format!("{} {}", m.name, words::change(e)),
            None => format!("{} {}", m.name, m.outcome.as_str()),
        })
        .collect();
    if !failing.is_empty() {
        return failing.join(", ");
    }
    metrics()
        .filter(|m| m.outcome != Outcome::Pass)
        .map(|m| format!("{} {}", m.name, m.outcome.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first error met fetching the data of an analysis: `template T, metric M (field,
/// version): what went wrong` and the query on a second line.
pub fn first_error(reports: &[Judged]) -> Option<&str> {
    reports
        .iter()
        .flat_map(|j| j.data.iter())
        .flat_map(|d| d.errors.iter())
        .map(String::as_str)
        .next()
}

/// One line of the terminal timeline: `step 2/3 (50%) at 10:42: analysis failed (...) -> abort`.
pub fn timeline_line(mark: &Mark) -> String {
    format!(
        "{} at {}: {}",
        mark.step,
        mark.at.format("%Y-%m-%d %H:%M:%S"),
        mark.text
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::Release;
    use crate::source::simulated::{SimulatedSource, VersionModel, WeightLog};
    use crate::template::load;
    use chrono::TimeZone;
    use std::sync::Arc;

    const CANARY: &str = include_str!("../cli/demo-release.yaml");
    const TEMPLATE: &str = include_str!("../../analysis-templates/demo.yaml");

    /// Follows the weights into the simulation, as a router would.
    struct Router(Arc<WeightLog>);
    impl ReplayObserver for Router {
        fn reconciled(&mut self, now: DateTime<Utc>, state: &State) {
            self.0.set(now.timestamp() as f64, state.weight());
        }
    }

    /// The replay of the demo Release from 10:00 for `hours`.
    fn input<'a>(
        canary: &'a Release,
        templates: &'a BTreeMap<String, ReleaseAnalysis>,
        hours: i64,
    ) -> ReplayInput<'a> {
        let from = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        ReplayInput {
            plan: crate::api::plan::plan(&canary.spec).unwrap(),
            templates,
            stable: "version=\"v1\"".parse().unwrap(),
            canary_matchers: "version=\"v2\"".parse().unwrap(),
            from,
            to: from + chrono::Duration::hours(hours),
            concurrency: 8,
        }
    }

    async fn simulate(canary_model: VersionModel) -> ReplayOutcome {
        let canary: Release = serde_saphyr::from_str(CANARY).unwrap();
        let template = load::parse(TEMPLATE, "demo.yaml").unwrap();
        let templates = BTreeMap::from([("demo".to_string(), template.clone())]);
        let log = Arc::new(WeightLog::default());
        let stable = VersionModel {
            rps: 2000.0,
            ..VersionModel::default()
        };
        let source =
            SimulatedSource::new(&template, stable, canary_model, 7).following(log.clone());
        let input = input(&canary, &templates, 4);
        run(&input, &source, &mut Router(log)).await.unwrap()
    }

    #[tokio::test]
    async fn a_healthy_canary_is_promoted_step_by_step() {
        let out = simulate(VersionModel {
            rps: 0.0,
            ..VersionModel::default()
        })
        .await;
        let lines: Vec<String> = out.marks.iter().map(timeline_line).collect();
        assert_eq!(out.end, End::Promoted, "{lines:#?}");
        let weights: Vec<u8> = out
            .marks
            .iter()
            .filter(|m| m.text.contains("% of traffic to the canary"))
            .map(|m| m.weight)
            .collect();
        assert_eq!(weights, [10, 50, 100], "{lines:#?}");
        // Every step advanced on a passing analysis, never on a failing one.
        assert!(out.analyses.iter().all(|a| a.outcome.verdict() != "fail"));
        assert_eq!(out.state.phase(), Phase::Succeeded);
        assert_eq!(out.state.weight(), 0, "traffic back on the promoted stable");
        assert!(out.ended_at > out.marks[0].at);
    }

    #[tokio::test]
    async fn a_faulty_canary_is_aborted_at_the_first_step() {
        let base = VersionModel::default();
        let out = simulate(VersionModel {
            rps: 0.0,
            error_rate: base.error_rate * 4.0,
            latency_median: base.latency_median * 1.6,
            ..base
        })
        .await;
        let lines: Vec<String> = out.marks.iter().map(timeline_line).collect();
        assert_eq!(out.end, End::Aborted, "{lines:#?}");
        let abort = out
            .marks
            .iter()
            .find(|m| m.kind == MarkKind::Abort)
            .expect("an abort mark");
        assert!(abort.step.starts_with("step 1/3 (10%)"), "{lines:#?}");
        assert!(
            abort.text.contains("analysis failed (error-rate +"),
            "{lines:#?}"
        );
        assert!(abort.text.ends_with("-> abort"), "{lines:#?}");
        assert!(out.marks.iter().all(|m| m.weight <= 10), "{lines:#?}");
        assert_eq!(out.state.weight(), 0);
    }

    #[tokio::test]
    async fn a_template_the_canary_names_must_be_given() {
        let canary: Release = serde_saphyr::from_str(CANARY).unwrap();
        let templates = BTreeMap::new();
        assert!(matches!(
            check(&input(&canary, &templates, 0)),
            Err(ReplayError::Range { .. })
        ));
        let input = input(&canary, &templates, 1);
        let err = check(&input).unwrap_err().to_string();
        assert!(
            err.contains("template \"demo\"") && err.contains("--template"),
            "{err}"
        );
    }
}
