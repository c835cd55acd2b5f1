//! Several controllers, one cluster: three `vigil run --shards 6` processes against the fake
//! API server share nine Releases in flight; one is killed (SIGKILL, nothing released) in
//! the middle of the rollouts, and the others take its shards over once its Leases expire.
//! Then the shard managers alone, in this process: rebalancing when replicas join, a
//! graceful handover, and shards lost (not fatal) when their Leases cannot be renewed.
//!
//! The Releases advance on time alone (`skipAnalysis`, weight steps of 1 s), so that the
//! test is about who reconciles, not about judgements: no metric source is queried (the
//! `--prometheus` URL points at a closed port). Short Lease durations (2 s, renew deadline
//! 1.5 s, retry 250 ms) keep it quick.

use crate::common::fake_kube::{FakeKube, Options as FakeOptions, Res};
use crate::common::traffic::nginx_canary_weight;
use crate::common::{self, free_port};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vigil::api::crd::{Release, ReleaseAnalysis};
use vigil::cluster::leader::LeaderConfig;
use vigil::cluster::shards::{
    OnTransition, Ownership, ShardConfig, ShardManager, Transition, shard_of,
};

const NS: &str = "fleet";
const APPS: usize = 9;
const SHARDS: u32 = 6;
const REPLICAS: usize = 3;
const GROUP: &str = "vigil-fleet";
const LEASE_DURATION: Duration = Duration::from_secs(2);
const RETRY_PERIOD: Duration = Duration::from_millis(250);
/// One reconcile of a Release, plus request latency on a loaded 2-core machine.
const ONE_RECONCILE: Duration = Duration::from_millis(750);
/// The weights of the steps, 1 s each.
const WEIGHTS: [u8; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];

fn releases() -> Res {
    Res::new("vigil.dev", "v1alpha1", "releases")
}

fn ingresses() -> Res {
    Res::new("networking.k8s.io", "v1", "ingresses")
}

fn app(i: usize) -> String {
    format!("app-{i}")
}

/// Deployment, Service, Ingress and Release `app-<i>`.
fn create_app(fake: &FakeKube, i: usize) {
    let name = app(i);
    common::put_app(fake, NS, &name);
    let steps: Vec<Value> = WEIGHTS
        .iter()
        // `interval` too: the controller requeues a step after max(minDuration, interval),
        // interval being 1 m by default even without analysis.
        .map(|w| json!({"weight": w, "minDuration": "1s", "interval": "1s"}))
        .collect();
    fake.put_object(
        &releases(),
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "targetRef": {"name": name},
                "service": {"name": name, "port": 80},
                "routing": {"nginx": {"ingress": name}},
                "steps": steps,
                "skipAnalysis": true,
                "progressDeadline": "60s",
                "abortScaleDownDelay": "1s"
            }
        }),
    );
}

/// One `vigil run --shards` process, killed on drop, with its output in a file.
struct Replica {
    pod: String,
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Replica {
    fn start(dir: &std::path::Path, kubeconfig: &std::path::Path, k: usize) -> Replica {
        let shards = SHARDS.to_string();
        Replica::start_with(
            dir,
            kubeconfig,
            k,
            &["--shards", &shards, "--lease-name", GROUP],
        )
    }

    /// `vigil run` with `election`: the election flags other than the namespace and the
    /// durations.
    fn start_with(
        dir: &std::path::Path,
        kubeconfig: &std::path::Path,
        k: usize,
        election: &[&str],
    ) -> Replica {
        let pod = format!("replica-{k}");
        let listen = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("{pod}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = common::vigil()
            .args(["run", "--prometheus", "http://127.0.0.1:9"])
            .args(["--listen", &listen])
            .args(["--watch-namespace", NS, "--log-format", "text"])
            .args(election)
            .args(["--lease-namespace", "vigil-system"])
            .args(["--lease-duration", "2s", "--renew-deadline", "1500ms"])
            .args(["--retry-period", "250ms"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", &pod)
            .env("VIGIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start vigil run");
        Replica {
            pod,
            child,
            log,
            metrics: format!("http://{listen}/metrics"),
        }
    }

    /// Whether `identity` (a Lease holder) is this replica's.
    fn is(&self, identity: &str) -> bool {
        identity.starts_with(&format!("{}_", self.pod))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its /metrics ("" when it does not answer).
    async fn metrics(&self) -> String {
        match reqwest::get(&self.metrics).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The Releases it has `vigil_canary_step` series for.
    async fn reported(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("vigil_canary_step{"))
            .filter_map(|l| {
                l.split("name=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(String::from)
            })
            .collect();
        names.sort();
        names
    }

    /// The value of an unlabelled metric on its /metrics.
    async fn metric(&self, name: &str) -> Option<f64> {
        let body = self.metrics().await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The holder of each shard's Lease ("" when none).
fn holders(fake: &FakeKube) -> Vec<String> {
    (0..SHARDS)
        .map(|i| {
            fake.get_as::<Lease>("vigil-system", &format!("{GROUP}-{i}"))
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
                .unwrap_or_default()
        })
        .collect()
}

/// Which replica (index) holds each shard, if one does.
fn owners(fake: &FakeKube, replicas: &[Replica]) -> Vec<Option<usize>> {
    holders(fake)
        .iter()
        .map(|h| replicas.iter().position(|r| r.is(h)))
        .collect()
}

fn status(fake: &FakeKube, i: usize) -> Value {
    fake.get(&releases(), NS, &app(i))
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

fn phase(fake: &FakeKube, i: usize) -> String {
    status(fake, i)["phase"].as_str().unwrap_or("").to_string()
}

fn step(fake: &FakeKube, i: usize) -> u64 {
    status(fake, i)["currentStep"].as_u64().unwrap_or(0)
}

/// What a failure shows: every Release's phase and step, the shards' holders and the logs.
fn context(fake: &FakeKube, replicas: &[Replica]) -> String {
    let apps: Vec<String> = (0..APPS)
        .map(|i| {
            format!(
                "{} (shard {}): {} step {} {:?}",
                app(i),
                shard_of(NS, &app(i), SHARDS),
                phase(fake, i),
                step(fake, i),
                status(fake, i)["message"]
            )
        })
        .collect();
    let logs: Vec<String> = replicas
        .iter()
        .map(|r| format!("--- {} ---\n{}", r.pod, r.log()))
        .collect();
    format!(
        "releases:\n  {}\nholders: {:?}\n{}",
        apps.join("\n  "),
        holders(fake),
        logs.join("\n")
    )
}

async fn wait_until(
    fake: &FakeKube,
    replicas: &[Replica],
    what: &str,
    limit: Duration,
    mut condition: impl FnMut(&FakeKube) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !condition(fake) {
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} in vain until {what}\n{}",
            context(fake, replicas)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn every_release_reaches(fake: &FakeKube, replicas: &[Replica], want: &str, limit: Duration) {
    let what = format!("every Release is {want}");
    wait_until(fake, replicas, &what, limit, |f| {
        (0..APPS).all(|i| phase(f, i) == want)
    })
    .await;
}

/// The values a Release's status took, consecutive repeats once: `(currentStep, phase)`.
fn step_history(fake: &FakeKube, i: usize) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for version in fake.history(&releases(), NS, &app(i)).into_iter().flatten() {
        let s = &version["status"];
        let entry = (
            s["currentStep"].as_u64().unwrap_or(0),
            s["phase"].as_str().unwrap_or("").to_string(),
        );
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

/// The non-zero weights the canary Ingress of `app-<i>` carried, consecutive repeats once.
fn weight_history(fake: &FakeKube, i: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for version in fake.history(&ingresses(), NS, &format!("{}-canary", app(i))) {
        let w = nginx_canary_weight(version.as_ref());
        if w != 0 && out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_releases_and_take_over_a_killed_ones_within_the_lease() {
    let fake = FakeKube::start_with(FakeOptions {
        ready_delay: Duration::from_millis(200),
        ..FakeOptions::default()
    })
    .await;
    fake.register::<Release>();
    fake.register::<ReleaseAnalysis>();
    for i in 0..APPS {
        create_app(&fake, i);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|k| Replica::start(dir.path(), &kubeconfig, k))
        .collect();

    // Fair shares: two shards each, whoever started first.
    wait_until(
        &fake,
        &replicas,
        "each replica holds two shards",
        Duration::from_secs(20),
        |f| {
            let owners = owners(f, &replicas);
            (0..REPLICAS).all(|k| owners.iter().filter(|o| **o == Some(k)).count() == 2)
        },
    )
    .await;
    let owners_before = owners(&fake, &replicas);
    let releases_of = |owners: &[Option<usize>], k: usize| -> Vec<usize> {
        (0..APPS)
            .filter(|&i| owners[shard_of(NS, &app(i), SHARDS) as usize] == Some(k))
            .collect()
    };
    for (k, r) in replicas.iter().enumerate() {
        let held = r.metric("vigil_shards_held").await;
        assert_eq!(held, Some(2.0), "{} reports its shards\n{}", r.pod, r.log());
        println!(
            "{} holds shards {:?} and Releases {:?}",
            r.pod,
            (0..SHARDS as usize)
                .filter(|&s| owners_before[s] == Some(k))
                .collect::<Vec<_>>(),
            releases_of(&owners_before, k)
        );
    }

    // Every Release is adopted by its shard's holder; then a new image starts nine rollouts.
    every_release_reaches(&fake, &replicas, "Waiting", Duration::from_secs(30)).await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(fake.client(), NS);
    for i in 0..APPS {
        deployments
            .patch(
                &app(i),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "app:2"}
                ]}}}})),
            )
            .await
            .expect("release app:2");
    }
    wait_until(
        &fake,
        &replicas,
        "every rollout is past its second step",
        Duration::from_secs(20),
        |f| (0..APPS).all(|i| phase(f, i) == "Progressing" && step(f, i) >= 2),
    )
    .await;

    // The replica with the most Releases dies without releasing anything.
    let victim = (0..REPLICAS)
        .max_by_key(|&k| releases_of(&owners_before, k).len())
        .unwrap_or(0);
    let orphans = releases_of(&owners_before, victim);
    let orphan_shards: Vec<usize> = (0..SHARDS as usize)
        .filter(|&s| owners_before[s] == Some(victim))
        .collect();
    let steps_at_kill: BTreeMap<usize, (u64, String)> = orphans
        .iter()
        .map(|&i| (i, (step(&fake, i), phase(&fake, i))))
        .collect();
    assert!(
        steps_at_kill
            .values()
            .all(|(s, p)| p == "Progressing" && *s < 9),
        "the victim's Releases are mid-rollout when it dies: {steps_at_kill:?}"
    );
    replicas[victim].child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = replicas[victim].child.wait();

    // Its shards are taken over, and its Releases go on, within the lease duration (plus
    // one retry period, and one reconcile).
    let mut taken: BTreeMap<usize, Duration> = BTreeMap::new();
    let mut resumed: BTreeMap<usize, Duration> = BTreeMap::new();
    let limit = LEASE_DURATION + RETRY_PERIOD + ONE_RECONCILE + Duration::from_secs(5);
    while (taken.len() < orphan_shards.len() || resumed.len() < orphans.len())
        && killed.elapsed() < limit
    {
        let owners = owners(&fake, &replicas);
        for &s in &orphan_shards {
            if owners[s].is_some_and(|k| k != victim) {
                taken.entry(s).or_insert_with(|| killed.elapsed());
            }
        }
        for &i in &orphans {
            if (step(&fake, i), phase(&fake, i)) != steps_at_kill[&i] {
                resumed.entry(i).or_insert_with(|| killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "killed {} at rollout steps {steps_at_kill:?}; its shards taken over after {taken:?}; \
         its Releases advanced again after {resumed:?}",
        replicas[victim].pod
    );
    assert_eq!(
        taken.len(),
        orphan_shards.len(),
        "every shard of the killed replica was taken over\n{}",
        context(&fake, &replicas)
    );
    assert_eq!(
        resumed.len(),
        orphans.len(),
        "every Release of the killed replica advanced again\n{}",
        context(&fake, &replicas)
    );
    let slowest_takeover = taken.values().max().copied().unwrap_or_default();
    assert!(
        slowest_takeover <= LEASE_DURATION + RETRY_PERIOD + ONE_RECONCILE,
        "took over after {slowest_takeover:?}\n{}",
        context(&fake, &replicas)
    );
    // Not before the Leases could have expired: the others saw the last renewal at most one
    // retry period before the kill.
    let fastest_takeover = taken.values().min().copied().unwrap_or_default();
    assert!(
        fastest_takeover >= LEASE_DURATION - RETRY_PERIOD - Duration::from_millis(100),
        "took over after only {fastest_takeover:?}"
    );
    let slowest_resume = resumed.values().max().copied().unwrap_or_default();
    assert!(
        slowest_resume <= LEASE_DURATION + RETRY_PERIOD + ONE_RECONCILE,
        "the Releases went on only after {slowest_resume:?}\n{}",
        context(&fake, &replicas)
    );
    // The survivors share all six shards, three each.
    wait_until(
        &fake,
        &replicas,
        "the two survivors hold three shards each",
        Duration::from_secs(10),
        |f| {
            let owners = owners(f, &replicas);
            (0..REPLICAS)
                .filter(|&k| k != victim)
                .all(|k| owners.iter().filter(|o| **o == Some(k)).count() == 3)
        },
    )
    .await;

    // Every rollout completes, each step once, in order.
    every_release_reaches(&fake, &replicas, "Succeeded", Duration::from_secs(60)).await;
    for i in 0..APPS {
        // Adopted, then steps 0 to 8 (their indices), promoted, done: nothing repeated,
        // skipped or gone back to, whichever replica wrote.
        let mut expected = vec![(0, String::new()), (0, "Waiting".to_string())];
        expected.extend((0..WEIGHTS.len() as u64).map(|s| (s, "Progressing".to_string())));
        let last = WEIGHTS.len() as u64;
        expected.push((last, "Promoting".to_string()));
        expected.push((last, "Succeeded".to_string()));
        assert_eq!(
            step_history(&fake, i),
            expected,
            "{}: every step once, in order\n{}",
            app(i),
            context(&fake, &replicas)
        );
        assert_eq!(
            weight_history(&fake, i),
            WEIGHTS.to_vec(),
            "{}: the canary Ingress carried each weight once, in order",
            app(i)
        );
    }
    let events = fake.list(&Res::new("events.k8s.io", "v1", "events"), Some(NS));
    for &i in &orphans {
        let by: Vec<String> = events
            .iter()
            .filter(|e| e["regarding"]["name"] == app(i) && e["reason"] == "StepAdvanced")
            .map(|e| e["reportingInstance"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(
            by.iter().any(|r| replicas[victim].is(r)) && by.iter().any(|r| !replicas[victim].is(r)),
            "{}: steps advanced by the killed replica, then by a survivor: {by:?}",
            app(i)
        );
    }
    // Each survivor reports the Releases of its shards, and no others (none left behind by
    // a shard it gave up).
    let owners_after = owners(&fake, &replicas);
    for (k, r) in replicas.iter().enumerate() {
        if k != victim {
            assert_eq!(r.metric("vigil_shards_held").await, Some(3.0), "{}", r.pod);
            let mine: Vec<String> = releases_of(&owners_after, k).into_iter().map(app).collect();
            let reported = r.reported().await;
            assert!(
                reported.iter().all(|name| mine.contains(name)),
                "{} reports {reported:?}, holds {mine:?}",
                r.pod
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The shard managers alone, in this process (no reconciler): how shards move.

/// One replica's `ShardManager`, running in a task until stopped.
struct Member {
    ownership: Ownership,
    transitions: Arc<Mutex<Vec<(u32, Transition)>>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Member {
    fn start(fake: &FakeKube, group: &str, shards: u32, identity: &str, lease: Duration) -> Member {
        let mut base = LeaderConfig::new(group, "default", identity);
        base.lease_duration = lease;
        base.renew_deadline = Duration::from_millis(600);
        base.retry_period = Duration::from_millis(200);
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let on_transition: OnTransition = {
            let transitions = transitions.clone();
            Arc::new(move |shard, t| transitions.lock().unwrap().push((shard, t)))
        };
        let manager = ShardManager::new(fake.client(), ShardConfig { base, shards }, on_transition)
            .expect("valid shard config");
        let ownership = manager.ownership();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(manager.run(async move {
            let _ = stopped.await;
        }));
        Member {
            ownership,
            transitions,
            stop: Some(stop),
            task,
        }
    }

    fn held(&self) -> usize {
        self.ownership.held().len()
    }

    fn count(&self, transition: Transition) -> usize {
        let transitions = self.transitions.lock().unwrap();
        transitions.iter().filter(|(_, t)| *t == transition).count()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the manager stops")
            .expect("no panic");
    }
}

/// Watches the members' ownership every 2 ms until dropped, and fails the test if a shard
/// is ever owned by two members at once.
struct NoOverlap {
    task: tokio::task::JoinHandle<()>,
    overlaps: Arc<Mutex<Vec<String>>>,
}

impl NoOverlap {
    fn watch(members: Vec<Ownership>) -> NoOverlap {
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let found = overlaps.clone();
        let task = tokio::spawn(async move {
            loop {
                let held: Vec<Vec<u32>> = members.iter().map(Ownership::held).collect();
                let mut all: Vec<u32> = held.iter().flatten().copied().collect();
                let n = all.len();
                all.sort_unstable();
                all.dedup();
                if all.len() != n {
                    found.lock().unwrap().push(format!("{held:?}"));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        NoOverlap { task, overlaps }
    }

    fn check(self) {
        self.task.abort();
        let overlaps = self.overlaps.lock().unwrap();
        assert!(
            overlaps.is_empty(),
            "shards owned twice at once: {overlaps:?}"
        );
    }
}

async fn wait_for(what: &str, limit: Duration, condition: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < limit,
            "waited {limit:?} in vain until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_alone_gives_up_its_surplus_when_others_join() {
    let fake = FakeKube::start().await;
    let lease = Duration::from_secs(1);
    let a = Member::start(&fake, "g", 6, "a", lease);
    wait_for("a holds all six shards", Duration::from_secs(5), || {
        a.held() == 6
    })
    .await;
    let b = Member::start(&fake, "g", 6, "b", lease);
    let c = Member::start(&fake, "g", 6, "c", lease);
    let watch = NoOverlap::watch(vec![
        a.ownership.clone(),
        b.ownership.clone(),
        c.ownership.clone(),
    ]);
    let took = wait_for("two shards each", Duration::from_secs(5), || {
        [&a, &b, &c].iter().all(|m| m.held() == 2)
    })
    .await;
    println!("rebalanced 6/0/0 to 2/2/2 in {took:?}");
    // Handed over by release, not by expiry: well within a lease duration.
    assert!(took < lease + Duration::from_millis(500), "took {took:?}");
    // Stays so.
    tokio::time::sleep(3 * lease).await;
    assert!([&a, &b, &c].iter().all(|m| m.held() == 2));
    watch.check();
    assert_eq!(a.count(Transition::Acquired), 6);
    assert_eq!(a.count(Transition::Released), 4);
    for m in [&a, &b, &c] {
        assert_eq!(m.count(Transition::Lost), 0);
    }
    assert_eq!(
        b.count(Transition::Acquired) + c.count(Transition::Acquired),
        4
    );
    for m in [a, b, c] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_gracefully_hands_its_shards_over_at_once() {
    let fake = FakeKube::start().await;
    // A long lease: a handover by expiry could not pass.
    let lease = Duration::from_secs(5);
    let a = Member::start(&fake, "g", 6, "a", lease);
    let b = Member::start(&fake, "g", 6, "b", lease);
    let c = Member::start(&fake, "g", 6, "c", lease);
    wait_for("two shards each", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|m| m.held() == 2)
    })
    .await;
    let watch = NoOverlap::watch(vec![
        a.ownership.clone(),
        c.ownership.clone(),
        b.ownership.clone(),
    ]);
    let stopped = Instant::now();
    b.stop().await;
    assert!(
        fake.get_as::<Lease>("default", "g-member-b").is_none(),
        "the member Lease is deleted"
    );
    wait_for("three shards each", Duration::from_secs(3), || {
        a.held() == 3 && c.held() == 3
    })
    .await;
    let took = stopped.elapsed();
    println!("a graceful stop handed two shards over in {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    watch.check();
    for m in [a, c] {
        m.stop().await;
    }
    for i in 0..6 {
        let holder = fake
            .get_as::<Lease>("default", &format!("g-{i}"))
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        assert_eq!(
            holder.as_deref(),
            Some(""),
            "shard {i} released on shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_cannot_be_renewed_is_lost_and_the_replica_goes_on() {
    let fake = FakeKube::start().await;
    let a = Member::start(&fake, "g", 2, "a", Duration::from_secs(1));
    wait_for("a holds both shards", Duration::from_secs(5), || {
        a.held() == 2
    })
    .await;
    // Every Lease write fails for a while (about ten periods), as in a partition.
    fake.faults().fail_next("PUT", "leases", None, 500, 30);
    let broken = Instant::now();
    wait_for("both shards lost", Duration::from_secs(3), || a.held() == 0).await;
    let gave_up = broken.elapsed();
    assert!(
        gave_up < Duration::from_secs(1),
        "stopped reconciling after {gave_up:?}, not before the Leases could expire"
    );
    assert_eq!(a.count(Transition::Lost), 2);
    assert!(
        !a.task.is_finished(),
        "losing shards does not stop the replica"
    );
    wait_for("both shards held again", Duration::from_secs(10), || {
        a.held() == 2
    })
    .await;
    assert_eq!(a.count(Transition::Acquired), 4);
    a.stop().await;
}

/// `--leader-elect` without `--shards` is as it was: one Lease, the leader reconciles every
/// Release, no shard Lease exists, and SIGTERM releases the Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_without_shards_is_unchanged() {
    let fake = FakeKube::start().await;
    fake.register::<Release>();
    fake.register::<ReleaseAnalysis>();
    for i in 0..3 {
        create_app(&fake, i);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let mut leader = Replica::start_with(
        dir.path(),
        &kubeconfig,
        0,
        &["--leader-elect", "--lease-name", "vigil-single"],
    );
    let replicas = std::slice::from_ref(&leader);
    let holder = |f: &FakeKube| {
        f.get_as::<Lease>("vigil-system", "vigil-single")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default()
    };
    wait_until(&fake, replicas, "it leads", Duration::from_secs(10), |f| {
        leader.is(&holder(f))
    })
    .await;
    wait_until(
        &fake,
        replicas,
        "every Release is Waiting",
        Duration::from_secs(20),
        |f| (0..3).all(|i| phase(f, i) == "Waiting"),
    )
    .await;
    let leases = fake.list(&Res::of::<Lease>(), Some("vigil-system"));
    assert_eq!(leases.len(), 1, "one Lease only: {leases:?}");
    assert_eq!(leader.metric("vigil_leader").await, Some(1.0));
    assert_eq!(leader.metric("vigil_shards_held").await, Some(0.0));
    let pid = leader.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let exited = tokio::task::block_in_place(|| leader.child.wait()).expect("wait");
    assert!(exited.success(), "{exited}\n{}", leader.log());
    assert_eq!(holder(&fake), "", "released on SIGTERM\n{}", leader.log());
}
