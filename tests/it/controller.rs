//! The controller (reconciler, routers, state machine and judge) against an in-process fake
//! Kubernetes API server and a real Prometheus holding synthetic history.
//!
//! The controller runs on an accelerated clock set inside the stored hour of history, so a
//! rollout with one-minute analysis intervals takes seconds.

use crate::common::controller::*;
use crate::common::fake_kube::{FakeKube, Res};
use crate::common::{PromServer, openmetrics};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::api::crd::Release;

/// Releases web:2 and waits for `phase`; returns the canary weights seen on the way.
async fn release_until(fake: &FakeKube, phase: &'static str) -> Vec<u8> {
    release(fake, "web:2").await;
    wait_for(fake, phase, Duration::from_secs(60), phase_is(phase)).await;
    canary_weights(fake)
}

/// Every canary weight the canary Ingress carried, in order, from the fake API server's
/// history (0 while the Ingress does not exist), repeated values folded.
fn canary_weights(fake: &FakeKube) -> Vec<u8> {
    let mut seen = vec![0u8];
    for state in fake.history(&ingresses(), NS, "web-canary") {
        let weight = state
            .and_then(|i| {
                i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
                    .as_str()?
                    .parse::<u8>()
                    .ok()
            })
            .unwrap_or(0);
        if seen.last() != Some(&weight) {
            seen.push(weight);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_the_nginx_router() {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({})).await;
    assert_eq!(
        deployment(&fake, "web").unwrap()["spec"]["paused"],
        true,
        "adopted: paused"
    );
    let stable = status(&fake)["stableRevision"].clone();

    release(&fake, "web:2").await;
    wait_for(&fake, "the first step", Duration::from_secs(20), |s| {
        s["weight"] == 10
    })
    .await;
    // While the canary runs, the stable Service selects stable pods only, and the canary
    // Service the canary pods.
    let service = fake.get(&Res::core("services"), NS, "web").unwrap();
    assert!(
        service["spec"]["selector"]["pod-template-hash"].is_string(),
        "{service}"
    );
    let canary_service = fake.get(&Res::core("services"), NS, "web-canary").unwrap();
    assert_eq!(
        canary_service["spec"]["selector"]["vigil.dev/canary"],
        "true"
    );
    let canary_deployment = deployment(&fake, "web-canary").unwrap();
    assert_eq!(
        canary_deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );

    wait_succeeded(&fake).await;
    assert_eq!(canary_weights(&fake), [0, 10, 50, 100, 0]);
    let s = status(&fake);
    assert_ne!(s["stableRevision"], stable);
    assert_eq!(s["stableRevision"], s["canaryRevision"]);
    assert_eq!(s["lastVerdict"], "pass");
    // Promoted: the stable Deployment runs the new image, paused again for the next
    // release; the canary's objects are gone and the Service selector is restored.
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert_eq!(web["spec"]["paused"], true);
    assert_eq!(web["status"]["updatedReplicas"], 4);
    assert!(deployment(&fake, "web-canary").is_none());
    assert!(fake.get(&ingresses(), NS, "web-canary").is_none());
    assert!(fake.get(&Res::core("services"), NS, "web-canary").is_none());
    let service = fake.get(&Res::core("services"), NS, "web").unwrap();
    assert_eq!(service["spec"]["selector"], json!({"app": "web"}));
    // Events are recorded right after the status write.
    fake.wait_until("the Succeeded event", |f| {
        event_reasons(f).iter().any(|r| r == "Succeeded")
    })
    .await;
    let reasons = event_reasons(&fake);
    for want in [
        "Adopted",
        "Started",
        "StepAdvanced",
        "Promoting",
        "Succeeded",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event in {reasons:?}"
        );
    }
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regressing_canary_is_aborted_on_real_prometheus_data() {
    let (_prom, fake, controller) = adopted(0.10, 0.2, json!({})).await;
    release(&fake, "web:2").await;
    wait_for(&fake, "Failed", Duration::from_secs(60), phase_is("Failed")).await;
    let s = status(&fake);
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("error-rate"),
        "the message names the metric: {message}"
    );
    assert_eq!(s["weight"], 0);
    assert_eq!(s["lastVerdict"], "fail");
    assert!(s["failedRevision"].is_string());
    // Traffic is back on stable at once (the abort is recorded just before the router's
    // writes); the canary keeps its replicas for abortScaleDownDelay, then scales to zero.
    fake.wait_until("the canary Ingress removed", |f| {
        f.get(&ingresses(), NS, "web-canary").is_none()
    })
    .await;
    wait_for(
        &fake,
        "the canary scale-down and the stable Service unpinned",
        Duration::from_secs(10),
        |_| {
            deployment(&fake, "web-canary").is_some_and(|d| d["spec"]["replicas"] == 0)
                && fake
                    .get(&Res::core("services"), NS, "web")
                    .is_some_and(|s| s["spec"]["selector"] == json!({"app": "web"}))
        },
    )
    .await;
    assert_eq!(
        canary_weights(&fake),
        [0, 10, 0],
        "never beyond the first step"
    );
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(
        web["spec"]["paused"], true,
        "the stable Deployment is not rolled"
    );
    let replicasets = fake.list(&Res::replicasets(), Some(NS));
    let serving: Vec<&Value> = replicasets
        .iter()
        .filter(|rs| {
            rs["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.starts_with("web-canary"))
        })
        .filter(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(serving.len(), 1);
    assert_eq!(
        serving[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:1"
    );
    fake.wait_until("the Aborted event", |f| {
        event_reasons(f).iter().any(|r| r == "Aborted")
    })
    .await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_whose_router_writes_fail_half_way_never_sends_traffic_to_the_canary_again() {
    // The abort removes the canary Ingress, then reads the stable Ingress to take a mirror
    // off it; that read fails, and Prometheus goes down at the same moment (as the soak's API
    // faults and outages once met). The abort must stand: the reconcile that follows finishes
    // it, rather than decide again from a status still at step 1, find no data, hold the step
    // and send 10% of the users back to the canary just found bad.
    let (prom, fake, controller) = adopted(0.10, 0.2, json!({})).await;
    let prom = Arc::new(Mutex::new(prom));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    fake.on_write(Some(Arc::new({
        let faults = fake.faults();
        let armed = armed.clone();
        let prom = prom.clone();
        move |request: &crate::common::fake_kube::RequestRecord| {
            if request.method == "DELETE"
                && request.path.ends_with("/ingresses/web-canary")
                && !armed.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                faults.fail_next("GET", "ingresses", None, 500, 1);
                prom.lock().unwrap().stop();
            }
        }
    })));
    release(&fake, "web:2").await;
    wait_for(&fake, "Failed", Duration::from_secs(60), phase_is("Failed")).await;
    // The abort is recorded before its router writes: wait for them.
    fake.wait_until("the canary Ingress deleted", |_| {
        armed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // The failed read, then the one of the reconcile that finishes the abort.
    fake.wait_until("the stable Ingress read again", |f| {
        let requests = f.requests();
        let deleted = requests
            .iter()
            .position(|r| r.method == "DELETE" && r.path.ends_with("/ingresses/web-canary"));
        deleted.is_some_and(|at| {
            requests[at..]
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with("/ingresses/web"))
                .count()
                >= 2
        })
    })
    .await;
    // Let any reconcile that would wrongly start over have its go.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        canary_weights(&fake),
        [0, 10, 0],
        "the canary got traffic again"
    );
    assert!(
        fake.get(&ingresses(), NS, "web-canary").is_none(),
        "the canary Ingress is gone"
    );
    assert_eq!(status(&fake)["phase"], "Failed");
    fake.wait_until("the Aborted event", |f| {
        event_reasons(f).iter().filter(|r| *r == "Aborted").count() == 1
    })
    .await;
    fake.on_write(None);
    controller.stop().await;
    drop(prom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_resumes_without_repeating_or_skipping_a_step() {
    let prom = PromServer::start(&openmetrics(&versions(0.02, 0.1)));
    let fake = FakeKube::start().await;
    setup(&fake, json!({}));
    let clock = clock();
    let first = start_adopting(&fake, &prom.url, clock).await;
    release(&fake, "web:2").await;
    wait_for(&fake, "step 2", Duration::from_secs(30), |s| {
        s["weight"] == 50
    })
    .await;
    first.stop().await;
    let frozen = status(&fake);
    let second = Controller::start(&fake, &prom.url, clock);
    wait_succeeded(&fake).await;
    assert_eq!(frozen["currentStep"], 1);
    assert_eq!(canary_weights(&fake), [0, 10, 50, 100, 0]);
    let advanced = event_reasons(&fake)
        .iter()
        .filter(|r| *r == "StepAdvanced")
        .count();
    assert_eq!(advanced, 3, "one StepAdvanced per step");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_weight_and_resume_continues() {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({})).await;
    release(&fake, "web:2").await;
    wait_for(&fake, "step 1", Duration::from_secs(20), |s| {
        s["weight"] == 10
    })
    .await;
    let api: Api<Release> = Api::namespaced(fake.client(), NS);
    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(pause(true)))
        .await
        .unwrap();
    wait_for(&fake, "paused", Duration::from_secs(10), phase_is("Paused")).await;
    // Several intervals later (virtual time), still at the first step.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = status(&fake);
    assert_eq!(
        (s["phase"].as_str(), s["weight"].as_u64()),
        (Some("Paused"), Some(10))
    );
    api.patch("web", &PatchParams::default(), &Patch::Merge(pause(false)))
        .await
        .unwrap();
    wait_succeeded(&fake).await;
    let reasons = event_reasons(&fake);
    assert!(
        reasons.iter().any(|r| r == "Paused") && reasons.iter().any(|r| r == "Resumed"),
        "{reasons:?}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_traffic_does_not_follow_the_weight_is_held_by_the_split_check() {
    // The loaded history gives the canary a third of the requests whatever the weight: at
    // 10% that is a sample ratio mismatch. The rollout holds at 10% and says why.
    let analysis = json!({"analysis": {
        "templates": [{"name": "http-prometheus-client"}],
        "args": [{"name": "job", "value": "web"}],
        "interval": "1m",
        "stableMatchers": "version=\"v1\"",
        "canaryMatchers": "version=\"v2\""
    }});
    let (_prom, fake, controller) = adopted(0.005, 0.1, analysis).await;
    release(&fake, "web:2").await;
    let held = |s: &Value| {
        s["analyses"].as_array().is_some_and(|a| {
            a.iter()
                .filter(|r| r["verdict"] == "inconclusive")
                .any(|r| {
                    r["summary"].as_str().is_some_and(|t| {
                        t.contains("traffic split") && t.contains("its weight is 10%")
                    })
                })
        })
    };
    wait_for(&fake, "a hold on the split", Duration::from_secs(30), held).await;
    // Several intervals later (virtual time), still held at 10%, never failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&fake);
    assert_eq!(
        (s["phase"].as_str(), s["weight"].as_u64()),
        (Some("Progressing"), Some(10)),
        "{s}"
    );
    assert!(
        s["analyses"]
            .as_array()
            .is_some_and(|a| a.iter().all(|r| r["verdict"] == "inconclusive")),
        "{s}"
    );
    assert!(
        event_reasons(&fake)
            .iter()
            .any(|r| r == "AnalysisInconclusive"),
        "{:?}",
        event_reasons(&fake)
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_judges_and_reports_but_touches_nothing() {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({"dryRun": true})).await;
    release(&fake, "web:2").await;
    fake.clear_requests();
    wait_succeeded(&fake).await;
    let s = status(&fake);
    assert_eq!(s["lastVerdict"], "pass");
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("dry run"),
        "{s}"
    );
    let touched: Vec<String> = fake
        .writes()
        .iter()
        .filter(|r| {
            !matches!(
                r.plural().as_deref(),
                Some("releases" | "events" | "configmaps")
            )
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(touched.is_empty(), "a dry run wrote {touched:?}");
    // The report it wrote: the same HTML and Markdown as `vigil replay`, in a ConfigMap the
    // status names and the Release owns.
    let report = fake
        .get(&Res::core("configmaps"), NS, "web-vigil-report")
        .expect("the dry-run report ConfigMap");
    assert!(
        s["report"]
            .as_str()
            .unwrap_or_default()
            .contains("ConfigMap shop/web-vigil-report"),
        "{s}"
    );
    assert_eq!(report["metadata"]["ownerReferences"][0]["kind"], "Release");
    let html = report["data"]["report.html"].as_str().unwrap_or_default();
    assert!(
        html.contains("<svg") && html.contains("Dry run of Release shop/web"),
        "{html:.300}"
    );
    let markdown = report["data"]["report.md"].as_str().unwrap_or_default();
    assert!(
        markdown.contains("Dry run of Release shop/web"),
        "{markdown:.300}"
    );
    assert!(deployment(&fake, "web-canary").is_none());
    assert!(fake.get(&ingresses(), NS, "web-canary").is_none());
    let web = deployment(&fake, "web").unwrap();
    assert_ne!(
        web["spec"]["paused"], true,
        "a dry run does not adopt the Deployment"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_conflicts_are_retried() {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({})).await;
    fake.clear_requests();
    fake.faults()
        .fail_next("PUT", "releases", Some("status"), 409, 3);
    release(&fake, "web:2").await;
    wait_succeeded(&fake).await;
    let conflicts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/releases/web/status"))
        .count();
    assert!(
        conflicts >= 4,
        "three conflicts then retries: {conflicts} status writes"
    );
    assert_eq!(canary_weights(&fake), [0, 10, 50, 100, 0]);
    controller.stop().await;
}

#[tokio::test]
async fn a_status_write_that_fails_after_a_router_write_is_tried_again_at_once() {
    // Left for the next reconcile, the router would stay a step ahead of the status, and
    // that reconcile, deciding from the older status, could move traffic back a step.
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({})).await;
    fake.clear_requests();
    fake.faults()
        .fail_next("PUT", "releases", Some("status"), 500, 2);
    release(&fake, "web:2").await;
    wait_succeeded(&fake).await;
    let on_release: Vec<(String, String)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/releases/web"))
        .map(|r| (r.method, r.path))
        .collect();
    let first = on_release
        .iter()
        .position(|(method, path)| method == "PUT" && path.ends_with("/status"))
        .expect("a status write");
    // The two failed writes and the one that succeeds, with no new read of the Release
    // (a new reconcile) between them.
    let next: Vec<&(String, String)> = on_release[first..].iter().take(3).collect();
    assert!(
        next.iter()
            .all(|(method, path)| method == "PUT" && path.ends_with("/status")),
        "{on_release:?}"
    );
    assert_eq!(canary_weights(&fake), [0, 10, 50, 100, 0]);
    controller.stop().await;
}

/// A rollout through another router: the canary's share at step 2 (50%) as `read` sees it,
/// and the router's object after success.
async fn rollout_through(routing: Value, object: Option<(Res, Value)>) -> (FakeKube, Value) {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({"routing": routing})).await;
    if let Some((res, object)) = object {
        fake.put_object(&res, object);
    }
    release(&fake, "web:2").await;
    wait_for(&fake, "step 2", Duration::from_secs(30), |s| {
        s["weight"] == 50
    })
    .await;
    let during = json!({
        "routes": fake.list(&http_routes(), Some(NS)),
        "virtualServices": fake.list(&virtual_services(), Some(NS)),
        "web": deployment(&fake, "web"),
        "canary": deployment(&fake, "web-canary"),
    });
    wait_succeeded(&fake).await;
    controller.stop().await;
    assert!(fake.get(&ingresses(), NS, "web-canary").is_none());
    (fake, during)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_api_router_splits_httproute_weights() {
    let route = http_route();
    let (fake, during) = rollout_through(
        json!({"gatewayAPI": {"httpRoute": "web"}}),
        Some((http_routes(), route.clone())),
    )
    .await;
    let backends = &during["routes"][0]["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends[0]["name"], "web");
    assert_eq!(backends[0]["weight"], 50);
    assert_eq!(backends[1]["name"], "web-canary");
    assert_eq!(backends[1]["weight"], 50);
    let after = fake.get(&http_routes(), NS, "web").unwrap();
    assert_eq!(
        after["spec"]["rules"], route["spec"]["rules"],
        "reset restores the route exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istio_router_splits_virtual_service_weights() {
    let vs = virtual_service();
    let (fake, during) = rollout_through(
        json!({"istio": {"virtualService": "web"}}),
        Some((virtual_services(), vs.clone())),
    )
    .await;
    let route = &during["virtualServices"][0]["spec"]["http"][0]["route"];
    assert_eq!(route[0]["destination"]["host"], "web");
    assert_eq!(route[0]["weight"], 50);
    assert_eq!(route[1]["destination"]["host"], "web-canary");
    assert_eq!(route[1]["weight"], 50);
    let after = fake.get(&virtual_services(), NS, "web").unwrap();
    assert_eq!(
        after["spec"]["http"], vs["spec"]["http"],
        "reset restores the routes exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_router_splits_by_replica_counts() {
    let (fake, during) = rollout_through(json!({"replicas": {}}), None).await;
    // 50% of 4 replicas: 2 canary, 2 stable; no canary Service (one Service selects both).
    assert_eq!(during["canary"]["spec"]["replicas"], 2);
    assert_eq!(during["web"]["spec"]["replicas"], 2);
    assert!(fake.get(&Res::core("services"), NS, "web-canary").is_none());
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 4, "restored after the promotion");
    assert!(deployment(&fake, "web-canary").is_none());
}

/// A gate receiver: answers each path with the status set for it (200 by default) and
/// records the payloads it got.
struct Gates {
    url: String,
    answers: Arc<Mutex<std::collections::HashMap<String, u16>>>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Gates {
    async fn start() -> Gates {
        use axum::extract::{Path, State};
        type Shared = (
            Arc<Mutex<std::collections::HashMap<String, u16>>>,
            Arc<Mutex<Vec<Value>>>,
        );
        let answers = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/{gate}",
                axum::routing::post(
                    |State((answers, received)): State<Shared>,
                     Path(gate): Path<String>,
                     body: axum::Json<Value>| async move {
                        received.lock().unwrap().push(body.0);
                        let code = answers.lock().unwrap().get(&gate).copied().unwrap_or(200);
                        (
                            axum::http::StatusCode::from_u16(code).unwrap(),
                            format!("{gate} says {code}"),
                        )
                    },
                ),
            )
            .with_state((answers.clone(), received.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gates {
            url,
            answers,
            received,
        }
    }

    fn answer(&self, gate: &str, code: u16) {
        self.answers.lock().unwrap().insert(gate.to_string(), code);
    }

    fn types(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| p["type"].as_str().map(String::from))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_rollout_gate_aborts_before_any_traffic() {
    let gates = Gates::start().await;
    gates.answer("pre", 500);
    let hooks = json!({"webhooks": [
        {"name": "smoke-test", "type": "pre-rollout", "url": format!("{}/pre", gates.url), "retries": 1, "metadata": {"suite": "smoke"}},
        {"name": "report", "type": "post-rollout", "url": format!("{}/post", gates.url)}
    ]});
    let (_prom, fake, controller) = adopted(0.02, 0.1, hooks).await;
    let weights = release_until(&fake, "Failed").await;
    let message = status(&fake)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("pre-rollout") && message.contains("smoke-test: HTTP 500"),
        "{message}"
    );
    assert_eq!(weights, [0], "no traffic ever reached the canary");
    let payload = gates.received.lock().unwrap()[0].clone();
    assert_eq!(payload["apiVersion"], "vigil.dev/gate/v1");
    assert_eq!(
        (payload["name"].as_str(), payload["namespace"].as_str()),
        (Some("web"), Some(NS))
    );
    assert_eq!(payload["metadata"]["suite"], "smoke");
    // Two attempts (one retry after the 5xx), then the post-rollout report.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !gates.types().contains(&"post-rollout".to_string()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the post-rollout webhook is told");
    assert_eq!(
        gates.types().iter().filter(|t| *t == "pre-rollout").count(),
        2
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_confirm_promotion_gate_holds_until_it_says_yes() {
    let gates = Gates::start().await;
    gates.answer("confirm", 403);
    let hooks = json!({"webhooks": [
        {"name": "release-manager", "type": "confirm-promotion", "url": format!("{}/confirm", gates.url)}
    ]});
    let (_prom, fake, controller) = adopted(0.02, 0.1, hooks).await;
    release(&fake, "web:2").await;
    wait_for(
        &fake,
        "the hold before promotion",
        Duration::from_secs(40),
        |s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("confirm-promotion webhook refused"))
        },
    )
    .await;
    // Several intervals later it still holds, and it keeps asking.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&fake);
    assert_eq!(
        (s["phase"].as_str(), s["weight"].as_u64()),
        (Some("Progressing"), Some(100))
    );
    assert!(gates.types().len() >= 2, "asked again: {:?}", gates.types());
    gates.answer("confirm", 200);
    wait_succeeded(&fake).await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_rollout_gate_holds_a_new_revision_and_event_hooks_hear_every_event() {
    let gates = Gates::start().await;
    // 204 is a 2xx, but Flagger passes a gate on 200-202 only: it holds.
    gates.answer("confirm", 204);
    let hooks = json!({"webhooks": [
        {"name": "approval", "type": "confirm-rollout", "url": format!("{}/confirm", gates.url)},
        {"name": "audit", "type": "event", "url": format!("{}/event", gates.url),
         "metadata": {"team": "shop", "eventType": "from the webhook"}}
    ]});
    let (_prom, fake, controller) = adopted(0.02, 0.1, hooks).await;
    release(&fake, "web:2").await;
    wait_for(
        &fake,
        "the hold before the canary",
        Duration::from_secs(20),
        |s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("confirm-rollout webhook refused"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&fake)["phase"], "Waiting");
    assert!(deployment(&fake, "web-canary").is_none(), "no canary yet");
    let received = gates.received.lock().unwrap().clone();
    let confirms: Vec<&Value> = received
        .iter()
        .filter(|p| p["type"] == "confirm-rollout")
        .collect();
    assert!(!confirms.is_empty());
    for p in confirms {
        assert_eq!(p["phase"], "Waiting", "Flagger's phase while held: {p}");
    }
    gates.answer("confirm", 202);
    wait_succeeded(&fake).await;

    // Every event reaches the event webhook, the last one being the success, in
    // Flagger's event payload: its keys win over the webhook's metadata.
    let events = || -> Vec<Value> {
        gates
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "event")
            .cloned()
            .collect()
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !events().iter().any(|p| {
            p["metadata"]["eventMessage"]
                .as_str()
                .is_some_and(|m| m.contains("is promoted"))
        }) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the success is told to the event webhook");
    let events = events();
    assert!(
        events.len() >= 3,
        "adopted, stalled, started, ...: {events:#?}"
    );
    for p in &events {
        let phase = p["phase"].as_str().unwrap_or_default();
        assert!(
            vigil::rollout::Phase::FLAGGER.contains(&phase),
            "not a Flagger phase: {p}"
        );
        assert_eq!(p["metadata"]["team"], "shop", "{p}");
        assert!(
            matches!(
                p["metadata"]["eventType"].as_str(),
                Some("Normal" | "Warning")
            ),
            "{p}"
        );
        let timestamp = p["metadata"]["timestamp"].as_str().unwrap_or_default();
        assert!(
            timestamp
                .parse::<i64>()
                .is_ok_and(|t| t > 1_000_000_000_000),
            "{p}"
        );
    }
    assert!(
        events
            .iter()
            .any(|p| p["metadata"]["eventType"] == "Warning"
                && p["metadata"]["eventMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("confirm-rollout"))),
        "the hold is a warning: {events:#?}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_canary_hands_traffic_and_the_deployment_back() {
    let (_prom, fake, controller) = adopted(0.02, 0.1, json!({})).await;
    let canary = fake.get(&releases(), NS, "web").unwrap();
    assert_eq!(
        canary["metadata"]["finalizers"],
        json!(["vigil.dev/cleanup"])
    );
    release(&fake, "web:2").await;
    wait_for(&fake, "step 1", Duration::from_secs(20), |s| {
        s["weight"] == 10
    })
    .await;
    let api: Api<Release> = Api::namespaced(fake.client(), NS);
    api.delete("web", &Default::default()).await.unwrap();
    let start = Instant::now();
    while fake.get(&releases(), NS, "web").is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the finalizer never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fake.get(&ingresses(), NS, "web-canary").is_none(),
        "traffic back on stable"
    );
    assert!(deployment(&fake, "web-canary").is_none());
    assert!(fake.get(&Res::core("services"), NS, "web-canary").is_none());
    let service = fake.get(&Res::core("services"), NS, "web").unwrap();
    assert_eq!(
        service["spec"]["selector"],
        json!({"app": "web"}),
        "the stable Service unpinned"
    );
    // web:2 was never judged: deleting the Release must not roll it out.
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(web["spec"]["paused"], true);
    assert!(web["metadata"]["annotations"]["vigil.dev/adopted-by"].is_null());
    controller.stop().await;
}

/// A release held at 50% by a pause step: steps 10%, 50%, pause, 100%, plus `extra` spec.
async fn held_at_half(extra: Value) -> (PromServer, FakeKube, Controller) {
    let mut spec = json!({
        "stepWeights": [],
        "steps": [{"weight": 10}, {"weight": 50}, {"pause": {}}, {"weight": 100}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    adopted(0.02, 0.1, spec).await
}

/// Starts the release and waits until the pause holds it at 50%.
async fn release_to_half(fake: &FakeKube) {
    release(fake, "web:2").await;
    wait_for(
        fake,
        "step 2 held by the pause",
        Duration::from_secs(30),
        |s| s["weight"] == 50 && s["currentStep"] == 2,
    )
    .await;
}

/// `vigil abort`, then waits for the phase Failed.
async fn abort(fake: &FakeKube, reason: &str) {
    vigil::cluster::ops::abort(fake.client(), NS, "web", reason)
        .await
        .expect("abort");
    wait_for(
        fake,
        "the abort",
        Duration::from_secs(10),
        phase_is("Failed"),
    )
    .await;
}

/// The HorizontalPodAutoscaler of `web`, wanting `desired` replicas.
fn hpa(desired: i32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 20
        },
        "status": {"currentReplicas": desired, "desiredReplicas": desired}
    })
}

/// What the HPA does: decides on `desired` replicas, then scales the Deployment.
async fn autoscale(fake: &FakeKube, desired: i32) {
    let hpas = Res::new("autoscaling", "v2", "horizontalpodautoscalers");
    fake.put_object(&hpas, hpa(desired));
    let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(fake.client(), NS);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": desired}})),
    )
    .await
    .expect("scale web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_hpa_the_canary_follows_it_and_an_aborted_canary_stays_at_zero() {
    let (_prom, fake, controller) = held_at_half(json!({"scaleCanaryWithWeight": true})).await;
    autoscale(&fake, 4).await;
    release_to_half(&fake).await;
    let canary_replicas = |fake: &FakeKube| {
        deployment(fake, "web-canary").and_then(|d| d["spec"]["replicas"].as_i64())
    };
    assert_eq!(canary_replicas(&fake), Some(2), "50% of the HPA's 4");
    // Load rises: the HPA scales stable to 10, and the canary follows to 50% of it, where
    // the release's recorded 4 would have kept it at 2.
    autoscale(&fake, 10).await;
    fake.wait_until("the canary at 5", |f| canary_replicas(f) == Some(5))
        .await;
    assert_eq!(
        deployment(&fake, "web").unwrap()["spec"]["replicas"],
        10,
        "stable's count is the HPA's"
    );
    // Aborted, the canary keeps its replicas for abortScaleDownDelay (2m), then 0; a later
    // scale-up of stable does not bring it back.
    abort(&fake, "load test").await;
    fake.wait_until("the canary at 0", |f| canary_replicas(f) == Some(0))
        .await;
    autoscale(&fake, 16).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(canary_replicas(&fake), Some(0));
    assert_eq!(deployment(&fake, "web").unwrap()["spec"]["replicas"], 16);
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gradual_abort_steps_the_canary_ingress_down_before_removing_it() {
    // 10 virtual minutes are 5 real seconds at the tests' clock speed.
    let abort_steps = json!({"abort": {"steps": [50, 10, 0], "interval": "10m"}});
    let (_prom, fake, controller) = held_at_half(abort_steps).await;
    release_to_half(&fake).await;
    let weight = |fake: &FakeKube| {
        fake.get(&ingresses(), NS, "web-canary").map(|i| {
            i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"].clone()
        })
    };
    assert_eq!(weight(&fake), Some(json!("50")));
    abort(&fake, "drill").await;
    assert!(
        status(&fake)["message"]
            .as_str()
            .is_some_and(|m| m.contains("10% -> 0%")),
        "{}",
        status(&fake)
    );
    fake.wait_until("the canary Ingress at 10%", |f| {
        weight(f) == Some(json!("10"))
    })
    .await;
    wait_for(&fake, "status at the step", Duration::from_secs(5), |s| {
        s["weight"] == 10
    })
    .await;
    assert!(
        deployment(&fake, "web-canary").is_some_and(|d| d["spec"]["replicas"] == 4),
        "the canary keeps its replicas while it serves a share"
    );
    wait_for(
        &fake,
        "the canary Ingress removed",
        Duration::from_secs(15),
        |_| weight(&fake).is_none(),
    )
    .await;
    wait_for(
        &fake,
        "the canary scaled down",
        Duration::from_secs(10),
        |_| deployment(&fake, "web-canary").is_some_and(|d| d["spec"]["replicas"] == 0),
    )
    .await;
    controller.stop().await;
}

/// The points a range query asked for: one per step from `start` to `end`.
fn points_asked(params: &Value) -> i64 {
    let seconds = |key: &str| {
        chrono::DateTime::parse_from_rfc3339(params[key].as_str().unwrap_or_default())
            .map(|t| t.timestamp())
            .unwrap_or_else(|e| panic!("{key} of {params}: {e}"))
    };
    let step = params["step"].as_f64().unwrap() as i64;
    (seconds("end") - seconds("start")) / step + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyses_fetch_only_new_points_and_a_restart_resumes_from_the_stored_ones() {
    // One long step (15 analyses over a growing window), the controller restarted midway.
    let spec = json!({
        "stepWeights": [],
        "steps": [{"weight": 10, "minDuration": "15m"}, {"weight": 100}]
    });
    let prom = PromServer::start(&openmetrics(&versions(0.02, 0.1)));
    let fake = FakeKube::start().await;
    setup(&fake, spec);
    let clock = clock();
    let first = start_adopting(&fake, &prom.url, clock).await;
    release(&fake, "web:2").await;
    let configmaps = Res::core("configmaps");
    let analysed = |n: u64| move |s: &Value| s["looks"].as_u64().is_some_and(|l| l >= n);
    wait_for(
        &fake,
        "seven analyses",
        Duration::from_secs(30),
        analysed(7),
    )
    .await;
    first.stop().await;
    // The committed points are stored beside the Release, for the next controller.
    let stored = fake
        .get(&configmaps, NS, "web-vigil-evidence")
        .expect("the evidence ConfigMap");
    let uid = fake.get(&releases(), NS, "web").unwrap()["metadata"]["uid"].clone();
    assert_eq!(stored["data"]["release-uid"], uid);
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"], uid,
        "owned by the Release"
    );
    let before_restart = prom.range_queries().len();
    let second = Controller::start(&fake, &prom.url, clock);
    wait_succeeded(&fake).await;
    second.stop().await;
    assert_eq!(canary_weights(&fake), [0, 10, 100, 0]);
    // Gone with the rollout.
    assert!(fake.get(&configmaps, NS, "web-vigil-evidence").is_none());

    // Each query of the canary's requests: the first analysis reads the window so far,
    // every later one (after the restart too) the last two minutes (the lag) and what is
    // new, however old the step is.
    let queries = prom.range_queries();
    let canary_totals: Vec<(usize, i64)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| {
            q["query"]
                .as_str()
                .is_some_and(|t| t.contains("version=\"v2\"") && !t.contains("code"))
                && !q["query"].as_str().unwrap_or_default().contains("bucket")
        })
        .map(|(i, q)| (i, points_asked(q)))
        .collect();
    assert!(canary_totals.len() >= 12, "{canary_totals:?}");
    let later: Vec<i64> = canary_totals[1..].iter().map(|(_, n)| *n).collect();
    eprintln!("points per canary query: {canary_totals:?}, restart at query {before_restart}");
    assert!(
        later.iter().all(|n| *n <= 4),
        "points per query after the first: {later:?}"
    );
    assert!(
        canary_totals.iter().any(|(i, _)| *i >= before_restart),
        "queries after the restart: {canary_totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_success_status_write_does_not_bring_the_canary_back() {
    // As after a crash between the promotion's end (the stable Deployment paused again, the
    // canary's objects removed) and the status write that records Succeeded: the reconcile
    // that follows must finish the promotion, not take the paused Deployment for one still
    // rolling and hand the canary its 100% (and its Deployment) back. Stable pods take a
    // second to become ready, so that the promotion can be caught.
    let prom = PromServer::start(&openmetrics(&versions(0.02, 0.1)));
    let fake = FakeKube::start_with(crate::common::fake_kube::Options {
        ready_delay: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    setup(&fake, json!({}));
    let controller = start_adopting(&fake, &prom.url, clock()).await;
    release(&fake, "web:2").await;
    wait_for(
        &fake,
        "the promotion",
        Duration::from_secs(40),
        phase_is("Promoting"),
    )
    .await;
    fake.faults()
        .fail_next("PUT", "releases", Some("status"), 500, 1);
    wait_succeeded(&fake).await;
    assert_eq!(canary_weights(&fake), [0, 10, 50, 100, 0]);
    let canary_lives = fake
        .history(&Res::deployments(), NS, "web-canary")
        .windows(2)
        .filter(|w| w[0].is_none() && w[1].is_some())
        .count();
    assert_eq!(canary_lives, 0, "the canary Deployment was created again");
    controller.stop().await;
}
