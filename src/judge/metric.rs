//! One metric's judgement, by metric type.

use super::evidence;
use super::words;
use super::{MetricData, MetricResult, Outcome, VersionSummary};
use crate::data::{QueryResult, Role};
use crate::stats::histogram::{self, Bucket};
use crate::stats::{Alternative, mann_whitney, rates, summary};
use crate::template::{Aggregate, Direction, MetricSpec, MetricType, QueryPart};
use std::collections::BTreeMap;

/// Judges one metric from its fetched data at significance level `alpha`.
pub fn judge_metric(spec: &MetricSpec, data: &MetricData, alpha: f64) -> MetricResult {
    let mut result = MetricResult {
        name: spec.name.clone(),
        kind: spec.kind.as_str(),
        group: spec.group.clone(),
        weight: spec.weight,
        critical: spec.critical,
        outcome: Outcome::Error,
        reason: String::new(),
        test: String::new(),
        statistic: None,
        p_value: None,
        estimate: None,
        ci: None,
        stable: None,
        canary: None,
        queries: data.queries.clone(),
        warnings: Vec::new(),
    };
    for r in data.results.values() {
        result.warnings.extend(r.warnings.iter().cloned());
    }
    if !data.errors.is_empty() {
        result.reason = data.errors.join("; ");
        return result;
    }
    let outcome = match spec.kind {
        MetricType::Ratio => judge_ratio(spec, data, alpha, &mut result),
        MetricType::Histogram => judge_histogram(spec, data, alpha, &mut result),
        MetricType::Series => judge_series(spec, data, alpha, &mut result),
        MetricType::Threshold => judge_threshold(spec, data, &mut result),
    };
    match outcome {
        Ok((outcome, reason)) => {
            result.outcome = outcome;
            result.reason = reason;
        }
        Err(reason) => {
            result.outcome = Outcome::Error;
            result.reason = reason;
        }
    }
    result
}

type Judged = Result<(Outcome, String), String>;

fn answer(data: &MetricData, role: Role, part: QueryPart) -> Result<&QueryResult, String> {
    data.results.get(&(role, part)).ok_or_else(|| {
        format!(
            "no answer for the {} query of the {role} version (internal: the query was not run)",
            part.field()
        )
    })
}

fn alternative(direction: Direction) -> Alternative {
    match direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    }
}

/// Is a relative change harmful and beyond the tolerance?
fn beyond_tolerance(direction: Direction, rel: f64, tolerance: f64) -> bool {
    match direction {
        Direction::Increase => rel > tolerance,
        Direction::Decrease => rel < -tolerance,
        Direction::Either => rel.abs() > tolerance,
    }
}

/// Does an interval of the relative change exclude "no change" on the harmful side?
fn interval_excludes_zero(direction: Direction, low: f64, high: f64) -> bool {
    match direction {
        Direction::Increase => low > 0.0,
        Direction::Decrease => high < 0.0,
        Direction::Either => low > 0.0 || high < 0.0,
    }
}

/// A regression only when the change is both significant and harmful beyond tolerance.
fn decide(significant: bool, harmful: bool, rel: f64) -> Outcome {
    match (significant && harmful, rel >= 0.0) {
        (false, _) => Outcome::Pass,
        (true, true) => Outcome::High,
        (true, false) => Outcome::Low,
    }
}

/// The sentence ending for a tested change.
fn verdict_words(significant: bool, harmful: bool, p: f64, tolerance: f64) -> String {
    let tol = words::percent(tolerance);
    match (significant, harmful) {
        (true, true) => format!(
            "regression beyond the {tol} tolerance ({})",
            words::p_value(p)
        ),
        (true, false) => format!(
            "a significant change, but within the {tol} tolerance or not harmful ({})",
            words::p_value(p)
        ),
        (false, _) => format!("no significant regression ({})", words::p_value(p)),
    }
}

fn too_little(what: &str, stable: f64, canary: f64, min: f64, field: &str) -> String {
    let mut text = if canary <= 0.0 {
        format!(
            "no canary {what} in the window (stable had {}); check that the canary receives \
             traffic and that --canary matches its labels",
            words::count(stable)
        )
    } else if stable <= 0.0 {
        format!(
            "no stable {what} in the window (canary had {}); check that --stable matches the \
             stable version's labels",
            words::count(canary)
        )
    } else {
        format!(
            "too little data: canary {} {what}, stable {}",
            words::count(canary),
            words::count(stable)
        )
    };
    text.push_str(&format!(
        "; need at least {} per version ({field}): about {} more",
        words::count(min),
        words::count((min - canary.min(stable)).max(0.0))
    ));
    text
}

fn judge_ratio(spec: &MetricSpec, data: &MetricData, alpha: f64, out: &mut MetricResult) -> Judged {
    let mut counts = [[0.0; 2]; 2];
    for (i, role) in [Role::Stable, Role::Canary].into_iter().enumerate() {
        for (j, part) in [QueryPart::Errors, QueryPart::Total]
            .into_iter()
            .enumerate()
        {
            let what = format!("{role} {}", part.field());
            counts[i][j] =
                evidence::sum_counts(answer(data, role, part)?, &what, &mut out.warnings);
        }
    }
    let [[se, sn], [ce, cn]] = counts;
    let summary = |e: f64, n: f64| VersionSummary {
        n,
        errors: Some(e),
        rate: (n > 0.0).then(|| e / n),
        ..VersionSummary::default()
    };
    out.stable = Some(summary(se, sn));
    out.canary = Some(summary(ce, cn));
    out.test = "rate comparison".into();
    let min = spec.min_requests() as f64;
    if sn < min || cn < min {
        return Ok((
            Outcome::NoData,
            too_little("requests", sn, cn, min, "minRequests"),
        ));
    }
    for (role, e, n) in [("stable", se, sn), ("canary", ce, cn)] {
        // increase() extrapolates, so allow a little slack before calling the data inconsistent.
        if e > n * 1.01 + 1.0 {
            return Err(format!(
                "the {role} version has more errors ({}) than requests ({}); the errors and total \
                 queries must count the same requests",
                words::count(e),
                words::count(n)
            ));
        }
    }
    let (se, ce) = (se.min(sn), ce.min(cn));
    let confidence = 1.0 - alpha;
    let cmp = rates::compare_rates(ce, cn, se, sn, alternative(spec.direction), confidence)
        .ok_or_else(|| "the counts cannot be compared (non-finite or negative)".to_string())?;
    out.test = cmp.test.to_string();
    out.statistic = Some(cmp.statistic);
    out.p_value = Some(cmp.p_value);
    let level = words::confidence(alpha);
    if ce == 0.0 && se == 0.0 {
        out.estimate = Some(0.0);
        out.ci = Some([cmp.ratio.low - 1.0, cmp.ratio.high - 1.0]);
        return Ok((
            Outcome::Pass,
            format!(
                "no errors in either version (canary 0 of {}, stable 0 of {})",
                words::count(cn),
                words::count(sn)
            ),
        ));
    }
    let rel = cmp.ratio.estimate - 1.0;
    out.estimate = Some(rel);
    out.ci = Some([cmp.ratio.low - 1.0, cmp.ratio.high - 1.0]);
    let significant = cmp.p_value < alpha;
    let harmful = beyond_tolerance(spec.direction, rel, spec.tolerance.0);
    let outcome = decide(significant, harmful, rel);
    Ok((
        outcome,
        format!(
            "canary error rate {} vs stable {} ({}, {level} CI {}-{}); {}",
            words::percent(cmp.canary_rate),
            words::percent(cmp.stable_rate),
            words::times(cmp.ratio.estimate),
            words::times(cmp.ratio.low),
            words::times(cmp.ratio.high),
            verdict_words(significant, harmful, cmp.p_value, spec.tolerance.0)
        ),
    ))
}

fn judge_histogram(
    spec: &MetricSpec,
    data: &MetricData,
    alpha: f64,
    out: &mut MetricResult,
) -> Judged {
    let stable = histogram::normalize(&evidence::buckets(
        answer(data, Role::Stable, QueryPart::Query)?,
        &mut out.warnings,
    )?);
    let canary = histogram::normalize(&evidence::buckets(
        answer(data, Role::Canary, QueryPart::Query)?,
        &mut out.warnings,
    )?);
    let (sn, cn) = (histogram::total(&stable), histogram::total(&canary));
    let quantiles = spec.quantiles();
    let summary = |b: &[Bucket], n: f64| VersionSummary {
        n,
        quantiles: Some(
            quantiles
                .iter()
                .filter_map(|q| histogram::quantile(*q, b).map(|v| (q.to_string(), v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..VersionSummary::default()
    };
    out.stable = Some(summary(&stable, sn));
    out.canary = Some(summary(&canary, cn));
    out.test = "chi-square homogeneity of buckets".into();
    let min = spec.min_requests() as f64;
    if sn < min || cn < min {
        return Ok((
            Outcome::NoData,
            too_little("requests", sn, cn, min, "minRequests"),
        ));
    }
    let homogeneity = histogram::chi_square_homogeneity(&canary, &stable);
    let p = homogeneity.as_ref().map_or(1.0, |h| h.p_value);
    out.statistic = homogeneity.as_ref().map(|h| h.statistic);
    out.p_value = Some(p);
    let confidence = 1.0 - alpha;
    // Pick the quantile with the most harmful change.
    let mut worst: Option<(f64, f64, f64, f64, f64, f64)> = None; // q, rel, low, high, c, s
    for q in &quantiles {
        let (Some(c), Some(s)) = (
            histogram::quantile_interval(*q, &canary, confidence),
            histogram::quantile_interval(*q, &stable, confidence),
        ) else {
            continue;
        };
        if s.estimate <= 0.0 {
            continue;
        }
        let rel = c.estimate / s.estimate - 1.0;
        let low = if s.high > 0.0 {
            c.low / s.high - 1.0
        } else {
            f64::NEG_INFINITY
        };
        let high = if s.low > 0.0 {
            c.high / s.low - 1.0
        } else {
            f64::INFINITY
        };
        let badness = match spec.direction {
            Direction::Increase => rel,
            Direction::Decrease => -rel,
            Direction::Either => rel.abs(),
        };
        if worst.is_none_or(|w| badness > harm(spec.direction, w.1)) {
            worst = Some((*q, rel, low, high, c.estimate, s.estimate));
        }
    }
    let Some((q, rel, low, high, c, s)) = worst else {
        return Ok((
            Outcome::NoData,
            "no quantile could be estimated from the buckets (all requests in the +Inf bucket or a zero latency)".into(),
        ));
    };
    out.test = format!(
        "chi-square homogeneity of buckets; p{} shift",
        quantile_label(q)
    );
    out.estimate = Some(rel);
    out.ci = Some([low, high]);
    let significant = p < alpha;
    let harmful = beyond_tolerance(spec.direction, rel, spec.tolerance.0)
        && interval_excludes_zero(spec.direction, low, high);
    let outcome = decide(significant, harmful, rel);
    Ok((
        outcome,
        format!(
            "canary p{} {} vs stable {} ({}, {} CI {} to {}); {}",
            quantile_label(q),
            words::value(c),
            words::value(s),
            words::change(rel),
            words::confidence(alpha),
            words::change(low),
            words::change(high),
            verdict_words(significant, harmful, p, spec.tolerance.0)
        ),
    ))
}

fn harm(direction: Direction, rel: f64) -> f64 {
    match direction {
        Direction::Increase => rel,
        Direction::Decrease => -rel,
        Direction::Either => rel.abs(),
    }
}

fn quantile_label(q: f64) -> String {
    let p = q * 100.0;
    words::significant(p, 3)
}

fn point_summary(points: &[f64]) -> VersionSummary {
    match summary::summarize(points) {
        Some(s) => VersionSummary {
            n: s.n as f64,
            mean: Some(s.mean),
            median: Some(s.median),
            min: Some(s.min),
            max: Some(s.max),
            ..VersionSummary::default()
        },
        None => VersionSummary::default(),
    }
}

fn judge_series(
    spec: &MetricSpec,
    data: &MetricData,
    alpha: f64,
    out: &mut MetricResult,
) -> Judged {
    let stable = evidence::points(
        answer(data, Role::Stable, QueryPart::Query)?,
        spec.nan,
        spec.nan_value,
        &mut out.warnings,
    )?;
    let canary = evidence::points(
        answer(data, Role::Canary, QueryPart::Query)?,
        spec.nan,
        spec.nan_value,
        &mut out.warnings,
    )?;
    out.stable = Some(point_summary(&stable));
    out.canary = Some(point_summary(&canary));
    out.test = "Mann-Whitney U".into();
    let min = spec.min_points() as f64;
    let (sn, cn) = (stable.len() as f64, canary.len() as f64);
    if sn < min || cn < min {
        return Ok((
            Outcome::NoData,
            too_little("points", sn, cn, min, "minPoints"),
        ));
    }
    let mw = mann_whitney::mann_whitney_u(&canary, &stable, alternative(spec.direction))
        .ok_or_else(|| "Mann-Whitney U could not be computed".to_string())?;
    out.test = format!("Mann-Whitney U ({})", mw.method);
    out.statistic = Some(mw.u);
    out.p_value = Some(mw.p_value);
    let shift = mann_whitney::hodges_lehmann(&canary, &stable, 1.0 - alpha)
        .ok_or_else(|| "the Hodges-Lehmann shift could not be computed".to_string())?;
    let stable_median = summary::summarize(&stable).map_or(0.0, |s| s.median);
    let stable_mean = summary::summarize(&stable).map_or(0.0, |s| s.mean);
    let base = if stable_median != 0.0 {
        stable_median.abs()
    } else {
        stable_mean.abs()
    };
    let significant = mw.p_value < alpha;
    let canary_median = summary::summarize(&canary).map_or(0.0, |s| s.median);
    if base == 0.0 {
        // A stable version that is exactly zero: judge the absolute shift.
        let harmful = beyond_tolerance(spec.direction, shift.estimate, 0.0);
        let outcome = decide(significant, harmful, shift.estimate);
        return Ok((
            outcome,
            format!(
                "stable is 0 throughout; canary median {} (shift {}); {}",
                words::value(canary_median),
                words::value(shift.estimate),
                verdict_words(significant, harmful, mw.p_value, 0.0)
            ),
        ));
    }
    let rel = shift.estimate / base;
    let (low, high) = (shift.low / base, shift.high / base);
    out.estimate = Some(rel);
    out.ci = Some([low, high]);
    let harmful = beyond_tolerance(spec.direction, rel, spec.tolerance.0);
    let outcome = decide(significant, harmful, rel);
    Ok((
        outcome,
        format!(
            "canary median {} vs stable {} (shift {}, {} CI {} to {}); {}",
            words::value(canary_median),
            words::value(stable_median),
            words::change(rel),
            words::confidence(alpha),
            words::change(low),
            words::change(high),
            verdict_words(significant, harmful, mw.p_value, spec.tolerance.0)
        ),
    ))
}

fn judge_threshold(spec: &MetricSpec, data: &MetricData, out: &mut MetricResult) -> Judged {
    let result = answer(data, Role::Canary, QueryPart::Query)?;
    let points = evidence::points(result, spec.nan, spec.nan_value, &mut out.warnings)?;
    let aggregate = spec.aggregate.unwrap_or_default();
    let mut canary = point_summary(&points);
    out.test = format!(
        "threshold on the {} of the canary's points",
        aggregate.as_str()
    );
    let min_points = spec.min_points();
    if points.len() < min_points {
        out.canary = Some(canary);
        let text = if points.is_empty() {
            "the query returned no data for the canary in the window".to_string()
        } else {
            format!(
                "only {} points, need {min_points} (minPoints)",
                points.len()
            )
        };
        return Ok((Outcome::NoData, text));
    }
    let value = match aggregate {
        Aggregate::Mean => canary.mean,
        Aggregate::Min => canary.min,
        Aggregate::Max => canary.max,
        Aggregate::Last => last_point(result, &points),
    }
    .unwrap_or(f64::NAN);
    canary.value = Some(value);
    out.canary = Some(canary);
    out.statistic = Some(value);
    let what = format!("canary {} {}", aggregate.as_str(), words::value(value));
    if let Some(min) = spec.min
        && value < min
    {
        return Ok((
            Outcome::Low,
            format!("{what} is below the minimum {}", words::value(min)),
        ));
    }
    if let Some(max) = spec.max
        && value > max
    {
        return Ok((
            Outcome::High,
            format!("{what} is above the maximum {}", words::value(max)),
        ));
    }
    let bounds = match (spec.min, spec.max) {
        (Some(lo), Some(hi)) => format!("within [{}, {}]", words::value(lo), words::value(hi)),
        (Some(lo), None) => format!("at or above the minimum {}", words::value(lo)),
        (None, Some(hi)) => format!("at or below the maximum {}", words::value(hi)),
        (None, None) => "unbounded".into(),
    };
    Ok((Outcome::Pass, format!("{what} is {bounds}")))
}

/// The latest finite point across series.
fn last_point(result: &QueryResult, points: &[f64]) -> Option<f64> {
    result
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| *v)
        .or_else(|| points.last().copied())
}
