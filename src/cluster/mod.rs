//! The Kubernetes I/O: the reconciler and the world it applies (Deployments, Services, the
//! traffic routers), release gates, analyses run for a Release, dry-run report ConfigMaps,
//! leader election and the operator commands. It builds on the API types and pure logic of
//! [`crate::api`] and on the core; `vigil run` itself is wired in [`crate::runtime`].

pub mod analysis;
pub mod clock;
pub mod committed;
pub mod events;
pub mod gates;
pub mod leader;
pub mod ops;
pub mod reconciler;
pub mod report;
pub mod routers;
pub mod shards;
pub mod world;
