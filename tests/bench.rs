//! `vigil bench detection`: runs the chosen scenarios, prints a table, writes JSON, and
//! refuses unknown scenarios with the usage status.

mod common;

use common::vigil;

#[test]
fn bench_detection_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = vigil()
        .args(["bench", "detection", "--rollouts", "20", "--seed", "3"])
        .args([
            "--scenario",
            "errors-x5",
            "--scenario",
            "aa-low",
            "--threads",
            "2",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in [
        "aa-low",
        "errors-x5",
        "vigil (sequential)",
        "kayenta",
        "flagger",
        "oracle-sprt",
    ] {
        assert!(stdout.contains(word), "{word} missing from\n{stdout}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results["config"]["rollouts"], 20);
    assert_eq!(results["config"]["seed"], 3);
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "two scenarios times four detectors");
    assert_eq!(rows[0]["kind"], "aa");
    let oracle_x5 = rows
        .iter()
        .find(|r| r["scenario"] == "errors-x5" && r["detector"] == "oracle-sprt")
        .unwrap();
    assert_eq!(oracle_x5["power"], 1.0);
    let vigil_x5 = rows
        .iter()
        .find(|r| r["scenario"] == "errors-x5" && r["detector"] == "vigil (sequential)")
        .unwrap();
    assert_eq!(vigil_x5["power"], 1.0);
}

#[test]
fn bench_detection_refuses_unknown_scenarios() {
    let out = vigil()
        .args([
            "bench",
            "detection",
            "--rollouts",
            "1",
            "--scenario",
            "nope",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown scenario \"nope\"") && stderr.contains("aa-medium"),
        "{stderr}"
    );
}
