//! Renders a [`Report`] as a terminal table, Markdown (for pull-request comments) or JSON.

pub mod doc;

use crate::judge::words;
use crate::judge::{MetricResult, Outcome, Report, Verdict, VersionSummary};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::fmt::Write as _;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable terminal table.
    Table,
    /// Markdown for a pull-request comment.
    Markdown,
    /// The stable JSON format.
    Json,
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table(report),
        Format::Markdown => markdown(report),
        Format::Json => json(report),
    }
}

/// The stable JSON form (pretty-printed).
pub fn json(report: &Report) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Marginal => "MARGINAL",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::High => "HIGH",
        Outcome::Low => "LOW",
        Outcome::NoData => "nodata",
        Outcome::Error => "ERROR",
    }
}

fn short(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), words::value)
}

fn side(s: Option<&VersionSummary>, kind: &str) -> String {
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

fn p_text(p: Option<f64>) -> String {
    p.map_or_else(
        || "-".into(),
        |p| words::p_value(p).trim_start_matches("p=").to_string(),
    )
}

fn change(m: &MetricResult) -> String {
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

/// A terminal table with the verdict, one row per metric and the reasons.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vigil verdict: {}  score {:.0}/100  (template {}, {} to {}, step {})",
        verdict_word(report.verdict),
        report.score,
        report.template,
        report.window.start.to_rfc3339(),
        report.window.end.to_rfc3339(),
        report.window.step
    );
    let _ = writeln!(
        out,
        "stable: {}   canary: {}   source: {}",
        report.stable, report.canary, report.source
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(160)
        .set_header(vec![
            "metric",
            "outcome",
            "change [CI]",
            "p",
            "stable",
            "canary",
            "reason",
        ]);
    for m in &report.metrics {
        let name = if m.critical {
            format!("{} (critical)", m.name)
        } else {
            m.name.clone()
        };
        t.add_row(vec![
            name,
            outcome_word(m.outcome).to_string(),
            change(m),
            p_text(m.p_value),
            side(m.stable.as_ref(), m.kind),
            side(m.canary.as_ref(), m.kind),
            m.reason.clone(),
        ]);
    }
    let _ = writeln!(out, "{t}");
    for r in &report.reasons {
        let _ = writeln!(out, "- {r}");
    }
    for m in &report.metrics {
        for w in &m.warnings {
            let _ = writeln!(out, "warning: {}: {w}", m.name);
        }
    }
    out
}

fn escape_md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Markdown for a pull-request comment.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let icon = match report.verdict {
        Verdict::Pass => "✅",
        Verdict::Marginal => "⚠️",
        Verdict::Fail => "❌",
        Verdict::Inconclusive => "❔",
    };
    let _ = writeln!(
        out,
        "### {icon} vigil: {} (score {:.0}/100)\n",
        verdict_word(report.verdict),
        report.score
    );
    let _ = writeln!(
        out,
        "Template `{}` · window {} → {} (step {}) · stable `{}` · canary `{}`\n",
        report.template,
        report.window.start.to_rfc3339(),
        report.window.end.to_rfc3339(),
        report.window.step,
        escape_md(&report.stable),
        escape_md(&report.canary)
    );
    let _ = writeln!(
        out,
        "| metric | outcome | change [CI] | p | stable | canary | reason |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for m in &report.metrics {
        let critical = if m.critical { " (critical)" } else { "" };
        let _ = writeln!(
            out,
            "| {}{critical} | {} | {} | {} | {} | {} | {} |",
            escape_md(&m.name),
            outcome_word(m.outcome),
            change(m),
            p_text(m.p_value),
            escape_md(&side(m.stable.as_ref(), m.kind)),
            escape_md(&side(m.canary.as_ref(), m.kind)),
            escape_md(&m.reason)
        );
    }
    out.push('\n');
    for r in &report.reasons {
        let _ = writeln!(out, "- {}", escape_md(r));
    }
    out
}
