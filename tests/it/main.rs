//! vigil's integration tests, as one test binary: the shared harness (`common`: a real
//! Prometheus, the in-process fake Kubernetes API server, a traffic generator, headless
//! Chromium) is compiled and linked once instead of once per test file. Each module is what
//! used to be its own `tests/*.rs` binary; run one with `cargo test --test it MODULE::`.
//!
//! `tests/deploy.rs` stays a binary of its own (`cargo test --test deploy`, the command the
//! deploy/ files name); it does not use `common`.

mod common;

mod alerts;
mod bench;
mod cli;
mod controller;
mod demo;
mod e2e;
mod fake_kube;
mod judge_api;
mod leader;
mod lint;
mod notify;
mod ops;
mod prometheus_client;
mod prometheus_judge;
mod replay;
mod report;
