//! Release gates: the Canary's `webhooks`, asked when the state machine says so.
//!
//! vigil POSTs this JSON (version `vigil.dev/gate/v1`) to each webhook of the kind due:
//!
//! ```json
//! {"apiVersion": "vigil.dev/gate/v1", "type": "confirm-promotion",
//!  "name": "web", "namespace": "shop", "phase": "Progressing",
//!  "step": 3, "steps": 3, "weight": 100,
//!  "checksum": "4f2c0a9e1b", "stableRevision": "9d1e7c2a30", "canaryRevision": "4f2c0a9e1b",
//!  "lastVerdict": "pass", "message": "...", "metadata": {"key": "value"}}
//! ```
//!
//! `name`, `namespace`, `phase`, `checksum`, `type` and `metadata` have the meaning Flagger
//! gives them, so Flagger's webhook receivers (load testers, confirmation gates) work as
//! they are. A 2xx answer passes. Connection errors, timeouts and 5xx are retried with
//! backoff; any other answer is final.

use crate::api::crd::{Canary, GateWebhook};
use crate::rollout::{GateKind, GateResult, State};
use crate::template::units::PromDuration;
use kube::ResourceExt;
use std::time::Duration;

/// The payload's version.
pub const API_VERSION: &str = "vigil.dev/gate/v1";
/// Default time one call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default retries.
pub const DEFAULT_RETRIES: u32 = 2;

/// The JSON a gate receives.
pub fn payload(canary: &Canary, state: &State, hook: &GateWebhook) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "type": hook.kind.as_str(),
        "name": canary.name_any(),
        "namespace": canary.namespace().unwrap_or_default(),
        "phase": state.phase().as_str(),
        "step": state.current_step() + 1,
        "steps": state.steps,
        "weight": state.weight(),
        "checksum": state.canary_revision().unwrap_or_default(),
        "stableRevision": state.stable_revision,
        "canaryRevision": state.canary_revision(),
        "lastVerdict": state.last_verdict(),
        "message": state.message,
        "metadata": hook.metadata,
    })
}

/// One webhook's answer: 2xx or not, and what it said.
async fn call(
    http: &reqwest::Client,
    hook: &GateWebhook,
    body: &serde_json::Value,
) -> (bool, String) {
    let timeout = hook
        .timeout
        .as_deref()
        .and_then(|t| t.parse::<PromDuration>().ok())
        .map_or(DEFAULT_TIMEOUT, PromDuration::to_std);
    let retries = hook
        .retries
        .map_or(DEFAULT_RETRIES, |r| r.clamp(0, 10) as u32);
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * (1 << attempt.min(6)))).await;
        }
        match http
            .post(&hook.url)
            .timeout(timeout)
            .json(body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(200).collect();
                let said = if text.is_empty() {
                    format!("{}: HTTP {}", hook.name, status.as_u16())
                } else {
                    format!("{}: HTTP {}: {text}", hook.name, status.as_u16())
                };
                if status.is_success() {
                    return (true, said);
                }
                last = said;
                if !status.is_server_error() {
                    break;
                }
            }
            Err(e) => {
                last = format!("{}: cannot reach {}: {e}", hook.name, hook.url);
            }
        }
    }
    (false, last)
}

/// Asks every webhook of `kind` and sums the answers up: all must pass, except `rollback`,
/// where one 2xx answer asks for the rollback.
pub async fn ask(
    http: &reqwest::Client,
    canary: &Canary,
    state: &State,
    kind: GateKind,
) -> GateResult {
    let hooks: Vec<&GateWebhook> = canary
        .spec
        .webhooks
        .iter()
        .filter(|h| h.kind == kind)
        .collect();
    let mut answers = Vec::new();
    for hook in &hooks {
        answers.push(call(http, hook, &payload(canary, state, hook)).await);
    }
    let passed = if kind == GateKind::Rollback {
        answers.iter().any(|(ok, _)| *ok)
    } else {
        answers.iter().all(|(ok, _)| *ok)
    };
    let message = answers
        .iter()
        .filter(|(ok, _)| *ok == passed)
        .map(|(_, said)| said.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    GateResult {
        kind,
        passed,
        message,
    }
}

/// Tells the `post-rollout` webhooks how the rollout ended, without waiting for them.
pub fn post_rollout(http: reqwest::Client, canary: Canary, state: State) {
    if !canary
        .spec
        .webhooks
        .iter()
        .any(|h| h.kind == GateKind::PostRollout)
    {
        return;
    }
    tokio::spawn(async move {
        let result = ask(&http, &canary, &state, GateKind::PostRollout).await;
        tracing::info!(
            canary = %canary.name_any(),
            namespace = %canary.namespace().unwrap_or_default(),
            passed = result.passed,
            "post-rollout webhooks: {}",
            result.message
        );
    });
}
