//! The HorizontalPodAutoscaler (autoscaling/v2) that scales a Release's target, as the core's
//! [`Autoscaler`]: which one targets the Deployment, and the replicas it wants now.

use crate::rollout::Autoscaler;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

/// The autoscaler of Deployment `target` among a namespace's HPAs; `None` when none scales
/// it. `target_replicas` (the Deployment's `spec.replicas`) stands in for a desired count
/// the HPA has not computed yet.
pub fn of_target(
    hpas: &[HorizontalPodAutoscaler],
    target: &str,
    target_replicas: i32,
) -> Option<Autoscaler> {
    let hpa = hpas.iter().find(|h| {
        let r = &h.spec.scale_target_ref;
        r.kind == "Deployment"
            && r.name == target
            && r.api_version
                .as_deref()
                .is_none_or(|v| v.starts_with("apps/"))
    })?;
    let spec = &hpa.spec;
    let status = hpa.status.as_ref();
    let desired = status
        .map(|s| s.desired_replicas)
        .filter(|n| *n > 0)
        .or_else(|| status.and_then(|s| s.current_replicas).filter(|n| *n > 0))
        .unwrap_or(target_replicas);
    Some(Autoscaler {
        desired,
        min: spec.min_replicas.unwrap_or(1),
        max: spec.max_replicas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hpa(target: &str, kind: &str, desired: Option<i32>) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{target}-hpa"), "namespace": "shop"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                "minReplicas": 2, "maxReplicas": 10,
            },
            "status": desired.map(|d| json!({"currentReplicas": 3, "desiredReplicas": d})),
        }))
        .unwrap()
    }

    #[test]
    fn finds_the_hpa_of_the_target_deployment_only() {
        let hpas = [
            hpa("api", "Deployment", Some(7)),
            hpa("web", "StatefulSet", Some(5)),
            hpa("web", "Deployment", Some(6)),
        ];
        let a = of_target(&hpas, "web", 4).unwrap();
        assert_eq!((a.desired, a.min, a.max), (6, 2, 10));
        assert_eq!(of_target(&hpas[..2], "web", 4), None);
    }

    #[test]
    fn a_new_hpa_without_status_wants_the_deployments_count() {
        let a = of_target(&[hpa("web", "Deployment", None)], "web", 4).unwrap();
        assert_eq!(a.desired, 4);
        let mut zero = hpa("web", "Deployment", Some(0));
        assert_eq!(of_target(&[zero.clone()], "web", 4).unwrap().desired, 3);
        zero.status = None;
        assert_eq!(of_target(&[zero], "web", 4).unwrap().desired, 4);
    }
}
