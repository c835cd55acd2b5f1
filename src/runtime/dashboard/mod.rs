//! The live dashboard of `vigil run` (and of `vigil dashboard`), on the server's own port
//! beside `/v1`, so that it shares the API's credentials and its Service, probes and
//! NetworkPolicy:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the overview: every Release, filtered by `?namespace=` and `?phase=` |
//! | `GET /releases/{namespace}/{name}` | a Release: summary, operator buttons, timeline, evidence and charts |
//! | `GET /dashboard/api/overview` | the overview's fragments and rows as JSON (the page polls it) |
//! | `GET /dashboard/api/releases/{namespace}/{name}` | a Release's fragments as JSON (the page polls it) |
//! | `GET /login`, `POST /login` | the sign-in form; a good token is kept in an HttpOnly, SameSite=Strict cookie |
//! | `POST /logout` | forgets the cookie |
//!
//! Every page needs a credential ([`Access`]): the API token (`Authorization: Bearer` or the
//! cookie) may act, a read-only token (`--api-read-token-file`) may look. Without one, 401
//! and the sign-in form, the only page served to anyone. `--dashboard-insecure-no-auth`
//! shows the pages to anyone (read-only, unless the API itself is open). The pages load
//! nothing from elsewhere: [`pages::CSP`] forbids it, and allows the one inline script by its
//! hash. What they show comes from memory ([`store`]): no page view calls the API server
//! or Prometheus.

pub mod pages;
pub mod store;

use super::server::ServerState;
pub use super::server::auth::Access;
use super::server::auth::{self, AuthConfig, COOKIE};
use crate::api::crd::Release;
use crate::cluster::clock::Clock;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use store::Evidence;

/// What the dashboard reads and who may see it.
#[derive(Clone)]
pub struct Dashboard {
    /// The Releases, from the process's one reflector ([`store::watch_releases`]).
    pub releases: Store<Release>,
    /// The latest evidence and decisions per Release, when this process runs the
    /// controller; `None` for `vigil dashboard`, which shows status only.
    pub evidence: Option<Arc<Evidence>>,
    /// The credentials: the `/v1` API's.
    pub auth: AuthConfig,
    /// Show the pages without a credential (`--dashboard-insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Prometheus's web UI, for links to its graph page (`--prometheus-ui-url`).
    pub prometheus_ui: Option<String>,
    /// The time, as the controller keeps it.
    pub clock: Clock,
    /// How often the pages poll, in milliseconds ([`pages::POLL_MS`]).
    pub poll_ms: u64,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("auth", &self.auth)
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("prometheus_ui", &self.prometheus_ui)
            .finish_non_exhaustive()
    }
}

/// Why a request may not see the dashboard.
enum Denied {
    /// No credential, or a wrong one: 401 with the sign-in form.
    Unauthorized(&'static str),
    /// No credential is configured at all: 503.
    Unconfigured,
}

impl Dashboard {
    /// What the request's credential (bearer token or cookie) may do.
    fn access(&self, headers: &HeaderMap) -> Result<Access, Denied> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let given = bearer.or_else(|| auth::cookie(headers, COOKIE));
        let open = self.auth.insecure_no_auth && !self.auth.configured();
        match given {
            Some(token) => self
                .auth
                .access_of(token)
                .ok_or(Denied::Unauthorized("that token is not valid here")),
            None if open => Ok(Access::Write),
            None if self.insecure_no_auth => Ok(Access::Read),
            None if self.auth.token.is_none() && self.auth.read_token.is_none() => {
                Err(Denied::Unconfigured)
            }
            None => Err(Denied::Unauthorized("sign in to see the dashboard")),
        }
    }

    fn release(&self, namespace: &str, name: &str) -> Option<Arc<Release>> {
        self.releases.get(&ObjectRef::new(name).within(namespace))
    }

    fn held(&self, namespace: &str, name: &str) -> Option<store::Held> {
        self.evidence.as_ref()?.get(namespace, name)
    }
}

/// Headers of every page and answer: the CSP, no caching, no sniffing, no framing.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&pages::CSP) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    secured(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

fn json(value: &serde_json::Value) -> Response {
    secured(axum::Json(value).into_response())
}

fn denied(denied: Denied, next: &str, wants_json: bool) -> Response {
    match denied {
        Denied::Unconfigured => secured(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the dashboard has no credentials to check: start vigil run with --api-token-file \
                 (and --api-read-token-file for viewers), or --dashboard-insecure-no-auth on a port \
                 nothing untrusted can reach\n",
            )
                .into_response(),
        ),
        Denied::Unauthorized(why) if wants_json => secured(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": why, "hint": "sign in at /login"})),
            )
                .into_response(),
        ),
        Denied::Unauthorized(why) => html(StatusCode::UNAUTHORIZED, pages::login(next, Some(why))),
    }
}

/// 404: this server has no dashboard.
fn no_dashboard() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: this server has no dashboard (vigil run serves one)\n",
    )
        .into_response()
}

/// The dashboard and what the request's credential may do in it; else the answer: 404
/// without a dashboard, 401 (the form, or JSON when `json`) or 503 per [`Dashboard::access`].
fn enter(
    state: &ServerState,
    headers: &HeaderMap,
    next: &str,
    json: bool,
) -> Result<(Arc<Dashboard>, Access), Box<Response>> {
    let d = state
        .dashboard
        .clone()
        .ok_or_else(|| Box::new(no_dashboard()))?;
    match d.access(headers) {
        Ok(access) => Ok((d, access)),
        Err(e) => Err(Box::new(denied(e, next, json))),
    }
}

/// A short stable fingerprint of a fragment, so the page replaces only what changed.
fn version(html: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    html.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The overview's filters.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// Only this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only this phase.
    #[serde(default)]
    pub phase: Option<String>,
}

impl Filter {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|s| !s.is_empty())
    }
    fn phase(&self) -> Option<&str> {
        self.phase.as_deref().filter(|s| !s.is_empty())
    }
    fn query(&self) -> String {
        let mut url = reqwest::Url::parse("http://x/dashboard/api/overview").unwrap_or_else(|_| {
            // A constant URL parses.
            reqwest::Url::parse("http://x/").unwrap_or_else(|e| unreachable!("{e}"))
        });
        if let Some(ns) = self.namespace() {
            url.query_pairs_mut().append_pair("namespace", ns);
        }
        if let Some(p) = self.phase() {
            url.query_pairs_mut().append_pair("phase", p);
        }
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }
}

/// The rows of the overview, most recently active first, and every namespace.
fn overview_rows(d: &Dashboard, filter: &Filter) -> (Vec<pages::Row>, Vec<String>) {
    let releases = d.releases.state();
    let mut namespaces: Vec<String> = releases.iter().filter_map(|r| r.namespace()).collect();
    namespaces.sort();
    namespaces.dedup();
    let mut rows: Vec<pages::Row> = releases
        .iter()
        .filter(|r| {
            filter
                .namespace()
                .is_none_or(|ns| r.namespace().as_deref() == Some(ns))
        })
        .map(|r| {
            let held = d.held(&r.namespace().unwrap_or_default(), &r.name_any());
            pages::row(r, held.as_ref())
        })
        .filter(|row| filter.phase().is_none_or(|p| row.phase == p))
        .collect();
    rows.sort_by(|a, b| {
        b.activity
            .cmp(&a.activity)
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    (rows, namespaces)
}

/// `GET /`.
pub async fn overview(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let (d, access) = match enter(&state, &headers, "/", false) {
        Ok(entered) => entered,
        Err(answer) => return *answer,
    };
    let (rows, namespaces) = overview_rows(&d, &filter);
    let rows = pages::rows_html(&rows, d.clock.now());
    let body = pages::overview_body(
        &rows,
        &version(&rows),
        &namespaces,
        filter.namespace(),
        filter.phase(),
        &filter.query(),
        d.poll_ms,
    );
    html(
        StatusCode::OK,
        pages::page("vigil: Releases", Some(access), d.poll_ms, &body),
    )
}

/// `GET /dashboard/api/overview`.
pub async fn overview_json(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let d = match enter(&state, &headers, "/", true) {
        Ok((d, _)) => d,
        Err(answer) => return *answer,
    };
    let (rows, namespaces) = overview_rows(&d, &filter);
    let html = pages::rows_html(&rows, d.clock.now());
    json(&serde_json::json!({
        "fragments": {"rows": html},
        "versions": {"rows": version(&html)},
        "releases": rows,
        "namespaces": namespaces,
    }))
}

/// The fragments of a Release's page.
fn release_fragments(
    d: &Dashboard,
    release: &Release,
    access: Access,
) -> Vec<(&'static str, String)> {
    let ns = release.namespace().unwrap_or_default();
    let name = release.name_any();
    let held = d.held(&ns, &name);
    let row = pages::row(release, held.as_ref());
    let marks = pages::timeline(release, held.as_ref());
    vec![
        ("summary", pages::summary_html(release, &row, d.clock.now())),
        ("actions", pages::actions_html(release, access)),
        ("timeline", pages::timeline_html(&marks)),
        ("evidence", pages::evidence_html(d, held.as_ref(), &marks)),
    ]
}

fn not_found_page(access: Access, namespace: &str, name: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::page(
            "vigil: no such Release",
            Some(access),
            pages::POLL_MS,
            &format!(
                "<h1>No Release {}/{}</h1><p>It is not (or no longer) in the cluster. <a href=\"/\">All Releases</a></p>",
                report_escape(namespace),
                report_escape(name)
            ),
        ),
    )
}

fn report_escape(s: &str) -> String {
    crate::report::escape(s)
}

/// `GET /releases/{namespace}/{name}`.
pub async fn release_page(
    State(state): State<ServerState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let next = format!("/releases/{namespace}/{name}");
    let (d, access) = match enter(&state, &headers, &next, false) {
        Ok(entered) => entered,
        Err(answer) => return *answer,
    };
    let Some(release) = d.release(&namespace, &name) else {
        return not_found_page(access, &namespace, &name);
    };
    let mut body = format!(
        "<p><a href=\"/\">← all Releases</a></p><h1>Release {}/{}</h1>\n\
         <p class=\"live\" id=\"live\" data-live=\"/dashboard/api/releases/{}/{}\">live: refreshed every {} s</p>\n",
        report_escape(&namespace),
        report_escape(&name),
        report_escape(&namespace),
        report_escape(&name),
        crate::judge::words::value(d.poll_ms as f64 / 1000.0)
    );
    for (id, fragment) in release_fragments(&d, &release, access) {
        let (open, close) = match id {
            "summary" => ("", ""),
            "actions" => ("", "<p class=\"live\" id=\"action-result\"></p>"),
            "timeline" => ("<h2>Timeline</h2>", ""),
            _ => ("<h2>Evidence of the latest analysis</h2>", ""),
        };
        let class = if id == "actions" {
            " class=\"actions\""
        } else {
            ""
        };
        body.push_str(&format!(
            "{open}<div id=\"{id}\"{class} data-v=\"{}\">{fragment}</div>{close}\n",
            version(&fragment)
        ));
    }
    html(
        StatusCode::OK,
        pages::page(
            &format!("vigil: {namespace}/{name}"),
            Some(access),
            d.poll_ms,
            &body,
        ),
    )
}

/// `GET /dashboard/api/releases/{namespace}/{name}`.
pub async fn release_json(
    State(state): State<ServerState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (d, access) = match enter(&state, &headers, "/", true) {
        Ok(entered) => entered,
        Err(answer) => return *answer,
    };
    let Some(release) = d.release(&namespace, &name) else {
        return secured(
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({
                    "error": format!("no Release {namespace}/{name}"),
                    "hint": "it is not (or no longer) in the cluster",
                })),
            )
                .into_response(),
        );
    };
    let fragments = release_fragments(&d, &release, access);
    let versions: serde_json::Map<String, serde_json::Value> = fragments
        .iter()
        .map(|(id, f)| (id.to_string(), version(f).into()))
        .collect();
    let fragments: serde_json::Map<String, serde_json::Value> = fragments
        .into_iter()
        .map(|(id, f)| (id.to_string(), f.into()))
        .collect();
    json(&serde_json::json!({"fragments": fragments, "versions": versions}))
}

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub struct Next {
    /// A path of this site.
    #[serde(default)]
    pub next: Option<String>,
}

/// Only a path of this site: never elsewhere.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

/// `GET /login`.
pub async fn login_page(Query(next): Query<Next>) -> Response {
    html(
        StatusCode::OK,
        pages::login(&local_path(next.next.as_deref()), None),
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The token.
    pub token: String,
    /// Where to go then.
    #[serde(default)]
    pub next: Option<String>,
}

/// Characters a cookie value may hold (RFC 6265), so the token is kept as given.
fn cookie_safe(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

/// `POST /login`: a good token becomes the cookie; a wrong one gets 401 and the form.
pub async fn login(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(d) = state.dashboard.clone() else {
        return no_dashboard();
    };
    let next = local_path(form.next.as_deref());
    let token = form.token.trim();
    if d.auth.access_of(token).is_none() {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(&next, Some("that token is not valid here")),
        );
    }
    if !cookie_safe(token) {
        return html(
            StatusCode::BAD_REQUEST,
            pages::login(
                &next,
                Some(
                    "this token has characters a cookie cannot keep (space, quote, comma, semicolon or backslash): send it as Authorization: Bearer instead, or choose a token without them",
                ),
            ),
        );
    }
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{}",
        if secure { "; Secure" } else { "" }
    );
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    secured(response)
}

/// `POST /logout`.
pub async fn logout() -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("vigil_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    secured(response)
}

/// Whether a `Host` header names this machine's loopback (with any port).
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Refuses a request whose `Host` is not the loopback: another site's page that has its
/// name resolve to 127.0.0.1 (DNS rebinding) gets nothing from the local dashboard.
async fn loopback_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if loopback_host(host) {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "the local dashboard answers only requests to localhost or 127.0.0.1\n",
        )
            .into_response()
    }
}

/// `vigil dashboard`: the same pages served locally on `listen` (a loopback address), from
/// the kubeconfig's cluster: Releases of `namespace` (or all) from a reflector, status only
/// (the evidence lives in the controller), and the buttons acting with the kubeconfig's
/// credentials, as `vigil promote` does. Runs until `shutdown`.
pub async fn serve_local(
    client: kube::Client,
    namespace: Option<String>,
    listen: std::net::SocketAddr,
    prometheus_ui: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    if !listen.ip().is_loopback() {
        return Err(format!(
            "--listen {listen}: the local dashboard acts with your kubeconfig's credentials, so it \
             listens on a loopback address only (127.0.0.1 or [::1]); for a shared dashboard, use vigil run's"
        ));
    }
    // Only this machine's browser reaches it; a page of another site cannot act through
    // it (the Origin and Host checks).
    let auth = AuthConfig {
        insecure_no_auth: true,
        ..AuthConfig::default()
    };
    // The judge routes need a Prometheus; the local dashboard has none to offer.
    let nowhere = crate::source::prometheus::Prometheus::new(
        crate::source::prometheus::PrometheusConfig::new("http://127.0.0.1:9"),
    )
    .map_err(|e| format!("cannot set up the API: {e}"))?;
    let mut api = super::server::ApiState::new(client.clone(), Arc::new(nowhere), auth.clone());
    api.watch_namespace = namespace.clone();
    let dashboard = Dashboard {
        releases: store::watch_releases(client, namespace.as_deref(), None),
        evidence: None,
        auth,
        insecure_no_auth: true,
        prometheus_ui,
        clock: Clock::wall(),
        poll_ms: pages::POLL_MS,
    };
    let state = ServerState::new(Arc::new(crate::runtime::metrics::Metrics::new()))
        .with_api(api)
        .with_dashboard(dashboard);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    on_listening(listener.local_addr().unwrap_or(listen));
    let router = super::server::router(state).layer(axum::middleware::from_fn(loopback_only));
    super::server::serve(listener, router, shutdown)
        .await
        .map_err(|e| format!("the dashboard's server failed: {e}"))
}

#[cfg(test)]
mod tests;
