//! The fake Kubernetes API server (`tests/it/common/fake_kube`) driven by the real `kube`
//! client, `kube-runtime` and `kubectl`: proof that the controller's Kubernetes I/O can be
//! tested against it.

use std::sync::Arc;
use std::time::Duration;

use crate::common::fake_kube::{FakeKube, Options, Res, template_hash};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A tiny custom resource with a status subresource (its group ends in `vigil.dev`).
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[kube(
    group = "test.vigil.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    pub observed_size: Option<i32>,
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size })
}

fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))
    .unwrap()
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Creates an object through the API, which must accept it.
async fn create<K>(api: &Api<K>, object: &K) -> K
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object).await.unwrap()
}

/// Merge-patches an object through the API, which must accept it.
async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> K
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap()
}

/// The names in a kube-runtime watcher's initial list, up to its `InitDone`.
async fn initial_names<K: Resource, S>(events: &mut S) -> Vec<String>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    loop {
        match next(events).await.unwrap() {
            watcher::Event::InitApply(object) => names.push(object.name_any()),
            watcher::Event::InitDone => return names,
            _ => {}
        }
    }
}

/// Waits for the next item of a stream, failing after 5 s.
async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("timed out waiting for a stream item")
        .expect("the stream ended")
}

#[tokio::test]
async fn crud_of_deployments_through_the_kube_client() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();

    let created = api
        .create(&pp, &deployment("web", "web:1", 2))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let (code, reason) = api_error(
        api.create(&pp, &deployment("web", "web:1", 2))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let got = api.get("web").await.unwrap();
    assert_eq!(got.spec, created.spec);
    let listed = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(
        api.list(&ListParams::default().labels("app=other"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Replace: the spec changed, so the generation grows and the resourceVersion too.
    let mut changed = got.clone();
    changed.spec.replicas = Some(4);
    let replaced = api.replace("web", &pp, &changed).await.unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    let rv = |d: &Deployment| d.resource_version().unwrap().parse::<u64>().unwrap();
    assert!(rv(&replaced) > rv(&got));

    // Merge, JSON and apply patches.
    let merged = merge(
        &api,
        "web",
        json!({"metadata": {"labels": {"tier": "front"}}}),
    )
    .await;
    assert_eq!(merged.labels()["tier"], "front");
    assert_eq!(merged.metadata.generation, Some(2), "labels are not spec");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 4},
        {"op": "replace", "path": "/spec/replicas", "value": 5},
    ]))
    .unwrap();
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.spec.replicas, Some(5));
    let applied = api
        .patch(
            "web",
            &PatchParams::apply("vigil").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "annotations": {"vigil.dev/phase": "canary"}},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.annotations()["vigil.dev/phase"], "canary");
    assert_eq!(applied.spec.replicas, Some(5));

    // Apply creates a missing object.
    let api_cm: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let cm = api_cm
        .patch(
            "settings",
            &PatchParams::apply("vigil"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["a"], "1");

    let deleted = api.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left());
    assert!(api.get_opt("web").await.unwrap().is_none());
    let (code, reason) = api_error(api.get("web").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn stale_resource_versions_are_conflicts() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let first = api.create(&pp, &widget("w", 1)).await.unwrap();
    let mut newer = first.clone();
    newer.spec.size = 2;
    api.replace("w", &pp, &newer).await.unwrap();

    let mut stale = first.clone();
    stale.spec.size = 3;
    let (code, reason) = api_error(api.replace("w", &pp, &stale).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    stale.status = Some(WidgetStatus {
        observed_size: Some(1),
    });
    let (code, _) = api_error(api.replace_status("w", &pp, &stale).await.unwrap_err());
    assert_eq!(code, 409);

    let stale_rv = first.resource_version().unwrap();
    let patch = json!({"metadata": {"resourceVersion": stale_rv}, "spec": {"size": 9}});
    let (code, _) = api_error(
        api.patch("w", &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    assert_eq!(api.get("w").await.unwrap().spec.size, 2);
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let pp = PostParams::default();
    let mut w = widget("w", 1);
    w.status = Some(WidgetStatus {
        observed_size: Some(7),
    });
    let created = api.create(&pp, &w).await.unwrap();
    assert_eq!(created.status, None, "status is not set on create");

    // Writing the status leaves spec and generation alone.
    let mut with_status = created.clone();
    with_status.spec.size = 100;
    with_status.status = Some(WidgetStatus {
        observed_size: Some(1),
    });
    let after_status = api.replace_status("w", &pp, &with_status).await.unwrap();
    assert_eq!(after_status.spec.size, 1);
    assert_eq!(after_status.status.as_ref().unwrap().observed_size, Some(1));
    assert_eq!(after_status.metadata.generation, Some(1));

    // Writing the main resource keeps the stored status; a spec change bumps generation.
    let mut main = after_status.clone();
    main.spec.size = 2;
    main.status = None;
    let after_main = api.replace("w", &pp, &main).await.unwrap();
    assert_eq!(after_main.status.as_ref().unwrap().observed_size, Some(1));
    assert_eq!(after_main.metadata.generation, Some(2));

    let patched = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedSize": 2}, "spec": {"size": 50}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().observed_size, Some(2));
    assert_eq!(patched.spec.size, 2);
    assert_eq!(patched.metadata.generation, Some(2));

    // A write that changes nothing gets no new resourceVersion.
    let again = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedSize": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(
        again.resource_version(),
        api.get("w").await.unwrap().resource_version()
    );
    assert_eq!(
        fake.get(&Res::of::<Widget>(), "default", "w").unwrap()["status"]["observedSize"],
        2
    );
}

#[tokio::test]
async fn json_patch_supports_every_op_and_a_failed_test_is_invalid() {
    let fake = FakeKube::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}
    }))
    .unwrap();
    create(&api, &cm).await;
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "add", "path": "/data/c", "value": "3"},
        {"op": "remove", "path": "/data/b"},
        {"op": "replace", "path": "/data/a", "value": "one"},
        {"op": "copy", "from": "/data/a", "path": "/data/d"},
        {"op": "move", "from": "/data/c", "path": "/data/e"},
    ]))
    .unwrap();
    let out = api
        .patch("c", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    let data = out.data.unwrap();
    assert_eq!(
        data.into_iter().collect::<Vec<_>>(),
        [("a", "one"), ("d", "one"), ("e", "3")].map(|(k, v)| (k.to_string(), v.to_string()))
    );

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "x"},
    ]))
    .unwrap();
    let (code, reason) = api_error(
        api.patch("c", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(api.get("c").await.unwrap().data.unwrap()["a"], "one");
}

#[tokio::test]
async fn bad_requests_get_status_bodies_not_panics() {
    let fake = FakeKube::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments", fake.url());
    let response = http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(status["code"], 400);

    let response = http.post(&url).body("[1, 2]").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = http
        .post(&url)
        .body(r#"{"metadata": {"name": "Not_A_Name"}, "spec": {"selector": {}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let response = http
        .patch(format!("{url}/missing"))
        .header("content-type", "application/merge-patch+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = http
        .get(format!("{url}?labelSelector=a%20in%20(b"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = http
        .get(format!("{}/nonsense", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors_and_pages() {
    let fake = FakeKube::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    for (name, tier) in [
        ("a", Some("web")),
        ("b", Some("db")),
        ("c", Some("web")),
        ("d", None),
    ] {
        let mut labels = json!({"app": "shop"});
        if let Some(tier) = tier {
            labels["tier"] = tier.into();
        }
        let cm =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        create(&api, &cm).await;
    }
    let other: Api<ConfigMap> = Api::namespaced(fake.client(), "other");
    let cm = serde_json::from_value(json!({"metadata": {"name": "a", "labels": {"tier": "web"}}}))
        .unwrap();
    create(&other, &cm).await;

    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items.iter().map(|c| c.name_any()).collect()
    };
    let with = |labels: &str| ListParams::default().labels(labels);
    assert_eq!(
        names(api.list(&with("tier=web")).await.unwrap()),
        ["a", "c"]
    );
    assert_eq!(
        names(api.list(&with("tier!=web")).await.unwrap()),
        ["b", "d"]
    );
    assert_eq!(
        names(api.list(&with("tier in (db, web),app")).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(names(api.list(&with("!tier")).await.unwrap()), ["d"]);
    assert_eq!(
        names(api.list(&with("tier notin (web)")).await.unwrap()),
        ["b", "d"]
    );
    let by_name = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(api.list(&by_name).await.unwrap()), ["b"]);

    let all: Api<ConfigMap> = Api::all(fake.client());
    let everywhere = all.list(&with("tier=web")).await.unwrap();
    assert_eq!(everywhere.items.len(), 3);
    let in_other = ListParams::default().fields("metadata.namespace=other");
    assert_eq!(all.list(&in_other).await.unwrap().items.len(), 1);

    let page = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(names(page.clone()), ["a", "b", "c"]);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(rest.clone()), ["d"]);
    assert!(rest.metadata.continue_.unwrap_or_default().is_empty());

    let raw: Value = reqwest::get(format!(
        "{}/api/v1/namespaces/default/configmaps",
        fake.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(raw["kind"], "ConfigMapList");
    assert_eq!(raw["items"][0]["kind"], "ConfigMap");
    assert_eq!(raw["items"][0]["apiVersion"], "v1");
    assert!(
        raw["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
}

#[tokio::test]
async fn raw_watch_replays_history_and_streams_changes() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let created = create(&api, &widget("w", 1)).await;
    let start = created.resource_version().unwrap();
    merge(&api, "w", json!({"spec": {"size": 2}})).await;

    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Modified(w) => assert_eq!(w.spec.size, 2),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    api.delete("w", &DeleteParams::default()).await.unwrap();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Deleted(w) => assert_eq!(w.name_any(), "w"),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // From "0": the current objects first.
    fake.put(&widget("x", 5));
    let mut from_zero = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    match next(&mut from_zero).await.unwrap() {
        WatchEvent::Added(w) => assert_eq!(w.name_any(), "x"),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // After compaction an old resourceVersion is gone.
    fake.compact();
    let mut gone = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match next(&mut gone).await.unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected ERROR 410, got {other:?}"),
    }

    // The stream ends at timeoutSeconds.
    let mut short = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    next(&mut short).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(3), short.next())
        .await
        .unwrap();
    assert!(ended.is_none());
}

#[tokio::test]
async fn label_selected_watch_sees_objects_enter_and_leave() {
    let fake = FakeKube::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
    let wp = WatchParams::default().labels("canary=true");
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    create(&api, &cm).await;
    let label = |v: Value| Patch::Merge(json!({"metadata": {"labels": {"canary": v}}}));
    api.patch("c", &PatchParams::default(), &label(json!("true")))
        .await
        .unwrap();
    api.patch("c", &PatchParams::default(), &label(Value::Null))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        next(&mut stream).await.unwrap(),
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn runtime_watcher_sees_added_modified_deleted() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &deployment("before", "a:1", 1)).await;
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();

    let initial = initial_names(&mut events).await;
    assert_eq!(initial, ["before"]);

    create(&api, &deployment("web", "a:1", 1)).await;
    merge(&api, "web", json!({"spec": {"replicas": 2}})).await;
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some((kind, _)) if *kind == "delete") {
        match next(&mut events).await.unwrap() {
            watcher::Event::Apply(d) => {
                seen.push(("apply", d.spec.replicas.unwrap_or_default()));
            }
            watcher::Event::Delete(d) => seen.push(("delete", d.spec.replicas.unwrap_or_default())),
            _ => {}
        }
    }
    // The controller's status writes show up as further applies of "web".
    assert_eq!(seen.first(), Some(&("apply", 1)));
    assert!(seen.contains(&("apply", 2)));
    assert_eq!(seen.last(), Some(&("delete", 2)));
}

#[derive(Debug)]
struct ReconcileError;

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reconcile failed")
    }
}

impl std::error::Error for ReconcileError {}

async fn reconcile_widget(w: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, ReconcileError> {
    let status = json!({"status": {"observedSize": w.spec.size}});
    api.patch_status(
        &w.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .map_err(|_| ReconcileError)?;
    Ok(Action::await_change())
}

#[tokio::test]
async fn runtime_controller_reconciles_a_custom_resource() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    // The first status write conflicts: the controller must retry.
    fake.faults()
        .fail_next("PATCH", "widgets", Some("status"), 409, 1);
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            reconcile_widget,
            |_, _, _| Action::requeue(Duration::from_millis(50)),
            Arc::new(api.clone()),
        )
        .for_each(|_| async {});
    let running = tokio::spawn(controller);

    create(&api, &widget("w", 3)).await;
    let observed = |fake: &FakeKube| {
        fake.get_as::<Widget>("default", "w")
            .and_then(|w| w.status)
            .and_then(|s| s.observed_size)
    };
    fake.wait_until("the status shows size 3", |f| observed(f) == Some(3))
        .await;
    merge(&api, "w", json!({"spec": {"size": 4}})).await;
    fake.wait_until("the status shows size 4", |f| observed(f) == Some(4))
        .await;
    let status_writes = fake
        .writes()
        .into_iter()
        .filter(|r| r.path.ends_with("/widgets/w/status"))
        .count();
    assert!(
        status_writes >= 3,
        "one conflict and two good writes: {status_writes}"
    );
    running.abort();
}

#[tokio::test]
async fn injected_faults_fail_the_next_matching_requests() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    create(&api, &widget("w", 1)).await;
    fake.faults()
        .fail_next("PUT|PATCH", "widgets", Some("status"), 409, 2);
    fake.faults().fail_next("GET", "widgets", None, 500, 1);

    let status = Patch::Merge(json!({"status": {"observedSize": 1}}));
    for _ in 0..2 {
        let (code, reason) = api_error(
            api.patch_status("w", &PatchParams::default(), &status)
                .await
                .unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
    }
    // Writes to the main resource were not affected, and the third status write succeeds.
    merge(&api, "w", json!({"spec": {"size": 2}})).await;
    api.patch_status("w", &PatchParams::default(), &status)
        .await
        .unwrap();

    let (code, reason) = api_error(api.get("w").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    assert_eq!(api.get("w").await.unwrap().spec.size, 2);
}

#[tokio::test]
async fn request_log_shows_which_resources_were_written() {
    let fake = FakeKube::start().await;
    fake.put(&deployment("web", "web:1", 1));
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let deployments: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &widget("w", 1)).await;
    deployments.get("web").await.unwrap();
    deployments
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();

    let requests = fake.requests();
    assert!(requests.iter().any(|r| r.method == "GET"
        && r.path == "/apis/apps/v1/namespaces/default/deployments"
        && r.query.contains("labelSelector=app%3Dweb")));
    let written: Vec<String> = fake.writes().iter().filter_map(|r| r.plural()).collect();
    assert_eq!(written, ["widgets"]);
    assert!(!fake.writes().iter().any(|r| matches!(
        r.plural().as_deref(),
        Some("deployments" | "services" | "ingresses")
    )));
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let mut w = widget("w", 1);
    w.metadata.finalizers = Some(vec!["test.vigil.dev/cleanup".into()]);
    create(&api, &w).await;

    let marked = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(api.get_opt("w").await.unwrap().is_some());
    merge(&api, "w", json!({"metadata": {"finalizers": null}})).await;
    assert!(api.get_opt("w").await.unwrap().is_none());
}

fn replicasets(fake: &FakeKube) -> Vec<ReplicaSet> {
    fake.list(&Res::replicasets(), Some("default"))
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

#[tokio::test]
async fn deployment_controller_rolls_replicasets_by_pod_template_hash() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    let created = create(&api, &deployment("web", "web:1", 3)).await;

    let d = api.get("web").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.available_replicas,
            status.updated_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    let condition = |d: &Deployment, kind: &str| {
        let conditions = d.status.as_ref().unwrap().conditions.clone().unwrap();
        let c = conditions
            .into_iter()
            .find(|c| c.type_.as_deref() == Some(kind))
            .unwrap();
        (c.status.unwrap(), c.reason.unwrap())
    };
    let d = api.get("web").await.unwrap();
    assert_eq!(
        condition(&d, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        condition(&d, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );

    let template = serde_json::to_value(&created.spec.template).unwrap();
    let hash = template_hash(&template);
    assert_eq!(hash.len(), 10);
    let sets = replicasets(&fake);
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.labels()["pod-template-hash"], hash);
    assert_eq!(rs.labels()["app"], "web");
    let spec = &rs.spec;
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(template_labels["pod-template-hash"], hash);
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Deployment", "web", Some(true))
    );
    assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());
    assert_eq!(rs.status.as_ref().unwrap().ready_replicas, Some(3));

    // A new image: a second ReplicaSet takes all replicas, the first is scaled to zero.
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}});
    merge(&api, "web", image).await;
    let sets = replicasets(&fake);
    assert_eq!(sets.len(), 2);
    let replicas: Vec<(String, i32)> = sets
        .iter()
        .map(|rs| {
            (
                rs.annotations()["deployment.kubernetes.io/revision"].clone(),
                rs.spec.replicas.unwrap(),
            )
        })
        .collect();
    assert!(
        replicas.contains(&("1".into(), 0)) && replicas.contains(&("2".into(), 3)),
        "{replicas:?}"
    );
    let status = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.observed_generation, status.updated_replicas),
        (Some(2), Some(3))
    );

    // Deleting the Deployment removes its ReplicaSets.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(replicasets(&fake).is_empty());
}

#[tokio::test]
async fn paused_deployment_scales_but_does_not_roll() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &deployment("web", "web:1", 2)).await;
    let first = replicasets(&fake)[0].name_any();
    merge(&api, "web", json!({"spec": {"paused": true}})).await;
    let image = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}});
    merge(&api, "web", image).await;

    let sets = replicasets(&fake);
    assert_eq!(sets.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(sets[0].name_any(), first);
    assert_eq!(sets[0].spec.replicas, Some(5));
    let d = api.get("web").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.updated_replicas
        ),
        (Some(5), Some(5), Some(0))
    );
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));

    merge(&api, "web", json!({"spec": {"paused": false}})).await;
    let sets = replicasets(&fake);
    assert_eq!(sets.len(), 2, "resuming rolls out the new template");
    let status = api.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.replicas, status.updated_replicas),
        (Some(5), Some(5))
    );
}

#[tokio::test]
async fn readiness_delay_makes_replicas_ready_later() {
    let fake = FakeKube::start_with(Options {
        ready_delay: Duration::from_millis(150),
        ..Options::default()
    })
    .await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &deployment("web", "web:1", 3)).await;
    let status = api.get("web").await.unwrap().status.unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(0)));
    assert_eq!(status.unavailable_replicas, Some(3));
    let ready = |f: &FakeKube| {
        f.get_as::<Deployment>("default", "web")
            .and_then(|d| d.status?.ready_replicas)
            == Some(3)
    };
    fake.wait_until("3 replicas are ready", ready).await;
}

#[tokio::test]
async fn events_recorder_publishes_events() {
    let fake = FakeKube::start().await;
    let deployment = fake.put(&deployment("web", "web:1", 1));
    let recorder = Recorder::new(
        fake.client(),
        Reporter {
            controller: "vigil".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "CanaryStarted".into(),
        note: Some("canary at 10%".into()),
        action: "Rollout".into(),
        secondary: None,
    };
    let reference = deployment.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let events: Api<K8sEvent> = Api::default_namespaced(fake.client());
    let listed = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items.len(),
        1,
        "the repeat is a series on the same event"
    );
    let e = &listed.items[0];
    assert_eq!(e.reason.as_deref(), Some("CanaryStarted"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("web"));
    assert!(e.series.is_some());
}

#[tokio::test]
async fn vigils_recorder_folds_consecutive_repeats_for_six_minutes_of_its_clock() {
    let fake = FakeKube::start().await;
    let deployment = fake.put(&deployment("web", "web:1", 1));
    // An hour of the clock is a real second: six minutes pass in 0.1 s.
    let clock = vigil::cluster::clock::Clock::accelerated(chrono::Utc::now(), 3600.0);
    let recorder = vigil::cluster::events::Recorder::new(
        fake.client(),
        Reporter {
            controller: "vigil".into(),
            instance: Some("vigil-0".into()),
        },
        clock,
    );
    let event = |reason: &str, note: &str| Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Rollout".into(),
        secondary: None,
    };
    let reference = deployment.object_ref(&());
    let events: Api<K8sEvent> = Api::default_namespaced(fake.client());
    let counts = || async {
        let mut listed = events.list(&ListParams::default()).await.unwrap().items;
        listed.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        listed
            .iter()
            .map(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count);
                (e.reason.clone().unwrap(), count)
            })
            .collect::<Vec<_>>()
    };
    let error = event("AnalysisError", "Prometheus is down");

    recorder.publish(&error, &reference).await.unwrap();
    recorder.publish(&error, &reference).await.unwrap();
    recorder.publish(&error, &reference).await.unwrap();
    assert_eq!(counts().await, [("AnalysisError".to_string(), 3)]);
    let first = &events.list(&ListParams::default()).await.unwrap().items[0];
    assert_eq!(first.reporting_controller.as_deref(), Some("vigil"));
    assert_eq!(first.reporting_instance.as_deref(), Some("vigil-0"));
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.note.as_deref(), Some("Prometheus is down"));
    assert_eq!(
        first.regarding.as_ref().unwrap().name.as_deref(),
        Some("web")
    );

    // Another event in between: the next error is an Event of its own.
    recorder
        .publish(&event("StepAdvanced", "step 2"), &reference)
        .await
        .unwrap();
    recorder.publish(&error, &reference).await.unwrap();
    assert_eq!(
        counts().await,
        [
            ("AnalysisError".to_string(), 3),
            ("StepAdvanced".to_string(), 1),
            ("AnalysisError".to_string(), 1)
        ]
    );

    // Past six minutes of the clock: a new Event, not a series.
    tokio::time::sleep(Duration::from_millis(200)).await;
    recorder.publish(&error, &reference).await.unwrap();
    assert_eq!(counts().await.len(), 4);

    // The Event the series would count is gone: recorded anew.
    let latest = counts().await.len();
    let mut listed = events.list(&ListParams::default()).await.unwrap().items;
    listed.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    let gone = listed[latest - 1].name_any();
    events
        .delete(&gone, &DeleteParams::default())
        .await
        .unwrap();
    recorder.publish(&error, &reference).await.unwrap();
    let now = counts().await;
    assert_eq!(now.len(), 4);
    assert_eq!(now[3], ("AnalysisError".to_string(), 1));

    // One entry per object, dropped when the object is forgotten.
    assert_eq!(recorder.len(), 1);
    recorder.forget(&reference);
    assert!(recorder.is_empty());
}

#[tokio::test]
async fn kubeconfig_works_for_kube_and_kubectl() {
    let fake = FakeKube::start().await;
    fake.put(&deployment("web", "web:1", 2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path);

    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let api: Api<Deployment> = Api::default_namespaced(client);
    assert_eq!(api.get("web").await.unwrap().name_any(), "web");

    let run = |args: &'static [&'static str]| {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&path)
                .args(args)
                .output()
                .expect("kubectl is needed for this test (it is preinstalled on the project's machines)");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "kubectl {args:?} failed: {stderr}");
            assert!(stderr.is_empty(), "kubectl {args:?} complained: {stderr}");
            println!("kubectl {args:?}:\n{stdout}");
            stdout
        })
    };
    let table = run(&["get", "deployments", "-n", "default"]).await.unwrap();
    assert!(table.contains("web"), "{table}");
    let names = run(&["get", "deploy", "-o", "name"]).await.unwrap();
    assert_eq!(names.trim(), "deployment.apps/web");
    let json = run(&["get", "replicasets", "-o", "json"]).await.unwrap();
    let list: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["items"][0]["spec"]["replicas"], 2);
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_bookmark() {
    let fake = FakeKube::start().await;
    fake.put(&widget("a", 1));
    fake.put(&widget("b", 2));
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(api.clone(), config).boxed();
    let initial = initial_names(&mut events).await;
    assert_eq!(initial, ["a", "b"]);
    merge(&api, "a", json!({"spec": {"size": 10}})).await;
    match next(&mut events).await.unwrap() {
        watcher::Event::Apply(w) => assert_eq!(w.spec.size, 10),
        other => panic!("expected an apply, got {other:?}"),
    }
    let watches = fake.requests();
    assert!(
        watches
            .iter()
            .any(|r| r.query.contains("sendInitialEvents=true"))
    );
}

#[tokio::test]
async fn cluster_scoped_objects_generate_name_and_preconditions() {
    let fake = FakeKube::start().await;
    let namespaces: Api<Namespace> = Api::all(fake.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "canary"}})).unwrap();
    let created = create(&namespaces, &ns).await;
    assert_eq!(created.namespace(), None);
    assert_eq!(namespaces.get("canary").await.unwrap().name_any(), "canary");
    assert!(fake.get(&Res::core("namespaces"), "", "canary").is_some());

    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "canary");
    let template: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "run-"}})).unwrap();
    let first = create(&api, &template).await;
    let second = create(&api, &template).await;
    assert!(first.name_any().starts_with("run-") && first.name_any().len() > 4);
    assert_ne!(first.name_any(), second.name_any());

    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    let (code, _) = api_error(api.delete(&first.name_any(), &stale).await.unwrap_err());
    assert_eq!(code, 409);
    api.delete(&first.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[tokio::test]
async fn strategic_merge_patch_acts_as_a_merge_patch() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &deployment("web", "web:1", 1)).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = out.spec.template.spec.unwrap().containers;
    assert_eq!(containers[0].image.as_deref(), Some("web:2"));
}

#[tokio::test]
async fn malformed_objects_are_rejected_and_the_server_keeps_serving() {
    let fake = FakeKube::start().await;
    let api: Api<Deployment> = Api::default_namespaced(fake.client());
    create(&api, &deployment("web", "web:1", 1)).await;
    let bad = [
        json!({"spec": {"template": "not an object"}}),
        json!({"spec": {"selector": {"matchLabels": "x"}}}),
        json!({"spec": {"replicas": -1}}),
        json!({"metadata": {"labels": {"a": 1}}}),
        json!({"metadata": {"annotations": []}}),
    ];
    for patch in bad {
        let result = api
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        let (code, reason) = api_error(result.unwrap_err());
        assert_eq!((code, reason.as_str()), (422, "Invalid"), "{patch}");
    }
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/metadata", "value": 3}]))
            .unwrap();
    let result = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await;
    assert_eq!(api_error(result.unwrap_err()).0, 400);
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(1));
}

/// What one raw GET met: its status, or "timeout" when the client gave up first.
async fn raw_get(http: &reqwest::Client, url: &str, client: &str) -> (String, Option<String>) {
    match http
        .get(url)
        .header(crate::common::fake_kube::CLIENT_HEADER, client)
        .send()
        .await
    {
        Ok(answer) => {
            let retry_after = answer
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let code = answer.status().as_u16().to_string();
            if code == "429" {
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["reason"], "TooManyRequests");
                assert_eq!(body["details"]["retryAfterSeconds"], 1);
            }
            (code, retry_after)
        }
        Err(e) if e.is_timeout() => ("timeout".into(), None),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[tokio::test]
async fn random_faults_follow_their_seed_and_are_counted() {
    use crate::common::fake_kube::Chaos;
    let chaos = Chaos {
        server_error: 0.2,
        throttled: 0.2,
        timeout: 0.1,
        hold: Duration::from_millis(600),
        spared: vec!["test".into()],
        ..Chaos::seeded(42)
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let fake = FakeKube::start().await;
        fake.put(&widget("w", 1));
        fake.chaos(chaos.clone());
        let url = format!(
            "{}/apis/test.vigil.dev/v1/namespaces/default/widgets/w",
            fake.url()
        );
        let mut outcomes = Vec::new();
        for _ in 0..60 {
            let (code, retry_after) = raw_get(&http, &url, "vigil").await;
            // A 429 says when to come back; nothing else does.
            assert_eq!(retry_after.is_some(), code == "429", "{code}");
            outcomes.push(code);
        }
        let seen = |what: &str| outcomes.iter().filter(|o| *o == what).count() as u64;
        let injected = fake.injected();
        assert_eq!(injected["server_error"], seen("500"), "{outcomes:?}");
        assert_eq!(injected["throttled"], seen("429"), "{outcomes:?}");
        assert_eq!(injected["timeout"], seen("timeout"), "{outcomes:?}");
        assert!(seen("500") > 0 && seen("429") > 0 && seen("timeout") > 0);
        assert_eq!(
            seen("200") + seen("500") + seen("429") + seen("timeout"),
            60
        );
        // The test's own client is spared, and the fake is calm again when asked.
        for _ in 0..20 {
            assert_eq!(raw_get(&http, &url, "test").await.0, "200");
        }
        fake.calm();
        for _ in 0..20 {
            assert_eq!(raw_get(&http, &url, "vigil").await.0, "200");
        }
        assert_eq!(fake.injected(), injected, "calm keeps the counts");
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1], "the same seed, the same faults");
}

#[tokio::test]
async fn random_watch_faults_cut_streams_and_expire_resumes() {
    use crate::common::fake_kube::Chaos;
    let fake = FakeKube::start().await;
    let api: Api<Widget> = Api::default_namespaced(fake.client());
    let created = create(&api, &widget("w", 1)).await;
    let start = created.resource_version().unwrap();
    fake.chaos(Chaos {
        watch_dropped: 1.0,
        drop_within: Duration::from_millis(300),
        watch_expired: 1.0,
        ..Chaos::seeded(3)
    });
    // From "0" the watch is not a resume: it is cut, the connection broken mid-body (not a
    // clean end, which kube's client would take for the watch's timeout).
    let url = format!(
        "{}/apis/test.vigil.dev/v1/namespaces/default/widgets?watch=true&resourceVersion=0",
        fake.url()
    );
    let mut body = reqwest::get(&url).await.unwrap();
    let first = body.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"ADDED\""));
    let cut = tokio::time::timeout(Duration::from_secs(5), body.chunk())
        .await
        .expect("the watch is cut within its drop time");
    assert!(cut.is_err(), "{cut:?}");
    assert_eq!(fake.injected()["watch_dropped"], 1);
    // A resume from a resourceVersion is answered 410 Gone, as after a compaction.
    let mut resumed = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match next(&mut resumed).await.unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert_eq!(fake.injected()["watch_expired"], 1);
    // kube-runtime's watcher gets over both: it relists and sees every change. (A watch
    // that is not cut lives until its timeoutSeconds: every one is cut here.)
    fake.chaos(Chaos {
        watch_dropped: 1.0,
        drop_within: Duration::from_millis(200),
        watch_expired: 0.5,
        ..Chaos::seeded(4)
    });
    let seen = Arc::new(std::sync::Mutex::new(0));
    let counted = seen.clone();
    let watching = tokio::spawn(watcher(api.clone(), watcher::Config::default()).for_each(
        move |event| {
            if let Ok(watcher::Event::Apply(w) | watcher::Event::InitApply(w)) = event {
                let mut seen = counted.lock().unwrap();
                *seen = (*seen).max(w.spec.size);
            }
            futures::future::ready(())
        },
    ));
    // Changes until both faults were met, and the watcher must see the last one.
    let mut size = 1;
    while {
        let injected = fake.injected();
        injected["watch_dropped"] < 2 || injected["watch_expired"] < 2
    } {
        assert!(size < 400, "too few faults: {:?}", fake.injected());
        size += 1;
        merge(&api, "w", json!({"spec": {"size": size}})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.wait_until("the watcher saw the last change", |_| {
        *seen.lock().unwrap() == size
    })
    .await;
    watching.abort();
}

#[tokio::test]
async fn committed_points_live_in_their_configmap_between_analyses() {
    use vigil::cluster::committed::{Committed, config_map_name};
    use vigil::data::{QueryRequest, QueryResult, Role, Series, Window};
    use vigil::template::QueryPart;

    let fake = FakeKube::start().await;
    let spec: vigil::api::crd::ReleaseSpec = serde_json::from_value(json!({
        "targetRef": {"name": "web"},
        "service": {"name": "web"},
        "routing": {"replicas": {}},
        "stepWeights": [10, 50, 100],
    }))
    .unwrap();
    let mut release = vigil::api::crd::Release::new("web", spec);
    release.metadata.namespace = Some("default".into());
    let release = fake.put(&release);
    assert!(release.uid().is_some());
    let committed = Committed::new(Duration::ZERO);
    let client = fake.client();
    let start = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let request = |minutes: i64| QueryRequest {
        template: "t".into(),
        metric: "errors".into(),
        part: QueryPart::Query,
        role: Role::Canary,
        promql: "sum(rate(errors[1m]))".into(),
        window: Window {
            start,
            end: start + chrono::Duration::minutes(minutes),
            step: "1m".parse().unwrap(),
        },
        shift: None,
    };
    let answer = |from: i64, to: i64| QueryResult {
        series: vec![Series {
            labels: Default::default(),
            points: (from..=to)
                .map(|m| ((start.timestamp() + 60 * m) as f64, m as f64 / 7.0))
                .collect(),
        }],
        warnings: Vec::new(),
    };
    let config_map_gets = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&config_map_name("web")))
            .count()
    };
    let config_maps: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // The first analysis: nothing stored yet; once stored, nothing is held in memory.
    let cache = committed.cache(&client, &release).await;
    let first = cache
        .lock()
        .unwrap()
        .merge(&request(5), Some(answer(1, 5)), Duration::ZERO);
    drop(cache);
    assert_eq!(committed.size(), (1, 5));
    committed.store(&client, &release).await;
    assert_eq!(committed.size(), (0, 0), "stored: let go");
    assert!(
        config_maps
            .get_opt(&config_map_name("web"))
            .await
            .unwrap()
            .is_some()
    );

    // The next analysis reads them back (one GET) and fetches only what is new.
    let gets = config_map_gets();
    let cache = committed.cache(&client, &release).await;
    assert_eq!(config_map_gets(), gets + 1);
    assert_eq!(committed.size(), (1, 5));
    let plan = cache.lock().unwrap().plan(&request(7));
    let vigil::source::incremental::Fetch::From(window) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(window.start, start + chrono::Duration::minutes(5));
    let second = cache
        .lock()
        .unwrap()
        .merge(&request(7), Some(answer(6, 7)), Duration::ZERO);
    assert_eq!(second.series[0].points[..5], first.series[0].points[..]);
    assert_eq!(second.series[0].points.len(), 7);
    drop(cache);
    committed.store(&client, &release).await;
    assert_eq!(committed.size(), (0, 0));

    // A write that fails keeps the points in memory, and the next analysis uses them
    // without a read; the write after it lets go of them.
    let cache = committed.cache(&client, &release).await;
    cache
        .lock()
        .unwrap()
        .merge(&request(8), Some(answer(8, 8)), Duration::ZERO);
    drop(cache);
    fake.faults()
        .fail_next("PUT|POST|PATCH", "configmaps", None, 500, 1);
    committed.store(&client, &release).await;
    assert_eq!(committed.size(), (1, 8), "kept after a failed write");
    let gets = config_map_gets();
    let cache = committed.cache(&client, &release).await;
    assert_eq!(config_map_gets(), gets, "held: not read again");
    drop(cache);
    committed.store(&client, &release).await;
    assert_eq!(committed.size(), (0, 0));
    let stored = config_maps.get(&config_map_name("web")).await.unwrap();
    assert!(
        stored.data.unwrap()["points.json"].contains(&(8.0f64 / 7.0).to_string()),
        "the eighth minute stored"
    );

    // A ConfigMap deleted by hand: the next analysis starts from nothing (its whole window).
    config_maps
        .delete(&config_map_name("web"), &Default::default())
        .await
        .unwrap();
    let cache = committed.cache(&client, &release).await;
    assert!(cache.lock().unwrap().is_empty());
    assert_eq!(
        cache.lock().unwrap().plan(&request(9)),
        vigil::source::incremental::Fetch::Whole
    );
}
