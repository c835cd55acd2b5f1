//! Soak with faults: `vigil run` (the binary, as a child process) drives ten Releases
//! through many rollouts (as the crash test does, `common::fleet`) while the fake API
//! server answers at random 500, 429 with `Retry-After`, or nothing at all (past vigil's
//! `--kube-timeout`), cuts watches mid-way and answers resuming watches 410 Gone; and while
//! Prometheus is killed and started again, over and over. At the end:
//!
//! - every rollout has ended, exactly once, as its data dictate, no weight step repeated or
//!   skipped (no Release stuck: each rollout has a bound);
//! - nothing was promoted during an outage: no step advanced, no Release entered
//!   `Promoting` and no canary weight rose between one reconcile after Prometheus was
//!   confirmed down and its restart;
//! - every fault injected shows in `/metrics` (`vigil_kube_api_errors_total`,
//!   `vigil_kube_watch_errors_total`, `vigil_metric_source_errors_total`) and in the logs,
//!   one line each;
//! - memory and tasks stay flat: the median RSS and `vigil_tokio_tasks` of the run's last
//!   third are within bounds of its second third's, and once idle again the task count is
//!   back near where it was idle before the rollouts.
//!
//! `VIGIL_SOAK_ROLLOUTS=N` (default 30, the CI run) sets the number of rollouts; hundreds
//! make the long soak. The faults and outages are drawn from a seed the test prints;
//! `VIGIL_SOAK_SEED=N` draws them again (the timing of the processes still varies).

use crate::common::fake_kube::{CLIENT_HEADER, Chaos, FAULT_KINDS, FakeKube, Options};
use crate::common::fleet::{self, Fleet};
use crate::common::{self, PromServer, free_port};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::source::simulated::Rng;

/// The default seed (`VIGIL_SOAK_SEED` overrides it).
const DEFAULT_SEED: u64 = 20_261_203;
/// The default number of rollouts (`VIGIL_SOAK_ROLLOUTS` overrides it).
const DEFAULT_ROLLOUTS: usize = 30;
/// The fake's own client: the test's requests meet no fault.
const TEST_CLIENT: &str = "soak-test";
/// vigil's `--kube-timeout`; the fake holds a "timeout" request longer.
const KUBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long after Prometheus is confirmed down a write may still carry a decision made on
/// data read before: one reconcile, with room for a 429's `Retry-After` and a timeout.
const GRACE: Duration = Duration::from_secs(3);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The faults of the soak, drawn from `seed`.
fn chaos(seed: u64) -> Chaos {
    Chaos {
        server_error: 0.01,
        throttled: 0.01,
        retry_after: 1,
        timeout: 0.004,
        hold: KUBE_TIMEOUT * 3,
        // A watch not cut lives for its timeoutSeconds (290 s): most are cut.
        watch_dropped: 0.9,
        drop_within: Duration::from_secs(10),
        watch_expired: 0.5,
        spared: vec![TEST_CLIENT.into()],
        ..Chaos::seeded(seed)
    }
}

/// A client of the fake that meets no fault (it names itself with the [`CLIENT_HEADER`]).
fn spared_client(fake: &FakeKube) -> kube::Client {
    let mut config = kube::Config::new(fake.url().parse().expect("the fake's URL"));
    config.headers.push((
        axum::http::HeaderName::from_static(CLIENT_HEADER),
        axum::http::HeaderValue::from_static(TEST_CLIENT),
    ));
    kube::Client::try_from(config).expect("a client")
}

/// One sample of the process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rss_kb: u64,
    threads: u64,
    tasks: u64,
}

/// A number from `/proc/<pid>/status` (`VmRSS:`, `Threads:`).
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The value of series `name` (with its labels as written, e.g. `{kind="timeout"}`) in an
/// exposition; 0 when absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn scrape(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(url).send().await.ok()?.text().await.ok()
}

async fn sample(http: &reqwest::Client, url: &str, pid: u32) -> Option<Sample> {
    let text = scrape(http, url).await?;
    Some(Sample {
        rss_kb: proc_status(pid, "VmRSS:")?,
        threads: proc_status(pid, "Threads:")?,
        tasks: metric(&text, "vigil_tokio_tasks"),
    })
}

/// The median task count of five samples over 1.5 s, while nothing is rolled out.
async fn idle_tasks(http: &reqwest::Client, url: &str, pid: u32) -> u64 {
    let mut tasks = Vec::new();
    for _ in 0..5 {
        if let Some(s) = sample(http, url, pid).await {
            tasks.push(s.tasks);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    median(tasks)
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// An outage: the fake's resourceVersions between which no decision may promote.
#[derive(Clone, Copy, Debug)]
struct Outage {
    from_rv: u64,
    to_rv: u64,
    seconds: f64,
}

/// Kills Prometheus and starts it again until `done`, at seeded random times: up 12 to 20 s,
/// down 7 to 10 s.
async fn outages(
    prom: Arc<Mutex<PromServer>>,
    fake: Arc<FakeKube>,
    seed: u64,
    done: Arc<AtomicBool>,
) -> Vec<Outage> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut out = Vec::new();
    let between = |rng: &mut Rng, lo: f64, hi: f64| lo + (hi - lo) * rng.uniform();
    loop {
        let up = Duration::from_secs_f64(between(&mut rng, 12.0, 20.0));
        let down = Duration::from_secs_f64(between(&mut rng, 7.0, 10.0));
        let wake = Instant::now() + up;
        while Instant::now() < wake {
            if done.load(Ordering::Relaxed) {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let began = Instant::now();
        tokio::task::block_in_place(|| prom.lock().unwrap().stop());
        tokio::time::sleep(GRACE).await;
        let from_rv = fake.resource_version();
        tokio::time::sleep(down.saturating_sub(GRACE)).await;
        let to_rv = fake.resource_version();
        tokio::task::block_in_place(|| prom.lock().unwrap().restart());
        out.push(Outage {
            from_rv,
            to_rv,
            seconds: began.elapsed().as_secs_f64(),
        });
    }
}

/// What was promoted during an outage: a step advanced, `Promoting` entered, or a canary
/// weight raised (the first weight of a new canary is its start, not a promotion).
fn promoted_in(fake: &FakeKube, fleet: &Fleet, outages: &[Outage]) -> Vec<String> {
    let within = |rv: u64| outages.iter().any(|o| rv > o.from_rv && rv <= o.to_rv);
    let rv_of = |o: &Value| {
        o["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut wrong = Vec::new();
    for i in 0..fleet.apps {
        let name = fleet::app(i);
        let states: Vec<Value> = fake
            .history(&crate::common::controller::releases(), fleet.ns, &name)
            .into_iter()
            .flatten()
            .collect();
        for pair in states.windows(2) {
            let (before, after) = (&pair[0]["status"], &pair[1]["status"]);
            if !within(rv_of(&pair[1]))
                || fleet::rollout_revision(before) != fleet::rollout_revision(after)
            {
                continue;
            }
            let step = |s: &Value| s["currentStep"].as_u64().unwrap_or(0);
            let advanced = before["phase"] == "Progressing"
                && ((after["phase"] == "Progressing" && step(after) > step(before))
                    || after["phase"] == "Promoting");
            if advanced {
                wrong.push(format!(
                    "{name} went from {} step {} to {} step {} during an outage",
                    before["phase"],
                    step(before),
                    after["phase"],
                    step(after)
                ));
            }
        }
        let ingress = format!("{name}-canary");
        let mut previous: Option<u8> = None;
        for state in fake.history(&crate::common::controller::ingresses(), fleet.ns, &ingress) {
            let Some(state) = state else {
                previous = None;
                continue;
            };
            let weight = crate::common::traffic::nginx_canary_weight(Some(&state));
            if let Some(was) = previous
                && was > 0
                && weight > was
                && within(rv_of(&state))
            {
                wrong.push(format!(
                    "{ingress}'s weight rose from {was} to {weight} during an outage"
                ));
            }
            previous = Some(weight);
        }
    }
    wrong
}

/// How many Releases were mid-rollout (`Progressing`) at the start of some outage: the
/// outage check means something only if some were.
fn held_in(fake: &FakeKube, fleet: &Fleet, outages: &[Outage]) -> usize {
    let mut held = 0;
    for i in 0..fleet.apps {
        let states: Vec<Value> = fake
            .history(
                &crate::common::controller::releases(),
                fleet.ns,
                &fleet::app(i),
            )
            .into_iter()
            .flatten()
            .collect();
        for outage in outages {
            let at_start = states.iter().rev().find(|s| {
                s["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse::<u64>().ok())
                    .is_some_and(|rv| rv <= outage.from_rv)
            });
            if at_start.is_some_and(|s| s["status"]["phase"] == "Progressing") {
                held += 1;
            }
        }
    }
    held
}

/// The log lines of vigil (JSON) that report a fault, by (what, kind).
fn logged_faults(log: &Path) -> BTreeMap<(String, String), u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        let message = fields["message"].as_str().unwrap_or_default();
        let what = if message.starts_with("Kubernetes API error") {
            "api"
        } else if message.starts_with("a watch failed and restarts") {
            "watch"
        } else if message.starts_with("a metric query failed") {
            "source"
        } else {
            continue;
        };
        let kind = fields["kind"].as_str().unwrap_or_default().to_string();
        *out.entry((what.to_string(), kind)).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_end_and_nothing_leaks_through_api_faults_and_prometheus_outages() {
    let seed = env_or("VIGIL_SOAK_SEED", DEFAULT_SEED);
    let rollouts = env_or("VIGIL_SOAK_ROLLOUTS", DEFAULT_ROLLOUTS).max(10);
    println!(
        "soak seed {seed}, {rollouts} rollouts (VIGIL_SOAK_SEED={seed} draws the same faults; \
         VIGIL_SOAK_ROLLOUTS=N sets the length)"
    );
    let began = Instant::now();
    let fleet = Fleet {
        ns: "soak",
        apps: 10,
        rounds: rollouts.div_ceil(10),
        // Outages hold the steps; they must not abort healthy canaries here.
        analysis_extra: json!({"consecutiveErrorLimit": 1000}),
        rollout_limit: Duration::from_secs(150),
    };
    let exporter = fleet::start_exporter().await;
    let prom = tokio::task::block_in_place(|| {
        PromServer::start_scraping(&[exporter], Duration::from_secs(1))
    });
    let prometheus_url = prom.url.clone();
    let prom = Arc::new(Mutex::new(prom));
    let fake = Arc::new(
        FakeKube::start_with(Options {
            ready_delay: Duration::from_millis(100),
            // A long soak would keep every request.
            log_requests: false,
            ..Options::default()
        })
        .await,
    );
    fleet::create(&fake, &fleet);
    // From the start: watches are made (and so can fail) mostly when vigil starts, and
    // then when earlier ones fail.
    fake.chaos(chaos(seed));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let log = dir.path().join("vigil.log");
    let listen = format!("127.0.0.1:{}", free_port());
    let out = std::fs::File::create(&log).expect("log file");
    let child = common::vigil()
        .args(["run", "--prometheus", &prometheus_url, "--listen", &listen])
        .args(["--watch-namespace", fleet.ns, "--log-format", "json"])
        .args(["--kube-timeout", &format!("{}s", KUBE_TIMEOUT.as_secs())])
        .env("KUBECONFIG", &kubeconfig)
        .env("VIGIL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("start vigil run");
    let pid = child.id();
    let child = Mutex::new(child);
    let metrics_url = format!("http://{listen}/metrics");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let tail = |lines: usize| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    };

    // Adopted, and idle: the task count before the rollouts.
    let adopted = Instant::now();
    while (0..fleet.apps).any(|i| fleet::status(&fake, &fleet, i)["phase"] != "Waiting") {
        assert!(
            adopted.elapsed() < Duration::from_secs(30),
            "not adopted within 30 s:\n  {}\n{}",
            fleet::statuses(&fake, &fleet),
            tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = idle_tasks(&http, &metrics_url, pid).await;

    let done = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = tokio::spawn({
        let (done, samples, http, url) = (
            done.clone(),
            samples.clone(),
            http.clone(),
            metrics_url.clone(),
        );
        async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(s) = sample(&http, &url, pid).await {
                    samples.lock().unwrap().push(s);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let outages_task = tokio::spawn(outages(prom.clone(), fake.clone(), seed, done.clone()));
    let ended = AtomicUsize::new(0);
    let client = spared_client(&fake);
    let exited = || {
        let status = child.lock().unwrap().try_wait().ok().flatten();
        status.map(|status| status.to_string())
    };
    let limit = fleet.rollout_limit * u32::try_from(fleet.rounds).unwrap_or(u32::MAX);
    let outcome = tokio::time::timeout(
        limit,
        fleet::drive(&fake, &fleet, &client, &exited, &|| {
            ended.fetch_add(1, Ordering::Relaxed);
        }),
    )
    .await;
    let drove = began.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let outages = outages_task.await.expect("the outages task");
    // Calm: Prometheus up (the outage task restarts it before it ends), no new fault; the
    // requests held already end, and the aborted canaries are scaled down.
    fake.calm();
    fleet::settle(&fake, &fleet).await;
    tokio::time::sleep(KUBE_TIMEOUT * 3 + Duration::from_secs(2)).await;
    let idle_after = idle_tasks(&http, &metrics_url, pid).await;
    let text = scrape(&http, &metrics_url).await.unwrap_or_default();
    {
        let mut child = child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    // The summary.
    let injected = fake.injected();
    let seen: BTreeMap<&str, u64> = [
        (
            "server_error",
            "vigil_kube_api_errors_total{kind=\"server_error\"}",
        ),
        (
            "throttled",
            "vigil_kube_api_errors_total{kind=\"throttled\"}",
        ),
        ("timeout", "vigil_kube_api_errors_total{kind=\"timeout\"}"),
        (
            "watch_dropped",
            "vigil_kube_watch_errors_total{kind=\"dropped\"}",
        ),
        (
            "watch_expired",
            "vigil_kube_watch_errors_total{kind=\"expired\"}",
        ),
        (
            "prometheus_down",
            "vigil_metric_source_errors_total{kind=\"unreachable\"}",
        ),
    ]
    .into_iter()
    .map(|(kind, series)| (kind, metric(&text, series)))
    .collect();
    let logged = logged_faults(&log);
    let samples = samples.lock().unwrap().clone();
    let first = samples.first().copied();
    let last = samples.last().copied();
    let max = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    let third = samples.len() / 3;
    let middle: Vec<Sample> = samples[third..2 * third].to_vec();
    let end: Vec<Sample> = samples[2 * third..].to_vec();
    let rss_middle = median(middle.iter().map(|s| s.rss_kb).collect());
    let rss_end = median(end.iter().map(|s| s.rss_kb).collect());
    let tasks_middle = median(middle.iter().map(|s| s.tasks).collect());
    let tasks_end = median(end.iter().map(|s| s.tasks).collect());
    let summary = format!(
        "soak: seed {seed}; {} rollouts ended in {:.0} s ({:.0} s in all); \
         faults injected {injected:?}; seen in /metrics {seen:?}; \
         {} Prometheus outages ({:.0} s down in all); \
         RSS kB first/last/max {}/{}/{}, median 2nd/3rd third {rss_middle}/{rss_end}; \
         threads first/last/max {}/{}/{}; tokio tasks first/last/max {}/{}/{}, \
         median 2nd/3rd third {tasks_middle}/{tasks_end}, idle before/after the rollouts {idle_before}/{idle_after}; \
         {} samples",
        ended.load(Ordering::Relaxed),
        drove.as_secs_f64(),
        began.elapsed().as_secs_f64(),
        outages.len(),
        outages.iter().map(|o| o.seconds).sum::<f64>(),
        first.map_or(0, |s| s.rss_kb),
        last.map_or(0, |s| s.rss_kb),
        max(|s| s.rss_kb),
        first.map_or(0, |s| s.threads),
        last.map_or(0, |s| s.threads),
        max(|s| s.threads),
        first.map_or(0, |s| s.tasks),
        last.map_or(0, |s| s.tasks),
        max(|s| s.tasks),
        samples.len(),
    );
    println!("{summary}");
    let context = || {
        format!(
            "{summary}\nlogged faults: {logged:?}\nreleases:\n  {}\n--- vigil log (last lines) ---\n{}",
            fleet::statuses(&fake, &fleet),
            tail(40)
        )
    };

    // Every rollout ended, exactly once, as its data say.
    let outcomes = match outcome {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(e)) => panic!("{e}\n{}", context()),
        Err(_) => panic!("the rollouts did not end within {limit:?}\n{}", context()),
    };
    let wrong: Vec<String> = outcomes
        .iter()
        .enumerate()
        .flat_map(|(i, o)| fleet::check_app(&fake, &fleet, i, o))
        .collect();
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), context());
    let done_rollouts: usize = outcomes.iter().map(Vec::len).sum();
    assert!(done_rollouts >= rollouts, "{done_rollouts} rollouts");

    // Nothing promoted while Prometheus was down, and some Releases were mid-rollout then.
    assert!(!outages.is_empty(), "no outage happened\n{}", context());
    let promoted = promoted_in(&fake, &fleet, &outages);
    assert!(
        promoted.is_empty(),
        "{}\n{}",
        promoted.join("\n"),
        context()
    );
    let held = held_in(&fake, &fleet, &outages);
    println!("soak: promoted during outages: 0; Releases mid-rollout at an outage's start: {held}");
    assert!(
        held > 0,
        "no Release was mid-rollout in an outage\n{}",
        context()
    );

    // Every fault shows in /metrics and in the logs, one line each.
    for kind in FAULT_KINDS {
        assert!(
            injected[kind] > 0,
            "no {kind} fault was injected\n{}",
            context()
        );
    }
    for kind in ["server_error", "throttled", "watch_expired"] {
        assert_eq!(
            seen[kind],
            injected[kind],
            "{kind} in /metrics\n{}",
            context()
        );
    }
    // An answer slow for want of CPU may time out too, besides those held on purpose.
    assert!(
        seen["timeout"] >= injected["timeout"],
        "timeouts in /metrics\n{}",
        context()
    );
    // A cut is seen by vigil only on a watch it still reads.
    assert!(
        seen["watch_dropped"] > 0 && seen["watch_dropped"] <= injected["watch_dropped"],
        "watch drops in /metrics\n{}",
        context()
    );
    assert!(seen["prometheus_down"] > 0, "{}", context());
    for (what, kind, series) in [
        ("api", "server_error", "server_error"),
        ("api", "throttled", "throttled"),
        ("api", "timeout", "timeout"),
        ("watch", "dropped", "watch_dropped"),
        ("watch", "expired", "watch_expired"),
        ("source", "unreachable", "prometheus_down"),
    ] {
        let lines = logged
            .get(&(what.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            lines,
            seen[series],
            "log lines of {what} {kind}\n{}",
            context()
        );
    }

    // Flat: the last third's medians near the second third's, and idle tasks back near
    // where they were before the rollouts. A leak of a task or of a few kB per rollout over
    // hundreds of rollouts breaks these bounds; the load's own swings do not.
    assert!(samples.len() >= 9, "too few samples\n{}", context());
    assert!(
        rss_end <= rss_middle + rss_middle / 4 + 8 * 1024,
        "RSS grew: {rss_middle} -> {rss_end} kB\n{}",
        context()
    );
    assert!(
        tasks_end <= tasks_middle + tasks_middle / 2 + 20,
        "tasks grew: {tasks_middle} -> {tasks_end}\n{}",
        context()
    );
    assert!(
        idle_after <= idle_before + idle_before / 2 + 40,
        "idle tasks did not come back: {idle_before} -> {idle_after}\n{}",
        context()
    );
}
