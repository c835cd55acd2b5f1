//! The replicas "router": no traffic objects at all. Stable and canary pods sit behind the
//! same Service, so the canary's share of traffic is the share of its replicas, which the
//! reconciler sets. Setting and resetting routing are therefore no-ops, and there is nothing
//! to mirror with: every request goes to one of the pods behind the one Service, none is
//! copied.

use super::{MatcherNames, MirrorSupport, RouteContext, Router, RouterError, checked_mirror};
use crate::rollout::Match;
use futures::future::BoxFuture;

/// Matchers by pod name, for routers without a data plane of their own (the versions'
/// pods serve behind one Service): `web-<hash>-<id>` vs `web-canary-<hash>-<id>`.
pub(crate) fn pod_matchers(names: &MatcherNames<'_>) -> (String, String) {
    (
        format!(r#"pod=~"{}-[a-z0-9]+-[a-z0-9]+""#, names.target),
        format!(r#"pod=~"{}-[a-z0-9]+-[a-z0-9]+""#, names.canary_deployment),
    )
}

/// The router of `routing.replicas`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicasRouter;

impl Router for ReplicasRouter {
    fn name(&self) -> &'static str {
        "replicas"
    }

    fn default_matchers(&self, names: &MatcherNames<'_>) -> Result<(String, String), String> {
        Ok(pod_matchers(names))
    }

    fn set<'a>(
        &'a self,
        _ctx: &'a RouteContext,
        _weight: u8,
        _matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

    fn reset<'a>(&'a self, _ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

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
            "the replicas router cannot mirror requests: {NO_MIRROR}"
        ))
    }

    fn uses_services(&self) -> bool {
        false
    }
}

/// Why the replicas router cannot mirror.
const NO_MIRROR: &str = "stable and canary pods share one Service and no traffic object of \
                         vigil's sits in front of them to copy requests; route with ingress-nginx, \
                         the Gateway API or Istio";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_uses_no_services() {
        assert!(!ReplicasRouter.uses_services());
        assert_eq!(ReplicasRouter.name(), "replicas");
    }

    #[test]
    fn it_refuses_to_mirror_and_says_why() {
        let support = ReplicasRouter.mirror_support();
        let msg = support.check("replicas", 100).unwrap_err();
        assert!(
            msg.starts_with("the replicas router cannot mirror requests: stable and canary"),
            "{msg}"
        );
        let names = crate::cluster::routers::testing::names();
        assert!(checked_mirror(&ReplicasRouter, &names, None).is_ok());
        let msg = checked_mirror(&ReplicasRouter, &names, Some(100))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("Release shop/web: the replicas router"),
            "{msg}"
        );
        let msg = ReplicasRouter
            .mirror_matchers(&crate::cluster::routers::testing::matcher_names())
            .unwrap_err();
        assert!(msg.contains("cannot mirror"), "{msg}");
    }
}
