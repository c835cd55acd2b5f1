//! A fleet of applications rolled out by `vigil run` (the binary, as a child process)
//! against the fake API server and a real Prometheus, as the crash test and the soak test
//! run them: ten Releases, each through several rollouts one after the other, all at once;
//! then the checks that every rollout ended exactly once, as its data dictate (a healthy
//! canary promoted, a regressing one aborted), with no weight step repeated or skipped, and
//! nothing left behind.
//!
//! Prometheus scrapes a small exporter the test serves every second: counters that grow at
//! fixed rates, the same for stable (`version="v1"`) and a healthy canary
//! (`version="v2-good"`), five times the error rate for a regressing one
//! (`version="v2-bad"`).

use super::controller::{ingresses, releases};
use super::fake_kube::{FakeKube, Res};
use super::traffic::nginx_canary_weight;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The canary weights of every rollout.
pub const WEIGHTS: [u8; 4] = [20, 40, 70, 100];

/// The fleet: its namespace, how many applications and how many rollouts of each.
pub struct Fleet {
    pub ns: &'static str,
    pub apps: usize,
    pub rounds: usize,
    /// Merged into every Release's `spec.analysis`.
    pub analysis_extra: Value,
    /// The longest one rollout may take before the test gives up on it.
    pub rollout_limit: Duration,
}

pub fn app(i: usize) -> String {
    format!("app-{i}")
}

/// Apps whose canaries regress: every one of their rollouts must be aborted.
pub fn regressing(i: usize) -> bool {
    i % 5 == 4
}

pub fn image(round: usize) -> String {
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
pub async fn start_exporter() -> String {
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

// --- the cluster ------------------------------------------------------------------------

/// The template, and for every app its Deployment, Service, Ingress and Release.
pub fn create(fake: &FakeKube, fleet: &Fleet) {
    fake.register::<vigil::api::crd::Release>();
    fake.register::<vigil::api::crd::ReleaseAnalysis>();
    super::controller::put_template(fake, fleet.ns);
    for i in 0..fleet.apps {
        create_app(fake, fleet, i);
    }
}

/// Deployment, Service, Ingress and Release `app-<i>`.
fn create_app(fake: &FakeKube, fleet: &Fleet, i: usize) {
    let name = app(i);
    super::put_app(fake, fleet.ns, &name);
    let canary = if regressing(i) { "v2-bad" } else { "v2-good" };
    let mut analysis = json!({
        "templates": [{"name": "http-prometheus-client"}],
        // The exporter's series carry the scrape's job label.
        "args": [{"name": "job", "value": "traffic"}],
        "interval": "2s",
        // The exporter gives the canary a fixed share whatever the weight.
        "checkSplit": false,
        "stableMatchers": "version=\"v1\"",
        "canaryMatchers": format!("version=\"{canary}\"")
    });
    if let (Some(analysis), Some(extra)) =
        (analysis.as_object_mut(), fleet.analysis_extra.as_object())
    {
        analysis.extend(extra.clone());
    }
    fake.put_object(
        &releases(),
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name, "namespace": fleet.ns},
            "spec": {
                "targetRef": {"name": name},
                "service": {"name": name, "port": 80},
                "routing": {"nginx": {"ingress": name}},
                "stepWeights": WEIGHTS,
                "abortScaleDownDelay": "1s",
                "progressDeadline": "2m",
                "analysis": analysis
            }
        }),
    );
}

pub fn status(fake: &FakeKube, fleet: &Fleet, i: usize) -> Value {
    fake.get(&releases(), fleet.ns, &app(i))
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

/// Every Release's phase, step and message, one line each: context for a failure.
pub fn statuses(fake: &FakeKube, fleet: &Fleet) -> String {
    (0..fleet.apps)
        .map(|i| {
            let s = status(fake, fleet, i);
            format!(
                "{}: {} step {} {:?}",
                app(i),
                s["phase"],
                s["currentStep"],
                s["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The revision vigil gives Deployment `app-<i>`'s current pod template.
fn revision(fake: &FakeKube, fleet: &Fleet, i: usize) -> String {
    let deployment: Deployment = fake.get_as(fleet.ns, &app(i)).expect("deployment");
    let template = deployment.spec.template;
    vigil::api::plan::revision(&serde_json::to_value(&template).expect("template JSON"))
}

/// The revision a status entry is about: the failed one once it failed, else the canary.
pub fn rollout_revision(status: &Value) -> Option<&str> {
    if status["phase"] == "Failed" {
        status["failedRevision"].as_str()
    } else {
        status["canaryRevision"].as_str()
    }
}

/// Sets the image of round `round` through `client`, waits for that rollout to end, and
/// returns its revision and phase; `exited` says whether vigil exited by itself.
async fn roll_out(
    fake: &FakeKube,
    fleet: &Fleet,
    client: &kube::Client,
    exited: &(dyn Fn() -> Option<String> + Sync),
    i: usize,
    round: usize,
) -> Result<(String, String), String> {
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), fleet.ns);
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
    let rev = revision(fake, fleet, i);
    let started = Instant::now();
    loop {
        let s = status(fake, fleet, i);
        let phase = s["phase"].as_str().unwrap_or_default();
        let ended = match phase {
            "Succeeded" => s["stableRevision"] == rev.as_str(),
            "Failed" => s["failedRevision"] == rev.as_str(),
            _ => false,
        };
        if ended {
            return Ok((rev, phase.to_string()));
        }
        if let Some(exit) = exited() {
            return Err(format!("vigil exited by itself: {exit}"));
        }
        if started.elapsed() > fleet.rollout_limit {
            return Err(format!(
                "{} round {round} did not end within {:?}; status {s:#}",
                app(i),
                fleet.rollout_limit
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every Release's rollouts one after the other, all Releases at once; `done` is told of
/// each rollout that ended.
pub async fn drive(
    fake: &FakeKube,
    fleet: &Fleet,
    client: &kube::Client,
    exited: &(dyn Fn() -> Option<String> + Sync),
    done: &(dyn Fn() + Sync),
) -> Result<Vec<Vec<(String, String)>>, String> {
    let apps = (0..fleet.apps).map(|i| async move {
        let adopted = Instant::now();
        while status(fake, fleet, i)["phase"] != "Waiting" {
            if adopted.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} was not adopted within 30 s", app(i)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut outcomes = Vec::new();
        for round in 0..fleet.rounds {
            outcomes.push(roll_out(fake, fleet, client, exited, i, round).await?);
            done();
        }
        Ok::<_, String>(outcomes)
    });
    futures::future::join_all(apps).await.into_iter().collect()
}

/// Waits (up to 10 s) until the aborted canaries are scaled to zero, which they are
/// abortScaleDownDelay after the abort.
pub async fn settle(fake: &FakeKube, fleet: &Fleet) {
    let settled = Instant::now();
    while (0..fleet.apps).filter(|i| regressing(*i)).any(|i| {
        fake.get(&Res::deployments(), fleet.ns, &format!("{}-canary", app(i)))
            .is_some_and(|d| d["spec"]["replicas"] != 0)
    }) && settled.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- the checks -------------------------------------------------------------------------

/// The states a Release's status went through, consecutive repeats once: (rollout
/// revision, phase, currentStep).
fn status_history(fake: &FakeKube, fleet: &Fleet, i: usize) -> Vec<(String, String, u64)> {
    let mut out: Vec<(String, String, u64)> = Vec::new();
    for version in fake
        .history(&releases(), fleet.ns, &app(i))
        .into_iter()
        .flatten()
    {
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
fn weight_lives(fake: &FakeKube, fleet: &Fleet, i: usize) -> Vec<Vec<u8>> {
    let mut lives: Vec<Vec<u8>> = Vec::new();
    let mut alive = false;
    for version in fake.history(&ingresses(), fleet.ns, &format!("{}-canary", app(i))) {
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
pub fn check_app(
    fake: &FakeKube,
    fleet: &Fleet,
    i: usize,
    outcomes: &[(String, String)],
) -> Vec<String> {
    let (ns, name) = (fleet.ns, app(i));
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
    let history = status_history(fake, fleet, i);
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
    let lives = weight_lives(fake, fleet, i);
    let want: Vec<Vec<u8>> = (0..outcomes.len())
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
        .get(&ingresses(), ns, &format!("{name}-canary"))
        .is_some()
    {
        wrong.push(format!("{name}: the canary Ingress is left"));
    }
    let stable_states = fake.history(&ingresses(), ns, &name);
    if stable_states.len() != 1 {
        wrong.push(format!(
            "{name}: the stable Ingress was changed: {stable_states:?}"
        ));
    }
    let service = fake.get(&Res::core("services"), ns, &name);
    if service.as_ref().map(|s| &s["spec"]["selector"]) != Some(&json!({"app": name})) {
        wrong.push(format!(
            "{name}: the stable Service is left pinned: {service:?}"
        ));
    }
    let canary_deployment = fake.get(&Res::deployments(), ns, &format!("{name}-canary"));
    let canary_service = fake.get(&Res::core("services"), ns, &format!("{name}-canary"));
    let deployment = fake.get(&Res::deployments(), ns, &name).unwrap_or_default();
    if deployment["spec"]["paused"] != true {
        wrong.push(format!(
            "{name}: the Deployment is not paused for the next release"
        ));
    }
    let serving: Vec<String> = fake
        .list(&Res::replicasets(), Some(ns))
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
    let last_image = outcomes.len().checked_sub(1).map_or("app:1".into(), image);
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
        if serving != [last_image.clone()] {
            wrong.push(format!(
                "{name}: stable serves {serving:?}, not {last_image}"
            ));
        }
    }
    wrong
}
