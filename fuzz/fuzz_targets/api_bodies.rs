//! The JSON bodies of the HTTP API, through the real router: `/v1/judge`, the Flagger
//! hooks, `/v1/alerts` and the Release actions. The first byte chooses the endpoint, the
//! rest is the body. Prometheus and the Kubernetes API are unreachable (a closed port), as
//! in an outage.
//!
//! Invariants: no panic; and no body, however it parses, gets an answer that lets a release
//! go on: `/v1/judge?httpStatus=true` and Flagger's confirmation hooks never answer 200
//! without data, and a promote never succeeds.
#![no_main]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use vigil::runtime::metrics::Metrics;
use vigil::runtime::server::auth::AuthConfig;
use vigil::runtime::server::{ApiState, ServerState, router};
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

/// A closed port: every connection is refused at once.
const NOWHERE: &str = "http://127.0.0.1:9";

const ENDPOINTS: [(&str, bool); 8] = [
    // (path, whether a 2xx answer would let the release go on)
    ("/v1/judge?httpStatus=true", true),
    ("/v1/judge/flagger/confirm-promotion", true),
    ("/v1/judge/flagger/confirm-traffic-increase", true),
    ("/v1/releases/shop/web/promote", true),
    ("/v1/judge", false),
    ("/v1/judge/flagger/rollout", false),
    ("/v1/alerts", false),
    ("/v1/releases/shop/web/abort", false),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn state() -> &'static ServerState {
    static STATE: OnceLock<ServerState> = OnceLock::new();
    STATE.get_or_init(|| {
        let _guard = runtime().enter();
        let config = kube::Config::new(NOWHERE.parse().expect("a URI"));
        let client = kube::Client::try_from(config).expect("a client");
        let source = Prometheus::new(PrometheusConfig::new(NOWHERE)).expect("a source");
        let auth = AuthConfig {
            token: None,
            hmac_secret: None,
            insecure_no_auth: true,
            read_token: None,
        };
        ServerState::new(Arc::new(Metrics::new())).with_api(ApiState::new(
            client,
            Arc::new(source),
            auth,
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((choice, body)) = data.split_first() else {
        return;
    };
    let (path, guards) = ENDPOINTS[usize::from(*choice) % ENDPOINTS.len()];
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let status = runtime().block_on(async {
        router(state().clone())
            .oneshot(request)
            .await
            .expect("the router is infallible")
            .status()
    });
    if guards {
        assert!(
            !status.is_success(),
            "{path} answered {status} to {:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{path}: {:?}",
        String::from_utf8_lossy(body)
    );
});
