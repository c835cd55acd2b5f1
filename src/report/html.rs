//! A [`Document`] as one self-contained HTML5 page: inline CSS (light, dark and print),
//! hand-written SVG charts, no JavaScript and no external fetch. A Content-Security-Policy
//! that forbids everything but inline styles and `data:` images makes any accidental
//! external reference a console error that the browser test catches.

use super::doc::{Document, Section};
use super::figures::{mark_class, metric_figures};
use super::text::{
    baseline_words, change, escape, next_step_words, outcome_word, p_text, side, split_words,
    verdict_word,
};
use crate::judge::{MetricResult, Report, Verdict, words};
use std::fmt::Write as _;

/// The pages' style sheet (light, dark and print); the dashboard's pages use it too.
pub const STYLE: &str = r#"
:root{--bg:#fff;--fg:#1d2330;--muted:#5d6778;--grid:#e3e6ec;--panel:#f6f7f9;--stable:#2b6cb0;--canary:#d0490f;--pass:#1f7a3d;--fail:#c0262d;--warn:#a86400;--info:#4a5568;--bound:#7b3fa1;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e4e7ec;--muted:#9aa3b2;--grid:#2c323c;--panel:#1c2027;--stable:#6cb0f0;--canary:#ff8a50;--pass:#4cc27a;--fail:#ff6b6b;--warn:#f0b44c;--info:#a0aec0;--bound:#c490e4}}
body{background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem}
h1{font-size:1.5rem;margin:0 0 1rem}h2{font-size:1.25rem;margin:2rem 0 .5rem}h3{font-size:1.05rem;margin:1.5rem 0 .25rem}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:.3rem;font-weight:700;color:#fff;letter-spacing:.04em}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}.badge.marginal{background:var(--warn)}.badge.inconclusive{background:var(--info)}
.verdict{font-size:1.1rem;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.6rem 0;color:var(--muted)}.meta dd{margin:0;color:var(--fg)}
code{font-size:.9em;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid var(--grid);padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:var(--panel)}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}td.samples{font-variant-numeric:tabular-nums;min-width:9rem}td.samples small{color:var(--muted)}td.reason{min-width:16rem}
.outcome-pass{color:var(--pass)}.outcome-high,.outcome-low{color:var(--fail);font-weight:700}.outcome-nodata,.outcome-error{color:var(--warn);font-weight:700}
tr.mark-info td:first-child{border-left:4px solid var(--info)}tr.mark-advance td:first-child{border-left:4px solid var(--pass)}tr.mark-warn td:first-child{border-left:4px solid var(--warn)}tr.mark-abort td:first-child{border-left:4px solid var(--fail)}tr.mark-promote td:first-child{border-left:4px solid var(--stable)}
tr.mark-abort{background:color-mix(in srgb,var(--fail) 10%,transparent)}tr.mark-promote{background:color-mix(in srgb,var(--pass) 10%,transparent)}
.critical{font-size:.75rem;color:var(--fail);font-weight:700;margin-left:.3rem}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:.8rem}
svg.chart{width:100%;height:auto;color:var(--fg);background:var(--panel);border-radius:.3rem}
svg.chart text{fill:currentColor;font-size:11px}svg.chart .heading{font-size:12px;font-weight:600}svg.chart .tick{fill:var(--muted)}
svg.chart .grid{stroke:var(--grid);stroke-width:1}svg.chart .axis{stroke:var(--muted);stroke-width:1}
svg.chart .line{fill:none;stroke-width:1.8;stroke-linejoin:round}svg.chart .line.stable{stroke:var(--stable)}svg.chart .line.canary{stroke:var(--canary)}
svg.chart circle.line.stable,svg.chart .stable .point{fill:var(--stable)}svg.chart circle.line.canary,svg.chart .canary .point{fill:var(--canary)}
svg.chart .stable .bar-line{stroke:var(--stable);stroke-width:2}svg.chart .canary .bar-line{stroke:var(--canary);stroke-width:2}
svg.chart .bar.stable{fill:var(--stable)}svg.chart .bar.canary{fill:var(--canary)}
svg.chart .swatch{stroke-width:3}svg.chart .swatch.stable{stroke:var(--stable)}svg.chart .swatch.canary{stroke:var(--canary)}svg.chart .swatch.bound{stroke:var(--bound);stroke-dasharray:4 3}
svg.chart .bound{stroke:var(--bound);stroke-width:1.5;stroke-dasharray:6 4}svg.chart .bound-label{fill:var(--bound)}
svg.chart .mark-line{stroke-width:1.2;stroke-dasharray:3 3;stroke:var(--info)}svg.chart .mark-label{font-size:10px}
svg.chart .mark.advance .mark-line{stroke:var(--pass)}svg.chart .mark.warn .mark-line{stroke:var(--warn)}svg.chart .mark.abort .mark-line{stroke:var(--fail)}svg.chart .mark.promote .mark-line{stroke:var(--stable)}
svg.chart .nodata{fill:var(--muted);font-size:14px}svg.chart .note{font-weight:600}
footer{margin-top:2rem;color:var(--muted);font-size:.8rem}
@media print{:root{--bg:#fff;--fg:#000;--muted:#444;--grid:#ccc;--panel:#fff}body{max-width:none;padding:0}svg.chart,table,tr,.metric{break-inside:avoid;page-break-inside:avoid}h2,h3{break-after:avoid}}
"#;

/// The whole document as one HTML page.
pub fn html(doc: &Document) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&doc.title),
        escape(&doc.title)
    );
    for (i, section) in doc.sections.iter().enumerate() {
        write_section(&mut out, section, i, true);
    }
    out.push_str("<footer>Generated by vigil. Times are UTC.</footer>\n</body>\n</html>\n");
    out
}

fn verdict_class(v: Verdict) -> &'static str {
    v.as_str()
}

/// One section as an HTML fragment (`<section>...</section>`), as [`html`] writes it; the
/// timeline table only when `timeline` (the dashboard shows its own).
pub fn section(section: &Section<'_>, index: usize, timeline: bool) -> String {
    let mut out = String::new();
    write_section(&mut out, section, index, timeline);
    out
}

fn write_section(out: &mut String, section: &Section<'_>, index: usize, timeline: bool) {
    let report = section.report;
    let _ = writeln!(
        out,
        "<section class=\"report\" id=\"section-{index}\" data-verdict=\"{}\">\n<h2>{}</h2>",
        verdict_class(report.verdict),
        escape(&section.title)
    );
    write_header(out, report, &section.summary);
    if timeline && !section.marks.is_empty() {
        out.push_str("<h3>Timeline</h3>\n<table class=\"timeline\"><thead><tr><th>time</th><th>step</th><th>weight</th><th>what happened</th></tr></thead><tbody>\n");
        for mark in section.marks {
            let _ = writeln!(
                out,
                "<tr class=\"mark-{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}%</td><td>{}</td></tr>",
                mark_class(mark.kind),
                mark.at.format("%Y-%m-%d %H:%M:%S UTC"),
                escape(&mark.step),
                mark.weight,
                escape(&mark.text)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    write_metric_table(out, report);
    if !report.reasons.is_empty() {
        out.push_str("<ul class=\"reasons\">\n");
        for r in &report.reasons {
            let _ = writeln!(out, "<li>{}</li>", escape(r));
        }
        out.push_str("</ul>\n");
    }
    if let Some(charts) = section.charts {
        for (i, spec) in charts.template.spec.metrics.iter().enumerate() {
            let result = report.metrics.iter().find(|m| m.name == spec.name);
            let empty = crate::judge::MetricData::default();
            let data = charts.data.get(i).unwrap_or(&empty);
            let _ = writeln!(
                out,
                "<div class=\"metric\" data-metric=\"{}\">\n<h3>{} <small>({})</small></h3>",
                escape(&spec.name),
                escape(&spec.name),
                spec.kind.as_str()
            );
            if let Some(d) = &spec.description {
                let _ = writeln!(out, "<p>{}</p>", escape(d));
            }
            out.push_str("<div class=\"figures\">\n");
            for svg in metric_figures(spec, result, data, &report.window, section.marks) {
                out.push_str(&svg);
                out.push('\n');
            }
            out.push_str("</div>\n</div>\n");
        }
    }
    out.push_str("</section>\n");
}

fn write_header(out: &mut String, report: &Report, summary: &str) {
    let _ = writeln!(
        out,
        "<div class=\"verdict\"><span class=\"badge {}\">{}</span><span class=\"score\">score {:.0}/100</span></div>",
        verdict_class(report.verdict),
        verdict_word(report.verdict),
        report.score
    );
    if !summary.is_empty() {
        let _ = writeln!(out, "<p class=\"summary\">{}</p>", escape(summary));
    }
    let w = &report.window;
    let _ = writeln!(
        out,
        "<dl class=\"meta\"><dt>window</dt><dd>{} → {} (step {})</dd>\
         <dt>stable</dt><dd><code>{}</code></dd><dt>canary</dt><dd><code>{}</code></dd>\
         <dt>source</dt><dd>{}</dd><dt>template</dt><dd>{}</dd><dt>next</dt><dd>{}</dd>{}</dl>",
        w.start.format("%Y-%m-%d %H:%M:%S UTC"),
        w.end.format("%Y-%m-%d %H:%M:%S UTC"),
        w.step,
        escape(&report.stable),
        escape(&report.canary),
        escape(&report.source),
        escape(&report.template),
        escape(&next_step_words(report)),
        baseline_words(report)
            .map(|w| format!("<dt>baseline</dt><dd>{}</dd>", escape(&w)))
            .into_iter()
            .chain(split_words(report).map(|w| format!("<dt>split</dt><dd>{}</dd>", escape(&w))))
            .collect::<String>()
    );
}

fn write_metric_table(out: &mut String, report: &Report) {
    out.push_str(
        "<table class=\"metrics\"><thead><tr><th>metric</th><th>outcome</th><th>change [CI]</th>\
         <th>p</th><th>samples (stable / canary)</th><th>reason</th></tr></thead><tbody>\n",
    );
    for m in &report.metrics {
        write_metric_row(out, m);
    }
    out.push_str("</tbody></table>\n");
}

fn write_metric_row(out: &mut String, m: &MetricResult) {
    let critical = if m.critical {
        "<span class=\"critical\">critical</span>"
    } else {
        ""
    };
    let samples = |s: Option<&crate::judge::VersionSummary>| {
        s.map_or_else(|| "-".to_string(), |s| words::count(s.n))
    };
    let _ = writeln!(
        out,
        "<tr data-metric=\"{}\"><td>{}{critical}</td><td class=\"outcome-{}\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"samples\">{} / {}<br><small>{} · {}</small></td><td class=\"reason\">{}</td></tr>",
        escape(&m.name),
        escape(&m.name),
        m.outcome.as_str(),
        outcome_word(m.outcome),
        escape(&change(m)),
        escape(&p_text(m.p_value)),
        samples(m.stable.as_ref()),
        samples(m.canary.as_ref()),
        escape(&side(m.stable.as_ref(), m.kind)),
        escape(&side(m.canary.as_ref(), m.kind)),
        escape(&m.reason)
    );
}
