//! The HTTP side of the fake API server: URL routing, the REST verbs, watch streams, fault
//! injection, the request log and a minimal discovery for `kubectl`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use super::chaos::{ChaosState, Fate, WatchFate};
use super::select::Selector;
use super::store::{ApiError, Event, EventType, PatchType, Res, Store};

/// One HTTP request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw query string ("" if none).
    pub query: String,
}

impl RequestRecord {
    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// The resource plural the request addressed, if it addressed a resource.
    pub fn plural(&self) -> Option<String> {
        match route(&self.path) {
            Route::Object(target) => Some(target.res.plural),
            _ => None,
        }
    }
}

/// A fault to inject: the next `remaining` matching requests fail with `code`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Methods that match (upper case); `*` matches any.
    pub methods: Vec<String>,
    pub plural: String,
    /// The subresource that matches (`None`: the main resource).
    pub subresource: Option<String>,
    pub code: u16,
    pub remaining: usize,
}

/// State shared by the HTTP handlers and the [`super::FakeKube`] handle.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Arc<Mutex<Vec<Fault>>>,
    /// Seeded random faults (none until [`super::FakeKube::chaos`] sets their chances).
    pub chaos: Arc<Mutex<ChaosState>>,
    pub requests: Mutex<Vec<RequestRecord>>,
    /// Whether `requests` keeps every request (see [`super::Options::log_requests`]).
    pub log_requests: bool,
    /// Requests by client (the [`CLIENT_HEADER`], "" without it) and [`verb`].
    pub counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Called after each write that succeeded, before its answer is sent.
    pub on_write: Mutex<Option<WriteHook>>,
    pub addr: SocketAddr,
}

/// A test's hook on the fake's writes (see [`super::FakeKube::on_write`]).
pub type WriteHook = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// The request header that names a client in the request counts: a benchmark's own requests
/// (setting up, starting releases) are then told from the controller's.
pub const CLIENT_HEADER: &str = "x-fake-kube-client";

/// The Kubernetes verb of a request, as API server audit logs and metrics name them: `get`,
/// `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; `discovery`
/// for the discovery URLs, `other` for the rest.
pub fn verb(method: &Method, path: &str, query: &str) -> &'static str {
    let Route::Object(target) = route(path) else {
        return if *method == Method::GET {
            "discovery"
        } else {
            "other"
        };
    };
    let watching = query
        .split('&')
        .any(|pair| matches!(pair, "watch=true" | "watch=1"));
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

/// Where a URL path points.
enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Object(Target),
    Unknown,
}

/// A resource URL: type, namespace, object name and subresource.
struct Target {
    res: Res,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", v] => Route::Resources(String::new(), (*v).into()),
        ["apis", g] => Route::Group((*g).into()),
        ["apis", g, v] => Route::Resources((*g).into(), (*v).into()),
        ["api", v, rest @ ..] => target("", v, rest),
        ["apis", g, v, rest @ ..] => target(g, v, rest),
        _ => Route::Unknown,
    }
}

fn target(group: &str, version: &str, rest: &[&str]) -> Route {
    let (ns, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Route::Unknown,
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Route::Unknown,
    };
    Route::Object(Target {
        res: Res::new(group, version, plural),
        ns,
        name,
        sub,
    })
}

fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.status())
}

/// The single handler: every request goes through here.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(control) = uri.path().strip_prefix(CONTROL_PREFIX) {
        return control_response(&shared, &method, control, &uri);
    }
    let client = headers
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let verb = verb(&method, uri.path(), uri.query().unwrap_or_default());
    let fate = chaos_fate(&shared, &client, verb, &uri);
    *lock(&shared.counts).entry((client, verb)).or_default() += 1;
    if shared.log_requests {
        lock(&shared.requests).push(RequestRecord {
            method: method.to_string(),
            path: uri.path().into(),
            query: uri.query().unwrap_or_default().into(),
        });
    }
    let query = match Query::<HashMap<String, String>>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let watch_fate = match fate {
        None => WatchFate::default(),
        Some((Fate::Answer, watch_fate)) => watch_fate,
        Some((Fate::Status(code, retry_after), _)) => {
            return chaos_response(code, retry_after);
        }
        Some((Fate::Hold(hold), _)) => {
            tokio::time::sleep(hold).await;
            return chaos_response(504, None);
        }
    };
    let result = match route(uri.path()) {
        Route::Object(target) => {
            if let Some(code) = take_fault(&shared, &method, &target) {
                Err(ApiError::new(code, "injected fault"))
            } else {
                resource(
                    &shared, &method, &target, &query, &headers, &body, watch_fate,
                )
            }
        }
        Route::Unknown => Err(ApiError::new(
            404,
            "the server could not find the requested resource",
        )),
        _ if method != Method::GET => Err(ApiError::new(405, "method not allowed")),
        discovery => Ok(Reply::Json(200, self::discovery(&shared, discovery))),
    };
    if let Ok(Reply::Json(code, _)) = &result
        && *code < 300
        && matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    {
        // The hook runs once the store has the write and before the client hears of it.
        let hook = lock(&shared.on_write).clone();
        if let Some(hook) = hook {
            hook(&RequestRecord {
                method: method.to_string(),
                path: uri.path().into(),
                query: uri.query().unwrap_or_default().into(),
            });
        }
    }
    match result {
        Ok(Reply::Json(code, value)) => json_response(code, &value),
        Ok(Reply::Stream(response)) => response,
        Err(e) => error_response(&e),
    }
}

enum Reply {
    Json(u16, Value),
    Stream(Response),
}

/// The random fault a request to a resource meets (`None`: a spared client, or not a
/// resource URL), with its watch's fate when it is a watch.
fn chaos_fate(shared: &Shared, client: &str, verb: &str, uri: &Uri) -> Option<(Fate, WatchFate)> {
    if !matches!(route(uri.path()), Route::Object(_)) {
        return None;
    }
    let mut chaos = lock(&shared.chaos);
    if chaos.config.spared.iter().any(|c| c == client) {
        return None;
    }
    let fate = chaos.request();
    if verb != "watch" || fate != Fate::Answer {
        return Some((fate, WatchFate::default()));
    }
    let query = uri.query().unwrap_or_default();
    let from_version = query.split('&').any(|pair| {
        pair.strip_prefix("resourceVersion=")
            .is_some_and(|rv| !rv.is_empty() && rv != "0")
    });
    let resuming = from_version && !query.contains("sendInitialEvents=true");
    Some((fate, chaos.watch(resuming)))
}

/// The answer of an injected 500, 429 (with `Retry-After`) or 504, as an API server
/// sends them.
fn chaos_response(code: u16, retry_after: Option<u64>) -> Response {
    let message = match code {
        429 => "injected fault: too many requests, please try again later",
        504 => "injected fault: the request did not complete within the allowed duration",
        _ => "injected fault: an internal error occurred",
    };
    let mut status = ApiError::new(code, message).status();
    if let Some(seconds) = retry_after {
        status["details"] = json!({"retryAfterSeconds": seconds});
    }
    let mut response = json_response(code, &status);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    response
}

/// Consumes one use of the first fault matching the request, returning its status code.
fn take_fault(shared: &Shared, method: &Method, target: &Target) -> Option<u16> {
    let mut faults = lock(&shared.faults);
    let fault = faults.iter_mut().find(|f| {
        f.remaining > 0
            && f.plural == target.res.plural
            && f.subresource == target.sub
            && f.methods.iter().any(|m| m == "*" || m == method.as_str())
    })?;
    fault.remaining -= 1;
    let code = fault.code;
    faults.retain(|f| f.remaining > 0);
    Some(code)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// The REST verbs on a resource URL.
fn resource(
    shared: &Shared,
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    watch_fate: WatchFate,
) -> Result<Reply, ApiError> {
    let res = &target.res;
    let mut store = lock(&shared.store);
    let status = match target.sub.as_deref() {
        None => false,
        Some("status") if store.has_status(res) => true,
        Some(sub) => {
            return Err(ApiError::new(
                404,
                format!("the server could not find the subresource {sub:?}"),
            ));
        }
    };
    if target.ns.is_none()
        && (target.name.is_some() || *method != Method::GET)
        && store.is_namespaced(res) == Some(true)
    {
        return Err(ApiError::new(
            404,
            "the server could not find the requested resource (no namespace given)",
        ));
    }
    let ns = target.ns.as_deref().unwrap_or_default();
    let selector = Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)?;
    let ok = |value: Value| Ok(Reply::Json(200, value));
    match (method.as_str(), target.name.as_deref()) {
        ("GET", Some(name)) => store
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))
            .and_then(ok),
        ("GET", None) if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
            watch(
                &mut store,
                target,
                query,
                selector,
                (watch_fate, shared.chaos.clone()),
            )
            .map(Reply::Stream)
        }
        ("GET", None) => ok(list(&store, target, query, &selector)?),
        ("POST", None) if !status => {
            let created = store.create(res, ns, parse_json(body)?)?;
            Ok(Reply::Json(201, created))
        }
        ("PUT", Some(name)) => ok(store.replace(res, ns, name, parse_json(body)?, status)?),
        ("PATCH", Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
                ApiError::new(
                    415,
                    format!("the media type {content_type:?} is not supported"),
                )
            })?;
            let existed = store.get(res, ns, name).is_some();
            let out = store.patch(res, ns, name, patch_type, body, status)?;
            Ok(Reply::Json(if existed { 200 } else { 201 }, out))
        }
        ("DELETE", Some(name)) if !status => ok(store.delete(res, ns, name, &parse_json(body)?)?),
        ("DELETE", None) => {
            let options = parse_json(body)?;
            let names: Vec<(String, String)> = store
                .list(res, target.ns.as_deref())
                .into_iter()
                .filter(|o| selector.matches(o))
                .map(|o| {
                    let meta = &o["metadata"];
                    let ns = meta["namespace"].as_str().unwrap_or_default();
                    let name = meta["name"].as_str().unwrap_or_default();
                    (ns.to_string(), name.to_string())
                })
                .collect();
            let mut items = Vec::new();
            for (ns, name) in names {
                items.push(store.delete(res, &ns, &name, &options)?);
            }
            ok(list_object(&store, res, items, None))
        }
        _ => Err(ApiError::new(405, format!("{method} is not allowed here"))),
    }
}

fn list_object(
    store: &Store,
    res: &Res,
    items: Vec<Value>,
    more: Option<(String, usize)>,
) -> Value {
    let mut metadata = json!({"resourceVersion": store.resource_version().to_string()});
    if let Some((token, remaining)) = more {
        metadata["continue"] = token.into();
        metadata["remainingItemCount"] = remaining.into();
    }
    json!({
        "kind": format!("{}List", store.kind_of(res)),
        "apiVersion": res.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// LIST with selectors and `limit`/`continue` paging (the continue token is the last
/// returned `namespace/name`).
fn list(
    store: &Store,
    target: &Target,
    query: &HashMap<String, String>,
    selector: &Selector,
) -> Result<Value, ApiError> {
    let after = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))
        })
        .transpose()?;
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request("invalid limit"))?,
        None => 0,
    };
    let key = |o: &Value| {
        let meta = &o["metadata"];
        (
            meta["namespace"].as_str().unwrap_or_default().to_string(),
            meta["name"].as_str().unwrap_or_default().to_string(),
        )
    };
    let matching: Vec<&Value> = store
        .list(&target.res, target.ns.as_deref())
        .into_iter()
        .filter(|o| selector.matches(o))
        .filter(|o| after.as_ref().is_none_or(|a| key(o) > *a))
        .collect();
    let take = if limit == 0 {
        matching.len()
    } else {
        limit.min(matching.len())
    };
    let more = (take < matching.len()).then(|| {
        let (ns, name) = key(matching[take - 1]);
        (format!("{ns}/{name}"), matching.len() - take)
    });
    let items = matching[..take].iter().map(|&o| o.clone()).collect();
    Ok(list_object(store, &target.res, items, more))
}

/// The watch event line for a store event, if the watch sees it: objects that enter the
/// selection are ADDED, those that leave it DELETED.
fn watch_line(event: &Event, res: &Res, ns: Option<&str>, selector: &Selector) -> Option<Bytes> {
    if event.res != *res || ns.is_some_and(|ns| ns != event.namespace) {
        return None;
    }
    let now = selector.matches(&event.object);
    let before = event.old.as_ref().map(|o| selector.matches(o));
    let kind = match (event.kind, before, now) {
        (EventType::Modified, Some(true), false) => "DELETED",
        (EventType::Modified, Some(false), true) => "ADDED",
        (kind, _, true) => kind.as_str(),
        _ => return None,
    };
    Some(line(kind, &event.object))
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// WATCH: a chunked stream of JSON lines. Without a resourceVersion (or with "0", or with
/// `sendInitialEvents=true`) it starts with an ADDED for every current object; otherwise it
/// replays the history after the given resourceVersion (an ERROR 410 if that was compacted).
/// Then live events, until `timeoutSeconds` (default 30 minutes). A random fault may answer
/// a resuming watch 410 at once, or cut the stream early (an error ends the chunked body,
/// so the client sees a broken connection, not a clean end).
fn watch(
    store: &mut Store,
    target: &Target,
    query: &HashMap<String, String>,
    selector: Selector,
    (fate, chaos): (WatchFate, Arc<Mutex<ChaosState>>),
) -> Result<Response, ApiError> {
    let since = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let initial_events = query.get("sendInitialEvents").map(String::as_str) == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800);
    let (res, ns) = (target.res.clone(), target.ns.clone());
    let mut lines = Vec::new();
    let from = if since.is_none() || initial_events {
        for object in store.list(&res, ns.as_deref()) {
            if selector.matches(object) {
                lines.push(line("ADDED", object));
            }
        }
        if initial_events {
            let bookmark = json!({
                "kind": store.kind_of(&res),
                "apiVersion": res.api_version(),
                "metadata": {
                    "resourceVersion": store.resource_version().to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            });
            lines.push(line("BOOKMARK", &bookmark));
        }
        store.resource_version()
    } else {
        since.unwrap_or_default()
    };
    let watched = if fate.expire {
        Err(ApiError::new(
            410,
            format!("too old resource version: {from} (injected fault)"),
        ))
    } else {
        store.watch(from)
    };
    let receiver = match watched {
        Ok((past, receiver)) => {
            lines.extend(
                past.iter()
                    .filter_map(|e| watch_line(e, &res, ns.as_deref(), &selector)),
            );
            Some(receiver)
        }
        Err(gone) => {
            lines.push(line("ERROR", &gone.status()));
            None
        }
    };
    let live_ok = receiver.is_some();
    let live = futures::stream::unfold(receiver, |receiver| async move {
        let mut receiver = receiver?;
        let event = receiver.recv().await?;
        Some((event, Some(receiver)))
    })
    .filter_map(move |event| {
        futures::future::ready(watch_line(&event, &res, ns.as_deref(), &selector))
    });
    let timeout = Duration::from_secs(timeout);
    let cut = fate.drop_after.filter(|after| *after < timeout && live_ok);
    let stream = futures::stream::iter(lines)
        .chain(live)
        .map(Ok::<_, std::io::Error>);
    let stream = match cut {
        None => stream.take_until(tokio::time::sleep(timeout)).left_stream(),
        Some(after) => stream
            .take_until(tokio::time::sleep(after))
            .chain(futures::stream::once(async move {
                lock(&chaos).dropped();
                Err(std::io::Error::other(
                    "the fake API server cut this watch (injected fault)",
                ))
            }))
            .right_stream(),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Short names `kubectl` accepts for well-known resources.
fn short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "deployments" => &["deploy"],
        "replicasets" => &["rs"],
        "services" => &["svc"],
        "configmaps" => &["cm"],
        "ingresses" => &["ing"],
        "namespaces" => &["ns"],
        "pods" => &["po"],
        "events" => &["ev"],
        "customresourcedefinitions" => &["crd", "crds"],
        _ => &[],
    }
}

/// Discovery documents, from the resource types the store knows.
fn discovery(shared: &Shared, route: Route) -> Value {
    let store = lock(&shared.store);
    let kinds = store.kinds();
    let mut group_versions: Vec<(String, String)> = kinds
        .iter()
        .filter(|(r, _)| !r.group.is_empty())
        .map(|(r, _)| (r.group.clone(), r.version.clone()))
        .collect();
    group_versions.dedup();
    let api_group = |group: &str| {
        let versions: Vec<Value> = group_versions
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
            .collect();
        json!({"name": group, "versions": versions, "preferredVersion": versions.first()})
    };
    match route {
        Route::Version => json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
            "platform": "linux/amd64",
        }),
        Route::CoreVersions => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}
            ],
        }),
        Route::Groups => {
            let mut names: Vec<&String> = group_versions.iter().map(|(g, _)| g).collect();
            names.dedup();
            let groups: Vec<Value> = names.into_iter().map(|g| api_group(g)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        Route::Group(group) => {
            let mut doc = api_group(&group);
            doc["kind"] = "APIGroup".into();
            doc["apiVersion"] = "v1".into();
            doc
        }
        Route::Resources(group, version) => {
            let mut resources = Vec::new();
            for (res, info) in kinds
                .iter()
                .filter(|(r, _)| r.group == group && r.version == version)
            {
                let short: Vec<&str> = match info.short_names.is_empty() {
                    true => short_names(&res.plural).to_vec(),
                    false => info.short_names.iter().map(String::as_str).collect(),
                };
                let singular = info.singular.clone();
                resources.push(json!({
                    "name": res.plural,
                    "singularName": singular.unwrap_or_else(|| info.kind.to_lowercase()),
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "shortNames": short,
                    "categories": info.categories,
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch",
                              "update", "watch"],
                }));
                if store.has_status(res) {
                    resources.push(json!({
                        "name": format!("{}/status", res.plural),
                        "singularName": "",
                        "namespaced": info.namespaced,
                        "kind": info.kind,
                        "verbs": ["get", "patch", "update"],
                    }));
                }
            }
            let group_version = Res::new(&group, &version, "").api_version();
            json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": resources,
            })
        }
        Route::Object(_) | Route::Unknown => json!({}),
    }
}

/// A lock that a panicked holder does not poison: the fake's state stays usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The URLs of the fake's own control API (not Kubernetes'): neither counted nor logged.
pub const CONTROL_PREFIX: &str = "/_fake/";

/// The control API, for a process that runs the fake in another process:
/// - `GET /_fake/counts`: the requests by client and verb, `{"CLIENT": {"VERB": N}}`;
/// - `GET /_fake/objects/{group}/{version}/{plural}?fields=a.b,c`: the objects of a type now,
///   `[{"namespace", "name", "fields": [a.b, c]}]`;
/// - `GET /_fake/history/{group}/{version}/{plural}?fields=a.b,c`: every state each object of
///   the type went through, oldest first, as `[{"namespace", "name", "states": [[a.b, c] or
///   null after a delete]}]` (group `core` for the core group), projected on the fields so
///   that a long history stays small.
fn control_response(shared: &Shared, method: &Method, path: &str, uri: &Uri) -> Response {
    if *method != Method::GET {
        return error_response(&ApiError::new(405, "the control API answers GET only"));
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["counts"] => {
            let mut out = serde_json::Map::new();
            for ((client, verb), n) in lock(&shared.counts).iter() {
                let entry = out.entry(client.clone()).or_insert_with(|| json!({}));
                entry[*verb] = (*n).into();
            }
            json_response(200, &Value::Object(out))
        }
        ["history", group, version, plural] => {
            let (res, fields) = match type_and_fields(group, version, plural, uri) {
                Ok(found) => found,
                Err(e) => return error_response(&e),
            };
            let history = lock(&shared.store).projected_history(&res, &fields);
            let out: Vec<Value> = history
                .into_iter()
                .map(|((namespace, name), states)| {
                    json!({"namespace": namespace, "name": name, "states": states})
                })
                .collect();
            json_response(200, &Value::Array(out))
        }
        ["objects", group, version, plural] => {
            let (res, fields) = match type_and_fields(group, version, plural, uri) {
                Ok(found) => found,
                Err(e) => return error_response(&e),
            };
            let store = lock(&shared.store);
            let out: Vec<Value> = store
                .list(&res, None)
                .into_iter()
                .map(|object| {
                    let meta = &object["metadata"];
                    json!({
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "fields": project(object, &fields),
                    })
                })
                .collect();
            json_response(200, &Value::Array(out))
        }
        _ => error_response(&ApiError::new(
            404,
            "the control API has /_fake/counts, /_fake/objects/{group}/{version}/{plural} and \
             /_fake/history/{group}/{version}/{plural}",
        )),
    }
}

/// The resource type of a control URL (group `core`: the core group) and its `fields`
/// parameter: dotted paths, comma-separated.
fn type_and_fields(
    group: &str,
    version: &str,
    plural: &str,
    uri: &Uri,
) -> Result<(Res, Vec<Vec<String>>), ApiError> {
    let group = if group == "core" { "" } else { group };
    Ok((Res::new(group, version, plural), fields_of(uri)?))
}

/// The `fields` parameter of a control URL.
fn fields_of(uri: &Uri) -> Result<Vec<Vec<String>>, ApiError> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(query
        .get("fields")
        .map(|f| {
            f.split(',')
                .map(|p| p.split('.').map(str::to_string).collect())
                .collect()
        })
        .unwrap_or_default())
}

/// The values at `fields` (null where missing).
pub fn project(object: &Value, fields: &[Vec<String>]) -> Vec<Value> {
    fields
        .iter()
        .map(|path| {
            path.iter()
                .fold(object, |value, key| &value[key.as_str()])
                .clone()
        })
        .collect()
}
