//! `vigil demo`, the README's first command: two whole simulated rollouts through the
//! controller's state machine and judge, with no cluster and no Prometheus, then a report.

use crate::common::browser::{artifacts_dir, assert_clean, check_report};
use crate::common::vigil;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Runs the demo with `args`, in a temporary directory; returns the exit status, stdout,
/// stderr, and the directory.
fn demo(args: &[&str]) -> (Option<i32>, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = vigil()
        .arg("demo")
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

#[test]
fn the_demo_promotes_the_healthy_canary_and_rolls_back_the_faulty_one() {
    // As the README runs it, paced for people to watch; the issue asks for it to finish
    // within a minute in CI.
    let started = Instant::now();
    let (code, stdout, stderr, dir) = demo(&[]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(60), "the demo took {took:?}");
    let report = dir.path().join("vigil-demo-report.html");
    assert!(report.is_file(), "{stdout}");
    let shown = std::fs::canonicalize(&report).unwrap();
    assert!(
        stdout.contains(&format!("Report: {}", shown.display())),
        "the demo prints the report's path\n{stdout}"
    );
    // The timeline in words: the healthy canary through 10% -> 50% -> 100%, the faulty one
    // aborted at 10%.
    let healthy = stdout
        .split("Rollout 2/2")
        .next()
        .unwrap_or_default()
        .to_string();
    for weight in ["10%", "50%", "100%"] {
        assert!(
            healthy.contains(&format!(": {weight} of traffic to the canary")),
            "{stdout}"
        );
    }
    assert!(
        healthy.contains("=> vigil would have promoted the canary"),
        "{stdout}"
    );
    let faulty = stdout.split("Rollout 2/2").nth(1).unwrap_or_default();
    assert!(
        faulty.contains("step 1/3 (10%)") && faulty.contains("analysis failed (error-rate +"),
        "{stdout}"
    );
    assert!(
        faulty.contains("=> vigil would have aborted and rolled back"),
        "{stdout}"
    );
    assert!(!faulty.contains("50% of traffic"), "{stdout}");

    // The report passes the same browser check as `vigil judge`'s: no console problems (no
    // external fetch gets past its Content-Security-Policy), every chart drawn. Both
    // rollouts are in it, with their decisions.
    std::fs::create_dir_all(artifacts_dir()).unwrap();
    let page = artifacts_dir().join("demo-report.html");
    std::fs::copy(&report, &page).unwrap();
    let screenshot = artifacts_dir().join("demo-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let check = check_report(&page, &screenshot);
    // Four metrics per rollout: four time charts, a latency distribution and an error-rate
    // interval each.
    assert_clean(&check, 12);
    for text in [
        "A healthy canary",
        "A faulty canary",
        "vigil would have promoted the canary",
        "vigil would have aborted and rolled back",
    ] {
        assert!(check.dom.contains(text), "the page shows {text:?}");
    }
}

#[test]
fn the_demo_as_json_is_one_document_with_both_rollouts() {
    let (code, stdout, stderr, dir) = demo(&["--speed", "0", "--output", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    assert_eq!(json["schema"], "vigil.dev/demo/v1");
    let rollouts = json["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 2);
    assert_eq!(rollouts[0]["scenario"], "healthy");
    assert_eq!(rollouts[0]["end"], "promoted");
    assert_eq!(rollouts[1]["scenario"], "faulty");
    assert_eq!(rollouts[1]["end"], "aborted");
    // The faulty canary's deciding analysis failed on its critical error rate.
    let last = rollouts[1]["analyses"].as_array().unwrap().last().unwrap();
    assert_eq!(last["verdict"], "fail");
    let error_rate = &last["reports"][0]["metrics"][0];
    assert_eq!(error_rate["name"], "error-rate");
    assert_eq!(error_rate["outcome"], "high");
    assert!(dir.path().join("vigil-demo-report.html").is_file());
}

/// The healthy canary's `cpu` (a `series` metric, CPU seconds per request) holds the first
/// step only as long as `minPoints` (6 points, one per 1-minute analysis) asks: its
/// interval is an anytime-valid confidence sequence at the template's own 99%, and it
/// passes at the first look that has the points. (With a Mann-Whitney test at a level
/// shrinking with every look it showed "100% CI" and held the canary at 10% for 32
/// simulated minutes.)
#[test]
fn the_healthy_canarys_cpu_passes_as_soon_as_it_has_its_points() {
    let (code, stdout, stderr, _dir) = demo(&[
        "--speed",
        "0",
        "--scenario",
        "healthy",
        "--output",
        "json",
        "--report",
        "healthy.md",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let rollout = &json["rollouts"][0];
    assert_eq!(rollout["end"], "promoted", "{rollout:#}");
    let first_step: Vec<&Value> = rollout["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["step"] == "step 1/3 (10%)")
        .collect();
    let cpu = |a: &Value| -> Value {
        a["reports"][0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "cpu")
            .cloned()
            .unwrap()
    };
    let passed = first_step
        .iter()
        .position(|a| a["verdict"] == "pass")
        .expect("the first step passes");
    for a in &first_step[..passed] {
        let m = cpu(a);
        if m["outcome"] == "nodata" {
            let reason = m["reason"].as_str().unwrap();
            assert!(
                reason.contains("(minPoints)"),
                "held by more than minPoints: {reason}"
            );
        }
    }
    let m = cpu(first_step[passed]);
    assert_eq!(m["outcome"], "pass", "{m:#}");
    assert_eq!(
        m["canary"]["n"], 6.0,
        "cpu passes with its first 6 points: {m:#}"
    );
    let reason = m["reason"].as_str().unwrap();
    assert!(reason.contains("99% CS"), "{reason}");
    // 10:00:05, when the canary got 10%, to the passing look: 6 minutes, not 32.
    let at = first_step[passed]["at"].as_str().unwrap();
    assert_eq!(at, "2026-11-28T10:06:05Z");
}

#[test]
fn a_canary_without_traffic_is_never_promoted() {
    let (code, stdout, stderr, _dir) = demo(&[
        "--speed",
        "0",
        "--scenario",
        "no-traffic",
        "--output",
        "json",
        "--report",
        "nt.md",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let rollout = &json["rollouts"][0];
    assert_eq!(rollout["end"], "unfinished", "{rollout:#}");
    let analyses = rollout["analyses"].as_array().unwrap();
    assert!(analyses.len() > 10);
    assert!(analyses.iter().all(|a| a["verdict"] == "inconclusive"));
    assert_eq!(rollout["weight"], 10, "held at the first step");
}

#[test]
fn a_report_file_of_another_kind_is_refused_before_the_work() {
    let (code, stdout, stderr, _dir) = demo(&["--report", "demo.txt"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(
        stderr.contains("--report demo.txt: give a file ending in .html or .md"),
        "{stderr}"
    );
}

#[test]
fn the_blue_green_demo_switches_a_healthy_preview_and_stops_a_faulty_one_before_any_user() {
    let (code, stdout, stderr, _dir) = demo(&[
        "--strategy",
        "blue-green",
        "--speed",
        "0",
        "--output",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).expect("one JSON document");
    let rollouts = doc["rollouts"].as_array().unwrap();
    let texts = |r: &Value| -> Vec<String> {
        r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{} | {} | {}", m["step"], m["weight"], m["text"]))
            .collect()
    };
    let healthy = &rollouts[0];
    assert_eq!(healthy["end"], "promoted", "{healthy:#}");
    let marks = texts(healthy);
    let switch = marks
        .iter()
        .position(|m| m.contains("all traffic switched"))
        .unwrap_or_else(|| panic!("{marks:#?}"));
    assert!(
        marks[..switch]
            .iter()
            .any(|m| m.contains("(preview)") && m.contains("analysis passed")),
        "the preview passed before the switch: {marks:#?}"
    );
    assert!(
        marks[switch + 1..]
            .iter()
            .any(|m| m.contains("(switched)") && m.contains("analysis passed")),
        "the post-promotion analysis passed after it: {marks:#?}"
    );
    let faulty = &rollouts[1];
    assert_eq!(faulty["end"], "aborted", "{faulty:#}");
    assert!(
        faulty["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["weight"] == 0),
        "no user reached the faulty version: {:#?}",
        texts(faulty)
    );
}
