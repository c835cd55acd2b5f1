//! `vigil judge` end to end against a real Prometheus loaded with synthetic history.

use crate::common::{self, PromServer, T_END, Version, judge, openmetrics};
use serde_json::Value;

const TEMPLATE: &str = "analysis-templates/http-prometheus-client.yaml";

fn v(
    job: &'static str,
    version: &'static str,
    rps: f64,
    error_rate: f64,
    latency: f64,
    seed: u64,
) -> Version {
    Version {
        job,
        version,
        rps,
        error_rate,
        latency_median: latency,
        seed,
        regression: None,
    }
}

/// Stable gets 90% of the traffic and the canary 10%: 200 requests per second in all, so an
/// unchanged canary can be shown within the template's tolerances in the 50-minute window.
fn history() -> String {
    openmetrics(&[
        // checkout: the canary's error rate is x5.
        v("checkout", "v1", 180.0, 0.005, 0.08, 1),
        v("checkout", "v2", 20.0, 0.025, 0.08, 2),
        // search: identical versions.
        v("search", "v1", 180.0, 0.005, 0.08, 3),
        v("search", "v2", 20.0, 0.005, 0.08, 4),
        // payments: the canary's median latency is x2, errors unchanged.
        v("payments", "v1", 180.0, 0.005, 0.08, 5),
        v("payments", "v2", 20.0, 0.005, 0.16, 6),
        // quiet: the canary receives no traffic at all.
        v("quiet", "v1", 180.0, 0.005, 0.08, 7),
        // sparse: too little traffic to show anything either way.
        v("sparse", "v1", 9.0, 0.005, 0.08, 8),
        v("sparse", "v2", 0.2, 0.005, 0.08, 9),
    ])
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no metric {name} in {report:#}"))
}

/// Starts a Prometheus with the history, judges `job` with JSON output, and parses it.
fn judged_json(job: &str) -> (std::process::Output, Value) {
    let prom = PromServer::start(&history());
    let out = judge(
        &prom.url,
        TEMPLATE,
        job,
        STABLE,
        CANARY,
        &["--output", "json"],
    );
    let report = json_of(&out);
    (out, report)
}

const STABLE: &str = "version=\"v1\"";
const CANARY: &str = "version=\"v2\"";

#[test]
fn error_rate_regression_fails() {
    let prom = PromServer::start(&history());
    let out = judge(
        &prom.url,
        TEMPLATE,
        "checkout",
        STABLE,
        CANARY,
        &["--output", "json"],
    );
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["score"], 0.0);
    let m = metric(&report, "error-rate");
    assert_eq!(m["outcome"], "high", "{m:#}");
    let estimate = m["estimate"].as_f64().unwrap();
    assert!(
        (2.0..7.0).contains(&estimate),
        "x5 error rate estimated as {estimate}"
    );
    let ci = m["ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() > 0.0 && ci[1].as_f64().unwrap() > estimate);
    assert!(m["p_value"].as_f64().unwrap() < 1e-6);
    assert!(m["stable"]["n"].as_f64().unwrap() > 100_000.0);
    assert!(m["canary"]["n"].as_f64().unwrap() > 10_000.0);
    let reason = m["reason"].as_str().unwrap();
    assert!(
        reason.contains("canary error rate") && reason.contains("tolerance"),
        "{reason}"
    );
    assert_eq!(metric(&report, "latency")["outcome"], "pass");
    // The table output says the same in words.
    let out = judge(&prom.url, TEMPLATE, "checkout", STABLE, CANARY, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL") && text.contains("error-rate"),
        "{text}"
    );
}

#[test]
fn latency_histogram_regression_fails() {
    let (out, report) = judged_json("payments");
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let m = metric(&report, "latency");
    assert_eq!(m["outcome"], "high", "{m:#}");
    assert!(
        m["fixed_sample"]["test"]
            .as_str()
            .unwrap()
            .starts_with("chi-square"),
        "{m:#}"
    );
    assert!(m["estimate"].as_f64().unwrap() > 0.5, "{m:#}");
    assert!(m["p_value"].as_f64().unwrap() < 1e-6);
    assert_eq!(metric(&report, "error-rate")["outcome"], "pass");
    // Not critical, but weighted 2 of 5: the score falls below the marginal score.
    assert_eq!(report["verdict"], "fail");
}

#[test]
fn identical_versions_pass() {
    let prom = PromServer::start(&history());
    let report_file = tempfile::NamedTempFile::with_suffix(".md").unwrap();
    let out = judge(
        &prom.url,
        TEMPLATE,
        "search",
        STABLE,
        CANARY,
        &[
            "--output",
            "json",
            "--report",
            report_file.path().to_str().unwrap(),
        ],
    );
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["score"], 100.0);
    for m in report["metrics"].as_array().unwrap() {
        assert_eq!(m["outcome"], "pass", "{m:#}");
    }
    assert_eq!(report["window"]["step"], "1m");
    let markdown = std::fs::read_to_string(report_file.path()).unwrap();
    assert!(
        markdown.contains("| error-rate (critical) | pass |"),
        "{markdown}"
    );
}

#[test]
fn no_canary_traffic_is_inconclusive() {
    let (out, report) = judged_json("quiet");
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["verdict"], "inconclusive");
    let m = metric(&report, "error-rate");
    assert_eq!(m["outcome"], "nodata");
    let reason = m["reason"].as_str().unwrap();
    assert!(reason.contains("no canary requests"), "{reason}");
    assert!(reason.contains("minRequests"), "{reason}");
}

#[test]
fn unreachable_prometheus_exits_4() {
    let port = common::free_port();
    let out = judge(
        &format!("http://127.0.0.1:{port}"),
        TEMPLATE,
        "search",
        STABLE,
        CANARY,
        &["--retries", "0"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("cannot connect to"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(
        stderr.contains("template http-prometheus-client, metric error-rate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("query: sum(increase(http_requests_total"),
        "{stderr}"
    );
}

#[test]
fn promql_error_shows_prometheus_message() {
    let prom = PromServer::start(&history());
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("broken.yaml");
    std::fs::write(
        &template,
        r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: broken}
spec:
  args: [{name: job}]
  metrics:
    - name: cpu
      type: series
      query: sum(rate(http_requests_total{job="{{ args.job }}", {{ selector }}}[{{ interval }}]) by (
"#,
    )
    .unwrap();
    let out = judge(
        &prom.url,
        template.to_str().unwrap(),
        "search",
        STABLE,
        CANARY,
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("Prometheus rejected the query (bad_data, HTTP 400)"),
        "{stderr}"
    );
    assert!(stderr.contains("parse error"), "{stderr}");
    assert!(stderr.contains("template broken, metric cpu"), "{stderr}");
}

#[test]
fn quote_in_argument_cannot_widen_the_query() {
    let prom = PromServer::start(&history());
    // Unescaped, this value would close the job matcher and select every version.
    let evil = r#"search", version=~".+"#;
    let out = judge(
        &prom.url,
        TEMPLATE,
        evil,
        STABLE,
        CANARY,
        &["--output", "json"],
    );
    let report = json_of(&out);
    let m = metric(&report, "error-rate");
    let query = m["queries"]["canary"]["total"].as_str().unwrap();
    assert!(
        query.contains(r#"job="search\", version=~\".+""#),
        "{query}"
    );
    // The escaped value matches no job, so there is no data rather than a widened match.
    assert_eq!(m["outcome"], "nodata", "{m:#}");
    assert_eq!(m["canary"]["n"], 0.0);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn instant_and_range_queries_with_special_values() {
    use vigil::source::prometheus::{Prometheus, PrometheusConfig};
    let prom = PromServer::start(&history());
    let client = Prometheus::new(PrometheusConfig::new(&prom.url)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let at = chrono::DateTime::from_timestamp(T_END, 0).unwrap();
    let result = rt
        .block_on(client.query_instant(r#"sum(http_requests_total{job="search"}) / 0"#, at))
        .unwrap();
    assert_eq!(result.series.len(), 1);
    assert_eq!(result.series[0].points[0].1, f64::INFINITY);
    let result = rt.block_on(client.query_instant("0/0", at)).unwrap();
    assert!(result.series[0].points[0].1.is_nan(), "scalar NaN");
    // A long query goes by POST.
    let long = format!(
        "sum(http_requests_total{{job=\"search\"}}){}",
        " + 0".repeat(600)
    );
    let result = rt.block_on(client.query_instant(&long, at)).unwrap();
    assert!(result.series[0].points[0].1 > 0.0);
    let start = at - chrono::Duration::minutes(10);
    let result = rt
        .block_on(client.query_range_raw(
            r#"sum by (version) (increase(http_requests_total{job="search"}[1m]))"#,
            start,
            at,
            std::time::Duration::from_secs(60),
        ))
        .unwrap();
    assert_eq!(result.series.len(), 2);
    assert!(result.series.iter().all(|s| s.points.len() == 11));
}

#[test]
fn too_little_evidence_is_nodata_with_how_much_more() {
    let prom = PromServer::start(&history());
    // 10 requests per second and a 0.5% error rate: about 15 canary errors in the window,
    // too few to show that the canary is within the 50% tolerance, or that it is not.
    let out = judge(
        &prom.url,
        TEMPLATE,
        "sparse",
        STABLE,
        CANARY,
        &["--output", "json"],
    );
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(report["verdict"], "inconclusive");
    let m = metric(&report, "error-rate");
    assert_eq!(m["outcome"], "nodata", "{m:#}");
    let reason = m["reason"].as_str().unwrap();
    assert!(reason.contains("not yet enough evidence"), "{reason}");
    assert!(
        reason.contains("more requests should settle it"),
        "{reason}"
    );
    assert!(m["e_value"].as_f64().unwrap() < 100.0, "{m:#}");
}

#[test]
fn regression_reports_the_evidence_and_when_it_was_shown() {
    let (_, report) = judged_json("checkout");
    let m = metric(&report, "error-rate");
    assert!(m["e_value"].as_f64().unwrap() >= 100.0, "{m:#}");
    assert!(
        m["test"].as_str().unwrap().contains("anytime-valid"),
        "{m:#}"
    );
    let reason = m["reason"].as_str().unwrap();
    assert!(
        reason.contains("99% CS") && reason.contains("shown at step"),
        "{reason}"
    );
}
