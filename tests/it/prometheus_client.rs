//! The Prometheus client's HTTP behaviour that a healthy Prometheus cannot show: auth and
//! tenancy headers, token file rotation, retries on 5xx and timeouts. A small scripted HTTP
//! server records each request and answers as told. (Query semantics are tested against the
//! real Prometheus in prometheus_judge.rs.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vigil::source::SourceErrorKind;
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

const OK: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}"#;
const UNAVAILABLE: &str = r#"{"status":"error","errorType":"unavailable","error":"overloaded"}"#;
const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;

struct Reply {
    status: u16,
    body: &'static str,
    delay: Duration,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        body,
        delay: Duration::ZERO,
    }
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn push(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Starts the scripted server; returns its URL.
async fn serve(script: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                script.seen.lock().unwrap().push(head);
                let r = script
                    .replies
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| reply(200, OK));
                tokio::time::sleep(r.delay).await;
                let response = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    r.status,
                    r.body.len(),
                    r.body
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap()
}

fn fast(url: &str) -> PrometheusConfig {
    let mut c = PrometheusConfig::new(url);
    c.retry_backoff = Duration::from_millis(10);
    c
}

#[tokio::test]
async fn sends_rotated_token_and_tenant_header() {
    let script = Script::default();
    let url = serve(script.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let mut config = fast(&url);
    config.bearer_token_file = Some(token.clone());
    config
        .headers
        .push(("X-Scope-OrgID".into(), "team-a".into()));
    let client = Prometheus::new(config).unwrap();
    client.query_instant("up", at()).await.unwrap();
    std::fs::write(&token, "second-token-after-rotation\n").unwrap();
    client.query_instant("up", at()).await.unwrap();
    let seen = script.seen();
    assert!(
        seen[0].contains("authorization: bearer first-token\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("x-scope-orgid: team-a\r\n"), "{}", seen[0]);
    assert!(
        seen[1].contains("authorization: bearer second-token-after-rotation\r\n"),
        "{}",
        seen[1]
    );

    std::fs::remove_file(&token).unwrap();
    let err = client.query_instant("up", at()).await.unwrap_err();
    assert!(
        matches!(&err, SourceErrorKind::Config(m) if m.contains("bearer token file")),
        "{err}"
    );
}

#[tokio::test]
async fn sends_basic_auth() {
    let script = Script::default();
    let url = serve(script.clone()).await;
    let mut config = fast(&url);
    config.basic_auth = Some(("vigil".into(), "s3cret".into()));
    Prometheus::new(config)
        .unwrap()
        .query_instant("up", at())
        .await
        .unwrap();
    // base64("vigil:s3cret")
    assert!(
        script.seen()[0].contains("authorization: basic dmlnaww6cznjcmv0\r\n"),
        "{}",
        script.seen()[0]
    );
}

#[tokio::test]
async fn retries_5xx_but_not_4xx() {
    let script = Script::default();
    let url = serve(script.clone()).await;
    script.push(reply(503, UNAVAILABLE));
    script.push(reply(502, "<html>bad gateway</html>"));
    let client = Prometheus::new(fast(&url)).unwrap();
    let result = client.query_instant("up", at()).await.unwrap();
    assert_eq!(result.series[0].points[0].1, 7.0);
    assert_eq!(script.seen().len(), 3, "two retries, then success");

    let script = Script::default();
    let url = serve(script.clone()).await;
    script.push(reply(400, BAD));
    let err = Prometheus::new(fast(&url))
        .unwrap()
        .query_instant("up(", at())
        .await
        .unwrap_err();
    assert_eq!(script.seen().len(), 1, "a bad query is not retried");
    assert!(
        matches!(&err, SourceErrorKind::Query { status: 400, error_type, .. } if error_type == "bad_data"),
        "{err}"
    );

    let script = Script::default();
    let url = serve(script.clone()).await;
    for _ in 0..3 {
        script.push(reply(503, UNAVAILABLE));
    }
    let err = Prometheus::new(fast(&url))
        .unwrap()
        .query_instant("up", at())
        .await
        .unwrap_err();
    assert_eq!(script.seen().len(), 3, "bounded: one try and two retries");
    assert!(err.to_string().contains("overloaded"), "{err}");
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let script = Script::default();
    let url = serve(script.clone()).await;
    for _ in 0..2 {
        script.push(Reply {
            status: 200,
            body: OK,
            delay: Duration::from_secs(3),
        });
    }
    let mut config = fast(&url);
    config.timeout = Duration::from_millis(300);
    config.retries = 1;
    let err = Prometheus::new(config)
        .unwrap()
        .query_instant("up", at())
        .await
        .unwrap_err();
    assert!(matches!(err, SourceErrorKind::Timeout { .. }), "{err}");
    assert_eq!(script.seen().len(), 2);
}
