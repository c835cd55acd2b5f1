//! Traffic routers: one file each, behind [`Router`]. Adding a router means adding a file
//! and a variant of [`crate::cluster::crd::Routing`].
//!
//! A router only moves traffic. The canary Service and the pinning of the stable Service to
//! the stable pods are shared by every router that needs them ([`services`]); replica
//! counts are the reconciler's.

use crate::rollout::Match;
use futures::future::BoxFuture;

/// What a router needs to know about the Canary it serves.
#[derive(Clone)]
pub struct RouteContext {
    /// A client for the cluster.
    pub client: kube::Client,
    /// The Canary's namespace (every object lives there).
    pub namespace: String,
    /// The Canary's name.
    pub canary: String,
    /// The stable Service.
    pub service: String,
    /// The canary Service vigil manages.
    pub canary_service: String,
    /// The port to route to, when set in the Canary.
    pub port: Option<i32>,
    /// Owner reference to the Canary, for objects vigil creates (garbage-collected with it).
    pub owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

/// Why a router could not apply a change. The message names the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A Kubernetes API call failed.
    #[error("{object}: {source}")]
    Api {
        /// Kind/namespace/name of the object.
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The object exists but cannot be used as configured.
    #[error("{object}: {message}")]
    Invalid {
        /// Kind/namespace/name of the object.
        object: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Moves traffic between the stable and the canary Service.
pub trait Router: Send + Sync {
    /// The router's name, for logs and metrics.
    fn name(&self) -> &'static str;

    /// Makes `weight` percent of traffic (and requests matching `matches`) go to the canary.
    /// Idempotent: applying the same weight twice changes nothing.
    fn set<'a>(
        &'a self,
        ctx: &'a RouteContext,
        weight: u8,
        matches: &'a [Match],
    ) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Removes canary routing: all traffic to stable. Idempotent; succeeds when there is
    /// nothing to remove.
    fn reset<'a>(&'a self, ctx: &'a RouteContext) -> BoxFuture<'a, Result<(), RouterError>>;

    /// Whether this router sends traffic to a separate canary Service (and so needs the
    /// stable Service pinned to stable pods).
    fn uses_services(&self) -> bool {
        true
    }
}
