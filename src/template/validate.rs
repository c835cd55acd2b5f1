//! Checks a parsed template for everything serde cannot: which fields each metric type
//! needs, placeholders, names, ranges. Every problem names the field by its path, so the
//! loader can point at the file and line.

use super::render::{self, Placeholder};
use super::{
    API_VERSION, KIND, MetricSpec, MetricType, NanStrategy, OutlierStrategy, ReleaseAnalysis,
};
use std::collections::BTreeSet;

/// One problem in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The field's path, e.g. `spec.metrics[1].tolerance`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Every problem found in a template; empty when it is valid.
pub fn validate(template: &ReleaseAnalysis) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut push = |path: String, message: String| issues.push(Issue { path, message });

    if template.api_version != API_VERSION {
        push(
            "apiVersion".into(),
            format!(
                "is {:?}; a template must say apiVersion: {API_VERSION}",
                template.api_version
            ),
        );
    }
    if template.kind != KIND {
        let why = match template.kind.as_str() {
            // The kind's name before v1alpha1 renamed it, clear of Argo Rollouts' own kind.
            "AnalysisTemplate" if template.api_version == API_VERSION => format!(
                "is \"AnalysisTemplate\", vigil's old name for it: vigil's templates are kind: \
                 {KIND} since the kind was renamed to stop colliding with Argo Rollouts' \
                 AnalysisTemplate; change the kind"
            ),
            "AnalysisTemplate" => format!(
                "is \"AnalysisTemplate\" ({}): that is Argo Rollouts' kind; a vigil template \
                 says apiVersion: {API_VERSION} and kind: {KIND}",
                template.api_version
            ),
            other => format!("is {other:?}; a template must say kind: {KIND}"),
        };
        push("kind".into(), why);
    }
    if !is_dns_label(&template.metadata.name) {
        push(
            "metadata.name".into(),
            format!(
                "{:?} is not a valid name: use lower-case letters, digits and '-', at most 63 characters",
                template.metadata.name
            ),
        );
    }

    let spec = &template.spec;
    let mut arg_names = BTreeSet::new();
    for (i, arg) in spec.args.iter().enumerate() {
        if !render::is_arg_name(&arg.name) {
            push(
                format!("spec.args[{i}].name"),
                format!(
                    "{:?} is not a valid argument name: use letters, digits, '_' and '-', starting with a letter or '_'",
                    arg.name
                ),
            );
        }
        if !arg_names.insert(arg.name.as_str()) {
            push(
                format!("spec.args[{i}].name"),
                format!("argument {:?} is declared twice", arg.name),
            );
        }
    }

    let scoring = &spec.scoring;
    if !(scoring.alpha > 0.0 && scoring.alpha < 0.5) {
        push(
            "spec.scoring.alpha".into(),
            format!(
                "is {}; it must be between 0 and 0.5 (e.g. 0.01)",
                scoring.alpha
            ),
        );
    }
    if !(scoring.beta > 0.0 && scoring.beta < 0.5) {
        push(
            "spec.scoring.beta".into(),
            format!(
                "is {}; it must be between 0 and 0.5 (e.g. 0.05)",
                scoring.beta
            ),
        );
    }
    for (field, value) in [
        ("passScore", scoring.pass_score),
        ("marginalScore", scoring.marginal_score),
    ] {
        if !(0.0..=100.0).contains(&value) {
            push(
                format!("spec.scoring.{field}"),
                format!("is {value}; it must be between 0 and 100"),
            );
        }
    }
    if scoring.marginal_score > scoring.pass_score {
        push(
            "spec.scoring.marginalScore".into(),
            format!(
                "is {} but passScore is {}; marginalScore must not exceed passScore",
                scoring.marginal_score, scoring.pass_score
            ),
        );
    }

    if spec.offset.is_some_and(|o| o.as_millis() == 0) {
        push(
            "spec.offset".into(),
            "is 0s; it must be longer than zero (e.g. 1d or 1w): the baseline window lies this \
             much before the judged one"
                .into(),
        );
    }

    if spec.metrics.is_empty() {
        push(
            "spec.metrics".into(),
            "is empty; a template needs at least one metric".into(),
        );
    }
    let mut metric_names = BTreeSet::new();
    for (i, metric) in spec.metrics.iter().enumerate() {
        let at = |field: &str| format!("spec.metrics[{i}].{field}");
        if !is_dns_label(&metric.name) {
            push(
                at("name"),
                format!(
                    "{:?} is not a valid metric name: use lower-case letters, digits and '-'",
                    metric.name
                ),
            );
        }
        if !metric_names.insert(metric.name.as_str()) {
            push(
                at("name"),
                format!("metric {:?} is defined twice", metric.name),
            );
        }
        for (field, message) in metric_issues(metric) {
            push(at(field), message);
        }
        for (part, query) in metric.queries() {
            match render::check(query) {
                Err(e) => push(at(part.field()), e.to_string()),
                Ok(found) => {
                    for p in &found {
                        if let Placeholder::Arg(name) = p
                            && !arg_names.contains(name.as_str())
                        {
                            push(
                                at(part.field()),
                                format!(
                                    "uses {{{{ args.{name} }}}} but spec.args declares no argument {name:?}"
                                ),
                            );
                        }
                    }
                    if metric.kind != MetricType::Threshold
                        && !found.contains(&Placeholder::Selector)
                    {
                        push(
                            at(part.field()),
                            "has no {{ selector }}: without it the stable and canary queries are the same; \
                             add it inside the metric's braces, e.g. metric{job=\"x\", {{ selector }}}"
                                .into(),
                        );
                    }
                }
            }
        }
    }
    issues
}

/// Field-level checks of one metric: (field, message).
fn metric_issues(m: &MetricSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(guard) = m.guard
        && guard.0 < m.tolerance.0
    {
        out.push((
            "guard",
            format!(
                "is {}% but the tolerance is {}%; the guard is the change ruled out before \
                 promotion and must be at least the tolerance",
                guard.0 * 100.0,
                m.tolerance.0 * 100.0
            ),
        ));
    }
    let kind = m.kind.as_str();
    let mut need = |field: &'static str, present: bool, wanted: bool| {
        if wanted && !present {
            out.push((field, format!("is required for a {kind} metric")));
        } else if !wanted && present {
            out.push((field, format!("does not apply to a {kind} metric")));
        }
    };
    let ratio = m.kind == MetricType::Ratio;
    let threshold = m.kind == MetricType::Threshold;
    let histogram = m.kind == MetricType::Histogram;
    need("errors", m.errors.is_some(), ratio);
    need("total", m.total.is_some(), ratio);
    need("query", m.query.is_some(), !ratio);
    if m.min_requests.is_some() && !(ratio || histogram) {
        need("minRequests", true, false);
    }
    if m.min_points.is_some() && (ratio || histogram) {
        need("minPoints", true, false);
    }
    if m.quantiles.is_some() && !histogram {
        need("quantiles", true, false);
    }
    if m.guard.is_some() && !(ratio || histogram) {
        need("guard", true, false);
    }
    if m.aggregate.is_some() && !threshold {
        need("aggregate", true, false);
    }
    if !threshold {
        if m.min.is_some() {
            need("min", true, false);
        }
        if m.max.is_some() {
            need("max", true, false);
        }
    }
    if threshold && m.min.is_none() && m.max.is_none() {
        out.push(("min", "a threshold metric needs min, max or both".into()));
    }
    for (field, value) in [("min", m.min), ("max", m.max)] {
        if value.is_some_and(|v| !v.is_finite()) {
            out.push((field, "must be a finite number".into()));
        }
    }
    if let (Some(lo), Some(hi)) = (m.min, m.max)
        && lo > hi
    {
        out.push(("min", format!("is {lo}, above max {hi}")));
    }
    if !(m.weight.is_finite() && m.weight > 0.0) {
        out.push((
            "weight",
            format!("is {}; it must be a positive number", m.weight),
        ));
    }
    if m.min_points == Some(0) {
        out.push(("minPoints", "must be at least 1".into()));
    }
    if let Some(qs) = &m.quantiles {
        if qs.is_empty() {
            out.push(("quantiles", "is empty; list e.g. [0.5, 0.9, 0.99]".into()));
        }
        if let Some(q) = qs.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
            out.push(("quantiles", format!("{q} is not between 0 and 1")));
        }
    }
    match (m.nan, m.nan_value) {
        (NanStrategy::Replace, None) => {
            out.push(("nanValue", "is required when nan is replace".into()))
        }
        (NanStrategy::Replace, Some(v)) if !v.is_finite() => {
            out.push(("nanValue", "must be a finite number".into()))
        }
        (NanStrategy::Remove | NanStrategy::Fail, Some(_)) => {
            out.push(("nanValue", "applies only when nan is replace".into()))
        }
        _ => {}
    }
    if (ratio || histogram) && m.outliers != OutlierStrategy::Keep {
        out.push((
            "outliers",
            format!("does not apply to a {kind} metric: counts are not filtered"),
        ));
    }
    if let Some(k) = m.iqr_factor {
        if !(k.is_finite() && k > 0.0) {
            out.push((
                "iqrFactor",
                format!("is {k}; it must be a positive number (e.g. 1.5)"),
            ));
        } else if m.outliers == OutlierStrategy::Keep {
            out.push((
                "iqrFactor",
                "applies only when outliers is remove or replace".into(),
            ));
        }
    }
    if (ratio || histogram) && m.nan != NanStrategy::Remove {
        out.push((
            "nan",
            format!("does not apply to a {kind} metric: counts have no NaN handling"),
        ));
    }
    out
}

/// Is `name` a DNS-1123 label, as Kubernetes names and vigil metric names must be?
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
