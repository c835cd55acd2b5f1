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
//! The fleet, its data and the checks are `common::fleet`'s, shared with the soak test. The
//! controller reaches Prometheus through a proxy in this process, which is how a kill lands
//! between two queries of an analysis.

use crate::common::fake_kube::{FakeKube, Options as FakeOptions, RequestRecord};
use crate::common::fleet::{self, Fleet};
use crate::common::{self, PromServer, free_port};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil::source::simulated::Rng;

/// The Releases (rolled out in parallel), their rollouts one after the other.
fn fleet() -> Fleet {
    Fleet {
        ns: "crash",
        apps: 10,
        rounds: 6,
        analysis_extra: json!({}),
        rollout_limit: Duration::from_secs(60),
    }
}
/// The default seed (`VIGIL_CRASH_SEED` overrides it).
const DEFAULT_SEED: u64 = 20_261_202;
/// The longest one app's rollouts may take, kills included, before the test gives up.
const LIMIT: Duration = Duration::from_secs(170);

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
                .args(["--watch-namespace", fleet().ns, "--log-format", "text"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_carry_on_exactly_once_through_random_sigkills() {
    let seed = std::env::var("VIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("crash test seed {seed} (VIGIL_CRASH_SEED={seed} reproduces the kills' choices)");
    let began = Instant::now();

    let exporter = fleet::start_exporter().await;
    let prom = tokio::task::block_in_place(|| {
        PromServer::start_scraping(&[exporter], Duration::from_secs(1))
    });
    let fake = FakeKube::start_with(FakeOptions {
        ready_delay: Duration::from_millis(100),
        ..FakeOptions::default()
    })
    .await;
    fleet::create(&fake, &fleet());
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
    let fleet = fleet();
    let client = fake.client();
    let exited = || vigil.exited().map(|e| e.to_string());
    let outcome =
        tokio::time::timeout(LIMIT, fleet::drive(fake, &fleet, &client, &exited, &|| {})).await;
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
        format!(
            "{summary}\nkills: {kills:?}\nreleases:\n  {}\n--- vigil log (last lines) ---\n{}",
            fleet::statuses(fake, &fleet),
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
    fleet::settle(fake, &fleet).await;
    let wrong: Vec<String> = outcomes
        .iter()
        .enumerate()
        .flat_map(|(i, o)| fleet::check_app(fake, &fleet, i, o))
        .collect();
    let rollouts: usize = outcomes.iter().map(Vec::len).sum();
    println!("{rollouts} rollouts; {summary}");
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), context(fake));
    assert!(rollouts >= 50, "{rollouts} rollouts");
    assert!(kills.len() >= 10, "too few kills to mean much: {summary}");
}
