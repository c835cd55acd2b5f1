//! An in-process fake Kubernetes API server for tests and for `vigil bench controller`. It speaks the real REST protocol over
//! HTTP on loopback, so the real `kube` client and `kube-runtime` (watcher, reflector,
//! Controller, events Recorder) and `kubectl` run against it unchanged.
//!
//! # API
//! ```ignore
//! let fake = FakeKube::start().await;                 // or FakeKube::start_with(Options {..})
//! let client: kube::Client = fake.client();           // default namespace "default"
//! fake.write_kubeconfig(&path);                       // for a separate binary or kubectl
//! fake.url();                                         // "http://127.0.0.1:PORT"
//!
//! // Direct store access, without HTTP (writes emit watch events like API writes):
//! fake.get(&Res::deployments(), "default", "web") -> Option<Value>
//! fake.get_as::<Deployment>("default", "web") -> Option<Deployment>
//! fake.list(&Res::replicasets(), Some("default")) -> Vec<Value>
//! fake.put_object(&res, json) -> Value / fake.put(&typed) -> K   // create or replace, as given
//! fake.register::<MyCrd>();                           // kind/scope for list kinds and discovery
//!
//! // Faults: the next 2 PUT or PATCH requests on canaries/status fail with 409 Conflict.
//! fake.faults().fail_next("PUT|PATCH", "releases", Some("status"), 409, 2);
//! // Random faults from a seed: 500, 429 + Retry-After, held requests, cut and expired watches.
//! fake.chaos(Chaos { server_error: 0.01, watch_dropped: 0.5, ..Chaos::seeded(42) });
//! fake.injected(); fake.calm();
//! // Request log: (method, path, query) of every HTTP request; counts by client and verb.
//! fake.requests(); fake.writes(); fake.clear_requests(); fake.counts();
//! // Hook: called after each successful write, before the client is answered.
//! fake.on_write(Some(Arc::new(|request: &RequestRecord| { /* e.g. kill the client */ })));
//! fake.wait_until("what", |fake| condition).await;  // poll (10 ms) up to 5 s, else panic
//! ```
//! [`Res`] names a resource type: `Res::of::<Deployment>()`, `Res::new("apps", "v1",
//! "deployments")`, `Res::core("services")`.
//!
//! # Supported
//! - URLs `/api/v1/...` and `/apis/{group}/{version}/...`, namespaced
//!   (`/namespaces/{ns}/{plural}[/{name}[/status]]`), cluster-scoped (`/{plural}[/{name}]`) and
//!   across all namespaces (`/{plural}`); any group, version and plural.
//! - GET; LIST with `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//!   `a notin (x,y)`), `fieldSelector` (`path=value`, `path!=value` over any dotted path, e.g.
//!   `metadata.name`), `limit`/`continue`.
//! - WATCH (`watch=true|1`): `resourceVersion` (unset/"0": ADDED for every current object first;
//!   N: replay of the history after N), `sendInitialEvents=true` (with the
//!   `k8s.io/initial-events-end` BOOKMARK), `timeoutSeconds`, selectors (objects entering or
//!   leaving the selection are ADDED/DELETED). History is kept whole unless [`FakeKube::compact`]
//!   is called, after which older resourceVersions get an ERROR event with 410 Expired.
//! - POST (uid, resourceVersion from one global counter, creationTimestamp, generation 1,
//!   `generateName`, 409 AlreadyExists, 422 for invalid names), PUT (409 Conflict on a stale
//!   resourceVersion), PATCH (merge, JSON patch with all six ops and 422 on a failed `test`,
//!   strategic merge treated as a merge patch so lists are replaced whole, server-side apply
//!   treated as a merge patch of the applied object that creates a missing object;
//!   `fieldManager`/`force` are accepted and ignored), DELETE (with `preconditions`, finalizers
//!   and `deletionTimestamp`), DELETE of a collection.
//! - The `/status` subresource (built-in types and every group ending in `vigil.dev`, see
//!   [`Options`]): PUT/PATCH of the main resource keep the stored status, of `/status` change
//!   only the status; `metadata.generation` grows when `spec` changes. An update that changes
//!   nothing gets no new resourceVersion and no event, as in Kubernetes.
//! - A Deployment controller (see `deployments.rs`): ReplicaSets `<name>-<pod-template-hash>`,
//!   pause, status counts and conditions, readiness delay; garbage collection of the
//!   ReplicaSets of deleted Deployments.
//! - Faults: the next N matching requests fail with a code ([`Faults::fail_next`]), or
//!   seeded random ones ([`FakeKube::chaos`], [`Chaos`]): 500, 429 with `Retry-After`, a
//!   request held past the client's timeout (then 504), a watch cut mid-stream (the
//!   connection breaks, as a proxy or a restarting API server does), a resuming watch
//!   answered 410 Expired; counted by kind ([`FakeKube::injected`]).
//! - Discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{g}`, `/apis/{g}/{v}`) for the
//!   built-in kinds and those learnt from objects, CRDs and [`FakeKube::register`].
//!
//! # Not supported
//! Authentication, dry runs, protobuf and Table output (kubectl falls back to JSON), field
//! managers and managed fields, strategic-merge list semantics, admission and most
//! validation and defaulting, Pods, garbage collection other than ReplicaSets, periodic
//! watch bookmarks, `resourceVersionMatch` semantics, scale and other subresources.

mod chaos;
mod deployments;
mod select;
mod server;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

// Re-exports for the tests.
pub use chaos::{Chaos, FAULT_KINDS};
pub use deployments::template_hash;
pub use server::{CLIENT_HEADER, CONTROL_PREFIX, Fault, RequestRecord, WriteHook, verb};
pub use store::{Options, Res};

use chaos::ChaosState;
use server::{Shared, lock};
use store::Store;

/// A running fake API server; dropping it stops the server.
pub struct FakeKube {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Arms the fake's scripted faults (see [`FakeKube::faults`]).
#[derive(Clone)]
pub struct Faults(Arc<Mutex<Vec<Fault>>>);

impl Faults {
    /// Makes the next `count` requests with one of `methods` (e.g. `"PUT"`, `"PUT|PATCH"`,
    /// `"*"`) on `plural` and `subresource` (`None`: the main resource) fail with `code` and a
    /// proper `Status` body (reason `Conflict` for 409, `InternalError` for 500, ...).
    pub fn fail_next(
        &self,
        methods: &str,
        plural: &str,
        subresource: Option<&str>,
        code: u16,
        count: usize,
    ) {
        lock(&self.0).push(Fault {
            methods: methods
                .split('|')
                .map(|m| m.trim().to_uppercase())
                .collect(),
            plural: plural.into(),
            subresource: subresource.map(Into::into),
            code,
            remaining: count,
        });
    }
}

impl FakeKube {
    /// Starts a fake with the default [`Options`] on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts a fake with these [`Options`] on a free loopback port; panics if it cannot
    /// listen (see [`FakeKube::try_start_with`]).
    pub async fn start_with(options: Options) -> Self {
        Self::try_start_with(options)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`FakeKube::start_with`], or an error that says why it cannot listen.
    pub async fn try_start_with(options: Options) -> Result<Self, String> {
        let cannot = |e: std::io::Error| {
            format!(
                "the fake Kubernetes API server cannot listen on a loopback port: {e}; \
                 check that 127.0.0.1 is configured"
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(cannot)?;
        let addr: SocketAddr = listener.local_addr().map_err(cannot)?;
        let log_requests = options.log_requests;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options)),
            faults: Arc::new(Mutex::new(Vec::new())),
            chaos: Arc::new(Mutex::new(ChaosState::new(Chaos::seeded(0)))),
            requests: Mutex::new(Vec::new()),
            log_requests,
            counts: Mutex::new(BTreeMap::new()),
            on_write: Mutex::new(None),
            addr,
        });
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the fake Kubernetes API server stopped: {e}");
            }
        });
        // Lets replicas become ready after the readiness delay without another write.
        let ticker_state = shared.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                let mut store = lock(&ticker_state.store);
                if !store.options.deployment_controller {
                    continue;
                }
                if store.pending_ready {
                    store.pending_ready = deployments::reconcile_all(&mut store);
                }
                for ns in std::mem::take(&mut store.pending_namespaces) {
                    if deployments::reconcile_in(&mut store, Some(&ns)) {
                        store.pending_namespaces.insert(ns);
                    }
                }
            }
        });
        Ok(Self {
            shared,
            tasks: vec![server, ticker],
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A `kube` client for this server, with default namespace "default".
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Writes a kubeconfig (context `fake`, namespace `default`, no authentication) that points
    /// at this server.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    \
             namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        lock(&self.shared.store)
    }

    /// An object as stored ("" as namespace for cluster-scoped objects).
    pub fn get(&self, res: &Res, ns: &str, name: &str) -> Option<Value> {
        self.store().get(res, ns, name).cloned()
    }

    /// An object as stored, deserialized into its type.
    pub fn get_as<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let value = self.get(&Res::of::<K>(), ns, name)?;
        Some(serde_json::from_value(value).unwrap())
    }

    /// Every state an object went through, oldest first (`None` after a delete): unlike
    /// polling, this misses no short-lived state.
    pub fn history(&self, res: &Res, ns: &str, name: &str) -> Vec<Option<Value>> {
        self.store().history_of(res, ns, name)
    }

    /// The objects of a type in a namespace (or all, with `None`), by namespace and name.
    pub fn list(&self, res: &Res, ns: Option<&str>) -> Vec<Value> {
        self.store().list(res, ns).into_iter().cloned().collect()
    }

    /// Creates or wholly replaces an object as given (status included, no checks), emitting
    /// ADDED or MODIFIED; uid, resourceVersion, creationTimestamp and generation are filled
    /// in, and the namespace "default" unless the type is known to be cluster-scoped. Returns
    /// the stored object.
    pub fn put_object(&self, res: &Res, object: Value) -> Value {
        self.store().put_object(res, object)
    }

    /// [`FakeKube::put_object`] for a typed object.
    pub fn put<K>(&self, object: &K) -> K
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        self.register::<K>();
        let value = serde_json::to_value(object).unwrap();
        serde_json::from_value(self.put_object(&Res::of::<K>(), value)).unwrap()
    }

    /// Makes a type's kind and scope known before any object of it exists (list kinds and
    /// discovery).
    pub fn register<K: kube::Resource<DynamicType = ()>>(&self) {
        let namespaced = std::any::type_name::<K::Scope>().contains("Namespace");
        self.store()
            .register(&Res::of::<K>(), &K::kind(&()), namespaced);
    }

    /// Drops the event history: watches from an older resourceVersion then get 410 Expired.
    pub fn compact(&self) {
        self.store().compact();
    }

    /// The scripted faults ([`Faults::fail_next`]); the handle can be kept, e.g. by a write
    /// hook ([`FakeKube::on_write`]) to fail the request that follows a given write.
    pub fn faults(&self) -> Faults {
        Faults(self.shared.faults.clone())
    }

    /// Injects seeded random faults from now on (see [`Chaos`]): 500s, 429s with
    /// `Retry-After`, requests held past the client's timeout, watches cut mid-way and
    /// resuming watches answered 410 Gone. Starts the counts of [`FakeKube::injected`] and
    /// the generator afresh.
    pub fn chaos(&self, config: Chaos) {
        *lock(&self.shared.chaos) = ChaosState::new(config);
    }

    /// Stops injecting random faults; the counts stay. Requests already held still end
    /// with their 504, and watches already doomed are still cut.
    pub fn calm(&self) {
        let mut chaos = lock(&self.shared.chaos);
        let seed = chaos.config.seed;
        chaos.config = Chaos::seeded(seed);
    }

    /// The random faults injected so far, by kind (every one of [`FAULT_KINDS`]).
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.shared.chaos).injected.clone()
    }

    /// The latest resourceVersion handed out (one counter over every object): a point in
    /// the history that [`FakeKube::history`]'s states can be placed before or after.
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Every HTTP request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// The requests received so far by client (the [`CLIENT_HEADER`]'s value, "" without
    /// it) and [`verb`], also when [`Options::log_requests`] is off.
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        lock(&self.shared.counts).clone()
    }

    /// The POST, PUT, PATCH and DELETE requests received so far.
    pub fn writes(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(RequestRecord::is_write)
            .collect()
    }

    /// Calls `hook` after every write (POST, PUT, PATCH, DELETE) that succeeds, once the
    /// store holds it and before the client is answered, so that a test can act at that
    /// very point (e.g. kill the client, which then never learns that its write was made).
    /// Replaces the hook set before; `None` removes it.
    pub fn on_write(&self, hook: Option<WriteHook>) {
        *lock(&self.shared.on_write) = hook;
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Polls `condition` every 10 ms; panics naming `what` if it is not true within 5 s.
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&FakeKube) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
