//! What the operator commands (`vigil promote|abort|pause|resume|status`) do to a Release.
//!
//! Promote and abort are *requests*: they write `status.request` with a JSON merge patch of
//! the `status` subresource, as `kubectl argo rollouts abort` does, and the controller acts
//! on it at its next reconcile and clears it. Pause and resume set `spec.paused`, which the
//! controller honours for as long as it is set.

use crate::api::crd::{Release, ReleaseStatus};
use crate::rollout::{Phase, Request, RequestAction};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::fmt::Write as _;

/// Why an operator command could not be carried out. The messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No such Release.
    #[error("canary {namespace}/{name} not found: check the name and namespace (-n)")]
    NotFound {
        /// The namespace looked in.
        namespace: String,
        /// The name looked for.
        name: String,
    },
    /// The Release CRD is not installed in the cluster.
    #[error(
        "the cluster does not know the Release resource (releases.vigil.dev): install the CRDs with `vigil crd | kubectl apply -f -`"
    )]
    NoCrd,
    /// The command makes no sense in the Release's current state.
    #[error("canary {namespace}/{name} is {phase}: {message}")]
    Refused {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// Its phase.
        phase: String,
        /// Why nothing was done.
        message: String,
    },
    /// The API server refused the request for lack of permissions.
    #[error(
        "not allowed to {verb} releases{subresource} in namespace {namespace}: {message}; ask for RBAC permission or use another context"
    )]
    Forbidden {
        /// What was attempted (`get`, `patch`, `watch`).
        verb: &'static str,
        /// `/status` when the status subresource was concerned.
        subresource: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// The API server answered with another error.
    #[error("the Kubernetes API server refused to {verb} canary {namespace}/{name}: {message}")]
    Api {
        /// What was attempted.
        verb: &'static str,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The API server's message and code.
        message: String,
    },
    /// The API server could not be reached, or answered nonsense.
    #[error(
        "cannot talk to the Kubernetes API server: {0}: check your kubeconfig (KUBECONFIG, the current context) and that the cluster is reachable"
    )]
    Unreachable(String),
    /// The Release was deleted while being watched.
    #[error("canary {namespace}/{name} was deleted")]
    Deleted {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
}

/// What a promote or abort request did.
#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    /// The request written to `status.request`.
    pub request: Request,
    /// The Release's phase when the request was written.
    pub phase: Phase,
    /// Whether `spec.paused` is set (the controller will not move on until resumed).
    pub paused: bool,
    /// A request that was still pending and is replaced by this one.
    pub replaced: Option<Request>,
}

/// Where a call was going, to turn API errors into [`OpsError`]s.
struct Target<'a> {
    namespace: &'a str,
    name: &'a str,
}

impl Target<'_> {
    fn error(&self, verb: &'static str, status_subresource: bool, e: kube::Error) -> OpsError {
        match e {
            kube::Error::Api(s) if s.is_not_found() => {
                // A missing object names itself in the details; a missing resource type
                // does not.
                if s.details.as_ref().is_some_and(|d| !d.name.is_empty())
                    || !s.message.contains("could not find the requested resource")
                {
                    OpsError::NotFound {
                        namespace: self.namespace.into(),
                        name: self.name.into(),
                    }
                } else {
                    OpsError::NoCrd
                }
            }
            kube::Error::Api(s) if s.is_forbidden() => OpsError::Forbidden {
                verb,
                subresource: if status_subresource { "/status" } else { "" },
                namespace: self.namespace.into(),
                message: s.message.clone(),
            },
            kube::Error::Api(s) => OpsError::Api {
                verb,
                namespace: self.namespace.into(),
                name: self.name.into(),
                message: format!("{} ({} {})", s.message, s.code, s.reason),
            },
            other => OpsError::Unreachable(other.to_string()),
        }
    }

    fn refused(&self, phase: Phase, message: impl Into<String>) -> OpsError {
        OpsError::Refused {
            namespace: self.namespace.into(),
            name: self.name.into(),
            phase: phase.as_str().into(),
            message: message.into(),
        }
    }
}

async fn get(api: &Api<Release>, target: &Target<'_>) -> Result<Release, OpsError> {
    api.get(target.name)
        .await
        .map_err(|e| target.error("get", false, e))
}

fn status_of(canary: &Release) -> ReleaseStatus {
    canary.status.clone().unwrap_or_default()
}

/// Reads the Release, lets `refuse` object to its phase, and writes a request for `action`
/// to `status.request` with a JSON merge patch of the status subresource.
async fn request(
    client: kube::Client,
    target: &Target<'_>,
    action: RequestAction,
    reason: &str,
    refuse: impl Fn(Phase) -> Option<&'static str>,
) -> Result<Requested, OpsError> {
    let api: Api<Release> = Api::namespaced(client, target.namespace);
    let canary = get(&api, target).await?;
    let status = status_of(&canary);
    let phase = status.state.phase;
    if let Some(why) = refuse(phase) {
        return Err(target.refused(phase, why));
    }
    let request = Request {
        action,
        reason: reason.to_string(),
        at: Utc::now(),
    };
    let patch = json!({ "status": { "request": request } });
    api.patch_status(target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.error("patch", true, e))?;
    Ok(Requested {
        request,
        phase,
        paused: canary.spec.paused,
        replaced: status.request,
    })
}

/// Asks the controller to pass the current step's gate and go to the next step, or, with
/// `full`, to skip every remaining step and promote now. Refused when no release is in
/// flight, or when it is already promoting.
pub async fn promote(
    client: kube::Client,
    namespace: &str,
    name: &str,
    full: bool,
) -> Result<Requested, OpsError> {
    let action = if full {
        RequestAction::PromoteFull
    } else {
        RequestAction::Promote
    };
    let target = Target { namespace, name };
    request(client, &target, action, "", |phase| match phase {
        Phase::Progressing | Phase::Paused => None,
        Phase::Promoting => Some("it is already promoting: there is nothing to promote"),
        Phase::Baking => Some(
            "it is promoted and baking: there is nothing to promote (`vigil abort` rolls it back)",
        ),
        Phase::Initializing | Phase::Waiting | Phase::Succeeded | Phase::Failed => Some(
            "no release is in flight, so there is nothing to promote (change the Deployment's pod template to start one)",
        ),
    })
    .await
}

/// Asks the controller to abort the release in flight and roll traffic back to stable.
/// Refused when no release is in flight.
pub async fn abort(
    client: kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Result<Requested, OpsError> {
    let target = Target { namespace, name };
    request(client, &target, RequestAction::Abort, reason, |phase| {
        (!phase.in_flight()).then_some("no release is in flight, so there is nothing to abort")
    })
    .await
}

/// Sets `spec.paused` with a JSON merge patch. `Ok(false)` when it already had that value
/// (nothing was written).
pub async fn set_paused(
    client: kube::Client,
    namespace: &str,
    name: &str,
    paused: bool,
) -> Result<bool, OpsError> {
    let api: Api<Release> = Api::namespaced(client, namespace);
    let target = Target { namespace, name };
    let canary = get(&api, &target).await?;
    if canary.spec.paused == paused {
        return Ok(false);
    }
    let patch = json!({ "spec": { "paused": paused } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| target.error("patch", false, e))?;
    Ok(true)
}

/// Holds the rollout where it is (`spec.paused: true`). `Ok(false)` when already paused.
pub async fn pause(client: kube::Client, namespace: &str, name: &str) -> Result<bool, OpsError> {
    set_paused(client, namespace, name, true).await
}

/// Lets the rollout go on (`spec.paused: false`). `Ok(false)` when it was not paused.
pub async fn resume(client: kube::Client, namespace: &str, name: &str) -> Result<bool, OpsError> {
    set_paused(client, namespace, name, false).await
}

/// A readable multi-line summary of a Release (see [`describe`]).
pub async fn status(client: kube::Client, namespace: &str, name: &str) -> Result<String, OpsError> {
    let api: Api<Release> = Api::namespaced(client, namespace);
    let target = Target { namespace, name };
    Ok(describe(&get(&api, &target).await?))
}

/// Calls `on_change` with the summary of the Release now and then at every change of it,
/// until its phase is `Succeeded` or `Failed` (which may be at once, when the last release
/// ended and no new one started); returns that phase. Stop it earlier by dropping the
/// future (e.g. on Ctrl-C). Watch errors other than a refusal are retried with backoff.
pub async fn watch_status<F>(
    client: kube::Client,
    namespace: &str,
    name: &str,
    mut on_change: F,
) -> Result<Phase, OpsError>
where
    F: FnMut(&str),
{
    let api: Api<Release> = Api::namespaced(client, namespace);
    let target = Target { namespace, name };
    // A get first, so that a missing Release is reported as such rather than as silence.
    let canary = get(&api, &target).await?;
    let mut last = describe(&canary);
    on_change(&last);
    let phase = status_of(&canary).state.phase;
    if matches!(phase, Phase::Succeeded | Phase::Failed) {
        return Ok(phase);
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let canary = match event {
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            Ok(watcher::Event::Delete(_)) => {
                return Err(OpsError::Deleted {
                    namespace: namespace.into(),
                    name: name.into(),
                });
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => {
                if let watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                | watcher::Error::WatchFailed(kube::Error::Api(s)) = &e
                    && s.is_forbidden()
                {
                    return Err(OpsError::Forbidden {
                        verb: "watch",
                        subresource: "",
                        namespace: namespace.into(),
                        message: s.message.clone(),
                    });
                }
                tracing::warn!(error = %e, "watching the canary failed; retrying");
                continue;
            }
        };
        let text = describe(&canary);
        if text != last {
            on_change(&text);
            last = text;
        }
        let phase = status_of(&canary).state.phase;
        if matches!(phase, Phase::Succeeded | Phase::Failed) {
            return Ok(phase);
        }
    }
    Err(OpsError::Unreachable("the watch ended".into()))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn action_word(action: RequestAction) -> &'static str {
    match action {
        RequestAction::Promote => "promote",
        RequestAction::PromoteFull => "full promote",
        RequestAction::Abort => "abort",
    }
}

/// The multi-line summary `vigil status` prints: phase, step N/M, weight, revisions, the
/// last verdict, the latest analyses with their reasons, the message and the conditions.
pub fn describe(canary: &Release) -> String {
    let namespace = canary.metadata.namespace.as_deref().unwrap_or("default");
    let name = canary.metadata.name.as_deref().unwrap_or("?");
    let status = status_of(canary);
    let s = &status.state;
    let mut out = String::new();
    let _ = writeln!(out, "Release {namespace}/{name}");
    let mut phase = s.phase.as_str().to_string();
    if canary.spec.paused {
        phase.push_str(" (spec.paused is set: `vigil resume` to go on)");
    }
    if canary.spec.dry_run {
        phase.push_str(" (dry run: traffic is not moved)");
    }
    let _ = writeln!(out, "  Phase:        {phase}");
    let step = if s.steps == 0 {
        "-".to_string()
    } else {
        format!(
            "{}/{}",
            (s.current_step.saturating_add(1)).min(s.steps),
            s.steps
        )
    };
    let _ = writeln!(out, "  Step:         {step}");
    let _ = writeln!(out, "  Weight:       {}%", s.weight);
    let _ = writeln!(
        out,
        "  Stable:       {}",
        s.stable_revision.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "  Release:       {}",
        s.canary_revision.as_deref().unwrap_or("-")
    );
    if let Some(failed) = &s.failed_revision {
        let _ = writeln!(
            out,
            "  Failed:       {failed} (not retried until the template changes)"
        );
    }
    if s.started_at.is_some() {
        let _ = writeln!(out, "  Started:      {}", time(s.started_at));
    }
    let _ = writeln!(
        out,
        "  Last verdict: {}{}",
        s.last_verdict.as_deref().unwrap_or("-"),
        if s.looks > 0 {
            format!(
                " ({} analyses: {} failed, {} inconclusive)",
                s.looks, s.failed_checks, s.inconclusive_checks
            )
        } else {
            String::new()
        }
    );
    if let Some(r) = &status.request {
        let _ = writeln!(
            out,
            "  Request:      {} pending since {}{}",
            action_word(r.action),
            time(Some(r.at)),
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reason)
            }
        );
    }
    if !s.message.is_empty() {
        let _ = writeln!(out, "  Message:      {}", s.message);
    }
    if !s.analyses.is_empty() {
        let _ = writeln!(out, "  Analyses (newest last):");
        for a in &s.analyses {
            let _ = writeln!(
                out,
                "    {}  step {}  weight {:>3}%  {:<12}  {}",
                time(Some(a.at)),
                a.step.saturating_add(1),
                a.weight,
                a.verdict,
                a.summary.replace('\n', "\n      ")
            );
        }
    }
    if !status.conditions.is_empty() {
        let _ = writeln!(out, "  Conditions:");
        for c in &status.conditions {
            let _ = write!(out, "    {} {}", c.type_, c.status);
            if !c.reason.is_empty() {
                let _ = write!(out, " ({})", c.reason);
            }
            if !c.message.is_empty() {
                let _ = write!(out, ": {}", c.message);
            }
            let _ = writeln!(out);
        }
    }
    if let Some(report) = &status.report {
        let _ = writeln!(out, "  Report:       {report}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::{Condition, ReleaseSpec};
    use crate::api::status::StateV1alpha1;
    use crate::rollout::AnalysisRecord;

    fn canary() -> Release {
        let spec: ReleaseSpec = serde_json::from_value(json!({
            "targetRef": {"name": "web"},
            "service": {"name": "web"},
            "routing": {"replicas": {}},
            "stepWeights": [10, 50, 100],
        }))
        .expect("spec");
        let mut c = Release::new("web", spec);
        c.metadata.namespace = Some("shop".into());
        c
    }

    #[test]
    fn describes_a_fresh_canary() {
        let text = describe(&canary());
        assert!(text.starts_with("Release shop/web\n"), "{text}");
        assert!(text.contains("Phase:        Initializing"), "{text}");
        assert!(text.contains("Step:         -"), "{text}");
        assert!(text.contains("Weight:       0%"), "{text}");
    }

    #[test]
    fn describes_a_rollout_in_flight() {
        let mut c = canary();
        c.spec.paused = true;
        let at = Utc::now();
        c.status = Some(ReleaseStatus {
            state: StateV1alpha1 {
                phase: Phase::Paused,
                stable_revision: Some("aaa111".into()),
                canary_revision: Some("bbb222".into()),
                current_step: 1,
                steps: 3,
                weight: 50,
                looks: 2,
                last_verdict: Some("pass".into()),
                analyses: vec![AnalysisRecord {
                    at,
                    step: 1,
                    weight: 50,
                    verdict: "pass".into(),
                    summary: "error rate within 1%".into(),
                }],
                message: "paused at step 2/3".into(),
                ..StateV1alpha1::default()
            },
            request: Some(Request {
                action: RequestAction::Abort,
                reason: "pager".into(),
                at,
            }),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "Adopted".into(),
                message: String::new(),
                last_transition_time: None,
            }],
            ..ReleaseStatus::default()
        });
        let text = describe(&c);
        for want in [
            "Phase:        Paused (spec.paused is set",
            "Step:         2/3",
            "Weight:       50%",
            "Stable:       aaa111",
            "Release:       bbb222",
            "Last verdict: pass (2 analyses",
            "Request:      abort pending since",
            ": pager",
            "Message:      paused at step 2/3",
            "step 2  weight  50%  pass",
            "error rate within 1%",
            "Ready True (Adopted)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }

    #[test]
    fn not_found_message_names_the_fix() {
        let e = OpsError::NotFound {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(
            e.to_string(),
            "canary shop/web not found: check the name and namespace (-n)"
        );
    }
}
