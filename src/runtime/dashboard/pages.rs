//! The dashboard's HTML: the page shell (the report's style sheet, one inline script allowed
//! by its hash), the overview's rows, a Release's summary, timeline and evidence. The
//! evidence and its charts are the reports' own ([`crate::report::html::section`]); the
//! live updates replace these same fragments, rendered here, in the page.

use super::store::Held;
use super::{Access, Dashboard};
use crate::analysis::Judged;
use crate::api::crd::Release;
use crate::api::plan;
use crate::data::Role;
use crate::judge::words;
use crate::report::{self, ChartData, Mark, Section, escape};
use crate::rollout::{Phase, State};
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// The script of every page: polls its JSON every few seconds and replaces the fragments
/// that changed; the operator buttons call the `/v1` API.
pub const SCRIPT: &str = include_str!("script.js");

/// How often the pages poll by default, in milliseconds.
pub const POLL_MS: u64 = 3000;

/// The Content-Security-Policy of every page: nothing from elsewhere, the one script by its
/// SHA-256, inline styles (the report's), `data:` images, requests to this origin only.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, SCRIPT.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; img-src data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
});

const EXTRA_STYLE: &str = r#"
body{max-width:1400px}
header.bar{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;border-bottom:1px solid var(--grid);padding-bottom:.6rem;margin-bottom:1rem}
header.bar .brand{font-weight:700;color:var(--fg);text-decoration:none}header.bar .who{color:var(--muted);font-size:.85rem;margin-left:auto}
header.bar form{margin:0}
a{color:var(--stable)}
button{font:inherit;padding:.3rem .8rem;border-radius:.3rem;border:1px solid var(--grid);background:var(--panel);color:var(--fg);cursor:pointer}
button.danger{border-color:var(--fail);color:var(--fail)}button:disabled{opacity:.5;cursor:default}
.filters{display:flex;gap:.8rem;flex-wrap:wrap;align-items:end;margin:.5rem 0}.filters label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
select,input{font:inherit;padding:.25rem .4rem;border:1px solid var(--grid);border-radius:.3rem;background:var(--bg);color:var(--fg)}
.scroll{overflow-x:auto}
.live{color:var(--muted);font-size:.8rem;margin:.3rem 0}
.phase{display:inline-block;padding:.05rem .45rem;border-radius:.3rem;font-size:.8rem;font-weight:600;background:var(--panel);border:1px solid var(--grid)}
.phase.Failed{color:var(--fail);border-color:var(--fail)}.phase.Succeeded{color:var(--pass);border-color:var(--pass)}.phase.Progressing,.phase.Promoting,.phase.Baking{color:var(--stable);border-color:var(--stable)}.phase.Paused{color:var(--warn);border-color:var(--warn)}
.verdict-pass{color:var(--pass)}.verdict-fail,.verdict-error{color:var(--fail);font-weight:700}.verdict-inconclusive,.verdict-marginal{color:var(--warn)}
td.reason.held{color:var(--warn)}td.reason.failed{color:var(--fail)}
.split-off{color:var(--fail);font-weight:700}
.actions{display:flex;gap:.5rem;flex-wrap:wrap;margin:.8rem 0}
.note{color:var(--muted)}
.login{max-width:26rem;margin:4rem auto}.login form{display:flex;flex-direction:column;gap:.6rem}.error{color:var(--fail)}
@media (max-width:700px){body{padding:.6rem;font-size:14px}.figures{grid-template-columns:1fr}td.reason{min-width:10rem}
table.releases,table.releases tbody,table.releases tr,table.releases td{display:block;width:auto}table.releases thead{display:none}
table.releases tr{border:1px solid var(--grid);border-radius:.3rem;margin:.5rem 0;padding:.3rem}
table.releases td{border:none;padding:.15rem .3rem;min-width:0;white-space:normal}
table.releases td::before{content:attr(data-label);color:var(--muted);font-size:.75rem;display:inline-block;min-width:6.5rem}}
"#;

/// A whole page: `body` inside the shell, with the script.
pub fn page(title: &str, access: Option<Access>, poll_ms: u64, body: &str) -> String {
    let who = match access {
        Some(Access::Write) => "signed in: may act",
        Some(Access::Read) => "signed in: read-only",
        None => "",
    };
    let sign_out = if access.is_some() {
        "<form method=\"post\" action=\"/logout\"><button type=\"submit\">sign out</button></form>"
    } else {
        ""
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{}{EXTRA_STYLE}</style>\n</head>\n<body data-poll=\"{poll_ms}\">\n\
         <header class=\"bar\"><a class=\"brand\" href=\"/\">vigil</a><span>live dashboard</span>\
         <span class=\"who\" id=\"who\">{who}</span>{sign_out}</header>\n{body}\n\
         <footer>vigil dashboard. Times are UTC.</footer>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        report::html::STYLE,
        title = escape(title),
    )
}

/// The sign-in form (the only page served without a credential), with an error if any.
pub fn login(next: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"login-error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "vigil: sign in",
        None,
        POLL_MS,
        &format!(
            "<div class=\"login\"><h1>Sign in</h1>\
             <p>Enter the API token of <code>vigil run</code> (<code>--api-token-file</code>), \
             or a read-only token (<code>--api-read-token-file</code>). It is kept in a cookie \
             that scripts cannot read, sent to this site only.</p>{error}\
             <form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label>token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
             <button type=\"submit\">sign in</button></form></div>",
            escape(next)
        ),
    )
}

/// A duration in words: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub fn duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `user:password@` taken out of the URLs in `text` (a source's description).
pub fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ']).unwrap_or(tail.len());
        rest = match tail[..end].rfind('@') {
            Some(at) => &tail[at + 1..],
            None => tail,
        };
    }
    out.push_str(rest);
    out
}

/// One Release as the overview shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: &'static str,
    /// `N/M`.
    pub step: String,
    /// The canary's weight (percent).
    pub weight: u8,
    /// The last verdict, from status.
    pub verdict: Option<String>,
    /// The latest analysis's score per template, when this process ran it.
    pub scores: Vec<(String, f64)>,
    /// The observed share of requests, the weight's, and whether they disagree.
    pub split: Option<(f64, f64, bool)>,
    /// Since when it is in its step (or phase).
    pub since: Option<DateTime<Utc>>,
    /// What status says, in words.
    pub message: String,
    /// `held`, `failed` or empty: whether the message is why it does not move.
    pub held: &'static str,
    /// The latest moment anything happened to it.
    pub activity: Option<DateTime<Utc>>,
}

/// Since when a Release is where it is.
fn since(state: &crate::api::status::StateV1alpha1) -> Option<DateTime<Utc>> {
    match state.phase {
        Phase::Progressing | Phase::Paused => state.step_started_at.or(state.waiting_since),
        Phase::Promoting => state.promoting_since,
        Phase::Baking => state.baking_since,
        Phase::Failed => state.aborted_at,
        _ => None,
    }
}

/// The overview's row of `release`, with what this process keeps of it.
pub fn row(release: &Release, held: Option<&Held>) -> Row {
    let status = release.status.clone().unwrap_or_default();
    let s = &status.state;
    let not_ready = status.conditions.iter().any(|c| c.status == "False");
    let held_word = match (s.phase, s.last_verdict.as_deref()) {
        (Phase::Failed, _) => "failed",
        _ if not_ready => "failed",
        (Phase::Paused, _) => "held",
        (Phase::Progressing, Some("fail" | "inconclusive" | "error")) => "held",
        _ => "",
    };
    let reports = held.map(|h| h.judged.clone()).unwrap_or_default();
    let activity = [
        s.last_analysis_at,
        s.step_started_at,
        s.started_at,
        s.aborted_at,
        s.promoting_since,
        s.baking_since,
        s.waiting_since,
        held.and_then(|h| h.touched),
    ]
    .into_iter()
    .flatten()
    .max();
    Row {
        namespace: release.namespace().unwrap_or_default(),
        name: release.name_any(),
        phase: s.phase.as_str(),
        step: status
            .step_label
            .clone()
            .unwrap_or_else(|| format!("{}/{}", s.current_step, s.steps)),
        weight: s.weight,
        verdict: s.last_verdict.clone(),
        scores: reports
            .iter()
            .map(|j| (j.report.template.clone(), j.report.score))
            .collect(),
        split: reports
            .iter()
            .find_map(|j| j.report.split.as_ref())
            .map(|sp| (sp.observed, sp.expected, sp.mismatch)),
        since: since(s),
        message: s.message.clone(),
        held: held_word,
        activity,
    }
}

fn verdict_cell(row: &Row) -> String {
    let verdict = row.verdict.as_deref().unwrap_or("-");
    let scores: Vec<String> = row.scores.iter().map(|(_, s)| format!("{s:.0}")).collect();
    let score = if scores.is_empty() {
        String::new()
    } else {
        format!(" <small>score {}</small>", scores.join(", "))
    };
    format!(
        "<span class=\"verdict-{}\">{}</span>{score}",
        escape(verdict),
        escape(verdict)
    )
}

fn split_cell(row: &Row) -> String {
    match row.split {
        Some((observed, expected, off)) => format!(
            "<span class=\"{}\">{} / {}</span>",
            if off { "split-off" } else { "split-ok" },
            words::percent(observed),
            words::percent(expected)
        ),
        None => "-".into(),
    }
}

fn release_link(namespace: &str, name: &str) -> String {
    format!("/releases/{}/{}", escape(namespace), escape(name))
}

/// The overview's `<tbody>` rows.
pub fn rows_html(rows: &[Row], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"note\">No Release matches.</td></tr>");
    }
    for r in rows {
        let _ = writeln!(
            out,
            "<tr data-release=\"{ns}/{name}\" data-phase=\"{phase}\"><td data-label=\"Release\"><a href=\"{link}\">{name}</a></td>\
             <td data-label=\"namespace\">{ns}</td><td data-label=\"phase\"><span class=\"phase {phase}\">{phase}</span></td>\
             <td class=\"num step\" data-label=\"step\">{step}</td><td class=\"num weight\" data-label=\"weight\">{weight}%</td>\
             <td class=\"last-verdict\" data-label=\"last verdict\">{verdict}</td><td class=\"num split\" data-label=\"split\">{split}</td>\
             <td class=\"num\" data-label=\"in step\">{since}</td><td class=\"reason {held}\" data-label=\"reason\">{message}</td></tr>",
            ns = escape(&r.namespace),
            name = escape(&r.name),
            link = release_link(&r.namespace, &r.name),
            phase = r.phase,
            step = escape(&r.step),
            weight = r.weight,
            verdict = verdict_cell(r),
            split = split_cell(r),
            since = r.since.map_or_else(|| "-".into(), |t| duration(now - t)),
            held = r.held,
            message = escape(&r.message),
        );
    }
    out
}

/// The overview page's body: filters and the table (its rows are refreshed).
pub fn overview_body(
    rows: &str,
    rows_version: &str,
    namespaces: &[String],
    namespace: Option<&str>,
    phase: Option<&str>,
    live: &str,
    poll_ms: u64,
) -> String {
    let option = |value: &str, selected: bool| {
        format!(
            "<option value=\"{v}\"{}>{v}</option>",
            if selected { " selected" } else { "" },
            v = escape(value)
        )
    };
    let ns_options: String = namespaces
        .iter()
        .map(|n| option(n, Some(n.as_str()) == namespace))
        .collect();
    let phase_options: String = Phase::ALL
        .iter()
        .map(|p| option(p.as_str(), Some(p.as_str()) == phase))
        .collect();
    format!(
        "<h1>Releases</h1>\n<form class=\"filters\" id=\"filters\" method=\"get\" action=\"/\">\
         <label>namespace <select name=\"namespace\"><option value=\"\">all</option>{ns_options}</select></label>\
         <label>phase <select name=\"phase\"><option value=\"\">all</option>{phase_options}</select></label>\
         <button type=\"submit\">filter</button></form>\n\
         <p class=\"live\" id=\"live\" data-live=\"{}\">live: refreshed every {} s</p>\n\
         <div class=\"scroll\"><table class=\"releases\"><thead><tr><th>Release</th><th>namespace</th><th>phase</th>\
         <th>step</th><th>weight</th><th>last verdict</th><th>split (observed / weight)</th><th>in step</th>\
         <th>reason</th></tr></thead><tbody id=\"rows\" data-v=\"{rows_version}\">{rows}</tbody></table></div>",
        escape(live),
        words::value(poll_ms as f64 / 1000.0)
    )
}

/// A Release's summary: where it stands.
pub fn summary_html(release: &Release, row: &Row, now: DateTime<Utc>) -> String {
    let status = release.status.clone().unwrap_or_default();
    let s = &status.state;
    let mut out = String::from("<dl class=\"meta\">");
    let mut item = |k: &str, v: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    item(
        "phase",
        format!(
            "<span class=\"phase {p}\" id=\"phase\">{p}</span>",
            p = row.phase
        ),
    );
    item(
        "step",
        format!("<span id=\"step\">{}</span>", escape(&row.step)),
    );
    item(
        "weight",
        format!("<span id=\"weight\">{}%</span>", row.weight),
    );
    item("last verdict", verdict_cell(row));
    item("traffic split", split_cell(row));
    item(
        "in step",
        row.since.map_or_else(|| "-".into(), |t| duration(now - t)),
    );
    item(
        "analyses",
        format!(
            "{} run, {} failed, {} inconclusive",
            s.looks, s.failed_checks, s.inconclusive_checks
        ),
    );
    if let Some(r) = &s.canary_revision {
        item("canary revision", format!("<code>{}</code>", escape(r)));
    }
    if let Some(r) = &s.stable_revision {
        item("stable revision", format!("<code>{}</code>", escape(r)));
    }
    item(
        "message",
        format!(
            "<span class=\"reason {}\" id=\"message\">{}</span>",
            row.held,
            escape(&s.message)
        ),
    );
    for c in status.conditions.iter().filter(|c| c.status == "False") {
        item(
            &escape(&c.type_),
            format!("{}: {}", escape(&c.reason), escape(&c.message)),
        );
    }
    out.push_str("</dl>");
    out
}

/// The operator buttons, for a credential that may write: each says what it does and is
/// enabled where the API would accept it.
pub fn actions_html(release: &Release, access: Access) -> String {
    if access != Access::Write {
        return String::new();
    }
    let phase = release
        .status
        .as_ref()
        .map(|s| s.state.phase)
        .unwrap_or_default();
    let in_flight = matches!(
        phase,
        Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Baking
    );
    let paused = release.spec.paused;
    let url = |action: &str| {
        format!(
            "/v1/releases/{}/{}/{action}",
            escape(&release.namespace().unwrap_or_default()),
            escape(&release.name_any())
        )
    };
    let button = |action: &str, label: &str, enabled: bool, class: &str| {
        format!(
            "<button type=\"button\" class=\"{class}\" data-action=\"{action}\" data-url=\"{}\"{}>{label}</button>",
            url(action),
            if enabled { "" } else { " disabled" }
        )
    };
    [
        button(
            "promote",
            "promote (next step)",
            in_flight && phase != Phase::Promoting,
            "",
        ),
        button("abort", "abort", in_flight, "danger"),
        button("pause", "pause", !paused, ""),
        button("resume", "resume", paused, ""),
    ]
    .concat()
}

/// The decisions, newest first: the analyses status keeps and the rollout events this
/// process saw.
pub fn timeline(release: &Release, held: Option<&Held>) -> Vec<Mark> {
    let state = release
        .status
        .as_ref()
        .map(|s| State::from(&s.state))
        .unwrap_or_default();
    let mut marks = match plan::plan(&release.spec) {
        Ok(p) => crate::cluster::report::analysis_marks(&p, &state),
        Err(_) => Vec::new(),
    };
    if let Some(h) = held {
        marks.extend(h.timeline.iter().cloned());
    }
    marks.sort_by_key(|m| std::cmp::Reverse(m.at));
    marks
}

/// The timeline table.
pub fn timeline_html(marks: &[Mark]) -> String {
    if marks.is_empty() {
        return "<p class=\"note\">No decision yet.</p>".into();
    }
    let mut out = String::from(
        "<div class=\"scroll\"><table class=\"timeline\"><thead><tr><th>time</th><th>step</th><th>weight</th>\
         <th>what happened</th></tr></thead><tbody>\n",
    );
    for mark in marks {
        let _ = writeln!(
            out,
            "<tr class=\"mark-{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}%</td><td>{}</td></tr>",
            report::mark_class(mark.kind),
            mark.at.format("%Y-%m-%d %H:%M:%S"),
            escape(&mark.step),
            mark.weight,
            escape(&mark.text)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Prometheus's graph page for `query` over `seconds`, when its address is known.
fn graph_link(ui: Option<&str>, query: &str, seconds: i64) -> Option<String> {
    let mut url = reqwest::Url::parse(ui?).ok()?;
    let path = format!("{}/graph", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("g0.expr", query)
        .append_pair("g0.tab", "0")
        .append_pair("g0.range_input", &format!("{}s", seconds.max(60)));
    Some(url.to_string())
}

/// The sequential evidence of each metric and the queries run.
fn evidence_table(j: &Judged, ui: Option<&str>) -> String {
    let seconds = (j.report.window.end - j.report.window.start).num_seconds();
    let mut out = String::from(
        "<div class=\"scroll\"><table class=\"evidence\"><thead><tr><th>metric</th><th>outcome</th>\
         <th>estimate [interval]</th><th>e-value</th><th>p</th><th>what it needs</th><th>queries</th></tr></thead><tbody>\n",
    );
    for m in &j.report.metrics {
        let mut queries = String::new();
        for (role, parts) in &m.queries {
            for (part, q) in parts {
                let label = format!(
                    "{} {}",
                    match role {
                        Role::Stable => "stable",
                        Role::Canary => "canary",
                    },
                    serde_json::to_value(part)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                );
                let link = graph_link(ui, q, seconds)
                    .map(|u| {
                        format!(
                            " <a class=\"graph\" href=\"{}\" rel=\"noreferrer\" target=\"_blank\">graph</a>",
                            escape(&u)
                        )
                    })
                    .unwrap_or_default();
                let _ = write!(
                    queries,
                    "<div><small>{}</small> <code>{}</code>{link}</div>",
                    escape(&label),
                    escape(q)
                );
            }
        }
        let _ = writeln!(
            out,
            "<tr data-metric=\"{name}\"><td>{name}</td><td class=\"outcome-{}\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"reason\">{}</td><td><details><summary>{} queries</summary>{queries}</details></td></tr>",
            m.outcome.as_str(),
            report::outcome_word(m.outcome),
            escape(&report::change(m)),
            m.e_value.map_or_else(|| "-".into(), words::e_value),
            escape(&report::p_text(m.p_value)),
            escape(&m.reason),
            m.queries.values().map(|p| p.len()).sum::<usize>(),
            name = escape(&m.name),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The evidence of the latest analysis: per template, the report's section (verdict,
/// metrics, charts of stable vs canary with the decisions marked) and the sequential
/// evidence with the queries.
pub fn evidence_html(dashboard: &Dashboard, held: Option<&Held>, marks: &[Mark]) -> String {
    let Some(h) = held.filter(|h| !h.judged.is_empty()) else {
        return format!(
            "<p class=\"note\">{}</p>",
            if dashboard.evidence.is_some() {
                "No analysis has run in this process yet: the evidence appears after the next one. \
                 (With several replicas, the one that runs this Release's analyses shows it.)"
            } else {
                "The evidence of each analysis is kept in memory by the controller: open the \
                 dashboard of vigil run to see it. Here: what the Release's status says."
            }
        );
    };
    let mut marks: Vec<Mark> = marks.to_vec();
    marks.reverse();
    let mut out = String::new();
    if let Some(at) = h.analysed_at {
        let _ = writeln!(
            out,
            "<p class=\"note\">Latest analysis at {}.</p>",
            at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    for (i, j) in h.judged.iter().enumerate() {
        let mut report = j.report.clone();
        report.source = redact(&report.source);
        let section = Section {
            title: format!("template {}", j.template.metadata.name),
            summary: report.reasons.first().cloned().unwrap_or_default(),
            report: &report,
            charts: Some(ChartData {
                template: &j.template,
                data: &j.data,
            }),
            marks: &marks,
        };
        out.push_str(&report::html::section(&section, i, false));
        out.push_str("<h3>Sequential evidence and queries</h3>\n");
        out.push_str(&evidence_table(j, dashboard.prometheus_ui.as_deref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_redaction_read_well() {
        assert_eq!(duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(duration(chrono::Duration::seconds(200)), "3m 20s");
        assert_eq!(duration(chrono::Duration::seconds(7500)), "2h 5m");
        assert_eq!(duration(chrono::Duration::seconds(-5)), "0s");
        assert_eq!(
            redact("Prometheus at https://user:secret@prom.example/api"),
            "Prometheus at https://prom.example/api"
        );
        assert_eq!(
            redact("Prometheus at http://prom:9090"),
            "Prometheus at http://prom:9090"
        );
    }

    #[test]
    fn graph_links_carry_the_query() {
        let link =
            graph_link(Some("https://prom.example/prom/"), "sum(rate(x[1m]))", 600).expect("link");
        assert!(
            link.starts_with(
                "https://prom.example/prom/graph?g0.expr=sum%28rate%28x%5B1m%5D%29%29"
            ),
            "{link}"
        );
        assert!(link.contains("g0.range_input=600s"), "{link}");
        assert_eq!(graph_link(None, "x", 60), None);
    }
}
