//! The Kubernetes adapter: CRD types, the reconciler, traffic routers and leader election.
//! It depends on the core (`rollout`, `template`, `judge`, `analysis`); the core knows
//! nothing of it.

pub mod crd;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod routers;
