//! The Kubernetes API of vigil and the pure logic over it: the CRDs (`Release`,
//! `ReleaseAnalysis`, `ClusterReleaseAnalysis`), a Release's spec turned into the core's
//! rollout plan with its PromQL matchers, which alerts match which Release, and which
//! HorizontalPodAutoscaler scales its target. Nothing here talks to a cluster: the I/O is in [`crate::cluster`].

pub mod alerts;
pub mod autoscaler;
pub mod crd;
pub mod plan;
pub mod status;
