//! The controller (reconciler, routers, state machine and judge) run in-process against the
//! fake Kubernetes API server and a real Prometheus: the application `web` in namespace
//! `shop` behind an nginx Ingress, its ReleaseAnalysis and its Release, on an accelerated
//! clock set inside the stored hour of history, so that a rollout with one-minute analysis
//! intervals takes seconds.

use super::fake_kube::{FakeKube, Res};
use super::{PromServer, Version, openmetrics};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::api::crd::{Release, ReleaseAnalysis};
use vigil::cluster::clock::Clock;
use vigil::cluster::reconciler::{self, Context, NoObserver};
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

/// The namespace of the application.
pub const NS: &str = "shop";
/// Virtual seconds per real second.
pub const SPEED: f64 = 120.0;

/// Stable (`v1`, 2% errors, 100 ms) and a canary (`v2`) of this error rate and latency.
pub fn versions(canary_error_rate: f64, canary_latency: f64) -> Vec<Version> {
    vec![
        Version {
            job: "web",
            version: "v1",
            rps: 4000.0,
            error_rate: 0.02,
            latency_median: 0.1,
            seed: 1,
            regression: None,
        },
        Version {
            job: "web",
            version: "v2",
            rps: 2000.0,
            error_rate: canary_error_rate,
            latency_median: canary_latency,
            seed: 2,
            regression: None,
        },
    ]
}

/// The Ingress resource.
pub fn ingresses() -> Res {
    Res::new("networking.k8s.io", "v1", "ingresses")
}

/// The Release resource.
pub fn releases() -> Res {
    Res::new("vigil.dev", "v1alpha1", "releases")
}

/// The HTTPRoute resource.
pub fn http_routes() -> Res {
    Res::new("gateway.networking.k8s.io", "v1", "httproutes")
}

/// The VirtualService resource.
pub fn virtual_services() -> Res {
    Res::new("networking.istio.io", "v1", "virtualservices")
}

/// HTTPRoute `web`: one rule sending everything to Service `web`.
pub fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}
    })
}

/// VirtualService `web`: one route, `main`, sending everything to Service `web`.
pub fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"hosts": ["web"], "http": [{"name": "main", "route": [{"destination": {"host": "web"}}]}]}
    })
}

/// The application, its template and its Release.
pub fn setup(fake: &FakeKube, canary_extra: Value) {
    fake.register::<Release>();
    fake.register::<ReleaseAnalysis>();
    put_template(fake, NS);
    app(fake, "web", canary_extra);
}

/// Application `name` (its Deployment, Service and Ingress, all called `name`) and its
/// Release, judged on the metrics of job `name`; `canary_extra` is merged into the spec.
pub fn app(fake: &FakeKube, name: &str, canary_extra: Value) {
    fake.put_object(
        &Res::deployments(),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]}
                }
            }
        }),
    );
    fake.put_object(
        &Res::core("services"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }),
    );
    fake.put_object(
        &ingresses(),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "shop.example", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"number": 80}}}
                }]}}]
            }
        }),
    );
    let mut canary = json!({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": name},
            "service": {"name": name, "port": 80},
            "routing": {"nginx": {"ingress": name}},
            "stepWeights": [10, 50, 100],
            "abortScaleDownDelay": "2m",
            "analysis": {
                "templates": [{"name": "http-prometheus-client"}],
                "args": [{"name": "job", "value": name}],
                "interval": "1m",
                // The loaded history gives the canary a fixed third of the requests, whatever
                // the weight; tests/it/controller.rs checks that the split check holds such a
                // rollout.
                "checkSplit": false,
                "stableMatchers": "version=\"v1\"",
                "canaryMatchers": "version=\"v2\""
            }
        }
    });
    // A null in `canary_extra` takes the field out.
    if let (Some(spec), Some(extra)) = (canary["spec"].as_object_mut(), canary_extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                spec.remove(k);
            } else {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    fake.put_object(&releases(), canary);
}

/// The shipped template `http-prometheus-client` as a ReleaseAnalysis in namespace `ns`.
pub fn put_template(fake: &FakeKube, ns: &str) {
    let text = std::fs::read_to_string(
        super::root().join("analysis-templates/http-prometheus-client.yaml"),
    )
    .expect("read template");
    let mut template: Value = serde_saphyr::from_str(&text).expect("template YAML");
    template["metadata"]["namespace"] = json!(ns);
    fake.put_object(
        &Res::new("vigil.dev", "v1alpha1", "releaseanalyses"),
        template,
    );
}

/// A controller running in a task; stopped (or aborted on drop).
pub struct Controller {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Starts a controller of namespace `shop` over `prometheus`.
    pub fn start(fake: &FakeKube, prometheus: &str, clock: Clock) -> Controller {
        Self::observed(fake, prometheus, clock, Arc::new(NoObserver))
    }

    /// As [`Controller::start`], telling `observer` about every reconcile.
    pub fn observed(
        fake: &FakeKube,
        prometheus: &str,
        clock: Clock,
        observer: Arc<dyn vigil::cluster::reconciler::Observer>,
    ) -> Controller {
        let client = fake.client();
        let source = Prometheus::new(PrometheusConfig::new(prometheus)).expect("prometheus client");
        let ctx = Arc::new(Context {
            recorder: vigil::cluster::events::Recorder::new(
                client.clone(),
                reconciler::reporter(None),
                clock,
            ),
            client,
            source,
            concurrency: 4,
            observer,
            clock,
            http: reqwest::Client::new(),
            ownership: vigil::cluster::shards::Ownership::everything(),
            committed: vigil::cluster::committed::Committed::default(),
            workers: vigil::cluster::reconciler::DEFAULT_WORKERS,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reconciler::run(
            ctx,
            Some(NS.to_string()),
            async move {
                let _ = stopped.await;
            },
            Box::new(|| {}),
        ));
        Controller {
            stop: Some(stop),
            task,
        }
    }

    /// Stops it, waiting up to 10 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Release `shop/web`'s status.
pub fn status(fake: &FakeKube) -> Value {
    fake.get(&releases(), NS, "web")
        .and_then(|c| c.get("status").cloned())
        .unwrap_or(Value::Null)
}

/// Waits until the Release's status passes `check`; fails after `limit` with the status.
pub async fn wait_for(
    fake: &FakeKube,
    what: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) {
    let start = Instant::now();
    loop {
        let s = status(fake);
        if check(&s) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}; Release status:\n{}",
            serde_json::to_string_pretty(&s).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the phase Succeeded.
pub async fn wait_succeeded(fake: &FakeKube) {
    wait_for(
        fake,
        "success",
        Duration::from_secs(60),
        phase_is("Succeeded"),
    )
    .await;
}

/// A status check for this phase.
pub fn phase_is(phase: &'static str) -> impl Fn(&Value) -> bool {
    move |s: &Value| s["phase"] == phase
}

/// Starts a release: sets the Deployment's image.
pub async fn release(fake: &FakeKube, image: &str) {
    release_app(fake, "web", image).await;
}

/// Starts a release of application `name`: sets its Deployment's image.
pub async fn release_app(fake: &FakeKube, name: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(fake.client(), NS);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})),
    )
    .await
    .expect("change the image");
}

/// Prometheus with the history of a canary of this error rate and median latency, the fake
/// cluster with the application, and a controller that has adopted the Deployment.
pub async fn adopted(
    canary_error_rate: f64,
    canary_latency: f64,
    canary_extra: Value,
) -> (PromServer, FakeKube, Controller) {
    let prom = PromServer::start(&openmetrics(&versions(canary_error_rate, canary_latency)));
    let fake = FakeKube::start().await;
    setup(&fake, canary_extra);
    let controller = start_adopting(&fake, &prom.url, clock()).await;
    (prom, fake, controller)
}

/// Starts a controller on `clock` and waits until it has adopted the Deployment.
pub async fn start_adopting(fake: &FakeKube, prometheus: &str, clock: Clock) -> Controller {
    let controller = Controller::start(fake, prometheus, clock);
    wait_for(
        fake,
        "adoption",
        Duration::from_secs(10),
        phase_is("Waiting"),
    )
    .await;
    controller
}

/// The accelerated clock, two minutes into the stored history.
pub fn clock() -> Clock {
    let origin =
        chrono::DateTime::from_timestamp(super::T_END - super::HISTORY + 120, 0).expect("time");
    Clock::accelerated(origin, SPEED)
}

/// A Deployment of the namespace.
pub fn deployment(fake: &FakeKube, name: &str) -> Option<Value> {
    fake.get(&Res::deployments(), NS, name)
}

/// The reason of every event recorded, once per occurrence (kube's recorder folds repeats
/// into a series with a count).
pub fn event_reasons(fake: &FakeKube) -> Vec<String> {
    let mut reasons = Vec::new();
    for e in fake.list(&Res::new("events.k8s.io", "v1", "events"), Some(NS)) {
        let count = e["series"]["count"].as_u64().unwrap_or(1).max(1);
        if let Some(reason) = e["reason"].as_str() {
            reasons.extend(std::iter::repeat_n(reason.to_string(), count as usize));
        }
    }
    reasons
}
