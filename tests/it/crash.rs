//! Crash test: `vigil run` (the binary, as a child process) drives ten Releases through 60
//! rollouts against the fake API server and a real Prometheus, and is killed with SIGKILL
//! at random moments: right after a router write (the canary Ingress) before the status
//! write that records it, right after a status write (mid-reconcile: events and the next
//! reconcile not yet done), in the middle of an analysis (between two Prometheus queries),
//! and at plain random times. After each kill it is started again, and the rollouts carry
//! on. At the end every rollout has ended exactly once, as its data dictate (a healthy
//! canary promoted, a regressing one aborted), with no weight step repeated or skipped, and
//! nothing left behind.
//!
//! The moments are drawn from a seeded generator: the test prints the seed, and
//! `VIGIL_CRASH_SEED=N` runs it again with the same choices (the timing of the processes
//! still varies a little from run to run).
//!
//! Prometheus scrapes a small exporter the test serves every second: counters that grow at
//! fixed rates, the same for stable (`version="v1"`) and a healthy canary
//! (`version="v2-good"`), five times the error rate for a regressing one
//! (`version="v2-bad"`). The controller reaches Prometheus through a proxy in this process,
//! which is how a kill lands between two queries of an analysis.

use crate::common::fake_kube::{FakeKube, Options as FakeOptions, RequestRecord, Res};
use crate::common::traffic::nginx_canary_weight;
use crate::common::{self, PromServer, free_port};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::api::crd::{Release, ReleaseAnalysis};
use vigil::source::simulated::Rng;

const NS: &str = "crash";
/// The Releases, rolled out in parallel.
const APPS: usize = 10;
/// Rollouts per Release, one after the other.
const ROUNDS: usize = 6;
/// The canary weights of every rollout.
const WEIGHTS: [u8; 4] = [20, 40, 70, 100];
/// The default seed (`VIGIL_CRASH_SEED` overrides it).
const DEFAULT_SEED: u64 = 20_261_202;
/// The longest one app's rollouts may take, kills included, before the test gives up.
const LIMIT: Duration = Duration::from_secs(170);

fn releases() -> Res {
    Res::new("vigil.dev", "v1alpha1", "releases")
}

fn ingresses() -> Res {
    Res::new("networking.k8s.io", "v1", "ingresses")
}

fn app(i: usize) -> String {
    format!("app-{i}")
}

/// Apps whose canaries regress: every one of their rollouts must be aborted.
fn regressing(i: usize) -> bool {
    i % 5 == 4
}

fn image(round: usize) -> String {
    format!("app:{}", round + 2)
}

// --- the data ---------------------------------------------------------------------------

/// Upper bounds of the latency histogram's buckets.
const BUCKETS: [f64; 8] = [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2];

/// `(version, requests per second, error share)` of the exported series.
const SERIES: [(&str, f64, f64); 3] = [
    ("v1", 4000.0, 0.02),
    ("v2-good", 2000.0, 0.02),
    ("v2-bad", 2000.0, 0.10),
];

/// The exposition at `elapsed` seconds after the exporter started: every counter is its
/// rate times the time, so that any window holds the same shares.
fn exposition(elapsed: f64) -> String {
    use statrs::distribution::{ContinuousCDF, Normal};
    use std::fmt::Write as _;
    let normal = Normal::new(0.0, 1.0).expect("normal");
    // Log-normal latencies, median 100 ms, for every version alike.
    let shares: Vec<f64> = BUCKETS
        .iter()
        .map(|le| normal.cdf((le / 0.1_f64).ln() / 0.5))
        .collect();
    let mut out = String::from("# TYPE http_requests_total counter\n");
    for (version, rps, errors) in SERIES {
        let total = (elapsed * rps).floor();
        let failed = (total * errors).floor();
        let _ = writeln!(
            out,
            "http_requests_total{{version=\"{version}\",code=\"200\"}} {}",
            total - failed
        );
        let _ = writeln!(
            out,
            "http_requests_total{{version=\"{version}\",code=\"500\"}} {failed}"
        );
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (version, rps, _) in SERIES {
        let total = (elapsed * rps).floor();
        for (le, share) in BUCKETS.iter().zip(&shares) {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{version=\"{version}\",le=\"{le}\"}} {}",
                (total * share).floor()
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{version=\"{version}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{version=\"{version}\"}} {}",
            total * 0.11
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{version=\"{version}\"}} {total}"
        );
    }
    out
}

/// Serves [`exposition`] on `/metrics`; returns `host:port`.
async fn start_exporter() -> String {
    let started = Instant::now();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { exposition(started.elapsed().as_secs_f64()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    target
}

// --- the kills --------------------------------------------------------------------------

/// Where the next kill lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// Right after a write to a canary Ingress, before vigil hears it was made (and so
    /// before the status write that records the step).
    RouterWrite,
    /// Right after a Release status write, before vigil hears of it.
    StatusWrite,
    /// In the middle of an analysis: before a Prometheus query is forwarded.
    Query,
    /// After a random delay.
    Timer,
}

/// A kill armed: at the `skip + 1`-th matching moment.
struct Armed {
    moment: Moment,
    skip: u32,
}

/// The `vigil run` process, started again after each kill.
struct Vigil {
    child: Mutex<Option<Child>>,
    armed: Mutex<Option<Armed>>,
    kills: Mutex<Vec<(Moment, String)>>,
    starts: Mutex<u32>,
    killed: tokio::sync::Notify,
    kubeconfig: PathBuf,
    /// The proxy's URL, set once it listens.
    prometheus: std::sync::OnceLock<String>,
    log: PathBuf,
}

impl Vigil {
    fn start(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "vigil is already running");
        let mut starts = self.starts.lock().unwrap();
        *starts += 1;
        let mut out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        use std::io::Write as _;
        let _ = writeln!(out, "===== start {} =====", *starts);
        let err = out.try_clone().expect("log file");
        *child = Some(
            common::vigil()
                .args(["run", "--prometheus"])
                .arg(self.prometheus.get().expect("the proxy's URL"))
                .args(["--listen", &format!("127.0.0.1:{}", free_port())])
                .args(["--watch-namespace", NS, "--log-format", "text"])
                .env("KUBECONFIG", &self.kubeconfig)
                .env("VIGIL_LOG", "info")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start vigil run"),
        );
    }

    /// SIGKILL, at once; `what` says where it landed.
    fn kill(&self, moment: Moment, what: String) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        *self.armed.lock().unwrap() = None;
        self.kills.lock().unwrap().push((moment, what));
        self.killed.notify_one();
    }

    /// Kills if a kill is armed for `moment` and its skips are used up.
    fn at(&self, moment: Moment, what: impl FnOnce() -> String) {
        let fire = {
            let mut armed = self.armed.lock().unwrap();
            match armed.as_mut() {
                Some(a) if a.moment == moment && a.skip == 0 => true,
                Some(a) if a.moment == moment => {
                    a.skip -= 1;
                    false
                }
                _ => false,
            }
        };
        if fire {
            self.kill(moment, what());
        }
    }

    /// Whether vigil exited by itself (it should run until killed).
    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A proxy to Prometheus that gives `vigil` a chance to be killed before each query.
async fn start_proxy(prometheus: String, vigil: Arc<Vigil>) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (http, prometheus, vigil) = (http.clone(), prometheus.clone(), vigil.clone());
            async move {
                vigil.at(Moment::Query, || format!("before query {uri}"));
                let mut request = http.request(method, format!("{prometheus}{uri}"));
                if let Some(kind) = headers.get(axum::http::header::CONTENT_TYPE) {
                    request = request.header(axum::http::header::CONTENT_TYPE, kind);
                }
                match request.body(body).send().await {
                    Ok(answer) => {
                        let code = answer.status().as_u16();
                        let body = answer.bytes().await.unwrap_or_default();
                        (
                            axum::http::StatusCode::from_u16(code)
                                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                    Err(e) => (
                        axum::http::StatusCode::BAD_GATEWAY,
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        Bytes::from(e.to_string()),
                    ),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Kills and restarts vigil until `done`: each time it draws a moment, arms it (or sleeps a
/// random delay for a timed kill), waits for the kill, and starts vigil again after a short
/// random pause. Vigil gets at least half a second between a start and the next kill's arming.
async fn chaos(vigil: Arc<Vigil>, seed: u64, done: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    let between = |rng: &mut Rng, lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs_f64(between(&mut rng, 0.5, 2.0))).await;
        let moment = match rng.next_u64() % 4 {
            0 => Moment::RouterWrite,
            1 => Moment::StatusWrite,
            2 => Moment::Query,
            _ => Moment::Timer,
        };
        let skip = (rng.next_u64() % 4) as u32;
        let delay = Duration::from_secs_f64(between(&mut rng, 0.0, 2.0));
        let pause = Duration::from_secs_f64(between(&mut rng, 0.0, 0.5));
        if moment == Moment::Timer {
            tokio::time::sleep(delay).await;
            vigil.kill(moment, format!("{:.2} s after arming", delay.as_secs_f64()));
        } else {
            *vigil.armed.lock().unwrap() = Some(Armed { moment, skip });
            // A moment that does not come (all rollouts between steps) is given up.
            let _ = tokio::time::timeout(Duration::from_secs(10), vigil.killed.notified()).await;
            *vigil.armed.lock().unwrap() = None;
        }
        if vigil.child.lock().unwrap().is_none() {
            tokio::time::sleep(pause).await;
            vigil.start();
        }
    }
}

// --- the cluster ------------------------------------------------------------------------

/// Deployment, Service, Ingress and Release `app-<i>`.
fn create_app(fake: &FakeKube, i: usize) {
    let name = app(i);
    common::put_app(fake, NS, &name);
    let canary = if regressing(i) { "v2-bad" } else { "v2-good" };
    fake.put_object(
        &releases(),
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "targetRef": {"name": name},
                "service": {"name": name, "port": 80},
                "routing": {"nginx": {"ingress": name}},
                "stepWeights": WEIGHTS,
                "abortScaleDownDelay": "1s",
                "progressDeadline": "2m",
                "analysis": {
                    "templates": [{"name": "http-prometheus-client"}],
                    // The exporter's series carry the scrape's job label.
                    "args": [{"name": "job", "value": "traffic"}],
                    "interval": "2s",
                    // The exporter gives the canary a fixed share whatever the weight.
                    "checkSplit": false,
                    "stableMatchers": "version=\"v1\"",
                    "canaryMatchers": format!("version=\"{canary}\"")
                }
            }
        }),
    );
}

fn status(fake: &FakeKube, i: usize) -> Value {
    fake.get(&releases(), NS, &app(i))
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

/// The revision vigil gives Deployment `app-<i>`'s current pod template.
fn revision(fake: &FakeKube, i: usize) -> String {
    let deployment: Deployment = fake.get_as(NS, &app(i)).expect("deployment");
    let template = deployment.spec.template;
    vigil::api::plan::revision(&serde_json::to_value(&template).expect("template JSON"))
}

/// The revision a status entry is about: the failed one once it failed, else the canary.
fn rollout_revision(status: &Value) -> Option<&str> {
    if status["phase"] == "Failed" {
        status["failedRevision"].as_str()
    } else {
        status["canaryRevision"].as_str()
    }
}

/// Sets the image of round `round`, waits for that rollout to end, and returns its
/// revision and phase.
async fn roll_out(
    fake: &FakeKube,
    vigil: &Vigil,
    i: usize,
    round: usize,
) -> Result<(String, String), String> {
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(fake.client(), NS);
    deployments
        .patch(
            &app(i),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": image(round)}
            ]}}}})),
        )
        .await
        .map_err(|e| format!("cannot set the image: {e}"))?;
    let rev = revision(fake, i);
    let started = Instant::now();
    loop {
        let s = status(fake, i);
        let phase = s["phase"].as_str().unwrap_or_default();
        let ended = match phase {
            "Succeeded" => s["stableRevision"] == rev.as_str(),
            "Failed" => s["failedRevision"] == rev.as_str(),
            _ => false,
        };
        if ended {
            return Ok((rev, phase.to_string()));
        }
        if let Some(exit) = vigil.exited() {
            return Err(format!("vigil exited by itself: {exit}"));
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{} round {round} did not end within 60 s; status {s:#}",
                app(i)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every Release's rollouts one after the other, all Releases at once.
async fn drive(fake: &FakeKube, vigil: &Vigil) -> Result<Vec<Vec<(String, String)>>, String> {
    let apps = (0..APPS).map(|i| async move {
        let adopted = Instant::now();
        while status(fake, i)["phase"] != "Waiting" {
            if adopted.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} was not adopted within 30 s", app(i)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut outcomes = Vec::new();
        for round in 0..ROUNDS {
            outcomes.push(roll_out(fake, vigil, i, round).await?);
        }
        Ok::<_, String>(outcomes)
    });
    futures::future::join_all(apps).await.into_iter().collect()
}

// --- the checks -------------------------------------------------------------------------

/// The states a Release's status went through, consecutive repeats once: (rollout
/// revision, phase, currentStep).
fn status_history(fake: &FakeKube, i: usize) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = Vec::new();
    for version in fake.history(&releases(), NS, &app(i)).into_iter().flatten() {
        let s = &version["status"];
        let entry = (
            rollout_revision(s).unwrap_or_default().to_string(),
            s["phase"].as_str().unwrap_or_default().to_string(),
            s["currentStep"].as_u64().unwrap_or(0),
        );
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The canary Ingress's lives (from its creation to its deletion), each as the non-zero
/// weights it carried, consecutive repeats once.
fn weight_lives(fake: &FakeKube, i: usize) -> Vec<Vec<u8>> {
    let mut lives: Vec<Vec<u8>> = Vec::new();
    let mut alive = false;
    for version in fake.history(&ingresses(), NS, &format!("{}-canary", app(i))) {
        match version {
            None => alive = false,
            Some(ingress) => {
                if !alive {
                    lives.push(Vec::new());
                    alive = true;
                }
                let weight = nginx_canary_weight(Some(&ingress));
                let life = lives.last_mut().expect("a life");
                if weight != 0 && life.last() != Some(&weight) {
                    life.push(weight);
                }
            }
        }
    }
    lives
}

/// What is wrong with app `i`'s rollouts, given their outcomes.
fn check_app(fake: &FakeKube, i: usize, outcomes: &[(String, String)]) -> Vec<String> {
    let name = app(i);
    let mut wrong = Vec::new();
    let want_phase = if regressing(i) { "Failed" } else { "Succeeded" };
    for (round, (_, phase)) in outcomes.iter().enumerate() {
        if phase != want_phase {
            wrong.push(format!(
                "{name} round {round} ended {phase}, not {want_phase}"
            ));
        }
    }
    // Each rollout ends exactly once, its steps one after the other.
    let history = status_history(fake, i);
    let last_step = if regressing(i) {
        0
    } else {
        WEIGHTS.len() as u64 - 1
    };
    for (round, (rev, _)) in outcomes.iter().enumerate() {
        let entries: Vec<&(String, String, u64)> =
            history.iter().filter(|(r, _, _)| r == rev).collect();
        let mut ends = 0;
        let mut previous_terminal = false;
        let mut steps: Vec<u64> = Vec::new();
        for (_, phase, step) in &entries {
            let terminal = phase == "Succeeded" || phase == "Failed";
            if terminal && !previous_terminal {
                ends += 1;
            }
            previous_terminal = terminal;
            if phase == "Progressing" && steps.last() != Some(step) {
                steps.push(*step);
            }
        }
        if ends != 1 {
            wrong.push(format!(
                "{name} round {round} ended {ends} times: {entries:?}"
            ));
        }
        let want: Vec<u64> = (0..=last_step).collect();
        if steps != want {
            wrong.push(format!(
                "{name} round {round}: steps {steps:?}, want {want:?} (statuses {entries:?})"
            ));
        }
    }
    // The canary Ingress: one life per rollout, each through the weights once.
    let lives = weight_lives(fake, i);
    let want: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|_| {
            if regressing(i) {
                WEIGHTS[..1].to_vec()
            } else {
                WEIGHTS.to_vec()
            }
        })
        .collect();
    if lives != want {
        wrong.push(format!(
            "{name}: the canary Ingress's weights were {lives:?}, want {want:?}"
        ));
    }
    // Nothing left behind.
    if fake
        .get(&ingresses(), NS, &format!("{name}-canary"))
        .is_some()
    {
        wrong.push(format!("{name}: the canary Ingress is left"));
    }
    let stable_states = fake.history(&ingresses(), NS, &name);
    if stable_states.len() != 1 {
        wrong.push(format!(
            "{name}: the stable Ingress was changed: {stable_states:?}"
        ));
    }
    let service = fake.get(&Res::core("services"), NS, &name);
    if service.as_ref().map(|s| &s["spec"]["selector"]) != Some(&json!({"app": name})) {
        wrong.push(format!(
            "{name}: the stable Service is left pinned: {service:?}"
        ));
    }
    let canary_deployment = fake.get(&Res::deployments(), NS, &format!("{name}-canary"));
    let canary_service = fake.get(&Res::core("services"), NS, &format!("{name}-canary"));
    let deployment = fake.get(&Res::deployments(), NS, &name).unwrap_or_default();
    if deployment["spec"]["paused"] != true {
        wrong.push(format!(
            "{name}: the Deployment is not paused for the next release"
        ));
    }
    let serving: Vec<String> = fake
        .list(&Res::replicasets(), Some(NS))
        .iter()
        .filter(|rs| rs["metadata"]["ownerReferences"][0]["name"] == name.as_str())
        .filter(|rs| rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0)
        .map(|rs| {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    if regressing(i) {
        // Aborted: the canary Deployment stays, scaled to zero; stable runs the first image.
        if canary_deployment
            .as_ref()
            .is_some_and(|d| d["spec"]["replicas"] != 0)
        {
            wrong.push(format!("{name}: the aborted canary still has replicas"));
        }
        if serving != ["app:1"] {
            wrong.push(format!("{name}: stable serves {serving:?}, not app:1"));
        }
    } else {
        if canary_deployment.is_some() {
            wrong.push(format!("{name}: the canary Deployment is left"));
        }
        if canary_service.is_some() {
            wrong.push(format!("{name}: the canary Service is left"));
        }
        if serving != [image(ROUNDS - 1)] {
            wrong.push(format!(
                "{name}: stable serves {serving:?}, not {}",
                image(ROUNDS - 1)
            ));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_carry_on_exactly_once_through_random_sigkills() {
    let seed = std::env::var("VIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("crash test seed {seed} (VIGIL_CRASH_SEED={seed} reproduces the kills' choices)");
    let began = Instant::now();

    let exporter = start_exporter().await;
    let prom = tokio::task::block_in_place(|| {
        PromServer::start_scraping(&[exporter], Duration::from_secs(1))
    });
    let fake = FakeKube::start_with(FakeOptions {
        ready_delay: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await;
    fake.register::<Release>();
    fake.register::<ReleaseAnalysis>();
    crate::common::controller::put_template(&fake, NS);
    for i in 0..APPS {
        create_app(&fake, i);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);

    let vigil = Arc::new(Vigil {
        child: Mutex::new(None),
        armed: Mutex::new(None),
        kills: Mutex::new(Vec::new()),
        starts: Mutex::new(0),
        killed: tokio::sync::Notify::new(),
        kubeconfig,
        prometheus: std::sync::OnceLock::new(),
        log: dir.path().join("vigil.log"),
    });
    let proxy = start_proxy(prom.url.clone(), vigil.clone()).await;
    let _ = vigil.prometheus.set(proxy);
    run(&fake, vigil, seed, began).await;
}

/// Runs the rollouts through the kills, then checks them.
async fn run(fake: &FakeKube, vigil: Arc<Vigil>, seed: u64, began: Instant) {
    fake.on_write(Some(Arc::new({
        let vigil = vigil.clone();
        move |request: &RequestRecord| {
            let path = &request.path;
            if path.contains("/ingresses/")
                || (request.method == "POST" && path.ends_with("/ingresses"))
            {
                vigil.at(Moment::RouterWrite, || {
                    format!("after {} {path}", request.method)
                });
            } else if path.contains("/releases/") && path.ends_with("/status") {
                vigil.at(Moment::StatusWrite, || {
                    format!("after {} {path}", request.method)
                });
            }
        }
    })));
    vigil.start();
    let done = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(chaos(vigil.clone(), seed, done.clone()));
    let outcome = tokio::time::timeout(LIMIT, drive(fake, &vigil)).await;
    done.store(true, Ordering::Relaxed);
    let _ = chaos.await;
    fake.on_write(None);
    if vigil.child.lock().unwrap().is_none() {
        vigil.start();
    }
    let kills = vigil.kills.lock().unwrap().clone();
    let mut by_moment: BTreeMap<String, usize> = BTreeMap::new();
    for (moment, _) in &kills {
        *by_moment.entry(format!("{moment:?}")).or_default() += 1;
    }
    let summary = format!(
        "seed {seed}; {} kills {by_moment:?}; {} starts; {:.1} s",
        kills.len(),
        vigil.starts.lock().unwrap(),
        began.elapsed().as_secs_f64()
    );
    let context = |fake: &FakeKube| {
        let statuses: Vec<String> = (0..APPS)
            .map(|i| {
                format!(
                    "{}: {} step {} {:?}",
                    app(i),
                    status(fake, i)["phase"],
                    status(fake, i)["currentStep"],
                    status(fake, i)["message"]
                )
            })
            .collect();
        format!(
            "{summary}\nkills: {kills:?}\nreleases:\n  {}\n--- vigil log (last lines) ---\n{}",
            statuses.join("\n  "),
            vigil.log_tail(60)
        )
    };
    let outcomes = match outcome {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(e)) => panic!("{e}\n{}", context(fake)),
        Err(_) => panic!(
            "the rollouts did not end within {LIMIT:?}\n{}",
            context(fake)
        ),
    };
    // Aborted canaries are scaled to zero abortScaleDownDelay after the abort.
    let settled = Instant::now();
    while (0..APPS).filter(|i| regressing(*i)).any(|i| {
        fake.get(&Res::deployments(), NS, &format!("{}-canary", app(i)))
            .is_some_and(|d| d["spec"]["replicas"] != 0)
    }) && settled.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .enumerate()
        .flat_map(|(i, o)| check_app(fake, i, o))
        .collect();
    let rollouts: usize = outcomes.iter().map(Vec::len).sum();
    println!("{rollouts} rollouts; {summary}");
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), context(fake));
    assert!(rollouts >= 50, "{rollouts} rollouts");
    assert!(kills.len() >= 10, "too few kills to mean much: {summary}");
}
