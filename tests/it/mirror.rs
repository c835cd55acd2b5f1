//! Mirror steps through the controller, against the fake Kubernetes API server and a real
//! Prometheus holding synthetic history (the harness of `controller.rs`): each router's mirror
//! set while the canary serves no user, removed when users' traffic begins, and removed by an
//! abort.

use crate::common::controller::*;
use crate::common::fake_kube::{FakeKube, Res};
use serde_json::{Value, json};
use std::time::Duration;

/// Steps: mirror `percent`, then 50% and 100% of users' traffic.
fn mirror_then_weights(routing: Value, percent: u8) -> Value {
    json!({
        "routing": routing,
        "stepWeights": [],
        "steps": [{"mirror": {"percent": percent}}, {"weight": 50}, {"weight": 100}],
    })
}

/// Runs a release of web:2 through `routing` with the router's `object` in the cluster, until
/// `phase`; returns every state the object (`res`, `name`) had, and the fake server.
async fn mirrored_release(
    error_rate: f64,
    routing: Value,
    percent: u8,
    (res, name, object): (Res, &str, Option<Value>),
    phase: &'static str,
) -> (Vec<Value>, FakeKube) {
    let (_prom, fake, controller) =
        adopted(error_rate, 0.1, mirror_then_weights(routing, percent)).await;
    if let Some(object) = object {
        fake.put_object(&res, object);
    }
    release(&fake, "web:2").await;
    wait_for(&fake, phase, Duration::from_secs(60), phase_is(phase)).await;
    controller.stop().await;
    let states = fake
        .history(&res, NS, name)
        .into_iter()
        .map(|s| s.unwrap_or(Value::Null))
        .collect();
    (states, fake)
}

/// The position of the first state that passes `check`, failing with every state.
fn first(states: &[Value], what: &str, check: impl Fn(&Value) -> bool) -> usize {
    states
        .iter()
        .position(check)
        .unwrap_or_else(|| panic!("no state where {what}: {states:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_mirrors_a_share_then_splits_and_restores_the_virtual_service() {
    let vs = virtual_service();
    let (states, fake) = mirrored_release(
        0.02,
        json!({"istio": {"virtualService": "web"}}),
        50,
        (virtual_services(), "web", Some(vs.clone())),
        "Succeeded",
    )
    .await;
    let http = |s: &Value| s["spec"]["http"][0].clone();
    let mirrored = first(&states, "half is mirrored", |s| {
        http(s)["mirrors"][0]["percentage"]["value"] == 50
    });
    let m = http(&states[mirrored]);
    assert_eq!(
        m["mirrors"][0]["destination"]["host"], "web-canary",
        "{m:#}"
    );
    assert!(
        m["route"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["destination"]["host"] == "web" || r["weight"].as_i64().unwrap_or(0) == 0),
        "no user is routed to the canary while mirroring: {m:#}"
    );
    let split = first(&states, "users' traffic is split 50/50", |s| {
        http(s)["route"][1]["weight"] == 50
    });
    assert!(split > mirrored);
    assert_eq!(
        http(&states[split])["mirrors"],
        Value::Null,
        "the mirror goes when users reach the canary"
    );
    assert_eq!(
        fake.get(&virtual_services(), NS, "web").unwrap()["spec"]["http"],
        vs["spec"]["http"],
        "restored exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_mirrors_with_a_request_mirror_filter() {
    let route = http_route();
    let (states, fake) = mirrored_release(
        0.02,
        json!({"gatewayAPI": {"httpRoute": "web"}}),
        20,
        (http_routes(), "web", Some(route.clone())),
        "Succeeded",
    )
    .await;
    let rule = |s: &Value| s["spec"]["rules"][0].clone();
    let mirrored = first(&states, "a fifth is mirrored", |s| {
        rule(s)["filters"][0]["requestMirror"]["percent"] == 20
    });
    let r = rule(&states[mirrored]);
    assert_eq!(r["filters"][0]["type"], "RequestMirror");
    assert_eq!(
        r["filters"][0]["requestMirror"]["backendRef"]["name"], "web-canary",
        "{r:#}"
    );
    let split = first(&states, "users' traffic is split", |s| {
        rule(s)["backendRefs"][1]["weight"] == 50
    });
    assert!(split > mirrored);
    assert_eq!(
        rule(&states[split])["filters"],
        Value::Null,
        "{:#}",
        states[split]
    );
    assert_eq!(
        fake.get(&http_routes(), NS, "web").unwrap()["spec"]["rules"],
        route["spec"]["rules"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_while_mirroring_removes_the_nginx_mirror() {
    let (states, fake) = mirrored_release(
        0.10,
        json!({"nginx": {"ingress": "web"}}),
        100,
        (ingresses(), "web", None),
        "Failed",
    )
    .await;
    let target = |s: &Value| {
        s["metadata"]["annotations"]["nginx.ingress.kubernetes.io/mirror-target"].clone()
    };
    let mirrored = first(&states, "the stable Ingress mirrors", |s| {
        target(s).is_string()
    });
    assert_eq!(
        target(&states[mirrored]),
        json!("http://web-canary.shop.svc.cluster.local:80$request_uri")
    );
    assert_eq!(
        target(&fake.get(&ingresses(), NS, "web").unwrap()),
        Value::Null,
        "the abort removed the mirror"
    );
    let weights: Vec<Value> = fake
        .history(&ingresses(), NS, "web-canary")
        .into_iter()
        .flatten()
        .map(|i| i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"].clone())
        .collect();
    assert!(
        weights.iter().all(|w| w.is_null() || w == "0"),
        "no user reached the canary: {weights:?}"
    );
    let message = status(&fake)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("step 1/3"), "{message}");
}
