//! One metric's judgement, by metric type.
//!
//! Count-based metrics (`ratio`, `histogram`) are judged sequentially over the window's steps
//! with anytime-valid e-processes, exactly as a rollout that looks at every step would judge
//! them: a regression beyond tolerance fails as soon as the evidence shows it, a pass needs
//! evidence that any change is within tolerance, and anything in between is `nodata` with an
//! estimate of how much more traffic is needed. `series` metrics are judged the same way
//! with a time-uniform confidence sequence for the mean per-step log ratio canary/stable.

use super::decision::{Call, LatencyEvidence, Promotion, Sides};
use super::evidence;
use super::words;
use super::{
    FixedSample, MetricData, MetricResult, Outcome, Position, PromotionEvidence, VersionSummary,
};
use crate::data::{QueryResult, Role};
use crate::stats::confseq::{self, Dependence};
use crate::stats::histogram::{self, Bucket};
use crate::stats::outliers::{self, OutlierMode};
use crate::stats::{Alternative, rates, summary};
use crate::template::{
    Aggregate, DEFAULT_IQR_FACTOR, Direction, MetricSpec, MetricType, OutlierStrategy, QueryPart,
};
use std::collections::{BTreeMap, BTreeSet};

/// How to judge: the levels, which look of a rollout this is and where the rollout stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The template's significance level.
    pub alpha: f64,
    /// The template's promotion error level.
    pub beta: f64,
    /// Where the judgement stands in its rollout: the weight a pass gives next, and which
    /// points belong to the current step.
    pub position: Position,
    /// The window's query step in milliseconds (each point covers one).
    pub step_ms: i64,
    /// 1 for a one-off judgement; the n-th judgement of a rollout otherwise. Every metric
    /// type's test is anytime-valid, so none spends `alpha` across looks.
    pub look: u32,
}

/// Judges one metric from its fetched data.
pub fn judge_metric(spec: &MetricSpec, data: &MetricData, settings: Settings) -> MetricResult {
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
        e_value: None,
        fixed_sample: None,
        estimate: None,
        ci: None,
        stable: None,
        canary: None,
        queries: data.queries.clone(),
        warnings: Vec::new(),
        promotion: None,
    };
    for r in data.results.values() {
        result.warnings.extend(r.warnings.iter().cloned());
    }
    if !data.errors.is_empty() {
        result.reason = data.errors.join("; ");
        return result;
    }
    let alpha = settings.alpha;
    let outcome = match spec.kind {
        MetricType::Ratio => judge_ratio(spec, data, &settings, &mut result),
        MetricType::Histogram => judge_histogram(spec, data, &settings, &mut result),
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

/// The rate ratios that tolerance allows above and below 1.
fn ratio_bounds(tolerance: f64) -> (f64, f64) {
    (1.0 + tolerance, (1.0 - tolerance).max(1e-6))
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

/// Turns the sequential evidence into an outcome and the end of the reason's sentence: a
/// regression fails; evidence that lets the rollout give the canary the next weight
/// (within the tolerance, or below the guard's exposure bound at confidence `1 - beta`)
/// passes; anything else waits for more data.
///
/// `sides` is the evidence the words are about; `promotable` is the metric's whole decision
/// (for a histogram, every quantile's), which may be stricter than `sides` alone.
fn conclude(
    sides: &Sides,
    promotable: bool,
    spec: &MetricSpec,
    settings: &Settings,
    (steps, unit): (usize, &str),
    out: &mut MetricResult,
) -> (Outcome, String) {
    let tol = words::percent(spec.tolerance.0);
    let next = settings.position.next_weight;
    out.promotion = Some(PromotionEvidence {
        next_weight: next,
        bound: sides.exposure_bound(next),
        confidence: 1.0 - settings.beta,
        shown: promotable,
    });
    let share = words::percent(next);
    let guard = format!(
        "x{} (the guard for {share} of the traffic)",
        words::significant(sides.exposure_bound(next), 3)
    );
    match sides.call() {
        Call::Regression { higher, look } => (
            if higher { Outcome::High } else { Outcome::Low },
            format!(
                "regression beyond the {tol} tolerance (e-value {} against no change, shown at step {look} of {steps})",
                words::e_value(sides.harm_e())
            ),
        ),
        Call::Safe if promotable => (
            Outcome::Pass,
            format!(
                "within the {tol} tolerance (e-value {} for that)",
                words::e_value(sides.safe_e())
            ),
        ),
        Call::Undecided if promotable => (
            Outcome::Pass,
            format!(
                "no regression, and any change is shown below {guard} at {} confidence",
                words::confidence(settings.beta)
            ),
        ),
        Call::Safe | Call::Undecided => {
            let need = match sides.more_requests(Some(next)) {
                Some(m) if m > 0.0 => {
                    format!("; about {} more {unit} should settle it", words::count(m))
                }
                Some(_) => {
                    "; a little more data should settle it unless the change is close to the guard"
                        .into()
                }
                None => String::new(),
            };
            (
                Outcome::NoData,
                format!("not yet enough evidence that any change is below {guard}{need}"),
            )
        }
    }
}

/// The promotion rule of a metric.
fn promotion(spec: &MetricSpec, settings: &Settings) -> Promotion {
    Promotion {
        beta: settings.beta,
        guard: spec.guard(),
    }
}

fn judge_ratio(
    spec: &MetricSpec,
    data: &MetricData,
    settings: &Settings,
    out: &mut MetricResult,
) -> Judged {
    let alpha = settings.alpha;
    let mut steps: BTreeMap<i64, [f64; 4]> = BTreeMap::new();
    let parts = [
        (Role::Canary, QueryPart::Errors),
        (Role::Canary, QueryPart::Total),
        (Role::Stable, QueryPart::Errors),
        (Role::Stable, QueryPart::Total),
    ];
    for (i, (role, part)) in parts.into_iter().enumerate() {
        let result = answer(data, role, part)?;
        if result.series.len() > 1 {
            out.warnings.push(format!(
                "the {role} {} query returned {} series; they were added up (wrap it in sum(...) to make that explicit)",
                part.field(),
                result.series.len()
            ));
        }
        for (t, v) in evidence::step_counts(result) {
            steps.entry(t).or_insert([0.0; 4])[i] = v;
        }
    }
    let total = |i: usize| steps.values().map(|c| c[i]).sum::<f64>();
    let (ce, cn, se, sn) = (total(0), total(1), total(2), total(3));
    let summary = |e: f64, n: f64| VersionSummary {
        n,
        errors: Some(e),
        rate: (n > 0.0).then(|| e / n),
        ..VersionSummary::default()
    };
    out.stable = Some(summary(se, sn));
    out.canary = Some(summary(ce, cn));
    out.test = "sequential rate ratio (anytime-valid e-process)".into();
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
    out.fixed_sample = rates::compare_rates(
        ce.min(cn),
        cn,
        se.min(sn),
        sn,
        alternative(spec.direction),
        1.0 - alpha,
    )
    .map(|r| FixedSample {
        test: r.test.to_string(),
        statistic: r.statistic,
        p_value: r.p_value,
    });
    let tolerance = spec.tolerance.0;
    let (upper, lower) = ratio_bounds(tolerance);
    let mut sides = Sides::with_promotion(spec.direction, alpha, promotion(spec, settings));
    let position = settings.position;
    let mut in_step = false;
    for (t, c) in &steps {
        step_boundary(&position, (*t, settings.step_ms), &mut in_step, &mut sides);
        let [ce, cn, se, sn] = *c;
        sides.observe([ce.min(cn), cn, se.min(sn), sn], upper, lower);
    }
    out.p_value = Some(sides.p_value());
    out.e_value = Some(sides.harm_e());
    out.statistic = out.e_value;
    // No regression and the evidence for the next weight (`promotable` is false after a
    // regression).
    let promotable = sides.promotable(settings.position.next_weight);
    let (outcome, ending) = conclude(
        &sides,
        promotable,
        spec,
        settings,
        (steps.len(), "requests"),
        out,
    );
    if ce == 0.0 && se == 0.0 {
        // No event on either side says nothing about the ratio, but it is the best a canary
        // can do: pass, and say how low its error rate is shown to be (at level alpha, zero
        // events in n requests bound the rate by ln(1/alpha) / n).
        let bound = (1.0 / alpha).ln() / cn;
        return Ok((
            Outcome::Pass,
            format!(
                "no errors in either version (canary 0 of {}, stable 0 of {}); the canary's \
                 error rate is below {} at {} confidence",
                words::count(cn),
                words::count(sn),
                words::percent(bound),
                words::confidence(alpha)
            ),
        ));
    }
    let estimate = sides.estimate().unwrap_or(f64::NAN);
    out.estimate = Some(estimate - 1.0);
    let interval = match sides.confidence_sequence(alpha) {
        Some((lo, hi)) => {
            out.ci = Some([lo - 1.0, hi - 1.0]);
            format!(
                ", {} CS {}-{}",
                words::confidence(alpha),
                words::times(lo),
                words::times(hi)
            )
        }
        None => String::new(),
    };
    Ok((
        outcome,
        format!(
            "canary error rate {} vs stable {} ({}{interval}); {ending}",
            words::percent(ce / cn),
            words::percent(se / sn),
            words::times(estimate),
        ),
    ))
}

/// Starts the step's own change processes at the first point of the current step (the
/// points before it belong to earlier steps, whose own analyses watched them).
fn step_boundary<S: StepWatch>(
    position: &Position,
    (t, step_ms): (i64, i64),
    in_step: &mut bool,
    evidence: &mut S,
) {
    if *in_step {
        return;
    }
    if position.in_step(t, step_ms) {
        *in_step = true;
        evidence.start_step(position.step as usize);
    } else {
        evidence.suspend_step();
    }
}

/// Evidence whose change processes restart at each step.
trait StepWatch {
    fn start_step(&mut self, k: usize);
    fn suspend_step(&mut self);
}

impl StepWatch for Sides {
    fn start_step(&mut self, k: usize) {
        Sides::start_step(self, k);
    }
    fn suspend_step(&mut self) {
        Sides::suspend_step(self);
    }
}

impl StepWatch for LatencyEvidence {
    fn start_step(&mut self, k: usize) {
        LatencyEvidence::start_step(self, k);
    }
    fn suspend_step(&mut self) {
        LatencyEvidence::suspend_step(self);
    }
}

fn judge_histogram(
    spec: &MetricSpec,
    data: &MetricData,
    settings: &Settings,
    out: &mut MetricResult,
) -> Judged {
    let alpha = settings.alpha;
    let stable_result = answer(data, Role::Stable, QueryPart::Query)?;
    let canary_result = answer(data, Role::Canary, QueryPart::Query)?;
    let stable = histogram::normalize(&evidence::buckets(stable_result, &mut out.warnings)?);
    let canary = histogram::normalize(&evidence::buckets(canary_result, &mut out.warnings)?);
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
    out.test =
        "sequential exceedance rates at the stable quantiles (anytime-valid e-processes)".into();
    let min = spec.min_requests() as f64;
    if sn < min || cn < min {
        return Ok((
            Outcome::NoData,
            too_little("requests", sn, cn, min, "minRequests"),
        ));
    }
    out.fixed_sample = histogram::chi_square_homogeneity(&canary, &stable).map(|h| FixedSample {
        test: format!("chi-square homogeneity of buckets ({} df)", h.df),
        statistic: h.statistic,
        p_value: h.p_value,
    });
    let tolerance = spec.tolerance.0;
    let stable_steps = evidence::step_buckets(stable_result)?;
    let canary_steps = evidence::step_buckets(canary_result)?;
    let times: BTreeSet<i64> = stable_steps
        .keys()
        .chain(canary_steps.keys())
        .copied()
        .collect();
    // One e-process per quantile, each at alpha / (number of quantiles).
    let mut evidence = LatencyEvidence::with_promotion(
        &quantiles,
        spec.direction,
        tolerance,
        alpha,
        promotion(spec, settings),
    );
    let position = settings.position;
    let mut in_step = false;
    for t in &times {
        step_boundary(
            &position,
            (*t, settings.step_ms),
            &mut in_step,
            &mut evidence,
        );
        evidence.observe(
            stable_steps.get(t).map_or(&[][..], Vec::as_slice),
            canary_steps.get(t).map_or(&[][..], Vec::as_slice),
        );
    }
    let next = settings.position.next_weight;
    let promotable: Vec<bool> = evidence
        .sides_mut()
        .iter_mut()
        .map(|s| s.totals().1 > 0.0 && s.promotable(next))
        .collect();
    let per_quantile = evidence.sides();
    // The decision: a regression at any quantile fails; a pass needs every quantile to let
    // the rollout give the canary the next weight.
    let calls: Vec<Call> = per_quantile.iter().map(Sides::call).collect();
    let tail = evidence.tail();
    let worst_e = per_quantile
        .iter()
        .chain(tail.map(|(t, _)| t))
        .map(Sides::harm_e)
        .fold(0.0, f64::max);
    out.e_value = Some(worst_e);
    out.statistic = Some(worst_e);
    // Each quantile's process and the tail's run at `alpha / (quantiles + 1)`.
    out.p_value = Some(
        per_quantile
            .iter()
            .chain(tail.map(|(t, _)| t))
            .map(|s| s.p_value() * (quantiles.len() + 1) as f64)
            .fold(1.0, f64::min)
            .min(1.0),
    );
    // For the words: the quantile with the most harmful interpolated shift.
    let confidence = 1.0 - alpha;
    let mut shown: Option<(usize, f64, f64, f64, f64, f64)> = None; // index, rel, low, high, c, s
    for (i, q) in quantiles.iter().enumerate() {
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
        // Show the quantile that decides: a regression first, then one still undecided,
        // then the most harmful shift.
        let rank = |j: usize| match calls[j] {
            Call::Regression { .. } => 2,
            _ if !promotable[j] => 1,
            _ => 0,
        };
        let better = match shown {
            None => true,
            Some((j, prev, ..)) => {
                rank(i) > rank(j)
                    || (rank(i) == rank(j)
                        && harm(spec.direction, rel) > harm(spec.direction, prev))
            }
        };
        if better {
            shown = Some((i, rel, low, high, c.estimate, s.estimate));
        }
    }
    let Some((i, rel, low, high, c, s)) = shown else {
        return Ok((
            Outcome::NoData,
            "no quantile could be estimated from the buckets (all requests in the +Inf bucket or a zero latency)".into(),
        ));
    };
    out.estimate = Some(rel);
    out.ci = Some([low, high]);
    let steps = times.len();
    // The shown quantile is the deciding one (see above), so its words end the sentence.
    // The metric passes only when every quantile lets the rollout advance, including one
    // without an interval to show.
    let (outcome, ending) = conclude(
        &per_quantile[i],
        promotable.iter().all(|p| *p),
        spec,
        settings,
        (steps, "requests"),
        out,
    );
    let quantile_words = format!(
        "canary p{} {} vs stable {} ({}, {} CI {} to {})",
        quantile_label(quantiles[i]),
        words::value(c),
        words::value(s),
        words::change(rel),
        words::confidence(alpha),
        words::change(low),
        words::change(high),
    );
    // The tail fails a canary whose quantiles have not (yet) shown a regression.
    if let Some((tail, bound)) = tail.filter(|_| !matches!(outcome, Outcome::High | Outcome::Low))
        && let Call::Regression { higher, look } = tail.call()
    {
        let (ce, cn, se, sn) = tail.totals();
        let share = |events: f64, requests: f64| {
            if requests > 0.0 {
                words::percent(events / requests)
            } else {
                "n/a".into()
            }
        };
        return Ok((
            if higher { Outcome::High } else { Outcome::Low },
            format!(
                "{quantile_words}; but its tail is heavier: {} of the canary's requests took longer than {} vs {} of the stable's, a regression beyond the {} tolerance (e-value {} against no change, shown at step {look} of {steps})",
                share(ce, cn),
                words::value(bound),
                share(se, sn),
                words::percent(spec.tolerance.0),
                words::e_value(tail.harm_e()),
            ),
        ));
    }
    Ok((outcome, format!("{quantile_words}; {ending}")))
}

fn harm(direction: Direction, rel: f64) -> f64 {
    match direction {
        Direction::Increase => rel,
        Direction::Decrease => -rel,
        Direction::Either => rel.abs(),
    }
}

fn quantile_label(q: f64) -> String {
    words::significant(q * 100.0, 3)
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

/// A version's points after the NaN and outlier strategies.
fn series_points(
    spec: &MetricSpec,
    data: &MetricData,
    role: Role,
    warnings: &mut Vec<String>,
) -> Result<Vec<f64>, String> {
    let points = evidence::points(
        answer(data, role, QueryPart::Query)?,
        spec.nan,
        spec.nan_value,
        warnings,
    )?;
    Ok(evidence::without_outliers(
        points,
        spec.outliers,
        spec.iqr_factor,
        warnings,
    ))
}

/// How a `series` metric compares the two versions' points at each step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// Every point is positive: `ln(canary / stable)`, a relative change `e^x - 1`.
    Log,
    /// Some points are zero or negative: `canary - stable`, relative to the stable median
    /// (its mean if the median is 0), this magnitude.
    Relative(f64),
    /// Stable is 0 throughout: `canary - stable`, judged with no tolerance.
    Absolute,
}

impl Scale {
    /// One step's comparison.
    fn compare(self, canary: f64, stable: f64) -> f64 {
        match self {
            Scale::Log => (canary / stable).ln(),
            Scale::Relative(_) | Scale::Absolute => canary - stable,
        }
    }

    /// A mean difference (the scale's units) as a relative change (absolute for Absolute).
    fn change(self, x: f64) -> f64 {
        match self {
            Scale::Log => x.exp() - 1.0,
            Scale::Relative(base) => x / base,
            Scale::Absolute => x,
        }
    }

    /// The tolerance's bounds in the scale's units: (below, above).
    fn bounds(self, tolerance: f64) -> (f64, f64) {
        match self {
            Scale::Log => {
                let (upper, lower) = ratio_bounds(tolerance);
                (lower.ln(), upper.ln())
            }
            Scale::Relative(base) => (-tolerance * base, tolerance * base),
            Scale::Absolute => (0.0, 0.0),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Scale::Log => "log ratio canary/stable",
            Scale::Relative(_) | Scale::Absolute => "difference canary - stable",
        }
    }
}

/// Paired per-step values of both versions: `(canary, stable)` at each step where both
/// have a point.
fn paired_steps(canary: &BTreeMap<i64, f64>, stable: &BTreeMap<i64, f64>) -> Vec<(f64, f64)> {
    canary
        .iter()
        .filter_map(|(t, c)| stable.get(t).map(|s| (*c, *s)))
        .collect()
}

/// The template's outlier strategy, applied to the per-step comparisons.
fn step_outliers(
    spec: &MetricSpec,
    values: Vec<f64>,
    scale: Scale,
    warnings: &mut Vec<String>,
) -> Vec<f64> {
    let mode = match spec.outliers {
        OutlierStrategy::Keep => return values,
        OutlierStrategy::Remove => OutlierMode::Remove,
        OutlierStrategy::Replace => OutlierMode::Replace,
    };
    let k = spec.iqr_factor.unwrap_or(DEFAULT_IQR_FACTOR);
    let (out, touched) = outliers::apply(&values, mode, k);
    if touched > 0 {
        let verb = if mode == OutlierMode::Remove {
            "were removed"
        } else {
            "were moved onto the fences"
        };
        warnings.push(format!(
            "{touched} outlying points: the steps whose {} lay outside the {k} IQR fences {verb}",
            scale.what()
        ));
    }
    out
}

/// `series`: an anytime-valid confidence sequence for the mean per-step log ratio of the
/// canary's and stable's points at the same time stamps (see [`confseq`]); the relative
/// change is `e^x - 1` of it. Fails when the whole interval lies beyond the tolerance on
/// the harmful side, passes when it lies within, and is `nodata` otherwise.
fn judge_series(
    spec: &MetricSpec,
    data: &MetricData,
    alpha: f64,
    out: &mut MetricResult,
) -> Judged {
    let step_values = |role: Role, warnings: &mut Vec<String>| {
        let result = answer(data, role, QueryPart::Query)?;
        if result.series.len() > 1 {
            warnings.push(format!(
                "the {role} query returned {} series; each step's points were averaged \
                 (wrap the query in avg(...) to make that explicit)",
                result.series.len()
            ));
        }
        evidence::step_points(result, spec.nan, spec.nan_value, warnings)
    };
    let stable_steps = step_values(Role::Stable, &mut out.warnings)?;
    let canary_steps = step_values(Role::Canary, &mut out.warnings)?;
    let stable_values: Vec<f64> = stable_steps.values().copied().collect();
    let canary_values: Vec<f64> = canary_steps.values().copied().collect();
    out.stable = Some(point_summary(&stable_values));
    out.canary = Some(point_summary(&canary_values));
    out.test = "anytime-valid confidence sequence (normal mixture) of the mean per-step log \
                ratio canary/stable"
        .into();
    let min = spec.min_points() as f64;
    let (sn, cn) = (stable_values.len() as f64, canary_values.len() as f64);
    if sn < min || cn < min {
        return Ok((
            Outcome::NoData,
            too_little("points", sn, cn, min, "minPoints"),
        ));
    }
    let pairs = paired_steps(&canary_steps, &stable_steps);
    // The words and the scale use the steps that are compared.
    let stable_paired: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let canary_paired: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let stable_summary = summary::summarize(&stable_paired);
    let stable_median = stable_summary.map_or(0.0, |s| s.median);
    let stable_mean = stable_summary.map_or(0.0, |s| s.mean);
    let canary_median = summary::summarize(&canary_paired).map_or(0.0, |s| s.median);
    let base = if stable_median != 0.0 {
        stable_median.abs()
    } else {
        stable_mean.abs()
    };
    let scale = if base == 0.0 {
        Scale::Absolute
    } else if pairs.iter().all(|(c, s)| *c > 0.0 && *s > 0.0) {
        Scale::Log
    } else {
        Scale::Relative(base)
    };
    if scale != Scale::Log {
        out.test = format!(
            "anytime-valid confidence sequence (normal mixture) of the mean per-step {}",
            scale.what()
        );
    }
    let diffs: Vec<f64> = pairs.iter().map(|(c, s)| scale.compare(*c, *s)).collect();
    let diffs = step_outliers(spec, diffs, scale, &mut out.warnings);
    let steps = diffs.len() as f64;
    if steps < min.max(2.0) {
        return Ok((
            Outcome::NoData,
            format!(
                "only {} steps have a point of both versions (canary {} points, stable {}); \
                 the comparison needs at least {} (minPoints): about {} more",
                words::count(steps),
                words::count(cn),
                words::count(sn),
                words::count(min.max(2.0)),
                words::count(min.max(2.0) - steps)
            ),
        ));
    }
    let cs = confseq::mean_sequence(&diffs, alpha, Dependence::Autocorrelated)
        .ok_or_else(|| "the confidence sequence could not be computed".to_string())?;
    if cs.autocorrelation > 0.0 {
        out.test.push_str(&format!(
            "; lag-1 autocorrelation {} allowed for ({} effective steps of {})",
            words::significant(cs.autocorrelation, 2),
            words::significant(cs.effective_n, 3),
            cs.n
        ));
    }
    // Evidence of a change in the harmful direction only: the two-sided mixture's e-value
    // against no change, when the estimate lies on the harmful side.
    let harmful_side = match spec.direction {
        Direction::Increase => cs.mean > 0.0,
        Direction::Decrease => cs.mean < 0.0,
        Direction::Either => true,
    };
    let (e, p) = if harmful_side {
        (cs.e_value(0.0), cs.p_value(0.0))
    } else {
        (1.0, 1.0)
    };
    out.statistic = Some(e);
    out.e_value = Some(e);
    out.p_value = Some(p);
    let tolerance = if scale == Scale::Absolute {
        0.0
    } else {
        spec.tolerance.0
    };
    let (below, above) = scale.bounds(tolerance);
    let (rel, low, high) = (
        scale.change(cs.mean),
        scale.change(cs.low),
        scale.change(cs.high),
    );
    let bounded = cs.radius().is_finite();
    if scale != Scale::Absolute {
        out.estimate = Some(rel);
        out.ci = bounded.then_some([low, high]);
    }
    let (beyond_above, beyond_below) = (cs.low > above, cs.high < below);
    let beyond = match spec.direction {
        Direction::Increase => beyond_above,
        Direction::Decrease => beyond_below,
        Direction::Either => beyond_above || beyond_below,
    };
    let within = match spec.direction {
        Direction::Increase => cs.high <= above,
        Direction::Decrease => cs.low >= below,
        Direction::Either => cs.high <= above && cs.low >= below,
    };
    let tol = words::percent(tolerance);
    let (outcome, ending) = if beyond {
        (
            if beyond_above {
                Outcome::High
            } else {
                Outcome::Low
            },
            format!(
                "regression beyond the {tol} tolerance ({})",
                words::p_value(p)
            ),
        )
    } else if within {
        (
            Outcome::Pass,
            format!("within the {tol} tolerance ({})", words::p_value(p)),
        )
    } else {
        // How far the estimate is from the bound that will decide, in the scale's units.
        let room = match spec.direction {
            Direction::Increase => (above - cs.mean).abs(),
            Direction::Decrease => (cs.mean - below).abs(),
            Direction::Either => (above - cs.mean).abs().min((cs.mean - below).abs()),
        };
        let more = match cs.points_needed(room) {
            Some(need) if need > steps => format!(
                "; about {} more {} with points of both versions should settle it",
                words::count(need - steps),
                if need - steps > 1.0 { "steps" } else { "step" }
            ),
            Some(_) | None if room > 0.0 => "; a few more steps should settle it".into(),
            _ => "; more data should settle it unless the change is at the tolerance".into(),
        };
        (
            Outcome::NoData,
            format!(
                "the interval still reaches beyond the {tol} tolerance ({}){more}",
                words::p_value(p)
            ),
        )
    };
    let confidence = words::confidence(alpha);
    let interval = |low: String, high: String| {
        if bounded {
            format!("{confidence} CS {low} to {high}")
        } else {
            format!("{} steps are too few for a {confidence} CS", cs.n)
        }
    };
    let shown = if scale == Scale::Absolute {
        format!(
            "stable is 0 throughout; canary median {} (shift {}, {})",
            words::value(canary_median),
            words::value(cs.mean),
            interval(words::value(low), words::value(high))
        )
    } else {
        format!(
            "canary median {} vs stable {} over {} steps (change {}, {})",
            words::value(canary_median),
            words::value(stable_median),
            cs.n,
            words::change(rel),
            interval(words::change(low), words::change(high))
        )
    };
    Ok((outcome, format!("{shown}; {ending}")))
}

fn judge_threshold(spec: &MetricSpec, data: &MetricData, out: &mut MetricResult) -> Judged {
    let result = answer(data, Role::Canary, QueryPart::Query)?;
    let points = series_points(spec, data, Role::Canary, &mut out.warnings)?;
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
    let what = format!(
        "canary {} {}",
        aggregate.as_str(),
        words::significant(value, 4)
    );
    if let Some(min) = spec.min
        && value < min
    {
        return Ok((
            Outcome::Low,
            format!("{what} is below the minimum {}", words::significant(min, 4)),
        ));
    }
    if let Some(max) = spec.max
        && value > max
    {
        return Ok((
            Outcome::High,
            format!("{what} is above the maximum {}", words::significant(max, 4)),
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
