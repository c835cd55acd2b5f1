//! A report document: one or more sections, each a judgement (verdict, metric table, charts)
//! with, for rollouts (replay, demo, dry-run Releases), the timeline of decisions. The HTML
//! and Markdown renderers take this; the JSON of a single judgement stays [`Report`].

use crate::judge::{MetricData, Report};
use crate::template::ReleaseAnalysis;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What kind of moment a marker or timeline row is, for its colour and icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkKind {
    /// Something informational (started, paused, an inconclusive analysis).
    Info,
    /// An analysis passed or the canary moved to the next step.
    Advance,
    /// An analysis failed or could not run, without ending the rollout.
    Warn,
    /// The rollout was aborted and rolled back.
    Abort,
    /// The canary was promoted or the release succeeded.
    Promote,
}

/// One decision of a rollout, shown as a timeline row and as a marker on the time charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The step in words, e.g. `step 2/3 (50%)`.
    pub step: String,
    /// The canary's traffic weight after the decision.
    pub weight: u8,
    /// What happened and why, e.g. `analysis failed (latency p99 +38%) -> abort`.
    pub text: String,
    /// Its kind.
    pub kind: MarkKind,
}

/// The data of one judgement's charts: the template and what was fetched for each of its
/// metrics (in template order, as [`crate::analysis::run_with_data`] returns it).
#[derive(Debug, Clone, Copy)]
pub struct ChartData<'a> {
    /// The template judged.
    pub template: &'a ReleaseAnalysis,
    /// The data, one entry per metric of the template.
    pub data: &'a [MetricData],
}

/// One section of a document.
#[derive(Debug, Clone)]
pub struct Section<'a> {
    /// The heading, e.g. `Healthy canary: promoted`.
    pub title: String,
    /// One sentence under the heading.
    pub summary: String,
    /// The judgement shown in the verdict header and the metric table.
    pub report: &'a Report,
    /// The data to chart (`None`: the table only).
    pub charts: Option<ChartData<'a>>,
    /// The rollout's decisions, in time order (empty for a single judgement).
    pub marks: &'a [Mark],
}

/// A whole document.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    /// The page title.
    pub title: String,
    /// Its sections.
    pub sections: Vec<Section<'a>>,
}
