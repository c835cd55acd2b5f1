//! `vigil replay` against a real Prometheus holding a release whose canary regresses at a
//! known time: the replay must abort at the first analysis after that time, and never
//! before it.

use crate::common::browser::{artifacts_dir, assert_clean, check_report};
use crate::common::{self, PromServer, Regression, T_END, Version, openmetrics, root, vigil};
use serde_json::Value;

/// The release starts 50 minutes before the end of the stored history.
const FROM: i64 = T_END - 3000;
/// The canary regresses 25 minutes into the release.
const REGRESSION: i64 = FROM + 1500;
/// The analysis interval.
const INTERVAL: i64 = 60;

/// Four weight steps of at least ten minutes each, judged every minute.
const CANARY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: Release
metadata:
  name: checkout
  namespace: shop
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  service: {name: checkout, port: 80}
  routing: {nginx: {ingress: checkout}}
  steps:
    - {weight: 10, minDuration: 10m}
    - {weight: 20, minDuration: 10m}
    - {weight: 50, minDuration: 10m}
    - {weight: 100, minDuration: 10m}
  analysis:
    templates: [{name: http-prometheus-client}]
    args: [{name: job, value: checkout}]
    interval: 1m
    # The recorded history gives the canary a fixed share (400 of 2,200 req/s), whatever
    # the weight: a split check would rightly hold the rollout.
    checkSplit: false
  progressDeadline: 1h
"#;

fn version(name: &'static str, rps: f64, seed: u64, regression: Option<Regression>) -> Version {
    Version {
        job: "checkout",
        version: name,
        rps,
        error_rate: 0.005,
        latency_median: 0.08,
        seed,
        regression,
    }
}

/// Runs the replay over the history; returns the parsed JSON, stdout of a table run and the
/// report files' text.
fn replay(regressed: bool) -> (Value, String, String, String) {
    replay_release(CANARY, regressed)
}

/// [`replay`] of another Release.
fn replay_release(release: &str, regressed: bool) -> (Value, String, String, String) {
    let regression = regressed.then_some(Regression {
        at: REGRESSION,
        error_rate: 0.04,
        latency_median: 0.16,
    });
    replay_history(
        release,
        &[
            version("v1", 1800.0, 1, None),
            version("v2", 400.0, 2, regression),
        ],
        if regressed { 1 } else { 0 },
    )
}

/// [`replay`] of `release` over the history of `versions`, which exits with `status`.
fn replay_history(
    release: &str,
    versions: &[Version],
    status: i32,
) -> (Value, String, String, String) {
    let prom = PromServer::start(&openmetrics(versions));
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary.yaml");
    std::fs::write(&canary, release).unwrap();
    let html = dir.path().join("replay.html");
    let md = dir.path().join("replay.md");
    let run = |output: &str, reports: bool| {
        let mut cmd = vigil();
        cmd.arg("replay")
            .arg("--release")
            .arg(&canary)
            .arg("--template")
            .arg(root().join("analysis-templates/http-prometheus-client.yaml"))
            .args(["--prometheus", &prom.url])
            .args(["--stable", r#"version="v1""#])
            .args(["--canary-matchers", r#"version="v2""#])
            .args(["--from", &FROM.to_string(), "--to", &T_END.to_string()])
            .args(["--output", output]);
        if reports {
            cmd.arg("--report").arg(&html).arg("--report").arg(&md);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(status),
            "exit status\nstdout:\n{stdout}\nstderr:\n{stderr}\nprometheus:\n{}",
            prom.log()
        );
        stdout
    };
    let json: Value =
        serde_json::from_str(&run("json", false)).expect("stdout is one JSON document");
    let table = run("table", true);
    let html = std::fs::read_to_string(&html).unwrap();
    let md = std::fs::read_to_string(&md).unwrap();
    (json, table, html, md)
}

fn unix(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp()
}

#[test]
fn a_regression_at_a_known_time_aborts_in_the_step_it_began_and_not_before() {
    let (json, table, html, md) = replay(true);
    let context = format!("{json:#}");
    assert_eq!(json["end"], "aborted", "{context}");
    let analyses = json["analyses"].as_array().unwrap();
    let (before, after): (Vec<&Value>, Vec<&Value>) =
        analyses.iter().partition(|a| unix(&a["at"]) <= REGRESSION);
    assert!(
        before.len() >= 20,
        "analyses ran before the regression\n{context}"
    );
    for a in &before {
        assert_ne!(
            a["verdict"], "fail",
            "no failure before the regression\n{context}"
        );
    }
    // The background analysis judges the whole rollout so far, so the regression has to
    // outweigh 25 healthy minutes: it shows within a few intervals. The first failed
    // analysis ends the rollout.
    let failed: Vec<&&Value> = after.iter().filter(|a| a["verdict"] == "fail").collect();
    assert_eq!(failed.len(), 1, "one failed analysis ends it\n{context}");
    let at = unix(&failed[0]["at"]);
    assert!(
        at > REGRESSION && at <= REGRESSION + 3 * INTERVAL,
        "the abort comes within three intervals after the regression ({at} vs {REGRESSION})\n{context}"
    );
    assert_eq!(after.last().unwrap()["verdict"], "fail", "{context}");
    // The rollout was in its third step (20-30 minutes in) when the canary regressed, and
    // it was aborted in that step: no step began after the regression.
    assert!(
        !json["timeline"].as_array().unwrap().iter().any(|m| {
            unix(&m["at"]) > REGRESSION && m["text"].as_str().unwrap().contains("% of traffic")
        }),
        "{context}"
    );
    let timeline = json["timeline"].as_array().unwrap();
    let abort = timeline
        .iter()
        .find(|m| m["kind"] == "abort")
        .expect("an abort mark");
    assert_eq!(unix(&abort["at"]), at, "{context}");
    assert!(
        abort["step"]
            .as_str()
            .unwrap()
            .starts_with("step 3/4 (50%)"),
        "{context}"
    );
    assert!(
        timeline.iter().all(|m| m["weight"].as_u64().unwrap() <= 50),
        "{context}"
    );
    assert!(
        !timeline
            .iter()
            .any(|m| m["kind"] == "abort" && unix(&m["at"]) <= REGRESSION),
        "{context}"
    );
    assert_eq!(json["weight"], 0, "traffic back on stable\n{context}");
    // The terminal timeline says it in words; the reports mark it.
    assert!(
        table.contains("step 3/4 (50%) at")
            && table.contains("analysis failed (")
            && table.contains("-> abort"),
        "{table}"
    );
    assert!(
        table.contains("vigil would have aborted and rolled back at step 3/4 (50%)"),
        "{table}"
    );
    // The reports: the timeline with the abort, and the abort marked on the time charts.
    assert!(
        html.contains("analysis failed (") && html.contains("-&gt; abort"),
        "{html:.2000}"
    );
    assert!(
        html.matches("<g class=\"mark abort\">").count() >= 2,
        "the abort is marked on every time chart"
    );
    assert!(md.contains("-> abort"), "{md}");
    assert!(
        md.lines().next().unwrap_or_default().contains("aborted"),
        "{md}"
    );
    // And the page passes the browser check.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("replay.html");
    std::fs::write(&page, &html).unwrap();
    let check = check_report(&page, &artifacts_dir().join("replay-report.png"));
    // error-rate (time, interval) and latency (time, distribution).
    assert_clean(&check, 4);
}

#[test]
fn an_unchanged_canary_replays_to_promotion() {
    let (json, table, _, _) = replay(false);
    let context = format!("{json:#}");
    assert_eq!(json["end"], "promoted", "{context}");
    assert!(
        json["analyses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["verdict"] != "fail"),
        "{context}"
    );
    let weights: Vec<u64> = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .contains("% of traffic to the canary")
        })
        .map(|m| m["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [10, 20, 50, 100], "{context}");
    assert!(
        table.contains("vigil would have promoted the canary"),
        "{table}"
    );
}

#[test]
fn an_unreachable_prometheus_is_an_error_not_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary.yaml");
    std::fs::write(&canary, CANARY).unwrap();
    let port = common::free_port();
    let out = vigil()
        .arg("replay")
        // --canary: the old name of --release, still accepted.
        .arg("--canary")
        .arg(&canary)
        .arg("--template")
        .arg(root().join("analysis-templates/http-prometheus-client.yaml"))
        .args(["--prometheus", &format!("http://127.0.0.1:{port}")])
        .args(["--stable", r#"version="v1""#])
        .args(["--canary-matchers", r#"version="v2""#])
        .args(["--from", &FROM.to_string(), "--to", &T_END.to_string()])
        .args(["--output", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(
        stderr.contains("no analysis of the replay could run")
            && stderr.contains("check --prometheus")
            && stderr.contains("query: "),
        "{stderr}"
    );
}

#[test]
fn a_canary_file_is_refused_naming_whose_kind_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // vigil's kind before the rename.
        (
            CANARY.replace("kind: Release", "kind: Canary"),
            "vigil's old name for the Release",
        ),
        // Flagger's example Canary, as shipped.
        (
            std::fs::read_to_string(root().join("deploy/examples/flagger/canary.yaml")).unwrap(),
            "this is Flagger's Canary (flagger.app/v1beta1)",
        ),
    ];
    for (text, says) in cases {
        let file = dir.path().join("release.yaml");
        std::fs::write(&file, text).unwrap();
        let out = vigil()
            .arg("replay")
            .arg("--release")
            .arg(&file)
            .arg("--template")
            .arg(root().join("analysis-templates/http-prometheus-client.yaml"))
            .args(["--prometheus", "http://127.0.0.1:9"])
            .args(["--from", &FROM.to_string(), "--to", &T_END.to_string()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// A blue-green release of the same service: the preview judged, then the switch, then 30
/// minutes of post-promotion analysis before the old version goes.
const BLUE_GREEN: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: Release
metadata:
  name: checkout
  namespace: shop
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  service: {name: checkout, port: 80}
  routing: {selector: {}}
  blueGreen:
    prePromotionAnalysis: {templates: [{name: http-prometheus-client}]}
    postPromotionAnalysis: {templates: [{name: http-prometheus-client}]}
    scaleDownDelay: 30m
  analysis:
    args: [{name: job, value: checkout}]
    interval: 1m
  progressDeadline: 1h
"#;

/// The texts of the timeline's marks.
fn marks(json: &Value) -> Vec<String> {
    json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["step"].as_str().unwrap_or_default(),
                m["text"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn a_blue_green_release_replays_to_promotion_and_a_late_regression_to_a_rollback() {
    let (json, table, _, _) = replay_release(BLUE_GREEN, false);
    let context = format!("{json:#}");
    assert_eq!(json["end"], "promoted", "{context}");
    let marks = marks(&json);
    let switched = marks
        .iter()
        .position(|m| m.contains("all traffic switched to the new version"))
        .unwrap_or_else(|| panic!("a switch\n{context}"));
    assert!(
        marks[..switched]
            .iter()
            .any(|m| m.starts_with("step 1/2 (preview)")),
        "the preview was judged before the switch: {marks:#?}"
    );
    assert!(
        marks[switched].starts_with("step 2/2 (switched)"),
        "{marks:#?}"
    );
    assert!(table.contains("promoted"), "{table}");

    // The new version regresses 25 minutes in: after the switch, within the scale-down
    // delay, so the post-promotion analysis switches traffic back.
    let (json, _, _, _) = replay_release(BLUE_GREEN, true);
    let context = format!("{json:#}");
    assert_eq!(json["end"], "aborted", "{context}");
    let abort = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "abort")
        .unwrap_or_else(|| panic!("an abort\n{context}"));
    assert!(
        abort["step"]
            .as_str()
            .unwrap()
            .starts_with("step 2/2 (switched)"),
        "{context}"
    );
    let at = unix(&abort["at"]);
    assert!(
        at > REGRESSION && at <= REGRESSION + 3 * INTERVAL,
        "rolled back within three intervals of the regression ({at} vs {REGRESSION})\n{context}"
    );
    assert_eq!(
        json["weight"], 0,
        "traffic back on the old version\n{context}"
    );
}

/// The canary Release of [`CANARY`] in two steps of five minutes, then a 40-minute bake.
const BAKED: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: Release
metadata:
  name: checkout
  namespace: shop
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  service: {name: checkout, port: 80}
  routing: {nginx: {ingress: checkout}}
  steps:
    - {weight: 10, minDuration: 5m}
    - {weight: 100, minDuration: 5m}
  bake:
    duration: 40m
    templates: [{name: http-prometheus-client}]
  analysis:
    templates: [{name: http-prometheus-client}]
    args: [{name: job, value: checkout}]
    interval: 1m
    checkSplit: false
  progressDeadline: 1h
"#;

#[test]
fn a_bake_replays_to_a_rollback_at_a_late_regression_of_the_promoted_version() {
    // The stable selector's series (the stable Deployment's pods, which run the new version
    // once it is promoted, about 11 minutes in) regress 15 minutes in.
    let at = FROM + 900;
    let regression = Regression {
        at,
        error_rate: 0.04,
        latency_median: 0.16,
    };
    let (json, table, _, _) = replay_history(
        BAKED,
        &[
            version("v1", 1800.0, 1, Some(regression)),
            version("v2", 400.0, 2, None),
        ],
        1,
    );
    let context = format!("{json:#}");
    assert_eq!(json["end"], "aborted", "{context}");
    let timeline = json["timeline"].as_array().unwrap();
    let baking = timeline
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap_or_default()
                .contains("baking for 2400s")
        })
        .unwrap_or_else(|| panic!("the bake began\n{context}"));
    assert!(
        unix(&baking["at"]) < at,
        "promoted before the regression\n{context}"
    );
    let abort = timeline
        .iter()
        .find(|m| m["kind"] == "abort")
        .unwrap_or_else(|| panic!("a rollback\n{context}"));
    let rolled_back = unix(&abort["at"]);
    assert!(
        rolled_back > at && rolled_back <= at + 3 * INTERVAL,
        "rolled back within three intervals of the regression ({rolled_back} vs {at})\n{context}"
    );
    assert_eq!(abort["step"], "bake", "{context}");
    assert!(
        abort["text"]
            .as_str()
            .unwrap_or_default()
            .contains("error-rate"),
        "{context}"
    );
    for a in json["analyses"].as_array().unwrap() {
        if unix(&a["at"]) <= at {
            assert_ne!(
                a["verdict"], "fail",
                "no failure before the regression\n{context}"
            );
        }
    }
    assert!(
        table.contains("vigil would have aborted and rolled back at bake"),
        "{table}"
    );
}
