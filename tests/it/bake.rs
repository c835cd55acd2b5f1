//! The bake after a promotion, through the controller, against the fake Kubernetes API server
//! (whose Deployment controller keeps ReplicaSet history) and a real Prometheus holding
//! synthetic history in which the stable Deployment's version regresses at a known time after
//! the promotion: the bake judges it against its own past and rolls the Deployment back.

use crate::common::controller::*;
use crate::common::fake_kube::{FakeKube, Res};
use crate::common::{HISTORY, PromServer, Regression, T_END, Version, openmetrics};
use serde_json::{Value, json};
use std::time::Duration;
use vigil::cluster::clock::Clock;

/// Where the controller's clock starts: half an hour into the stored hour, so that the
/// bake's baseline (as long before the release as the bake has run) lies within it.
const ORIGIN: i64 = T_END - HISTORY + 1800;

/// The stable version (`v1`, which the stable Deployment's pods report both before and
/// after the promotion), regressing `regression_after` seconds past [`ORIGIN`] when given,
/// and a healthy canary (`v2`).
fn history(regression_after: Option<i64>) -> Vec<Version> {
    let mut versions = versions(0.02, 0.1);
    versions[0].regression = regression_after.map(|after| Regression {
        at: ORIGIN + after,
        error_rate: 0.10,
        latency_median: 0.1,
    });
    versions
}

/// One 100% step, then a 20-minute bake on the harness's template.
fn baking() -> Value {
    json!({
        "stepWeights": [100],
        "bake": {
            "duration": "20m",
            "templates": [{"name": "http-prometheus-client"}],
        },
    })
}

async fn released(versions: &[Version]) -> (PromServer, FakeKube, Controller) {
    let prom = PromServer::start(&openmetrics(versions));
    let fake = FakeKube::start().await;
    setup(&fake, baking());
    let clock = Clock::accelerated(
        chrono::DateTime::from_timestamp(ORIGIN, 0).expect("time"),
        SPEED,
    );
    let controller = start_adopting(&fake, &prom.url, clock).await;
    release(&fake, "web:2").await;
    (prom, fake, controller)
}

fn image(fake: &FakeKube) -> Value {
    deployment(fake, "web").expect("web")["spec"]["template"]["spec"]["containers"][0]["image"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_regression_during_the_bake_rolls_the_deployment_back() {
    // The promotion is done a couple of (virtual) minutes in; the new version, now
    // stable's, regresses 8 minutes in.
    let (_prom, fake, controller) = released(&history(Some(480))).await;
    wait_for(
        &fake,
        "the bake",
        Duration::from_secs(30),
        phase_is("Baking"),
    )
    .await;
    let baking = status(&fake);
    assert_eq!(image(&fake), "web:2", "promoted before the bake");
    let previous = baking["previousRevision"].clone();
    assert!(previous.is_string(), "{baking:#}");
    assert_eq!(baking["stableRevision"], baking["canaryRevision"]);

    wait_for(
        &fake,
        "the rollback",
        Duration::from_secs(30),
        phase_is("Failed"),
    )
    .await;
    controller.stop().await;
    let s = status(&fake);
    assert_eq!(image(&fake), "web:1", "the previous template is back");
    assert_eq!(s["stableRevision"], previous, "{s:#}");
    assert_eq!(
        s["failedRevision"], baking["canaryRevision"],
        "not retried: {s:#}"
    );
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(web["status"]["updatedReplicas"], 4, "rolled back: {web:#}");
    assert_eq!(web["spec"]["paused"], true, "adopted again");
    // Only the old ReplicaSet serves.
    let serving: Vec<Value> = fake
        .list(&Res::replicasets(), Some(NS))
        .into_iter()
        .filter(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
        .map(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"].clone())
        .collect();
    assert_eq!(serving, [json!("web:1")]);
    // Every bake analysis before the regression passed; the failing one came after it.
    let analyses = s["analyses"].as_array().unwrap();
    let failed = analyses
        .iter()
        .find(|a| a["verdict"] == "fail")
        .unwrap_or_else(|| panic!("a failed bake analysis: {s:#}"));
    let at = chrono::DateTime::parse_from_rfc3339(failed["at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        at > ORIGIN + 480 && at <= ORIGIN + 480 + 4 * 60,
        "the rollback came within four intervals of the regression ({at} vs {})",
        ORIGIN + 480
    );
    assert!(
        failed["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("error-rate"),
        "{failed:#}"
    );
    let reasons = event_reasons(&fake);
    assert!(reasons.iter().any(|r| r == "Aborted"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_bake_ends_in_success_with_the_new_version() {
    let (_prom, fake, controller) = released(&history(None)).await;
    wait_for(
        &fake,
        "the bake",
        Duration::from_secs(30),
        phase_is("Baking"),
    )
    .await;
    wait_succeeded(&fake).await;
    controller.stop().await;
    let s = status(&fake);
    assert_eq!(image(&fake), "web:2");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(message.contains("baked for 1200s"), "{message}");
    let analyses = s["analyses"].as_array().unwrap();
    assert!(
        analyses.iter().filter(|a| a["verdict"] == "pass").count() >= 5,
        "the bake judged every minute: {s:#}"
    );
    assert!(analyses.iter().all(|a| a["verdict"] != "fail"), "{s:#}");
}
