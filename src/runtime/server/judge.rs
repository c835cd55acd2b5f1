//! `POST /v1/judge`: the judge as a service, for Argo Rollouts (a `web` metric provider),
//! pipelines and scripts; and `POST /v1/judge/flagger/{hook}`, the judge as a Flagger
//! webhook of each kind.
//!
//! The body of `/v1/judge`:
//!
//! ```json
//! {
//!   "template": "http-prometheus-client",      // an ReleaseAnalysis's name, or the document inline
//!   "clusterScope": false,                      // true: a ClusterReleaseAnalysis
//!   "namespace": "shop",                        // where the ReleaseAnalysis is (named, namespaced)
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
//! `/v1/judge/flagger/{hook}` reads Flagger's webhook body `{name, namespace, phase,
//! checksum, metadata}` and takes the same fields from `metadata` (strings): `template`,
//! `clusterScope`, `namespace` (default the Release's), `stable`, `canary`, `lookback`
//! (default 10m) or `start`/`end`, `step`, and one `arg.<name>` per argument. Flagger's
//! body does not say which kind of hook sent it, so the path does: `{hook}` is the
//! webhook's `type`, and the status means what Flagger makes of it ([`flagger_status`]):
//!
//! | hook | 200 when | otherwise |
//! | --- | --- | --- |
//! | `rollout` | the verdict is not `fail` | 422 (a failed check) |
//! | `confirm-traffic-increase`, `confirm-promotion` | the verdict is `pass` | 409 marginal or inconclusive, 422 fail, 503 metrics missing (Flagger holds) |
//! | `rollback` | the verdict is `fail` | 409 (no rollback) |
//!
//! `pre-rollout`, `confirm-rollout`, `post-rollout` and `event` get 400 naming the hook to
//! use instead: they run while the canary has no traffic, or only inform. Flagger cannot
//! set headers on a webhook, so the bearer token may also come as `metadata.token`.
//!
//! The old `/v1/judge/flagger` is deprecated and judges as `rollout` (what its docs always
//! said it was), with a `Deprecation` and a `Warning` header: Flagger Canaries set up by those docs
//! keep working, and now an inconclusive judgement no longer counts as a failed check.

use super::{ApiError, ApiState, ServerState, authorized, parse_json};
use crate::analysis::{self, AnalysisRequest};
use crate::cluster::analysis::fetch_template;
use crate::data::Window;
use crate::judge::{Outcome, Report, Verdict};
use crate::report::{self, Format};
use crate::rollout::TemplateUse;
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use crate::template::{ReleaseAnalysis, load};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
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
    /// An ReleaseAnalysis (or, with `clusterScope`, ClusterReleaseAnalysis) in the cluster.
    Name(String),
    /// A whole ReleaseAnalysis document (the format of a template file).
    Inline(serde_json::Map<String, serde_json::Value>),
}

/// The body of `POST /v1/judge`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeRequest {
    /// The template.
    pub template: TemplateSource,
    /// Read a ClusterReleaseAnalysis rather than an ReleaseAnalysis.
    #[serde(default)]
    pub cluster_scope: bool,
    /// The namespace of a named ReleaseAnalysis.
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
    /// Judge before/after, as `vigil judge --baseline-before`: when the new version began
    /// (RFC 3339 or Unix seconds). The canary matchers over the window are judged against
    /// the stable matchers over as long a window ending then (or the template's
    /// `spec.offset` earlier); the two may be the same. The window must start no earlier.
    #[serde(default)]
    pub baseline_before: Option<String>,
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
    /// The Release's name.
    #[serde(default)]
    pub name: String,
    /// The Release's namespace.
    #[serde(default)]
    pub namespace: String,
    /// Flagger's phase of the Canary.
    #[serde(default)]
    pub phase: String,
    /// The webhook's `metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The kinds of Flagger webhook (its `webhooks[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlaggerHook {
    /// At every analysis interval; a non-2xx answer is a failed check, and Flagger rolls
    /// back after `threshold` of them (counted over the whole rollout).
    Rollout,
    /// Before each weight increase; a non-2xx answer holds the step, and counts no failure.
    ConfirmTrafficIncrease,
    /// Before promotion; a non-2xx answer holds the promotion, and counts no failure.
    ConfirmPromotion,
    /// At every analysis interval; a 2xx answer rolls back.
    Rollback,
    /// Before traffic shifts to the canary (weight 0).
    PreRollout,
    /// Before the canary starts (weight 0).
    ConfirmRollout,
    /// After promotion or rollback.
    PostRollout,
    /// On each of Flagger's events (informational).
    Event,
}

impl FlaggerHook {
    /// Every kind, in Flagger's order.
    pub const ALL: [FlaggerHook; 8] = [
        FlaggerHook::ConfirmRollout,
        FlaggerHook::PreRollout,
        FlaggerHook::ConfirmTrafficIncrease,
        FlaggerHook::Rollout,
        FlaggerHook::ConfirmPromotion,
        FlaggerHook::PostRollout,
        FlaggerHook::Rollback,
        FlaggerHook::Event,
    ];

    /// Flagger's name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            FlaggerHook::Rollout => "rollout",
            FlaggerHook::ConfirmTrafficIncrease => "confirm-traffic-increase",
            FlaggerHook::ConfirmPromotion => "confirm-promotion",
            FlaggerHook::Rollback => "rollback",
            FlaggerHook::PreRollout => "pre-rollout",
            FlaggerHook::ConfirmRollout => "confirm-rollout",
            FlaggerHook::PostRollout => "post-rollout",
            FlaggerHook::Event => "event",
        }
    }

    /// The kind Flagger calls `name`.
    pub fn parse(name: &str) -> Option<FlaggerHook> {
        FlaggerHook::ALL.into_iter().find(|h| h.as_str() == name)
    }

    /// Why vigil does not judge for this kind, and what to use instead; `None` when it does.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            FlaggerHook::Rollout
            | FlaggerHook::ConfirmTrafficIncrease
            | FlaggerHook::ConfirmPromotion
            | FlaggerHook::Rollback => None,
            FlaggerHook::PreRollout | FlaggerHook::ConfirmRollout => Some(
                "it runs before the canary has traffic, so there is nothing to judge: use a `rollout` hook \
                 (/v1/judge/flagger/rollout), with `confirm-promotion` (/v1/judge/flagger/confirm-promotion) to hold promotion until the canary passes",
            ),
            FlaggerHook::PostRollout => Some(
                "it runs after promotion or rollback, when judging changes nothing: use a `rollout` hook \
                 (/v1/judge/flagger/rollout) and `confirm-promotion` (/v1/judge/flagger/confirm-promotion)",
            ),
            FlaggerHook::Event => Some(
                "event hooks only inform and their answer is ignored: use a `rollout` hook \
                 (/v1/judge/flagger/rollout) and `confirm-promotion` (/v1/judge/flagger/confirm-promotion)",
            ),
        }
    }
}

/// What a Flagger hook of this kind answers for a verdict (see the module docs). A marginal
/// canary is not failed (a `rollout` hook answers 200 and Flagger goes on) but not passed
/// either (the confirmation hooks hold, and a `rollback` hook does not roll back): vigil's
/// own controller neither promotes nor aborts on a marginal verdict.
pub fn flagger_status(hook: FlaggerHook, verdict: Verdict, metrics_missing: bool) -> StatusCode {
    let failed = verdict == Verdict::Fail;
    match hook {
        FlaggerHook::Rollout if failed => StatusCode::UNPROCESSABLE_ENTITY,
        FlaggerHook::Rollout => StatusCode::OK,
        FlaggerHook::Rollback if failed => StatusCode::OK,
        FlaggerHook::Rollback => StatusCode::CONFLICT,
        // The refused kinds never reach a judgement; if they did, they would hold.
        FlaggerHook::ConfirmTrafficIncrease
        | FlaggerHook::ConfirmPromotion
        | FlaggerHook::PreRollout
        | FlaggerHook::ConfirmRollout
        | FlaggerHook::PostRollout
        | FlaggerHook::Event => verdict_status(verdict, metrics_missing),
    }
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

async fn template(api: &ApiState, request: &JudgeRequest) -> Result<ReleaseAnalysis, ApiError> {
    match &request.template {
        TemplateSource::Inline(document) => {
            let text = serde_json::to_string(document).map_err(|e| {
                bad(
                    format!("the inline template: {e}"),
                    "send an ReleaseAnalysis document",
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
                        "add \"namespace\", or \"clusterScope\": true for a ClusterReleaseAnalysis",
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
    verdict_status(report.verdict, metrics_missing(report))
}

/// Whether some metric could not be fetched.
fn metrics_missing(report: &Report) -> bool {
    report.metrics.iter().any(|m| m.outcome == Outcome::Error)
}

/// The status of [`status_of`], from the verdict and whether metrics are missing.
pub fn verdict_status(verdict: Verdict, metrics_missing: bool) -> StatusCode {
    match verdict {
        Verdict::Fail => StatusCode::UNPROCESSABLE_ENTITY,
        _ if metrics_missing => StatusCode::SERVICE_UNAVAILABLE,
        Verdict::Pass => StatusCode::OK,
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
        baseline: match &request.baseline_before {
            Some(time) => analysis::Baseline::Before {
                began: parse_time(time, "baselineBefore")?,
            },
            None => analysis::Baseline::Concurrent,
        },
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

fn respond(report: &Report, status: StatusCode) -> Response {
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
        let status = if query.http_status {
            status_of(&report)
        } else {
            StatusCode::OK
        };
        Ok::<_, ApiError>(respond(&report, status))
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
        baseline_before: get("baselineBefore"),
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

/// One Flagger webhook: judged as the hook `kind` means.
async fn flagger_hook(
    state: ServerState,
    kind: FlaggerHook,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let headers = with_metadata_token(headers, &body);
    let (api, body) = authorized(&state, &headers, body)?;
    let hook: FlaggerWebhook = parse_json(
        &body,
        "Flagger's webhook body {name, namespace, phase, checksum, metadata}",
    )?;
    if let Some(why) = kind.refusal() {
        return Err(bad(
            format!("vigil does not judge Flagger `{}` hooks", kind.as_str()),
            why,
        ));
    }
    let request = from_flagger(&hook)?;
    let report = run(&api, &request).await?;
    let status = flagger_status(kind, report.verdict, metrics_missing(&report));
    tracing::info!(
        canary = %format!("{}/{}", hook.namespace, hook.name),
        hook = kind.as_str(),
        phase = %hook.phase,
        verdict = report.verdict.as_str(),
        status = status.as_u16(),
        "flagger webhook judged"
    );
    Ok(respond(&report, status))
}

/// `POST /v1/judge/flagger/{hook}`.
pub async fn flagger(
    State(state): State<ServerState>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(kind) = FlaggerHook::parse(&hook) else {
        let known: Vec<&str> = FlaggerHook::ALL.iter().map(|h| h.as_str()).collect();
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{hook:?} is not a Flagger webhook type"),
            format!(
                "use /v1/judge/flagger/{{type}} with one of: {}",
                known.join(", ")
            ),
        )
        .into_response();
    };
    flagger_hook(state, kind, headers, body)
        .await
        .unwrap_or_else(error_response)
}

/// What the deprecated `/v1/judge/flagger` says in its `Warning` header.
pub const FLAGGER_DEPRECATED: &str = "299 vigil \"/v1/judge/flagger is deprecated and judges as a rollout hook: use /v1/judge/flagger/rollout\"";

/// `POST /v1/judge/flagger`: deprecated, judges as `rollout`.
pub async fn flagger_deprecated(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut response = flagger_hook(state, FlaggerHook::Rollout, headers, body)
        .await
        .unwrap_or_else(error_response);
    let headers = response.headers_mut();
    headers.insert("deprecation", header::HeaderValue::from_static("true"));
    headers.insert(
        header::WARNING,
        header::HeaderValue::from_static(FLAGGER_DEPRECATED),
    );
    response
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

    #[test]
    fn flagger_hooks_answer_what_flagger_makes_of_them() {
        use FlaggerHook::*;
        use Verdict::*;
        let (ok, fail, hold, busy) = (200, 422, 409, 503);
        // (hook, [pass, fail, marginal, inconclusive], metrics missing with an inconclusive)
        let table = [
            (Rollout, [ok, fail, ok, ok], ok),
            (ConfirmTrafficIncrease, [ok, fail, hold, hold], busy),
            (ConfirmPromotion, [ok, fail, hold, hold], busy),
            (Rollback, [hold, ok, hold, hold], hold),
        ];
        for (hook, statuses, missing) in table {
            assert_eq!(hook.refusal(), None, "{hook:?}");
            for (verdict, want) in [Pass, Fail, Marginal, Inconclusive]
                .into_iter()
                .zip(statuses)
            {
                assert_eq!(
                    flagger_status(hook, verdict, false).as_u16(),
                    want,
                    "{hook:?} {verdict:?}"
                );
            }
            assert_eq!(
                flagger_status(hook, Inconclusive, true).as_u16(),
                missing,
                "{hook:?}"
            );
            // A failure is a failure even with metrics missing.
            assert_eq!(
                flagger_status(hook, Fail, true),
                flagger_status(hook, Fail, false),
                "{hook:?}"
            );
        }
        for hook in [PreRollout, ConfirmRollout, PostRollout, Event] {
            let why = hook.refusal().expect("refused");
            assert!(why.contains("/v1/judge/flagger/rollout"), "{hook:?}: {why}");
        }
        for hook in FlaggerHook::ALL {
            assert_eq!(FlaggerHook::parse(hook.as_str()), Some(hook));
        }
        assert_eq!(FlaggerHook::parse("Rollout"), None);
        assert_eq!(FlaggerHook::ALL.len(), 8);
    }

    #[test]
    fn statuses_tell_the_verdict() {
        assert_eq!(verdict_status(Verdict::Pass, false), StatusCode::OK);
        assert_eq!(
            verdict_status(Verdict::Pass, true),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            verdict_status(Verdict::Fail, true),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            verdict_status(Verdict::Marginal, false),
            StatusCode::CONFLICT
        );
        assert_eq!(
            verdict_status(Verdict::Inconclusive, false),
            StatusCode::CONFLICT
        );
    }
}
