//! `POST /v1/releases/{namespace}/{name}/{action}`: the operator commands for CI and
//! ChatOps, authenticated like the rest of the API ([`super::auth`]).
//!
//! | action | body (optional) | does |
//! | --- | --- | --- |
//! | `promote` | `{"full": true}` | requests a promote (or a full promote) in `status.request` |
//! | `abort` | `{"reason": "..."}` | requests an abort in `status.request` |
//! | `pause` | - | sets `spec.paused` |
//! | `resume` | - | clears `spec.paused` |
//!
//! 202 with what was requested (`{"canary", "action", "phase", "request", "replaced"}`, or
//! `{"canary", "action", "paused", "changed"}`); 404 for an unknown Release or action; 409
//! when refused (nothing in flight to promote or abort); 400 for a bad body; 502/503 when
//! the Kubernetes API fails.

use super::{ApiError, ServerState, authorized, parse_json};
use crate::cluster::ops::{self, OpsError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

/// The body of `promote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    #[serde(default)]
    full: bool,
}

/// The body of `abort`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbortBody {
    #[serde(default)]
    reason: Option<String>,
}

/// The reason of an abort requested without one.
pub const DEFAULT_ABORT_REASON: &str = "aborted through the vigil API";

/// Handles one action.
pub async fn act(
    State(state): State<ServerState>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, &namespace, &name, &action, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn optional<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(body, what)
    }
}

fn ops_error(e: OpsError) -> ApiError {
    let message = e.to_string();
    match e {
        OpsError::NotFound { .. } | OpsError::Deleted { .. } => ApiError::new(
            StatusCode::NOT_FOUND,
            message,
            "check the namespace and name in the URL",
        ),
        OpsError::Refused { .. } => ApiError::new(
            StatusCode::CONFLICT,
            message,
            "see the Release's phase with `vigil status`",
        ),
        OpsError::NoCrd => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message, "install the CRDs")
        }
        OpsError::Forbidden { .. } | OpsError::Api { .. } | OpsError::Unreachable(_) => {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                message,
                "the controller's Kubernetes access failed; see its logs and RBAC",
            )
        }
    }
}

async fn handle(
    state: &ServerState,
    namespace: &str,
    name: &str,
    action: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (api, body) = authorized(state, headers, body)?;
    let client = api.client.clone();
    let canary = format!("{namespace}/{name}");
    let requested = match action {
        "promote" => {
            let b: PromoteBody = optional(&body, "{\"full\": true|false} or nothing")?;
            ops::promote(client, namespace, name, b.full).await
        }
        "abort" => {
            let b: AbortBody = optional(&body, "{\"reason\": \"...\"} or nothing")?;
            let reason = b
                .reason
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ABORT_REASON.to_string());
            ops::abort(client, namespace, name, &reason).await
        }
        "pause" | "resume" => {
            let paused = action == "pause";
            let changed = ops::set_paused(client, namespace, name, paused)
                .await
                .map_err(ops_error)?;
            tracing::info!(canary = %canary, action, changed, "api: canary action");
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"canary": canary, "action": action, "paused": paused, "changed": changed})),
            )
                .into_response());
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}"),
                "use promote, abort, pause or resume",
            ));
        }
    }
    .map_err(ops_error)?;
    tracing::info!(canary = %canary, action, reason = %requested.request.reason, "api: canary action");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "canary": canary,
            "action": action,
            "phase": requested.phase.as_str(),
            "paused": requested.paused,
            "request": requested.request,
            "replaced": requested.replaced,
        })),
    )
        .into_response())
}
