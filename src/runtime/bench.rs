//! `vigil bench controller`: the controller of `vigil run` (reconciler, routers, analysis;
//! no notifications, no HTTP server) run in this process, against the fake Kubernetes API
//! server ([`crate::fake_kube`]) and a simulated Prometheus
//! ([`crate::bench::fake_prometheus`]) that run in another process, so that this process's
//! memory and CPU are the controller's own.
//!
//! The benchmark sets up `canaries` applications over `namespaces` (a Deployment, a Service,
//! an ingress-nginx Ingress and a Release each, and the template `http-prometheus-client` in
//! every namespace), waits until the controller has adopted them all, then releases a new
//! version of each, spread over one analysis interval, on a clock that runs `speed` times
//! faster than real time. Each Release's plan has [`WEIGHTS`] as steps, each held at least
//! `minutes / 8` (`minDuration`), with a background analysis every minute whose window
//! starts at the canary's first traffic: an analysis an hour into a rollout judges an hour
//! of data. The simulated canary behaves as stable does, so a rollout goes through every
//! step and is promoted unless the judge falsely aborts it.
//!
//! The setup and the releases are sent with the [`CLIENT_HEADER`] `bench`, so that the API
//! requests counted are the controller's only.

use crate::api::crd::{Release, ReleaseAnalysis};
use crate::cluster::clock::Clock;
use crate::cluster::reconciler::{self, Context, Observer};
use crate::data::{QueryRequest, QueryResult};
use crate::fake_kube::CLIENT_HEADER;
use crate::source::prometheus::{Prometheus, PrometheusConfig};
use crate::source::{MetricSource, SourceError};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The canary weights of every Release's steps, in percent.
pub const WEIGHTS: [u8; 8] = [5, 10, 20, 30, 40, 50, 60, 80];

/// The template every Release is judged with.
pub const TEMPLATE_YAML: &str =
    include_str!("../../analysis-templates/http-prometheus-client.yaml");

/// The canary's matchers in the Releases' queries; the simulated Prometheus tells the
/// versions apart by them.
pub const CANARY_MATCHERS: &str = "version=\"v2\"";

/// The stable version's matchers.
pub const STABLE_MATCHERS: &str = "version=\"v1\"";

/// The value of [`CLIENT_HEADER`] on the benchmark's own requests.
pub const DRIVER: &str = "bench";

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Releases in flight.
    pub canaries: usize,
    /// Namespaces they are spread over.
    pub namespaces: usize,
    /// The planned length of a rollout in simulated minutes: the sum of its steps' least
    /// durations.
    pub minutes: u32,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Prometheus queries in flight per analysis (`vigil run --concurrency`).
    pub concurrency: usize,
    /// Reconciles at once at most (`vigil run --workers`; 0: no bound).
    pub workers: u16,
}

/// Where the fake services of the benchmark listen, and their process.
#[derive(Debug, Clone)]
pub struct Services {
    /// The fake Kubernetes API server's base URL.
    pub kube: String,
    /// The simulated Prometheus's base URL.
    pub prometheus: String,
    /// The process serving both.
    pub pid: u32,
}

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// What ran.
    pub config: Config,
    /// The steps' weights and least duration.
    pub plan: PlanFigures,
    /// How long the measurement lasted.
    pub duration: DurationFigures,
    /// This process: the controller (and the benchmark's small bookkeeping).
    pub controller: ProcessFigures,
    /// The other process: the fake API server and the simulated Prometheus.
    pub services: ProcessFigures,
    /// The controller's requests to the API server.
    pub api_requests: RequestFigures,
    /// The analyses.
    pub analyses: AnalysisFigures,
    /// The reconciles.
    pub reconciles: ReconcileFigures,
    /// Whether every rollout went through its plan.
    pub rollouts: RolloutFigures,
}

/// Each Release's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFigures {
    /// The steps' weights.
    pub weights: Vec<u8>,
    /// Each step's `minDuration`, in seconds.
    pub step_seconds: u64,
}

/// How long the measurement lasted: from the first release to the last rollout's end.
#[derive(Debug, Clone, Serialize)]
pub struct DurationFigures {
    /// On the controller's clock.
    pub simulated_minutes: f64,
    /// In real time.
    pub real_seconds: f64,
    /// The rollouts' simulated minutes in flight, summed.
    pub canary_minutes: f64,
    /// `canary_minutes / simulated_minutes`.
    pub mean_in_flight: f64,
}

/// One process's resources.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    /// Peak resident memory (VmHWM) in MiB: for the controller, from its start (the
    /// benchmark's own setup before it is not counted, see `peak_from`); for the services,
    /// over their whole life.
    pub peak_rss_mib: f64,
    /// Since when `peak_rss_mib` counts: `controller start`, or `process start` where the
    /// kernel would not reset the peak (`/proc/self/clear_refs`).
    pub peak_from: String,
    /// The most anonymous memory (heap, stacks) resident, sampled every second, in MiB.
    pub peak_anon_mib: f64,
    /// The most file-backed memory resident (the binary's code and data mapped from disk,
    /// which the kernel can drop and read again), sampled every second, in MiB.
    pub peak_file_mib: f64,
    /// Resident memory when the releases started, in MiB.
    pub rss_at_start_mib: f64,
    /// CPU time (user and system) during the measurement, in seconds.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per simulated minute.
    pub cpu_seconds_per_minute: f64,
    /// The cores this is at 1-minute intervals in real time: `cpu_seconds_per_minute / 60`.
    pub cores: f64,
    /// The cores used during the accelerated run: `cpu_seconds / real_seconds`.
    pub cores_accelerated: f64,
}

/// API requests.
#[derive(Debug, Clone, Serialize)]
pub struct RequestFigures {
    /// All of them.
    pub total: u64,
    /// By verb.
    pub by_verb: BTreeMap<String, u64>,
    /// By verb, per simulated minute.
    pub per_minute: BTreeMap<String, f64>,
}

/// The cost of analyses at one age of the rollouts.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysesAtAge {
    /// The rollouts' age, in whole simulated minutes since they started.
    pub minute: u32,
    /// Analyses run at that age.
    pub analyses: usize,
    /// Queries per analysis, on average.
    pub queries: f64,
    /// Samples (points) fetched per analysis, on average.
    pub samples: f64,
}

/// The analyses.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisFigures {
    /// Analyses run.
    pub count: usize,
    /// Analyses per rollout per simulated minute in flight: about 1 when the controller
    /// keeps up with 1-minute intervals.
    pub per_canary_minute: f64,
    /// Queries run.
    pub queries: u64,
    /// Samples fetched.
    pub samples: u64,
    /// At the rollouts' first minute (the first analysis).
    pub at_start: Option<AnalysesAtAge>,
    /// An hour into the rollouts (minute 60), when they last that long.
    pub at_one_hour: Option<AnalysesAtAge>,
    /// At minute 1 and every tenth minute.
    pub by_age: Vec<AnalysesAtAge>,
    /// The most committed points the controller held in memory at once (sampled every
    /// second): those of the analyses running, and any it could not store in their
    /// ConfigMaps, which hold them between analyses.
    pub committed_points_peak: usize,
}

/// Reconciles.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileFigures {
    /// Reconciles run.
    pub count: usize,
    /// Failed ones (they are retried).
    pub errors: u64,
    /// Median duration, in milliseconds (real time).
    pub p50_ms: f64,
    /// 99th percentile, in milliseconds.
    pub p99_ms: f64,
}

/// Whether every rollout went through its plan.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutFigures {
    /// Promoted.
    pub succeeded: usize,
    /// Aborted by the judge (the simulated canary is as good as stable: a false abort).
    pub failed: usize,
    /// Neither by the end.
    pub unfinished: usize,
    /// Rollouts that reached every step.
    pub reached_every_step: usize,
    /// Rollouts that jumped over a step.
    pub skipped: usize,
    /// Rollouts that entered a step twice, or went back to one.
    pub doubled: usize,
    /// Rollouts whose weight at a step was not the step's.
    pub wrong_weight: usize,
    /// The first problems found, one line each.
    pub problems: Vec<String>,
    /// Why the first aborted Releases were aborted: their status message at the end.
    pub aborts: Vec<String>,
}

/// A failure to run the benchmark.
pub type Error = String;

// ---------- measurement ----------

/// What the counting source and the observer share.
struct Meter {
    measuring: AtomicBool,
    /// By the Release's `job` argument: queries and samples since its last analysis.
    pending: Mutex<HashMap<String, (u64, u64)>>,
    /// (age in simulated minutes, queries, samples) of each analysis.
    analyses: Mutex<Vec<(f64, u64, u64)>>,
    /// Reconcile durations in seconds.
    reconciles: Mutex<Vec<f64>>,
    errors: AtomicU64,
    clock: Clock,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `job` argument of a Release of the benchmark: what its queries select.
fn job_of(namespace: &str, name: &str) -> String {
    format!("bench-{namespace}-{name}")
}

/// The `job="..."` value of a query.
fn job_in(promql: &str) -> Option<&str> {
    let rest = &promql[promql.find("job=\"")? + 5..];
    Some(&rest[..rest.find('"')?])
}

/// A source that counts the queries and samples each Release's analyses fetch.
struct Counting<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S: MetricSource> MetricSource for Counting<S> {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        let result = self.inner.query_range(request).await;
        let samples = result.as_ref().map_or(0, |r| {
            r.series.iter().map(|s| s.points.len() as u64).sum::<u64>()
        });
        if let Some(job) = job_in(&request.promql) {
            let mut pending = lock(&self.meter.pending);
            let entry = pending.entry(job.to_string()).or_default();
            entry.0 += 1;
            entry.1 += samples;
        }
        result
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

struct MeterObserver(Arc<Meter>);

impl Observer for MeterObserver {
    fn done(&self, elapsed: Duration, error: Option<&str>) {
        if !self.0.measuring.load(Ordering::Relaxed) {
            return;
        }
        lock(&self.0.reconciles).push(elapsed.as_secs_f64());
        if error.is_some() {
            self.0.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn analysed(&self, canary: &Release, _: &str, _: &[(String, f64)], _: Duration) {
        let job = job_of(&canary.namespace().unwrap_or_default(), &canary.name_any());
        let (queries, samples) = lock(&self.0.pending).remove(&job).unwrap_or_default();
        let started = canary.status.as_ref().and_then(|s| s.state.started_at);
        let age = started.map_or(0.0, |s| {
            (self.0.clock.now() - s).num_milliseconds() as f64 / 60_000.0
        });
        lock(&self.0.analyses).push((age, queries, samples));
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    cpu_seconds: f64,
    hwm_mib: f64,
    rss_mib: f64,
    anon_mib: f64,
    file_mib: f64,
}

/// `/proc/{pid}` (`self` for this process): CPU time (user + system, in the kernel's fixed
/// USER_HZ of 100 ticks per second) and VmHWM/VmRSS.
fn proc_stats(pid: &str) -> Result<ProcStats, Error> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|e| {
            format!("cannot read /proc/{pid}/{file}: {e}; the benchmark measures on Linux only")
        })
    };
    let stat = read("stat")?;
    // The fields after the command name (which may contain spaces) start with the state,
    // field 3; utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat has no CPU time in field {}", i + 3))
    };
    let cpu_seconds = (ticks(11)? + ticks(12)?) / 100.0;
    let status = read("status")?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no {key}"))
    };
    Ok(ProcStats {
        cpu_seconds,
        hwm_mib: kib("VmHWM:")? / 1024.0,
        rss_mib: kib("VmRSS:")? / 1024.0,
        anon_mib: kib("RssAnon:")? / 1024.0,
        file_mib: kib("RssFile:")? / 1024.0,
    })
}

/// The most anonymous and file-backed memory a process had resident, as sampled.
#[derive(Debug, Default)]
struct Peaks {
    anon_mib: f64,
    file_mib: f64,
}

impl Peaks {
    fn sample(&mut self, pid: &str) {
        if let Ok(stats) = proc_stats(pid) {
            self.anon_mib = self.anon_mib.max(stats.anon_mib);
            self.file_mib = self.file_mib.max(stats.file_mib);
        }
    }
}

/// Makes this process's VmHWM start again from its current RSS, so that the peak measured
/// is the controller's and not the benchmark's setup before it. Whether it could.
fn reset_peak() -> bool {
    match std::fs::write("/proc/self/clear_refs", "5") {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                "cannot reset the peak RSS (/proc/self/clear_refs: {e}): it includes the setup"
            );
            false
        }
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------- the cluster side ----------

/// The fake's control API (uncounted).
struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    async fn get(&self, path: &str) -> Result<Value, Error> {
        let url = format!("{}/_fake/{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot reach the fake API server at {url}: {e}"))?;
        response
            .json()
            .await
            .map_err(|e| format!("unexpected answer from {url}: {e}"))
    }

    /// The controller's requests so far, by verb.
    async fn counts(&self) -> Result<BTreeMap<String, u64>, Error> {
        let counts = self.get("counts").await?;
        Ok(counts[""]
            .as_object()
            .map(|verbs| {
                verbs
                    .iter()
                    .map(|(verb, n)| (verb.clone(), n.as_u64().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The phase of every Release now.
    async fn phases(&self) -> Result<Vec<String>, Error> {
        let objects = self
            .get("objects/vigil.dev/v1alpha1/releases?fields=status.phase")
            .await?;
        Ok(objects
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|o| o["fields"][0].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A client of the fake API server whose requests carry `client` in [`CLIENT_HEADER`]
/// (`None`: the controller's, uncounted as the benchmark's).
fn client(url: &str, marker: Option<&'static str>) -> Result<kube::Client, Error> {
    let uri = url
        .parse()
        .map_err(|e| format!("the fake API server's URL {url:?} is not a URL: {e}"))?;
    let mut config = kube::Config::new(uri);
    if let Some(marker) = marker {
        config.headers.push((
            axum::http::HeaderName::from_static(CLIENT_HEADER),
            axum::http::HeaderValue::from_static(marker),
        ));
    }
    kube::Client::try_from(config).map_err(|e| format!("cannot make a Kubernetes client: {e}"))
}

/// The namespace and name of canary `i`.
fn canary_name(config: &Config, i: usize) -> (String, String) {
    (
        format!("bench-{:03}", i % config.namespaces),
        format!("app-{i:04}"),
    )
}

/// Each step's least duration, in seconds.
fn step_seconds(config: &Config) -> u64 {
    (u64::from(config.minutes) * 60 / WEIGHTS.len() as u64).max(60)
}

/// The objects of canary `i`: (resource, object).
fn objects(config: &Config, i: usize) -> Vec<(ApiResource, Value)> {
    let (ns, name) = canary_name(config, i);
    let steps: Vec<Value> = WEIGHTS
        .iter()
        .map(|w| json!({"weight": w, "minDuration": format!("{}s", step_seconds(config))}))
        .collect();
    vec![
        (
            ApiResource::erase::<Deployment>(&()),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
                "spec": {
                    "replicas": 4,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
                    }
                }
            }),
        ),
        (
            ApiResource::erase::<Service>(&()),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }),
        ),
        (
            ApiResource::erase::<Ingress>(&()),
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [{"host": format!("{name}.{ns}.example"), "http": {"paths": [{
                        "path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": name, "port": {"number": 80}}}
                    }]}}]
                }
            }),
        ),
        (
            ApiResource::erase::<Release>(&()),
            json!({
                "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "targetRef": {"name": name},
                    "service": {"name": name, "port": 80},
                    "routing": {"nginx": {"ingress": name}},
                    "steps": steps,
                    "analysis": {
                        "templates": [{"name": crate::bench::fake_prometheus::TEMPLATE}],
                        "args": [{"name": "job", "value": job_of(&ns, &name)}],
                        "interval": "1m",
                        // The simulated traffic does not follow the weight.
                        "checkSplit": false,
                        "stableMatchers": STABLE_MATCHERS,
                        "canaryMatchers": CANARY_MATCHERS
                    }
                }
            }),
        ),
    ]
}

async fn create(client: &kube::Client, resource: &ApiResource, object: Value) -> Result<(), Error> {
    let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let object: DynamicObject = serde_json::from_value(object)
        .map_err(|e| format!("the benchmark made a malformed {}: {e}", resource.kind))?;
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|e| {
            format!(
                "cannot create a {} in the fake API server: {e}",
                resource.kind
            )
        })?;
    Ok(())
}

/// Creates every namespace's template and every canary's objects.
async fn set_up(config: &Config, driver: &kube::Client) -> Result<(), Error> {
    let mut template: Value = serde_saphyr::from_str(TEMPLATE_YAML)
        .map_err(|e| format!("the built-in template does not parse: {e}"))?;
    let mut templates = Vec::new();
    for n in 0..config.namespaces {
        template["metadata"]["namespace"] = json!(format!("bench-{n:03}"));
        templates.push((ApiResource::erase::<ReleaseAnalysis>(&()), template.clone()));
    }
    // The objects are made as they are sent, not all beforehand.
    let work = templates
        .into_iter()
        .chain((0..config.canaries).flat_map(|i| objects(config, i)));
    futures::stream::iter(work)
        .map(|(resource, object)| async move { create(driver, &resource, object).await })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

/// Polls the Releases' phases until `done` holds for all, or fails after `limit` (real
/// time) saying how many did.
async fn wait_phases(
    control: &Control,
    what: &str,
    limit: Duration,
    mut progress: impl FnMut(usize),
    done: impl Fn(&str) -> bool,
) -> Result<bool, Error> {
    let started = Instant::now();
    loop {
        let phases = control.phases().await?;
        let finished = phases.iter().filter(|p| done(p)).count();
        progress(finished);
        if finished == phases.len() {
            return Ok(true);
        }
        if started.elapsed() > limit {
            tracing::warn!(
                "{finished} of {} Releases {what} within {limit:?}",
                phases.len()
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------- checking the rollouts ----------

/// Checks each Release's history against its plan.
fn check_rollouts(history: &Value, canaries: usize) -> RolloutFigures {
    let mut figures = RolloutFigures {
        succeeded: 0,
        failed: 0,
        unfinished: 0,
        reached_every_step: 0,
        skipped: 0,
        doubled: 0,
        wrong_weight: 0,
        problems: Vec::new(),
        aborts: Vec::new(),
    };
    let empty = Vec::new();
    let objects = history.as_array().unwrap_or(&empty);
    for object in objects {
        let who = format!(
            "{}/{}",
            object["namespace"].as_str().unwrap_or_default(),
            object["name"].as_str().unwrap_or_default()
        );
        let states = object["states"].as_array().unwrap_or(&empty);
        let mut problems = Vec::new();
        // (step, step start) of each state while Progressing, in order.
        let mut steps_seen: Vec<(u64, Value)> = Vec::new();
        let (mut skipped, mut doubled, mut wrong) = (false, false, false);
        let mut last_phase = String::new();
        for state in states.iter().filter_map(Value::as_array) {
            let phase = state[0].as_str().unwrap_or_default();
            last_phase = phase.to_string();
            // Before its step begins (the canary scaling up), a rollout is Progressing at
            // weight 0 without a step start.
            if phase != "Progressing" || state[3].is_null() {
                continue;
            }
            let step = state[1].as_u64().unwrap_or_default();
            let weight = state[2].as_u64().unwrap_or_default();
            let since = state[3].clone();
            if WEIGHTS.get(step as usize).map(|w| u64::from(*w)) != Some(weight) {
                wrong = true;
                problems.push(format!("{who}: weight {weight}% at step {}", step + 1));
            }
            match steps_seen.last() {
                None if step != 0 => {
                    skipped = true;
                    problems.push(format!("{who}: began at step {}", step + 1));
                }
                Some((last, last_since)) if step == *last && since != *last_since => {
                    doubled = true;
                    problems.push(format!("{who}: step {} began twice", step + 1));
                }
                Some((last, _)) if step < *last => {
                    doubled = true;
                    problems.push(format!(
                        "{who}: back from step {} to {}",
                        last + 1,
                        step + 1
                    ));
                }
                Some((last, _)) if step > last + 1 => {
                    skipped = true;
                    problems.push(format!("{who}: from step {} to {}", last + 1, step + 1));
                }
                _ => {}
            }
            if steps_seen.last().map(|(s, t)| (*s, t)) != Some((step, &since)) {
                steps_seen.push((step, since));
            }
        }
        let reached = steps_seen
            .iter()
            .map(|(s, _)| *s)
            .max()
            .map_or(0, |s| s + 1);
        match last_phase.as_str() {
            "Succeeded" => figures.succeeded += 1,
            "Failed" => figures.failed += 1,
            other => {
                figures.unfinished += 1;
                problems.push(format!("{who}: {other} at the end, at step {reached}"));
            }
        }
        if reached == WEIGHTS.len() as u64 {
            figures.reached_every_step += 1;
        }
        figures.skipped += usize::from(skipped);
        figures.doubled += usize::from(doubled);
        figures.wrong_weight += usize::from(wrong);
        for p in problems {
            if figures.problems.len() < 10 {
                figures.problems.push(p);
            }
        }
    }
    if objects.len() != canaries {
        figures.problems.push(format!(
            "{} Releases in the history, {canaries} created",
            objects.len()
        ));
    }
    figures
}

/// The status message of each aborted Release (the first ten): a false abort's reason.
async fn abort_reasons(control: &Control) -> Result<Vec<String>, Error> {
    let objects = control
        .get("objects/vigil.dev/v1alpha1/releases?fields=status.phase,status.message")
        .await?;
    let empty = Vec::new();
    Ok(objects
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|o| o["fields"][0] == "Failed")
        .take(10)
        .map(|o| {
            format!(
                "{}/{}: {}",
                o["namespace"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default(),
                o["fields"][1].as_str().unwrap_or_default()
            )
        })
        .collect())
}

// ---------- the run ----------

fn at_age(analyses: &[(f64, u64, u64)], minute: u32) -> Option<AnalysesAtAge> {
    let at: Vec<_> = analyses
        .iter()
        .filter(|(age, _, _)| age.floor() as u32 == minute)
        .collect();
    if at.is_empty() {
        return None;
    }
    let n = at.len() as f64;
    Some(AnalysesAtAge {
        minute,
        analyses: at.len(),
        queries: at.iter().map(|a| a.1 as f64).sum::<f64>() / n,
        samples: at.iter().map(|a| a.2 as f64).sum::<f64>() / n,
    })
}

fn process_figures(
    (before, after): (ProcStats, ProcStats),
    peaks: &Peaks,
    peak_from: &str,
    simulated_minutes: f64,
    real_seconds: f64,
) -> ProcessFigures {
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let per_minute = cpu / simulated_minutes.max(1e-9);
    ProcessFigures {
        peak_rss_mib: after.hwm_mib,
        peak_from: peak_from.to_string(),
        peak_anon_mib: peaks.anon_mib.max(after.anon_mib),
        peak_file_mib: peaks.file_mib.max(after.file_mib),
        rss_at_start_mib: before.rss_mib,
        cpu_seconds: cpu,
        cpu_seconds_per_minute: per_minute,
        cores: per_minute / 60.0,
        cores_accelerated: cpu / real_seconds.max(1e-9),
    }
}

/// Runs the benchmark against `services`; `progress(phase, done, of)` is told how far it is.
pub async fn run(
    config: &Config,
    services: &Services,
    progress: &(dyn Fn(&str, usize, usize) + Send + Sync),
) -> Result<Results, Error> {
    let driver = client(&services.kube, Some(DRIVER))?;
    let control = Control {
        http: reqwest::Client::new(),
        base: services.kube.clone(),
    };
    let child = services.pid.to_string();
    progress("setting up", 0, config.canaries);
    set_up(config, &driver).await?;

    let clock = Clock::accelerated(Utc::now(), config.speed);
    let meter = Arc::new(Meter {
        measuring: AtomicBool::new(false),
        pending: Mutex::new(HashMap::new()),
        analyses: Mutex::new(Vec::new()),
        reconciles: Mutex::new(Vec::new()),
        errors: AtomicU64::new(0),
        clock,
    });
    let prometheus = Prometheus::new(PrometheusConfig::new(&services.prometheus))
        .map_err(|e| format!("cannot make the Prometheus client: {e}"))?;
    let controller_client = client(&services.kube, None)?;
    let ctx = Arc::new(Context {
        recorder: crate::cluster::events::Recorder::new(
            controller_client.clone(),
            reconciler::reporter(None),
            clock,
        ),
        client: controller_client,
        source: Counting {
            inner: prometheus,
            meter: meter.clone(),
        },
        concurrency: config.concurrency.max(1),
        observer: Arc::new(MeterObserver(meter.clone())),
        clock,
        http: reqwest::Client::new(),
        // One replica reconciles every Release.
        ownership: crate::cluster::shards::Ownership::everything(),
        committed: crate::cluster::committed::Committed::default(),
        workers: config.workers,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let peak_points = Arc::new(AtomicU64::new(0));
    let peaks = Arc::new(Mutex::new((Peaks::default(), Peaks::default())));
    let peak_from = if reset_peak() {
        "controller start"
    } else {
        "process start"
    };
    let sampler = {
        let (ctx, peak, peaks) = (ctx.clone(), peak_points.clone(), peaks.clone());
        let child = child.clone();
        tokio::spawn(async move {
            loop {
                let (_, points) = ctx.committed.size();
                peak.fetch_max(points as u64, Ordering::Relaxed);
                {
                    let mut peaks = lock(&peaks);
                    peaks.0.sample("self");
                    peaks.1.sample(&child);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let controller = tokio::spawn(reconciler::run(
        ctx,
        None,
        async move {
            let _ = stopped.await;
        },
        Box::new(|| {}),
    ));

    let adoption_limit = Duration::from_secs(60 + config.canaries as u64 / 10);
    let adopted = wait_phases(
        &control,
        "adopted",
        adoption_limit,
        |n| progress("adopting", n, config.canaries),
        |p| p == "Waiting",
    )
    .await?;
    if !adopted {
        let _ = stop.send(());
        return Err(format!(
            "the controller did not adopt every Deployment within {adoption_limit:?}; \
             try fewer --canaries"
        ));
    }

    // The measurement: from the first release to the end of the last rollout.
    let self_before = proc_stats("self")?;
    let child_before = proc_stats(&child)?;
    let counts_before = control.counts().await?;
    let sim_start: DateTime<Utc> = clock.now();
    let real_start = Instant::now();
    meter.measuring.store(true, Ordering::Relaxed);

    let deployments = ApiResource::erase::<Deployment>(&());
    let gap = clock.real(Duration::from_secs(60)) / config.canaries.max(1) as u32;
    let release = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    for i in 0..config.canaries {
        let (ns, name) = canary_name(config, i);
        let api: Api<DynamicObject> = Api::namespaced_with(driver.clone(), &ns, &deployments);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&release))
            .await
            .map_err(|e| format!("cannot release a new version of {ns}/{name}: {e}"))?;
        progress("releasing", i + 1, config.canaries);
        tokio::time::sleep(gap).await;
    }
    // Twice the planned length, and a quarter of an hour more, before giving up.
    let limit = clock.real(Duration::from_secs(u64::from(config.minutes) * 120 + 900));
    wait_phases(
        &control,
        "finished",
        limit,
        |n| progress("finished", n, config.canaries),
        |p| matches!(p, "Succeeded" | "Failed"),
    )
    .await?;

    meter.measuring.store(false, Ordering::Relaxed);
    let real_seconds = real_start.elapsed().as_secs_f64();
    let simulated_minutes = (clock.now() - sim_start).num_milliseconds() as f64 / 60_000.0;
    let self_after = proc_stats("self")?;
    let child_after = proc_stats(&child)?;
    let counts_after = control.counts().await?;
    let _ = stop.send(());
    sampler.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;

    progress("checking", 0, config.canaries);
    let history = control
        .get(
            "history/vigil.dev/v1alpha1/releases?fields=status.phase,status.currentStep,\
             status.weight,status.stepStartedAt,status.startedAt",
        )
        .await?;
    let mut rollouts = check_rollouts(&history, config.canaries);
    rollouts.aborts = abort_reasons(&control).await?;
    let canary_minutes = rollout_minutes(&history, step_seconds(config));

    let by_verb: BTreeMap<String, u64> = counts_after
        .iter()
        .map(|(verb, n)| {
            (
                verb.clone(),
                n - counts_before.get(verb).copied().unwrap_or_default(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let per_minute = by_verb
        .iter()
        .map(|(verb, n)| (verb.clone(), *n as f64 / simulated_minutes.max(1e-9)))
        .collect();
    let (self_peaks, child_peaks) = std::mem::take(&mut *lock(&peaks));
    let analyses = lock(&meter.analyses).clone();
    let mut latencies = lock(&meter.reconciles).clone();
    latencies.sort_by(f64::total_cmp);
    let last_minute = analyses
        .iter()
        .map(|a| a.0.floor() as u32)
        .max()
        .unwrap_or_default();
    Ok(Results {
        config: config.clone(),
        plan: PlanFigures {
            weights: WEIGHTS.to_vec(),
            step_seconds: step_seconds(config),
        },
        duration: DurationFigures {
            simulated_minutes,
            real_seconds,
            canary_minutes,
            mean_in_flight: canary_minutes / simulated_minutes.max(1e-9),
        },
        controller: process_figures(
            (self_before, self_after),
            &self_peaks,
            peak_from,
            simulated_minutes,
            real_seconds,
        ),
        services: process_figures(
            (child_before, child_after),
            &child_peaks,
            "process start",
            simulated_minutes,
            real_seconds,
        ),
        api_requests: RequestFigures {
            total: by_verb.values().sum(),
            by_verb,
            per_minute,
        },
        analyses: AnalysisFigures {
            count: analyses.len(),
            per_canary_minute: analyses.len() as f64 / canary_minutes.max(1e-9),
            queries: analyses.iter().map(|a| a.1).sum(),
            samples: analyses.iter().map(|a| a.2).sum(),
            at_start: at_age(&analyses, 0).or_else(|| at_age(&analyses, 1)),
            at_one_hour: at_age(&analyses, 60),
            by_age: std::iter::once(1)
                .chain((10..=last_minute).step_by(10))
                .filter_map(|m| at_age(&analyses, m))
                .collect(),
            committed_points_peak: peak_points.load(Ordering::Relaxed) as usize,
        },
        reconciles: ReconcileFigures {
            count: latencies.len(),
            errors: meter.errors.load(Ordering::Relaxed),
            p50_ms: 1000.0 * quantile(&latencies, 0.5),
            p99_ms: 1000.0 * quantile(&latencies, 0.99),
        },
        rollouts,
    })
}

/// The simulated minutes each rollout was in flight, summed: from its start to the end of
/// its last step's least duration (`step_seconds` after that step began).
fn rollout_minutes(history: &Value, step_seconds: u64) -> f64 {
    let empty = Vec::new();
    let mut total = 0.0;
    for object in history.as_array().unwrap_or(&empty) {
        let states = object["states"].as_array().unwrap_or(&empty);
        let started = states
            .iter()
            .find_map(|s| s[4].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let last_step = states
            .iter()
            .rev()
            .find_map(|s| s[3].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        if let (Some(start), Some(last)) = (started, last_step) {
            total +=
                (last - start).num_milliseconds() as f64 / 60_000.0 + step_seconds as f64 / 60.0;
        }
    }
    total
}

/// The results as a table.
pub fn table(results: &Results) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["measure", "value"]);
    let c = &results.controller;
    let s = &results.services;
    let mut row = |k: &str, v: String| {
        table.add_row([k.to_string(), v]);
    };
    row(
        "in flight",
        format!(
            "{} Releases in {} namespaces, {:.0} on average",
            results.config.canaries, results.config.namespaces, results.duration.mean_in_flight
        ),
    );
    row(
        "duration",
        format!(
            "{:.1} simulated minutes in {:.0} s ({}x)",
            results.duration.simulated_minutes, results.duration.real_seconds, results.config.speed
        ),
    );
    row(
        "controller peak RSS",
        format!(
            "{:.1} MiB from the {}: at most {:.1} MiB anonymous (heap, stacks) and {:.1} MiB \
             file-backed (the binary's code and data mapped from disk)",
            c.peak_rss_mib, c.peak_from, c.peak_anon_mib, c.peak_file_mib
        ),
    );
    row(
        "controller CPU",
        format!(
            "{:.2} s per minute = {:.3} cores at 1-minute intervals ({:.2} cores accelerated)",
            c.cpu_seconds_per_minute, c.cores, c.cores_accelerated
        ),
    );
    row(
        "fake API server + simulated Prometheus",
        format!(
            "{:.0} MiB peak RSS, {:.2} CPU s per minute (not the controller's)",
            s.peak_rss_mib, s.cpu_seconds_per_minute
        ),
    );
    let verbs: Vec<String> = results
        .api_requests
        .per_minute
        .iter()
        .map(|(verb, n)| format!("{verb} {n:.1}"))
        .collect();
    row(
        "API requests per minute",
        format!(
            "{:.1}: {}",
            results.api_requests.total as f64 / results.duration.simulated_minutes.max(1e-9),
            verbs.join(", ")
        ),
    );
    let a = &results.analyses;
    let behind = if a.per_canary_minute < 0.9 {
        "; the controller fell behind the 1-minute intervals, so figures per minute are \
         low: lower --speed"
    } else {
        ""
    };
    row(
        "analyses",
        format!(
            "{} ({:.2} per rollout per minute{behind}); controller CPU {:.1} ms per analysis",
            a.count,
            a.per_canary_minute,
            1000.0 * c.cpu_seconds / (a.count.max(1) as f64)
        ),
    );
    let at = |x: &Option<AnalysesAtAge>| {
        x.as_ref().map_or("none".to_string(), |x| {
            format!(
                "{:.1} queries, {:.0} samples per analysis (minute {}, {} analyses)",
                x.queries, x.samples, x.minute, x.analyses
            )
        })
    };
    row("at a rollout's start", at(&a.at_start));
    row("an hour in", at(&a.at_one_hour));
    row(
        "committed points held",
        format!(
            "{} in memory at most (the running analyses'; 8 bytes each; stored in ConfigMaps between analyses)",
            a.committed_points_peak
        ),
    );
    let r = &results.reconciles;
    row(
        "reconcile latency",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} reconciles, {} failed)",
            r.p50_ms, r.p99_ms, r.count, r.errors
        ),
    );
    let o = &results.rollouts;
    row(
        "rollouts",
        format!(
            "{} promoted, {} aborted, {} unfinished; {} reached every step; {} skipped, {} doubled, {} wrong weight",
            o.succeeded,
            o.failed,
            o.unfinished,
            o.reached_every_step,
            o.skipped,
            o.doubled,
            o.wrong_weight
        ),
    );
    for reason in &o.aborts {
        row("aborted", reason.clone());
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_of_a_query_is_found() {
        assert_eq!(
            job_in("sum(increase(x{job=\"bench-a-b\", version=\"v1\"}[1m]))"),
            Some("bench-a-b")
        );
        assert_eq!(job_in("up"), None);
    }

    fn history(states: Value) -> Value {
        json!([{"namespace": "n", "name": "a", "states": states}])
    }

    #[test]
    fn a_rollout_through_every_step_passes_the_check() {
        let mut states = vec![
            json!(["Waiting", 0, 0, null, null]),
            json!(["Progressing", 0, 0, null, "s"]),
        ];
        for (i, w) in WEIGHTS.iter().enumerate() {
            states.push(json!(["Progressing", i, w, format!("t{i}"), "s"]));
            states.push(json!(["Progressing", i, w, format!("t{i}"), "s"]));
        }
        states.push(json!(["Succeeded", 0, 0, null, "s"]));
        let f = check_rollouts(&history(json!(states)), 1);
        assert_eq!((f.succeeded, f.reached_every_step), (1, 1));
        assert_eq!(
            (f.skipped, f.doubled, f.wrong_weight),
            (0, 0, 0),
            "{:?}",
            f.problems
        );
    }

    #[test]
    fn skipped_doubled_and_wrong_steps_are_found() {
        let skipped = json!([
            ["Progressing", 0, 5, "t0", "s"],
            ["Progressing", 2, 20, "t2", "s"]
        ]);
        let f = check_rollouts(&history(skipped), 1);
        assert_eq!((f.skipped, f.doubled, f.unfinished), (1, 0, 1));
        let doubled = json!([
            ["Progressing", 0, 5, "t0", "s"],
            ["Progressing", 0, 5, "t9", "s"]
        ]);
        assert_eq!(check_rollouts(&history(doubled), 1).doubled, 1);
        let back = json!([
            ["Progressing", 0, 5, "t0", "s"],
            ["Progressing", 1, 10, "t1", "s"],
            ["Progressing", 0, 5, "t0", "s"]
        ]);
        assert_eq!(check_rollouts(&history(back), 1).doubled, 1);
        let wrong = json!([["Progressing", 0, 50, "t0", "s"]]);
        assert_eq!(check_rollouts(&history(wrong), 1).wrong_weight, 1);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
