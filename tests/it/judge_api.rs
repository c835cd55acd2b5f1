//! `POST /v1/judge` and `/v1/judge/flagger/{hook}` over real HTTP on loopback, against a
//! real Prometheus loaded with synthetic history: the same JSON as `vigil judge --output
//! json` for the same inputs, and the statuses Flagger and Argo Rollouts read as vigil
//! means them, for request bodies built as their sources build them.

use crate::common::fake_kube::{FakeKube, Res};
use crate::common::{self, PromServer, T_END, Version, judge, openmetrics};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vigil::api::crd::ReleaseAnalysis;
use vigil::runtime::metrics::Metrics;
use vigil::runtime::server::{ApiState, AuthConfig, ServerState};
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

const TEMPLATE: &str = "analysis-templates/http-prometheus-client.yaml";
const STABLE: &str = "version=\"v1\"";
const CANARY: &str = "version=\"v2\"";
const TOKEN: &str = "judge-token";
const NS: &str = "shop";

fn v(job: &'static str, version: &'static str, rps: f64, error_rate: f64, seed: u64) -> Version {
    Version {
        job,
        version,
        rps,
        error_rate,
        latency_median: 0.08,
        seed,
        regression: None,
    }
}

/// checkout: the canary's error rate is x5 (fail); search: identical versions (pass);
/// quiet: too few requests to tell (inconclusive).
fn history() -> String {
    openmetrics(&[
        v("checkout", "v1", 180.0, 0.005, 1),
        v("checkout", "v2", 20.0, 0.025, 2),
        v("search", "v1", 180.0, 0.005, 3),
        v("search", "v2", 20.0, 0.005, 4),
        v("quiet", "v1", 0.05, 0.005, 5),
        v("quiet", "v2", 0.02, 0.005, 6),
    ])
}

struct Api {
    url: String,
    slots: Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(fake: &FakeKube, prometheus: &str) -> Api {
    let source =
        Arc::new(Prometheus::new(PrometheusConfig::new(prometheus)).expect("prometheus client"));
    let auth = AuthConfig {
        token: Some(TOKEN.into()),
        ..AuthConfig::default()
    };
    let mut api = ApiState::new(fake.client(), source, auth);
    api.judge_wait = Duration::from_millis(200);
    let slots = api.judge_slots.clone();
    let state = ServerState::new(Arc::new(Metrics::new())).with_api(api);
    let (url, task) = common::serve_on_loopback(state).await;
    Api { url, slots, task }
}

/// The fake cluster holding the template as an ReleaseAnalysis in `shop`.
async fn cluster() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.register::<ReleaseAnalysis>();
    let mut template = template_document();
    template["metadata"]["namespace"] = json!(NS);
    fake.put_object(
        &Res::new("vigil.dev", "v1alpha1", "releaseanalyses"),
        template,
    );
    fake
}

fn template_document() -> Value {
    let text = std::fs::read_to_string(common::root().join(TEMPLATE)).expect("read template");
    serde_saphyr::from_str(&text).expect("template YAML")
}

/// The body judging `job` over the window `common::judge` uses.
fn body(template: Value, job: &str) -> Value {
    let start = chrono::DateTime::from_timestamp(T_END - 3000, 0).expect("time");
    json!({
        "template": template,
        "namespace": NS,
        "args": {"job": job},
        "stable": STABLE,
        "canary": CANARY,
        "start": start.to_rfc3339(),
        "end": T_END.to_string(),
        "step": "1m"
    })
}

async fn post(url: &str, token: &str, body: &Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn cli(prometheus: &str, job: &str) -> (Option<i32>, String) {
    let out = judge(
        prometheus,
        TEMPLATE,
        job,
        STABLE,
        CANARY,
        &["--output", "json"],
    );
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_returns_the_cli_json_for_the_same_inputs() {
    let prom = PromServer::start(&history());
    let fake = cluster().await;
    let api = start(&fake, &prom.url).await;
    let judge_url = format!("{}/v1/judge", api.url);
    for (job, exit, status) in [("checkout", 1, 422), ("search", 0, 200)] {
        let (code, expected) = cli(&prom.url, job);
        assert_eq!(code, Some(exit), "{job}: {expected}");
        let report: Value = serde_json::from_str(&expected).expect("CLI JSON");
        // By name from the cluster, and inline: byte for byte the CLI's output, 200.
        for template in [json!("http-prometheus-client"), template_document()] {
            let (got_status, got) = post(&judge_url, TOKEN, &body(template, job)).await;
            assert_eq!(got_status, 200, "{job}: {got}");
            assert_eq!(got, expected, "{job}");
        }
        // With ?httpStatus=true the status tells the verdict.
        let (got_status, got) = post(
            &format!("{judge_url}?httpStatus=true"),
            TOKEN,
            &body(json!("http-prometheus-client"), job),
        )
        .await;
        assert_eq!((got_status, &got), (status, &expected), "{job}");
        // Flagger's webhook: metadata strings, the status always tells.
        let start = (T_END - 3000).to_string();
        let hook = json!({
            "name": "web", "namespace": NS, "phase": "Progressing", "checksum": "abc",
            "metadata": {
                "template": "http-prometheus-client", "stable": STABLE, "canary": CANARY,
                "arg.job": job, "start": start, "end": T_END.to_string(), "step": "1m"
            }
        });
        let (got_status, got) = post(&format!("{judge_url}/flagger/rollout"), TOKEN, &hook).await;
        assert_eq!((got_status, &got), (status, &expected), "{job} (flagger)");
        // Flagger cannot send headers: the token in the metadata.
        for (token, want) in [(TOKEN, status), ("guess", 401)] {
            let mut with_token = hook.clone();
            with_token["metadata"]["token"] = json!(token);
            let response = reqwest::Client::new()
                .post(format!("{judge_url}/flagger/rollout"))
                .json(&with_token)
                .send()
                .await
                .expect("send");
            assert_eq!(
                response.status().as_u16(),
                want,
                "{job} (metadata.token {token})"
            );
        }
        assert_eq!(
            report["verdict"],
            if exit == 0 { "pass" } else { "fail" },
            "{job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_what_it_cannot_judge() {
    let prom = PromServer::start(&history());
    let fake = cluster().await;
    let api = start(&fake, &prom.url).await;
    let judge_url = format!("{}/v1/judge", api.url);
    let good = body(json!("http-prometheus-client"), "search");

    let (status, text) = post(&judge_url, "guess", &good).await;
    assert_eq!(status, 401, "{text}");
    let mut missing = good.clone();
    missing["template"] = json!("nope");
    let (status, text) = post(&judge_url, TOKEN, &missing).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("ReleaseAnalysis shop/nope not found"),
        "{text}"
    );
    let mut unknown_arg = good.clone();
    unknown_arg["args"]["colour"] = json!("blue");
    let (status, text) = post(&judge_url, TOKEN, &unknown_arg).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("colour"), "{text}");
    let mut no_window = good.clone();
    no_window.as_object_mut().expect("object").remove("start");
    let (status, text) = post(&judge_url, TOKEN, &no_window).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = post(&judge_url, TOKEN, &json!({"template": 3})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("wrong schema"), "{text}");

    // Every slot taken: the judgement waits, then gets 503 with Retry-After.
    let held = api
        .slots
        .clone()
        .acquire_many_owned(vigil::runtime::server::DEFAULT_JUDGE_SLOTS as u32)
        .await
        .expect("slots");
    let response = reqwest::Client::new()
        .post(&judge_url)
        .bearer_auth(TOKEN)
        .json(&good)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    drop(held);
    assert_eq!(post(&judge_url, TOKEN, &good).await.0, 200);

    // Prometheus down: the CLI exits 4 (cannot run); the API's status says 503.
    let down = start(&fake, "http://127.0.0.1:9").await;
    let (status, text) = post(
        &format!("{}/v1/judge?httpStatus=true", down.url),
        TOKEN,
        &good,
    )
    .await;
    assert_eq!(status, 503, "{text}");
    let report: Value = serde_json::from_str(&text).expect("a report");
    assert_eq!(report["metrics"][0]["outcome"], "error", "{report:#}");
    let (code, _) = cli("http://127.0.0.1:9", "search");
    assert_eq!(code, Some(4));
}

/// Flagger's webhook body as its `CallWebhook` marshals a `CanaryWebhookPayload`: the
/// fields in that order, `metadata` the webhook's (strings), and `Content-Type:
/// application/json`; no other header (Flagger cannot set one), so the token is in the
/// metadata.
fn flagger_body(phase: &str, job: &str, extra: &[(&str, &str)]) -> String {
    let mut metadata = serde_json::Map::new();
    for (k, v) in extra {
        metadata.insert((*k).to_string(), json!(v));
    }
    for (k, v) in [
        ("template", "http-prometheus-client".to_string()),
        ("stable", STABLE.to_string()),
        ("canary", CANARY.to_string()),
        ("arg.job", job.to_string()),
        ("start", (T_END - 3000).to_string()),
        ("end", T_END.to_string()),
        ("step", "1m".to_string()),
        ("token", TOKEN.to_string()),
    ] {
        metadata.entry(k).or_insert(json!(v));
    }
    format!(
        r#"{{"name":"web","namespace":"{NS}","phase":"{phase}","checksum":"5d8f9c7b6a","metadata":{}}}"#,
        Value::Object(metadata)
    )
}

async fn flagger_post(url: &str, body: String) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flagger_hook_answers_what_flagger_makes_of_it() {
    let prom = PromServer::start(&history());
    let fake = cluster().await;
    let api = start(&fake, &prom.url).await;
    let flagger = format!("{}/v1/judge/flagger", api.url);
    // (job, verdict, [rollout, confirm-traffic-increase, confirm-promotion, rollback])
    for (job, verdict, statuses) in [
        ("checkout", "fail", [422, 422, 422, 200]),
        ("search", "pass", [200, 200, 200, 409]),
        ("quiet", "inconclusive", [200, 409, 409, 409]),
    ] {
        for (hook, want) in [
            "rollout",
            "confirm-traffic-increase",
            "confirm-promotion",
            "rollback",
        ]
        .into_iter()
        .zip(statuses)
        {
            // Flagger sends these with the phase Progressing.
            let (status, _, text) = flagger_post(
                &format!("{flagger}/{hook}"),
                flagger_body("Progressing", job, &[]),
            )
            .await;
            assert_eq!(status, want, "{job} {hook}: {text}");
            let report: Value = serde_json::from_str(&text).expect("a report");
            assert_eq!(report["verdict"], verdict, "{job} {hook}");
        }
        // The deprecated route judges as `rollout`, and says so.
        let (status, headers, text) =
            flagger_post(&flagger, flagger_body("Progressing", job, &[])).await;
        assert_eq!(status, statuses[0], "{job} (deprecated): {text}");
        assert_eq!(headers["deprecation"], "true");
        let warning = headers["warning"].to_str().expect("ascii");
        assert!(warning.contains("/v1/judge/flagger/rollout"), "{warning}");
    }

    // Hooks at weight 0, after the rollout, or informational: 400 naming what to use.
    let event_metadata = [
        ("eventMessage", "New revision detected! Scaling up web.shop"),
        ("eventType", "Normal"),
        ("timestamp", "1789999999000"),
    ];
    for (hook, phase, extra) in [
        ("pre-rollout", "Progressing", &[][..]),
        ("confirm-rollout", "Waiting", &[][..]),
        ("post-rollout", "Succeeded", &[][..]),
        ("event", "Progressing", &event_metadata[..]),
    ] {
        let (status, _, text) = flagger_post(
            &format!("{flagger}/{hook}"),
            flagger_body(phase, "search", extra),
        )
        .await;
        assert_eq!(status, 400, "{hook}: {text}");
        let error: Value = serde_json::from_str(&text).expect("an error");
        assert!(
            error["error"].as_str().expect("error").contains(hook),
            "{error}"
        );
        assert!(
            error["hint"]
                .as_str()
                .expect("hint")
                .contains("/v1/judge/flagger/rollout"),
            "{error}"
        );
    }
    // An unknown type is not found, and the answer lists the known ones.
    let (status, _, text) = flagger_post(
        &format!("{flagger}/rolout"),
        flagger_body("Progressing", "search", &[]),
    )
    .await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("confirm-promotion"), "{text}");

    // Prometheus down: no evidence. A rollout check does not fail; the confirmations hold
    // (503, and Flagger counts no failure); a rollback hook does not roll back.
    let down = start(&fake, "http://127.0.0.1:9").await;
    for (hook, want) in [
        ("rollout", 200),
        ("confirm-traffic-increase", 503),
        ("confirm-promotion", 503),
        ("rollback", 409),
    ] {
        let (status, _, text) = flagger_post(
            &format!("{}/v1/judge/flagger/{hook}", down.url),
            flagger_body("Progressing", "search", &[]),
        )
        .await;
        assert_eq!(status, want, "{hook} (Prometheus down): {text}");
    }
}

/// The measurement phase Argo Rollouts' `evaluate.EvaluateResult` gives a `web` metric's
/// result, for conditions of the form `result.verdict == "<v>"` (the only form the example
/// uses): both conditions set, so neither true is Inconclusive.
fn argo_phase(status: u16, result: &Value, success: &str, failure: &str) -> &'static str {
    // The web provider: a non-2xx answer is an Error measurement.
    if !(200..300).contains(&status) {
        return "Error";
    }
    let holds = |condition: &str| {
        let want = condition
            .strip_prefix("result.verdict == \"")
            .and_then(|c| c.strip_suffix('"'))
            .expect("a condition on result.verdict");
        result["verdict"] == want
    };
    match (holds(success), holds(failure)) {
        (_, true) => "Failed",
        (true, false) => "Successful",
        (false, false) => "Inconclusive",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_argo_example_makes_inconclusive_pause_the_rollout() {
    let text = std::fs::read_to_string(
        common::root().join("deploy/examples/argo-rollouts/vigil-judge.yaml"),
    )
    .expect("read the example");
    let template: Value = serde_saphyr::from_str(&text).expect("the example's YAML");
    let metric = &template["spec"]["metrics"][0];
    let success = metric["successCondition"]
        .as_str()
        .expect("successCondition");
    let failure = metric["failureCondition"]
        .as_str()
        .expect("failureCondition");
    // No inconclusive measurement is tolerated: the first one ends the run Inconclusive,
    // which pauses the Rollout.
    assert_eq!(metric["inconclusiveLimit"], json!(0), "{metric:#}");
    let web = &metric["provider"]["web"];
    assert_eq!(web["method"], "POST");
    let url = web["url"].as_str().expect("url");
    assert!(
        url.ends_with("/v1/judge"),
        "no ?httpStatus: Argo reads a non-2xx as an Error"
    );
    let timeout = web["timeoutSeconds"].as_u64().expect("timeoutSeconds");
    assert!(
        timeout > 30,
        "above the judge's queue wait (30 s): {timeout}"
    );

    let prom = PromServer::start(&history());
    let fake = cluster().await;
    let api = start(&fake, &prom.url).await;
    for (job, phase) in [
        ("checkout", "Failed"),
        ("search", "Successful"),
        ("quiet", "Inconclusive"),
    ] {
        // The jsonBody with Argo's arguments substituted, over the synthetic history's
        // window instead of a lookback from now; marshalled as Argo does, sent with the
        // example's headers and `Content-Type: application/json`.
        let mut body = web["jsonBody"].clone();
        body["args"]["job"] = json!(job);
        body["stable"] = json!(STABLE);
        body["canary"] = json!(CANARY);
        let object = body.as_object_mut().expect("an object");
        object.remove("lookback");
        object.insert("start".into(), json!((T_END - 3000).to_string()));
        object.insert("end".into(), json!(T_END.to_string()));
        let response = reqwest::Client::new()
            .post(format!("{}/v1/judge", api.url))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"))
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        let result: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("a report");
        assert_eq!(
            argo_phase(status, &result, success, failure),
            phase,
            "{job}: {result:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_judges_before_after_as_the_cli_does() {
    let prom = PromServer::start(&history());
    let fake = cluster().await;
    let api = start(&fake, &prom.url).await;
    let judge_url = format!("{}/v1/judge", api.url);
    // One selector for both sides: the stable series since `began`, against its own earlier
    // half hour (unchanged: a pass).
    let began = (T_END - 1500).to_string();
    let cli = common::vigil()
        .args(["judge", "--prometheus", &prom.url, "--template"])
        .arg(common::root().join(TEMPLATE))
        .args([
            "--arg",
            "job=search",
            "--stable",
            STABLE,
            "--canary",
            STABLE,
        ])
        .args([
            "--start",
            &began,
            "--end",
            &T_END.to_string(),
            "--step",
            "1m",
        ])
        .args(["--baseline-before", &began, "--output", "json"])
        .output()
        .expect("run vigil judge");
    let expected = String::from_utf8(cli.stdout).expect("utf-8");
    assert_eq!(cli.status.code(), Some(0), "{expected}");
    let report: Value = serde_json::from_str(&expected).expect("CLI JSON");
    assert!(report["baseline"].is_object(), "{report:#}");
    let mut request = body(json!("http-prometheus-client"), "search");
    request["canary"] = json!(STABLE);
    request["start"] = json!(began);
    request["baselineBefore"] = json!(began);
    let (status, got) = post(&judge_url, TOKEN, &request).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, expected, "byte for byte the CLI's");
    // A window reaching back before the new version began is refused, saying why.
    request["start"] = json!((T_END - 3000).to_string());
    let (status, got) = post(&judge_url, TOKEN, &request).await;
    assert_eq!(status, 400, "{got}");
    assert!(got.contains("before the new version began"), "{got}");
    // Without baselineBefore one selector for both sides is refused.
    request["start"] = json!(began);
    request.as_object_mut().unwrap().remove("baselineBefore");
    let (status, got) = post(&judge_url, TOKEN, &request).await;
    assert_eq!(status, 400, "{got}");
    assert!(got.contains("select the same series"), "{got}");
}
