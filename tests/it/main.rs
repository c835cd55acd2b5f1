//! vigil's integration tests, as one test binary, so that the shared harness (`common`: a
//! real Prometheus, the in-process fake Kubernetes API server, a traffic generator, headless
//! Chromium) is compiled and linked once. One module per area; run one with
//! `cargo test --test it MODULE::`.
//!
//! The tests run in parallel threads of one process: none may change process-wide state
//! (environment variables, the current directory, a global logger); child processes get
//! theirs through `Command`, and every server listens on a port the system picks.
//!
//! `tests/deploy.rs` is a binary of its own (`cargo test --test deploy`, the command the
//! deploy/ files name); it does not use `common`.

mod common;

mod alerts;
mod bake;
mod bench;
mod blue_green;
mod cli;
mod coexistence;
mod controller;
mod crash;
mod dashboard;
mod demo;
mod e2e;
mod fake_kube;
mod image;
mod judge_api;
mod judge_baseline;
mod leader;
mod lint;
mod mirror;
mod notify;
mod ops;
mod prometheus_client;
mod prometheus_judge;
mod replay;
mod report;
mod shards;
mod soak;
