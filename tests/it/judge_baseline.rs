//! `vigil judge --baseline-before` end to end against a real Prometheus: a version judged
//! against its own past, the window just before it began or (`spec.offset`) a day earlier.

use crate::common::{
    PromServer, Regression, T_END, Version, judge_args, openmetrics_spans, root, vigil,
};
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;

const TEMPLATE: &str = "analysis-templates/http-prometheus-client.yaml";
/// When the new version began: 25 minutes before the end of the history.
const BEGAN: i64 = T_END - 1500;
const DAY: i64 = 86_400;

fn version(job: &'static str, version: &'static str, seed: u64) -> Version {
    Version {
        job,
        version,
        rps: 200.0,
        error_rate: 0.005,
        latency_median: 0.08,
        seed,
        regression: None,
    }
}

/// From BEGAN on, three times the errors.
fn worse_from_began(v: Version) -> Version {
    Version {
        regression: Some(Regression {
            at: BEGAN,
            error_rate: 3.0 * v.error_rate,
            latency_median: v.latency_median,
        }),
        ..v
    }
}

/// `vigil judge` over the window from BEGAN to the end of the history, with JSON output and
/// `--baseline-before BEGAN`.
fn judge_before(
    url: &str,
    template: &Path,
    job: &str,
    (stable, canary): (&str, &str),
) -> (std::process::Output, Value) {
    let mut args = judge_args(url, template, job, stable, canary);
    let start = args
        .iter()
        .position(|a| a == "--start")
        .expect("judge_args gives --start");
    args[start + 1] = BEGAN.to_string().into();
    args.extend(["--output", "json", "--baseline-before"].map(OsString::from));
    args.push(BEGAN.to_string().into());
    let out = vigil().args(args).output().expect("run vigil");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

fn unix(report: &Value, field: &str, end: &str) -> i64 {
    let text = report[field][end]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}.{end} in {report:#}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{field}.{end} {text:?}: {e}"))
        .timestamp()
}

fn error_rate(report: &Value) -> &Value {
    report["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "error-rate"))
        .unwrap_or_else(|| panic!("no error-rate in {report:#}"))
}

fn explain(out: &std::process::Output, report: &Value) -> String {
    format!(
        "{report:#}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_version_is_judged_against_the_window_before_it_began() {
    // One selector per service over the whole hour, as after a promotion: healthy until
    // BEGAN, then either three times the errors or unchanged.
    let prom = PromServer::start(&openmetrics_spans(&[(
        T_END,
        &[
            worse_from_began(version("shop", "v1", 1)),
            version("calm", "v1", 2),
        ],
    )]));
    let template = root().join(TEMPLATE);
    let same = ("version=\"v1\"", "version=\"v1\"");

    let (out, report) = judge_before(&prom.url, &template, "shop", same);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out, &report));
    assert_eq!(report["verdict"], "fail");
    let m = error_rate(&report);
    assert_eq!(m["outcome"], "high", "{m:#}");
    let estimate = m["estimate"].as_f64().unwrap();
    assert!(
        (2.0..4.0).contains(&estimate),
        "x3 errors estimated as {estimate}"
    );
    // The stable side is the 25 minutes before BEGAN, reported on the window's steps.
    assert_eq!(unix(&report, "window", "start"), BEGAN);
    assert_eq!(unix(&report, "baseline", "start"), BEGAN - 1500);
    assert_eq!(unix(&report, "baseline", "end"), BEGAN);
    let (stable_n, canary_n) = (
        m["stable"]["n"].as_f64().unwrap(),
        m["canary"]["n"].as_f64().unwrap(),
    );
    assert!(
        (stable_n / canary_n - 1.0).abs() < 0.05,
        "both sides are 25 minutes at 200/s: {stable_n} and {canary_n}"
    );

    let (out, report) = judge_before(&prom.url, &template, "calm", same);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out, &report));
    assert_eq!(report["verdict"], "pass");
    for m in report["metrics"].as_array().unwrap() {
        assert_eq!(m["outcome"], "pass", "{m:#}");
    }

    // Side by side, one selector for both versions is refused as before.
    let out = vigil()
        .args(judge_args(&prom.url, &template, "calm", same.0, same.1))
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("select the same series"), "{stderr}");
}

#[test]
fn an_offset_compares_with_the_same_hours_a_day_earlier() {
    // The old version ran a day earlier only; the new one now, unchanged or with three
    // times the errors.
    let prom = PromServer::start(&openmetrics_spans(&[
        (
            T_END - DAY,
            &[version("daily", "v1", 3), version("worse", "v1", 4)],
        ),
        (
            T_END,
            &[
                version("daily", "v2", 5),
                Version {
                    error_rate: 0.015,
                    ..version("worse", "v2", 6)
                },
            ],
        ),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join(TEMPLATE)).unwrap();
    let with_offset = |offset: &str| {
        let path = dir.path().join(format!("offset-{offset}.yaml"));
        std::fs::write(
            &path,
            text.replace("\nspec:\n", &format!("\nspec:\n  offset: {offset}\n")),
        )
        .unwrap();
        path
    };
    let day = with_offset("1d");
    let versions = ("version=\"v1\"", "version=\"v2\"");

    let (out, report) = judge_before(&prom.url, &day, "daily", versions);
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out, &report));
    assert_eq!(report["verdict"], "pass");
    assert_eq!(unix(&report, "baseline", "start"), BEGAN - DAY);
    assert_eq!(unix(&report, "baseline", "end"), T_END - DAY);
    assert!(error_rate(&report)["stable"]["n"].as_f64().unwrap() > 250_000.0);

    let (out, report) = judge_before(&prom.url, &day, "worse", versions);
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out, &report));
    assert_eq!(error_rate(&report)["outcome"], "high");

    // Without the offset the baseline is the 25 minutes before BEGAN, when v1 served
    // nothing: no evidence either way.
    let (out, report) = judge_before(&prom.url, &root().join(TEMPLATE), "daily", versions);
    assert_eq!(out.status.code(), Some(3), "{}", explain(&out, &report));
    assert_eq!(error_rate(&report)["outcome"], "nodata");
    assert_eq!(unix(&report, "baseline", "end"), BEGAN);

    // An offset that would reach into the new version's time is refused before any query,
    // naming the file, line, field and how much longer it must be.
    let (out, _) = judge_before(&prom.url, &with_offset("10m"), "daily", versions);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("offset-10m.yaml:"), "{stderr}");
    assert!(
        stderr
            .contains("spec.offset: template http-prometheus-client: offset 10m is 15m too short"),
        "{stderr}"
    );
}
