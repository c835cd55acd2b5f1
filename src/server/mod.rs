//! The controller's HTTP server: metrics and health probes, with room for more routes (a
//! judge API, webhook receivers).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | the metrics in the OpenMetrics text format |
//! | `GET /healthz` | 200 `ok` while the process runs (liveness) |
//! | `GET /readyz` | 200 `ok` once the controller has synced its caches, else 503 (readiness) |
//!
//! Handlers never panic; unknown paths get 404 and other methods 405.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use vigil::cluster::metrics::Metrics;
//! use vigil::server::{self, ServerState};
//! let state = ServerState::new(Arc::new(Metrics::new()));
//! // More routes share the state: server::routes().route("/api/judge", ...).with_state(state)
//! let app = server::router(state.clone());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! state.set_ready(true); // once the caches are synced
//! server::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

use crate::cluster::metrics::{self, Metrics};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the handlers share. Cloning is cheap (two `Arc`s).
#[derive(Clone, Debug)]
pub struct ServerState {
    /// The metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Whether the controller is ready (caches synced): `/readyz` answers 200 when set.
    pub ready: Arc<AtomicBool>,
}

impl ServerState {
    /// A state that is not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ServerState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the controller ready (or not ready again, e.g. while it stops).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The routes without their state, for adding more routes that share it:
/// `routes().route("/x", get(h)).with_state(state)`.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
}

/// The server's routes with their state, ready to [`serve`]; merge or nest other routers
/// into it to add routes with their own state.
pub fn router(state: ServerState) -> Router {
    routes().with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight
/// finish. Errors are those of accepting connections.
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: S,
) -> std::io::Result<()>
where
    S: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(state): State<ServerState>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<ServerState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the controller's caches are not synced yet\n",
        )
            .into_response()
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /metrics, /healthz or /readyz\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(state: &ServerState, method: &str, uri: &str) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    fn state() -> ServerState {
        ServerState::new(Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn metrics_are_openmetrics() {
        let state = state();
        state.metrics.set_leader(true);
        let (status, content_type, body) = call(&state, "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, metrics::CONTENT_TYPE);
        assert!(body.contains("vigil_leader 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[tokio::test]
    async fn healthz_is_always_ok() {
        let (status, _, body) = call(&state(), "GET", "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
    }

    #[tokio::test]
    async fn readyz_follows_the_flag() {
        let state = state();
        let (status, _, body) = call(&state, "GET", "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not ready"), "{body}");
        state.set_ready(true);
        assert_eq!(call(&state, "GET", "/readyz").await.0, StatusCode::OK);
        state.set_ready(false);
        assert_eq!(
            call(&state, "GET", "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn unknown_paths_and_methods() {
        let state = state();
        assert_eq!(call(&state, "GET", "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&state, "POST", "/metrics").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn serves_over_tcp_and_shuts_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router(state()), async {
            let _ = stopped.await;
        }));
        let body = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert_eq!(body, "ok\n");
        let _ = stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("stops")
            .expect("joins")
            .expect("serves");
    }
}
