//! End to end: the `vigil` binary against the fake Kubernetes API server and a real
//! Prometheus that scrapes a traffic generator, which splits its requests by the weight vigil
//! sets on the canary Ingress.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fake_kube::{FakeKube, Options as FakeOptions, Res};
use crate::common::traffic::{Model, Options, Traffic, nginx_canary_weight};
use crate::common::{self, PromServer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use vigil::api::crd::{Release, ReleaseAnalysis};

/// The ingress-nginx template, and its version selectors for the generator's labels.
const TEMPLATE: &str = "analysis-templates/ingress-nginx.yaml";
const STABLE: &str = "canary=\"\"";
const CANARY: &str = "canary=\"shop-web-canary-80\"";

/// Polls `probe` every 200 ms until it gives a value, failing after `limit` with `what` and
/// the last `context()`.
async fn poll<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The canary's share of the request rate over the last 3 s, once both versions have
/// traffic.
const CANARY_SHARE: &str = "sum(rate(nginx_ingress_controller_requests{canary!=\"\"}[3s])) \
     / sum(rate(nginx_ingress_controller_requests[3s]))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_generator_and_the_canary_share_follows_the_weight() {
    let weight = Arc::new(AtomicU8::new(0));
    let traffic = Traffic::start(Options::default(), {
        let weight = weight.clone();
        move || weight.load(Ordering::Relaxed)
    })
    .await;
    let prom = tokio::task::block_in_place(|| {
        PromServer::start_scraping(&[traffic.target()], Duration::from_secs(1))
    });
    let context = || {
        format!(
            "metrics:\n{}\nprometheus log:\n{}",
            traffic.metrics(),
            prom.log()
        )
    };

    // The first windows hold only a sample or two, and a loaded machine scrapes late: wait
    // for a rate in range rather than judging the first one seen.
    poll(
        "Prometheus sees about 20,000 requests per second",
        Duration::from_secs(15),
        async || {
            prom.instant("sum(rate(nginx_ingress_controller_requests[3s]))")
                .await
                .filter(|r| (10_000.0..30_000.0).contains(r))
        },
        context,
    )
    .await;
    assert_eq!(
        prom.instant("count(nginx_ingress_controller_requests{canary!=\"\"})")
            .await,
        None,
        "no canary series before the canary has traffic"
    );

    weight.store(25, Ordering::Relaxed);
    // Two scrapes after the change the 3 s window may still hold stable-only samples: wait
    // for a window wholly after it.
    let share = poll(
        "the canary gets about a quarter of the requests",
        Duration::from_secs(15),
        async || {
            prom.instant(CANARY_SHARE)
                .await
                .filter(|s| (0.2..0.3).contains(s))
        },
        context,
    )
    .await;
    assert!((0.2..0.3).contains(&share));
    assert_eq!(traffic.weight_sequence(), vec![0, 25]);
    let (stable, canary) = traffic.totals();
    let error_share = canary.errors as f64 / canary.requests() as f64;
    assert!(
        (0.005..0.015).contains(&error_share),
        "1% errors, got {error_share} ({canary:?}; stable {stable:?})"
    );
}

/// `vigil judge` on the generator's live traffic at canary weight 10, over the window since
/// the traffic started with a 5 s step, as the controller judges a Release with
/// `interval: 5s`: the generator's rates must let it pass a healthy canary and fail a
/// regressing one within a few intervals, or the end-to-end tests below cannot finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_tells_a_healthy_from_a_regressing_canary_on_live_traffic_within_seconds() {
    let started = Instant::now();
    // One generator per namespace label, both scraped by one Prometheus.
    let healthy = Traffic::start(
        Options {
            namespace: "healthy".into(),
            ..Options::default()
        },
        || 10,
    )
    .await;
    let regressing = Traffic::start(
        Options {
            namespace: "regressing".into(),
            canary: Model::default().regressing(),
            seed: 2,
            ..Options::default()
        },
        || 10,
    )
    .await;
    let prom = tokio::task::block_in_place(|| {
        PromServer::start_scraping(
            &[healthy.target(), regressing.target()],
            Duration::from_secs(1),
        )
    });
    let start = chrono::Utc::now().timestamp().to_string();
    let judge = |namespace: &str| {
        let end = chrono::Utc::now().timestamp().to_string();
        let out = common::vigil()
            .args(["judge", "--prometheus", &prom.url, "--template"])
            .arg(common::root().join(TEMPLATE))
            .args(["--arg", &format!("namespace={namespace}")])
            .args([
                "--arg",
                "ingress=web",
                "--stable",
                STABLE,
                "--canary",
                CANARY,
            ])
            .args(["--start", &start, "--end", &end, "--step", "5s"])
            .args(["--output", "json"])
            .output()
            .expect("run vigil judge");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "vigil judge did not print JSON ({e}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        report
    };
    let (mut healthy_verdicts, mut regressing_verdicts) = (Vec::new(), Vec::new());
    let mut failing_reasons = String::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let report = judge("healthy");
        healthy_verdicts.push(report["verdict"].as_str().unwrap_or("?").to_string());
        let report = judge("regressing");
        regressing_verdicts.push(report["verdict"].as_str().unwrap_or("?").to_string());
        failing_reasons = report["reasons"].to_string();
        if healthy_verdicts.last().unwrap() == "pass"
            && regressing_verdicts.last().unwrap() == "fail"
        {
            break;
        }
    }
    let context = format!(
        "healthy verdicts {healthy_verdicts:?}, regressing verdicts {regressing_verdicts:?}; \
         healthy totals {:?}; regressing totals {:?}",
        healthy.totals(),
        regressing.totals()
    );
    assert_eq!(
        healthy_verdicts.last().map(String::as_str),
        Some("pass"),
        "{context}"
    );
    assert!(!healthy_verdicts.iter().any(|v| v == "fail"), "{context}");
    assert_eq!(
        regressing_verdicts.last().map(String::as_str),
        Some("fail"),
        "{context}"
    );
    assert!(
        !regressing_verdicts.iter().any(|v| v == "pass"),
        "{context}"
    );
    assert!(
        failing_reasons.contains("error-rate"),
        "the regression fails on its error rate: {failing_reasons}"
    );
    println!(
        "healthy {healthy_verdicts:?}, regressing {regressing_verdicts:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// The controller: `vigil run` against the fake API server and the scraping Prometheus.
// ---------------------------------------------------------------------------------------

const NS: &str = "shop";

fn ingresses() -> Res {
    Res::new("networking.k8s.io", "v1", "ingresses")
}

fn releases() -> Res {
    Res::new("vigil.dev", "v1alpha1", "releases")
}

/// The `vigil` binary as a child process, killed on drop, with its output in a file.
struct VigilProcess {
    child: Child,
    log: PathBuf,
}

impl VigilProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for VigilProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything one rollout test runs: the fake cluster with the shop's objects, the traffic
/// generator reading the canary Ingress's weight, Prometheus scraping it, and vigil.
struct Rig {
    fake: Arc<FakeKube>,
    traffic: Traffic,
    prom: PromServer,
    vigil: VigilProcess,
    /// Every state of Deployment `web` that a watch saw, in order.
    web_history: Arc<Mutex<Vec<DeploymentState>>>,
    web_watch: tokio::task::JoinHandle<()>,
    /// The notification receiver, which refuses everything.
    receiver: tokio::task::JoinHandle<std::io::Result<()>>,
    started: Instant,
    /// When the rig started, for range queries.
    started_at: std::time::SystemTime,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.web_watch.abort();
        self.receiver.abort();
    }
}

/// What the tests check of one state of Deployment `web`.
#[derive(Clone, Debug, PartialEq)]
struct DeploymentState {
    paused: bool,
    image: String,
    updated: i64,
    ready: i64,
}

impl DeploymentState {
    fn of(d: &Deployment) -> Self {
        let spec = d.spec.clone();
        let status = d.status.clone().unwrap_or_default();
        DeploymentState {
            paused: spec.paused.unwrap_or(false),
            image: spec
                .template
                .spec
                .and_then(|p| p.containers.first().and_then(|c| c.image.clone()))
                .unwrap_or_default(),
            updated: status.updated_replicas.unwrap_or(0).into(),
            ready: status.ready_replicas.unwrap_or(0).into(),
        }
    }
}

/// Records every state of Deployment `web` through a watch (the fake API server sends an
/// event for every write), consecutive repeats once.
fn watch_web(
    client: kube::Client,
    history: Arc<Mutex<Vec<DeploymentState>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client, NS);
        let params = WatchParams::default().fields("metadata.name=web");
        let mut events = api
            .watch(&params, "0")
            .await
            .expect("watch Deployment web")
            .boxed();
        while let Some(Ok(event)) = events.next().await {
            if let WatchEvent::Added(d) | WatchEvent::Modified(d) = event {
                let state = DeploymentState::of(&d);
                let mut history = history.lock().unwrap();
                if history.last() != Some(&state) {
                    history.push(state);
                }
            }
        }
    })
}

/// How a rig's Release differs from the canary one of [`create_shop`].
struct Variant {
    /// Fields replacing the Release's spec's.
    spec: Value,
    /// The canary Service's name, whose requests the generator labels as the canary's.
    canary_service: &'static str,
    /// The canary's share of the generator's requests, read from the fake cluster.
    share: fn(&FakeKube) -> u8,
}

impl Variant {
    /// The Release of [`create_shop`] as it is: steps of 10, 50 and 100% through the canary
    /// Ingress.
    fn canary() -> Variant {
        Variant {
            spec: json!({}),
            canary_service: "web-canary",
            share: |fake| nginx_canary_weight(fake.get(&ingresses(), NS, "web-canary").as_ref()),
        }
    }
}

impl Rig {
    async fn start(canary: Model) -> Rig {
        Rig::start_with(canary, Variant::canary()).await
    }

    async fn start_with(canary: Model, variant: Variant) -> Rig {
        let started = Instant::now();
        let started_at = std::time::SystemTime::now();
        let fake = Arc::new(
            FakeKube::start_with(FakeOptions {
                // The canary becomes available a moment after it is created, as Pods would.
                ready_delay: Duration::from_millis(500),
                ..FakeOptions::default()
            })
            .await,
        );
        fake.register::<Release>();
        fake.register::<ReleaseAnalysis>();
        create_shop(&fake.client(), &variant.spec).await;
        let web_history = Arc::new(Mutex::new(Vec::new()));
        let web_watch = watch_web(fake.client(), web_history.clone());

        let traffic = Traffic::start(
            Options {
                canary,
                canary_upstream: format!("{NS}-{}-80", variant.canary_service),
                ..Options::default()
            },
            {
                let fake = fake.clone();
                let share = variant.share;
                move || share(&fake)
            },
        )
        .await;
        // Prometheus scrapes vigil's /metrics too, for the Grafana dashboard's queries.
        let listen = format!("127.0.0.1:{}", common::free_port());
        let prom = tokio::task::block_in_place(|| {
            PromServer::start_scraping_also(
                &[traffic.target()],
                std::slice::from_ref(&listen),
                Duration::from_secs(1),
            )
        });

        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig);
        // A cluster-wide webhook receiver that refuses every notification (400, not
        // retried): notifications never hold a rollout up, and the failures are counted.
        let refusing = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let receiver_url = format!("http://{}/", refusing.local_addr().expect("addr"));
        let receiver = tokio::spawn(async move {
            axum::serve(
                refusing,
                axum::Router::new().fallback(|| async { axum::http::StatusCode::BAD_REQUEST }),
            )
            .await
        });
        std::fs::write(dir.path().join("receiver-url"), &receiver_url).expect("receiver url");
        let notify = dir.path().join("notify.yaml");
        std::fs::write(
            &notify,
            format!(
                "notifications:\n  - provider: webhook\n    urlFile: {}\n",
                dir.path().join("receiver-url").display()
            ),
        )
        .expect("notify.yaml");
        let log = dir.path().join("vigil.log");
        let out = std::fs::File::create(&log).expect("vigil log");
        let err = out.try_clone().expect("vigil log");
        let child = common::vigil()
            .args(["run", "--prometheus", &prom.url])
            .args(["--listen", &listen])
            .arg("--notify-config")
            .arg(&notify)
            .args(["--watch-namespace", NS, "--log-format", "text"])
            .env("KUBECONFIG", &kubeconfig)
            .env("VIGIL_LOG", "info,vigil=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start vigil run");
        Rig {
            fake,
            traffic,
            prom,
            vigil: VigilProcess { child, log },
            web_history,
            web_watch,
            receiver,
            started,
            started_at,
            _dir: dir,
        }
    }

    /// Whether vigil has exited (it should run until killed).
    fn exited(&mut self) -> bool {
        matches!(self.vigil.child.try_wait(), Ok(Some(_)))
    }

    fn get(&self, res: &Res, name: &str) -> Option<Value> {
        self.fake.get(res, NS, name)
    }

    fn status(&self) -> Value {
        self.get(&releases(), "web")
            .map(|c| c["status"].clone())
            .unwrap_or(Value::Null)
    }

    fn phase(&self) -> String {
        self.status()["phase"].as_str().unwrap_or("").to_string()
    }

    /// What a failure message shows: the Release's status, the weights the generator applied,
    /// the Deployments, its totals, and vigil's log.
    fn context(&mut self) -> String {
        let exited = self.vigil.child.try_wait().ok().flatten();
        let deployments: Vec<String> = self
            .fake
            .list(&Res::deployments(), Some(NS))
            .iter()
            .map(|d| {
                format!(
                    "{} replicas {} paused {} image {} status {}",
                    d["metadata"]["name"],
                    d["spec"]["replicas"],
                    d["spec"]["paused"],
                    d["spec"]["template"]["spec"]["containers"][0]["image"],
                    d["status"]
                )
            })
            .collect();
        format!(
            "after {:.1} s; vigil {}\ncanary status: {:#}\nweights applied (s, %): {:?}\n\
             deployments:\n  {}\nstates of Deployment web (paused, image, updated, ready): {:?}\n\
             traffic totals (stable, canary): {:?}\n\
             --- prometheus log (last lines) ---\n{}\n--- vigil log ---\n{}",
            self.started.elapsed().as_secs_f64(),
            exited.map_or("running".to_string(), |s| format!("exited: {s}")),
            self.status(),
            self.traffic
                .weights()
                .iter()
                .map(|(t, w)| (format!("{:.1}", t.as_secs_f64()), *w))
                .collect::<Vec<_>>(),
            deployments.join("\n  "),
            self.web_states()
                .iter()
                .map(|d| (d.paused, d.image.as_str(), d.updated, d.ready))
                .collect::<Vec<_>>(),
            self.traffic.totals(),
            last_lines(&self.prom.log(), 10),
            self.vigil.log()
        )
    }

    /// Waits until the Release's phase is `phase`, failing with the context after `limit` or
    /// at once when it reaches one of `wrong`.
    async fn wait_for_phase(&mut self, phase: &str, wrong: &[&str], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.phase();
            if now == phase {
                return;
            }
            if wrong.contains(&now.as_str()) || Instant::now() >= deadline || self.exited() {
                let context = self.context();
                panic!("waiting for phase {phase}, the Release is in phase {now:?}\n{context}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `condition` holds, failing with the context after `limit`.
    async fn wait_until(&mut self, what: &str, limit: Duration, condition: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + limit;
        while !condition(self) {
            if Instant::now() >= deadline || self.exited() {
                let context = self.context();
                panic!("waited (up to {limit:?}) in vain until {what}\n{context}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for vigil to adopt Deployment `web`, then releases image `web:2`; returns the
    /// stable revision recorded at adoption.
    async fn release(&mut self) -> String {
        self.wait_for_phase("Waiting", &["Failed"], Duration::from_secs(30))
            .await;
        self.wait_until(
            "vigil paused Deployment web",
            Duration::from_secs(5),
            |rig| {
                rig.get(&Res::deployments(), "web")
                    .is_some_and(|d| d["spec"]["paused"] == true)
            },
        )
        .await;
        let stable = self.status()["stableRevision"]
            .as_str()
            .unwrap_or_else(|| panic!("no stableRevision when Waiting: {:#}", self.status()))
            .to_string();
        let deployments: Api<Deployment> = Api::namespaced(self.fake.client(), NS);
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "image": "web:2"}
                ]}}}})),
            )
            .await
            .expect("change the image to web:2");
        stable
    }

    /// Waits until the canary Ingress is gone and the generator has seen it (it reads the
    /// weight every tick).
    async fn wait_for_all_traffic_on_stable(&mut self) {
        self.wait_until(
            "the canary Ingress is gone and all traffic is on stable",
            Duration::from_secs(5),
            |rig| {
                rig.get(&ingresses(), "web-canary").is_none()
                    && rig.traffic.weight_sequence().last() == Some(&0)
            },
        )
        .await;
    }

    /// Every state of Deployment `web` so far.
    fn web_states(&self) -> Vec<DeploymentState> {
        self.web_history.lock().unwrap().clone()
    }

    /// The non-zero weights the generator applied, in order, each once.
    fn canary_weights(&self) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        for w in self.traffic.weight_sequence() {
            if w != 0 && out.last() != Some(&w) {
                out.push(w);
            }
        }
        out
    }

    /// Deployment `web`'s ReplicaSets with replicas: (image, spec.replicas,
    /// status.readyReplicas).
    fn serving_replicasets(&self) -> Vec<(String, i64, i64)> {
        self.fake
            .list(&Res::replicasets(), Some(NS))
            .iter()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["name"] == "web")
            .filter(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
            .map(|rs| {
                (
                    rs["spec"]["template"]["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    rs["spec"]["replicas"].as_i64().unwrap_or(0),
                    rs["status"]["readyReplicas"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Namespace `shop` with Deployment, Service and Ingress `web`, the ingress-nginx
/// ReleaseAnalysis and the Release `web`, created through the API.
async fn create_shop(client: &kube::Client, spec: &Value) {
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(&pp, &from(json!({"metadata": {"name": NS}})))
        .await
        .expect("create namespace");
    let deployment: Deployment = from(json!({
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1",
                                         "ports": [{"containerPort": 8080}]}]},
            },
        },
    }));
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&pp, &deployment)
        .await
        .expect("create Deployment web");
    let service: Service = from(json!({
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }));
    Api::<Service>::namespaced(client.clone(), NS)
        .create(&pp, &service)
        .await
        .expect("create Service web");
    let ingress: Ingress = from(json!({
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{
                "host": "shop.example",
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                }]},
            }],
        },
    }));
    Api::<Ingress>::namespaced(client.clone(), NS)
        .create(&pp, &ingress)
        .await
        .expect("create Ingress web");

    let text = std::fs::read_to_string(common::root().join(TEMPLATE)).expect("read template");
    let mut template: Value = serde_saphyr::from_str(&text).expect("template YAML");
    template["metadata"]["namespace"] = NS.into();
    Api::<ReleaseAnalysis>::namespaced(client.clone(), NS)
        .create(&pp, &from(template))
        .await
        .expect("create ReleaseAnalysis ingress-nginx");

    let mut release = json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "targetRef": {"name": "web"},
            "service": {"name": "web", "port": 80},
            "routing": {"nginx": {"ingress": "web"}},
            "stepWeights": [10, 50, 100],
            "analysis": {
                "templates": [{"name": "ingress-nginx"}],
                "args": [
                    {"name": "namespace", "value": NS},
                    {"name": "ingress", "value": "web"},
                ],
                "interval": "5s",
            },
            "progressDeadline": "30s",
            "abortScaleDownDelay": "1s",
        },
    });
    for (field, value) in spec.as_object().into_iter().flatten() {
        release["spec"][field] = value.clone();
    }
    Api::<Release>::namespaced(client.clone(), NS)
        .create(&pp, &from::<Release>(release))
        .await
        .expect("create Release web");
}

/// A typed object from JSON, which must fit its type.
fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a well-formed object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_is_promoted_end_to_end() {
    let mut rig = Rig::start(Model::default()).await;
    let stable_revision = rig.release().await;
    // One failed reconcile, which the controller retries, for the dashboard's error panels.
    rig.fake
        .faults()
        .fail_next("PUT|PATCH", "releases", Some("status"), 500, 1);

    rig.wait_for_phase("Succeeded", &["Failed"], Duration::from_secs(120))
        .await;
    rig.wait_for_all_traffic_on_stable().await;
    let status = rig.status();
    let context = rig.context();

    assert_eq!(
        rig.canary_weights(),
        vec![10, 50, 100],
        "the canary Ingress carried the step weights in order\n{context}"
    );
    // Promotion: web was un-paused on the new image and rolled completely while un-paused,
    // then paused again, adopted for the next release.
    let states = rig.web_states();
    let rolled = DeploymentState {
        paused: false,
        image: "web:2".into(),
        updated: 4,
        ready: 4,
    };
    let adopted = states.iter().position(|d| d.paused).unwrap_or(states.len());
    let unpaused = states[adopted..].iter().find(|d| !d.paused);
    assert!(
        unpaused.is_some_and(|d| d.image == "web:2"),
        "once adopted, web was first un-paused on the new image\n{context}"
    );
    assert!(
        states.contains(&rolled),
        "web rolled to web:2 while un-paused\n{context}"
    );
    assert_eq!(
        states.last().map(|d| (d.paused, d.image.as_str())),
        Some((true, "web:2")),
        "web is paused again (adopted) on the new template\n{context}"
    );
    assert_eq!(
        rig.serving_replicasets(),
        vec![("web:2".to_string(), 4, 4)],
        "only the new ReplicaSet has replicas\n{context}"
    );
    assert_eq!(
        rig.get(&Res::deployments(), "web-canary"),
        None,
        "{context}"
    );
    assert_eq!(
        rig.get(&Res::core("services"), "web-canary"),
        None,
        "{context}"
    );
    assert_eq!(rig.get(&ingresses(), "web-canary"), None, "{context}");
    let service = rig.get(&Res::core("services"), "web").expect("Service web");
    assert_eq!(
        service["spec"]["selector"],
        json!({"app": "web"}),
        "the Service's selector is restored\n{context}"
    );
    let new_revision = status["stableRevision"].as_str().unwrap_or_default();
    assert!(
        !new_revision.is_empty() && new_revision != stable_revision,
        "the stable revision moved on from {stable_revision}\n{context}"
    );
    assert_eq!(status["lastVerdict"], "pass", "{context}");
    println!(
        "promoted in {:.1} s; weights {:?}",
        rig.started.elapsed().as_secs_f64(),
        rig.traffic.weights()
    );
    every_dashboard_query_has_data(&mut rig).await;
}

/// The Grafana dashboard, deploy/grafana/vigil.json: every query of every panel returns at
/// least one series over the rollout from the Prometheus that scraped vigil, as Grafana would
/// ask it with the Release selected: `$namespace` and `$canary` this one, `$__rate_interval`
/// four scrape intervals (Grafana's rule for a 1 s scrape), `$__range` the time since the
/// rig started. Waits a few scrapes for the last counters to show.
async fn every_dashboard_query_has_data(rig: &mut Rig) {
    let path = common::root().join("deploy/grafana/vigil.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let range = format!("{}s", rig.started.elapsed().as_secs().max(1));
        let (mut queries, mut empty) = (0, Vec::new());
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: a target without expr"))
                    .replace("$__rate_interval", "4s")
                    .replace("$__range", &range)
                    .replace("$namespace", NS)
                    .replace("$canary", "web");
                assert!(
                    !expr.contains('$'),
                    "{title}: an unknown variable in {expr}"
                );
                queries += 1;
                match rig.prom.range_series(&expr, rig.started_at).await {
                    Ok(0) => empty.push(format!("{title}: {expr}")),
                    Ok(_) => {}
                    Err(e) => panic!("{title}: {expr}: {e}"),
                }
            }
        }
        assert!(queries >= 10, "{queries} queries in the dashboard");
        if empty.is_empty() {
            println!("all {queries} dashboard queries have data");
            return;
        }
        if Instant::now() > deadline {
            let context = rig.context();
            panic!(
                "dashboard queries without data:\n{}\n{context}",
                empty.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regressing_canary_is_rolled_back_end_to_end() {
    let mut rig = Rig::start(Model::default().regressing()).await;
    let stable_revision = rig.release().await;

    rig.wait_for_phase(
        "Failed",
        &["Succeeded", "Promoting"],
        Duration::from_secs(120),
    )
    .await;
    rig.wait_for_all_traffic_on_stable().await;
    rig.wait_until(
        "web-canary is scaled to zero after abortScaleDownDelay",
        Duration::from_secs(15),
        |rig| {
            rig.get(&Res::deployments(), "web-canary")
                .is_none_or(|d| d["spec"]["replicas"] == 0)
        },
    )
    .await;
    let status = rig.status();
    let context = rig.context();

    assert_eq!(
        rig.canary_weights(),
        vec![10],
        "no weight beyond the first step's reached the canary\n{context}"
    );
    assert_eq!(rig.get(&ingresses(), "web-canary"), None, "{context}");
    let states = rig.web_states();
    assert!(
        states.iter().skip_while(|d| !d.paused).all(|d| d.paused),
        "once adopted, web was never un-paused\n{context}"
    );
    assert_eq!(
        states.last().map(|d| (d.paused, d.image.as_str())),
        Some((true, "web:2")),
        "web stays paused, its template untouched\n{context}"
    );
    assert_eq!(
        rig.serving_replicasets(),
        vec![("web:1".to_string(), 4, 4)],
        "web still runs the old image's ReplicaSet, all ready\n{context}"
    );
    assert_eq!(
        status["stableRevision"].as_str(),
        Some(stable_revision.as_str()),
        "{context}"
    );
    assert!(
        status["failedRevision"].as_str().is_some(),
        "the failed revision is recorded\n{context}"
    );
    assert_eq!(
        status["failedRevision"], status["canaryRevision"],
        "{context}"
    );
    assert_eq!(status["lastVerdict"], "fail", "{context}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("error-rate"),
        "the message names the failing metric: {message:?}\n{context}"
    );
    println!(
        "rolled back in {:.1} s; weights {:?}",
        rig.started.elapsed().as_secs_f64(),
        rig.traffic.weights()
    );
}

// ---------------------------------------------------------------------------------------
// Blue-green: the same rig, the Release switched to `blueGreen`.
// ---------------------------------------------------------------------------------------

/// The share of the generator's requests that testers send to the preview Service while the
/// new version has ready pods and no users' traffic: the pre-promotion analysis judges them.
const PREVIEW_TEST_SHARE: u8 = 10;

/// A blue-green Release through ingress-nginx with both analyses on the ingress-nginx
/// template, and a 10 s scale-down delay.
fn blue_green() -> Variant {
    let analysis = json!({"templates": [{"name": "ingress-nginx"}]});
    Variant {
        spec: json!({
            "stepWeights": [],
            "blueGreen": {
                "prePromotionAnalysis": analysis,
                "postPromotionAnalysis": analysis,
                "scaleDownDelay": "10s",
            },
            "analysis": {
                "args": [
                    {"name": "namespace", "value": NS},
                    {"name": "ingress", "value": "web"},
                ],
                "interval": "5s",
            },
        }),
        canary_service: "web-preview",
        // Users reach the new version only through the canary Ingress (100% after the
        // switch); before it, testers' requests reach the preview while it has ready pods.
        share: |fake| {
            let users = nginx_canary_weight(fake.get(&ingresses(), NS, "web-canary").as_ref());
            let preview_ready = fake
                .get(&Res::deployments(), NS, "web-canary")
                .and_then(|d| d["status"]["readyReplicas"].as_i64())
                .is_some_and(|n| n > 0);
            match users {
                0 if preview_ready => PREVIEW_TEST_SHARE,
                w => w,
            }
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_blue_green_is_promoted_end_to_end() {
    let mut rig = Rig::start_with(Model::default(), blue_green()).await;
    // After the switch the old version serves nobody: the post-promotion analysis judges the
    // new one against the old one's requests over as long a window before the switch. Let
    // that history gather first (without it the comparison has too little data, and holds).
    tokio::time::sleep(Duration::from_secs(30)).await;
    rig.release().await;
    rig.wait_until(
        "the preview Service selects the new version",
        Duration::from_secs(30),
        |rig| rig.get(&Res::core("services"), "web-preview").is_some(),
    )
    .await;
    rig.wait_for_phase("Succeeded", &["Failed"], Duration::from_secs(120))
        .await;
    rig.wait_for_all_traffic_on_stable().await;
    let context = rig.context();
    assert_eq!(
        rig.canary_weights(),
        vec![PREVIEW_TEST_SHARE, 100],
        "test traffic on the preview, then all users at once\n{context}"
    );
    assert_eq!(
        rig.serving_replicasets(),
        vec![("web:2".to_string(), 4, 4)],
        "the stable Deployment rolled to the new version\n{context}"
    );
    assert_eq!(
        rig.get(&Res::core("services"), "web-preview"),
        None,
        "{context}"
    );
    assert_eq!(
        rig.get(&Res::deployments(), "web-canary"),
        None,
        "{context}"
    );
    assert_eq!(rig.status()["lastVerdict"], "pass", "{context}");
    println!(
        "blue-green promoted in {:.1} s; weights {:?}",
        rig.started.elapsed().as_secs_f64(),
        rig.traffic.weights()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_blue_green_preview_is_rolled_back_end_to_end() {
    let mut rig = Rig::start_with(Model::default().regressing(), blue_green()).await;
    rig.release().await;
    rig.wait_for_phase(
        "Failed",
        &["Succeeded", "Promoting"],
        Duration::from_secs(120),
    )
    .await;
    let context = rig.context();
    assert_eq!(
        rig.canary_weights(),
        vec![PREVIEW_TEST_SHARE],
        "only testers reached the new version\n{context}"
    );
    assert!(
        rig.fake.history(&ingresses(), NS, "web-canary").is_empty(),
        "no canary Ingress ever existed\n{context}"
    );
    assert_eq!(
        rig.serving_replicasets(),
        vec![("web:1".to_string(), 4, 4)],
        "users stayed on the old version's ReplicaSet\n{context}"
    );
    let status = rig.status();
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("aborted at step 1/2") && message.contains("error-rate"),
        "{message}\n{context}"
    );
    assert_eq!(status["lastVerdict"], "fail", "{context}");
}

// ---------------------------------------------------------------------------------------
// Bake: the canary Release with a bake after the promotion.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_regression_during_the_bake_is_rolled_back_end_to_end() {
    let variant = Variant {
        spec: json!({
            "bake": {"duration": "5m", "templates": [{"name": "ingress-nginx"}]},
        }),
        ..Variant::canary()
    };
    let mut rig = Rig::start_with(Model::default(), variant).await;
    // The bake compares the promoted version with the traffic before the release over as
    // long a window as it has baked: let some history gather first.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let stable_revision = rig.release().await;
    rig.wait_for_phase("Baking", &["Failed"], Duration::from_secs(60))
        .await;
    let context = rig.context();
    assert_eq!(
        rig.serving_replicasets(),
        vec![("web:2".to_string(), 4, 4)],
        "promoted: the stable Deployment runs the new version\n{context}"
    );
    // The new version, now in the stable pods, regresses under full load.
    rig.traffic.set_stable(Model::default().regressing());
    rig.wait_for_phase("Failed", &["Succeeded"], Duration::from_secs(60))
        .await;
    rig.wait_until(
        "the Deployment rolled back to web:1",
        Duration::from_secs(10),
        |rig| rig.serving_replicasets() == vec![("web:1".to_string(), 4, 4)],
    )
    .await;
    let status = rig.status();
    let context = rig.context();
    assert_eq!(
        status["stableRevision"].as_str(),
        Some(stable_revision.as_str()),
        "{context}"
    );
    assert_eq!(
        status["failedRevision"], status["canaryRevision"],
        "{context}"
    );
    let failed = status["analyses"]
        .as_array()
        .and_then(|a| a.iter().rev().find(|a| a["verdict"] == "fail"))
        .unwrap_or_else(|| panic!("a failed bake analysis\n{context}"));
    assert!(
        failed["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("error-rate"),
        "{context}"
    );
    println!(
        "rolled back from the bake in {:.1} s",
        rig.started.elapsed().as_secs_f64()
    );
}
