//! The dashboard's routes over a store of Releases: every page carries the CSP and loads
//! nothing from elsewhere, credentials decide what is shown, the cookie is kept as it should.

use super::*;
use crate::runtime::metrics::Metrics;
use crate::runtime::server::{self, ServerState};
use axum::body::Body;
use axum::http::Request;
use kube::runtime::watcher;
use tower::ServiceExt;

const WRITER: &str = "writer-token";
const READER: &str = "reader-token";

fn release(ns: &str, name: &str, status: serde_json::Value) -> Release {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "targetRef": {"name": name}, "service": {"name": name},
            "routing": {"nginx": {"ingress": name}}, "stepWeights": [10, 50],
        },
        "status": status,
    }))
    .expect("release")
}

fn dashboard(insecure: bool) -> Dashboard {
    let (reader, mut writer) = kube::runtime::reflector::store::<Release>();
    let at = "2026-12-02T10:00:00Z";
    for r in [
        release(
            "shop",
            "web",
            serde_json::json!({"phase": "Progressing", "weight": 10, "currentStep": 0, "steps": 2,
                "stepLabel": "1/2", "stepStartedAt": at, "startedAt": at, "canaryRevision": "abc",
                "lastVerdict": "pass", "message": "step 1/2 at 10%"}),
        ),
        release(
            "pay",
            "api",
            serde_json::json!({"phase": "Failed", "weight": 0, "failedRevision": "def", "abortedAt": at,
                "message": "aborted: error-rate HIGH <script>alert(1)</script>"}),
        ),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(r));
    }
    Dashboard {
        releases: reader,
        evidence: Some(Arc::new(Evidence::new())),
        auth: AuthConfig {
            token: Some(WRITER.into()),
            read_token: Some(READER.into()),
            ..AuthConfig::default()
        },
        insecure_no_auth: insecure,
        prometheus_ui: None,
        clock: Clock::wall(),
        poll_ms: pages::POLL_MS,
    }
}

async fn get(d: &Dashboard, uri: &str, cookie: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let state = ServerState::new(Arc::new(Metrics::new())).with_dashboard(d.clone());
    let mut request = Request::builder().method("GET").uri(uri);
    if let Some(token) = cookie {
        request = request.header(header::COOKIE, format!("other=1; {COOKIE}={token}"));
    }
    let response = server::router(state)
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Every attribute that could make the browser fetch something.
fn external_references(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    [
        "src=", "@import", "url(", "<link", "srcset=", "<iframe", "<object", "<embed",
    ]
    .iter()
    .filter(|p| lower.contains(*p))
    .map(|p| (*p).to_string())
    .chain(
        lower
            .match_indices("href=\"")
            .map(|(i, _)| lower[i + 6..].split('"').next().unwrap_or("").to_string())
            .filter(|h| !h.starts_with('/') && !h.starts_with('#')),
    )
    .collect()
}

#[tokio::test]
async fn every_page_carries_the_csp_and_loads_nothing_external() {
    let d = dashboard(false);
    for uri in [
        "/",
        "/releases/shop/web",
        "/releases/pay/api",
        "/login",
        "/releases/shop/nope",
    ] {
        let (status, headers, page) = get(&d, uri, Some(WRITER)).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{uri}: {status}"
        );
        let csp = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{uri}: {csp}"
        );
        assert!(
            csp.contains("connect-src 'self'") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(external_references(&page), Vec::<String>::new(), "{uri}");
        // The one script is exactly the one the hash allows.
        assert_eq!(page.matches("<script>").count(), 1, "{uri}");
        assert!(
            page.contains(&format!("<script>{}</script>", pages::SCRIPT)),
            "{uri}"
        );
        assert!(
            !page.contains(" on") || !page.contains("onclick="),
            "no inline handlers"
        );
        assert!(
            !page.contains(WRITER) && !page.contains(READER),
            "{uri}: a token shown"
        );
    }
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pages::SCRIPT.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    assert!(pages::CSP.contains(&format!("'sha256-{hash}'")));
}

#[tokio::test]
async fn no_credential_gets_401_and_the_sign_in_form_only() {
    let d = dashboard(false);
    for uri in ["/", "/releases/shop/web"] {
        let (status, headers, page) = get(&d, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(page.contains("action=\"/login\""), "{page}");
        assert!(
            !page.contains("shop") || uri.contains("shop"),
            "no Release shown"
        );
        assert!(!page.contains("data-release="), "{page}");
    }
    let (status, _, body) = get(&d, "/dashboard/api/overview", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, _) = get(&d, "/", Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, page) = get(&d, "/login", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("type=\"password\""));
    // Opened: read-only without a credential.
    let open = dashboard(true);
    let (status, _, page) = get(&open, "/releases/shop/web", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("data-action="), "read-only: no buttons");
    // Nothing configured and not opened: 503.
    let mut none = dashboard(false);
    none.auth = AuthConfig::default();
    assert_eq!(
        get(&none, "/", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_overview_filters_sorts_and_escapes() {
    let d = dashboard(false);
    let (_, _, page) = get(&d, "/", Some(READER)).await;
    assert!(page.contains("data-release=\"shop/web\""), "{page}");
    assert!(page.contains("data-release=\"pay/api\""), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)"), "escaped");
    assert!(
        page.contains("reason failed"),
        "the abort's reason is flagged"
    );
    let (_, _, page) = get(&d, "/?namespace=pay", Some(READER)).await;
    assert!(
        !page.contains("data-release=\"shop/web\"") && page.contains("data-release=\"pay/api\"")
    );
    let (_, _, page) = get(&d, "/?phase=Progressing", Some(READER)).await;
    assert!(
        page.contains("data-release=\"shop/web\"") && !page.contains("data-release=\"pay/api\"")
    );
    let (status, _, body) = get(&d, "/dashboard/api/overview?phase=Failed", Some(READER)).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["releases"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json["releases"][0]["phase"], "Failed");
    assert_eq!(json["namespaces"], serde_json::json!(["pay", "shop"]));
    assert!(json["versions"]["rows"].is_string());
}

#[tokio::test]
async fn buttons_only_for_a_credential_that_may_write() {
    let d = dashboard(false);
    let (_, _, page) = get(&d, "/releases/shop/web", Some(READER)).await;
    assert!(!page.contains("data-action="), "read-only");
    assert!(page.contains("read-only"));
    let (_, _, page) = get(&d, "/releases/shop/web", Some(WRITER)).await;
    for action in ["promote", "abort", "pause", "resume"] {
        assert!(
            page.contains(&format!("data-url=\"/v1/releases/shop/web/{action}\"")),
            "{action}"
        );
    }
    let (_, _, body) = get(&d, "/dashboard/api/releases/shop/web", Some(READER)).await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["fragments"]["actions"], "");
    assert!(
        json["fragments"]["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("No analysis"))
    );
}

async fn post_login(d: &Dashboard, body: &str) -> (StatusCode, HeaderMap) {
    let state = ServerState::new(Arc::new(Metrics::new())).with_dashboard(d.clone());
    let response = server::router(state)
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
        .expect("infallible");
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn a_good_token_becomes_an_http_only_strict_cookie() {
    let d = dashboard(false);
    let (status, headers) =
        post_login(&d, "token=reader-token&next=%2Freleases%2Fshop%2Fweb").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/releases/shop/web");
    let cookie = headers[header::SET_COOKIE].to_str().expect("ascii");
    assert!(cookie.starts_with("vigil_token=reader-token; "), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, headers) = post_login(&d, "token=nope&next=https%3A%2F%2Fevil.example").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key(header::SET_COOKIE));
    let (_, headers) = post_login(&d, "token=writer-token&next=%2F%2Fevil.example").await;
    assert_eq!(headers[header::LOCATION], "/", "never elsewhere");
}

#[test]
fn only_loopback_hosts_reach_the_local_dashboard() {
    for ok in [
        "localhost",
        "localhost:3100",
        "127.0.0.1:3100",
        "[::1]:3100",
        "[::1]",
    ] {
        assert!(loopback_host(ok), "{ok}");
    }
    for no in [
        "evil.example:3100",
        "127.0.0.1.evil.example",
        "",
        "localhost.evil:80",
    ] {
        assert!(!loopback_host(no), "{no}");
    }
}
