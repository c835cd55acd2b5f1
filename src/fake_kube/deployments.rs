//! The part of the Kubernetes Deployment controller that a canary controller sees: one
//! ReplicaSet per pod template (`<deployment>-<pod-template-hash>`), rollouts that finish at
//! once (the current ReplicaSet gets all replicas, older ones are scaled to zero), pause, and
//! the status counts. No Pods exist: a ReplicaSet's replicas count as ready once
//! [`Options::ready_delay`](super::Options::ready_delay) has passed since it was scaled up.
//!
//! It runs inside the store after every write to a Deployment or ReplicaSet, and on a short
//! timer while replicas wait to become ready. It owns Deployment status: a client's write to
//! `deployments/status` is overwritten at once (turn the controller off with
//! [`Options::deployment_controller`](super::Options::deployment_controller) to script status
//! by hand with `FakeKube::put_object`).

use serde_json::{Value, json};
use tokio::time::Instant;

use super::store::{Res, Store, fnv1a, now, safe_encode};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// Brings every Deployment's ReplicaSets and status up to date, and removes ReplicaSets whose
/// owning Deployment is gone. Returns whether some replicas are still waiting to be ready.
pub fn reconcile_all(store: &mut Store) -> bool {
    reconcile_in(store, None)
}

/// [`reconcile_all`] over the Deployments and ReplicaSets of one namespace (`None`: all).
pub fn reconcile_in(store: &mut Store, ns: Option<&str>) -> bool {
    let deployments: Vec<Value> = store
        .list(&Res::deployments(), ns)
        .into_iter()
        .cloned()
        .collect();
    let mut pending = false;
    for deployment in &deployments {
        pending |= reconcile(store, deployment);
    }
    let live: std::collections::HashSet<&str> = deployments
        .iter()
        .filter_map(|d| d["metadata"]["uid"].as_str())
        .collect();
    let orphans: Vec<(String, String)> = store
        .list(&Res::replicasets(), ns)
        .into_iter()
        .filter(|rs| controller_uid(rs).is_some_and(|uid| !live.contains(&uid)))
        .map(|rs| (namespace(rs), name(rs)))
        .collect();
    for (ns, name) in orphans {
        store.remove(&Res::replicasets(), &ns, &name);
        store.readiness.remove(&(ns, name));
    }
    pending
}

/// A stable 10-character hash of a pod template (of its JSON with object keys sorted).
pub fn template_hash(template: &Value) -> String {
    safe_encode(hash_value(template, 0xcbf2_9ce4_8422_2325), 10)
}

fn hash_value(value: &Value, state: u64) -> u64 {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.into_iter().fold(fnv1a(b"{", state), |s, k| {
                hash_value(&map[k], fnv1a(k.as_bytes(), fnv1a(b",", s)))
            })
        }
        Value::Array(items) => items
            .iter()
            .fold(fnv1a(b"[", state), |s, v| hash_value(v, fnv1a(b",", s))),
        other => fnv1a(other.to_string().as_bytes(), state),
    }
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .into()
}

fn namespace(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .into()
}

fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// Reconciles one Deployment; returns whether some of its replicas are not ready yet.
fn reconcile(store: &mut Store, deployment: &Value) -> bool {
    let (ns, d_name) = (namespace(deployment), name(deployment));
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or_default();
    let desired = spec_replicas(deployment);
    let paused = deployment["spec"]["paused"] == true;
    let template = &deployment["spec"]["template"];
    let hash = template_hash(template);
    let current_name = format!("{d_name}-{hash}");

    let mut owned: Vec<Value> = store
        .list(&Res::replicasets(), Some(&ns))
        .into_iter()
        .filter(|rs| controller_uid(rs) == Some(uid))
        .cloned()
        .collect();
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let current = owned.iter().position(|rs| name(rs) == current_name);

    // Which ReplicaSet serves spec.replicas, and with what revision.
    let serving = if paused {
        current.or_else(|| (0..owned.len()).max_by_key(|&i| revision(&owned[i])))
    } else {
        match current {
            Some(i) => {
                if revision(&owned[i]) < max_revision {
                    owned[i]["metadata"]["annotations"][REVISION] =
                        (max_revision + 1).to_string().into();
                }
                Some(i)
            }
            None => {
                owned.push(new_replicaset(
                    deployment,
                    &hash,
                    &current_name,
                    max_revision + 1,
                ));
                Some(owned.len() - 1)
            }
        }
    };

    let mut pending = false;
    let mut totals = Counts::default();
    let mut updated = 0;
    for (i, rs) in owned.iter_mut().enumerate() {
        if Some(i) == serving {
            rs["spec"]["replicas"] = desired.into();
            rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                desired.to_string().into();
        } else if !paused {
            rs["spec"]["replicas"] = 0.into();
        }
        let counts = replicaset_status(store, rs);
        pending |= counts.ready < counts.replicas;
        if name(rs) == current_name {
            updated = counts.replicas;
        }
        totals.replicas += counts.replicas;
        totals.ready += counts.ready;
        let written = store.put_inner(&Res::replicasets(), rs.clone());
        *rs = written;
    }

    let complete =
        !paused && updated == desired && totals.replicas == desired && totals.ready == desired;
    let old = &deployment["status"];
    let available = condition(
        old,
        "Available",
        totals.ready >= desired,
        if totals.ready >= desired {
            (
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            (
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        },
    );
    let progressing_message = format!("ReplicaSet \"{current_name}\" is progressing.");
    let done_message = format!("ReplicaSet \"{current_name}\" has successfully progressed.");
    let progressing = if paused {
        condition_with_status(
            old,
            "Progressing",
            "Unknown",
            ("DeploymentPaused", "Deployment is paused"),
        )
    } else if complete {
        condition(
            old,
            "Progressing",
            true,
            ("NewReplicaSetAvailable", &done_message),
        )
    } else {
        condition(
            old,
            "Progressing",
            true,
            ("ReplicaSetUpdated", &progressing_message),
        )
    };
    let mut status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": totals.replicas,
        "updatedReplicas": updated,
        "readyReplicas": totals.ready,
        "availableReplicas": totals.ready,
        "conditions": [available, progressing],
    });
    if desired > totals.ready {
        status["unavailableReplicas"] = (desired - totals.ready).into();
    }
    let mut new = deployment.clone();
    new["status"] = status;
    store.commit_update(&Res::deployments(), deployment, new);
    pending
}

#[derive(Default)]
struct Counts {
    replicas: i64,
    ready: i64,
}

/// Sets a ReplicaSet's status from its spec.replicas and readiness bookkeeping.
fn replicaset_status(store: &mut Store, rs: &mut Value) -> Counts {
    let replicas = spec_replicas(rs);
    let previous_ready = rs["status"]["readyReplicas"].as_i64().unwrap_or(0);
    let key = (namespace(rs), name(rs));
    let now = Instant::now();
    let delay = store.options.ready_delay;
    let since = match store.readiness.get(&key) {
        Some(&(target, since)) if target == replicas => since,
        _ => {
            store.readiness.insert(key, (replicas, now));
            now
        }
    };
    let ready = if now.duration_since(since) >= delay {
        replicas
    } else {
        previous_ready.min(replicas)
    };
    rs["status"] = json!({
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"].as_i64().unwrap_or(1),
    });
    Counts { replicas, ready }
}

/// A ReplicaSet for the Deployment's current pod template.
fn new_replicaset(deployment: &Value, hash: &str, rs_name: &str, revision: i64) -> Value {
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = hash.into();
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = hash.into();
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name,
            "namespace": namespace(deployment),
            "labels": template["metadata"]["labels"],
            "annotations": {REVISION: revision.to_string()},
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name(deployment),
                "uid": deployment["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
    })
}

/// A condition `True`/`False`, keeping the old condition's timestamps when it did not change.
fn condition(old_status: &Value, kind: &str, ok: bool, why: (&str, &str)) -> Value {
    let status = if ok { "True" } else { "False" };
    condition_with_status(old_status, kind, status, why)
}

fn condition_with_status(
    old_status: &Value,
    kind: &str,
    status: &str,
    (reason, message): (&str, &str),
) -> Value {
    let old = old_status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let same = |field: &str, value: &str| old.is_some_and(|c| c[field] == value);
    let now = now();
    let transition = match old {
        Some(c) if same("status", status) => c["lastTransitionTime"].clone(),
        _ => now.clone().into(),
    };
    let update = match old {
        Some(c) if same("status", status) && same("reason", reason) => c["lastUpdateTime"].clone(),
        _ => now.into(),
    };
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "lastUpdateTime": update,
    })
}
