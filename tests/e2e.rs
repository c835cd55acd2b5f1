//! End to end: the `vigil` binary against the fake Kubernetes API server and a real
//! Prometheus that scrapes a traffic generator, which splits its requests by the weight vigil
//! sets on the canary Ingress.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::PromServer;
use common::traffic::{Model, Options, Traffic};
use serde_json::Value;

/// The ingress-nginx template, and its version selectors for the generator's labels.
const TEMPLATE: &str = "analysis-templates/ingress-nginx.yaml";
const STABLE: &str = "canary=\"\"";
const CANARY: &str = "canary=\"shop-web-canary-80\"";

/// Polls `probe` every 200 ms until it gives a value, failing after `limit` with `what` and
/// the last `context()`.
async fn poll<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The canary's share of the request rate over the last 3 s, once both versions have
/// traffic.
const CANARY_SHARE: &str = "sum(rate(nginx_ingress_controller_requests{canary!=\"\"}[3s])) \
     / sum(rate(nginx_ingress_controller_requests[3s]))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_generator_and_the_canary_share_follows_the_weight() {
    let weight = Arc::new(AtomicU8::new(0));
    let traffic = Traffic::start(Options::default(), {
        let weight = weight.clone();
        move || weight.load(Ordering::Relaxed)
    })
    .await;
    let prom = PromServer::start_scraping(&[traffic.target()], Duration::from_secs(1));
    let context = || {
        format!(
            "metrics:\n{}\nprometheus log:\n{}",
            traffic.metrics(),
            prom.log()
        )
    };

    let total = poll(
        "Prometheus sees requests",
        Duration::from_secs(15),
        async || {
            prom.instant("sum(rate(nginx_ingress_controller_requests[3s]))")
                .await
                .filter(|&r| r > 0.0)
        },
        context,
    )
    .await;
    assert!(
        (10_000.0..30_000.0).contains(&total),
        "about 20,000 requests per second, got {total}"
    );
    assert_eq!(
        prom.instant("count(nginx_ingress_controller_requests{canary!=\"\"})")
            .await,
        None,
        "no canary series before the canary has traffic"
    );

    weight.store(25, Ordering::Relaxed);
    // Two scrapes after the change the 3 s window may still hold stable-only samples: wait
    // for a window wholly after it.
    let share = poll(
        "the canary gets about a quarter of the requests",
        Duration::from_secs(15),
        async || {
            prom.instant(CANARY_SHARE)
                .await
                .filter(|s| (0.2..0.3).contains(s))
        },
        context,
    )
    .await;
    assert!((0.2..0.3).contains(&share));
    assert_eq!(traffic.weight_sequence(), vec![0, 25]);
    let (stable, canary) = traffic.totals();
    let error_share = canary.errors as f64 / canary.requests() as f64;
    assert!(
        (0.005..0.015).contains(&error_share),
        "1% errors, got {error_share} ({canary:?}; stable {stable:?})"
    );
}

/// `vigil judge` on the generator's live traffic at canary weight 10, over the window since
/// the traffic started with a 5 s step, as the controller judges a Canary with
/// `interval: 5s`: the generator's rates must let it pass a healthy canary and fail a
/// regressing one within a few intervals, or the end-to-end tests below cannot finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_tells_a_healthy_from_a_regressing_canary_on_live_traffic_within_seconds() {
    let started = Instant::now();
    // One generator per namespace label, both scraped by one Prometheus.
    let healthy = Traffic::start(
        Options {
            namespace: "healthy".into(),
            ..Options::default()
        },
        || 10,
    )
    .await;
    let regressing = Traffic::start(
        Options {
            namespace: "regressing".into(),
            canary: Model::default().regressing(),
            seed: 2,
            ..Options::default()
        },
        || 10,
    )
    .await;
    let prom = PromServer::start_scraping(
        &[healthy.target(), regressing.target()],
        Duration::from_secs(1),
    );
    let start = chrono::Utc::now().timestamp().to_string();
    let judge = |namespace: &str| {
        let end = chrono::Utc::now().timestamp().to_string();
        let out = common::vigil()
            .args(["judge", "--prometheus", &prom.url, "--template"])
            .arg(common::root().join(TEMPLATE))
            .args(["--arg", &format!("namespace={namespace}")])
            .args([
                "--arg",
                "ingress=web",
                "--stable",
                STABLE,
                "--canary",
                CANARY,
            ])
            .args(["--start", &start, "--end", &end, "--step", "5s"])
            .args(["--output", "json"])
            .output()
            .expect("run vigil judge");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vigil judge did not print JSON ({e}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        report
    };
    let (mut healthy_verdicts, mut regressing_verdicts) = (Vec::new(), Vec::new());
    let mut failing_reasons = String::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let report = judge("healthy");
        healthy_verdicts.push(report["verdict"].as_str().unwrap_or("?").to_string());
        let report = judge("regressing");
        regressing_verdicts.push(report["verdict"].as_str().unwrap_or("?").to_string());
        failing_reasons = report["reasons"].to_string();
        if healthy_verdicts.last().unwrap() == "pass"
            && regressing_verdicts.last().unwrap() == "fail"
        {
            break;
        }
    }
    let context = format!(
        "healthy verdicts {healthy_verdicts:?}, regressing verdicts {regressing_verdicts:?}; \
         healthy totals {:?}; regressing totals {:?}",
        healthy.totals(),
        regressing.totals()
    );
    assert_eq!(
        healthy_verdicts.last().map(String::as_str),
        Some("pass"),
        "{context}"
    );
    assert!(!healthy_verdicts.iter().any(|v| v == "fail"), "{context}");
    assert_eq!(
        regressing_verdicts.last().map(String::as_str),
        Some("fail"),
        "{context}"
    );
    assert!(
        !regressing_verdicts.iter().any(|v| v == "pass"),
        "{context}"
    );
    assert!(
        failing_reasons.contains("error-rate"),
        "the regression fails on its error rate: {failing_reasons}"
    );
    println!(
        "healthy {healthy_verdicts:?}, regressing {regressing_verdicts:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
