//! Test harness: a real Prometheus server, loaded with synthetic history through
//! `promtool tsdb create-blocks-from openmetrics`, on a free loopback port; and (`fake_kube`)
//! an in-process fake Kubernetes API server.

pub mod browser;
pub mod cdp;
pub mod controller;
pub mod fake_kube;
pub mod fleet;
pub mod traffic;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vigil::source::simulated::Rng;

/// The end of the synthetic history (2026-09-21T14:13:20Z), in Unix seconds.
pub const T_END: i64 = 1_790_000_000;
/// The synthetic history's length in seconds (one hour).
pub const HISTORY: i64 = 3600;
/// The scrape interval of the synthetic history.
pub const SCRAPE: i64 = 15;
/// The latency buckets of the synthetic histograms.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `binary` on PATH, or in /usr/sbin (dnsmasq's place, not on every PATH).
fn which(binary: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|p| p.join(binary))
        .find(|p| p.is_file())
}

/// The path of a required binary, or a failure that says how to install it.
pub fn require(binary: &str) -> PathBuf {
    let (package, what) = match binary {
        "prometheus-alertmanager" => ("prometheus-alertmanager", "a real Alertmanager"),
        "podman" => ("podman", "podman to build and export the container image"),
        "dnsmasq" => (
            "dnsmasq-base",
            "a DNS server for the image to resolve names with",
        ),
        _ => ("prometheus", "a real Prometheus"),
    };
    which(binary).unwrap_or_else(|| {
        panic!(
            "`{binary}` is not installed, and these tests need {what}. Install it with \
             `apt-get update && apt-get install -y {package}` (Debian/Ubuntu), or run ./test.sh, \
             which does that for you."
        )
    })
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// One simulated version of one service.
#[derive(Clone, Debug)]
pub struct Version {
    /// The `job` label.
    pub job: &'static str,
    /// The `version` label.
    pub version: &'static str,
    /// Requests per second.
    pub rps: f64,
    /// Chance of a 500.
    pub error_rate: f64,
    /// Median latency in seconds (log-normal, sigma 0.5).
    pub latency_median: f64,
    /// Seed of this version's random stream.
    pub seed: u64,
    /// From this Unix time on, the version behaves otherwise.
    pub regression: Option<Regression>,
}

/// A change of behaviour at a known time.
#[derive(Clone, Copy, Debug)]
pub struct Regression {
    /// Unix seconds: scrapes after it see the new behaviour.
    pub at: i64,
    /// Chance of a 500 from then on.
    pub error_rate: f64,
    /// Median latency from then on.
    pub latency_median: f64,
}

fn normal_cdf(x: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::new(0.0, 1.0).map(|n| n.cdf(x)).unwrap_or(f64::NAN)
}

/// OpenMetrics text with counters and histograms for every version over the history.
pub fn openmetrics(versions: &[Version]) -> String {
    openmetrics_spans(&[(T_END, versions)])
}

/// OpenMetrics text with, for each `(end, versions)`, counters and histograms of those
/// versions over the hour of history up to `end` (Unix seconds), each starting from zero.
/// Give each span versions of its own (job and version labels): each series' samples are
/// written together and in time order, as promtool reads them.
pub fn openmetrics_spans(spans: &[(i64, &[Version])]) -> String {
    let mut requests = String::from("# TYPE http_requests counter\n");
    let mut latency = String::from("# TYPE http_request_duration_seconds histogram\n");
    for (v, end) in spans
        .iter()
        .flat_map(|(end, versions)| versions.iter().map(move |v| (v, *end)))
    {
        let start = end - HISTORY;
        let times: Vec<i64> = (0..=HISTORY / SCRAPE).map(|i| start + i * SCRAPE).collect();
        let mut rng = Rng::new(v.seed);
        let per_scrape = v.rps * SCRAPE as f64;
        let bucket_probabilities = |median: f64| {
            let mut probabilities = Vec::new();
            let mut previous = 0.0;
            for le in BUCKETS {
                let cdf = normal_cdf((le / median).ln() / 0.5);
                probabilities.push(cdf - previous);
                previous = cdf;
            }
            probabilities.push(1.0 - previous);
            probabilities
        };
        let before = (
            v.error_rate,
            v.latency_median,
            bucket_probabilities(v.latency_median),
        );
        let after = v.regression.map(|r| {
            (
                r.at,
                (
                    r.error_rate,
                    r.latency_median,
                    bucket_probabilities(r.latency_median),
                ),
            )
        });
        let (mut ok, mut errors) = (0.0, 0.0);
        let mut buckets = vec![0.0; before.2.len()];
        let mut sum = 0.0;
        let mut ok_lines = String::new();
        let mut err_lines = String::new();
        let mut hist_lines = String::new();
        for (i, &t) in times.iter().enumerate() {
            if i > 0 {
                let (error_rate, median, probabilities) = match &after {
                    Some((at, regressed)) if t > *at => regressed,
                    _ => &before,
                };
                let e = rng.poisson(per_scrape * error_rate);
                let o = rng.poisson(per_scrape * (1.0 - error_rate));
                errors += e;
                ok += o;
                for (k, p) in probabilities.iter().enumerate() {
                    let n = rng.poisson((e + o) * p);
                    buckets[k] += n;
                    sum += n * median;
                }
            }
            let labels = format!("job=\"{}\",version=\"{}\"", v.job, v.version);
            let _ = writeln!(
                ok_lines,
                "http_requests_total{{{labels},code=\"200\"}} {ok} {t}"
            );
            let _ = writeln!(
                err_lines,
                "http_requests_total{{{labels},code=\"500\"}} {errors} {t}"
            );
            let mut cumulative = 0.0;
            for (k, count) in buckets.iter().enumerate() {
                cumulative += count;
                let le = BUCKETS.get(k).map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    hist_lines,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative} {t}"
                );
            }
            let _ = writeln!(
                hist_lines,
                "http_request_duration_seconds_count{{{labels}}} {cumulative} {t}"
            );
            let _ = writeln!(
                hist_lines,
                "http_request_duration_seconds_sum{{{labels}}} {sum} {t}"
            );
        }
        requests.push_str(&ok_lines);
        requests.push_str(&err_lines);
        latency.push_str(&hist_lines);
    }
    format!("{requests}{latency}# EOF\n")
}

/// A running Prometheus; killed on drop.
pub struct PromServer {
    /// Its base URL.
    pub url: String,
    child: Child,
    log_path: PathBuf,
    /// How it was started, to start it again ([`PromServer::restart`]).
    command: Vec<std::ffi::OsString>,
    _dir: tempfile::TempDir,
}

impl PromServer {
    /// Starts Prometheus on a free port with `openmetrics` loaded as history.
    pub fn start(openmetrics: &str) -> Self {
        let prometheus = require("prometheus");
        let promtool = require("promtool");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let input = dir.path().join("history.om");
        std::fs::write(&input, openmetrics).expect("write openmetrics");
        let out = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Prometheus logs every query it runs (start, end, step) to the query log, which
        // tests read to see what the controller asked for.
        let config = format!(
            "global:\n  scrape_interval: 15s\n  query_log_file: {}\nscrape_configs: []\n",
            dir.path().join("queries.log").display()
        );
        Self::spawn(&prometheus, dir, data, &config)
    }

    /// Every range query Prometheus has run since it started (a server from
    /// [`PromServer::start`]): the `params` of its query log, in order (`query`, `start`,
    /// `end`, `step`).
    pub fn range_queries(&self) -> Vec<serde_json::Value> {
        let path = self._dir.path().join("queries.log");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|entry| entry["params"].clone())
            .filter(|p| p["step"].as_f64().is_some_and(|s| s > 0.0))
            .collect()
    }

    /// Starts an empty Prometheus on a free port that scrapes `targets` (`host:port`, path
    /// `/metrics`, job `traffic`) every `scrape_interval` (whole seconds, at least 1), with
    /// its TSDB in a temporary directory; returns once every target has been scraped. It
    /// blocks: call it from async code through `tokio::task::block_in_place`.
    pub fn start_scraping(targets: &[String], scrape_interval: Duration) -> Self {
        Self::start_scraping_also(targets, &[], scrape_interval)
    }

    /// As [`PromServer::start_scraping`], and also scrapes `later`, targets that start after
    /// Prometheus (such as a `vigil run` that needs its URL), without waiting for them.
    pub fn start_scraping_also(
        targets: &[String],
        later: &[String],
        scrape_interval: Duration,
    ) -> Self {
        let prometheus = require("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let every = format!("{}s", scrape_interval.as_secs().max(1));
        let count = targets.len();
        let targets = targets
            .iter()
            .chain(later)
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n\
             scrape_configs:\n  - job_name: traffic\n    static_configs:\n      \
             - targets: [{targets}]\n"
        );
        let server = Self::spawn(&prometheus, dir, data, &config);
        server.wait_scraped(count, Duration::from_secs(20));
        server
    }

    /// Waits until `count` targets have been scraped successfully. Prometheus applies its
    /// targets only some seconds after it starts (its discovery and scrape managers
    /// throttle updates to one per 5 s), so without this wait a test's first seconds
    /// would have no data.
    fn wait_scraped(&self, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = format!("{}/api/v1/targets?state=active", self.url);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(body)) = http::blocking_get_body(&url) {
                let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let up = targets["data"]["activeTargets"]
                    .as_array()
                    .map_or(0, |t| t.iter().filter(|t| t["health"] == "up").count());
                if up >= count {
                    return;
                }
                last = body;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "prometheus did not scrape all {count} targets within {limit:?}; its targets: \
             {last}\nits log:\n{}",
            self.log()
        );
    }

    /// Runs `prometheus` with `config` and the TSDB at `data` (in `dir`), and waits until it
    /// is ready.
    fn spawn(prometheus: &Path, dir: tempfile::TempDir, data: PathBuf, config: &str) -> Self {
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let log_path = dir.path().join("prometheus.log");
        let command = vec![
            prometheus.as_os_str().to_owned(),
            format!("--config.file={}", config_path.display()).into(),
            format!("--storage.tsdb.path={}", data.display()).into(),
            format!("--web.listen-address=127.0.0.1:{port}").into(),
            "--storage.tsdb.retention.time=100y".into(),
            "--web.enable-admin-api".into(),
        ];
        let child = Self::run(&command, &log_path);
        let mut server = PromServer {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log_path,
            command,
            _dir: dir,
        };
        server.ready_or_panic();
        server
    }

    /// Starts the process, its log appended to `log_path`.
    fn run(command: &[std::ffi::OsString], log_path: &Path) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("log file");
        Command::new(&command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus")
    }

    fn ready_or_panic(&mut self) {
        if !self.wait_ready(Duration::from_secs(30)) {
            panic!(
                "prometheus did not become ready at {}; its log:\n{}",
                self.url,
                self.log()
            );
        }
    }

    /// Stops the server at once (SIGKILL, as a crashed or evicted Prometheus), keeping its
    /// data; [`PromServer::restart`] starts it again. Returns once the process is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on the same port with the same data and waits until it
    /// is ready. It blocks: call it from async code through `tokio::task::block_in_place`.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::run(&self.command, &self.log_path);
        self.ready_or_panic();
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The value of the first series an instant query at now returns (`None`: no series, or
    /// the query failed).
    pub async fn instant(&self, promql: &str) -> Option<f64> {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// How many series a range query from `start` to now (step 1 s) returns, as Grafana's
    /// time-series panels ask; `Err` with Prometheus's answer when the query fails.
    pub async fn range_series(
        &self,
        promql: &str,
        start: std::time::SystemTime,
    ) -> Result<usize, String> {
        let unix = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                .to_string()
        };
        let now = std::time::SystemTime::now();
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/query_range", self.url))
            .query(&[
                ("query", promql),
                ("start", &unix(start)),
                ("end", &unix(now)),
                ("step", "1"),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        match body["data"]["result"].as_array() {
            Some(series) if body["status"] == "success" => Ok(series.len()),
            _ => Err(body.to_string()),
        }
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let url = format!("{}/-/ready", self.url);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(resp) = http::blocking_get(&url)
                && resp
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking GET for readiness checks, without a second HTTP client crate.
pub mod http {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Whether GET `url` (http://host:port/path) answers 200.
    pub fn blocking_get(url: &str) -> std::io::Result<bool> {
        Ok(blocking_get_body(url)?.is_some())
    }

    /// The body of GET `url` if it answers 200 (`None` otherwise).
    pub fn blocking_get_body(url: &str) -> std::io::Result<Option<String>> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")) {
            return Ok(None);
        }
        Ok(response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string()))
    }
}

/// Deployment `name` (2 replicas of `app:1`, pods labelled `app: name`), Service `name` in
/// front of it (port 80) and an nginx Ingress `name` (host `name.example`) in namespace `ns`:
/// an application as a Release targets it.
pub fn put_app(fake: &fake_kube::FakeKube, ns: &str, name: &str) {
    use fake_kube::Res;
    use serde_json::json;
    fake.put_object(
        &Res::deployments(),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "app:1"}]}
                }
            }
        }),
    );
    fake.put_object(
        &Res::core("services"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }),
    );
    fake.put_object(
        &Res::new("networking.k8s.io", "v1", "ingresses"),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": format!("{name}.example"), "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"number": 80}}}
                }]}}]
            }
        }),
    );
}

/// The vigil binary under test.
pub fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `vigil judge` against `url` over the synthetic history's last 50 minutes.
pub fn judge(
    url: &str,
    template: &str,
    job: &str,
    stable: &str,
    canary: &str,
    extra: &[&str],
) -> std::process::Output {
    vigil()
        .args(judge_args(url, &root().join(template), job, stable, canary))
        .args(extra)
        .output()
        .expect("run vigil")
}

/// The arguments of [`judge`]: `vigil judge` against `url` with the template file at
/// `template`, over the synthetic history's last 50 minutes.
pub fn judge_args(
    url: &str,
    template: &Path,
    job: &str,
    stable: &str,
    canary: &str,
) -> Vec<std::ffi::OsString> {
    vec![
        "judge".into(),
        "--prometheus".into(),
        url.into(),
        "--template".into(),
        template.into(),
        "--arg".into(),
        format!("job={job}").into(),
        "--stable".into(),
        stable.into(),
        "--canary".into(),
        canary.into(),
        "--start".into(),
        (T_END - 3000).to_string().into(),
        "--end".into(),
        T_END.to_string().into(),
        "--step".into(),
        "1m".into(),
    ]
}

/// Serves vigil's HTTP server with `state` on a free loopback port; returns its base URL and
/// the task (abort it to stop).
pub async fn serve_on_loopback(
    state: vigil::runtime::server::ServerState,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(vigil::runtime::server::serve(
        listener,
        vigil::runtime::server::router(state),
        std::future::pending(),
    ));
    (url, task)
}
