//! The judgement: each metric's outcome with its reasons, then the overall verdict and score.
//!
//! Pure: it takes query answers that a source already fetched and returns a [`Report`].

pub mod decision;
mod evidence;
mod metric;
pub mod words;

pub use metric::{Settings, judge_metric};

use crate::data::{QueryResult, Role, Window};
use crate::template::{MetricSpec, NoDataPolicy, QueryPart, ReleaseAnalysis, Scoring};
use serde::Serialize;
use std::collections::BTreeMap;

/// The outcome of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Shown to be within the tolerance (or, for thresholds, within the bounds).
    Pass,
    /// Shown to be higher than the tolerance allows (or above a threshold's maximum).
    High,
    /// Shown to be lower than the tolerance allows (or below a threshold's minimum).
    Low,
    /// Too little data, or not yet enough evidence either way.
    #[serde(rename = "nodata")]
    NoData,
    /// The data could not be fetched or did not make sense.
    Error,
}

impl Outcome {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::High => "high",
            Self::Low => "low",
            Self::NoData => "nodata",
            Self::Error => "error",
        }
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Safe to promote.
    Pass,
    /// Between the marginal and the pass score: a human should look.
    Marginal,
    /// Roll back.
    Fail,
    /// Not enough evidence either way (missing data or errors): neither promote nor roll back.
    Inconclusive,
}

impl Verdict {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Marginal => "marginal",
            Self::Fail => "fail",
            Self::Inconclusive => "inconclusive",
        }
    }
}

/// What one version's data looked like.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct VersionSummary {
    /// Requests (ratio, histogram) or points (series, threshold).
    pub n: f64,
    /// Error count (ratio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// Error rate (ratio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Mean of the points (series, threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Median of the points (series).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// Smallest point (series, threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest point (series, threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Estimated quantiles by level, e.g. `{"0.99": 0.42}` (histogram).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<BTreeMap<String, f64>>,
    /// The value compared with the bounds (threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// The rendered queries of one metric for one version, by field.
pub type Queries = BTreeMap<QueryPart, String>;

/// The result for one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    /// The metric's name.
    pub name: String,
    /// Its type (ratio, histogram, series, threshold).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its group, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its weight in the score.
    pub weight: f64,
    /// Whether it is critical.
    pub critical: bool,
    /// The outcome.
    pub outcome: Outcome,
    /// Why, in a sentence.
    pub reason: String,
    /// The test used.
    pub test: String,
    /// The test statistic.
    pub statistic: Option<f64>,
    /// The p-value of the test in the harmful direction (anytime-valid for sequential tests:
    /// `1 / e_value`, capped at 1).
    pub p_value: Option<f64>,
    /// For sequential tests: the largest e-value for a harmful change seen at any step; the
    /// test fails the metric once it reaches `1 / alpha`.
    pub e_value: Option<f64>,
    /// The one-look test over the whole window, for reference (ratio: exact conditional
    /// binomial or two-proportion z; histogram: chi-square homogeneity of the buckets). The
    /// outcome comes from the sequential test, which stays valid over repeated looks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_sample: Option<FixedSample>,
    /// Estimated relative change canary vs stable (0.25 = +25%).
    pub estimate: Option<f64>,
    /// Interval of that change, [low, high]: a confidence sequence at 1 - alpha for ratio
    /// metrics, a fixed-sample interval otherwise.
    pub ci: Option<[f64; 2]>,
    /// The stable version's data (absent for threshold metrics).
    pub stable: Option<VersionSummary>,
    /// The canary's data.
    pub canary: Option<VersionSummary>,
    /// The rendered queries, by version and field.
    pub queries: BTreeMap<Role, Queries>,
    /// Warnings from the source or about the data's shape.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For `ratio` and `histogram` metrics: the promotion rule's evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionEvidence>,
}

/// What the promotion rule asked of a metric and whether the evidence gave it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionEvidence {
    /// The canary weight (0..1] a pass gives next.
    pub next_weight: f64,
    /// The change that had to be ruled out for that weight, as a ratio canary / stable (for
    /// histograms, of latency): `1 + guard / nextWeight`.
    pub bound: f64,
    /// The confidence the rule asks, `1 - beta`.
    pub confidence: f64,
    /// Whether the evidence rules the bound out (or shows the change within the tolerance).
    pub shown: bool,
}

/// The traffic split check: the canary's share of requests in the current step against the
/// weight the router was told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitResult {
    /// The metric whose request counts were used.
    pub metric: String,
    /// The weight set, as a share (0..1).
    pub expected: f64,
    /// The canary's share of the requests in the step.
    pub observed: f64,
    /// Requests of both versions in the step.
    pub requests: f64,
    /// The anytime-valid e-value against a faithful split (sample ratio mismatch when it
    /// reaches `1 / alpha`).
    pub e_value: f64,
    /// Whether the split is off: the e-value reached `1 / alpha` and the observed share
    /// differs from the weight by more than `scoring.splitTolerance` of it.
    pub mismatch: bool,
}

/// A fixed-sample test's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedSample {
    /// The test.
    pub test: String,
    /// Its statistic.
    pub statistic: f64,
    /// Its p-value (in the harmful direction where the test has one).
    pub p_value: f64,
}

/// The score of one group of metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupScore {
    /// The group's name; metrics without a group are in "default".
    pub name: String,
    /// Weighted share of its metrics that pass, 0-100.
    pub score: f64,
    /// Its metrics.
    pub metrics: Vec<String>,
}

/// The whole judgement; its JSON form is vigil's stable report format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The report format's version.
    pub schema: &'static str,
    /// The template's name.
    pub template: String,
    /// The overall verdict.
    pub verdict: Verdict,
    /// 0-100: the weighted share of passing metrics (0 when a critical metric fails or has no data).
    pub score: f64,
    /// The scores that pass and are marginal.
    pub thresholds: Thresholds,
    /// The window judged.
    pub window: Window,
    /// The earlier window the stable version's data came from, in a before/after comparison
    /// (its points are reported on the judged window's steps); absent side by side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Window>,
    /// Where the data came from.
    pub source: String,
    /// The stable version's label matchers.
    pub stable: String,
    /// The canary's label matchers.
    pub canary: String,
    /// Sentences explaining the verdict.
    pub reasons: Vec<String>,
    /// Per-group scores.
    pub groups: Vec<GroupScore>,
    /// Every metric.
    pub metrics: Vec<MetricResult>,
    /// Where the judgement stood in its rollout (what a pass would do).
    pub position: Position,
    /// The traffic split check, when the step splits traffic by weight and a `ratio` metric
    /// counts requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitResult>,
}

/// The scores that pass and are marginal, and the significance level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Lowest passing score.
    pub pass: f64,
    /// Lowest marginal score.
    pub marginal: f64,
    /// Significance level of the tests.
    pub alpha: f64,
}

/// The data fetched for one metric: each version's answer per query field, or the error
/// that stopped a query.
#[derive(Debug, Clone, Default)]
pub struct MetricData {
    /// Answers by version and field.
    pub results: BTreeMap<(Role, QueryPart), QueryResult>,
    /// Errors by version and field, already worded with template, metric and query.
    pub errors: Vec<String>,
    /// The rendered queries.
    pub queries: BTreeMap<Role, Queries>,
    /// The window each version's queries ran over: the window judged, or for the baseline of
    /// a before/after comparison an earlier one (its answers in `results` are already moved
    /// onto the judged window's steps).
    pub windows: BTreeMap<Role, Window>,
}

/// How a metric counts towards the verdict once `onNoData` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    Pass,
    Fail,
    Missing,
}

fn counted(spec: &MetricSpec, outcome: Outcome) -> Counted {
    match outcome {
        Outcome::Pass => Counted::Pass,
        Outcome::High | Outcome::Low => Counted::Fail,
        Outcome::Error => Counted::Missing,
        Outcome::NoData => match spec.on_no_data {
            NoDataPolicy::Inconclusive => Counted::Missing,
            NoDataPolicy::Pass => Counted::Pass,
            NoDataPolicy::Fail => Counted::Fail,
        },
    }
}

/// The verdict, score, group scores and reasons for a set of metric results.
pub fn verdict(
    specs: &[MetricSpec],
    results: &[MetricResult],
    scoring: &Scoring,
) -> (Verdict, f64, Vec<GroupScore>, Vec<String>) {
    let mut reasons = Vec::new();
    let mut total_weight = 0.0;
    let mut pass_weight = 0.0;
    let mut critical_fail = false;
    let mut critical_missing = false;
    let mut missing = false;
    let mut groups: BTreeMap<String, (f64, f64, Vec<String>)> = BTreeMap::new();
    for (spec, result) in specs.iter().zip(results) {
        let c = counted(spec, result.outcome);
        total_weight += spec.weight;
        let group = groups
            .entry(spec.group.clone().unwrap_or_else(|| "default".into()))
            .or_default();
        group.1 += spec.weight;
        group.2.push(spec.name.clone());
        if c == Counted::Pass {
            pass_weight += spec.weight;
            group.0 += spec.weight;
        }
        let critical = if spec.critical { "critical " } else { "" };
        match (c, result.outcome) {
            (Counted::Fail, _) => {
                critical_fail |= spec.critical;
                reasons.push(format!(
                    "{critical}metric {} failed ({}): {}",
                    spec.name,
                    result.outcome.as_str(),
                    result.reason
                ));
            }
            (Counted::Missing, outcome) => {
                missing = true;
                critical_missing |= spec.critical;
                let what = if outcome == Outcome::Error {
                    "could not be judged"
                } else {
                    "has too little data"
                };
                reasons.push(format!(
                    "{critical}metric {} {what}: {}",
                    spec.name, result.reason
                ));
            }
            (Counted::Pass, Outcome::NoData) => reasons.push(format!(
                "metric {} has no data and counts as passing (onNoData: pass)",
                spec.name
            )),
            (Counted::Pass, _) => {}
        }
    }
    let mut score = if total_weight > 0.0 {
        100.0 * pass_weight / total_weight
    } else {
        0.0
    };
    if critical_fail || critical_missing {
        score = 0.0;
    }
    let verdict = if critical_fail {
        Verdict::Fail
    } else if missing {
        reasons.push(
            "the verdict is inconclusive because not every metric could be judged; \
             vigil never passes on missing or failed data"
                .into(),
        );
        Verdict::Inconclusive
    } else if score >= scoring.pass_score {
        Verdict::Pass
    } else if score >= scoring.marginal_score {
        Verdict::Marginal
    } else {
        Verdict::Fail
    };
    if verdict != Verdict::Inconclusive {
        reasons.push(format!(
            "score {:.0} (pass at {:.0}, marginal at {:.0})",
            score, scoring.pass_score, scoring.marginal_score
        ));
    }
    let groups = groups
        .into_iter()
        .map(|(name, (pass, total, metrics))| GroupScore {
            name,
            score: if total > 0.0 {
                100.0 * pass / total
            } else {
                0.0
            },
            metrics,
        })
        .collect();
    (verdict, score, groups, reasons)
}

/// Where a judgement stands in a rollout: what a pass would do, and which data belong to the
/// current step. A one-off judgement ([`Position::one_off`]) is a rollout of one step whose
/// pass would give the canary all the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    /// The canary weight (0..1] a pass gives next; 1 when a pass promotes.
    pub next_weight: f64,
    /// The current step, 1-based.
    pub step: u32,
    /// When the current step began (Unix seconds): points after it are the step's own, and
    /// the change processes restarted for the step watch them alone. `None`: the whole
    /// window is the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_start: Option<i64>,
    /// The canary weight (0..1) the router was told for the current step, when the step
    /// splits traffic by weight: the split check compares the canary's share of requests
    /// with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

impl Position {
    /// A one-off judgement: one step, whose pass would promote.
    pub fn one_off() -> Self {
        Self {
            next_weight: 1.0,
            step: 1,
            step_start: None,
            weight: None,
        }
    }

    /// Whether a point at `t_ms` (Unix milliseconds, the end of a query step of `step_ms`)
    /// belongs to the current step: its whole query step came after the step began, so it
    /// holds no traffic of the weight before.
    pub fn in_step(&self, t_ms: i64, step_ms: i64) -> bool {
        self.step_start
            .is_none_or(|s| t_ms.saturating_sub(step_ms) >= s.saturating_mul(1000))
    }
}

impl Default for Position {
    fn default() -> Self {
        Self::one_off()
    }
}

/// What the report says about the run itself.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The window judged.
    pub window: Window,
    /// The stable version's earlier window in a before/after comparison; `None` side by side.
    pub baseline: Option<Window>,
    /// Where the data came from.
    pub source: String,
    /// Stable matchers, as rendered.
    pub stable: String,
    /// Canary matchers, as rendered.
    pub canary: String,
    /// 1 for a one-off judgement; the n-th judgement of the same rollout otherwise.
    pub look: u32,
    /// Where the judgement stands in its rollout.
    pub position: Position,
}

/// Judges every metric of a template from fetched data and builds the report.
pub fn judge(template: &ReleaseAnalysis, data: &[MetricData], info: RunInfo) -> Report {
    let scoring = &template.spec.scoring;
    let results: Vec<MetricResult> = template
        .spec
        .metrics
        .iter()
        .zip(data)
        .map(|(spec, data)| {
            judge_metric(
                spec,
                data,
                Settings {
                    alpha: scoring.alpha,
                    beta: scoring.beta,
                    look: info.look,
                    position: info.position,
                    step_ms: window_step_ms(&info.window),
                },
            )
        })
        .collect();
    let (mut verdict, score, groups, mut reasons) =
        verdict(&template.spec.metrics, &results, scoring);
    let split = split_check(template, data, &info.position, &info.window);
    if let Some(s) = split.as_ref().filter(|s| !s.mismatch) {
        reasons.push(format!(
            "traffic split as set: the canary received {} of the requests in this step \
             (weight {})",
            words::percent(s.observed),
            words::percent(s.expected),
        ));
    }
    if let Some(s) = split.as_ref().filter(|s| s.mismatch) {
        reasons.push(format!(
            "traffic split: the canary received {} of the requests in this step ({} of {}), but \
             its weight is {}: the router, sticky sessions or the canary's matchers do not do \
             what the weight says, so the comparisons are suspect; held until the split is \
             fixed (check the routing, then the --canary/stable matchers)",
            words::percent(s.observed),
            words::count(s.observed * s.requests),
            words::count(s.requests),
            words::percent(s.expected),
        ));
        if verdict != Verdict::Fail {
            verdict = Verdict::Inconclusive;
        }
    }
    Report {
        schema: "vigil.dev/report/v1",
        template: template.metadata.name.clone(),
        verdict,
        score,
        thresholds: Thresholds {
            pass: scoring.pass_score,
            marginal: scoring.marginal_score,
            alpha: scoring.alpha,
        },
        window: info.window,
        baseline: info.baseline,
        source: info.source,
        stable: info.stable,
        canary: info.canary,
        reasons,
        groups,
        metrics: results,
        position: info.position,
        split,
    }
}

/// The window's query step in milliseconds.
fn window_step_ms(window: &Window) -> i64 {
    (window.step.as_secs_f64() * 1000.0).round() as i64
}

/// The split check over the current step, from the first `ratio` metric's request counts.
fn split_check(
    template: &ReleaseAnalysis,
    data: &[MetricData],
    position: &Position,
    window: &Window,
) -> Option<SplitResult> {
    let weight = position.weight?;
    let step_ms = window_step_ms(window);
    let (spec, data) = template
        .spec
        .metrics
        .iter()
        .zip(data)
        .find(|(m, _)| m.kind == crate::template::MetricType::Ratio)?;
    let counts = |role: Role| {
        data.results
            .get(&(role, QueryPart::Total))
            .map(evidence::step_counts)
            .unwrap_or_default()
    };
    let (canary, stable) = (counts(Role::Canary), counts(Role::Stable));
    let mut check = crate::stats::srm::SplitCheck::new(template.spec.scoring.alpha)?;
    for (t, s) in stable
        .iter()
        .filter(|(t, _)| position.in_step(**t, step_ms))
    {
        let c = canary.get(t).copied().unwrap_or(0.0);
        check.observe(c, c + s, weight);
    }
    let (c, n) = check.totals();
    let tolerance = template.spec.scoring.split_tolerance.0;
    (n > 0.0).then(|| SplitResult {
        metric: spec.name.clone(),
        expected: weight,
        observed: c / n,
        requests: n,
        e_value: check.e_value(),
        // Significant and material, as a regression is.
        mismatch: check.off_by_more_than(tolerance),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Series;
    use crate::template::load::parse;

    const TEMPLATE: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: t}
spec:
  metrics:
    - name: cpu
      type: series
      query: x{ {{ selector }} }
      tolerance: 20%
      outliers: remove
    - name: slo
      type: threshold
      query: y{ {{ selector }} }
      min: 0.99
      critical: true
"#;

    fn series(values: &[f64]) -> QueryResult {
        QueryResult {
            series: vec![Series {
                labels: BTreeMap::new(),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 * 60.0, *v))
                    .collect(),
            }],
            warnings: vec![],
        }
    }

    fn data(parts: &[(Role, QueryResult)]) -> MetricData {
        let mut d = MetricData::default();
        for (role, r) in parts {
            d.results.insert((*role, QueryPart::Query), r.clone());
        }
        d
    }

    fn settings() -> Settings {
        Settings {
            alpha: 0.01,
            beta: 0.05,
            look: 1,
            position: Position::one_off(),
            step_ms: 60_000,
        }
    }

    const RATIO: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: r}
spec:
  metrics:
    - name: errors
      type: ratio
      errors: e{ {{ selector }} }
      total: n{ {{ selector }} }
      tolerance: 20%
"#;

    /// A ratio metric's data: per minute, requests and errors of each version.
    fn ratio_data(minutes: usize, canary: (f64, f64), stable: (f64, f64)) -> MetricData {
        let points = |v: f64| QueryResult {
            series: vec![Series {
                labels: BTreeMap::new(),
                points: (1..=minutes).map(|i| (i as f64 * 60.0, v)).collect(),
            }],
            warnings: vec![],
        };
        let mut d = MetricData::default();
        d.results
            .insert((Role::Canary, QueryPart::Total), points(canary.0));
        d.results
            .insert((Role::Canary, QueryPart::Errors), points(canary.1));
        d.results
            .insert((Role::Stable, QueryPart::Total), points(stable.0));
        d.results
            .insert((Role::Stable, QueryPart::Errors), points(stable.1));
        d
    }

    fn run_info(position: Position) -> RunInfo {
        RunInfo {
            window: Window::new(
                chrono::DateTime::from_timestamp(0, 0).unwrap(),
                chrono::DateTime::from_timestamp(1800, 0).unwrap(),
                crate::template::units::PromDuration::from_secs(60),
            )
            .unwrap(),
            baseline: None,
            source: "test".into(),
            stable: "v=\"1\"".into(),
            canary: "v=\"2\"".into(),
            look: 1,
            position,
        }
    }

    #[test]
    fn the_same_evidence_may_advance_to_half_the_traffic_but_not_promote() {
        // Two minutes at 10% of 200 req/s, both versions at 0.5% errors: enough to rule out
        // x3 (the default bound for 50% of the traffic) at 97.5%, not x2 (for all of it).
        let t = parse(RATIO, "r").unwrap();
        let data = [ratio_data(2, (1200.0, 6.0), (10_800.0, 54.0))];
        let at = |next_weight: f64| {
            judge(
                &t,
                &data,
                run_info(Position {
                    next_weight,
                    ..Position::one_off()
                }),
            )
        };
        let expect = |report: &Report, outcome: Outcome, words: &str| {
            let m = &report.metrics[0];
            assert_eq!(m.outcome, outcome, "{}", m.reason);
            assert!(m.reason.contains(words), "{}", m.reason);
            m.promotion.unwrap()
        };
        let half = at(0.5);
        let p = expect(
            &half,
            Outcome::Pass,
            "x3 (the guard for 50% of the traffic)",
        );
        assert!(p.shown && (p.bound - 3.0).abs() < 1e-9 && (p.confidence - 0.975).abs() < 1e-12);
        let full = at(1.0);
        let p = expect(&full, Outcome::NoData, "more requests should settle it");
        assert!(!p.shown && (p.bound - 2.0).abs() < 1e-9);
        assert_eq!(full.verdict, Verdict::Inconclusive);
    }

    const LATENCY: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: l}
spec:
  metrics:
    - name: latency
      type: histogram
      query: sum by (le) (increase(h_bucket{ {{ selector }} }[1m]))
      tolerance: 5%
"#;

    /// A histogram metric's data: per minute, each version's expected bucket counts with
    /// Prometheus's default bounds, for `n` requests a minute whose latency has the
    /// cumulative distribution `cdf`.
    fn histogram_data(
        minutes: usize,
        canary: (f64, &dyn Fn(f64) -> f64),
        stable: (f64, &dyn Fn(f64) -> f64),
    ) -> MetricData {
        const BOUNDS: [f64; 12] = [
            0.005,
            0.01,
            0.025,
            0.05,
            0.1,
            0.25,
            0.5,
            1.0,
            2.5,
            5.0,
            10.0,
            f64::INFINITY,
        ];
        let buckets = |(n, cdf): (f64, &dyn Fn(f64) -> f64)| QueryResult {
            series: BOUNDS
                .iter()
                .map(|le| Series {
                    labels: BTreeMap::from([(
                        "le".to_string(),
                        if le.is_finite() {
                            le.to_string()
                        } else {
                            "+Inf".into()
                        },
                    )]),
                    points: (1..=minutes)
                        .map(|i| (i as f64 * 60.0, n * cdf(*le)))
                        .collect(),
                })
                .collect(),
            warnings: vec![],
        };
        data(&[
            (Role::Canary, buckets(canary)),
            (Role::Stable, buckets(stable)),
        ])
    }

    #[test]
    fn a_heavier_tail_fails_where_the_quantiles_move_little() {
        use statrs::distribution::{ContinuousCDF, LogNormal};
        // Log-normal latency, median 80 ms; the canary's slowest 2% take twice as long, so its
        // p99 doubles while its p50 and p90 stay. At the bound nearest the stable's p99
        // (0.25 s) that is 2% of requests against 1.1%; at the next bound (0.5 s), 1.1%
        // against 0.013%.
        let normal = LogNormal::new(0.08f64.ln(), 0.5).unwrap();
        let q98 = normal.inverse_cdf(0.98);
        let stable = |x: f64| normal.cdf(x);
        let slow_tail =
            |x: f64| normal.cdf(x.min(q98)) + (normal.cdf(x / 2.0) - normal.cdf(q98)).max(0.0);
        let t = parse(LATENCY, "l").unwrap();
        let judged = |canary: &dyn Fn(f64) -> f64| {
            let data = [histogram_data(8, (120.0, canary), (1080.0, &stable))];
            judge(&t, &data, run_info(Position::one_off()))
                .metrics
                .remove(0)
        };
        let m = judged(&slow_tail);
        assert_eq!(m.outcome, Outcome::High, "{}", m.reason);
        assert!(
            m.reason
                .contains("its tail is heavier: 1.1% of the canary's requests took longer than 0.5 vs 0.012% of the stable's"),
            "{}",
            m.reason
        );
        assert!(m.p_value.unwrap() < 0.01, "{m:?}");
        // The same data, unchanged: the tail has nothing to say.
        let m = judged(&stable);
        assert_ne!(m.outcome, Outcome::High, "{}", m.reason);
        assert!(!m.reason.contains("tail"), "{}", m.reason);
    }

    #[test]
    fn the_split_is_checked_over_the_step_and_a_mismatch_holds() {
        let t = parse(RATIO, "r").unwrap();
        // The canary gets 5% of 200 req/s, its weight says 10%; the step began at minute 10.
        let data = [ratio_data(30, (600.0, 3.0), (11_400.0, 57.0))];
        let position = |weight: f64| Position {
            next_weight: 0.5,
            step: 1,
            step_start: Some(600),
            weight: Some(weight),
        };
        let off = judge(&t, &data, run_info(position(0.1)));
        let split = off.split.clone().unwrap();
        assert!(split.mismatch, "{split:?}");
        assert!((split.observed - 0.05).abs() < 1e-9 && split.expected == 0.1);
        // Only the step's whole minutes count: 11 to 30, 20 points.
        assert_eq!(split.requests, 20.0 * 12_000.0);
        assert_eq!(off.verdict, Verdict::Inconclusive);
        assert!(
            off.reasons
                .iter()
                .any(|r| r.contains("traffic split") && r.contains("its weight is 10%"))
        );
        // Within the split tolerance of a 5.5% weight, it is as set and says so.
        let set = judge(&t, &data, run_info(position(0.055)));
        assert!(!set.split.clone().unwrap().mismatch);
        assert!(
            set.reasons
                .iter()
                .any(|r| r.starts_with("traffic split as set"))
        );
        // A one-off judgement has no weight to check.
        assert!(
            judge(&t, &data, run_info(Position::one_off()))
                .split
                .is_none()
        );
    }

    #[test]
    fn series_outliers_are_removed_before_the_test() {
        let t = parse(TEMPLATE, "t").unwrap();
        let stable: Vec<f64> = (0..40).map(|i| 1.0 + (i % 7) as f64 * 0.01).collect();
        let mut canary = stable.clone();
        canary[5] = 1000.0; // one scrape glitch
        let r = judge_metric(
            &t.spec.metrics[0],
            &data(&[
                (Role::Stable, series(&stable)),
                (Role::Canary, series(&canary)),
            ]),
            settings(),
        );
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert!(
            r.warnings.iter().any(|w| w.contains("1 outlying points")),
            "{:?}",
            r.warnings
        );
        // The versions keep their points; the glitched step is dropped from the comparison.
        assert_eq!(r.canary.as_ref().map(|c| c.n), Some(40.0));
        assert!(r.reason.contains("over 39 steps"), "{}", r.reason);
    }

    #[test]
    fn series_shift_beyond_tolerance_is_high() {
        let t = parse(TEMPLATE, "t").unwrap();
        let stable: Vec<f64> = (0..40).map(|i| 1.0 + (i % 7) as f64 * 0.01).collect();
        let canary: Vec<f64> = stable.iter().map(|v| v * 1.5).collect();
        let r = judge_metric(
            &t.spec.metrics[0],
            &data(&[
                (Role::Stable, series(&stable)),
                (Role::Canary, series(&canary)),
            ]),
            settings(),
        );
        assert_eq!(r.outcome, Outcome::High, "{}", r.reason);
        assert!(
            r.estimate.is_some_and(|e| (0.4..0.6).contains(&e)),
            "{:?}",
            r.estimate
        );
    }

    #[test]
    fn verdict_rules() {
        let t = parse(TEMPLATE, "t").unwrap();
        let ok: Vec<f64> = (0..40).map(|i| 1.0 + (i % 7) as f64 * 0.01).collect();
        let cpu = data(&[(Role::Stable, series(&ok)), (Role::Canary, series(&ok))]);
        let info = || RunInfo {
            window: crate::data::Window::new(
                chrono::DateTime::from_timestamp(0, 0).unwrap(),
                chrono::DateTime::from_timestamp(3600, 0).unwrap(),
                crate::template::units::PromDuration::from_secs(60),
            )
            .unwrap(),
            baseline: None,
            source: "test".into(),
            position: Position::one_off(),
            stable: "a=\"1\"".into(),
            canary: "a=\"2\"".into(),
            look: 1,
        };
        // The critical SLO fails: the verdict fails with score 0.
        let slo_bad = data(&[(Role::Canary, series(&[0.95, 0.96]))]);
        let r = judge(&t, &[cpu.clone(), slo_bad], info());
        assert_eq!((r.verdict, r.score), (Verdict::Fail, 0.0));
        // The critical SLO has no data: inconclusive with score 0, never a pass.
        let slo_empty = data(&[(Role::Canary, QueryResult::default())]);
        let r = judge(&t, &[cpu.clone(), slo_empty], info());
        assert_eq!((r.verdict, r.score), (Verdict::Inconclusive, 0.0));
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains("never passes on missing"))
        );
        // A query error is an error outcome and also inconclusive.
        let mut failed = MetricData::default();
        failed.errors.push("boom".into());
        let r = judge(&t, &[cpu.clone(), failed], info());
        assert_eq!(r.metrics[1].outcome, Outcome::Error);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        // Everything passes.
        let slo_ok = data(&[(Role::Canary, series(&[0.999, 0.995]))]);
        let r = judge(&t, &[cpu, slo_ok], info());
        assert_eq!((r.verdict, r.score), (Verdict::Pass, 100.0));
    }

    const SERIES: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: t}
spec:
  metrics:
    - name: cpu
      type: series
      query: x{ {{ selector }} }
      tolerance: 20%
    - name: gauge
      type: series
      query: y{ {{ selector }} }
      direction: either
      tolerance: 10%
      minPoints: 3
"#;

    /// Per-step points of both versions: a load shared by both (up and down through the
    /// day, x0.5 to x1.5) times each version's own noise (`noise` relative sd), the canary
    /// times `1 + change`.
    fn paired(steps: usize, change: f64, noise: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = crate::stats::random::Rng::new(seed);
        let mut stable = Vec::with_capacity(steps);
        let mut canary = Vec::with_capacity(steps);
        for i in 0..steps {
            let load = 1.0 + 0.5 * (i as f64 / 7.0).sin();
            stable.push(0.4 * load * (noise * rng.normal()).exp());
            canary.push(0.4 * load * (1.0 + change) * (noise * rng.normal()).exp());
        }
        (stable, canary)
    }

    fn judge_series(metric: usize, stable: &[f64], canary: &[f64], look: u32) -> MetricResult {
        let t = parse(SERIES, "t").unwrap();
        judge_metric(
            &t.spec.metrics[metric],
            &data(&[
                (Role::Stable, series(stable)),
                (Role::Canary, series(canary)),
            ]),
            Settings { look, ..settings() },
        )
    }

    #[test]
    fn an_unchanged_series_passes_with_a_99_percent_cs() {
        let (stable, canary) = paired(30, 0.0, 0.03, 1);
        let r = judge_series(0, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert!(r.reason.contains("99% CS"), "{}", r.reason);
        assert!(
            r.reason.contains("within the 20% tolerance"),
            "{}",
            r.reason
        );
        let [low, high] = r.ci.expect("an interval");
        assert!(
            -0.2 < low && low < 0.0 && 0.0 < high && high < 0.2,
            "{low} {high}"
        );
        assert!(
            r.estimate.is_some_and(|e| e.abs() < 0.03),
            "{:?}",
            r.estimate
        );
        assert!(r.p_value.is_some_and(|p| p > 0.01 && p <= 1.0));
        assert!(r.test.contains("confidence sequence"), "{}", r.test);
        // The shared load swings by x3 across the window; only the pairing by step keeps
        // the interval this narrow.
        assert!(high - low < 0.1, "{low} {high}");
    }

    /// Anytime-valid: the interval, and so the decision, does not depend on how many looks
    /// came before (the old test spent alpha across looks and showed "100% CI" by look 30).
    #[test]
    fn the_series_decision_does_not_depend_on_the_look() {
        let (stable, canary) = paired(30, 0.0, 0.03, 1);
        let first = judge_series(0, &stable, &canary, 1);
        let later = judge_series(0, &stable, &canary, 30);
        assert_eq!(first, later);
    }

    #[test]
    fn a_series_regression_beyond_tolerance_fails() {
        let (stable, canary) = paired(20, 0.6, 0.05, 2);
        let r = judge_series(0, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::High, "{}", r.reason);
        assert!(
            r.reason.contains("regression beyond the 20% tolerance"),
            "{}",
            r.reason
        );
        let [low, _] = r.ci.expect("an interval");
        assert!(low > 0.2, "{:?}", r.ci);
        assert!(r.p_value.is_some_and(|p| p < 0.01), "{:?}", r.p_value);
        assert!(r.e_value.is_some_and(|e| e > 100.0), "{:?}", r.e_value);
        // An improvement of the same size is within tolerance for `direction: increase`...
        let (stable, canary) = paired(20, -0.4, 0.05, 2);
        let r = judge_series(0, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert_eq!(r.p_value, Some(1.0));
        // ...and low for `direction: either`.
        let r = judge_series(1, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::Low, "{}", r.reason);
    }

    #[test]
    fn an_undecided_series_says_how_many_more_steps() {
        // Noisy points (15% per version): 12 steps bound the change only to about ±30%.
        let (stable, canary) = paired(12, 0.0, 0.15, 3);
        let r = judge_series(0, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::NoData, "{}", r.reason);
        assert!(
            r.reason
                .contains("the interval still reaches beyond the 20% tolerance"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("more steps"), "{}", r.reason);
        // The first few steps cannot bound anything at 99%: no interval, and the words say so.
        let (stable, canary) = paired(4, 0.0, 0.01, 4);
        let r = judge_series(1, &stable, &canary, 1);
        assert_eq!(r.outcome, Outcome::NoData, "{}", r.reason);
        assert!(
            r.reason.contains("4 steps are too few for a 99% CS"),
            "{}",
            r.reason
        );
        assert_eq!(r.ci, None);
    }

    #[test]
    fn series_points_are_paired_by_time_stamp() {
        let (stable, canary) = paired(20, 0.0, 0.03, 5);
        let t = parse(SERIES, "t").unwrap();
        // The canary's points are half a step later: no step has both versions.
        let mut shifted = series(&canary);
        for p in &mut shifted.series[0].points {
            p.0 += 30.0;
        }
        let r = judge_metric(
            &t.spec.metrics[0],
            &data(&[(Role::Stable, series(&stable)), (Role::Canary, shifted)]),
            settings(),
        );
        assert_eq!(r.outcome, Outcome::NoData, "{}", r.reason);
        assert!(
            r.reason
                .contains("only 0 steps have a point of both versions (canary 20 points"),
            "{}",
            r.reason
        );
        // Too few points per version is still said as before.
        let r = judge_series(0, &stable[..5], &canary[..5], 1);
        assert_eq!(r.outcome, Outcome::NoData);
        assert!(r.reason.contains("minPoints"), "{}", r.reason);
    }

    #[test]
    fn several_series_of_a_version_are_averaged_per_step() {
        let (stable, canary) = paired(20, 0.0, 0.03, 6);
        // Stable in two Pods (per-Pod values), one 2% above the other: each step's value is
        // their mean, comparable with the canary's single Pod.
        let mut two = series(&stable);
        let mut second = two.series[0].clone();
        for p in &mut second.points {
            p.1 *= 1.02;
        }
        second.labels.insert("pod".into(), "b".into());
        two.series.push(second);
        let t = parse(SERIES, "t").unwrap();
        let r = judge_metric(
            &t.spec.metrics[0],
            &data(&[(Role::Stable, two), (Role::Canary, series(&canary))]),
            settings(),
        );
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert_eq!(r.stable.as_ref().map(|s| s.n), Some(20.0));
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("returned 2 series; each step's points were averaged")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn a_series_with_stable_at_zero_is_judged_absolutely() {
        let zeros = vec![0.0; 20];
        let r = judge_series(0, &zeros, &zeros, 1);
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert!(
            r.reason.starts_with("stable is 0 throughout"),
            "{}",
            r.reason
        );
        assert_eq!((r.estimate, r.ci), (None, None));
        let mut rng = crate::stats::random::Rng::new(7);
        let busy: Vec<f64> = (0..20).map(|_| 3.0 + rng.normal()).collect();
        let r = judge_series(0, &zeros, &busy, 1);
        assert_eq!(r.outcome, Outcome::High, "{}", r.reason);
        // Points that are sometimes 0 (a queue length, say): differences relative to the
        // stable median instead of log ratios.
        let stable: Vec<f64> = (0..30).map(|i| f64::from(i % 5)).collect();
        let r = judge_series(0, &stable, &stable, 1);
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.reason);
        assert!(r.test.contains("difference canary - stable"), "{}", r.test);
    }
}
