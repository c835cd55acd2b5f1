//! The HTML and Markdown reports of a simulated judgement (the demo template, a regressed
//! canary): structure and numbers against the JSON, and the page in headless Chromium
//! (no console errors or CSP violations, every chart drawn, a screenshot saved to
//! `target/test-artifacts/report.png`, next to the page `report.html`).

use crate::common::browser::{
    artifacts_dir, assert_clean, chart_svgs, check_report, console_problems,
};
use crate::common::{PromServer, Version, judge, openmetrics};
use chrono::{TimeZone, Utc};
use std::collections::BTreeMap;
use vigil::analysis::{self, AnalysisRequest};
use vigil::data::Window;
use vigil::judge::{MetricData, Report};
use vigil::report::{self, ChartData};
use vigil::source::simulated::{SimulatedSource, VersionModel};
use vigil::template::units::PromDuration;
use vigil::template::{MetricType, ReleaseAnalysis, load};

const DEMO: &str = include_str!("../../analysis-templates/demo.yaml");

/// The demo's regression scenario: the canary has x4 the error rate and +60% latency.
fn judged() -> (ReleaseAnalysis, Report, Vec<MetricData>) {
    let template = load::parse(DEMO, "analysis-templates/demo.yaml").expect("demo template");
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
    let source = SimulatedSource::new(&template, stable, canary, 1);
    let end = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    let window = Window::new(
        end - chrono::Duration::minutes(60),
        end,
        PromDuration::from_secs(60),
    )
    .unwrap();
    let request = AnalysisRequest {
        position: vigil::judge::Position::one_off(),
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
) -> report::Document<'a> {
    report::single(report, Some(ChartData { template, data }))
}

fn expected_charts(kind: MetricType) -> usize {
    match kind {
        MetricType::Ratio | MetricType::Histogram => 2,
        MetricType::Series | MetricType::Threshold => 1,
    }
}

#[test]
fn html_and_markdown_match_the_json() {
    let (template, report, data) = judged();
    let doc = charted(&template, &report, &data);
    let page = report::html(&doc);
    let md = report::markdown_doc(&doc);
    let json: serde_json::Value = serde_json::from_str(&report::json(&report)).unwrap();
    let verdict = json["verdict"].as_str().unwrap();
    assert_eq!(verdict, "fail", "the regression fails");
    assert!(page.contains(&format!("data-verdict=\"{verdict}\"")));
    assert!(page.contains(&format!(">{}</span>", verdict.to_uppercase())));
    let score = format!("score {:.0}/100", json["score"].as_f64().unwrap());
    assert!(page.contains(&score));
    assert!(
        md.starts_with(&format!("**vigil: {}** ({score})", verdict.to_uppercase())),
        "{md}"
    );
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(page.contains("Content-Security-Policy"));
    let charts = chart_svgs(&page);
    for m in json["metrics"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(
            page.contains(&format!("<tr data-metric=\"{name}\">")),
            "{name}"
        );
        assert!(md.contains(&format!("| {name}")), "{name}");
        let kind = template
            .spec
            .metrics
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .kind;
        let mine: Vec<usize> = charts
            .iter()
            .filter(|(metric, _)| metric == name)
            .map(|(_, plotted)| *plotted)
            .collect();
        assert_eq!(mine.len(), expected_charts(kind), "{name}: {mine:?}");
        assert!(
            mine.iter().all(|p| *p > 0),
            "{name}: an empty chart: {mine:?}"
        );
    }
}

#[test]
fn the_checker_sees_a_blocked_fetch() {
    // What Chromium 1xx prints for a fetch that the CSP blocks.
    let log = "[29623:29623:1128/094210.167236:INFO:CONSOLE:0] \"Loading the image \
               'http://example.invalid/x.png' violates the following Content Security Policy \
               directive: \"img-src data:\". The action has been blocked.\", source: file:///tmp/bad.html (0)\n\
               [29623:29652:1128/094208.709680:ERROR:dbus/bus.cc:405] Failed to connect to the bus";
    assert_eq!(console_problems(log).len(), 1);
    // And the real thing: a page with an external image and an inline script.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"><title>bad</title>\
         </head><body><img src=\"http://example.invalid/x.png\"><script>nope()</script></body></html>",
    )
    .unwrap();
    let check = check_report(&bad, &dir.path().join("bad.png"));
    assert!(
        check.console.iter().any(|l| l.contains("example.invalid")),
        "the blocked image was not reported: {:?}",
        check.console
    );
}

#[test]
fn the_page_renders_cleanly_in_chromium() {
    let (template, report, data) = judged();
    let doc = charted(&template, &report, &data);
    // The page is kept next to its screenshot, for a human to open.
    std::fs::create_dir_all(artifacts_dir()).unwrap();
    let page = artifacts_dir().join("report.html");
    std::fs::write(&page, report::html(&doc)).unwrap();
    let screenshot = artifacts_dir().join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = check_report(&page, &screenshot);
    let expected: usize = template
        .spec
        .metrics
        .iter()
        .map(|m| expected_charts(m.kind))
        .sum();
    assert_clean(&check, expected);
}

/// `vigil judge --report FILE.html` (and `.md`) against a real Prometheus: the files are the
/// charted document and the Markdown document, with the verdict of the JSON on stdout.
#[test]
fn judge_writes_html_and_markdown_reports() {
    let version = |version, error_rate, seed| Version {
        job: "checkout",
        version,
        rps: 180.0,
        error_rate,
        latency_median: 0.08,
        seed,
        regression: None,
    };
    let prom = PromServer::start(&openmetrics(&[
        version("v1", 0.005, 1),
        Version {
            rps: 20.0,
            ..version("v2", 0.025, 2)
        },
    ]));
    let dir = tempfile::tempdir().unwrap();
    for file in ["report.html", "report.md"] {
        let path = dir.path().join(file);
        let out = judge(
            &prom.url,
            "analysis-templates/http-prometheus-client.yaml",
            "checkout",
            "version=\"v1\"",
            "version=\"v2\"",
            &["--output", "json", "--report", path.to_str().unwrap()],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        let verdict = json["verdict"].as_str().unwrap();
        assert_eq!(verdict, "fail", "x5 errors fail");
        let text = std::fs::read_to_string(&path).unwrap();
        let names: Vec<&str> = json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        if file.ends_with(".html") {
            assert!(text.starts_with("<!DOCTYPE html>"));
            assert!(text.contains(&format!("data-verdict=\"{verdict}\"")));
            let charts = chart_svgs(&text);
            for name in &names {
                let mine: Vec<usize> = charts
                    .iter()
                    .filter(|(m, _)| m == name)
                    .map(|(_, n)| *n)
                    .collect();
                assert_eq!(mine.len(), 2, "{name}: ratio and histogram have two charts");
                assert!(mine.iter().all(|n| *n > 0), "{name}: {mine:?}");
            }
        } else {
            assert!(text.starts_with("**vigil: FAIL**"), "{text}");
            for name in &names {
                assert!(text.contains(&format!("| {name}")), "{name}: {text}");
            }
        }
    }
}
