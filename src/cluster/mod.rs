//! The Kubernetes adapter: CRD types, the reconciler, traffic routers and leader election.
//! It depends on the core (`rollout`, `template`, `judge`, `analysis`); the core knows
//! nothing of it.

pub mod alerts;
pub mod analysis;
pub mod clock;
pub mod crd;
pub mod daemon;
pub mod gates;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod reconciler;
pub mod report;
pub mod routers;
pub mod world;
