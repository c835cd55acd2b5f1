//! The controller's HTTP server: metrics and health probes, and the `/v1` API (an
//! Alertmanager receiver, canary actions for CI and ChatOps, and the judge as a service).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /`, `/releases/...`, `/login` | the live dashboard ([`crate::runtime::dashboard`]), with a [`ServerState::with_dashboard`] |
//! | `GET /metrics` | the metrics in the OpenMetrics text format |
//! | `GET /healthz` | 200 `ok` while the process runs (liveness) |
//! | `GET /readyz` | 200 `ok` once the controller has synced its caches, else 503 (readiness) |
//! | `POST /v1/alerts` | Alertmanager's webhook (version 4): firing alerts abort the canaries they match ([`alerts`]) |
//! | `POST /v1/releases/{namespace}/{name}/{action}` | `promote`, `abort`, `pause` or `resume` a Release ([`canaries`]) |
//! | `POST /v1/judge` | judge a canary against stable; the JSON of `vigil judge --output json` ([`judge`]) |
//! | `POST /v1/judge/flagger/{hook}` | the judge as a Flagger webhook of type `{hook}`: the status means what Flagger makes of it ([`judge`]) |
//! | `POST /v1/judge/flagger` | deprecated: as `/v1/judge/flagger/rollout`, with a `Warning` header |
//!
//! The `/v1` routes need an [`ApiState`] ([`ServerState::with_api`]) and authenticate every
//! request ([`auth`]): a bearer token and/or an HMAC signature, else 401; with neither
//! configured they answer 503 unless the API was explicitly opened
//! ([`AuthConfig::insecure_no_auth`]). Bodies above [`ApiState::body_limit`] get 413.
//! Errors are JSON: `{"error": "...", "hint": "..."}`.
//!
//! Handlers never panic; unknown paths get 404 and other methods 405.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use vigil::runtime::metrics::Metrics;
//! use vigil::runtime::server::{self, ServerState};
//! let state = ServerState::new(Arc::new(Metrics::new()));
//! // More routes share the state: server::routes().route("/api/judge", ...).with_state(state)
//! let app = server::router(state.clone());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! state.set_ready(true); // once the caches are synced
//! server::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod alerts;
pub mod auth;
pub mod judge;
pub mod releases;

pub use auth::AuthConfig;

use crate::api::alerts::Matching;
use crate::runtime::metrics::{self, Metrics};
use crate::signature::ReplayCache;
use crate::source::prometheus::Prometheus;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the handlers share. Cloning is cheap (`Arc`s).
#[derive(Clone, Debug)]
pub struct ServerState {
    /// The metrics served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Whether the controller is ready (caches synced): `/readyz` answers 200 when set.
    pub ready: Arc<AtomicBool>,
    /// What the `/v1` API needs; without it those routes answer 503.
    pub api: Option<Arc<ApiState>>,
    /// The live dashboard at `/`; without it those routes answer 404.
    pub dashboard: Option<Arc<crate::runtime::dashboard::Dashboard>>,
}

/// The default [`ApiState::body_limit`]: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// The default [`ApiState::judge_slots`]: judgements running at once.
pub const DEFAULT_JUDGE_SLOTS: usize = 4;

/// The `/v1` API's settings (`vigil run --api-*`, `--alert-*-label`, `--judge-concurrency`).
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Who may call the API.
    pub auth: AuthConfig,
    /// Default matching of alerts to Releases.
    pub matching: Matching,
    /// The largest request body accepted.
    pub body_limit: usize,
    /// Judgements running at once.
    pub judge_slots: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            auth: AuthConfig::default(),
            matching: Matching::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            judge_slots: DEFAULT_JUDGE_SLOTS,
        }
    }
}

/// What the `/v1` routes need: the cluster, Prometheus, and who may call them.
pub struct ApiState {
    /// The Kubernetes client (Releases, templates, `status.request`).
    pub client: kube::Client,
    /// The Prometheus that `/v1/judge` queries (the controller's).
    pub source: Arc<Prometheus>,
    /// Who may call the API.
    pub auth: AuthConfig,
    /// Default matching of alerts to Releases.
    pub matching: Matching,
    /// Only Releases of this namespace are considered for alerts (`--watch-namespace`).
    pub watch_namespace: Option<String>,
    /// The largest request body accepted; larger ones get 413.
    pub body_limit: usize,
    /// Bounds the judgements running at once, so that callers cannot overload Prometheus;
    /// a judgement waits [`ApiState::judge_wait`] at most for a slot, then gets 503.
    pub judge_slots: Arc<tokio::sync::Semaphore>,
    /// How long a judgement waits for a slot; default [`judge::QUEUE_WAIT`].
    pub judge_wait: std::time::Duration,
    /// Prometheus queries in flight per judgement.
    pub judge_queries: usize,
    /// Signatures seen lately, to refuse replays.
    pub(crate) replays: ReplayCache,
}

impl ApiState {
    /// The API over `client` and `source`, with the default limits and matching.
    pub fn new(client: kube::Client, source: Arc<Prometheus>, auth: AuthConfig) -> Self {
        ApiState {
            client,
            source,
            auth,
            matching: Matching::default(),
            watch_namespace: None,
            body_limit: DEFAULT_BODY_LIMIT,
            judge_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_JUDGE_SLOTS)),
            judge_queries: 4,
            judge_wait: judge::QUEUE_WAIT,
            replays: ReplayCache::default(),
        }
    }

    /// Applies `options` (credentials, matching and limits).
    pub fn with_options(mut self, options: ApiOptions) -> Self {
        self.auth = options.auth;
        self.matching = options.matching;
        self.body_limit = options.body_limit;
        self.judge_slots = Arc::new(tokio::sync::Semaphore::new(options.judge_slots.max(1)));
        self
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth)
            .field("matching", &self.matching)
            .field("watch_namespace", &self.watch_namespace)
            .field("body_limit", &self.body_limit)
            .field("judge_slots", &self.judge_slots.available_permits())
            .field("judge_queries", &self.judge_queries)
            .finish_non_exhaustive()
    }
}

/// An API error: a status and `{"error": "...", "hint": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub error: String,
    /// What to do about it.
    pub hint: String,
}

impl ApiError {
    /// An error with this status, message and hint.
    pub fn new(status: StatusCode, error: impl Into<String>, hint: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            hint: hint.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": self.error, "hint": self.hint}));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"vigil\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// The API state, or 503 when the server runs without one.
fn api_of(state: &ServerState) -> Result<Arc<ApiState>, ApiError> {
    state.api.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the /v1 API is not enabled in this process",
            "it is served by `vigil run`",
        )
    })
}

/// The request body, or 413 when it is larger than the limit.
fn body_of(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "the request body is too large",
                "send less (one Alertmanager group, one judgement), or raise vigil run --api-body-limit",
            )
        } else {
            ApiError::new(status, format!("cannot read the request body: {e}"), "send the body again")
        }
    })
}

/// The API state and the request body once the request is authenticated: 503 without an
/// API, 413 for a body above the limit, 401 (or 503) per [`auth::check`].
fn authorized(
    state: &ServerState,
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(Arc<ApiState>, axum::body::Bytes), ApiError> {
    let api = api_of(state)?;
    let body = body_of(body)?;
    auth::check(&api, headers, &body, chrono::Utc::now().timestamp())?;
    Ok((api, body))
}

/// A JSON body parsed as `T`: 400 with the reason when it is not JSON or not that shape.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let (error, hint) = match e.classify() {
            Category::Data => (format!("wrong schema: {e}"), format!("send {what}")),
            Category::Syntax | Category::Eof | Category::Io => (
                format!("invalid JSON: {e}"),
                format!("send {what} as JSON (Content-Type: application/json)"),
            ),
        };
        ApiError::new(StatusCode::BAD_REQUEST, error, hint)
    })
}

impl ServerState {
    /// A state that is not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ServerState {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
            api: None,
            dashboard: None,
        }
    }

    /// Serves the live dashboard at `/` with `dashboard`.
    pub fn with_dashboard(mut self, dashboard: crate::runtime::dashboard::Dashboard) -> Self {
        self.dashboard = Some(Arc::new(dashboard));
        self
    }

    /// Serves the `/v1` API with `api`.
    pub fn with_api(mut self, api: ApiState) -> Self {
        self.api = Some(Arc::new(api));
        self
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
    use crate::runtime::dashboard as d;
    Router::new()
        .route("/", get(d::overview))
        .route("/releases/{namespace}/{name}", get(d::release_page))
        .route("/dashboard/api/overview", get(d::overview_json))
        .route(
            "/dashboard/api/releases/{namespace}/{name}",
            get(d::release_json),
        )
        .route("/login", get(d::login_page).post(d::login))
        .route("/logout", post(d::logout))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/alerts", post(alerts::receive))
        .route(
            "/v1/releases/{namespace}/{name}/{action}",
            post(releases::act),
        )
        .route("/v1/judge", post(judge::judge))
        .route("/v1/judge/flagger", post(judge::flagger_deprecated))
        .route("/v1/judge/flagger/{hook}", post(judge::flagger))
        .fallback(not_found)
}

/// The server's routes with their state, ready to [`serve`]; merge or nest other routers
/// into it to add routes with their own state. Request bodies are limited to the API's
/// [`ApiState::body_limit`].
pub fn router(state: ServerState) -> Router {
    let limit = state
        .api
        .as_ref()
        .map_or(DEFAULT_BODY_LIMIT, |api| api.body_limit);
    routes()
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
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
        "not found: try / (the dashboard), /metrics, /healthz, /readyz or the /v1 API (POST /v1/alerts, /v1/releases/{namespace}/{name}/{action}, /v1/judge)\n",
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
