//! Tests of the HTML and Markdown documents against the report they render.

use super::*;
use crate::analysis::{self, AnalysisRequest};
use crate::data::Window;
use crate::judge::MetricData;
use crate::source::simulated::{SimulatedSource, VersionModel};
use crate::template::units::PromDuration;
use crate::template::{ReleaseAnalysis, load};
use chrono::{TimeZone, Utc};
use std::collections::BTreeMap;

const DEMO: &str = include_str!("../../analysis-templates/demo.yaml");
const EVIL: &str = "<script>alert('x')</script>&\"";

/// The demo template judged on simulated data (a regression: x4 errors, +60% latency),
/// with the first metric renamed to `EVIL` when `evil` is set.
fn judged(evil: bool, hours: i64) -> (ReleaseAnalysis, Report, Vec<MetricData>) {
    let mut template = load::parse(DEMO, "demo.yaml").unwrap();
    if evil {
        template.spec.metrics[0].name = EVIL.to_string();
    }
    let stable = VersionModel {
        rps: 180.0,
        ..VersionModel::default()
    };
    let canary = VersionModel {
        rps: 20.0,
        error_rate: stable.error_rate * 4.0,
        latency_median: stable.latency_median * 1.6,
        ..stable
    };
    let source = SimulatedSource::new(&template, stable, canary, 7);
    let end = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    let window = Window::new(
        end - chrono::Duration::hours(hours),
        end,
        PromDuration::from_secs(60),
    )
    .unwrap();
    let request = AnalysisRequest {
        position: crate::judge::Position::one_off(),
        look: 1,
        template: &template,
        args: BTreeMap::from([("job".to_string(), "checkout".to_string())]),
        stable: "version=\"v1\"".parse().unwrap(),
        canary: "version=\"v2\"".parse().unwrap(),
        window,
        baseline: analysis::Baseline::Concurrent,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (report, data) = runtime
        .block_on(analysis::run_with_data(&source, &request, 4))
        .unwrap();
    (template, report, data)
}

/// A one-judgement document with charts.
fn charted<'a>(
    template: &'a ReleaseAnalysis,
    report: &'a Report,
    data: &'a [MetricData],
) -> Document<'a> {
    single(report, Some(ChartData { template, data }))
}

/// Every `<svg ...>...</svg>` element of a page.
fn svgs(page: &str) -> Vec<&str> {
    page.match_indices("<svg ")
        .filter_map(|(i, _)| page[i..].find("</svg>").map(|j| &page[i..i + j + 6]))
        .collect()
}

fn charts_of<'a>(page: &'a str, metric: &str) -> Vec<&'a str> {
    let attr = format!("data-metric=\"{}\"", text::escape(metric));
    svgs(page)
        .into_iter()
        .filter(|s| s.contains(&attr))
        .collect()
}

#[test]
fn user_text_is_escaped() {
    assert_eq!(
        text::escape(EVIL),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
    );
    let (template, report, data) = judged(true, 1);
    let page = html(&charted(&template, &report, &data));
    assert!(!page.contains("<script"), "unescaped metric name");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    // The name's charts are still found by their escaped attribute.
    assert_eq!(charts_of(&page, EVIL).len(), 2);
    let md = markdown_doc(&single(&report, None));
    assert!(md.contains("alert"));
}

#[test]
fn html_and_markdown_carry_every_metric_and_the_verdict() {
    let (template, report, data) = judged(false, 1);
    let doc = charted(&template, &report, &data);
    let page = html(&doc);
    let md = markdown_doc(&doc);
    let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    let verdict = json["verdict"].as_str().unwrap();
    assert_eq!(verdict, report.verdict.as_str());
    assert!(page.contains(&format!("data-verdict=\"{verdict}\"")));
    assert!(page.contains(&format!(
        "<span class=\"badge {verdict}\">{}</span>",
        verdict.to_uppercase()
    )));
    let score = format!("score {:.0}/100", json["score"].as_f64().unwrap());
    assert!(page.contains(&score), "{score}");
    assert!(
        md.starts_with(&format!("**vigil: {}** ({score})", verdict.to_uppercase())),
        "{md}"
    );
    for m in json["metrics"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(
            page.contains(&format!("<tr data-metric=\"{name}\">")),
            "{name}"
        );
        assert!(md.contains(&format!("| {name}")), "{name}");
        if let Some(p) = m["p_value"].as_f64() {
            let text = p_text(Some(p));
            let cell = format!("<td class=\"num\">{}</td>", text::escape(&text));
            assert!(page.contains(&cell), "{name}: {text}");
            assert!(md.contains(&format!("| {text} |")), "{name}: {text}");
        }
    }
    for r in &report.reasons {
        assert!(md.contains(r.as_str()) || md.contains(&escape_md(r)), "{r}");
    }
}

#[test]
fn every_metric_has_its_charts_with_plotted_elements() {
    let (template, report, data) = judged(false, 1);
    let page = html(&charted(&template, &report, &data));
    for spec in &template.spec.metrics {
        let charts = charts_of(&page, &spec.name);
        let expected: &[&str] = match spec.kind {
            crate::template::MetricType::Ratio => &["time", "interval"],
            crate::template::MetricType::Histogram => &["time", "distribution"],
            _ => &["time"],
        };
        assert_eq!(charts.len(), expected.len(), "{}", spec.name);
        for (svg, kind) in charts.iter().zip(expected) {
            assert!(svg.contains(&format!("data-chart=\"{kind}\"")), "{svg}");
            assert!(svg.contains("role=\"img\"") && svg.contains("<title>"));
            assert!(svg.contains("viewBox=") && svg.contains("class=\"chart\""));
            assert!(
                svg.contains("class=\"data "),
                "{} {kind}: nothing plotted",
                spec.name
            );
            assert!(!svg.contains("no data"), "{} {kind}", spec.name);
            assert!(!svg.contains("NaN"), "{} {kind}", spec.name);
        }
    }
    // The histogram's distribution has one bar per bucket and version (11 + +Inf).
    let distribution = charts_of(&page, "latency")
        .into_iter()
        .find(|s| s.contains("data-chart=\"distribution\""))
        .unwrap();
    assert_eq!(
        distribution
            .matches("<rect class=\"data bar stable\"")
            .count(),
        12
    );
    assert_eq!(
        distribution
            .matches("<rect class=\"data bar canary\"")
            .count(),
        12
    );
    assert!(distribution.contains(">+Inf</text>"));
    // Both versions' lines on the time charts; the threshold's bound is drawn.
    let cpu = charts_of(&page, "cpu");
    assert!(cpu[0].contains("data line stable") && cpu[0].contains("data line canary"));
    let slo = charts_of(&page, "success-rate-slo");
    assert!(slo[0].contains("data bound") && !slo[0].contains("data line stable"));
}

#[test]
fn marks_become_timeline_rows_and_chart_markers() {
    let (template, report, data) = judged(false, 1);
    let marks = [
        Mark {
            at: report.window.start + chrono::Duration::minutes(20),
            step: "step 1/2 (10%)".into(),
            weight: 10,
            text: "analysis <passed>".into(),
            kind: MarkKind::Advance,
        },
        Mark {
            at: report.window.start + chrono::Duration::minutes(20),
            step: "step 2/2 (50%)".into(),
            weight: 50,
            text: "step 2/2: 50% of traffic to the canary".into(),
            kind: MarkKind::Advance,
        },
        Mark {
            at: report.window.start + chrono::Duration::minutes(50),
            step: "step 2/2 (50%)".into(),
            weight: 0,
            text: "analysis failed -> abort".into(),
            kind: MarkKind::Abort,
        },
    ];
    let mut doc = charted(&template, &report, &data);
    doc.sections[0].marks = &marks;
    let page = html(&doc);
    assert!(page.contains("<tr class=\"mark-abort\">"));
    assert!(page.contains("analysis &lt;passed&gt;"));
    // The charts mark the new weight and the abort, not the analysis that only passed.
    let time = charts_of(&page, "cpu");
    assert_eq!(time[0].matches("<g class=\"mark ").count(), 2);
    assert!(time[0].contains("<g class=\"mark abort\">"));
    assert!(!time[0].contains("&lt;passed&gt;"));
    let md = markdown_doc(&doc);
    assert!(
        md.contains("| step 2/2 (50%) | 0% | analysis failed -> abort |"),
        "{md}"
    );
}

#[test]
fn long_windows_stay_small_and_missing_data_says_so() {
    let (template, report, data) = judged(false, 72);
    let page = html(&charted(&template, &report, &data));
    assert!(page.len() < 400_000, "{} bytes", page.len());
    for svg in svgs(&page) {
        for line in svg.split("<polyline").skip(1) {
            let points = line.split("points=\"").nth(1).unwrap_or("");
            let count = points.split('"').next().unwrap_or("").split(' ').count();
            assert!(count <= charts::MAX_POINTS, "{count} points");
        }
    }
    // No data at all: every chart still renders, saying so.
    let empty: Vec<MetricData> = Vec::new();
    let page = html(&charted(&template, &report, &empty));
    let time = charts_of(&page, "cpu");
    assert!(time[0].contains("no data"), "{}", time[0]);
    assert!(!page.contains("NaN"));
}

#[test]
fn a_before_after_report_names_its_baseline_window() {
    let (_, mut report, _) = judged(false, 1);
    let side_by_side = json(&report);
    assert!(!side_by_side.contains("\"baseline\""), "{side_by_side}");
    assert!(!table(&report).contains("baseline"));
    report.baseline = report.window.shifted_back(PromDuration::from_secs(86_400));
    let said = "stable from the baseline 2026-11-27T11:00:00Z to 2026-11-27T12:00:00Z, 1d earlier";
    assert!(table(&report).contains(said), "{}", table(&report));
    assert!(markdown(&report).contains(said), "{}", markdown(&report));
    assert!(html(&single(&report, None)).contains(&format!("<dt>baseline</dt><dd>{said}</dd>")));
    let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
    assert_eq!(json["baseline"]["start"], "2026-11-27T11:00:00Z");
    assert_eq!(json["baseline"]["step"], "1m");
}
