//! The Services shared by the routers that split traffic between two Services: the canary
//! Service vigil manages, and the pinning of the stable Service to the stable pods.
//!
//! During a rollout the stable Service's selector would match the canary pods too (they
//! carry the same app labels), so vigil pins it, as Argo Rollouts does, to the stable
//! ReplicaSet's `pod-template-hash`. The original selector is kept in an annotation so that
//! unpinning restores it exactly. The pin names one ReplicaSet, so it must be lifted before
//! the stable Deployment is promoted to the new template (or re-pinned to the new hash).

use super::{Names, RouteContext, RouterError, is_not_found};
use crate::api::crd::{CANARY_LABEL, OWNER_LABEL};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::BTreeMap;

/// The annotation on the pinned stable Service holding its original selector, as JSON.
pub const ORIGINAL_SELECTOR_ANNOTATION: &str = "vigil.dev/original-selector";
/// The label the Deployment controller puts on a ReplicaSet and its pods: a hash of the pod
/// template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a Deployment's (and its ReplicaSets') revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

type Labels = BTreeMap<String, String>;

/// Creates or updates the canary Service `ctx.canary_service`: the stable Service's ports
/// as a ClusterIP Service selecting the stable selector plus `vigil.dev/canary: "true"`,
/// labelled and owned by the Release. `canary_pod_labels` are the labels of the canary pod
/// template; they must carry that selector, or the Service would select no pods.
pub async fn ensure_canary_service(
    ctx: &RouteContext,
    stable: &Service,
    canary_pod_labels: &Labels,
) -> Result<(), RouterError> {
    let names = ctx.names();
    let desired = canary_service(&names, stable, canary_pod_labels)?;
    let object = names.object("Service", &ctx.canary_service);
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let existing = api
        .get_opt(&ctx.canary_service)
        .await
        .map_err(RouterError::api(object.clone()))?;
    match existing {
        None => {
            api.create(&PostParams::default(), &desired)
                .await
                .map_err(RouterError::api(object))?;
        }
        Some(existing) => {
            if let Some(updated) = updated_canary_service(&names, &existing, &desired)? {
                api.replace(&ctx.canary_service, &PostParams::default(), &updated)
                    .await
                    .map_err(RouterError::api(object))?;
            }
        }
    }
    Ok(())
}

/// Deletes the canary Service. Succeeds when it does not exist; refuses to delete a
/// Service of that name that the Release does not own.
pub async fn delete_canary_service(ctx: &RouteContext) -> Result<(), RouterError> {
    let names = ctx.names();
    let object = names.object("Service", &ctx.canary_service);
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let Some(existing) = api
        .get_opt(&ctx.canary_service)
        .await
        .map_err(RouterError::api(object.clone()))?
    else {
        return Ok(());
    };
    if !names.owns(&existing.metadata) {
        return Err(names.not_ours("Service", &ctx.canary_service, CANARY_NAME_HINT));
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&ctx.canary_service, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(RouterError::api(object)(e)),
    }
}

/// Pins the stable Service to the stable pods: adds `pod-template-hash: <hash>` to its
/// selector and records the original selector. Idempotent; re-pinning to another hash
/// replaces the hash.
pub async fn pin_stable_service(
    ctx: &RouteContext,
    pod_template_hash: &str,
) -> Result<(), RouterError> {
    let names = ctx.names();
    update_stable(ctx, |svc| pinned_service(&names, svc, pod_template_hash)).await
}

/// Restores the stable Service's original selector. Idempotent: succeeds when the Service
/// is not pinned.
pub async fn unpin_stable_service(ctx: &RouteContext) -> Result<(), RouterError> {
    let names = ctx.names();
    update_stable(ctx, |svc| unpinned_service(&names, svc)).await
}

/// Reads the stable Service, transforms it, and replaces it when the transformation changed
/// it (with the resourceVersion read, so a concurrent change is a 409).
async fn update_stable(
    ctx: &RouteContext,
    change: impl FnOnce(&Service) -> Result<Option<Service>, RouterError>,
) -> Result<(), RouterError> {
    let object = ctx.names().object("Service", &ctx.service);
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let svc = api
        .get(&ctx.service)
        .await
        .map_err(RouterError::api(object.clone()))?;
    if let Some(updated) = change(&svc)? {
        api.replace(&ctx.service, &PostParams::default(), &updated)
            .await
            .map_err(RouterError::api(object))?;
    }
    Ok(())
}

/// The `pod-template-hash` of the Deployment's current ReplicaSet, read from the cluster;
/// see [`pod_template_hash`].
pub async fn stable_pod_template_hash(
    client: &kube::Client,
    namespace: &str,
    deployment: &Deployment,
) -> Result<Option<String>, RouterError> {
    let replica_sets = replica_sets_of(client, namespace, deployment)
        .await
        .map_err(RouterError::api(format!(
            "ReplicaSets of Deployment {namespace}/{}",
            deployment.metadata.name.as_deref().unwrap_or_default()
        )))?;
    Ok(pod_template_hash(deployment, &replica_sets))
}

/// The ReplicaSets in `namespace` that `deployment`'s selector matches: a superset of those
/// it controls (the Deployment controller labels its ReplicaSets with the pod template's
/// labels, which the selector must match), listed with the selector so that the API server
/// sends those alone rather than the whole namespace's. A selector that cannot be put in a
/// query (none, or an operator Kubernetes does not know) lists them all.
pub async fn replica_sets_of(
    client: &kube::Client,
    namespace: &str,
    deployment: &Deployment,
) -> Result<Vec<ReplicaSet>, kube::Error> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let params = match kube::core::Selector::try_from(deployment.spec.selector.clone()) {
        Ok(selector) if !selector.selects_all() => ListParams::default().labels_from(&selector),
        _ => ListParams::default(),
    };
    Ok(api.list(&params).await?.items)
}

/// The `pod-template-hash` label of the Deployment's current ReplicaSet among
/// `replica_sets`: of those the Deployment controls (by uid), the one whose revision equals
/// the Deployment's, else the highest revision that has replicas. `None` when there is none
/// (a Deployment that has not created a ReplicaSet yet).
pub fn pod_template_hash(deployment: &Deployment, replica_sets: &[ReplicaSet]) -> Option<String> {
    let revision = |meta: &ObjectMeta| -> Option<u64> {
        meta.annotations
            .as_ref()?
            .get(REVISION_ANNOTATION)?
            .parse()
            .ok()
    };
    let hash = |rs: &ReplicaSet| rs.metadata.labels.as_ref()?.get(POD_TEMPLATE_HASH).cloned();
    let owned: Vec<&ReplicaSet> = controlled_by(deployment, replica_sets)
        .filter(|rs| hash(rs).is_some())
        .collect();
    if let Some(current) = revision(&deployment.metadata)
        && let Some(rs) = owned
            .iter()
            .find(|rs| revision(&rs.metadata) == Some(current))
    {
        return hash(rs);
    }
    owned
        .iter()
        .filter(|rs| rs.spec.replicas.unwrap_or(1) > 0)
        .max_by_key(|rs| revision(&rs.metadata))
        .and_then(|rs| hash(rs))
}

/// The ReplicaSets among `replica_sets` that `deployment` controls (by uid); none when the
/// Deployment has no uid (it was never stored).
pub fn controlled_by<'a>(
    deployment: &Deployment,
    replica_sets: &'a [ReplicaSet],
) -> impl Iterator<Item = &'a ReplicaSet> {
    let uid = deployment.metadata.uid.clone();
    replica_sets.iter().filter(move |rs| {
        rs.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| Some(&r.uid) == uid.as_ref() && r.controller == Some(true))
    })
}

const CANARY_NAME_HINT: &str = "set spec.service.canaryName to a name vigil may manage";

/// The stable Service's selector as its owner wrote it: the recorded original when vigil
/// pinned it, else the current one.
fn original_selector(names: &Names<'_>, svc: &Service) -> Result<Labels, RouterError> {
    let name = svc.metadata.name.as_deref().unwrap_or(names.service);
    if let Some(recorded) = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ORIGINAL_SELECTOR_ANNOTATION))
    {
        return serde_json::from_str(recorded).map_err(|e| RouterError::Invalid {
            object: names.object("Service", name),
            message: format!(
                "annotation {ORIGINAL_SELECTOR_ANNOTATION} is not a JSON object of labels ({e}); \
                 restore the selector by hand and remove the annotation"
            ),
        });
    }
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    if selector.is_empty() {
        return Err(RouterError::Invalid {
            object: names.object("Service", name),
            message: "has no selector; vigil selects the stable and the canary pods by adding \
                      labels to it, so give the Service a selector"
                .into(),
        });
    }
    Ok(selector)
}

/// The canary Service to create: the stable Service's ports (without node ports) as a
/// ClusterIP Service selecting the stable selector plus `vigil.dev/canary: "true"`.
/// Allocated fields (clusterIP(s), node ports, load balancer settings) are not copied.
pub fn canary_service(
    names: &Names<'_>,
    stable: &Service,
    canary_pod_labels: &Labels,
) -> Result<Service, RouterError> {
    let mut selector = original_selector(names, stable)?;
    selector.insert(CANARY_LABEL.into(), "true".into());
    let missing: Vec<String> = selector
        .iter()
        .filter(|(k, v)| canary_pod_labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !missing.is_empty() {
        return Err(RouterError::Invalid {
            object: names.object("Service", names.canary_service),
            message: format!(
                "the canary pods lack the labels {} that the canary Service selects; \
                 it would send traffic nowhere. Check the canary Deployment's pod template",
                missing.join(", ")
            ),
        });
    }
    let spec = stable.spec.clone().unwrap_or_default();
    let ports = spec.ports.map(|ports| {
        ports
            .into_iter()
            .map(|p| ServicePort {
                node_port: None,
                ..p
            })
            .collect::<Vec<_>>()
    });
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(names.canary_service.into()),
            namespace: Some(names.namespace.into()),
            labels: Some(BTreeMap::from([(OWNER_LABEL.into(), names.canary.into())])),
            owner_references: Some(vec![names.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports,
            selector: Some(selector),
            session_affinity: spec.session_affinity,
            session_affinity_config: spec.session_affinity_config,
            publish_not_ready_addresses: spec.publish_not_ready_addresses,
            internal_traffic_policy: spec.internal_traffic_policy,
            traffic_distribution: spec.traffic_distribution,
            ip_family_policy: spec.ip_family_policy,
            ip_families: spec.ip_families,
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The existing canary Service updated to `desired` (from [`canary_service`]), keeping
/// what the API server allocated (clusterIP(s), IP families); `None` when nothing changes.
/// An existing Service the Release does not own is an error: vigil does not take over
/// Services it did not create.
pub fn updated_canary_service(
    names: &Names<'_>,
    existing: &Service,
    desired: &Service,
) -> Result<Option<Service>, RouterError> {
    if !names.owns(&existing.metadata) {
        return Err(names.not_ours("Service", names.canary_service, CANARY_NAME_HINT));
    }
    let mut updated = existing.clone();
    let want = desired.spec.clone().unwrap_or_default();
    let spec = updated.spec.get_or_insert_with(ServiceSpec::default);
    spec.type_ = want.type_;
    spec.ports = want.ports;
    spec.selector = want.selector;
    spec.session_affinity = want.session_affinity;
    spec.session_affinity_config = want.session_affinity_config;
    spec.publish_not_ready_addresses = want.publish_not_ready_addresses;
    spec.internal_traffic_policy = want.internal_traffic_policy;
    spec.traffic_distribution = want.traffic_distribution;
    // Fields a ClusterIP Service must not have, should someone have changed its type.
    spec.external_traffic_policy = None;
    spec.health_check_node_port = None;
    spec.allocate_load_balancer_node_ports = None;
    spec.load_balancer_class = None;
    spec.load_balancer_ip = None;
    spec.load_balancer_source_ranges = None;
    spec.external_name = None;
    updated
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(OWNER_LABEL.into(), names.canary.into());
    Ok((updated != *existing).then_some(updated))
}

/// Switches the stable Service to the canary's pods: adds `vigil.dev/canary: "true"` to its
/// original selector and records the original, as [`pin_stable_service`] does. Idempotent.
pub async fn switch_stable_service(ctx: &RouteContext) -> Result<(), RouterError> {
    let names = ctx.names();
    update_stable(ctx, |svc| switched_service(&names, svc)).await
}

/// The stable Service selecting the canary's pods (its original selector plus the canary
/// label); `None` when it already does.
pub fn switched_service(names: &Names<'_>, svc: &Service) -> Result<Option<Service>, RouterError> {
    pinned_with(names, svc, CANARY_LABEL, "true")
}

/// The stable Service pinned to `hash`; `None` when it already is.
pub fn pinned_service(
    names: &Names<'_>,
    svc: &Service,
    hash: &str,
) -> Result<Option<Service>, RouterError> {
    pinned_with(names, svc, POD_TEMPLATE_HASH, hash)
}

/// The stable Service selecting its original selector plus `key: value` (and nothing else
/// vigil added), with the original recorded; `None` when it already does.
fn pinned_with(
    names: &Names<'_>,
    svc: &Service,
    key: &str,
    value: &str,
) -> Result<Option<Service>, RouterError> {
    let original = original_selector(names, svc)?;
    let mut selector = original.clone();
    selector.insert(key.into(), value.into());
    let recorded = serde_json::to_string(&original).map_err(|e| RouterError::Invalid {
        object: names.object("Service", names.service),
        message: format!("cannot record the selector: {e}"),
    })?;
    let mut updated = svc.clone();
    updated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .entry(ORIGINAL_SELECTOR_ANNOTATION.into())
        .or_insert(recorded);
    updated
        .spec
        .get_or_insert_with(ServiceSpec::default)
        .selector = Some(selector);
    Ok((updated != *svc).then_some(updated))
}

/// The stable Service with its original selector restored and the record removed; `None`
/// when it is not pinned.
pub fn unpinned_service(names: &Names<'_>, svc: &Service) -> Result<Option<Service>, RouterError> {
    let pinned = svc
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ORIGINAL_SELECTOR_ANNOTATION));
    if !pinned {
        return Ok(None);
    }
    let original = original_selector(names, svc)?;
    let mut updated = svc.clone();
    if let Some(a) = updated.metadata.annotations.as_mut() {
        a.remove(ORIGINAL_SELECTOR_ANNOTATION);
        if a.is_empty() {
            updated.metadata.annotations = None;
        }
    }
    updated
        .spec
        .get_or_insert_with(ServiceSpec::default)
        .selector = Some(original);
    Ok(Some(updated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::routers::testing::names;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn stable() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7",
                          "annotations": {"team": "a"}},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
                "externalTrafficPolicy": "Local",
                "selector": {"app": "web"},
                "sessionAffinity": "ClientIP",
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "grpc", "port": 9090, "targetPort": "grpc", "nodePort": 30090}
                ]
            }
        }))
        .unwrap()
    }

    fn canary_pods() -> Labels {
        labels(&[
            ("app", "web"),
            (CANARY_LABEL, "true"),
            ("pod-template-hash", "abc"),
        ])
    }

    #[test]
    fn the_canary_service_copies_ports_and_drops_allocated_fields() {
        let n = names();
        let svc = canary_service(&n, &stable(), &canary_pods()).unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("web-canary"));
        assert_eq!(svc.metadata.labels, Some(labels(&[(OWNER_LABEL, "web")])));
        assert_eq!(
            svc.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        assert_eq!(svc.metadata.annotations, None);
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.cluster_ips, None);
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        assert_eq!(
            spec.selector,
            Some(labels(&[("app", "web"), (CANARY_LABEL, "true")]))
        );
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 2);
        assert!(ports.iter().all(|p| p.node_port.is_none()));
        assert_eq!(ports[0].target_port, Some(IntOrString::Int(8080)));
        assert_eq!(
            ports[1].target_port,
            Some(IntOrString::String("grpc".into()))
        );
    }

    #[test]
    fn the_canary_service_of_a_pinned_stable_service_uses_the_original_selector() {
        let n = names();
        let pinned = pinned_service(&n, &stable(), "abc").unwrap().unwrap();
        let svc = canary_service(
            &n,
            &pinned,
            &labels(&[("app", "web"), (CANARY_LABEL, "true")]),
        )
        .unwrap();
        assert_eq!(
            svc.spec.unwrap().selector,
            Some(labels(&[("app", "web"), (CANARY_LABEL, "true")]))
        );
    }

    #[test]
    fn canary_pods_without_the_selector_labels_are_an_error() {
        let n = names();
        let e = canary_service(&n, &stable(), &labels(&[("app", "web")])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "Service shop/web-canary: the canary pods lack the labels vigil.dev/canary=true"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_stable_service_without_selector_is_an_error() {
        let n = names();
        let mut svc = stable();
        svc.spec.as_mut().unwrap().selector = None;
        let msg = canary_service(&n, &svc, &canary_pods())
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Service shop/web: has no selector"),
            "{msg}"
        );
        assert!(pinned_service(&n, &svc, "abc").is_err());
    }

    #[test]
    fn updating_keeps_allocated_fields_and_is_idempotent() {
        let n = names();
        let desired = canary_service(&n, &stable(), &canary_pods()).unwrap();
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("3".into());
        existing.spec.as_mut().unwrap().cluster_ip = Some("10.0.0.9".into());
        assert_eq!(
            updated_canary_service(&n, &existing, &desired).unwrap(),
            None
        );

        existing.spec.as_mut().unwrap().selector = Some(labels(&[("app", "old")]));
        let updated = updated_canary_service(&n, &existing, &desired)
            .unwrap()
            .unwrap();
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("3"));
        let spec = updated.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(spec.selector, desired.spec.as_ref().unwrap().selector);
        assert_eq!(
            updated_canary_service(&n, &updated, &desired).unwrap(),
            None
        );
    }

    #[test]
    fn a_canary_service_owned_by_someone_else_is_not_taken_over() {
        let n = names();
        let desired = canary_service(&n, &stable(), &canary_pods()).unwrap();
        let mut foreign = desired.clone();
        foreign.metadata.owner_references = None;
        let msg = updated_canary_service(&n, &foreign, &desired)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("Service shop/web-canary: exists but is not owned by Release shop/web"),
            "{msg}"
        );
        assert!(msg.contains("canaryName"), "{msg}");
    }

    #[test]
    fn pinning_adds_the_hash_and_unpinning_restores_exactly() {
        let n = names();
        let original = stable();
        let pinned = pinned_service(&n, &original, "abc").unwrap().unwrap();
        let spec = pinned.spec.as_ref().unwrap();
        assert_eq!(
            spec.selector,
            Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH, "abc")]))
        );
        assert_eq!(
            pinned.metadata.annotations.as_ref().unwrap()[ORIGINAL_SELECTOR_ANNOTATION],
            r#"{"app":"web"}"#
        );
        // Idempotent.
        assert_eq!(pinned_service(&n, &pinned, "abc").unwrap(), None);
        // Re-pinning replaces the hash and keeps the original record.
        let repinned = pinned_service(&n, &pinned, "def").unwrap().unwrap();
        assert_eq!(
            repinned.spec.as_ref().unwrap().selector,
            Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH, "def")]))
        );
        assert_eq!(
            repinned.metadata.annotations.as_ref().unwrap()[ORIGINAL_SELECTOR_ANNOTATION],
            r#"{"app":"web"}"#
        );
        let unpinned = unpinned_service(&n, &repinned).unwrap().unwrap();
        assert_eq!(unpinned, original);
        assert_eq!(unpinned_service(&n, &unpinned).unwrap(), None);
    }

    #[test]
    fn unpinning_restores_a_selector_that_had_a_hash_of_its_own_and_drops_empty_annotations() {
        let n = names();
        let mut svc = stable();
        svc.metadata.annotations = None;
        svc.spec.as_mut().unwrap().selector =
            Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH, "zzz")]));
        let pinned = pinned_service(&n, &svc, "abc").unwrap().unwrap();
        assert_eq!(unpinned_service(&n, &pinned).unwrap().unwrap(), svc);
    }

    #[test]
    fn a_broken_record_is_an_error_that_says_what_to_do() {
        let n = names();
        let mut svc = stable();
        svc.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ORIGINAL_SELECTOR_ANNOTATION.into(), "nope".into());
        let msg = unpinned_service(&n, &svc).unwrap_err().to_string();
        assert!(
            msg.starts_with("Service shop/web: annotation vigil.dev/original-selector"),
            "{msg}"
        );
        assert!(msg.contains("restore the selector by hand"), "{msg}");
    }

    fn deployment(revision: Option<&str>) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("web".into());
        d.metadata.uid = Some("dep-uid".into());
        if let Some(r) = revision {
            d.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, r)]));
        }
        d
    }

    fn rs(owner: &str, controller: bool, revision: &str, hash: &str, replicas: i32) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some(format!("web-{hash}"));
        rs.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, revision)]));
        rs.metadata.labels = Some(labels(&[(POD_TEMPLATE_HASH, hash)]));
        rs.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: owner.into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }]);
        rs.spec = ReplicaSetSpec {
            replicas: Some(replicas),
            ..ReplicaSetSpec::default()
        };
        rs
    }

    #[test]
    fn the_current_replica_set_is_the_one_of_the_deployments_revision() {
        let sets = [
            rs("dep-uid", true, "1", "old", 3),
            rs("dep-uid", true, "2", "cur", 3),
            rs("dep-uid", true, "10", "newer", 0),
            rs("other-uid", true, "2", "foreign", 3),
        ];
        assert_eq!(
            pod_template_hash(&deployment(Some("2")), &sets).as_deref(),
            Some("cur")
        );
        // Without a matching revision: the highest revision that has replicas (10 has none).
        assert_eq!(
            pod_template_hash(&deployment(Some("7")), &sets).as_deref(),
            Some("cur")
        );
        assert_eq!(
            pod_template_hash(&deployment(None), &sets).as_deref(),
            Some("cur")
        );
        // Revisions compare as numbers, not strings.
        let sets = [
            rs("dep-uid", true, "9", "nine", 1),
            rs("dep-uid", true, "10", "ten", 1),
        ];
        assert_eq!(
            pod_template_hash(&deployment(None), &sets).as_deref(),
            Some("ten")
        );
    }

    #[test]
    fn replica_sets_not_controlled_by_the_deployment_are_ignored() {
        let sets = [
            rs("dep-uid", false, "1", "owned-not-controlled", 3),
            rs("x", true, "1", "foreign", 3),
        ];
        assert_eq!(pod_template_hash(&deployment(Some("1")), &sets), None);
        assert_eq!(pod_template_hash(&deployment(Some("1")), &[]), None);
    }
}
