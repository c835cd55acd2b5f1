//! vigil: decides from metrics whether a canary release is safe to roll out.
//!
//! The core (`template`, `stats`, `judge`) is pure: no I/O, no HTTP, no terminal.
//! Adapters (`source`, `report`, the CLI) depend on the core, never the other way round.

pub mod analysis;
pub mod bench;
pub mod cluster;
pub mod data;
pub mod judge;
pub mod notify;
pub mod replay;
pub mod report;
pub mod rollout;
pub mod server;
pub mod signature;
pub mod source;
pub mod stats;
pub mod template;
