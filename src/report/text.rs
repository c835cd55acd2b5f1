//! The text every format of a report shares: verdicts, outcomes and a metric's cells in
//! words, what a pass leads to, and escaping for HTML (and SVG) and Markdown. A leaf: it uses
//! nothing else of the report.

use crate::judge::words;
use crate::judge::{MetricResult, Outcome, Report, Verdict, VersionSummary};

/// `text` safe inside HTML text and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` safe inside a Markdown table cell.
pub fn escape_md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A verdict as the reports write it (`PASS`, `FAIL`, ...).
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Marginal => "MARGINAL",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    }
}

/// A metric's outcome as the reports write it.
pub fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::High => "HIGH",
        Outcome::Low => "LOW",
        Outcome::NoData => "nodata",
        Outcome::Error => "ERROR",
    }
}

/// A value in few digits, or `-`.
pub fn short(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), words::value)
}

/// One version's side of a metric in a cell, by the metric's kind.
pub fn side(s: Option<&VersionSummary>, kind: &str) -> String {
    let Some(s) = s else { return "-".into() };
    let n = words::count(s.n);
    match kind {
        "ratio" => format!(
            "{} / {n} req ({})",
            words::count(s.errors.unwrap_or(0.0)),
            s.rate.map_or_else(|| "-".into(), words::percent)
        ),
        "histogram" => {
            let qs = s
                .quantiles
                .as_ref()
                .map(|q| {
                    q.iter()
                        .map(|(k, v)| format!("q{k}={}", words::value(*v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!("{n} req {qs}")
        }
        "threshold" => format!("{n} pts, value {}", short(s.value)),
        _ => format!("{n} pts, median {}", short(s.median)),
    }
}

/// A p-value in a cell.
pub fn p_text(p: Option<f64>) -> String {
    p.map_or_else(
        || "-".into(),
        |p| words::p_value(p).trim_start_matches("p=").to_string(),
    )
}

/// The estimated change with its confidence interval in a cell.
pub fn change(m: &MetricResult) -> String {
    match (m.estimate, m.ci) {
        (Some(e), Some([lo, hi])) => format!(
            "{} [{}, {}]",
            words::change(e),
            words::change(lo),
            words::change(hi)
        ),
        (Some(e), None) => words::change(e),
        _ => "-".into(),
    }
}

/// What a pass leads to, in words.
pub fn next_step_words(report: &Report) -> String {
    let p = report.position;
    if p.next_weight >= 1.0 {
        "a pass promotes (all traffic)".into()
    } else {
        format!(
            "a pass gives the canary {} of the traffic",
            words::percent(p.next_weight)
        )
    }
}

/// Where a before/after comparison's stable data came from, when it was one.
pub fn baseline_words(report: &Report) -> Option<String> {
    let w = report.baseline.as_ref()?;
    let earlier = crate::template::units::PromDuration::from_millis(
        (report.window.end - w.end)
            .num_milliseconds()
            .unsigned_abs(),
    );
    Some(format!(
        "stable from the baseline {} to {}, {earlier} earlier",
        crate::data::rfc3339(w.start),
        crate::data::rfc3339(w.end),
    ))
}

/// The traffic split check in words, when it ran.
pub fn split_words(report: &Report) -> Option<String> {
    let s = report.split.as_ref()?;
    Some(format!(
        "traffic split: canary {} of requests at weight {} ({})",
        words::percent(s.observed),
        words::percent(s.expected),
        if s.mismatch { "MISMATCH" } else { "as set" }
    ))
}
