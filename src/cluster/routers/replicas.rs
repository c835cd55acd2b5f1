//! The replicas "router": no traffic objects at all. Stable and canary pods sit behind the
//! same Service, so the canary's share of traffic is the share of its replicas, which the
//! reconciler sets. Setting and resetting routing are therefore no-ops.

use super::{MatcherNames, RouteContext, Router, RouterError};
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

    fn uses_services(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_uses_no_services() {
        assert!(!ReplicasRouter.uses_services());
        assert_eq!(ReplicasRouter.name(), "replicas");
    }
}
