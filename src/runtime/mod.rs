//! `vigil run` wired together: the controller loop over the cluster layer, the HTTP server
//! (`/metrics`, probes, the `/v1` API and the live dashboard), the controller's metrics, and the bridge that turns
//! each reconcile's rollout events into notifications; and (`bench`) that controller measured
//! under load, for `vigil bench controller`.

pub mod bench;
pub mod controller;
pub mod dashboard;
pub mod kube_client;
pub mod metrics;
pub mod notifications;
pub mod server;
pub mod source;
