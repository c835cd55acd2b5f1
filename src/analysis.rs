//! Runs one analysis: binds arguments, renders every query for both versions, fetches them
//! from a [`MetricSource`] concurrently (with a bound), and hands the answers to the judge.

use crate::data::{QueryRequest, Role, Window, rfc3339};
use crate::judge::{self, MetricData, Outcome, Position, Report, RunInfo, Verdict};
use crate::rollout::{AnalysisDue, AnalysisOutcome};
use crate::source::MetricSource;
use crate::template::render::{RenderContext, render};
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use crate::template::{MetricType, ReleaseAnalysis};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;

/// What the canary is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Baseline {
    /// Side by side: the stable and the canary selectors over the same window (a canary
    /// running next to stable).
    #[default]
    Concurrent,
    /// Before/after: what the canary selector selects over the window, against what the
    /// stable selector selected over an earlier window of the same length, one that ends no
    /// later than `began` (see [`baseline_window`]). For a bake or after a promotion, when
    /// the new version has no predecessor running beside it; the two selectors may then be
    /// the same. The earlier answers are moved forward onto the window's steps, so the judge
    /// pairs each step with the one a shift earlier.
    Before {
        /// When the new version began (took its traffic). The window must start no earlier.
        began: DateTime<Utc>,
    },
}

impl Baseline {
    /// The baseline of the analysis the state machine asked for: before/after when it names
    /// the time the new version took all the traffic, else side by side.
    pub fn of(due: &AnalysisDue) -> Baseline {
        match due.baseline_before {
            Some(began) => Baseline::Before { began },
            None => Baseline::Concurrent,
        }
    }
}

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
    /// What the canary is compared with: stable over the same window, or (before/after)
    /// over an earlier one.
    pub baseline: Baseline,
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
    #[error(
        "the stable and the canary matchers select the same series ({0}): give each version its \
         own labels (--stable and --canary; in a Release, analysis.stableMatchers and \
         canaryMatchers)"
    )]
    SameSelectors(String),
    /// A before/after baseline that cannot be set up.
    #[error("template {template}: {problem}")]
    Baseline {
        /// Template.
        template: String,
        /// Why.
        problem: BaselineError,
    },
}

/// Why the earlier window of a before/after comparison cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    /// The window reaches back before the new version began, so its side would hold the old
    /// version's data too.
    #[error(
        "the window starts at {}, before the new version began at {}: start it at or after \
         the time the new version began",
        rfc3339(*start),
        rfc3339(*began)
    )]
    StartsBeforeBegan {
        /// The window's start.
        start: DateTime<Utc>,
        /// When the new version began.
        began: DateTime<Utc>,
    },
    /// `spec.offset` is not a whole number of steps.
    #[error(
        "offset {offset} is not a whole number of steps of {step}: give an offset that \
         is a multiple of the step, or a step that divides the offset"
    )]
    OffsetNotWholeSteps {
        /// The offset.
        offset: PromDuration,
        /// The step.
        step: PromDuration,
    },
    /// `spec.offset` puts the baseline window's end after the new version began.
    #[error(
        "offset {offset} is {short_by} too short: the baseline window would end at {}, \
         after the new version began at {}; make it at least {needed}, the time from then to \
         the window's end in whole steps",
        rfc3339(*baseline_end),
        rfc3339(*began)
    )]
    OffsetTooShort {
        /// The offset.
        offset: PromDuration,
        /// When the new version began.
        began: DateTime<Utc>,
        /// Where the baseline window would end.
        baseline_end: DateTime<Utc>,
        /// The shortest offset that works: the time from `began` to the window's end,
        /// rounded up to whole steps.
        needed: PromDuration,
        /// How much longer the offset must be.
        short_by: PromDuration,
    },
    /// A shift so long that the baseline window lies outside the range of times.
    #[error("a baseline {by} before the window lies outside the range of times")]
    OutOfRange {
        /// The shift.
        by: PromDuration,
    },
}

/// The earlier window of a before/after comparison judging `window` (see
/// [`Baseline::Before`]), and how far back it lies: `spec.offset` when the template sets it,
/// else the time from `began` to the window's end rounded up to whole steps, so that the
/// baseline is the window of the same length ending at, or just before, `began`. Either way
/// it must end no later than `began`, and the window must start no earlier.
pub fn baseline_window(
    template: &ReleaseAnalysis,
    window: &Window,
    began: DateTime<Utc>,
) -> Result<(PromDuration, Window), PlanError> {
    let problem = |problem| PlanError::Baseline {
        template: template.metadata.name.clone(),
        problem,
    };
    if window.start < began {
        return Err(problem(BaselineError::StartsBeforeBegan {
            start: window.start,
            began,
        }));
    }
    let step = window.step.as_millis().max(1);
    // window.start >= began, so this is positive.
    let since_began = (window.end - began).num_milliseconds().unsigned_abs();
    let needed = PromDuration::from_millis(since_began.div_ceil(step).saturating_mul(step));
    let by = match template.spec.offset {
        // Whole steps only, not rounded: the offset is documented as exact (rounding a `1d`
        // by a step that does not divide it would drift off the time of day it is there
        // for), and a source that aligns range queries to multiples of the step (Thanos,
        // Cortex and Mimir query frontends can) would put a part-step shift's points
        // between the judged window's, leaving no step with both versions.
        Some(offset) if offset.as_millis() % step != 0 => {
            return Err(problem(BaselineError::OffsetNotWholeSteps {
                offset,
                step: window.step,
            }));
        }
        Some(offset) if offset < needed => {
            let baseline_end = window.shifted_back(offset).map_or(window.end, |w| w.end);
            return Err(problem(BaselineError::OffsetTooShort {
                offset,
                began,
                baseline_end,
                needed,
                short_by: PromDuration::from_millis(needed.as_millis() - offset.as_millis()),
            }));
        }
        Some(offset) => offset,
        None => needed,
    };
    let earlier = window
        .shifted_back(by)
        .ok_or_else(|| problem(BaselineError::OutOfRange { by }))?;
    Ok((by, earlier))
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
    let baseline = match request.baseline {
        Baseline::Concurrent if request.stable == request.canary => {
            return Err(PlanError::SameSelectors(request.stable.to_string()));
        }
        Baseline::Concurrent => None,
        Baseline::Before { began } => Some(baseline_window(template, &request.window, began)?),
    };
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
            let (selector, (shift, window)) = match (role, baseline) {
                (Role::Stable, Some((by, earlier))) => (&request.stable, (Some(by), earlier)),
                (Role::Stable, None) => (&request.stable, (None, request.window)),
                (Role::Canary, _) => (&request.canary, (None, request.window)),
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
                    window,
                    shift,
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
                d.windows.insert(q.role, q.window);
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
                let result = match q.shift {
                    Some(by) => result.shifted_forward(by),
                    None => result,
                };
                data[i].results.insert((q.role, q.part), result);
            }
            Err(e) => data[i].errors.push(e.to_string()),
        }
    }
    let mut position = request.position;
    let baseline = match request.baseline {
        Baseline::Concurrent => None,
        Baseline::Before { .. } => {
            // The versions' requests come from different windows: their shares say nothing
            // of how a router splits traffic, so there is no split to check.
            position.weight = None;
            data.iter()
                .find_map(|d| d.windows.get(&Role::Stable))
                .copied()
        }
    };
    let info = RunInfo {
        window: request.window,
        baseline,
        source: source.describe(),
        stable: request.stable.to_string(),
        canary: request.canary.to_string(),
        look: request.look.max(1),
        position,
    };
    let mut report = judge::judge(request.template, &data, info);
    if let Some(window) = baseline {
        report
            .reasons
            .extend(short_baseline(request.template, &data, &window));
    }
    Ok((report, data))
}

/// The steps (timestamps, in ms) at which a version's answers for a metric have a point.
fn steps_with_data(d: &MetricData, role: Role) -> std::collections::BTreeSet<i64> {
    d.results
        .iter()
        .filter(|((r, _), _)| *r == role)
        .flat_map(|(_, result)| result.series.iter())
        .flat_map(|series| series.points.iter())
        .map(|(t, _)| (t * 1000.0).round() as i64)
        .collect()
}

/// For a before/after comparison, a reason for each metric whose baseline has data at fewer
/// steps than the new version: the history before the new version began is shorter than the
/// window (or had gaps), so the comparison rests on those steps alone, and may stay
/// inconclusive however long the new version runs.
fn short_baseline(template: &ReleaseAnalysis, data: &[MetricData], window: &Window) -> Vec<String> {
    template
        .spec
        .metrics
        .iter()
        .zip(data)
        .filter(|(m, _)| m.kind != MetricType::Threshold)
        .filter_map(|(m, d)| {
            let new = steps_with_data(d, Role::Canary);
            let old = steps_with_data(d, Role::Stable);
            let shared = new.intersection(&old).count();
            // A step or two may be missing at the edges of a scrape; more is a short history.
            (!new.is_empty() && shared + 2 < new.len()).then(|| {
                format!(
                    "metric {}: the old version's baseline ({} to {}) has data at only {shared} of the {} steps the new version has: the history before it began is shorter than the window, so the comparison rests on those steps (a template's spec.offset can point the baseline at a time with data)",
                    m.name,
                    rfc3339(window.start),
                    rfc3339(window.end),
                    new.len()
                )
            })
        })
        .collect()
}

/// Judges several templates over the same window and versions, each with the arguments it
/// declares out of `args` (one args list serves several templates), and each against the
/// same kind of baseline (before/after: each with its own `spec.offset`). Returns what was
/// judged and why the others could not be.
pub async fn run_templates<S: MetricSource>(
    source: &S,
    templates: &[ReleaseAnalysis],
    args: &BTreeMap<String, String>,
    (stable, canary): (&Selector, &Selector),
    (window, baseline): (Window, Baseline),
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
            baseline,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{QueryResult, Series};
    use crate::source::SourceError;
    use crate::template::QueryPart;
    use crate::template::load::parse;
    use std::sync::Mutex;

    const TEMPLATE: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: bake}
spec:
  metrics:
    - name: error-rate
      type: ratio
      errors: sum(increase(errors{ {{ selector }} }[{{ interval }}]))
      total: sum(increase(requests{ {{ selector }} }[{{ interval }}]))
      tolerance: 20%
    - name: slo
      type: threshold
      query: slo{ {{ selector }} }
      min: 0.9
"#;

    /// When the new version began in these tests (2026-09-21T13:48:20Z).
    const BEGAN: i64 = 1_790_000_000 - 1500;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn minutes(m: i64) -> i64 {
        m * 60
    }

    fn template(offset: Option<&str>) -> ReleaseAnalysis {
        let text = match offset {
            Some(o) => TEMPLATE.replace("spec:\n", &format!("spec:\n  offset: {o}\n")),
            None => TEMPLATE.to_string(),
        };
        parse(&text, "bake.yaml").unwrap()
    }

    /// The window `[from, to]` in seconds after BEGAN, in steps of `step` seconds.
    fn window(from: i64, to: i64, step: u64) -> Window {
        Window::new(
            at(BEGAN + from),
            at(BEGAN + to),
            PromDuration::from_secs(step),
        )
        .unwrap()
    }

    fn shift(offset: Option<&str>, window: &Window) -> Result<(PromDuration, Window), PlanError> {
        baseline_window(&template(offset), window, at(BEGAN))
    }

    fn problem(result: Result<(PromDuration, Window), PlanError>) -> BaselineError {
        match result {
            Err(PlanError::Baseline { template, problem }) => {
                assert_eq!(template, "bake");
                problem
            }
            other => panic!("not a baseline error: {other:?}"),
        }
    }

    #[test]
    fn without_offset_the_baseline_is_the_same_length_just_before_began() {
        let w = window(0, minutes(25), 60);
        let (by, earlier) = shift(None, &w).unwrap();
        assert_eq!(by, PromDuration::from_secs(1500));
        assert_eq!(earlier, window(-minutes(25), 0, 60));
        // The window starts later than began: the baseline still ends at began.
        let w = window(minutes(5), minutes(25), 60);
        let (by, earlier) = shift(None, &w).unwrap();
        assert_eq!(by, PromDuration::from_secs(1500));
        assert_eq!(earlier, window(-minutes(20), 0, 60));
        // 25m30s since began is rounded up to 26 whole steps: the baseline ends 30s before
        // began, and its points stay on the window's grid.
        let w = window(30, minutes(25) + 30, 60);
        let (by, earlier) = shift(None, &w).unwrap();
        assert_eq!(by, PromDuration::from_secs(26 * 60));
        assert_eq!(earlier, window(30 - minutes(26), -30, 60));
    }

    #[test]
    fn an_offset_shifts_by_exactly_itself() {
        let w = window(0, minutes(25), 60);
        let (by, earlier) = shift(Some("1d"), &w).unwrap();
        assert_eq!(by, PromDuration::from_secs(86_400));
        assert_eq!(earlier, window(-86_400, minutes(25) - 86_400, 60));
        // Exactly the time since began is long enough.
        let (by, _) = shift(Some("25m"), &w).unwrap();
        assert_eq!(by, PromDuration::from_secs(1500));
    }

    #[test]
    fn an_offset_too_short_says_by_how_much() {
        let w = window(0, minutes(25), 60);
        let p = problem(shift(Some("10m"), &w));
        assert_eq!(
            p,
            BaselineError::OffsetTooShort {
                offset: PromDuration::from_secs(600),
                began: at(BEGAN),
                baseline_end: at(BEGAN + minutes(15)),
                needed: PromDuration::from_secs(1500),
                short_by: PromDuration::from_secs(900),
            }
        );
        let message = PlanError::Baseline {
            template: "bake".into(),
            problem: p,
        }
        .to_string();
        assert!(
            message.starts_with("template bake: offset 10m is 15m too short"),
            "{message}"
        );
        assert!(message.contains("make it at least 25m"), "{message}");
        assert!(message.contains("2026-09-21T14:03:20Z"), "{message}");
    }

    #[test]
    fn an_offset_must_be_whole_steps() {
        let w = window(0, minutes(25), 60);
        assert_eq!(
            problem(shift(Some("1h30s"), &w)),
            BaselineError::OffsetNotWholeSteps {
                offset: PromDuration::from_secs(3630),
                step: PromDuration::from_secs(60),
            }
        );
        // Long enough but off the grid: the grid is checked first, so the fix asked for is
        // a multiple of the step.
        assert!(shift(Some("1h1m"), &w).is_ok());
    }

    #[test]
    fn the_window_may_not_reach_back_before_began() {
        let w = window(-60, minutes(25), 60);
        assert_eq!(
            problem(shift(None, &w)),
            BaselineError::StartsBeforeBegan {
                start: at(BEGAN - 60),
                began: at(BEGAN),
            }
        );
        assert!(matches!(
            problem(shift(Some("1d"), &w)),
            BaselineError::StartsBeforeBegan { .. }
        ));
    }

    #[test]
    fn an_offset_beyond_the_range_of_times_is_an_error() {
        let w = window(0, minutes(25), 60);
        assert!(matches!(
            problem(shift(Some("300000y"), &w)),
            BaselineError::OutOfRange { .. }
        ));
    }

    fn request<'a>(
        template: &'a ReleaseAnalysis,
        (stable, canary): (&str, &str),
        baseline: Baseline,
    ) -> AnalysisRequest<'a> {
        AnalysisRequest {
            template,
            args: BTreeMap::new(),
            stable: stable.parse().unwrap(),
            canary: canary.parse().unwrap(),
            window: window(0, minutes(25), 60),
            baseline,
            look: 1,
            position: Position::one_off(),
        }
    }

    fn before() -> Baseline {
        Baseline::Before { began: at(BEGAN) }
    }

    #[test]
    fn the_baseline_queries_run_over_the_earlier_window() {
        let t = template(None);
        let same = ("app=\"web\"", "app=\"web\"");
        assert!(matches!(
            plan(&request(&t, same, Baseline::Concurrent)),
            Err(PlanError::SameSelectors(_))
        ));
        let planned = plan(&request(&t, same, before())).unwrap();
        let earlier = window(-minutes(25), 0, 60);
        let ratio = &planned[0];
        assert_eq!(ratio.len(), 4);
        for q in ratio {
            match q.role {
                Role::Stable => {
                    assert_eq!(
                        (q.window, q.shift),
                        (earlier, Some(PromDuration::from_secs(1500)))
                    );
                }
                Role::Canary => {
                    assert_eq!((q.window, q.shift), (window(0, minutes(25), 60), None));
                }
            }
        }
        let stable_errors = ratio
            .iter()
            .find(|q| q.role == Role::Stable && q.part == QueryPart::Errors)
            .unwrap();
        assert_eq!(
            stable_errors.describe(),
            "template bake, metric error-rate (errors, stable, baseline 2026-09-21T13:23:20Z \
             to 2026-09-21T13:48:20Z, 25m earlier)"
        );
        // The threshold metric is the canary's alone, over the window.
        assert_eq!(planned[1].len(), 1);
        assert_eq!(planned[1][0].role, Role::Canary);
        assert_eq!(planned[1][0].shift, None);
        // Side by side nothing is shifted.
        let planned = plan(&request(&t, ("v=\"1\"", "v=\"2\""), Baseline::Concurrent)).unwrap();
        assert!(
            planned
                .iter()
                .flatten()
                .all(|q| q.shift.is_none() && q.window == window(0, minutes(25), 60))
        );
    }

    /// A source that answers by time alone, as one selector over a release does: 100,000
    /// requests a step, 1% errors until BEGAN and `after` from then on; the threshold query
    /// 0.99. It records what it was asked.
    struct Timeline {
        after: f64,
        asked: Mutex<Vec<QueryRequest>>,
        /// No points before this time (Unix seconds): the history begins there.
        history_from: i64,
    }

    impl MetricSource for Timeline {
        async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
            self.asked.lock().unwrap().push(request.clone());
            let w = &request.window;
            let step = w.step.as_millis() as i64 / 1000;
            let points = (w.first_point().timestamp()..=w.end.timestamp())
                .step_by(step as usize)
                .filter(|t| *t >= self.history_from)
                .map(|t| {
                    let rate = if t <= BEGAN { 0.01 } else { self.after };
                    let value = match request.part {
                        QueryPart::Total => 100_000.0,
                        QueryPart::Errors => 100_000.0 * rate,
                        QueryPart::Query => 0.99,
                    };
                    (t as f64, value)
                })
                .collect();
            Ok(QueryResult {
                series: vec![Series {
                    labels: BTreeMap::new(),
                    points,
                }],
                warnings: Vec::new(),
            })
        }

        fn describe(&self) -> String {
            "timeline".into()
        }
    }

    fn judged_against_before(after: f64) -> (Report, Vec<MetricData>, Vec<QueryRequest>) {
        judged_with_history(after, i64::MIN)
    }

    fn judged_with_history(
        after: f64,
        history_from: i64,
    ) -> (Report, Vec<MetricData>, Vec<QueryRequest>) {
        let t = template(None);
        let source = Timeline {
            after,
            asked: Mutex::new(Vec::new()),
            history_from,
        };
        let mut request = request(&t, ("app=\"web\"", "app=\"web\""), before());
        // A weight, as a caller might leave it: before/after has no split to check.
        request.position.weight = Some(0.5);
        let (report, data) = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run_with_data(&source, &request, 2))
            .unwrap();
        let asked = source.asked.into_inner().unwrap();
        (report, data, asked)
    }

    #[test]
    fn an_unchanged_version_passes_against_its_own_past() {
        let (report, data, asked) = judged_against_before(0.01);
        assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.metrics);
        assert_eq!((report.split, report.position.weight), (None, None));
        let earlier = window(-minutes(25), 0, 60);
        assert_eq!(report.baseline, Some(earlier));
        assert_eq!(data[0].windows.get(&Role::Stable), Some(&earlier));
        assert_eq!(
            data[0].windows.get(&Role::Canary),
            Some(&window(0, minutes(25), 60))
        );
        // The source was asked for the earlier window; its points reach the judge on the
        // window's own steps, the same as the canary's.
        assert!(
            asked
                .iter()
                .filter(|q| q.role == Role::Stable)
                .all(|q| q.window == earlier)
        );
        let times = |role| -> Vec<f64> {
            data[0].results[&(role, QueryPart::Total)].series[0]
                .points
                .iter()
                .map(|p| p.0)
                .collect()
        };
        assert_eq!(times(Role::Stable), times(Role::Canary));
        assert_eq!(times(Role::Canary).len(), 25);
        let m = &report.metrics[0];
        assert_eq!(m.stable.as_ref().and_then(|s| s.errors), Some(25_000.0));
        assert_eq!(m.canary.as_ref().and_then(|s| s.errors), Some(25_000.0));
        assert!(
            !report.reasons.iter().any(|r| r.contains("baseline")),
            "{:?}",
            report.reasons
        );
    }

    #[test]
    fn a_baseline_reaching_before_the_history_is_said_so() {
        // The history begins 5 minutes before the new version: 5 of the 25 steps.
        let (report, _, _) = judged_with_history(0.01, BEGAN - minutes(5) + 60);
        let said: Vec<&String> = report
            .reasons
            .iter()
            .filter(|r| r.contains("baseline"))
            .collect();
        assert_eq!(said.len(), 1, "{:?}", report.reasons);
        assert!(
            said[0].contains("has data at only 5 of the 25 steps")
                && said[0].contains("spec.offset"),
            "{}",
            said[0]
        );
    }

    #[test]
    fn a_regression_after_began_fails() {
        let (report, _, _) = judged_against_before(0.03);
        assert_eq!(report.verdict, Verdict::Fail, "{:#?}", report.metrics);
        assert_eq!(report.metrics[0].outcome, Outcome::High);
        let m = &report.metrics[0];
        assert_eq!(m.stable.as_ref().and_then(|s| s.errors), Some(25_000.0));
        assert_eq!(m.canary.as_ref().and_then(|s| s.errors), Some(75_000.0));
    }
}
