//! `POST /v1/alerts`: Alertmanager's webhook receiver.
//!
//! The body is Alertmanager's version "4" payload. Firing alerts abort the in-flight
//! Releases they match ([`crate::api::alerts`]): the abort is written to
//! `status.request` ([`ops::abort`]) with a reason naming the alert, and the controller's
//! next reconcile rolls back and records it in `status.message` and the `Aborted` event.
//!
//! | answer | when |
//! | --- | --- |
//! | 202 `{"aborted": [...], "unmatched": [...], "resolved": n}` | the payload was handled (an alert that matches no Release in flight is logged) |
//! | 400 | not JSON, not the webhook schema, or not version "4" |
//! | 401 / 503 | see [`super::auth`] |
//! | 413 | the body is larger than the limit |
//! | 503 | the Releases could not be listed, or an abort could not be written: Alertmanager retries |

use super::{ApiError, ServerState, authorized, parse_json};
use crate::api::alerts::{self, Webhook};
use crate::api::crd::Release;
use crate::cluster::ops::{self, OpsError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::api::{Api, ListParams};
use serde_json::json;

/// Handles one Alertmanager notification.
pub async fn receive(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &ServerState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (api, body) = authorized(state, headers, body)?;
    let webhook: Webhook = parse_json(&body, "Alertmanager's webhook payload (version \"4\")")?;
    if webhook.version != alerts::VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "wrong schema: payload version {:?}, this receiver reads version \"4\"",
                webhook.version
            ),
            "point an Alertmanager webhook_config (payload version 4) at this URL",
        ));
    }
    let canaries: Api<Release> = match &api.watch_namespace {
        Some(ns) => Api::namespaced(api.client.clone(), ns),
        None => Api::all(api.client.clone()),
    };
    let list = canaries.list(&ListParams::default()).await.map_err(|e| {
        tracing::warn!(error = %e, "alerts: cannot list Releases");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot list Releases: {e}"),
            "the Kubernetes API server is unreachable or refuses; Alertmanager will retry",
        )
    })?;
    let decision = alerts::decide(&webhook, &list.items, &api.matching);
    for name in &decision.unmatched {
        tracing::info!(
            alert = %name,
            group = %webhook.group_key,
            "alerts: a firing alert matches no canary in flight; nothing to abort"
        );
    }
    let mut aborted = Vec::new();
    let mut skipped = Vec::new();
    let mut failed = Vec::new();
    for a in &decision.abort {
        match ops::abort(api.client.clone(), &a.namespace, &a.name, &a.reason).await {
            Ok(done) => {
                tracing::info!(
                    canary = %format!("{}/{}", a.namespace, a.name),
                    reason = %a.reason,
                    "alerts: abort requested"
                );
                aborted.push(json!({
                    "namespace": a.namespace,
                    "name": a.name,
                    "alerts": a.alerts,
                    "request": done.request,
                }));
            }
            // It ended (or was deleted) since the list: nothing left to abort.
            Err(e @ (OpsError::Refused { .. } | OpsError::NotFound { .. })) => {
                tracing::info!(error = %e, "alerts: not aborted");
                skipped
                    .push(json!({"namespace": a.namespace, "name": a.name, "why": e.to_string()}));
            }
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot request the abort");
                failed.push(format!("{}/{}: {e}", a.namespace, a.name));
            }
        }
    }
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot request every abort: {}", failed.join("; ")),
            "Alertmanager retries; the aborts already written stay",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "aborted": aborted,
            "skipped": skipped,
            "unmatched": decision.unmatched,
            "resolved": decision.resolved,
        })),
    )
        .into_response())
}
