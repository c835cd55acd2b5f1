//! `vigil bench rollouts`: runs the chosen scenarios through the rollout state machine,
//! prints a table, writes JSON in the documented shape, and refuses bad input with the usage
//! status.

use crate::common::vigil;

#[test]
fn bench_rollouts_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let out = vigil()
        .args(["bench", "rollouts", "--rollouts", "20", "--seed", "3"])
        .args([
            "--scenario",
            "errors-x5",
            "--scenario",
            "aa-2000rps",
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
        "aa-2000rps",
        "errors-x5",
        "vigil",
        "kayenta",
        "flagger",
        "oracle",
        "promoted",
        "harm errors",
    ] {
        assert!(stdout.contains(word), "{word} missing from\n{stdout}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results["rollouts"], 20);
    assert_eq!(results["config"]["seed"], 3);
    let rows = results["results"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "two scenarios times four detectors");
    let find = |scenario: &str, detector: &str| {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["detector"] == detector)
            .unwrap_or_else(|| panic!("no row {scenario} {detector}"))
    };
    // Scenario order is the benchmark's, not the command line's.
    assert_eq!(rows[0]["scenario"], "aa-2000rps");
    assert_eq!(find("errors-x5", "oracle")["aborted"], 1.0);
    assert_eq!(find("errors-x5", "vigil")["aborted"], 1.0);
    assert_eq!(find("errors-x5", "vigil")["promoted"], 0.0);
    assert!(find("errors-x5", "vigil")["promote_minutes"]["median"].is_null());
    // Flagger promotes a healthy canary on its schedule: one minute per step.
    assert_eq!(
        find("aa-2000rps", "flagger")["promote_minutes"]["median"],
        3.0
    );
}

#[test]
fn bench_rollouts_takes_another_plan() {
    let out = vigil()
        .args([
            "bench",
            "rollouts",
            "--rollouts",
            "4",
            "--scenario",
            "aa-2000rps",
        ])
        .args([
            "--weights",
            "5,20,100",
            "--interval",
            "2",
            "--deadline",
            "30",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("steps [5, 20, 100]% every 2 min, deadline 30 min"),
        "{stdout}"
    );
}

#[test]
fn bench_rollouts_refuses_unknown_scenarios_and_bad_plans() {
    let run = |args: &[&str]| {
        let out = vigil()
            .args(["bench", "rollouts", "--rollouts", "1"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stderr) = run(&["--scenario", "nope"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("unknown scenario \"nope\"") && stderr.contains("aa-20rps"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--weights", "10,150"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--weights") && stderr.contains("150"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--beta", "0.7"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--beta"), "{stderr}");
}
