//! The selector "router": no traffic objects. The Service in front of the Deployment
//! selects the stable pods (pinned to their ReplicaSet during a rollout, as for every
//! router), and at weight 100 the new version's pods instead: all traffic switches at once,
//! and back at once, as a blue-green release wants. Weights between 0 and 100 and A/B
//! conditions cannot be expressed by a selector; the plan refuses them
//! ([`crate::api::plan::plan`]), and so does [`SelectorRouter::set`].

use super::{
    MatcherNames, MirrorSupport, RouteContext, Router, RouterError, checked_mirror, replicas,
    services,
};
use crate::rollout::Match;
use futures::future::BoxFuture;

/// The router of `routing.selector`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectorRouter;

impl Router for SelectorRouter {
    fn name(&self) -> &'static str {
        "selector"
    }

    /// Pod names, as for the replicas router: both versions serve behind the one Service.
    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Ok(replicas::pod_matchers(names))
    }

    fn set<'a>(
        &'a self,
        ctx: &'a RouteContext,
        weight: u8,
        matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            if weight != 100 || !matches.is_empty() {
                return Err(RouterError::Invalid {
                    object: ctx.names().object("Release", &ctx.canary),
                    message: format!(
                        "routing.selector switches all traffic or none: it cannot send {weight}%{} \
                         to the canary; use blueGreen, or a router that splits traffic",
                        if matches.is_empty() {
                            ""
                        } else {
                            " and A/B matches"
                        }
                    ),
                });
            }
            services::switch_stable_service(ctx).await
        })
    }

    /// Nothing to remove: with weight 0 the world pins the Service to the stable pods, or
    /// restores its selector.
    fn reset<'a>(&'a self, _ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

    fn sets_selector(&self, weight: u8) -> bool {
        weight == 100
    }

    /// Only `None` (nothing to remove) succeeds: see [`NO_MIRROR`].
    fn mirror<'a>(
        &'a self,
        ctx: &'a RouteContext,
        percent: Option<u8>,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move { checked_mirror(self, &ctx.names(), percent).map(|_| ()) })
    }

    fn mirror_support(&self) -> MirrorSupport {
        MirrorSupport::Unsupported(NO_MIRROR)
    }

    fn mirror_matchers(&self, _names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Err(format!(
            "the selector router cannot mirror requests: {NO_MIRROR}"
        ))
    }
}

/// Why the selector router cannot mirror.
const NO_MIRROR: &str = "a Service's selector sends each request to one set of pods and no \
                         traffic object of vigil's sits in front of them to copy requests; \
                         route with ingress-nginx, the Gateway API or Istio";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::routers::services::{pinned_service, switched_service, unpinned_service};
    use crate::cluster::routers::testing::names;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        }))
        .unwrap()
    }

    fn selector(svc: &Service) -> serde_json::Value {
        json!(svc.spec.as_ref().unwrap().selector)
    }

    #[test]
    fn the_switch_selects_the_canary_pods_and_back_restores_the_original() {
        let n = names();
        let pinned = pinned_service(&n, &service(), "abc").unwrap().unwrap();
        assert_eq!(
            selector(&pinned),
            json!({"app": "web", "pod-template-hash": "abc"})
        );
        // From the stable pin to the new version: the hash goes, the canary label comes.
        let switched = switched_service(&n, &pinned).unwrap().unwrap();
        assert_eq!(
            selector(&switched),
            json!({"app": "web", "vigil.dev/canary": "true"})
        );
        assert_eq!(switched_service(&n, &switched).unwrap(), None, "idempotent");
        // A rollback pins the stable pods again; the end restores the owner's selector.
        let back = pinned_service(&n, &switched, "abc").unwrap().unwrap();
        assert_eq!(back, pinned);
        let restored = unpinned_service(&n, &switched).unwrap().unwrap();
        assert_eq!(selector(&restored), json!({"app": "web"}));
        assert_eq!(restored.metadata.annotations, None);
    }

    #[test]
    fn it_sets_the_selector_only_at_100_and_matches_pods_by_name() {
        let r = SelectorRouter;
        assert!(r.sets_selector(100));
        assert!(!r.sets_selector(0));
        assert!(r.uses_services());
        let (s, c) = r
            .default_matchers(&MatcherNames {
                namespace: "shop",
                target: "web",
                canary_deployment: "web-canary",
                canary_service: "web-preview",
                port: None,
            })
            .unwrap();
        assert_eq!(s, r#"pod=~"web-[a-z0-9]+-[a-z0-9]+""#);
        assert_eq!(c, r#"pod=~"web-canary-[a-z0-9]+-[a-z0-9]+""#);
    }
}
