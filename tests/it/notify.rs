//! Notifications over real HTTP on loopback: a local receiver records what each provider
//! sends; signatures are checked against independent computations in Python's `hmac`;
//! retries, the never-blocking queue, de-duplication, filters, and per-Release receivers
//! whose URL and secret come from a Secret in the fake API server.

use crate::common::fake_kube::{FakeKube, Res};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::api::crd::Release;
use vigil::cluster::reconciler::Observer;
use vigil::notify::config::{Filter, Rule, SecretSource, Target, resolve};
use vigil::notify::dispatcher::{DeliveryConfig, Dispatcher, Enqueued};
use vigil::notify::{EventName, Format, Notification, ProviderKind, Severity};
use vigil::rollout::{AnalysisRecord, Decision, Event, EventKind, Phase, World};
use vigil::runtime::metrics::Metrics;
use vigil::runtime::notifications::NotifyObserver;

// ---------------------------------------------------------------------------------------
// The receiver

#[derive(Debug, Clone)]
struct Recorded {
    /// Path and raw query, as received.
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
            .to_str()
            .unwrap()
            .to_string()
    }
    fn query(&self, key: &str) -> (String, String) {
        // (raw, decoded)
        let raw = self.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        for pair in raw.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k == key
            {
                let decoded = reqwest::Url::parse(&format!("http://x/?{pair}"))
                    .unwrap()
                    .query_pairs()
                    .next()
                    .unwrap()
                    .1
                    .into_owned();
                return (v.to_string(), decoded);
            }
        }
        panic!("no query parameter {key} in {}", self.uri)
    }
}

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    /// Never answer.
    hang: bool,
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    r.requests.lock().unwrap().push(Recorded {
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    if r.hang {
        std::future::pending::<()>().await;
    }
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), "ok".into())
}

impl Receiver {
    async fn start(script: &[u16], hang: bool) -> (Self, String) {
        let receiver = Receiver {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            hang,
            ..Receiver::default()
        };
        let app = axum::Router::new()
            .fallback(record)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (receiver, url)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (up to a generous bound, so a slow machine does not fail the test) until `n`
    /// requests have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        wait_until(&format!("{n} requests"), || self.requests().len() >= n).await;
        self.requests()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `vigil_notifications_total{provider,outcome}`, 0 when absent.
fn count(metrics: &Metrics, provider: &str, outcome: &str) -> u64 {
    let prefix =
        format!("vigil_notifications_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Independent computations

/// Runs a Python 3 program with arguments and returns its trimmed output.
fn python(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)
        .output()
        .expect("python3 is needed to check signatures independently");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// DingTalk: (base64 of HMAC-SHA256(secret, "ts\nsecret"), and that URL-encoded with
/// quote_plus), as DingTalk's Python sample computes it.
fn dingtalk_sign(secret: &str, timestamp: &str) -> (String, String) {
    let out = python(
        "import sys,hmac,hashlib,base64,urllib.parse\n\
         ts,secret=sys.argv[1],sys.argv[2]\n\
         b=base64.b64encode(hmac.new(secret.encode(),f'{ts}\\n{secret}'.encode(),hashlib.sha256).digest()).decode()\n\
         print(b, urllib.parse.quote_plus(b))",
        &[timestamp, secret],
    );
    let (b64, encoded) = out.split_once(' ').unwrap();
    (b64.to_string(), encoded.to_string())
}

/// Feishu: base64(HMAC-SHA256(key = "ts\nsecret", message = empty)).
fn feishu_sign(secret: &str, timestamp: &str) -> String {
    python(
        "import sys,hmac,hashlib,base64\n\
         ts,secret=sys.argv[1],sys.argv[2]\n\
         print(base64.b64encode(hmac.new(f'{ts}\\n{secret}'.encode(),b'',hashlib.sha256).digest()).decode())",
        &[timestamp, secret],
    )
}

/// The generic webhook: "sha256=" + hex HMAC-SHA256(secret, "ts." + body), the body read
/// from a file so that Python signs exactly the bytes received.
fn webhook_sign(secret: &str, timestamp: &str, body: &[u8], dir: &Path) -> String {
    let file = dir.join("body.json");
    std::fs::write(&file, body).unwrap();
    python(
        "import sys,hmac,hashlib\n\
         ts,secret,path=sys.argv[1],sys.argv[2],sys.argv[3]\n\
         body=open(path,'rb').read()\n\
         print('sha256='+hmac.new(secret.encode(),ts.encode()+b'.'+body,hashlib.sha256).hexdigest())",
        &[timestamp, secret, file.to_str().unwrap()],
    )
}

// ---------------------------------------------------------------------------------------
// Fixtures

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..DeliveryConfig::default()
    }
}

/// One delivery at a time: deliveries happen in the order they were queued.
fn sequential() -> DeliveryConfig {
    DeliveryConfig {
        concurrency: 1,
        ..fast()
    }
}

fn state() -> vigil::rollout::State {
    let at = chrono::Utc::now();
    vigil::api::status::StateV1alpha1 {
        phase: Phase::Progressing,
        canary_revision: Some("7d9f8c".into()),
        current_step: 1,
        steps: 4,
        weight: 25,
        started_at: Some(at - chrono::Duration::minutes(5)),
        analyses: vec![AnalysisRecord {
            at,
            step: 1,
            weight: 25,
            verdict: "fail".into(),
            summary: "http fail: error-rate 3.1% vs 0.4% (limit x1.5) | latency pass: score 97"
                .into(),
        }],
        ..Default::default()
    }
    .into()
}

fn notification(kind: EventKind, message: &str) -> Notification {
    Notification::new(
        "shop",
        "web",
        &Event {
            kind,
            message: message.into(),
        },
        &state(),
        None,
        chrono::Utc::now(),
    )
}

fn decision(events: &[(EventKind, &str)]) -> Decision {
    Decision {
        state: state(),
        world: World {
            stable_paused: true,
            stable_replicas: None,
            canary: None,
            weight: 25,
            matches: vec![],
            mirror: None,
            pin_stable: true,
            restore: None,
        },
        events: events
            .iter()
            .map(|(kind, message)| Event {
                kind: *kind,
                message: (*message).into(),
            })
            .collect(),
        requeue: Duration::from_secs(30),
        request_done: false,
        new_message: false,
    }
}

/// A target whose URL (and secret) are in files under `dir`.
fn file_target(
    dir: &Path,
    name: &str,
    provider: ProviderKind,
    url: &str,
    secret: Option<&str>,
) -> Target {
    let url_file = dir.join(format!("{name}-url"));
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let secret_file: Option<PathBuf> = secret.map(|s| {
        let f = dir.join(format!("{name}-secret"));
        std::fs::write(&f, s).unwrap();
        f
    });
    Target {
        provider,
        format: Format::Card,
        secrets: SecretSource::Files {
            url_file,
            secret_file,
        },
    }
}

fn canary(notifications: Value) -> Release {
    serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "targetRef": {"name": "web"},
            "service": {"name": "web"},
            "routing": {"replicas": {}},
            "notifications": notifications,
        },
        "status": {"report": "https://reports.example/shop/web/latest.html"},
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn every_provider_sends_the_shape_its_service_requires() {
    let (receiver, url) = Receiver::start(&[], false).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = sequential();
    let dispatcher = Dispatcher::start(config, None, Some(metrics.clone())).unwrap();
    let n = notification(
        EventKind::AnalysisFailed,
        "step 2/4: analysis failed (1 of 2)",
    );
    let providers = [
        (ProviderKind::Slack, "/slack", None),
        (ProviderKind::Teams, "/teams", None),
        (ProviderKind::Discord, "/discord", None),
        (
            ProviderKind::Dingtalk,
            "/robot/send?access_token=tok123",
            Some("SECdingtalk+/="),
        ),
        (
            ProviderKind::Feishu,
            "/open-apis/bot/v2/hook/abc",
            Some("feishu-secret"),
        ),
        (ProviderKind::Webhook, "/hook", Some("webhook-secret")),
    ];
    for (provider, path, secret) in providers {
        let target = file_target(
            dir.path(),
            provider.as_str(),
            provider,
            &format!("{url}{path}"),
            secret,
        );
        assert_eq!(dispatcher.enqueue(target, n.clone()), Enqueued::Queued);
    }
    let got = receiver.wait_for(6).await;
    let by = |prefix: &str| {
        got.iter()
            .find(|r| r.uri.starts_with(prefix))
            .unwrap()
            .clone()
    };
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json", "{}", r.uri);
    }

    // Slack: a fallback `text` and Block Kit blocks, each with a type.
    let slack = by("/slack").json();
    assert!(slack["text"].as_str().unwrap().contains("shop/web"));
    let blocks = slack["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    assert!(blocks.iter().all(|b| b["type"].is_string()));
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let all = slack.to_string();
    assert!(
        all.contains("error-rate 3.1%"),
        "the failed metric and its reason: {all}"
    );
    assert!(all.contains("kubectl vigil status web -n shop"), "{all}");

    // Teams: a message activity with one Adaptive Card attachment.
    let teams = by("/teams").json();
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert!(attachment["content"]["version"].is_string());
    assert!(
        attachment["content"]["body"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"].is_string())
    );
    assert!(teams.to_string().contains("error-rate 3.1%"));

    // Discord: embeds with a title, a description, an integer colour and named fields.
    let discord = by("/discord").json();
    let embeds = discord["embeds"].as_array().unwrap();
    assert!(!embeds.is_empty() && embeds.len() <= 10);
    assert!(embeds[0]["title"].as_str().unwrap().chars().count() <= 256);
    assert!(embeds[0]["color"].is_u64());
    for field in embeds[0]["fields"].as_array().unwrap() {
        assert!(
            field["name"].is_string() && field["value"].is_string(),
            "{field}"
        );
    }
    assert_eq!(discord["allowed_mentions"]["parse"], json!([]));

    // DingTalk: markdown, the token kept, and timestamp + sign as DingTalk computes them.
    let dingtalk = by("/robot/send");
    let body = dingtalk.json();
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"].is_string());
    assert!(
        body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("error-rate 3.1%")
    );
    assert_eq!(dingtalk.query("access_token").1, "tok123");
    let (ts, _) = dingtalk.query("timestamp");
    assert_eq!(ts.len(), 13, "milliseconds: {ts}");
    let (raw_sign, sign) = dingtalk.query("sign");
    let (expected_b64, expected_encoded) = dingtalk_sign("SECdingtalk+/=", &ts);
    assert_eq!(sign, expected_b64);
    assert_eq!(raw_sign, expected_encoded, "URL-encoded like quote_plus");

    // Feishu: an interactive card, with timestamp (seconds) and sign in the body.
    let feishu = by("/open-apis").json();
    assert_eq!(feishu["msg_type"], "interactive");
    assert!(feishu["card"]["header"]["title"]["content"].is_string());
    assert!(
        feishu["card"]["elements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tag"].is_string())
    );
    let ts = feishu["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 10, "seconds: {ts}");
    assert_eq!(
        feishu["sign"].as_str().unwrap(),
        feishu_sign("feishu-secret", ts)
    );

    // The generic webhook: versioned, signed over "<timestamp>.<body>".
    let hook = by("/hook");
    let body = hook.json();
    assert_eq!(body["apiVersion"], "vigil.dev/notification/v1");
    assert_eq!(body["kind"], "Notification");
    assert_eq!(body["event"], "analysis-failed");
    assert_eq!(body["severity"], "error");
    assert_eq!(
        (body["namespace"].as_str(), body["name"].as_str()),
        (Some("shop"), Some("web"))
    );
    assert_eq!(
        (body["step"].as_u64(), body["weight"].as_u64()),
        (Some(2), Some(25))
    );
    assert_eq!(body["analysis"]["verdict"], "fail");
    assert_eq!(
        body["analysis"]["reasons"][0],
        "http fail: error-rate 3.1% vs 0.4% (limit x1.5)"
    );
    let ts = hook.header("x-vigil-timestamp");
    assert_eq!(
        hook.header("x-vigil-signature"),
        webhook_sign("webhook-secret", &ts, &hook.body, dir.path())
    );
    assert_eq!(hook.header("x-vigil-event"), "analysis-failed");
    // The receiver side of the scheme accepts it once, then refuses the replay.
    let now: i64 = ts.parse().unwrap();
    let sig = hook.header("x-vigil-signature");
    assert_eq!(
        vigil::signature::verify(b"webhook-secret", &ts, &sig, &hook.body, now),
        Ok(now)
    );
    let cache = vigil::signature::ReplayCache::default();
    assert!(cache.first_use(&sig, now, now));
    assert!(!cache.first_use(&sig, now, now), "a replay");

    wait_until("6 sent", || {
        ["slack", "teams", "discord", "dingtalk", "feishu", "webhook"]
            .iter()
            .all(|p| count(&metrics, p, "sent") == 1)
    })
    .await;
}

#[tokio::test]
async fn feishu_text_format() {
    let (receiver, url) = Receiver::start(&[], false).await;
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Dispatcher::start(fast(), None, None).unwrap();
    let mut target = file_target(dir.path(), "feishu", ProviderKind::Feishu, &url, None);
    target.format = Format::Text;
    dispatcher.enqueue(
        target,
        notification(EventKind::Succeeded, "promoted 7d9f8c"),
    );
    let body = receiver.wait_for(1).await[0].json();
    assert_eq!(body["msg_type"], "text");
    assert!(
        body["content"]["text"]
            .as_str()
            .unwrap()
            .contains("promoted 7d9f8c")
    );
    assert!(body.get("sign").is_none(), "no secret, no signature");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_until_delivered() {
    let (receiver, url) = Receiver::start(&[503, 500], false).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let dispatcher = Dispatcher::start(fast(), None, Some(metrics.clone())).unwrap();
    let target = file_target(dir.path(), "w", ProviderKind::Webhook, &url, Some("k"));
    dispatcher.enqueue(
        target,
        notification(EventKind::Started, "release 7d9f8c started"),
    );
    wait_until("sent", || count(&metrics, "webhook", "sent") == 1).await;
    let got = receiver.requests();
    assert_eq!(got.len(), 3, "failed twice, then delivered");
    assert_eq!(count(&metrics, "webhook", "failed"), 0);
    // Each attempt is signed afresh and carries the same delivery id.
    let ids: Vec<String> = got.iter().map(|r| r.header("x-vigil-delivery")).collect();
    assert!(ids.iter().all(|id| id == &ids[0]));
}

#[tokio::test]
async fn retries_are_bounded_and_client_errors_not_retried() {
    let (receiver, url) = Receiver::start(&[500, 500, 500, 404], false).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = DeliveryConfig {
        max_attempts: 3,
        concurrency: 1,
        ..fast()
    };
    let dispatcher = Dispatcher::start(config, None, Some(metrics.clone())).unwrap();
    let target = file_target(dir.path(), "s", ProviderKind::Slack, &url, None);
    dispatcher.enqueue(target.clone(), notification(EventKind::Started, "one"));
    wait_until("failed", || count(&metrics, "slack", "failed") == 1).await;
    assert_eq!(receiver.requests().len(), 3, "3 attempts at most");
    // 404: refused at once.
    dispatcher.enqueue(target, notification(EventKind::Started, "two"));
    wait_until("failed twice", || count(&metrics, "slack", "failed") == 2).await;
    assert_eq!(receiver.requests().len(), 4);

    // Nothing listening: connection refused is retried, then given up.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let target = file_target(dir.path(), "d", ProviderKind::Discord, &closed, None);
    dispatcher.enqueue(target, notification(EventKind::Started, "three"));
    wait_until("discord failed", || {
        count(&metrics, "discord", "failed") == 1
    })
    .await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_delay_enqueue() {
    let (receiver, url) = Receiver::start(&[], true).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = DeliveryConfig {
        queue: 2,
        concurrency: 1,
        timeout: Duration::from_secs(3600),
        ..fast()
    };
    let dispatcher = Dispatcher::start(config, None, Some(metrics.clone())).unwrap();
    let target = file_target(dir.path(), "t", ProviderKind::Teams, &url, None);
    let rule = Rule {
        filter: Filter::default(),
        target: target.clone(),
    };
    dispatcher.enqueue(target, notification(EventKind::Started, "first"));
    receiver.wait_for(1).await;

    // The receiver now holds the only delivery slot and will never answer. Reconciles keep
    // reporting events: every call returns, and what does not fit in the queue is dropped.
    let observer = NotifyObserver::new(dispatcher.clone(), vec![rule]);
    let c = canary(json!([]));
    for i in 0..20 {
        observer.reconciled(
            &c,
            &decision(&[(EventKind::StepAdvanced, &format!("step {i}"))]),
        );
    }
    assert!(
        count(&metrics, "teams", "dropped") >= 10,
        "{}",
        metrics.encode()
    );
    assert_eq!(receiver.requests().len(), 1, "still blocked on the first");
    assert_eq!(
        count(&metrics, "teams", "sent") + count(&metrics, "teams", "failed"),
        0
    );
}

#[tokio::test]
async fn repeated_events_are_sent_once() {
    let (receiver, url) = Receiver::start(&[], false).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let config = sequential();
    let dispatcher = Dispatcher::start(config, None, Some(metrics.clone())).unwrap();
    let target = file_target(dir.path(), "x", ProviderKind::Slack, &url, None);
    let n = notification(EventKind::Stalled, "the canary is not available after 10m");
    assert_eq!(
        dispatcher.enqueue(target.clone(), n.clone()),
        Enqueued::Queued
    );
    assert_eq!(
        dispatcher.enqueue(target.clone(), n.clone()),
        Enqueued::Deduplicated
    );
    // Another message, or another receiver, is another notification.
    let other = notification(EventKind::Stalled, "still not available after 20m");
    assert_eq!(dispatcher.enqueue(target, other), Enqueued::Queued);
    let elsewhere = file_target(
        dir.path(),
        "y",
        ProviderKind::Slack,
        &format!("{url}/other"),
        None,
    );
    assert_eq!(dispatcher.enqueue(elsewhere, n), Enqueued::Queued);
    wait_until("3 sent", || count(&metrics, "slack", "sent") == 3).await;
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(count(&metrics, "slack", "deduplicated"), 1);
}

#[tokio::test]
async fn events_and_severity_filters() {
    let (receiver, url) = Receiver::start(&[], false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = sequential();
    let dispatcher = Dispatcher::start(config, None, None).unwrap();
    let rule = |path: &str, events: &[EventName], min: Option<Severity>| Rule {
        filter: Filter::new(events, min),
        target: file_target(
            dir.path(),
            &path[1..],
            ProviderKind::Webhook,
            &format!("{url}{path}"),
            None,
        ),
    };
    let observer = NotifyObserver::new(
        dispatcher.clone(),
        vec![
            rule("/aborts", &[EventName::Aborted], None),
            rule("/warnings", &[], Some(Severity::Warning)),
            rule("/all", &[], None),
            rule(
                "/steps-but-errors",
                &[EventName::StepAdvanced],
                Some(Severity::Error),
            ),
        ],
    );
    observer.reconciled(
        &canary(json!([])),
        &decision(&[
            (EventKind::StepAdvanced, "step 2/4, weight 25%"),
            (EventKind::Aborted, "2 failed analyses: http fail"),
        ]),
    );
    // With one delivery at a time, in order, this one arrives last.
    dispatcher.enqueue(
        file_target(
            dir.path(),
            "done",
            ProviderKind::Webhook,
            &format!("{url}/done"),
            None,
        ),
        notification(EventKind::Started, "sentinel"),
    );
    let got = receiver.wait_for(5).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.uri.clone(),
                r.json()["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("/all", "step-advanced"),
        ("/aborts", "aborted"),
        ("/warnings", "aborted"),
        ("/all", "aborted"),
        ("/done", "started"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(seen, expected);
    // The report location is the Release's status.report.
    assert_eq!(
        got[0].json()["report"],
        "https://reports.example/shop/web/latest.html"
    );
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn a_canarys_receivers_are_read_from_its_namespace_secrets() {
    let fake = FakeKube::start().await;
    let (receiver, url) = Receiver::start(&[], false).await;
    fake.put_object(
        &Res::core("secrets"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "hooks", "namespace": "shop"},
            "data": {"endpoint": b64(&format!("{url}/canary-hook")), "hmac": b64("s3cr3t")},
        }),
    );
    fake.put_object(
        &Res::core("secrets"),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "plain", "namespace": "shop"},
            "data": {"url": b64(&format!("{url}/plain"))},
        }),
    );
    let metrics = Arc::new(Metrics::new());
    let config = sequential();
    let dispatcher = Dispatcher::start(config, Some(fake.client()), Some(metrics.clone())).unwrap();
    let observer = NotifyObserver::new(dispatcher, vec![]);
    let c = canary(json!([
        {"provider": "webhook", "secretRef": {"name": "hooks", "urlKey": "endpoint", "secretKey": "hmac"},
         "events": ["aborted"]},
        {"provider": "webhook", "secretRef": {"name": "plain"}, "minSeverity": "error"},
        {"provider": "slack", "secretRef": {"name": "missing"}},
    ]));
    observer.reconciled(
        &c,
        &decision(&[(EventKind::Aborted, "rolled back: error-rate")]),
    );
    let got = receiver.wait_for(2).await;
    let hook = got.iter().find(|r| r.uri == "/canary-hook").unwrap();
    let ts = hook.header("x-vigil-timestamp");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        hook.header("x-vigil-signature"),
        webhook_sign("s3cr3t", &ts, &hook.body, dir.path())
    );
    let plain = got.iter().find(|r| r.uri == "/plain").unwrap();
    assert!(
        plain.headers.get("x-vigil-signature").is_none(),
        "no secret key: unsigned"
    );
    // The missing Secret fails that receiver alone, and is counted.
    wait_until("slack failed", || count(&metrics, "slack", "failed") == 1).await;
    assert_eq!(count(&metrics, "webhook", "sent"), 2);

    // The errors say what is wrong and what to do, and never show the URL.
    let source = |name: &str, secret_key: Option<&str>| SecretSource::Kube {
        namespace: "shop".into(),
        name: name.into(),
        url_key: "url".into(),
        secret_key: secret_key.unwrap_or("secret").into(),
        secret_required: secret_key.is_some(),
    };
    let client = fake.client();
    let err = resolve(&source("missing", None), Some(&client))
        .await
        .unwrap_err()
        .0;
    assert!(
        err.contains("Secret shop/missing not found")
            && err.contains("kubectl -n shop create secret"),
        "{err}"
    );
    let err = resolve(&source("hooks", None), Some(&client))
        .await
        .unwrap_err()
        .0;
    assert!(
        err.contains("has no key `url`") && err.contains("urlKey"),
        "{err}"
    );
    let err = resolve(&source("plain", Some("hmac")), Some(&client))
        .await
        .unwrap_err()
        .0;
    assert!(err.contains("no key `hmac`"), "{err}");
    let ok = resolve(&source("plain", None), Some(&client))
        .await
        .unwrap();
    assert_eq!(ok.secret, None);
    assert!(
        !format!("{ok:?}").contains("127.0.0.1"),
        "Debug redacts the URL"
    );
}
