//! The command line as a person meets it: help with examples for every command, shell
//! completions, no colour escapes with NO_COLOR, JSON output that is only JSON, and
//! progress on stderr only. (Whether the examples parse is tested in src/cli/tests.rs.)

use std::process::{Command, Output};

fn vigil() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    command.env_remove("NO_COLOR").env_remove("VIGIL_LOG");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(args: &[&str]) -> Output {
    vigil().args(args).output().unwrap()
}

/// The names in the "Commands:" section of a help text, without `help`.
fn listed_commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_listed_has_help_with_examples() {
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    while let Some(path) = pending.pop() {
        let out = vigil().args(&path).arg("--help").output().unwrap();
        let help = text(&out.stdout);
        assert!(out.status.success(), "vigil {path:?} --help failed");
        assert!(
            help.contains("Examples:"),
            "vigil {} --help has no examples:\n{help}",
            path.join(" ")
        );
        for name in listed_commands(&help) {
            let mut sub = path.clone();
            sub.push(name);
            pending.push(sub);
        }
        seen.push(path.join(" "));
    }
    for expected in [
        "",
        "judge",
        "lint",
        "demo",
        "crd",
        "bench",
        "bench rollouts",
        "bench controller",
        "promote",
        "abort",
        "pause",
        "resume",
        "status",
        "run",
        "dashboard",
        "completions",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected:?} not listed: {seen:?}"
        );
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    for word in [
        "_vigil()",
        "judge",
        "lint",
        "demo",
        "bench",
        "completions",
        "--prometheus",
    ] {
        assert!(script.contains(word), "{word} missing from the bash script");
    }
    let zsh = text(&run(&["completions", "zsh"]).stdout);
    assert!(zsh.starts_with("#compdef vigil"), "{zsh}");
    let fish = text(&run(&["completions", "fish"]).stdout);
    assert!(fish.contains("complete -c vigil"), "{fish}");
    for shell in ["powershell", "elvish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let named = text(&run(&["completions", "bash", "--bin-name", "kubectl-vigil"]).stdout);
    assert!(named.trim_end().ends_with(" kubectl-vigil\nfi"), "{named}");
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn completions_follow_the_name_invoked_as_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-vigil");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vigil"), &plugin).unwrap();
    let out = Command::new(&plugin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(
        script.trim_end().ends_with(" kubectl-vigil\nfi"),
        "{script}"
    );
    // Its help names it as kubectl does.
    let help = Command::new(&plugin).arg("--help").output().unwrap();
    assert!(text(&help.stdout).contains("Usage: kubectl vigil"));
}

#[test]
fn no_colour_escapes_with_no_color() {
    let cases: &[&[&str]] = &[
        &["--help"],
        &["judge", "--help"],
        &["judge"],
        &["no-such-command"],
        &["lint", "/no/such/template.yaml"],
        &["bench", "rollouts", "--scenario", "no-such-scenario"],
        &["demo", "--speed", "0"],
    ];
    let dir = tempfile::tempdir().unwrap();
    for args in cases {
        // CLICOLOR_FORCE would make clap colour a pipe; NO_COLOR must win.
        let out = vigil()
            .args(*args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("CLICOLOR_FORCE", "1")
            .output()
            .unwrap();
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!all.is_empty(), "{args:?} printed nothing");
        assert!(!all.contains("\x1b["), "{args:?} wrote an escape:\n{all:?}");
    }
}

#[test]
fn json_output_is_one_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo.html");
    for scenario in ["faulty", "healthy", "no-traffic"] {
        let out = run(&[
            "demo",
            "--scenario",
            scenario,
            "--speed",
            "0",
            "--output",
            "json",
            "--report",
            report.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&stdout);
        assert!(
            parsed.is_ok(),
            "{scenario}: stdout is not one JSON document:\n{stdout}"
        );
    }
}

#[test]
fn bench_progress_goes_to_stderr_only() {
    let out = run(&[
        "bench",
        "rollouts",
        "--rollouts",
        "10",
        "--scenario",
        "errors-x5",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rollouts: 10/10 done in "), "{stderr}");
    assert!(!stdout.contains("rollouts: "), "{stdout}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn errors_say_what_to_do() {
    let out = run(&[
        "judge",
        "--prometheus",
        "http://127.0.0.1:1",
        "--template",
        "analysis-templates/demo.yaml",
        "--arg",
        "job=checkout",
        "--stable",
        "{version=\"v1\"}",
        "--canary",
        "version=\"v2\"",
        "--last",
        "30m",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("give the matchers without the braces"),
        "{stderr}"
    );
    let out = run(&["bench", "rollouts", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the scenarios are:"));
}
