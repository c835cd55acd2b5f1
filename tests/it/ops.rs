//! The operator commands (`vigil::cluster::ops` and the CLI on top) against the fake API
//! server.

use crate::common::fake_kube::FakeKube;
use serde_json::json;
use std::time::Duration;
use vigil::api::crd::{Release, ReleaseSpec, ReleaseStatus};
use vigil::api::status::StateV1alpha1 as State;
use vigil::cluster::ops::{self, OpsError};
use vigil::rollout::{Phase, RequestAction};

const NS: &str = "shop";

fn canary(name: &str, phase: Phase, paused: bool) -> Release {
    let spec: ReleaseSpec = serde_json::from_value(json!({
        "targetRef": {"name": name},
        "service": {"name": name},
        "routing": {"replicas": {}},
        "stepWeights": [10, 50, 100],
        "paused": paused,
    }))
    .expect("spec");
    let mut c = Release::new(name, spec);
    c.metadata.namespace = Some(NS.into());
    c.status = Some(ReleaseStatus {
        state: State {
            phase,
            stable_revision: Some("5d8f7c".into()),
            canary_revision: phase.in_flight().then(|| "7b9e41".into()),
            current_step: 1,
            steps: 3,
            weight: if phase.in_flight() { 50 } else { 0 },
            last_verdict: Some("pass".into()),
            message: "holding at step 2/3".into(),
            ..State::default()
        },
        ..ReleaseStatus::default()
    });
    c
}

fn stored(fake: &FakeKube, name: &str) -> Release {
    fake.get_as::<Release>(NS, name).expect("stored canary")
}

fn request_of(fake: &FakeKube, name: &str) -> Option<vigil::rollout::Request> {
    stored(fake, name).status.and_then(|s| s.request)
}

#[tokio::test]
async fn promote_writes_a_request_to_the_status_subresource() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Progressing, false));
    fake.clear_requests();
    let before = chrono::Utc::now();
    let done = ops::promote(fake.client(), NS, "web", false)
        .await
        .expect("promote");
    assert_eq!(done.request.action, RequestAction::Promote);
    assert_eq!(done.phase, Phase::Progressing);
    assert!(!done.paused);
    let request = request_of(&fake, "web").expect("status.request");
    assert_eq!(request.action, RequestAction::Promote);
    assert!(request.at >= before - chrono::Duration::seconds(1));
    // One PATCH, of the status subresource; the rest of the status is untouched.
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert!(
        writes[0].path.ends_with("/releases/web/status"),
        "{writes:?}"
    );
    let status = stored(&fake, "web").status.expect("status");
    assert_eq!(status.state.weight, 50);
    assert_eq!(status.state.phase, Phase::Progressing);

    let done = ops::promote(fake.client(), NS, "web", true)
        .await
        .expect("promote --full");
    assert_eq!(done.request.action, RequestAction::PromoteFull);
    assert_eq!(
        done.replaced.map(|r| r.action),
        Some(RequestAction::Promote),
        "the pending request is reported as replaced"
    );
    assert_eq!(
        request_of(&fake, "web").map(|r| r.action),
        Some(RequestAction::PromoteFull)
    );
}

#[tokio::test]
async fn promote_refuses_when_there_is_nothing_to_promote() {
    let fake = FakeKube::start().await;
    fake.put(&canary("idle", Phase::Waiting, false));
    fake.put(&canary("rolling", Phase::Promoting, false));
    fake.clear_requests();
    let e = ops::promote(fake.client(), NS, "idle", false)
        .await
        .expect_err("nothing in flight");
    assert!(matches!(e, OpsError::Refused { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("shop/idle is Waiting"), "{text}");
    assert!(text.contains("nothing to promote"), "{text}");
    let e = ops::promote(fake.client(), NS, "rolling", true)
        .await
        .expect_err("already promoting");
    assert!(e.to_string().contains("already promoting"), "{e}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn abort_writes_the_reason_and_refuses_outside_a_rollout() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Paused, true));
    fake.put(&canary("done", Phase::Succeeded, false));
    let done = ops::abort(fake.client(), NS, "web", "5xx spike")
        .await
        .expect("abort");
    assert!(done.paused, "spec.paused is reported");
    let request = request_of(&fake, "web").expect("status.request");
    assert_eq!(request.action, RequestAction::Abort);
    assert_eq!(request.reason, "5xx spike");
    let e = ops::abort(fake.client(), NS, "done", "why not")
        .await
        .expect_err("nothing to abort");
    assert!(e.to_string().contains("nothing to abort"), "{e}");
    assert_eq!(request_of(&fake, "done"), None);
}

#[tokio::test]
async fn pause_and_resume_toggle_spec_paused() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Progressing, false));
    assert!(ops::pause(fake.client(), NS, "web").await.expect("pause"));
    assert!(stored(&fake, "web").spec.paused);
    fake.clear_requests();
    assert!(
        !ops::pause(fake.client(), NS, "web").await.expect("pause"),
        "already paused"
    );
    assert!(fake.writes().is_empty(), "nothing written when unchanged");
    assert!(ops::resume(fake.client(), NS, "web").await.expect("resume"));
    let c = stored(&fake, "web");
    assert!(!c.spec.paused);
    // The spec patch leaves the status alone.
    assert_eq!(c.status.map(|s| s.state.weight), Some(50));
    assert!(!ops::resume(fake.client(), NS, "web").await.expect("resume"));
}

#[tokio::test]
async fn status_text_has_phase_step_weight_and_revisions() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Progressing, false));
    let text = ops::status(fake.client(), NS, "web").await.expect("status");
    for want in [
        "Release shop/web",
        "Phase:        Progressing",
        "Step:         2/3",
        "Weight:       50%",
        "Stable:       5d8f7c",
        "Release:       7b9e41",
        "Last verdict: pass",
        "Message:      holding at step 2/3",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
}

#[tokio::test]
async fn a_missing_canary_is_named_with_the_fix() {
    let fake = FakeKube::start().await;
    fake.register::<Release>();
    let want = "canary shop/nope not found: check the name and namespace (-n)";
    let e = ops::status(fake.client(), NS, "nope")
        .await
        .expect_err("404");
    assert_eq!(e.to_string(), want);
    let e = ops::promote(fake.client(), NS, "nope", false)
        .await
        .expect_err("404");
    assert_eq!(e.to_string(), want);
    let e = ops::pause(fake.client(), NS, "nope")
        .await
        .expect_err("404");
    assert_eq!(e.to_string(), want);
    let e = ops::watch_status(fake.client(), NS, "nope", |_| {})
        .await
        .expect_err("404");
    assert_eq!(e.to_string(), want);
}

#[tokio::test]
async fn server_errors_name_the_canary_and_write_nothing() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Progressing, false));
    fake.faults()
        .fail_next("PATCH", "releases", Some("status"), 500, 1);
    let e = ops::promote(fake.client(), NS, "web", false)
        .await
        .expect_err("500");
    assert!(matches!(e, OpsError::Api { .. }), "{e:?}");
    assert!(
        e.to_string().contains("refused to patch canary shop/web"),
        "{e}"
    );
    assert_eq!(request_of(&fake, "web"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_every_change_until_the_rollout_ends() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Progressing, false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let client = fake.client();
    let watch = tokio::spawn(async move {
        ops::watch_status(client, NS, "web", move |text| {
            let _ = tx.send(text.to_string());
        })
        .await
    });
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("first print")
        .expect("text");
    assert!(first.contains("Weight:       50%"), "{first}");
    // A change of weight is printed.
    let mut c = canary("web", Phase::Progressing, false);
    if let Some(s) = c.status.as_mut() {
        s.state.weight = 100;
        s.state.current_step = 2;
    }
    fake.put(&c);
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("second print")
        .expect("text");
    assert!(second.contains("Weight:       100%"), "{second}");
    assert!(second.contains("Step:         3/3"), "{second}");
    // An object from another Release is not: the watch selects this one by name.
    fake.put(&canary("other", Phase::Failed, false));
    // The end of the rollout ends the watch.
    fake.put(&canary("web", Phase::Succeeded, false));
    let phase = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("watch ends")
        .expect("no panic")
        .expect("no error");
    assert_eq!(phase, Phase::Succeeded);
    let mut rest = Vec::new();
    while let Ok(text) = rx.try_recv() {
        rest.push(text);
    }
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(rest[0].contains("Phase:        Succeeded"), "{}", rest[0]);
    assert!(rest.iter().all(|t| t.starts_with("Release shop/web")));
}

/// Runs the vigil binary under `name` (a symlink in a temp dir) with a kubeconfig for `fake`,
/// off the runtime's threads so that the fake keeps serving.
async fn run_cli(fake: &FakeKube, name: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let binary = dir.path().join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vigil"), &binary).expect("symlink");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&binary)
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("run vigil");
        drop(dir);
        out
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_kubectl_plugin() {
    let fake = FakeKube::start().await;
    fake.put(&canary("web", Phase::Paused, false));
    let mut in_default = canary("api", Phase::Progressing, false);
    in_default.metadata.namespace = Some("default".into());
    fake.put(&in_default);

    let out = run_cli(&fake, "vigil", &["promote", "web", "-n", NS, "--full"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("canary shop/web: full promotion requested"),
        "{stdout}"
    );
    assert_eq!(
        request_of(&fake, "web").map(|r| r.action),
        Some(RequestAction::PromoteFull)
    );

    // As a kubectl plugin, without -n: the kubeconfig context's namespace ("default").
    let out = run_cli(&fake, "kubectl-vigil", &["pause", "api"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fake.get_as::<Release>("default", "api")
            .expect("api")
            .spec
            .paused
    );
    let out = run_cli(&fake, "kubectl-vigil", &["status"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing NAME is a usage error"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubectl vigil status"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run_cli(&fake, "vigil", &["status", "web", "-n", NS]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("Phase:        Paused"), "{stdout}");

    let out = run_cli(&fake, "vigil", &["abort", "nope", "-n", NS]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("canary shop/nope not found: check the name and namespace (-n)"),
        "{stderr}"
    );

    let out = run_cli(&fake, "vigil", &["promote", "api"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A rollout that has already ended ends the watch at once; Failed exits 1.
    fake.put(&canary("gone", Phase::Failed, false));
    let out = run_cli(&fake, "vigil", &["status", "gone", "-n", NS, "--watch"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Phase:        Failed"));
}
