//! The ReleaseAnalysis: which metrics to compare between a stable and a canary version, and how.
//!
//! The same document works as a file for `vigil judge --template FILE` and, later, as a
//! Kubernetes object. This module is pure: it parses nothing from disk and talks to nothing.
//! [`load`] turns YAML text into a validated template with file and line in every error,
//! [`render`] fills a query's placeholders safely, and [`selector`] checks label matchers.

pub mod load;
pub mod render;
pub mod selector;
pub mod units;
pub mod validate;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use units::{Fraction, PromDuration};

/// The `apiVersion` every template carries.
pub const API_VERSION: &str = "vigil.dev/v1alpha1";
/// The `kind` every template carries.
pub const KIND: &str = "ReleaseAnalysis";

/// A whole template document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseAnalysis {
    /// Always `vigil.dev/v1alpha1`.
    pub api_version: String,
    /// Always `ReleaseAnalysis`.
    pub kind: String,
    /// The template's name and Kubernetes bookkeeping.
    pub metadata: Metadata,
    /// What to measure.
    pub spec: TemplateSpec,
}

/// The part of Kubernetes object metadata a template uses. Other metadata fields (uid,
/// resourceVersion, managedFields, ...) are accepted and ignored, so objects read back
/// from a cluster load too.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The template's name, used in reports and error messages.
    pub name: String,
    /// The namespace, when the template lives in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The body of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateSpec {
    /// Arguments that queries refer to as `{{ args.NAME }}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgSpec>,
    /// The metrics to compare, at least one.
    pub metrics: Vec<MetricSpec>,
    /// How outcomes become a score and a verdict.
    #[serde(default)]
    pub scoring: Scoring,
    /// Before/after comparisons only (a version judged against its predecessor's own metrics
    /// from before it began): the baseline window lies exactly this much earlier than the
    /// judged one, e.g. `1d` or `1w` to compare the same time of day or week. Without it the
    /// baseline is the window of the same length just before the new version began. Ignored
    /// when stable and canary are judged side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<PromDuration>,
}

/// One template argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgSpec {
    /// The name used in `{{ args.NAME }}`.
    pub name: String,
    /// The value used when none is given; without it the argument is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What the argument means, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How metric outcomes become a score and a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scoring {
    /// The significance level of every test: the accepted chance of calling an unchanged
    /// metric changed.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The accepted chance of advancing a canary at or beyond a metric's `guard`: the
    /// promotion rule's error level.
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// How far the canary's share of requests may stray from its weight, relative to it,
    /// before a significant difference is a traffic-split mismatch (20%: at weight 10%, a
    /// share between 8% and 12% is as set).
    #[serde(default = "default_split_tolerance")]
    pub split_tolerance: Fraction,
    /// The lowest score (0-100) that passes.
    #[serde(default = "default_pass_score")]
    pub pass_score: f64,
    /// The lowest score (0-100) that is marginal rather than failing.
    #[serde(default = "default_marginal_score")]
    pub marginal_score: f64,
}

fn default_alpha() -> f64 {
    0.01
}
fn default_beta() -> f64 {
    DEFAULT_BETA
}
fn default_split_tolerance() -> Fraction {
    Fraction(DEFAULT_SPLIT_TOLERANCE)
}
fn default_pass_score() -> f64 {
    95.0
}
fn default_marginal_score() -> f64 {
    75.0
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            alpha: default_alpha(),
            beta: default_beta(),
            split_tolerance: default_split_tolerance(),
            pass_score: default_pass_score(),
            marginal_score: default_marginal_score(),
        }
    }
}

/// What kind of evidence a metric's queries return, and so which test compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// Two counters, `errors` and `total`: compared as rates of counts.
    Ratio,
    /// A Prometheus histogram's buckets, `sum by (le)`: compared by the rates of requests
    /// slower than the stable version's quantiles.
    Histogram,
    /// Any query with one point per step per version: the versions' points at the same
    /// steps are compared with an anytime-valid confidence sequence.
    Series,
    /// An absolute bound on the canary alone, as Argo Rollouts and Flagger check today.
    Threshold,
}

impl MetricType {
    /// The name used in templates and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ratio => "ratio",
            Self::Histogram => "histogram",
            Self::Series => "series",
            Self::Threshold => "threshold",
        }
    }
}

/// Which change of a metric harms users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A higher canary value is a regression (errors, latency).
    #[default]
    Increase,
    /// A lower canary value is a regression (throughput, success rate).
    Decrease,
    /// Any change beyond the tolerance is a regression.
    Either,
}

/// What a metric without enough data counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoDataPolicy {
    /// Report `nodata` and make the verdict inconclusive (the safe default).
    #[default]
    Inconclusive,
    /// Count the metric as passing: for metrics that are legitimately empty (e.g. restarts).
    Pass,
    /// Count the metric as failing.
    Fail,
}

/// What to do with NaN values in series and threshold samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NanStrategy {
    /// Drop NaN points before testing (Kayenta's default).
    #[default]
    Remove,
    /// Replace NaN points with `nanValue`.
    Replace,
    /// Treat any NaN as an error in the metric's data.
    Fail,
}

/// What to do with outlying points of series and threshold metrics (Tukey's IQR fences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutlierStrategy {
    /// Keep every point (the default: the rank tests are robust to outliers).
    #[default]
    Keep,
    /// Drop points outside the fences.
    Remove,
    /// Move points outside the fences onto the nearest fence.
    Replace,
}

/// The default IQR fence factor.
pub const DEFAULT_IQR_FACTOR: f64 = 1.5;

/// How a threshold metric reduces the canary's points over the window to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// The mean of all points.
    #[default]
    Mean,
    /// The smallest point.
    Min,
    /// The largest point.
    Max,
    /// The last point in time.
    Last,
}

impl Aggregate {
    /// The name used in templates and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
            Self::Last => "last",
        }
    }
}

/// One metric of a template. Which fields apply depends on `type`; [`validate`] checks that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Unique name within the template.
    pub name: String,
    /// The kind of evidence and so the test.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// The query, for `histogram`, `series` and `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The error count query, for `ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// The request count query, for `ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// Which change is harmful.
    #[serde(default)]
    pub direction: Direction,
    /// The relative change that is not a regression. A pass needs evidence that any change is
    /// within it; a fail needs evidence that the change goes beyond it.
    #[serde(default)]
    pub tolerance: Fraction,
    /// For `ratio` and `histogram` metrics: the smallest harmful change the rollout must rule
    /// out (at confidence `1 - beta`) before the canary gets all the traffic. A step that gives
    /// the canary a weight `w` needs the change ruled out at `guard / w` (exposure: a canary
    /// at 10% needs little evidence to move to 50%, full promotion the most). Default: five
    /// times the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Fraction>,
    /// A failing or data-less critical metric fails or blocks the whole analysis.
    #[serde(default)]
    pub critical: bool,
    /// The metric's share in the score.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// A group name for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Fewest requests per version before a `ratio` or `histogram` metric is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Fewest points per version before a `series` or `threshold` metric is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_points: Option<usize>,
    /// What too little data counts as.
    #[serde(default)]
    pub on_no_data: NoDataPolicy,
    /// What to do with NaN points (`series`, `threshold`).
    #[serde(default)]
    pub nan: NanStrategy,
    /// The value that replaces NaN when `nan: replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nan_value: Option<f64>,
    /// What to do with outlying points (`series`, `threshold`), applied after NaN handling.
    #[serde(default)]
    pub outliers: OutlierStrategy,
    /// The IQR fence factor `k` of `[Q1 - k*IQR, Q3 + k*IQR]`; default 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iqr_factor: Option<f64>,
    /// Quantiles compared for a `histogram` metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
    /// The lowest acceptable value, for `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The highest acceptable value, for `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// How `threshold` reduces the canary's points to one value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// What the metric means, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_weight() -> f64 {
    1.0
}

/// Default fewest requests per version for `ratio` and `histogram` metrics.
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
/// Default fewest points per version for `series` metrics.
pub const DEFAULT_MIN_POINTS: usize = 10;
/// Default fewest points for `threshold` metrics.
pub const DEFAULT_MIN_POINTS_THRESHOLD: usize = 1;
/// Default promotion error level (`scoring.beta`).
pub const DEFAULT_BETA: f64 = 0.025;
/// Default `scoring.splitTolerance`.
pub const DEFAULT_SPLIT_TOLERANCE: f64 = 0.2;
/// A metric's default `guard`, as a multiple of its tolerance.
pub const DEFAULT_GUARD_FACTOR: f64 = 5.0;

/// Default quantiles compared for `histogram` metrics.
pub const DEFAULT_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

impl MetricSpec {
    /// The fewest requests per version before a count-based metric is judged.
    pub fn min_requests(&self) -> u64 {
        self.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS)
    }

    /// The fewest points per version before a point-based metric is judged.
    pub fn min_points(&self) -> usize {
        self.min_points.unwrap_or(match self.kind {
            MetricType::Threshold => DEFAULT_MIN_POINTS_THRESHOLD,
            _ => DEFAULT_MIN_POINTS,
        })
    }

    /// The guard of the promotion rule: `guard`, or [`DEFAULT_GUARD_FACTOR`] times the tolerance.
    pub fn guard(&self) -> f64 {
        self.guard
            .map_or(DEFAULT_GUARD_FACTOR * self.tolerance.0, |g| g.0)
    }

    /// The quantiles compared for a histogram metric.
    pub fn quantiles(&self) -> Vec<f64> {
        self.quantiles
            .clone()
            .unwrap_or_else(|| DEFAULT_QUANTILES.to_vec())
    }

    /// The queries this metric runs, each with the field it came from.
    pub fn queries(&self) -> Vec<(QueryPart, &str)> {
        match self.kind {
            MetricType::Ratio => [
                (QueryPart::Errors, self.errors.as_deref()),
                (QueryPart::Total, self.total.as_deref()),
            ]
            .into_iter()
            .filter_map(|(part, q)| q.map(|q| (part, q)))
            .collect(),
            _ => self
                .query
                .as_deref()
                .map(|q| vec![(QueryPart::Query, q)])
                .unwrap_or_default(),
        }
    }
}

/// Which of a metric's query fields a query came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryPart {
    /// The `query` field.
    Query,
    /// The `errors` field of a ratio metric.
    Errors,
    /// The `total` field of a ratio metric.
    Total,
}

impl QueryPart {
    /// The template field name.
    pub fn field(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Errors => "errors",
            Self::Total => "total",
        }
    }
}
