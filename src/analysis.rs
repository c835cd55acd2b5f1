//! Runs one analysis: binds arguments, renders every query for both versions, fetches them
//! from a [`MetricSource`] concurrently (with a bound), and hands the answers to the judge.

use crate::data::{QueryRequest, Role, Window};
use crate::judge::{self, MetricData, Outcome, Position, Report, RunInfo, Verdict};
use crate::rollout::{AnalysisDue, AnalysisOutcome};
use crate::source::MetricSource;
use crate::template::render::{RenderContext, render};
use crate::template::selector::Selector;
use crate::template::{MetricType, ReleaseAnalysis};
use futures::StreamExt;
use std::collections::BTreeMap;

/// What to analyse.
#[derive(Debug, Clone)]
pub struct AnalysisRequest<'a> {
    /// The template.
    pub template: &'a ReleaseAnalysis,
    /// Argument values given by the user (defaults are applied here).
    pub args: BTreeMap<String, String>,
    /// The stable version's label matchers.
    pub stable: Selector,
    /// The canary's label matchers.
    pub canary: Selector,
    /// The window.
    pub window: Window,
    /// 1 for a one-off judgement; the n-th judgement of the same rollout otherwise (for
    /// alpha spending over repeated looks).
    pub look: u32,
    /// Where the judgement stands in its rollout ([`Position::one_off`] for a one-off).
    pub position: Position,
}

/// Where the state machine's analysis stands, as the judge sees it.
pub fn position(due: &AnalysisDue) -> Position {
    let p = due.position;
    Position {
        next_weight: f64::from(p.next_weight.clamp(1, 100)) / 100.0,
        step: p.step.max(1),
        step_start: Some(p.step_start.timestamp()),
        weight: p
            .weight
            .filter(|w| *w > 0 && *w < 100)
            .map(|w| f64::from(w) / 100.0),
    }
}

/// One template judged: the template, its report and the data the report was made from
/// (for charts).
#[derive(Debug, Clone)]
pub struct Judged {
    /// The template.
    pub template: ReleaseAnalysis,
    /// The judgement.
    pub report: Report,
    /// The data fetched, one entry per metric of the template.
    pub data: Vec<MetricData>,
}

/// Why an analysis could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An argument the template does not declare.
    #[error("template {template} has no argument {name:?} (it declares: {declared})")]
    UnknownArg {
        /// Template.
        template: String,
        /// The argument.
        name: String,
        /// What it declares.
        declared: String,
    },
    /// A required argument without a value.
    #[error("template {template} needs argument {name:?}: pass --arg {name}=VALUE")]
    MissingArg {
        /// Template.
        template: String,
        /// The argument.
        name: String,
    },
    /// A query that cannot be rendered.
    #[error("template {template}, metric {metric}, field {field}: {error}")]
    Render {
        /// Template.
        template: String,
        /// Metric.
        metric: String,
        /// Field.
        field: &'static str,
        /// Why.
        error: crate::template::render::RenderError,
    },
    /// The same matchers for both versions.
    #[error("--stable and --canary select the same series ({0}); give each version its own labels")]
    SameSelectors(String),
}

/// Applies defaults and checks the given arguments against the template.
pub fn bind_args(
    template: &ReleaseAnalysis,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, PlanError> {
    let declared = &template.spec.args;
    for name in given.keys() {
        if !declared.iter().any(|a| &a.name == name) {
            return Err(PlanError::UnknownArg {
                template: template.metadata.name.clone(),
                name: name.clone(),
                declared: if declared.is_empty() {
                    "none".into()
                } else {
                    declared
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    }
    let mut bound = BTreeMap::new();
    for arg in declared {
        let value = given
            .get(&arg.name)
            .or(arg.default.as_ref())
            .ok_or_else(|| PlanError::MissingArg {
                template: template.metadata.name.clone(),
                name: arg.name.clone(),
            })?;
        bound.insert(arg.name.clone(), value.clone());
    }
    Ok(bound)
}

/// Every query of the analysis, grouped by metric (in template order).
pub fn plan(request: &AnalysisRequest<'_>) -> Result<Vec<Vec<QueryRequest>>, PlanError> {
    let template = request.template;
    if request.stable == request.canary {
        return Err(PlanError::SameSelectors(request.stable.to_string()));
    }
    let args = bind_args(template, &request.args)?;
    let mut planned = Vec::with_capacity(template.spec.metrics.len());
    for metric in &template.spec.metrics {
        let roles: &[Role] = if metric.kind == MetricType::Threshold {
            &[Role::Canary]
        } else {
            &[Role::Stable, Role::Canary]
        };
        let mut queries = Vec::new();
        for &role in roles {
            let selector = match role {
                Role::Stable => &request.stable,
                Role::Canary => &request.canary,
            };
            let ctx = RenderContext {
                args: &args,
                selector,
                interval: request.window.step,
            };
            for (part, query) in metric.queries() {
                let promql = render(query, &ctx).map_err(|error| PlanError::Render {
                    template: template.metadata.name.clone(),
                    metric: metric.name.clone(),
                    field: part.field(),
                    error,
                })?;
                queries.push(QueryRequest {
                    template: template.metadata.name.clone(),
                    metric: metric.name.clone(),
                    part,
                    role,
                    promql,
                    window: request.window,
                });
            }
        }
        planned.push(queries);
    }
    Ok(planned)
}

/// Runs the analysis against `source`, with at most `concurrency` queries in flight.
pub async fn run<S: MetricSource>(
    source: &S,
    request: &AnalysisRequest<'_>,
    concurrency: usize,
) -> Result<Report, PlanError> {
    run_with_data(source, request, concurrency)
        .await
        .map(|(report, _)| report)
}

/// [`run`], also returning the data fetched for each metric (in template order), for
/// reports that chart it.
pub async fn run_with_data<S: MetricSource>(
    source: &S,
    request: &AnalysisRequest<'_>,
    concurrency: usize,
) -> Result<(Report, Vec<MetricData>), PlanError> {
    let planned = plan(request)?;
    let mut data: Vec<MetricData> = planned
        .iter()
        .map(|queries| {
            let mut d = MetricData::default();
            for q in queries {
                d.queries
                    .entry(q.role)
                    .or_default()
                    .insert(q.part, q.promql.clone());
            }
            d
        })
        .collect();
    // Owned jobs: futures that borrow through closures trip the compiler's Send check when
    // this runs inside a spawned controller task.
    let mut jobs: Vec<(usize, QueryRequest)> = Vec::new();
    for (i, queries) in planned.into_iter().enumerate() {
        jobs.extend(queries.into_iter().map(|q| (i, q)));
    }
    let mut answers = futures::stream::iter(jobs)
        .map(|(i, q)| async move {
            let answer = source.query_range(&q).await;
            (i, q, answer)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((i, q, answer)) = answers.next().await {
        match answer {
            Ok(result) => {
                data[i].results.insert((q.role, q.part), result);
            }
            Err(e) => data[i].errors.push(e.to_string()),
        }
    }
    let info = RunInfo {
        window: request.window,
        source: source.describe(),
        stable: request.stable.to_string(),
        canary: request.canary.to_string(),
        look: request.look.max(1),
        position: request.position,
    };
    let report = judge::judge(request.template, &data, info);
    Ok((report, data))
}

/// Judges several templates over the same window and versions, each with the arguments it
/// declares out of `args` (one args list serves several templates). Returns what was judged
/// and why the others could not be.
pub async fn run_templates<S: MetricSource>(
    source: &S,
    templates: &[ReleaseAnalysis],
    args: &BTreeMap<String, String>,
    (stable, canary): (&Selector, &Selector),
    window: Window,
    (look, position): (u32, Position),
    concurrency: usize,
) -> (Vec<Judged>, Vec<String>) {
    let mut judged = Vec::new();
    let mut errors = Vec::new();
    for template in templates {
        let request = AnalysisRequest {
            template,
            args: args
                .iter()
                .filter(|(name, _)| template.spec.args.iter().any(|a| &a.name == *name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stable: stable.clone(),
            canary: canary.clone(),
            window,
            look,
            position,
        };
        match run_with_data(source, &request, concurrency).await {
            Ok((report, data)) => judged.push(Judged {
                template: template.clone(),
                report,
                data,
            }),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (judged, errors)
}

/// Sums reports up: any failing template fails (critical when a critical metric failed);
/// otherwise metrics that could not be fetched make it an error; otherwise it passes only
/// when every template passes.
pub fn outcome(reports: &[Report], errors: &[String]) -> AnalysisOutcome {
    let failed: Vec<&Report> = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .collect();
    if !failed.is_empty() {
        let critical = failed.iter().any(|r| {
            r.metrics
                .iter()
                .any(|m| m.critical && matches!(m.outcome, Outcome::High | Outcome::Low))
        });
        return AnalysisOutcome::Fail {
            summary: summary(&failed),
            critical,
        };
    }
    let mut problems: Vec<String> = errors.to_vec();
    for r in reports {
        for m in r.metrics.iter().filter(|m| m.outcome == Outcome::Error) {
            problems.push(format!(
                "template {}, metric {}: {}",
                r.template, m.name, m.reason
            ));
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return AnalysisOutcome::Error {
            message: problems.join("; "),
        };
    }
    let all: Vec<&Report> = reports.iter().collect();
    if !reports.is_empty() && reports.iter().all(|r| r.verdict == Verdict::Pass) {
        AnalysisOutcome::Pass {
            summary: summary(&all),
        }
    } else {
        AnalysisOutcome::Inconclusive {
            summary: summary(&all),
        }
    }
}

fn summary(reports: &[&Report]) -> String {
    reports
        .iter()
        .map(|r| {
            let reasons = if r.reasons.is_empty() {
                format!("score {:.0}", r.score)
            } else {
                r.reasons.join("; ")
            };
            format!("{} {}: {reasons}", r.template, r.verdict.as_str())
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
