//! Release gates: the Release's `webhooks`, asked when the state machine says so.
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
//! they are. `phase` is always one of Flagger's phases ([`flagger_phase`]), never vigil's
//! `Paused`. An `event` webhook gets Flagger's event payload: `metadata` also holds
//! `eventMessage`, `eventType` (`Normal` or `Warning`) and `timestamp` (Unix milliseconds),
//! which win over the webhook's own keys of those names.
//!
//! As in Flagger, only 200, 201 and 202 pass; any other answer refuses. Retries (the
//! webhook's `retries`, default 2, at most 10): after a connection error, a timeout, 429 or
//! a 5xx other than 501, as Flagger's HTTP client (go-retryablehttp) retries, waiting 0.4 s,
//! 0.8 s, 1.6 s, ... (doubling, at most 25.6 s) between attempts; any other answer is final.
//! Flagger's default is no retry; vigil's is 2, since a refused gate holds or fails a step.

use crate::api::crd::{GateWebhook, Release};
use crate::rollout::{Event, GateKind, GateResult, State};
use crate::template::units::PromDuration;
use kube::ResourceExt;
use std::time::Duration;

/// The payload's version.
pub const API_VERSION: &str = "vigil.dev/gate/v1";
/// Default time one call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default retries.
pub const DEFAULT_RETRIES: u32 = 2;

/// The Flagger phase a gate of `kind` is told: Flagger's `Waiting` while a
/// `confirm-rollout` gate holds a new revision, else [`crate::rollout::Phase::flagger`].
pub fn flagger_phase(state: &State, kind: GateKind) -> &'static str {
    if kind == GateKind::ConfirmRollout {
        "Waiting"
    } else {
        state.phase().flagger()
    }
}

/// Whether an answer passes a gate: 200, 201 or 202, as in Flagger.
pub fn passes(status: u16) -> bool {
    (200..=202).contains(&status)
}

/// Whether an answer is worth asking again: 429 and 5xx but 501, as go-retryablehttp's
/// default policy, which Flagger uses.
pub fn retried(status: u16) -> bool {
    status == 429 || (status >= 500 && status != 501)
}

/// The JSON a gate receives.
pub fn payload(canary: &Release, state: &State, hook: &GateWebhook) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "type": hook.kind.as_str(),
        "name": canary.name_any(),
        "namespace": canary.namespace().unwrap_or_default(),
        "phase": flagger_phase(state, hook.kind),
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

/// One webhook's answer: passed (200-202) or not, and what it said.
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
                if passes(status.as_u16()) {
                    return (true, said);
                }
                last = said;
                if !retried(status.as_u16()) {
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
/// where one passing answer (200-202) asks for the rollback.
pub async fn ask(
    http: &reqwest::Client,
    canary: &Release,
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
pub fn post_rollout(http: reqwest::Client, canary: Release, state: State) {
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

/// The payload of an `event` webhook: the gate payload, with Flagger's event keys in
/// `metadata` (they win over the webhook's own).
pub fn event_payload(
    canary: &Release,
    state: &State,
    hook: &GateWebhook,
    event: &Event,
    now_millis: i64,
) -> serde_json::Value {
    let mut body = payload(canary, state, hook);
    let mut metadata = hook.metadata.clone();
    metadata.insert("eventMessage".into(), event.message.clone());
    let kind = if event.kind.is_warning() {
        "Warning"
    } else {
        "Normal"
    };
    metadata.insert("eventType".into(), kind.into());
    metadata.insert("timestamp".into(), now_millis.to_string());
    body["metadata"] = serde_json::json!(metadata);
    body
}

/// Sends each of a reconcile's events to the `event` webhooks, in order, without waiting
/// for them: they only inform, and their answers are logged.
pub fn events(http: reqwest::Client, canary: Release, state: State, events: Vec<Event>) {
    let hooks: Vec<GateWebhook> = canary
        .spec
        .webhooks
        .iter()
        .filter(|h| h.kind == GateKind::Event)
        .cloned()
        .collect();
    if hooks.is_empty() || events.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for event in &events {
            let now = chrono::Utc::now().timestamp_millis();
            for hook in &hooks {
                let body = event_payload(&canary, &state, hook, event, now);
                let (ok, said) = call(&http, hook, &body).await;
                if !ok {
                    tracing::info!(
                        canary = %canary.name_any(),
                        namespace = %canary.namespace().unwrap_or_default(),
                        "event webhook: {said}"
                    );
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_200_to_202_pass_as_in_flagger() {
        for status in [200, 201, 202] {
            assert!(passes(status), "{status}");
        }
        for status in [203, 204, 206, 301, 400, 409, 500] {
            assert!(!passes(status), "{status}");
        }
        for status in [429, 500, 502, 503, 504] {
            assert!(retried(status), "{status}");
        }
        for status in [400, 404, 409, 422, 501] {
            assert!(!retried(status), "{status}");
        }
    }
}
