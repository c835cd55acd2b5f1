//! `vigil bench rollouts`: runs the chosen scenarios through the rollout state machine,
//! prints a table, writes JSON in the documented shape, and refuses bad input with the usage
//! status. `vigil bench controller`: runs the controller over a few Releases and reports what
//! the JSON promises (its invariants, not its timings).

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
    succeeded_saying(
        &out,
        &[
            "aa-2000rps",
            "errors-x5",
            "vigil",
            "kayenta",
            "flagger",
            "oracle",
            "promoted",
            "harm errors",
        ],
    );
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

/// Checks that `out` is a success whose standard output names every one of `words`.
fn succeeded_saying(out: &std::process::Output, words: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in words {
        assert!(stdout.contains(word), "{word} missing from\n{stdout}");
    }
}

/// `vigil` with `args`: its exit status and standard error.
fn status_and_stderr(args: &[&str]) -> (Option<i32>, String) {
    let out = vigil().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bench_rollouts_refuses_unknown_scenarios_and_bad_plans() {
    let run = |args: &[&str]| {
        status_and_stderr(&[&["bench", "rollouts", "--rollouts", "1"], args].concat())
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

#[test]
fn bench_controller_rolls_every_release_through_its_plan_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("controller.json");
    let out = vigil()
        .args(["bench", "controller", "--canaries", "20", "--minutes", "8"])
        .args(["--speed", "60", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    succeeded_saying(
        &out,
        &[
            "controller peak RSS",
            "API requests per minute",
            "reconcile latency",
            "an hour in",
        ],
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["config"]["canaries"], 20);
    assert_eq!(
        r["config"]["namespaces"], 2,
        "one namespace per 10 Releases"
    );
    assert_eq!(r["plan"]["step_seconds"], 60, "8 minutes over 8 steps");
    // Every rollout went through its plan: promoted (or, were the judge to err on a canary
    // as good as stable, aborted), none unfinished, no step skipped, entered twice or at
    // another weight.
    let rollouts = &r["rollouts"];
    let (succeeded, failed) = (
        rollouts["succeeded"].as_u64().unwrap(),
        rollouts["failed"].as_u64().unwrap(),
    );
    assert_eq!(succeeded + failed, 20, "{rollouts}");
    assert!(succeeded >= 18, "{rollouts}");
    assert_eq!(rollouts["reached_every_step"].as_u64().unwrap(), succeeded);
    for bad in ["unfinished", "skipped", "doubled", "wrong_weight"] {
        assert_eq!(rollouts[bad], 0, "{bad}: {rollouts}");
    }
    assert_eq!(rollouts["problems"], serde_json::json!([]));
    // An analysis of http-prometheus-client: errors and total of error-rate, the latency
    // histogram, each for stable and canary. Its first one fetches two points of each
    // series (the interval before the canary's traffic and the first with it): 2 x 2 ratio
    // series and 2 x 12 latency buckets.
    let analyses = &r["analyses"];
    assert!(analyses["count"].as_u64().unwrap() >= 20 * 8, "{analyses}");
    assert_eq!(analyses["at_start"]["minute"], 1, "{analyses}");
    assert_eq!(analyses["at_start"]["queries"], 6.0, "{analyses}");
    assert_eq!(analyses["at_start"]["samples"], 56.0, "{analyses}");
    assert!(analyses["at_one_hour"].is_null(), "8-minute rollouts");
    assert_eq!(
        analyses["queries"].as_u64().unwrap(),
        6 * analyses["count"].as_u64().unwrap()
    );
    // The controller's requests only (the benchmark's own carry another client name): it
    // reads, writes status, creates the canary's objects and deletes them after promotion.
    let verbs = &r["api_requests"]["by_verb"];
    for verb in ["get", "list", "update", "patch", "create", "delete"] {
        assert!(verbs[verb].as_u64().unwrap() > 0, "{verb}: {verbs}");
    }
    let total: u64 = verbs
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(r["api_requests"]["total"], total);
    let reconciles = &r["reconciles"];
    assert!(reconciles["count"].as_u64().unwrap() > 0);
    assert!(reconciles["p99_ms"].as_f64().unwrap() >= reconciles["p50_ms"].as_f64().unwrap());
    for process in ["controller", "services"] {
        let p = &r[process];
        let peak = p["peak_rss_mib"].as_f64().unwrap();
        assert!(peak > 1.0, "{process}: {p}");
        assert!(p["cpu_seconds"].as_f64().unwrap() > 0.0, "{process}: {p}");
        // The anonymous and file-backed peaks are sampled parts of what VmHWM counts.
        let (anon, file) = (
            p["peak_anon_mib"].as_f64().unwrap(),
            p["peak_file_mib"].as_f64().unwrap(),
        );
        assert!(anon > 1.0 && file > 1.0, "{process}: {p}");
        assert!(anon <= peak && file <= peak, "{process}: {p}");
    }
    // The controller's peak is counted from its start, without the benchmark's setup of
    // 20 applications before it (the machine lets a process reset its own VmHWM).
    assert_eq!(r["controller"]["peak_from"], "controller start");
    assert_eq!(r["services"]["peak_from"], "process start");
    assert!(r["duration"]["simulated_minutes"].as_f64().unwrap() >= 8.0);
}

#[test]
fn bench_controller_refuses_bad_input() {
    let run = |args: &[&str]| status_and_stderr(&[&["bench", "controller"], args].concat());
    let (code, stderr) = run(&["--speed", "0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--speed"), "{stderr}");
    let (code, stderr) = run(&["--canaries", "0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--canaries"), "{stderr}");
    let (code, stderr) = run(&["--minutes", "5"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--minutes"), "{stderr}");
}
