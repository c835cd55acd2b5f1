//! A replayed rollout as a report: the timeline, the analysis that decided, and charts of
//! each template's metrics over the whole rollout with the decisions marked on them.

use super::{AnalysisRun, End, ReplayInput, ReplayOutcome, timeline_line};
use crate::analysis::Judged;
use crate::data::Window;
use crate::judge::{Position, Report};
use crate::report::doc::{ChartData, Document, Mark, Section};
use crate::rollout::{AnalysisScope, Plan};
use crate::source::MetricSource;
use crate::template::ReleaseAnalysis;
use crate::template::units::PromDuration;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The most points a chart query asks for (Prometheus refuses more than 11,000).
const CHART_POINTS: i64 = 600;

/// The chart range: from a few steps before the release (the stable baseline) to a few steps
/// after the end, within the replay's range where data exists; and its step.
fn chart_window(input: &ReplayInput<'_>, outcome: &ReplayOutcome, plan: &Plan) -> Option<Window> {
    let interval = plan
        .steps
        .first()
        .map_or(crate::rollout::plan::DEFAULT_INTERVAL, |s| s.interval);
    let interval = chrono::Duration::from_std(interval).ok()?;
    let start = input.from - interval * 5;
    let end = (outcome.ended_at + interval * 3).min(input.to.max(outcome.ended_at));
    let span = (end - start).num_seconds().max(1);
    let step_secs = (span / CHART_POINTS).max(interval.num_seconds() / 2).max(1);
    Window::new(
        start,
        end,
        PromDuration::from_millis(step_secs.unsigned_abs() * 1000),
    )
    .ok()
}

/// Judges each template the Release uses over the chart window, for the data to chart.
/// Templates whose data cannot be fetched are left out (the timeline still says what
/// happened).
pub async fn chart_runs<S: MetricSource>(
    input: &ReplayInput<'_>,
    outcome: &ReplayOutcome,
    plan: &Plan,
    source: &S,
) -> Vec<Judged> {
    let Some(window) = chart_window(input, outcome, plan) else {
        return Vec::new();
    };
    let args = plan.analysis(AnalysisScope::Background).args;
    let templates: Vec<ReleaseAnalysis> = plan
        .template_names()
        .iter()
        .filter_map(|n| input.templates.get(n).cloned())
        .collect();
    input
        .judge(
            source,
            &templates,
            &args,
            (window, crate::analysis::Baseline::Concurrent, false),
            (1, Position::one_off()),
        )
        .await
        .0
}

/// What the replay concluded, in one sentence.
pub fn conclusion(outcome: &ReplayOutcome) -> String {
    let last = outcome.marks.last();
    let when = outcome.ended_at.format("%Y-%m-%d %H:%M:%S UTC");
    match outcome.end {
        End::Promoted => format!("vigil would have promoted the canary at {when}"),
        End::Aborted => {
            let at = outcome
                .marks
                .iter()
                .rev()
                .find(|m| m.kind == crate::report::doc::MarkKind::Abort)
                .or(last);
            match at {
                Some(m) => format!(
                    "vigil would have aborted and rolled back at {}",
                    timeline_line(m)
                ),
                None => format!("vigil would have aborted and rolled back at {when}"),
            }
        }
        End::Unfinished => format!(
            "the rollout had not ended by {when}: vigil would still be at {}",
            last.map_or("the start".into(), |m| m.step.clone())
        ),
    }
}

/// The analysis that decided: the last one (the one that failed, for an abort).
pub fn deciding(outcome: &ReplayOutcome) -> Option<&AnalysisRun> {
    outcome.analyses.last()
}

/// The report document: one section per template, with the deciding analysis in the
/// table, the whole rollout in the charts, and the timeline.
pub fn document<'a>(title: &str, outcome: &'a ReplayOutcome, charts: &'a [Judged]) -> Document<'a> {
    let decided = deciding(outcome);
    let mut sections = Vec::new();
    for c in charts {
        let report = decided
            .and_then(|run| {
                run.reports
                    .iter()
                    .find(|j| j.report.template == c.template.metadata.name)
            })
            .map_or(&c.report, |j| &j.report);
        sections.push(Section {
            title: format!("{title}: {}", outcome.end.as_str()),
            summary: conclusion(outcome),
            report,
            charts: Some(ChartData {
                template: &c.template,
                data: &c.data,
            }),
            marks: &outcome.marks,
        });
    }
    Document {
        title: title.to_string(),
        sections,
    }
}

/// The replay as JSON: how it ended, the timeline, and every analysis with its reports.
pub fn json(outcome: &ReplayOutcome, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    json!({
        "schema": "vigil.dev/replay/v1",
        "from": from,
        "to": to,
        "end": outcome.end.as_str(),
        "endedAt": outcome.ended_at,
        "conclusion": conclusion(outcome),
        "phase": outcome.state.phase().as_str(),
        "weight": outcome.state.weight(),
        "timeline": outcome.marks,
        "analyses": outcome.analyses.iter().map(analysis_json).collect::<Vec<_>>(),
    })
}

fn analysis_json(run: &AnalysisRun) -> Value {
    json!({
        "at": run.at,
        "step": run.step,
        "verdict": run.outcome.verdict(),
        "reports": run.reports.iter().map(|j| &j.report).collect::<Vec<&Report>>(),
    })
}

/// The marks as terminal lines.
pub fn timeline(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| format!("{}\n", timeline_line(m)))
        .collect()
}
