//! Converges the cluster to the [`World`] the state machine asks for: the target
//! Deployment's pause and replicas, the canary Deployment, the Services and the router.
//!
//! Every change is idempotent and made only when the object differs, so re-applying the
//! same world (after a restart or a status conflict) writes nothing. Order matters: on the
//! way up the canary exists and the stable Service is pinned before traffic moves; on the
//! way down traffic returns to stable before anything is removed.

use super::routers::{RouteContext, Router, RouterError, services};
use crate::api::crd::{ADOPTED_ANNOTATION, CANARY_LABEL, OWNER_LABEL, Release};
use crate::api::plan::canary_deployment_name;
use crate::rollout::{CanaryWorld, World};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use std::collections::BTreeMap;

/// The annotation on the canary Deployment naming the revision it runs.
pub const REVISION_ANNOTATION: &str = "vigil.dev/revision";

/// Why the world could not be applied. Messages name the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A Kubernetes call failed.
    #[error("{object}: {source}")]
    Api {
        /// Kind namespace/name.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A router could not move traffic.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The target cannot be used as it is.
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// Whether the error is a 409 conflict (someone else changed the object: retry soon).
    pub fn is_conflict(&self) -> bool {
        match self {
            ApplyError::Api {
                source: kube::Error::Api(s),
                ..
            } => s.code == 409,
            ApplyError::Router(RouterError::Api {
                source: kube::Error::Api(s),
                ..
            }) => s.code == 409,
            _ => false,
        }
    }
}

/// Wraps a client error with the object it concerns (`Kind namespace/name`).
pub(crate) fn api_err(object: String) -> impl FnOnce(kube::Error) -> ApplyError {
    move |source| ApplyError::Api { object, source }
}

/// Available replicas of the canary Deployment when it runs `revision` and its status is
/// current; 0 otherwise.
pub fn canary_available(canary: Option<&Deployment>, revision: Option<&str>) -> i32 {
    let Some(d) = canary else { return 0 };
    let runs = d.annotations().get(REVISION_ANNOTATION).map(String::as_str) == revision;
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    if runs && current {
        status.available_replicas.unwrap_or(0)
    } else {
        0
    }
}

/// Whether the target runs only its current template, with every replica available (what
/// `kubectl rollout status` waits for), paused or not: a paused Deployment whose status
/// (for its current generation) counts every replica as updated has rolled. vigil pauses
/// the target again in the very reconcile that ends a promotion; a crash after that and
/// before the status records the success must not make the finished roll look unfinished,
/// or the next reconcile would un-pause it and hand the canary its traffic back.
pub fn rolled(target: &Deployment) -> bool {
    let spec = &target.spec;
    let status = target.status.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation.unwrap_or(0) >= target.metadata.generation.unwrap_or(0)
        && status.updated_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
}

/// The canary Deployment for the target's current template.
pub fn canary_deployment(target: &Deployment, owner: &Release, world: &CanaryWorld) -> Deployment {
    let mut d = Deployment::default();
    let name = canary_deployment_name(&target.name_any());
    d.metadata.name = Some(name);
    d.metadata.namespace = target.namespace();
    let mut labels = target.labels().clone();
    labels.insert(OWNER_LABEL.into(), owner.name_any());
    d.metadata.labels = Some(labels);
    d.metadata.annotations = Some(BTreeMap::from([(
        REVISION_ANNOTATION.to_string(),
        world.revision.clone(),
    )]));
    d.metadata.owner_references = owner.controller_owner_ref(&()).map(|r| vec![r]);
    let mut spec = target.spec.clone();
    spec.paused = None;
    spec.replicas = Some(world.replicas);
    let mut selector = spec.selector.match_labels.clone().unwrap_or_default();
    selector.insert(CANARY_LABEL.into(), "true".into());
    spec.selector.match_labels = Some(selector);
    let mut meta = spec.template.metadata.clone().unwrap_or_default();
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.insert(CANARY_LABEL.into(), "true".into());
    meta.labels = Some(pod_labels);
    spec.template.metadata = Some(meta);
    d.spec = spec;
    d
}

/// The labels of the canary's pods: the target's pod labels plus the canary label.
fn canary_pod_labels(
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
) -> BTreeMap<String, String> {
    let mut labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(CANARY_LABEL.into(), "true".into());
    labels
}

/// What the reconciler knows when it applies a world.
pub struct Targets<'a> {
    /// The Release.
    pub canary: &'a Release,
    /// The target Deployment.
    pub target: &'a Deployment,
    /// The revision of the target's current template.
    pub target_revision: &'a str,
    /// The canary Deployment, if it exists.
    pub canary_deployment: Option<&'a Deployment>,
    /// The stable Service (required by routers that use Services).
    pub stable_service: &'a k8s_openapi::api::core::v1::Service,
    /// The router.
    pub router: &'a dyn Router,
    /// The router's context.
    pub route: &'a RouteContext,
}

/// Converges the cluster to `world`.
pub async fn apply(t: &Targets<'_>, world: &World) -> Result<(), ApplyError> {
    let ns = t.route.namespace.clone();
    let client = t.route.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let target_name = t.target.name_any();

    // A failed bake: the previous pod template back into the target, which then rolls.
    if let Some(revision) = world.restore.as_deref()
        && t.target_revision != revision
    {
        restore_template(t, &deployments, revision).await?;
    }
    // The target: adopted (paused) except while promoting; replicas when vigil owns them.
    let spec = &t.target.spec;
    let mut patch = serde_json::Map::new();
    if spec.paused.unwrap_or(false) != world.stable_paused {
        patch.insert("paused".into(), world.stable_paused.into());
    }
    if let Some(n) = world.stable_replicas
        && spec.replicas != Some(n)
    {
        patch.insert("replicas".into(), n.into());
    }
    let adopted = t.target.annotations().get(ADOPTED_ANNOTATION) == Some(&t.canary.name_any());
    if !patch.is_empty() || !adopted {
        let body = serde_json::json!({
            "metadata": {"annotations": {ADOPTED_ANNOTATION: t.canary.name_any()}},
            "spec": patch,
        });
        deployments
            .patch(&target_name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(api_err(format!("Deployment {ns}/{target_name}")))?;
    }

    if let Some(cw) = &world.canary {
        ensure_canary(t, &deployments, cw).await?;
        if t.router.uses_services() {
            let pod_labels = canary_pod_labels(&t.target.spec);
            services::ensure_canary_service(t.route, t.stable_service, &pod_labels).await?;
        }
    }
    // A router that switches the Service's selector itself (at weight 100) replaces the pin.
    if t.router.uses_services() && !t.router.sets_selector(world.weight) {
        if world.pin_stable {
            match services::stable_pod_template_hash(&client, &ns, t.target).await? {
                Some(hash) => services::pin_stable_service(t.route, &hash).await?,
                None => {
                    return Err(ApplyError::Invalid(format!(
                        "Deployment {ns}/{target_name} has no current ReplicaSet to pin Service {} to; wait for it to become available",
                        t.route.service
                    )));
                }
            }
        } else {
            services::unpin_stable_service(t.route).await?;
        }
    }
    // `reset` removes a mirror too, so a mirror step (users on stable alone) only mirrors.
    // The mirror goes before users reach the canary, so that it never gets both.
    if world.weight > 0 || !world.matches.is_empty() {
        t.router.mirror(t.route, None).await?;
        t.router.set(t.route, world.weight, &world.matches).await?;
    } else if world.mirror.is_some() {
        t.router.mirror(t.route, world.mirror).await?;
    } else {
        t.router.reset(t.route).await?;
    }
    if world.canary.is_none() {
        if t.router.uses_services() {
            services::delete_canary_service(t.route).await?;
        }
        if let Some(existing) = t.canary_deployment {
            let name = existing.name_any();
            match deployments.delete(&name, &DeleteParams::foreground()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err(format!("Deployment {ns}/{name}"))(e)),
            }
        }
    }
    Ok(())
}

/// The pod template of `revision` among the target's ReplicaSets (those it controls), with
/// the `pod-template-hash` label the Deployment controller added taken off: what `kubectl
/// rollout undo` puts back. `None` when no ReplicaSet has it (the Deployment's
/// `revisionHistoryLimit` removed it).
pub fn previous_template(
    target: &Deployment,
    replica_sets: &[ReplicaSet],
    revision: &str,
) -> Option<PodTemplateSpec> {
    services::controlled_by(target, replica_sets)
        .filter_map(|rs| rs.spec.template.clone())
        .map(|mut template| {
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove(services::POD_TEMPLATE_HASH);
            }
            template
        })
        .find(|template| {
            serde_json::to_value(template)
                .is_ok_and(|json| crate::api::plan::revision(&json) == revision)
        })
}

/// Puts the pod template of `revision` back into the target (un-paused, so that it rolls),
/// replacing it with the `resourceVersion` read: a concurrent change is a 409 and retried.
async fn restore_template(
    t: &Targets<'_>,
    deployments: &Api<Deployment>,
    revision: &str,
) -> Result<(), ApplyError> {
    let ns = t.route.namespace.clone();
    let name = t.target.name_any();
    let replica_sets = services::replica_sets_of(&t.route.client, &ns, t.target)
        .await
        .map_err(api_err(format!("ReplicaSets of Deployment {ns}/{name}")))?;
    let template = previous_template(t.target, &replica_sets, revision).ok_or_else(|| {
        ApplyError::Invalid(format!(
            "Deployment {ns}/{name} has no ReplicaSet of revision {revision} to roll back to (its \
             revisionHistoryLimit may have removed it); roll it back by hand: kubectl rollout \
             undo deployment/{name} -n {ns}"
        ))
    })?;
    let mut restored = t.target.clone();
    restored.spec.template = template;
    restored.spec.paused = Some(false);
    restored.status = None;
    deployments
        .replace(&name, &PostParams::default(), &restored)
        .await
        .map_err(api_err(format!("Deployment {ns}/{name}")))?;
    Ok(())
}

async fn ensure_canary(
    t: &Targets<'_>,
    deployments: &Api<Deployment>,
    cw: &CanaryWorld,
) -> Result<(), ApplyError> {
    let ns = t.route.namespace.clone();
    let want = canary_deployment(t.target, t.canary, cw);
    let name = want.name_any();
    let object = format!("Deployment {ns}/{name}");
    let Some(existing) = t.canary_deployment else {
        if t.target_revision != cw.revision {
            // The template moved on: nothing to create for an old revision.
            return Ok(());
        }
        deployments
            .create(&PostParams::default(), &want)
            .await
            .map_err(api_err(object))?;
        return Ok(());
    };
    let existing_spec = &existing.spec;
    let want_spec = &want.spec;
    let runs = existing.annotations().get(REVISION_ANNOTATION) == Some(&cw.revision);
    if !runs && t.target_revision == cw.revision {
        if existing_spec.selector != want_spec.selector {
            // Selectors are immutable: recreate.
            deployments
                .delete(&name, &DeleteParams::foreground())
                .await
                .map_err(api_err(object.clone()))?;
            return Err(ApplyError::Invalid(format!(
                "{object} had another selector; it is being recreated"
            )));
        }
        let mut replace = want;
        replace.metadata.resource_version = existing.resource_version();
        deployments
            .replace(&name, &PostParams::default(), &replace)
            .await
            .map_err(api_err(object))?;
        return Ok(());
    }
    if existing_spec.replicas != Some(cw.replicas) {
        let body = serde_json::json!({"spec": {"replicas": cw.replicas}});
        deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(api_err(object))?;
    }
    Ok(())
}
