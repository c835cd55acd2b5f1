//! `vigil lint`: every shipped template is clean, and mistakes name file, line and field.

use crate::common::{root, vigil};

#[test]
fn every_shipped_template_lints_clean() {
    let dir = root().join("analysis-templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the shipped templates, found {files:?}"
    );
    let out = vigil().arg("lint").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok")).count(),
        files.len()
    );
}

const BROKEN: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: broken}
spec:
  args:
    - name: job
  metrics:
    - name: errors
      type: ratio
      errors: sum(increase(x_total{job="{{ args.jobb }}", {{ selector }}}[{{ interval }}]))
      total: sum(increase(x_total{job="{{ args.job }}", {{ selector }}}[{{ interval }}]))
    - name: latency
      type: histogram
      query: sum by (le) (increase(x_bucket{ {{ selector }} }[{{ intervall }}]))
      min: 3
"#;

fn lint_text(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, text).unwrap();
    let out = vigil().arg("lint").arg(&file).output().unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "t.yaml");
    (out.status.code(), stderr)
}

#[test]
fn problems_name_file_line_and_field() {
    let (code, stderr) = lint_text(BROKEN);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("t.yaml:10: spec.metrics[0].errors: uses {{ args.jobb }} but spec.args declares no argument \"jobb\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("t.yaml:14: spec.metrics[1].query: unknown placeholder {{ intervall }}"),
        "{stderr}"
    );
    assert!(
        stderr.contains("t.yaml:15: spec.metrics[1].min: does not apply to a histogram metric"),
        "{stderr}"
    );
}

#[test]
fn unknown_fields_and_bad_values_name_line_and_field() {
    let (code, stderr) = lint_text(&BROKEN.replace("      min: 3\n", "      tolerence: 10%\n"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("t.yaml:15: spec.metrics[1].tolerence: "),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field"), "{stderr}");

    let (code, stderr) =
        lint_text(&BROKEN.replace("      min: 3\n", "      tolerance: 10 percent\n"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("t.yaml:15: spec.metrics[1].tolerance: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid percentage \"10 percent\""),
        "{stderr}"
    );

    let (code, stderr) = lint_text("apiVersion: [unclosed\n");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("t.yaml:"), "{stderr}");
}

#[test]
fn judge_rejects_bad_arguments_with_usage_status() {
    let template = root().join("analysis-templates/http-prometheus-client.yaml");
    let run = |extra: &[&str]| {
        let out = vigil()
            .args(["judge", "--prometheus", "http://127.0.0.1:1", "--template"])
            .arg(&template)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let versions = ["--stable", "version=\"v1\"", "--canary", "version=\"v2\""];
    let cases: [(&[&str], &[&str], &str); 6] = [
        (
            &["--arg", "job=x", "--last", "30m"],
            &["--stable", "version=v1", "--canary", "version=\"v2\""],
            "--stable: invalid label matchers",
        ),
        (
            &["--arg", "jobb=x", "--last", "30m"],
            &versions,
            "has no argument \"jobb\"",
        ),
        (
            &["--last", "30m"],
            &versions,
            "http-prometheus-client.yaml:",
        ),
        (
            &["--arg", "job=x", "--last", "30x"],
            &versions,
            "--last: invalid duration",
        ),
        (
            &[
                "--arg",
                "job=x",
                "--start",
                "yesterday",
                "--end",
                "1790000000",
            ],
            &versions,
            "--start \"yesterday\" is not a time",
        ),
        (
            &["--arg", "job=x", "--last", "30m"],
            &["--stable", "version=\"v1\"", "--canary", "version=\"v1\""],
            "select the same series",
        ),
    ];
    for (args, selectors, expected) in cases {
        let (code, err) = run(&[args, selectors].concat());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
    }
    // A missing argument names the file, line and field that declares it.
    let (_, err) = run(&[&["--last", "30m"][..], &versions].concat());
    assert!(
        err.contains(": spec.args[0]: ") && err.contains("needs argument \"job\""),
        "{err}"
    );
}

/// A template with mistakes of every kind: serde's (an unknown field, a bad percentage, a
/// bad duration) and the checks' (a name used twice, an unknown placeholder, a field that
/// does not apply).
const MANY_MISTAKES: &str = r#"apiVersion: vigil.dev/v1alpha1
kind: ReleaseAnalysis
metadata: {name: many}
spec:
  offset: yesterday
  metrics:
    - name: errors
      type: ratio
      errors: sum(increase(x_total{code="500", {{ selector }}}[{{ interval }}]))
      total: sum(increase(x_total{ {{ selector }} }[{{ interval }}]))
      tolerance: ten percent
      critcal: true
    - name: errors
      type: histogram
      query: sum by (le) (increase(x_bucket{ {{ selector }} }[{{ intervall }}]))
      min: 3
"#;

#[test]
fn every_mistake_of_a_template_is_listed_in_one_run_with_its_line() {
    let (code, stderr) = lint_text(MANY_MISTAKES);
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        "t.yaml:5: spec.offset: invalid duration \"yesterday\"",
        "t.yaml:11: spec.metrics[0].tolerance: invalid percentage \"ten percent\"",
        "t.yaml:12: spec.metrics[0].critcal: unknown field `critcal`",
        "t.yaml:13: spec.metrics[1].name: metric \"errors\" is defined twice",
        "t.yaml:15: spec.metrics[1].query: unknown placeholder {{ intervall }}",
        "t.yaml:16: spec.metrics[1].min: does not apply to a histogram metric",
    ] {
        assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    }
    // In the order of the file.
    let lines: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("t.yaml:")?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(lines, [5, 11, 12, 13, 15, 16], "{stderr}");
}

#[test]
fn yaml_that_cannot_be_read_says_the_rest_was_not_checked() {
    let (code, stderr) =
        lint_text(&MANY_MISTAKES.replace("metadata: {name: many}", "metadata: {name: [many}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("t.yaml:3: "), "{stderr}");
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    assert!(
        stderr.contains("nothing after this point was checked"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_names_every_mistake_of_a_stored_template() {
    use crate::common::fake_kube::{FakeKube, Res};
    let fake = FakeKube::start().await;
    fake.register::<vigil::api::crd::ReleaseAnalysis>();
    let mut object: serde_json::Value = serde_saphyr::from_str(MANY_MISTAKES).unwrap();
    object["metadata"]["namespace"] = "shop".into();
    fake.put_object(
        &Res::new("vigil.dev", "v1alpha1", "releaseanalyses"),
        object,
    );
    let reference = vigil::rollout::TemplateUse {
        name: "many".into(),
        cluster_scope: false,
    };
    let err = vigil::cluster::analysis::fetch_template(&fake.client(), "shop", &reference)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("ReleaseAnalysis shop/many is not valid, 6 problems"),
        "{err}"
    );
    for want in [
        "spec.offset: invalid duration",
        "spec.metrics[0].tolerance: invalid percentage",
        "spec.metrics[0].critcal: unknown field",
        "spec.metrics[1].name: metric \"errors\" is defined twice",
        "spec.metrics[1].query: unknown placeholder {{ intervall }}",
        "spec.metrics[1].min: does not apply",
    ] {
        assert!(err.contains(want), "expected {want:?} in {err}");
    }
}
