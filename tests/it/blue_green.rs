//! Blue-green releases through the controller, against the fake Kubernetes API server and a
//! real Prometheus holding synthetic history (the harness of `controller.rs`): the new
//! version at full size behind the preview Service, judged there, the switch of all traffic
//! at once through each router, the instant rollback, and the promotion.

use crate::common::PromServer;
use crate::common::controller::*;
use crate::common::fake_kube::{FakeKube, Res};
use serde_json::{Value, json};
use std::time::Duration;

fn services() -> Res {
    Res::core("services")
}

/// The Release's spec changes for blue-green through `routing`: the harness's template as
/// the pre-promotion analysis (when `pre`; then promotion is manual) and as the
/// post-promotion analysis, no steps, a scale-down delay of 2 minutes (one second at the
/// harness's speed).
fn blue_green(routing: Value, pre: bool) -> Value {
    let analysis = json!({"templates": [{"name": "http-prometheus-client"}]});
    let mut bg = json!({
        "scaleDownDelay": "2m",
        "postPromotionAnalysis": analysis,
    });
    if pre {
        bg["prePromotionAnalysis"] = analysis;
        bg["autoPromotion"] = json!(false);
    }
    json!({
        "routing": routing,
        "stepWeights": [],
        "blueGreen": bg,
        "analysis": {
            "args": [{"name": "job", "value": "web"}],
            "interval": "1m",
            "checkSplit": false,
            "stableMatchers": "version=\"v1\"",
            "canaryMatchers": "version=\"v2\""
        }
    })
}

/// A controller with a canary (`v2`) of this error rate, adopted, for a blue-green Release
/// through `routing`, with `object` (the router's) in the cluster.
async fn adopted_blue_green(
    error_rate: f64,
    routing: Value,
    pre: bool,
    object: Option<(Res, Value)>,
) -> (PromServer, FakeKube, Controller) {
    let (prom, fake, controller) = adopted(error_rate, 0.1, blue_green(routing, pre)).await;
    if let Some((res, object)) = object {
        fake.put_object(&res, object);
    }
    (prom, fake, controller)
}

/// Each selector Service `web` had, in order, repeats folded.
fn selectors(fake: &FakeKube) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for state in fake.history(&services(), NS, "web").into_iter().flatten() {
        let mut selector = state["spec"]["selector"].clone();
        // The pin names the stable ReplicaSet's hash: keep only that it is there.
        if selector.get("pod-template-hash").is_some() {
            selector["pod-template-hash"] = json!("<stable>");
        }
        if out.last() != Some(&selector) {
            out.push(selector);
        }
    }
    out
}

const STABLE: &str = "<stable>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_judges_the_preview_switches_the_selector_and_promotes() {
    let (_prom, fake, controller) =
        adopted_blue_green(0.02, json!({"selector": {}}), true, None).await;
    release(&fake, "web:2").await;
    wait_for(
        &fake,
        "the preview judged and waiting for a promote",
        Duration::from_secs(20),
        |s| s["phase"] == "Paused" && s["currentStep"] == 1,
    )
    .await;
    let s = status(&fake);
    assert_eq!(s["analyses"][0]["verdict"], "pass", "{s:#}");
    assert_eq!(
        s["analyses"][0]["weight"], 0,
        "judged on the preview: {s:#}"
    );
    // The new version runs at full size behind the preview Service; users' Service selects
    // the old pods only.
    let canary = deployment(&fake, "web-canary").expect("the new version's Deployment");
    assert_eq!(canary["spec"]["replicas"], 4, "full size");
    let preview = fake
        .get(&services(), NS, "web-preview")
        .expect("the preview Service");
    assert_eq!(
        preview["spec"]["selector"],
        json!({"app": "web", "vigil.dev/canary": "true"})
    );
    assert!(fake.get(&services(), NS, "web-canary").is_none());
    assert_eq!(status(&fake)["weight"], 0);
    // Held until promoted: a minute later (virtual) nothing has moved.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        (
            status(&fake)["phase"].clone(),
            status(&fake)["weight"].clone()
        ),
        (json!("Paused"), json!(0))
    );
    vigil::cluster::ops::promote(fake.client(), NS, "web", false)
        .await
        .expect("promote");

    wait_succeeded(&fake).await;
    controller.stop().await;
    assert_eq!(
        selectors(&fake),
        [
            json!({"app": "web"}),
            json!({"app": "web", "pod-template-hash": STABLE}),
            json!({"app": "web", "vigil.dev/canary": "true"}),
            json!({"app": "web"}),
        ],
        "pinned to the old pods, switched at once to the new, then the owner's selector"
    );
    // The old version was never scaled down before the switch: stable kept 4 replicas.
    let replicas: Vec<Value> = fake
        .history(&Res::deployments(), NS, "web")
        .into_iter()
        .flatten()
        .map(|d| d["spec"]["replicas"].clone())
        .collect();
    assert!(replicas.iter().all(|r| r == 4), "{replicas:?}");
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert!(fake.get(&services(), NS, "web-preview").is_none());
    assert!(deployment(&fake, "web-canary").is_none());
    let s = status(&fake);
    assert_eq!(s["lastVerdict"], "pass");
    let events = event_reasons(&fake);
    assert!(events.iter().any(|r| r == "Promoting"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_preview_is_rolled_back_before_users_reach_it() {
    let (_prom, fake, controller) =
        adopted_blue_green(0.10, json!({"nginx": {"ingress": "web"}}), true, None).await;
    release(&fake, "web:2").await;
    wait_for(
        &fake,
        "the abort",
        Duration::from_secs(30),
        phase_is("Failed"),
    )
    .await;
    controller.stop().await;
    let s = status(&fake);
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("step 1/3") && message.contains("error-rate"),
        "{message}"
    );
    assert!(
        fake.history(&ingresses(), NS, "web-canary").is_empty(),
        "no canary Ingress ever existed: users never reached the new version"
    );
    assert!(
        fake.history(&services(), NS, "web-preview")
            .into_iter()
            .flatten()
            .next()
            .is_some(),
        "the preview Service existed"
    );
    assert_eq!(deployment(&fake, "web").unwrap()["spec"]["paused"], true);
}

/// The router's object when the switch had happened (weight 100), and after the rollback.
struct Switched {
    during: Value,
    after: Value,
}

/// A blue-green release through `routing` whose post-promotion analysis fails: returns the
/// router's object (`res`, `name`) at the switch and after the rollback.
async fn switch_and_roll_back(
    routing: Value,
    object: Option<(Res, Value)>,
    res: Res,
    name: &str,
) -> Switched {
    let (_prom, fake, controller) = adopted_blue_green(0.10, routing, false, object).await;
    release(&fake, "web:2").await;
    wait_for(&fake, "the switch", Duration::from_secs(20), |s| {
        s["weight"] == 100
    })
    .await;
    let during = fake.get(&res, NS, name).unwrap_or(Value::Null);
    wait_for(
        &fake,
        "the rollback",
        Duration::from_secs(30),
        phase_is("Failed"),
    )
    .await;
    // Traffic goes back at once (the rollback is recorded just before the router's writes,
    // and its Aborted event published after them); the old version never stopped running.
    fake.wait_until("the Aborted event", |f| {
        event_reasons(f).iter().any(|r| r == "Aborted")
    })
    .await;
    let after = fake.get(&res, NS, name).unwrap_or(Value::Null);
    let web = deployment(&fake, "web").unwrap();
    assert_eq!(web["spec"]["paused"], true);
    assert_eq!(web["spec"]["replicas"], 4);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"], "web:2",
        "the template stays; the pods are the old ReplicaSet's"
    );
    let message = status(&fake)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("traffic is back on stable"), "{message}");
    controller.stop().await;
    Switched { during, after }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_post_promotion_analysis_switches_back_through_every_router() {
    // The Service's selector.
    let s = switch_and_roll_back(json!({"selector": {}}), None, services(), "web").await;
    assert_eq!(
        s.during["spec"]["selector"],
        json!({"app": "web", "vigil.dev/canary": "true"})
    );
    assert!(
        s.after["spec"]["selector"]["pod-template-hash"].is_string(),
        "back on the old pods: {}",
        s.after["spec"]["selector"]
    );

    // ingress-nginx: the canary Ingress at 100, then gone.
    let s = switch_and_roll_back(
        json!({"nginx": {"ingress": "web"}}),
        None,
        ingresses(),
        "web-canary",
    )
    .await;
    assert_eq!(
        s.during["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "100"
    );
    assert_eq!(s.after, Value::Null);

    // Gateway API: the HTTPRoute's backends at 0/100, then as they were.
    let route = http_route();
    let s = switch_and_roll_back(
        json!({"gatewayAPI": {"httpRoute": "web"}}),
        Some((http_routes(), route.clone())),
        http_routes(),
        "web",
    )
    .await;
    let backends = &s.during["spec"]["rules"][0]["backendRefs"];
    assert_eq!(
        (&backends[0]["weight"], &backends[1]["name"]),
        (&json!(0), &json!("web-preview"))
    );
    assert_eq!(backends[1]["weight"], 100);
    assert_eq!(s.after["spec"]["rules"], route["spec"]["rules"]);

    // Istio: the VirtualService's route weights at 0/100, then as they were.
    let vs = virtual_service();
    let s = switch_and_roll_back(
        json!({"istio": {"virtualService": "web"}}),
        Some((virtual_services(), vs.clone())),
        virtual_services(),
        "web",
    )
    .await;
    let route = &s.during["spec"]["http"][0]["route"];
    assert_eq!(
        (&route[0]["weight"], &route[1]["weight"]),
        (&json!(0), &json!(100))
    );
    assert_eq!(route[1]["destination"]["host"], "web-preview");
    assert_eq!(s.after["spec"]["http"], vs["spec"]["http"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_judged_on_mirrored_requests_then_switched_through_istio() {
    let vs = virtual_service();
    let mut extra = blue_green(json!({"istio": {"virtualService": "web"}}), true);
    extra["blueGreen"]["mirror"] = json!({"percent": 50});
    extra["blueGreen"]["autoPromotion"] = json!(true);
    let (_prom, fake, controller) = adopted(0.02, 0.1, extra).await;
    fake.put_object(&virtual_services(), vs.clone());
    release(&fake, "web:2").await;
    wait_succeeded(&fake).await;
    controller.stop().await;
    let states: Vec<Value> = fake
        .history(&virtual_services(), NS, "web")
        .into_iter()
        .flatten()
        .map(|s| s["spec"]["http"][0].clone())
        .collect();
    let mirrored = states
        .iter()
        .position(|h| h["mirrors"][0]["percentage"]["value"] == 50)
        .unwrap_or_else(|| panic!("the preview got half the requests' copies: {states:#?}"));
    assert_eq!(
        states[mirrored]["mirrors"][0]["destination"]["host"],
        "web-preview"
    );
    assert!(
        states[mirrored]["route"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["destination"]["host"] == "web" || r["weight"].as_i64().unwrap_or(0) == 0),
        "no user on the preview while mirroring: {:#}",
        states[mirrored]
    );
    let switched = states
        .iter()
        .position(|h| h["route"][1]["weight"] == 100)
        .unwrap_or_else(|| panic!("the switch: {states:#?}"));
    assert!(switched > mirrored);
    assert_eq!(
        states[switched]["mirrors"],
        Value::Null,
        "the mirror went first"
    );
    assert_eq!(
        fake.get(&virtual_services(), NS, "web").unwrap()["spec"]["http"],
        vs["spec"]["http"]
    );
}
