//! `POST /v1/alerts` and `POST /v1/releases/...` over real HTTP on loopback: a real
//! Alertmanager delivers an alert to vigil's server, which aborts the matching canary in the
//! fake cluster; bad requests are refused and change nothing.

use crate::common::controller::*;
use crate::common::fake_kube::{FakeKube, Res};
use crate::common::{self, PromServer, free_port, openmetrics, require};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::api::crd::Release;
use vigil::runtime::metrics::Metrics;
use vigil::runtime::server::{ApiState, AuthConfig, ServerState};
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

const TOKEN: &str = "t0ken-for-tests";
const SECRET: &str = "hmac-secret-for-tests";
/// The body limit of the server under test.
const LIMIT: usize = 64 * 1024;

/// vigil's HTTP server, in-process on a free loopback port; stopped on drop.
struct Vigil {
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Vigil {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_vigil(fake: &FakeKube, prometheus: &str, auth: AuthConfig) -> Vigil {
    let source =
        Arc::new(Prometheus::new(PrometheusConfig::new(prometheus)).expect("prometheus client"));
    let mut api = ApiState::new(fake.client(), source, auth);
    api.body_limit = LIMIT;
    let state = ServerState::new(Arc::new(Metrics::new())).with_api(api);
    let (url, task) = common::serve_on_loopback(state).await;
    Vigil { url, task }
}

fn both() -> AuthConfig {
    AuthConfig {
        token: Some(TOKEN.into()),
        hmac_secret: Some(SECRET.as_bytes().to_vec()),
        insecure_no_auth: false,
        read_token: None,
    }
}

/// A real Alertmanager routing every alert to `receiver` with the bearer token; killed on
/// drop.
struct Alertmanager {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start(receiver: &str) -> Alertmanager {
        let binary = require("prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: vigil\n  group_by: [alertname, namespace]\n  group_wait: 100ms\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: vigil\n    webhook_configs:\n      \
                 - url: {receiver}\n        send_resolved: true\n        http_config:\n          \
                 authorization:\n            credentials: {TOKEN}\n"
            ),
        )
        .expect("write config");
        let port = free_port();
        let log_path = dir.path().join("alertmanager.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager");
        let mut am = Alertmanager {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("alertmanager exited ({status}); its log:\n{log}");
            }
            if let Ok(true) = common::http::blocking_get(&format!("{}/-/ready", am.url)) {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager did not become ready; its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alert_labels() -> Value {
    json!({
        "alertname": "HighErrorRate",
        "severity": "critical",
        "namespace": NS,
        "service": "web"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_alert_aborts_the_matching_canary() {
    let prom = PromServer::start(&openmetrics(&versions(0.02, 0.1)));
    let fake = FakeKube::start().await;
    setup(&fake, json!({}));
    let clock = clock();
    let controller = start_adopting(&fake, &prom.url, clock).await;
    release(&fake, "web:2").await;
    wait_for(&fake, "the first step", Duration::from_secs(20), |s| {
        s["weight"] == 10
    })
    .await;
    // Stop the controller so that the request the alert writes can be seen before it acts.
    controller.stop().await;
    assert_eq!(status(&fake)["phase"], "Progressing");

    let vigil = start_vigil(&fake, &prom.url, both()).await;
    let am = Alertmanager::start(&format!("{}/v1/alerts", vigil.url));
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([{
            "labels": alert_labels(),
            "annotations": {"summary": "5xx above 5% on web"},
            "generatorURL": "http://prometheus.example/graph"
        }]))
        .send()
        .await
        .expect("post to alertmanager");
    assert!(sent.status().is_success(), "{:?}", sent.text().await);

    wait_for(&fake, "the abort request", Duration::from_secs(20), |s| {
        s["request"]["action"] == "abort"
    })
    .await;
    let reason = status(&fake)["request"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        reason,
        "alert HighErrorRate firing (namespace=shop, service=web, severity=critical): 5xx above 5% on web"
    );

    // The controller's next reconcile aborts and says why.
    let controller = Controller::start(&fake, &prom.url, clock);
    wait_for(
        &fake,
        "the abort",
        Duration::from_secs(20),
        phase_is("Failed"),
    )
    .await;
    let s = status(&fake);
    let message = s["message"].as_str().unwrap_or_default();
    assert!(message.contains("alert HighErrorRate firing"), "{message}");
    assert!(s["request"].is_null(), "the request is cleared: {s}");
    assert_eq!(s["weight"], 0);
    fake.wait_until("the Aborted event naming the alert", |f| {
        f.list(&Res::new("events.k8s.io", "v1", "events"), Some(NS))
            .iter()
            .any(|e| {
                e["reason"] == "Aborted"
                    && e["note"]
                        .as_str()
                        .is_some_and(|n| n.contains("HighErrorRate"))
            })
    })
    .await;
    controller.stop().await;
}

/// The fake cluster with Release `shop/web` in flight (no controller needed).
async fn in_flight() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.register::<Release>();
    fake.put_object(
        &releases(),
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "targetRef": {"name": "web"},
                "service": {"name": "web"},
                "routing": {"replicas": {}},
                "stepWeights": [10, 50, 100]
            },
            "status": {"phase": "Progressing", "weight": 10, "currentStep": 0, "steps": 3}
        }),
    );
    fake
}

fn webhook(status: &str, labels: Value) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "vigil",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "5xx above 5%"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "5xx above 5%"},
            "startsAt": "2026-09-21T13:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "1a30ba71cca2921f"
        }]
    })
}

struct Sent {
    status: u16,
    body: Value,
}

async fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Sent {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Sent { status, body }
}

/// Request headers.
type Headers = Vec<(&'static str, String)>;

fn bearer(token: &str) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

fn signed(body: &[u8], at: i64) -> Headers {
    vec![
        ("x-vigil-timestamp", at.to_string()),
        (
            "x-vigil-signature",
            vigil::signature::sign(SECRET.as_bytes(), at, body),
        ),
    ]
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_alert_requests_are_refused_and_change_nothing() {
    let fake = in_flight().await;
    let vigil = start_vigil(&fake, "http://127.0.0.1:9", both()).await;
    let url = format!("{}/v1/alerts", vigil.url);
    let firing = serde_json::to_vec(&webhook("firing", alert_labels())).expect("json");
    fake.clear_requests();

    let cases: Vec<(&str, Headers, Vec<u8>, u16, &str)> = vec![
        (
            "invalid JSON",
            bearer(TOKEN),
            b"{\"version\": \"4\",".to_vec(),
            400,
            "invalid JSON",
        ),
        (
            "wrong schema",
            bearer(TOKEN),
            br#"{"version":"4","status":"firing"}"#.to_vec(),
            400,
            "wrong schema",
        ),
        (
            "wrong version",
            bearer(TOKEN),
            serde_json::to_vec(&{
                let mut w = webhook("firing", alert_labels());
                w["version"] = json!("3");
                w
            })
            .expect("json"),
            400,
            "version",
        ),
        (
            "no credentials",
            vec![],
            firing.clone(),
            401,
            "no credentials",
        ),
        (
            "wrong token",
            bearer("guess"),
            firing.clone(),
            401,
            "wrong bearer token",
        ),
        (
            "bad signature",
            vec![
                ("x-vigil-timestamp", now().to_string()),
                (
                    "x-vigil-signature",
                    vigil::signature::sign(b"guess", now(), &firing),
                ),
            ],
            firing.clone(),
            401,
            "does not match",
        ),
        (
            "stale timestamp",
            signed(&firing, now() - 600),
            firing.clone(),
            401,
            "away from",
        ),
        (
            "oversized body",
            bearer(TOKEN),
            {
                let mut big = firing.clone();
                big.truncate(big.len() - 1);
                big.extend(format!(",\"padding\":\"{}\"}}", "x".repeat(LIMIT)).bytes());
                big
            },
            413,
            "too large",
        ),
    ];
    for (what, headers, body, want, error) in cases {
        let sent = post(&url, &headers, body).await;
        assert_eq!(sent.status, want, "{what}: {}", sent.body);
        let text = sent.body["error"].as_str().unwrap_or_default();
        assert!(text.contains(error), "{what}: {error:?} in {}", sent.body);
        assert!(sent.body["hint"].is_string(), "{what}: {}", sent.body);
    }

    // Accepted, but nothing to abort: an unknown canary, a resolved alert.
    let unknown = serde_json::to_vec(&webhook(
        "firing",
        json!({"alertname": "HighErrorRate", "namespace": NS, "service": "nope"}),
    ))
    .expect("json");
    let sent = post(&url, &bearer(TOKEN), unknown).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["unmatched"], json!(["HighErrorRate"]));
    assert_eq!(sent.body["aborted"], json!([]));
    let resolved = serde_json::to_vec(&webhook("resolved", alert_labels())).expect("json");
    let signature = signed(&resolved, now());
    let sent = post(&url, &signature, resolved.clone()).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["resolved"], 1);
    assert_eq!(sent.body["aborted"], json!([]));
    // The same signed request again is a replay.
    let sent = post(&url, &signature, resolved).await;
    assert_eq!(sent.status, 401, "{}", sent.body);
    assert!(
        sent.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("replay")
    );

    let writes = fake.writes();
    assert!(writes.is_empty(), "refused requests wrote {writes:?}");
    assert!(status(&fake)["request"].is_null());

    // A correctly signed firing alert does abort.
    let sent = post(&url, &signed(&firing, now()), firing.clone()).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["aborted"][0]["name"], "web");
    let request = &status(&fake)["request"];
    assert_eq!(request["action"], "abort");
    assert!(
        request["reason"].as_str().unwrap_or_default().starts_with(
            "alert HighErrorRate firing (namespace=shop, service=web, severity=critical)"
        ),
        "{request}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_api_is_closed_unless_opened_explicitly() {
    let fake = in_flight().await;
    let firing = serde_json::to_vec(&webhook("firing", alert_labels())).expect("json");
    let closed = start_vigil(&fake, "http://127.0.0.1:9", AuthConfig::default()).await;
    let sent = post(
        &format!("{}/v1/alerts", closed.url),
        &bearer(TOKEN),
        firing.clone(),
    )
    .await;
    assert_eq!(sent.status, 503, "{}", sent.body);
    assert!(
        sent.body["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("--api-token-file")
    );
    assert!(fake.writes().is_empty());
    let open = start_vigil(
        &fake,
        "http://127.0.0.1:9",
        AuthConfig {
            insecure_no_auth: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let sent = post(&format!("{}/v1/alerts", open.url), &[], firing).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(status(&fake)["request"]["action"], "abort");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_actions_for_ci_and_chatops() {
    let fake = in_flight().await;
    let vigil = start_vigil(&fake, "http://127.0.0.1:9", both()).await;
    let action = |a: &str| format!("{}/v1/releases/{NS}/web/{a}", vigil.url);
    let spec = |fake: &FakeKube| fake.get(&releases(), NS, "web").expect("canary")["spec"].clone();

    // Refused without credentials, and nothing changes.
    fake.clear_requests();
    assert_eq!(post(&action("pause"), &[], vec![]).await.status, 401);
    assert_eq!(
        post(&action("pause"), &bearer("guess"), vec![])
            .await
            .status,
        401
    );
    assert!(fake.writes().is_empty());

    let sent = post(&action("pause"), &bearer(TOKEN), vec![]).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["changed"], true);
    assert_eq!(spec(&fake)["paused"], true);
    let sent = post(&action("resume"), &bearer(TOKEN), vec![]).await;
    assert_eq!((sent.status, &sent.body["paused"]), (202, &json!(false)));
    assert_eq!(spec(&fake)["paused"], false);

    let body = br#"{"full": true}"#.to_vec();
    let sent = post(&action("promote"), &signed(&body, now()), body).await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(status(&fake)["request"]["action"], "promoteFull");

    let sent = post(
        &action("abort"),
        &bearer(TOKEN),
        br#"{"reason": "error budget burnt"}"#.to_vec(),
    )
    .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["replaced"]["action"], "promoteFull");
    assert_eq!(status(&fake)["request"]["reason"], "error budget burnt");
    let sent = post(&action("abort"), &bearer(TOKEN), vec![]).await;
    assert_eq!(
        sent.body["request"]["reason"],
        "aborted through the vigil API"
    );

    // Errors.
    let sent = post(
        &format!("{}/v1/releases/{NS}/nope/abort", vigil.url),
        &bearer(TOKEN),
        vec![],
    )
    .await;
    assert_eq!(sent.status, 404, "{}", sent.body);
    assert_eq!(
        post(&action("rewind"), &bearer(TOKEN), vec![]).await.status,
        404
    );
    assert_eq!(
        post(
            &action("promote"),
            &bearer(TOKEN),
            b"{\"fast\": 1}".to_vec()
        )
        .await
        .status,
        400
    );
    let mut waiting = fake.get(&releases(), NS, "web").expect("canary");
    waiting["status"] = json!({"phase": "Waiting"});
    fake.put_object(&releases(), waiting);
    let sent = post(&action("promote"), &bearer(TOKEN), vec![]).await;
    assert_eq!(sent.status, 409, "{}", sent.body);
    assert!(
        sent.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing to promote")
    );
}
