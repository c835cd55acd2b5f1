//! `POST /v1/judge`: the judge as a service, for Argo Rollouts (a `web` metric provider),
//! pipelines and scripts; and `POST /v1/judge/flagger`, the same as a Flagger `rollout`
//! webhook.
//!
//! The body of `/v1/judge`:
//!
//! ```json
//! {
//!   "template": "http-prometheus-client",      // an AnalysisTemplate's name, or the document inline
//!   "clusterScope": false,                      // true: a ClusterAnalysisTemplate
//!   "namespace": "shop",                        // where the AnalysisTemplate is (named, namespaced)
//!   "args": {"job": "web"},
//!   "stable": "version=\"v1\"",
//!   "canary": "version=\"v2\"",
//!   "lookback": "30m",                          // or "start" and "end" (RFC 3339 or Unix seconds)
//!   "step": "1m"                                // default 1m
//! }
//! ```
//!
//! It answers the exact JSON `vigil judge --output json` prints for the same inputs (the
//! same [`analysis::run`] and [`report::render`]). The status is 200 whatever the verdict,
//! unless the query asks `?httpStatus=true`: then 200 pass, 422 fail, 409 marginal or
//! inconclusive, 503 when metrics could not be fetched (as `vigil judge` exits 0, 1, 3, 4).
//! A request that cannot be judged at all (bad template, args, matchers, window) gets 400;
//! more judgements than [`super::ApiState::judge_slots`] at once wait up to
//! [`QUEUE_WAIT`], then get 503 with `Retry-After`.
//!
//! `/v1/judge/flagger` reads Flagger's webhook body `{name, namespace, phase, checksum,
//! metadata}` and takes the same fields from `metadata` (strings): `template`,
//! `clusterScope`, `namespace` (default the Canary's), `stable`, `canary`, `lookback`
//! (default 10m) or `start`/`end`, `step`, and one `arg.<name>` per argument. It always
//! answers with the status codes above, since Flagger passes a check on 2xx only. Flagger
//! cannot set headers on a webhook, so the bearer token may also come as `metadata.token`.

use super::{ApiError, ApiState, ServerState, authorized, parse_json};
use crate::analysis::{self, AnalysisRequest};
use crate::cluster::analysis::fetch_template;
use crate::data::Window;
use crate::judge::{Outcome, Report, Verdict};
use crate::report::{self, Format};
use crate::rollout::TemplateUse;
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use crate::template::{AnalysisTemplate, load};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a judgement waits for a free slot before it gets 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// The lookback of a Flagger webhook without one.
pub const FLAGGER_LOOKBACK: &str = "10m";

/// The template to judge with: a name in the cluster, or the document itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TemplateSource {
    /// An AnalysisTemplate (or, with `clusterScope`, ClusterAnalysisTemplate) in the cluster.
    Name(String),
    /// A whole AnalysisTemplate document (the format of a template file).
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// The body of `POST /v1/judge`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeRequest {
    /// The template.
    pub template: TemplateSource,
    /// Read a ClusterAnalysisTemplate rather than an AnalysisTemplate.
    #[serde(default)]
    pub cluster_scope: bool,
    /// The namespace of a named AnalysisTemplate.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Template arguments.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Label matchers of the stable version, e.g. `version="v1"`.
    pub stable: String,
    /// Label matchers of the canary.
    pub canary: String,
    /// Window start (RFC 3339 or Unix seconds), with `end`.
    #[serde(default)]
    pub start: Option<String>,
    /// Window end, with `start`.
    #[serde(default)]
    pub end: Option<String>,
    /// Judge the last DURATION up to now (e.g. `30m`), instead of `start`/`end`.
    #[serde(default)]
    pub lookback: Option<String>,
    /// The step between points and the value of `{{ interval }}`; default `1m`.
    #[serde(default)]
    pub step: Option<String>,
}

/// The query of `POST /v1/judge`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeQuery {
    /// Tell the verdict by the HTTP status (see the module docs).
    #[serde(default)]
    pub http_status: bool,
}

/// Flagger's webhook body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlaggerWebhook {
    /// The Canary's name.
    #[serde(default)]
    pub name: String,
    /// The Canary's namespace.
    #[serde(default)]
    pub namespace: String,
    /// Flagger's phase of the Canary.
    #[serde(default)]
    pub phase: String,
    /// The webhook's `metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn bad(error: impl Into<String>, hint: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error, hint)
}

fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, ApiError> {
    crate::data::parse_time(text).ok_or_else(|| {
        bad(
            format!("{field} {text:?} is not a time"),
            "use RFC 3339 (2026-11-28T10:00:00Z) or Unix seconds",
        )
    })
}

fn parse_duration(text: &str, field: &str) -> Result<PromDuration, ApiError> {
    text.parse().map_err(|e| {
        bad(
            format!("{field}: {e}"),
            "use a duration such as 30s, 5m or 1h",
        )
    })
}

/// The window of a request, ending now for a lookback.
pub fn window(request: &JudgeRequest, now: DateTime<Utc>) -> Result<Window, ApiError> {
    let step = parse_duration(request.step.as_deref().unwrap_or("1m"), "step")?;
    let (start, end) = match (&request.start, &request.end, &request.lookback) {
        (Some(s), Some(e), None) => (parse_time(s, "start")?, parse_time(e, "end")?),
        (None, None, Some(lookback)) => {
            let length = parse_duration(lookback, "lookback")?;
            let millis = i64::try_from(length.as_millis())
                .map_err(|_| bad("lookback is too long", "use a shorter lookback"))?;
            (now - chrono::Duration::milliseconds(millis), now)
        }
        _ => {
            return Err(bad(
                "give either start and end, or lookback",
                "e.g. \"lookback\": \"30m\"",
            ));
        }
    };
    Window::new(start, end, step).map_err(|e| bad(e.to_string(), "fix the window"))
}

async fn template(api: &ApiState, request: &JudgeRequest) -> Result<AnalysisTemplate, ApiError> {
    match &request.template {
        TemplateSource::Inline(document) => {
            let text = serde_json::to_string(document).map_err(|e| {
                bad(
                    format!("the inline template: {e}"),
                    "send an AnalysisTemplate document",
                )
            })?;
            load::parse(&text, "the inline template").map_err(|p| {
                bad(
                    p.to_string(),
                    "fix the inline template (`vigil lint` checks a file)",
                )
            })
        }
        TemplateSource::Name(name) => {
            let namespace = match (&request.namespace, request.cluster_scope) {
                (Some(ns), _) => ns.clone(),
                (None, true) => String::new(),
                (None, false) => {
                    return Err(bad(
                        format!("template {name:?} needs a namespace"),
                        "add \"namespace\", or \"clusterScope\": true for a ClusterAnalysisTemplate",
                    ));
                }
            };
            let reference = TemplateUse {
                name: name.clone(),
                cluster_scope: request.cluster_scope,
            };
            fetch_template(&api.client, &namespace, &reference)
                .await
                .map_err(|e| bad(e, "check the template's name, namespace and clusterScope"))
        }
    }
}

/// What the HTTP status says of a report: as `vigil judge`'s exit status, a failure first,
/// then metrics that could not be fetched, then the verdict.
pub fn status_of(report: &Report) -> StatusCode {
    if report.verdict == Verdict::Fail {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    if report.metrics.iter().any(|m| m.outcome == Outcome::Error) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match report.verdict {
        Verdict::Pass => StatusCode::OK,
        Verdict::Fail => StatusCode::UNPROCESSABLE_ENTITY,
        Verdict::Marginal | Verdict::Inconclusive => StatusCode::CONFLICT,
    }
}

/// Runs one judgement: the report, or why there is none.
pub async fn run(api: &ApiState, request: &JudgeRequest) -> Result<Report, ApiError> {
    let template = template(api, request).await?;
    let stable: Selector = request.stable.parse().map_err(|e| {
        bad(
            format!("stable: {e}"),
            "label matchers without braces, e.g. version=\"v1\"",
        )
    })?;
    let canary: Selector = request.canary.parse().map_err(|e| {
        bad(
            format!("canary: {e}"),
            "label matchers without braces, e.g. version=\"v2\"",
        )
    })?;
    let window = window(request, Utc::now())?;
    let analysis = AnalysisRequest {
        look: 1,
        position: crate::judge::Position::one_off(),
        template: &template,
        args: request.args.clone(),
        stable,
        canary,
        window,
    };
    let slots = api.judge_slots.clone();
    let _slot = match tokio::time::timeout(api.judge_wait, slots.acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many judgements are running",
                "retry later; the controller bounds judgements so as not to overload Prometheus",
            ));
        }
    };
    analysis::run(api.source.as_ref(), &analysis, api.judge_queries)
        .await
        .map_err(|e| bad(e.to_string(), "fix the args or matchers"))
}

fn respond(report: &Report, http_status: bool) -> Response {
    let status = if http_status {
        status_of(report)
    } else {
        StatusCode::OK
    };
    // Byte for byte what `vigil judge --output json` prints.
    let mut body = report::render(report, Format::Json);
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(e: ApiError) -> Response {
    let busy = e.status == StatusCode::SERVICE_UNAVAILABLE;
    let mut response = e.into_response();
    if busy {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
    }
    response
}

/// `POST /v1/judge`.
pub async fn judge(
    State(state): State<ServerState>,
    query: Result<Query<JudgeQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let Query(query) =
            query.map_err(|e| bad(format!("bad query: {e}"), "use ?httpStatus=true or nothing"))?;
        let (api, body) = authorized(&state, &headers, body)?;
        let request: JudgeRequest = parse_json(
            &body,
            "{\"template\", \"stable\", \"canary\", \"lookback\" or \"start\"/\"end\", ...}",
        )?;
        let report = run(&api, &request).await?;
        Ok::<_, ApiError>(respond(&report, query.http_status))
    }
    .await;
    result.unwrap_or_else(error_response)
}

/// The judge request a Flagger webhook's metadata describes.
pub fn from_flagger(hook: &FlaggerWebhook) -> Result<JudgeRequest, ApiError> {
    let meta = &hook.metadata;
    let get = |key: &str| {
        meta.get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let need = |key: &str| {
        get(key).ok_or_else(|| {
            bad(
                format!("the webhook's metadata has no {key:?}"),
                "set metadata.template, metadata.stable and metadata.canary in the Flagger Canary's webhook",
            )
        })
    };
    let cluster_scope = match get("clusterScope").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(
                format!("metadata.clusterScope is {other:?}"),
                "use \"true\" or \"false\"",
            ));
        }
    };
    let args = meta
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("arg.").map(|n| (n.to_string(), v.clone())))
        .collect();
    let (start, end) = (get("start"), get("end"));
    let lookback = match (&start, &end) {
        (None, None) => Some(get("lookback").unwrap_or_else(|| FLAGGER_LOOKBACK.to_string())),
        _ => get("lookback"),
    };
    Ok(JudgeRequest {
        template: TemplateSource::Name(need("template")?),
        cluster_scope,
        namespace: get("namespace")
            .or_else(|| (!hook.namespace.is_empty()).then(|| hook.namespace.clone())),
        args,
        stable: need("stable")?,
        canary: need("canary")?,
        start,
        end,
        lookback,
        step: get("step"),
    })
}

/// Flagger's webhooks cannot send headers: without credential headers, the bearer token
/// may come as `metadata.token` in the body (checked like the header).
fn with_metadata_token(mut headers: HeaderMap, body: &Result<Bytes, BytesRejection>) -> HeaderMap {
    let has_credentials = headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key(crate::signature::SIGNATURE_HEADER);
    if has_credentials {
        return headers;
    }
    let token = body
        .as_ref()
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .and_then(|v| v["metadata"]["token"].as_str().map(str::to_string));
    if let Some(value) =
        token.and_then(|t| header::HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    headers
}

/// `POST /v1/judge/flagger`.
pub async fn flagger(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let headers = with_metadata_token(headers, &body);
        let (api, body) = authorized(&state, &headers, body)?;
        let hook: FlaggerWebhook = parse_json(
            &body,
            "Flagger's webhook body {name, namespace, phase, checksum, metadata}",
        )?;
        let request = from_flagger(&hook)?;
        let report = run(&api, &request).await?;
        tracing::info!(
            canary = %format!("{}/{}", hook.namespace, hook.name),
            phase = %hook.phase,
            verdict = report.verdict.as_str(),
            "flagger webhook judged"
        );
        Ok::<_, ApiError>(respond(&report, true))
    }
    .await;
    result.unwrap_or_else(error_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn request(extra: serde_json::Value) -> JudgeRequest {
        let mut body = serde_json::json!({
            "template": "t", "namespace": "shop", "stable": "v=\"1\"", "canary": "v=\"2\""
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(body).expect("request")
    }

    #[test]
    fn windows_from_lookback_or_bounds() {
        let now = Utc.timestamp_opt(1_790_000_000, 0).single().expect("time");
        let w = window(&request(serde_json::json!({"lookback": "30m"})), now).expect("window");
        assert_eq!((w.end - w.start).num_minutes(), 30);
        let w = window(
            &request(serde_json::json!({"start": "2026-09-21T13:00:00Z", "end": "1790000000", "step": "30s"})),
            now,
        )
        .expect("window");
        assert_eq!(w.end, now);
        assert_eq!(w.step, PromDuration::from_secs(30));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"lookback": "30m", "start": "1"}),
            serde_json::json!({"lookback": "soon"}),
            serde_json::json!({"start": "yesterday", "end": "1790000000"}),
        ] {
            let e = window(&request(bad.clone()), now).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn templates_are_named_or_inline() {
        let r = request(serde_json::json!({"template": {"apiVersion": "x"}}));
        assert!(matches!(r.template, TemplateSource::Inline(_)));
        assert!(matches!(
            request(serde_json::json!({})).template,
            TemplateSource::Name(_)
        ));
        assert!(
            serde_json::from_value::<JudgeRequest>(serde_json::json!({
                "template": "t", "stable": "a", "canary": "b", "nonsense": 1
            }))
            .is_err()
        );
    }

    #[test]
    fn flagger_metadata_becomes_a_request() {
        let hook: FlaggerWebhook = serde_json::from_value(serde_json::json!({
            "name": "web", "namespace": "shop", "phase": "Progressing", "checksum": "abc",
            "metadata": {
                "template": "http", "stable": "version=\"v1\"", "canary": "version=\"v2\"",
                "arg.job": "web", "step": "30s"
            }
        }))
        .expect("hook");
        let r = from_flagger(&hook).expect("request");
        assert!(matches!(&r.template, TemplateSource::Name(n) if n == "http"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(
            r.args,
            BTreeMap::from([("job".to_string(), "web".to_string())])
        );
        assert_eq!(r.lookback.as_deref(), Some(FLAGGER_LOOKBACK));
        assert_eq!(r.step.as_deref(), Some("30s"));
        assert!(!r.cluster_scope);
        let mut missing = hook;
        missing.metadata.remove("canary");
        let e = from_flagger(&missing).expect_err("refused");
        assert!(e.error.contains("\"canary\""), "{}", e.error);
    }
}
