//! The object store behind the fake API server: objects as JSON, one global resourceVersion
//! counter, the full event history (for watches that resume from a resourceVersion), and the
//! write semantics of the API server (create, replace, patch, delete, status subresource,
//! optimistic concurrency, finalizers).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A resource type: API group (empty for the core group), version and plural name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Res {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl Res {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
        }
    }

    /// A resource of the core group `v1` (`/api/v1/...`).
    pub fn core(plural: &str) -> Self {
        Self::new("", "v1", plural)
    }

    /// The resource of a `kube`/`k8s-openapi` type, e.g. `Res::of::<Deployment>()`.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    pub fn deployments() -> Self {
        Self::new("apps", "v1", "deployments")
    }

    pub fn replicasets() -> Self {
        Self::new("apps", "v1", "replicasets")
    }

    /// `v1` or `group/version`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Kind name and scope of a resource type, and the names a CRD gives it besides its plural.
#[derive(Clone, Debug, Default)]
pub struct KindInfo {
    pub kind: String,
    pub namespaced: bool,
    /// `spec.names.singular` of its CRD; `None`: the kind in lower case.
    pub singular: Option<String>,
    /// `spec.names.shortNames` of its CRD.
    pub short_names: Vec<String>,
    /// `spec.names.categories` of its CRD (`kubectl get <category>`).
    pub categories: Vec<String>,
}

/// The resource types the fake knows without having seen an object of them (for list kinds and
/// discovery): (group, version, plural, kind, namespaced).
const WELL_KNOWN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "pods", "Pod", true),
    ("", "v1", "services", "Service", true),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "events", "Event", true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "endpoints", "Endpoints", true),
    (
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    ("", "v1", "namespaces", "Namespace", false),
    ("", "v1", "nodes", "Node", false),
    ("apps", "v1", "deployments", "Deployment", true),
    ("apps", "v1", "replicasets", "ReplicaSet", true),
    ("apps", "v1", "statefulsets", "StatefulSet", true),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
    ("batch", "v1", "jobs", "Job", true),
    ("batch", "v1", "cronjobs", "CronJob", true),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true),
    ("events.k8s.io", "v1", "events", "Event", true),
    ("coordination.k8s.io", "v1", "leases", "Lease", true),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    ),
];

/// Built-in (group, plural) pairs that have a `/status` subresource.
const WELL_KNOWN_STATUS: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "namespaces"),
    ("", "nodes"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("policy", "poddisruptionbudgets"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
];

/// Behaviour switches of the fake, given to [`super::FakeKube::start_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Every resource of a group ending in one of these has a `/status` subresource
    /// (default: `vigil.dev`, so `releases.vigil.dev` and `x.test.vigil.dev` do).
    pub status_group_suffixes: Vec<String>,
    /// Further (group, plural) pairs with a `/status` subresource, besides the built-in ones
    /// (deployments, replicasets, statefulsets, pods, services, ingresses, ...).
    pub status_resources: Vec<(String, String)>,
    /// Run the built-in Deployment controller (ReplicaSets and Deployment status).
    pub deployment_controller: bool,
    /// How long after a ReplicaSet is scaled up its new replicas count as ready.
    pub ready_delay: Duration,
    /// Keep every request for [`super::FakeKube::requests`] (default); without, only the
    /// counts by verb are kept, so that a long benchmark does not grow a log.
    pub log_requests: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            status_group_suffixes: vec!["vigil.dev".into()],
            status_resources: Vec::new(),
            deployment_controller: true,
            ready_delay: Duration::ZERO,
            log_requests: true,
        }
    }
}

/// The error of an API call, rendered as a `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason_for(code).into(),
            message: message.into(),
        }
    }

    pub fn not_found(res: &Res, name: &str) -> Self {
        Self::new(404, format!("{} {name:?} not found", qualified(res)))
    }

    pub fn conflict(res: &Res, name: &str) -> Self {
        Self::new(
            409,
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(res)
            ),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }

    /// The `Status` object the API server sends for this error.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// The `reason` the API server gives with an HTTP status code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// `deployments.apps`, as the API server names a resource in messages.
fn qualified(res: &Res) -> String {
    if res.group.is_empty() {
        res.plural.clone()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

/// The kind of a change, as sent on a watch stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change to the store; `old` is the object before a modification, so that watches with a
/// selector can tell objects entering and leaving the selection.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub res: Res,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    pub old: Option<Value>,
}

/// The patch formats of `PATCH` requests, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`, applied as a merge patch (lists are replaced
    /// whole, with no merge keys).
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; `kube` sends JSON), applied as a
    /// merge patch of the applied object, creating the object when it is missing. Field
    /// ownership is not tracked: fields the manager stops applying are not removed.
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next()?.trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// The live events of a watch.
pub type EventReceiver = UnboundedReceiver<Arc<Event>>;

/// Objects are keyed by resource type, namespace (empty when cluster-scoped) and name.
pub type Key = (Res, String, String);

/// All state of the fake API server.
pub struct Store {
    pub options: Options,
    rv: u64,
    uids: u64,
    pub objects: BTreeMap<Key, Value>,
    history: Vec<Arc<Event>>,
    /// Events at or below this resourceVersion were dropped from the history.
    compacted: u64,
    watchers: Vec<UnboundedSender<Arc<Event>>>,
    kinds: HashMap<Res, KindInfo>,
    /// Resource types that gained a status subresource from a CustomResourceDefinition.
    crd_status: HashSet<(String, String)>,
    /// ReplicaSet readiness bookkeeping of the Deployment controller.
    pub readiness: HashMap<(String, String), (i64, tokio::time::Instant)>,
    /// Whether some ReplicaSet replicas still wait for the readiness delay.
    pub pending_ready: bool,
    /// The namespaces where replicas wait to be ready (writes there found some), for the
    /// ticker to look at alone.
    pub pending_namespaces: BTreeSet<String>,
}

impl Store {
    pub fn new(options: Options) -> Self {
        let kinds = WELL_KNOWN
            .iter()
            .map(|&(g, v, plural, kind, namespaced)| {
                let info = KindInfo {
                    kind: kind.into(),
                    namespaced,
                    ..KindInfo::default()
                };
                (Res::new(g, v, plural), info)
            })
            .collect();
        Self {
            options,
            rv: 0,
            uids: 0,
            objects: BTreeMap::new(),
            history: Vec::new(),
            compacted: 0,
            watchers: Vec::new(),
            kinds,
            crd_status: HashSet::new(),
            readiness: HashMap::new(),
            pending_ready: false,
            pending_namespaces: BTreeSet::new(),
        }
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Kind and scope of every resource type known, sorted.
    pub fn kinds(&self) -> Vec<(Res, KindInfo)> {
        let mut all: Vec<_> = self
            .kinds
            .iter()
            .map(|(r, k)| (r.clone(), k.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Records the kind of a resource type (learned from an object, a CRD or a test).
    pub fn register(&mut self, res: &Res, kind: &str, namespaced: bool) {
        self.kinds.entry(res.clone()).or_insert_with(|| KindInfo {
            kind: kind.into(),
            namespaced,
            ..KindInfo::default()
        });
    }

    /// The kind of a resource type; for one never seen, a guess from the plural.
    pub fn kind_of(&self, res: &Res) -> String {
        if let Some(info) = self.kinds.get(res) {
            return info.kind.clone();
        }
        let singular = res.plural.strip_suffix('s').unwrap_or(&res.plural);
        let mut chars = singular.chars();
        chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default()
    }

    /// Whether the type is known to be namespaced (`None` if the type is unknown).
    pub fn is_namespaced(&self, res: &Res) -> Option<bool> {
        self.kinds.get(res).map(|k| k.namespaced)
    }

    /// Whether the resource type has a `/status` subresource.
    pub fn has_status(&self, res: &Res) -> bool {
        let pair = (res.group.clone(), res.plural.clone());
        WELL_KNOWN_STATUS
            .iter()
            .any(|&(g, p)| g == res.group && p == res.plural)
            || self.options.status_resources.contains(&pair)
            || self.crd_status.contains(&pair)
            || self
                .options
                .status_group_suffixes
                .iter()
                .any(|s| res.group.ends_with(s.as_str()))
    }

    pub fn get(&self, res: &Res, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(res.clone(), ns.into(), name.into()))
    }

    /// The objects of a type, in one namespace or (with `None`) in all, sorted by namespace
    /// and name.
    pub fn list(&self, res: &Res, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), _)| r == res && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect()
    }

    // ----- API operations (each runs the Deployment controller afterwards when relevant) -----

    /// `POST`: creates an object in namespace `ns` ("" for cluster-scoped).
    pub fn create(&mut self, res: &Res, ns: &str, body: Value) -> Result<Value, ApiError> {
        let created = self.create_inner(res, ns, body)?;
        self.after_write(res, Some(ns));
        Ok(created)
    }

    /// `PUT` of the main resource or (with `status`) the `/status` subresource.
    pub fn replace(
        &mut self,
        res: &Res,
        ns: &str,
        name: &str,
        body: Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let stored = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        check_object(&body)?;
        if let Some(body_name) = body["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        check_resource_version(res, name, &stored, &body)?;
        let new = self.prepare_update(res, &stored, body, status);
        validate(res, &new)?;
        let out = self.commit_update(res, &stored, new);
        self.after_write(res, Some(ns));
        Ok(out)
    }

    /// `PATCH` of the main resource or (with `status`) the `/status` subresource.
    pub fn patch(
        &mut self,
        res: &Res,
        ns: &str,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        status: bool,
    ) -> Result<Value, ApiError> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("malformed patch body: {e}")))?;
        let Some(stored) = self.get(res, ns, name).cloned() else {
            if patch_type != PatchType::Apply || status {
                return Err(ApiError::not_found(res, name));
            }
            check_object(&patch)?;
            let mut base = json!({
                "apiVersion": res.api_version(),
                "kind": self.kind_of(res),
                "metadata": {"name": name},
            });
            json_patch::merge(&mut base, &patch);
            if base["metadata"]["name"].as_str() != Some(name) {
                return Err(ApiError::bad_request("a patch cannot change metadata.name"));
            }
            let created = self.create_inner(res, ns, base)?;
            self.after_write(res, Some(ns));
            return Ok(created);
        };
        let mut doc = stored.clone();
        match patch_type {
            PatchType::Json => {
                let mut ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("malformed JSON patch: {e}")))?;
                // As the API server's JSON patch library does, a `test` for null passes
                // when the path is missing (kube's finalizer helper relies on it).
                ops.0.retain(|op| match op {
                    json_patch::PatchOperation::Test(t) => {
                        !(t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
                    }
                    _ => true,
                });
                json_patch::patch(&mut doc, &ops)
                    .map_err(|e| ApiError::invalid(format!("the JSON patch failed: {e}")))?;
            }
            PatchType::Merge | PatchType::Strategic | PatchType::Apply => {
                check_object(&patch)?;
                json_patch::merge(&mut doc, &patch);
            }
        }
        check_object(&doc)?;
        if doc["metadata"]["name"].as_str() != Some(name) {
            return Err(ApiError::bad_request("a patch cannot change metadata.name"));
        }
        check_resource_version(res, name, &stored, &doc)?;
        let new = self.prepare_update(res, &stored, doc, status);
        validate(res, &new)?;
        let out = self.commit_update(res, &stored, new);
        self.after_write(res, Some(ns));
        Ok(out)
    }

    /// `DELETE`: removes the object, or marks it for deletion while it has finalizers.
    /// `options` is the request's `DeleteOptions` body, whose `preconditions` are checked.
    pub fn delete(
        &mut self,
        res: &Res,
        ns: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let stored = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let pre = &options["preconditions"];
        for field in ["uid", "resourceVersion"] {
            if let Some(expected) = pre[field].as_str()
                && stored["metadata"][field].as_str() != Some(expected)
            {
                return Err(ApiError::conflict(res, name));
            }
        }
        let out = if has_finalizers(&stored) {
            if stored["metadata"]["deletionTimestamp"].is_string() {
                stored
            } else {
                let mut marked = stored.clone();
                marked["metadata"]["deletionTimestamp"] = now().into();
                marked["metadata"]["deletionGracePeriodSeconds"] = 0.into();
                self.commit_update(res, &stored, marked)
            }
        } else {
            self.remove(res, ns, name)
        };
        self.after_write(res, Some(ns));
        Ok(out)
    }

    /// Creates or wholly replaces an object as given (status included), bypassing the API's
    /// checks; server-managed metadata that the object lacks is filled in, and so is the
    /// namespace "default" unless the type is known to be cluster-scoped.
    pub fn put_object(&mut self, res: &Res, mut object: Value) -> Value {
        if !object["metadata"]["namespace"].is_string() && self.is_namespaced(res) != Some(false) {
            object["metadata"]["namespace"] = "default".into();
        }
        let out = self.put_inner(res, object);
        self.after_write(res, None);
        out
    }

    /// Subscribes to all future events, and returns the recorded ones newer than `since`
    /// (410 Gone if those were compacted away).
    pub fn watch(&mut self, since: u64) -> Result<(Vec<Arc<Event>>, EventReceiver), ApiError> {
        if since < self.compacted {
            return Err(ApiError::new(
                410,
                format!("too old resource version: {since} ({})", self.compacted),
            ));
        }
        let past = self
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        let (tx, rx) = unbounded_channel();
        self.watchers.push(tx);
        Ok((past, rx))
    }

    /// Every state one object went through since the last compaction, oldest first:
    /// `Some(object)` after each create or update, `None` after a delete.
    pub fn history_of(&self, res: &Res, ns: &str, name: &str) -> Vec<Option<Value>> {
        self.history
            .iter()
            .filter(|e| &e.res == res && e.namespace == ns && e.object["metadata"]["name"] == name)
            .map(|e| (e.kind != EventType::Deleted).then(|| e.object.clone()))
            .collect()
    }

    /// [`Store::history_of`] for every object of a type at once, each state projected on
    /// `fields` (paths of keys; a missing one is null): by namespace and name.
    pub fn projected_history(
        &self,
        res: &Res,
        fields: &[Vec<String>],
    ) -> BTreeMap<(String, String), Vec<Option<Vec<Value>>>> {
        let mut out: BTreeMap<(String, String), Vec<Option<Vec<Value>>>> = BTreeMap::new();
        for event in self.history.iter().filter(|e| &e.res == res) {
            let name = event.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let state = (event.kind != EventType::Deleted)
                .then(|| super::server::project(&event.object, fields));
            out.entry((event.namespace.clone(), name))
                .or_default()
                .push(state);
        }
        out
    }

    /// Forgets the event history, so that watches from an older resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    // ----- internals shared with the Deployment controller -----

    pub fn create_inner(
        &mut self,
        res: &Res,
        ns: &str,
        mut body: Value,
    ) -> Result<Value, ApiError> {
        check_object(&body)?;
        let meta = &body["metadata"];
        if let Some(body_ns) = meta["namespace"].as_str()
            && !ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) => format!("{prefix}{}", random_suffix(self.uids + 1)),
            _ => {
                return Err(ApiError::invalid(
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        validate_name(&name)?;
        if ns.is_empty() {
            if let Some(meta) = body["metadata"].as_object_mut() {
                meta.remove("namespace");
            }
        } else {
            body["metadata"]["namespace"] = ns.into();
        }
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError {
                reason: "AlreadyExists".into(),
                ..ApiError::new(409, format!("{} {name:?} already exists", qualified(res)))
            });
        }
        if let Some(kind) = body["kind"].as_str() {
            let kind = kind.to_string();
            self.register(res, &kind, !ns.is_empty());
        }
        validate(res, &body)?;
        body["metadata"]["name"] = name.into();
        if self.has_status(res)
            && let Some(map) = body.as_object_mut()
        {
            map.remove("status");
        }
        if let Some(meta) = body["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("uid");
            meta.remove("creationTimestamp");
            meta.remove("generation");
            meta.remove("managedFields");
        }
        Ok(self.put_inner(res, body))
    }

    /// Creates or replaces as given; see [`Store::put_object`].
    pub fn put_inner(&mut self, res: &Res, mut object: Value) -> Value {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("an object needs metadata.name")
            .to_string();
        object["apiVersion"] = res.api_version().into();
        if let Some(kind) = object["kind"].as_str() {
            let kind = kind.to_string();
            self.register(res, &kind, !ns.is_empty());
        } else {
            object["kind"] = self.kind_of(res).into();
        }
        self.apply_defaults(res, &mut object);
        if let Some(stored) = self.get(res, &ns, &name).cloned() {
            let meta = object["metadata"].as_object_mut().unwrap();
            for field in ["uid", "creationTimestamp", "generation"] {
                if !meta.contains_key(field) {
                    meta.insert(field.into(), stored["metadata"][field].clone());
                }
            }
            if object.get("spec") != stored.get("spec")
                && object["metadata"]["generation"] == stored["metadata"]["generation"]
            {
                object["metadata"]["generation"] = (generation(&stored) + 1).into();
            }
            object["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
            return self.commit_update(res, &stored, object);
        }
        self.uids += 1;
        self.rv += 1;
        let meta = object["metadata"].as_object_mut().unwrap();
        if !ns.is_empty() {
            meta.insert("namespace".into(), ns.clone().into());
        }
        meta.entry("uid")
            .or_insert_with(|| format!("00000000-0000-4000-8000-{:012x}", self.uids).into());
        meta.entry("creationTimestamp")
            .or_insert_with(|| now().into());
        meta.entry("generation").or_insert(1.into());
        meta.insert("resourceVersion".into(), self.rv.to_string().into());
        self.objects
            .insert((res.clone(), ns.clone(), name), object.clone());
        self.emit(res, &ns, EventType::Added, object.clone(), None);
        if res.plural == "customresourcedefinitions" {
            self.learn_crd(&object);
        }
        object
    }

    /// The object that an update of `stored` with `body` stores: a status update takes only
    /// the status; a main-resource update keeps the stored status (when the type has a status
    /// subresource) and the server-managed metadata, and bumps `generation` on a spec change.
    pub fn prepare_update(&self, res: &Res, stored: &Value, body: Value, status: bool) -> Value {
        if status {
            let mut out = stored.clone();
            set_or_remove(&mut out, "status", body.get("status").cloned());
            return out;
        }
        let mut out = body;
        if !out["metadata"].is_object() {
            out["metadata"] = json!({});
        }
        if self.has_status(res) {
            set_or_remove(&mut out, "status", stored.get("status").cloned());
        }
        out["apiVersion"] = stored["apiVersion"].clone();
        out["kind"] = stored["kind"].clone();
        let meta = out["metadata"].as_object_mut().unwrap();
        meta.remove("managedFields");
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match stored["metadata"].get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        self.apply_defaults(res, &mut out);
        if out.get("spec") != stored.get("spec") {
            out["metadata"]["generation"] = (generation(stored) + 1).into();
        }
        out
    }

    /// Stores `new` in place of `stored`: nothing happens if nothing changed (as the API server
    /// does, no new resourceVersion and no event); an object marked for deletion whose last
    /// finalizer went is removed; otherwise it gets the next resourceVersion and a MODIFIED.
    pub fn commit_update(&mut self, res: &Res, stored: &Value, mut new: Value) -> Value {
        let ns = stored["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = stored["metadata"]["name"].as_str().unwrap().to_string();
        new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
        if &new == stored {
            return new;
        }
        if new["metadata"]["deletionTimestamp"].is_string() && !has_finalizers(&new) {
            self.objects
                .insert((res.clone(), ns.clone(), name.clone()), new);
            return self.remove(res, &ns, &name);
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.objects
            .insert((res.clone(), ns.clone(), name), new.clone());
        self.emit(
            res,
            &ns,
            EventType::Modified,
            new.clone(),
            Some(stored.clone()),
        );
        new
    }

    /// Removes an object that exists, with a DELETED event.
    pub fn remove(&mut self, res: &Res, ns: &str, name: &str) -> Value {
        let mut object = self
            .objects
            .remove(&(res.clone(), ns.into(), name.into()))
            .unwrap();
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.emit(res, ns, EventType::Deleted, object.clone(), None);
        object
    }

    fn emit(&mut self, res: &Res, ns: &str, kind: EventType, object: Value, old: Option<Value>) {
        let event = Arc::new(Event {
            rv: self.rv,
            res: res.clone(),
            namespace: ns.into(),
            kind,
            object,
            old,
        });
        self.history.push(event.clone());
        self.watchers.retain(|tx| tx.send(event.clone()).is_ok());
    }

    /// Runs the Deployment controller after a write of a Deployment or ReplicaSet in `ns`
    /// (`None`: anywhere), over that namespace only: a fake with thousands of Deployments
    /// (`vigil bench controller`) then stays fast. Replicas still waiting to be ready
    /// elsewhere stay pending for the ticker.
    fn after_write(&mut self, res: &Res, ns: Option<&str>) {
        if self.options.deployment_controller
            && (*res == Res::deployments() || *res == Res::replicasets())
        {
            let pending = super::deployments::reconcile_in(self, ns);
            match ns {
                Some(ns) if pending => {
                    self.pending_namespaces.insert(ns.to_string());
                }
                Some(ns) => {
                    self.pending_namespaces.remove(ns);
                }
                None => self.pending_ready = pending,
            }
        }
    }

    /// Defaults the API server fills in (only those the fake's users rely on).
    fn apply_defaults(&self, res: &Res, object: &mut Value) {
        if *res == Res::deployments()
            && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.entry("replicas").or_insert(1.into());
        }
    }

    /// Registers the kinds (and status subresources) a CustomResourceDefinition declares.
    fn learn_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let (Some(group), Some(plural), Some(kind)) = (
            spec["group"].as_str(),
            spec["names"]["plural"].as_str(),
            spec["names"]["kind"].as_str(),
        ) else {
            return;
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let strings = |key: &str| -> Vec<String> {
            let names = spec["names"][key].as_array().into_iter().flatten();
            names.filter_map(|n| n.as_str().map(String::from)).collect()
        };
        let info = KindInfo {
            kind: kind.into(),
            namespaced,
            singular: spec["names"]["singular"].as_str().map(String::from),
            short_names: strings("shortNames"),
            categories: strings("categories"),
        };
        for version in spec["versions"].as_array().into_iter().flatten() {
            if let Some(v) = version["name"].as_str() {
                // The CRD's names win over a kind learnt from an object or a test.
                self.kinds.insert(Res::new(group, v, plural), info.clone());
            }
            if version["subresources"]["status"].is_object() {
                self.crd_status.insert((group.into(), plural.into()));
            }
        }
    }
}

/// The validation the fake does: the types of the metadata maps and lists, and the shape of
/// a Deployment that the Deployment controller relies on.
fn validate(res: &Res, object: &Value) -> Result<(), ApiError> {
    let meta = &object["metadata"];
    for map in ["labels", "annotations"] {
        let ok = meta[map].is_null()
            || meta[map]
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
        if !ok {
            return Err(ApiError::invalid(format!(
                "metadata.{map}: must be a map of strings"
            )));
        }
    }
    for list in ["finalizers", "ownerReferences"] {
        if !(meta[list].is_null() || meta[list].is_array()) {
            return Err(ApiError::invalid(format!(
                "metadata.{list}: must be a list"
            )));
        }
    }
    if *res != Res::deployments() {
        return Ok(());
    }
    let spec = &object["spec"];
    let object_or_absent = |v: &Value| v.is_null() || v.is_object();
    let replicas = &spec["replicas"];
    let checks = [
        (
            spec["selector"].is_object(),
            "spec.selector: Required value",
        ),
        (
            object_or_absent(&spec["selector"]["matchLabels"]),
            "spec.selector.matchLabels: must be an object",
        ),
        (
            spec["template"].is_object(),
            "spec.template: Required value",
        ),
        (
            object_or_absent(&spec["template"]["metadata"])
                && object_or_absent(&spec["template"]["metadata"]["labels"]),
            "spec.template.metadata.labels: must be an object",
        ),
        (
            replicas.is_null() || replicas.as_u64().is_some(),
            "spec.replicas: must be a non-negative integer",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, problem)) => Err(ApiError::invalid(format!(
            "Deployment.apps is invalid: {problem}"
        ))),
        None => Ok(()),
    }
}

fn check_object(body: &Value) -> Result<(), ApiError> {
    if body.is_object() && body.get("metadata").is_none_or(Value::is_object) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body must be a JSON object with an object metadata",
        ))
    }
}

/// 409 if `body` names a resourceVersion other than the stored one.
fn check_resource_version(
    res: &Res,
    name: &str,
    stored: &Value,
    body: &Value,
) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if !rv.is_empty() && Some(rv) != stored["metadata"]["resourceVersion"].as_str() =>
        {
            Err(ApiError::conflict(res, name))
        }
        _ => Ok(()),
    }
}

/// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of \
             lower case alphanumeric characters, '-' or '.'"
        )))
    }
}

fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or(1)
}

fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) => map.insert(field.into(), v),
            None => map.remove(field),
        };
    }
}

/// The current time as the API server writes timestamps.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Five characters for `generateName`, derived from a counter (deterministic per run).
fn random_suffix(seed: u64) -> String {
    safe_encode(fnv1a(&seed.to_le_bytes(), 0xcbf2_9ce4_8422_2325), 5)
}

/// FNV-1a 64-bit, continuing from `state`.
pub fn fnv1a(bytes: &[u8], mut state: u64) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    state
}

/// `len` characters of the alphabet Kubernetes uses for generated names (no vowels).
pub fn safe_encode(mut n: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
