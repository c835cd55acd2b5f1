//! Renders a [`Report`] as a terminal table, Markdown (for pull-request comments) or JSON,
//! and a [`Document`] (one or more judgements with charts and a rollout's timeline) as a
//! self-contained HTML page ([`html::html`]) or Markdown ([`markdown_doc`]).

pub mod chart;
pub mod charts;
pub mod doc;
mod figures;
pub mod html;
mod text;

pub use doc::{ChartData, Document, Mark, MarkKind, Section};
pub use figures::mark_class;
pub use html::html;
pub use text::{
    baseline_words, change, escape, next_step_words, outcome_word, p_text, split_words,
    verdict_word,
};

#[cfg(test)]
mod tests;

use crate::judge::{Report, Verdict};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use std::fmt::Write as _;
use text::{escape_md, side};

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
    if let Some(words) = baseline_words(report) {
        let _ = writeln!(out, "{words}");
    }
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

fn verdict_icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "✅",
        Verdict::Marginal => "⚠️",
        Verdict::Fail => "❌",
        Verdict::Inconclusive => "❔",
    }
}

/// Markdown for a pull-request comment.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} vigil: {} (score {:.0}/100)\n",
        verdict_icon(report.verdict),
        verdict_word(report.verdict),
        report.score
    );
    md_context(&mut out, report);
    md_metric_table(&mut out, report);
    md_reasons(&mut out, report);
    out
}

/// The line with template, window and matchers, and what a pass would do.
fn md_context(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "Template `{}` · window {} → {} (step {}) · stable `{}` · canary `{}` · {}{}\n",
        report.template,
        report.window.start.to_rfc3339(),
        report.window.end.to_rfc3339(),
        report.window.step,
        escape_md(&report.stable),
        escape_md(&report.canary),
        next_step_words(report),
        baseline_words(report)
            .into_iter()
            .chain(split_words(report))
            .map(|s| format!(" · {s}"))
            .collect::<String>()
    );
}

/// One row per metric.
fn md_metric_table(out: &mut String, report: &Report) {
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
}

/// The verdict's reasons as a list.
fn md_reasons(out: &mut String, report: &Report) {
    for r in &report.reasons {
        let _ = writeln!(out, "- {}", escape_md(r));
    }
}

/// A document as Markdown for a pull request: a one-line summary first, then per section
/// its heading, summary, timeline (for rollouts), metric table and reasons.
pub fn markdown_doc(doc: &Document) -> String {
    let mut out = String::new();
    match doc.sections.as_slice() {
        [] => {
            let _ = writeln!(out, "**{}**: nothing was judged\n", escape_md(&doc.title));
        }
        [only] => {
            let _ = writeln!(
                out,
                "**vigil: {}** (score {:.0}/100) — {}\n",
                verdict_word(only.report.verdict),
                only.report.score,
                escape_md(&only.summary)
            );
        }
        many => {
            let verdicts: Vec<String> = many
                .iter()
                .map(|s| {
                    format!(
                        "{}: **{}** ({:.0}/100)",
                        escape_md(&s.title),
                        verdict_word(s.report.verdict),
                        s.report.score
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "**{}** — {}\n",
                escape_md(&doc.title),
                verdicts.join(" · ")
            );
        }
    }
    for section in &doc.sections {
        let report = section.report;
        let _ = writeln!(
            out,
            "### {} {} — {} (score {:.0}/100)\n",
            verdict_icon(report.verdict),
            escape_md(&section.title),
            verdict_word(report.verdict),
            report.score
        );
        if !section.summary.is_empty() {
            let _ = writeln!(out, "{}\n", escape_md(&section.summary));
        }
        md_context(&mut out, report);
        if !section.marks.is_empty() {
            let _ = writeln!(out, "| time (UTC) | step | weight | what happened |");
            let _ = writeln!(out, "|---|---|---|---|");
            for mark in section.marks {
                let _ = writeln!(
                    out,
                    "| {} | {} | {}% | {} |",
                    mark.at.format("%Y-%m-%d %H:%M:%S"),
                    escape_md(&mark.step),
                    mark.weight,
                    escape_md(&mark.text)
                );
            }
            out.push('\n');
        }
        md_metric_table(&mut out, report);
        md_reasons(&mut out, report);
        out.push('\n');
    }
    out
}

/// A document of one judgement, e.g. for `vigil judge --report FILE.html`: its summary is
/// the verdict's first reason.
pub fn single<'a>(report: &'a Report, charts: Option<ChartData<'a>>) -> Document<'a> {
    let verdict = verdict_word(report.verdict);
    Document {
        title: format!("vigil: {verdict} — template {}", report.template),
        sections: vec![Section {
            title: format!("{verdict}: {} vs {}", report.canary, report.stable),
            summary: report
                .reasons
                .first()
                .cloned()
                .unwrap_or_else(|| format!("verdict {verdict}, score {:.0}/100", report.score)),
            report,
            charts,
            marks: &[],
        }],
    }
}
