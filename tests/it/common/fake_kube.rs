//! The in-process fake Kubernetes API server, now in the library ([`vigil::fake_kube`]) so that
//! `vigil bench controller` can run the controller against it; re-exported here so that the
//! tests keep importing it as `common::fake_kube`.

pub use vigil::fake_kube::*;
