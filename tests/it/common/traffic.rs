//! A tiny traffic generator that stands in for ingress-nginx in front of a stable and a canary
//! version: every tick it makes up a batch of requests, splits them between the versions by
//! the canary weight it reads from a callback (in the end-to-end tests, the
//! `nginx.ingress.kubernetes.io/canary-weight` annotation that vigil set on the canary
//! Ingress), draws each request's status and latency from its version's [`Model`], and serves
//! the totals on `/metrics` in the Prometheus text format under ingress-nginx's metric names,
//! for a real Prometheus to scrape.
//!
//! No HTTP request is actually sent anywhere: the requests are counts. What matters to the
//! controller is what Prometheus sees, and counts let the tests drive thousands of requests
//! per second, which a rollout needs to show within a few seconds that a healthy canary is
//! within the template's tolerances.
//!
//! ```ignore
//! let traffic = Traffic::start(Options { canary: Model::default().regressing(), ..Options::default() },
//!                              move || nginx_canary_weight(fake.get(&ingresses, "shop", "web-canary").as_ref())).await;
//! let prom = PromServer::start_scraping(&[traffic.target()], Duration::from_secs(1));
//! traffic.weights();          // every weight it applied, in order, with when
//! ```
//!
//! The metrics, with labels `namespace`, `ingress`, `service` (the main Ingress and its
//! Service, for both versions, as ingress-nginx records canary traffic), `canary` (`""` for
//! stable, the canary upstream `<namespace>-<canary service>-<port>` for the canary), plus
//! `host`, `method` and `path`:
//! - `nginx_ingress_controller_requests` counter, with `status` (`200` or `500`);
//! - `nginx_ingress_controller_request_duration_seconds` histogram (`_bucket`, `_sum`,
//!   `_count`), without `status`, as in ingress-nginx.
//!
//! A version's series appear once it has served a request, as they do in ingress-nginx.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;
use vigil::source::simulated::Rng;

/// The annotation of the canary Ingress that carries its traffic share.
pub const WEIGHT_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// The annotation that makes an Ingress a canary Ingress.
pub const CANARY_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary";

/// ingress-nginx's default latency buckets (those of the Prometheus client libraries).
pub const BUCKETS: [f64; 11] = super::BUCKETS;

/// How one version answers requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Model {
    /// The chance that a request is answered with a 500.
    pub error_rate: f64,
    /// Median latency in seconds; latencies are log-normal.
    pub latency_median: f64,
    /// Log-scale spread of latency (sigma of the log-normal).
    pub latency_sigma: f64,
}

impl Default for Model {
    /// 1% errors, median 80 ms.
    fn default() -> Self {
        Self {
            error_rate: 0.01,
            latency_median: 0.080,
            latency_sigma: 0.5,
        }
    }
}

impl Model {
    /// This model with 5x the error rate and +50% latency: a regression the ingress-nginx
    /// template must catch on both of its metrics.
    pub fn regressing(self) -> Self {
        Self {
            error_rate: (self.error_rate * 5.0).min(1.0),
            latency_median: self.latency_median * 1.5,
            ..self
        }
    }
}

/// What the generator produces.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests per second through the Ingress, both versions together.
    pub rps: f64,
    /// How often a batch of requests is made (and the weight read).
    pub tick: Duration,
    /// The stable version.
    pub stable: Model,
    /// The canary.
    pub canary: Model,
    /// Seed of the random stream.
    pub seed: u64,
    /// The `namespace` label: the main Ingress's namespace.
    pub namespace: String,
    /// The `ingress` label: the main Ingress.
    pub ingress: String,
    /// The `service` label: the main Ingress's Service.
    pub service: String,
    /// The `canary` label of the canary's requests: `<namespace>-<canary service>-<port>`.
    pub canary_upstream: String,
    /// The `host` label: the Ingress rule's host.
    pub host: String,
}

impl Default for Options {
    /// 20,000 requests per second in 100 ms ticks to Ingress `shop/web` (Service `web`, canary
    /// Service `web-canary` on port 80, host `shop.example`); both versions [`Model::default`].
    fn default() -> Self {
        Self {
            rps: 20_000.0,
            tick: Duration::from_millis(100),
            stable: Model::default(),
            canary: Model::default(),
            seed: 1,
            namespace: "shop".into(),
            ingress: "web".into(),
            service: "web".into(),
            canary_upstream: "shop-web-canary-80".into(),
            host: "shop.example".into(),
        }
    }
}

/// The annotation with the total the weight is a share of (default 100).
pub const WEIGHT_TOTAL_ANNOTATION: &str = "nginx.ingress.kubernetes.io/canary-weight-total";

/// The canary's traffic share in percent that ingress-nginx would apply for a canary
/// Ingress (`None`: there is none): `canary-weight` of `canary-weight-total` (default 100)
/// if `canary` is `"true"`, else 0; at most 100.
pub fn nginx_canary_weight(ingress: Option<&Value>) -> u8 {
    let Some(annotations) = ingress.and_then(|i| i["metadata"]["annotations"].as_object()) else {
        return 0;
    };
    if annotations.get(CANARY_ANNOTATION).and_then(Value::as_str) != Some("true") {
        return 0;
    }
    let number = |key: &str| {
        annotations
            .get(key)
            .and_then(Value::as_str)
            .and_then(|w| w.trim().parse::<u64>().ok())
    };
    let weight = number(WEIGHT_ANNOTATION).unwrap_or(0);
    let total = number(WEIGHT_TOTAL_ANNOTATION)
        .filter(|&t| t > 0)
        .unwrap_or(100);
    (weight * 100 / total).min(100) as u8
}

/// One version's totals since the start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Requests answered with a 200.
    pub ok: u64,
    /// Requests answered with a 500.
    pub errors: u64,
    /// Requests per latency bucket (not cumulative); the last one is `+Inf`.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// The sum of the latencies, in seconds.
    pub latency_sum: f64,
}

impl Totals {
    /// All requests.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    fn record(&mut self, rng: &mut Rng, model: &Model) {
        if rng.uniform() < model.error_rate {
            self.errors += 1;
        } else {
            self.ok += 1;
        }
        let latency = model.latency_median * (model.latency_sigma * rng.normal()).exp();
        self.latency_sum += latency;
        let bucket = BUCKETS
            .iter()
            .position(|&le| latency <= le)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket] += 1;
    }
}

#[derive(Debug, Default)]
struct State {
    stable: Totals,
    canary: Totals,
    /// Every weight applied, when it was first applied (since the start).
    weights: Vec<(Duration, u8)>,
}

/// A running generator; dropping it stops it.
pub struct Traffic {
    addr: std::net::SocketAddr,
    options: Arc<Options>,
    /// How the stable version answers from now on (at first `options.stable`).
    stable: Arc<Mutex<Model>>,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Traffic {
    /// Starts making traffic at once, split by `weight()` (percent to the canary, read every
    /// tick), and serves `/metrics` on a free loopback port.
    pub async fn start(options: Options, weight: impl Fn() -> u8 + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the traffic generator");
        let addr = listener.local_addr().expect("local addr");
        let stable = Arc::new(Mutex::new(options.stable));
        let options = Arc::new(options);
        let state = Arc::new(Mutex::new(State::default()));

        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get({
                let (options, state) = (options.clone(), state.clone());
                move || {
                    let text = render(&options, &state.lock().unwrap());
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            text,
                        )
                    }
                }
            }),
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve /metrics");
        });

        let generator = tokio::spawn({
            let (options, state, stable) = (options.clone(), state.clone(), stable.clone());
            async move {
                let mut rng = Rng::new(options.seed);
                let started = Instant::now();
                let mut last = started;
                let mut tick = tokio::time::interval(options.tick);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let now = Instant::now();
                    // The rate holds even when a tick comes late on a busy machine.
                    let elapsed = now.duration_since(last).as_secs_f64();
                    last = now;
                    let w = weight().min(100);
                    let share = f64::from(w) / 100.0;
                    let n = rng.poisson(options.rps * elapsed) as u64;
                    let stable_model = *stable.lock().unwrap();
                    let mut state = state.lock().unwrap();
                    if state.weights.last().map(|&(_, last)| last) != Some(w) {
                        state.weights.push((now.duration_since(started), w));
                    }
                    for _ in 0..n {
                        if rng.uniform() < share {
                            state.canary.record(&mut rng, &options.canary);
                        } else {
                            state.stable.record(&mut rng, &stable_model);
                        }
                    }
                }
            }
        });

        Self {
            addr,
            options,
            stable,
            state,
            tasks: vec![server, generator],
        }
    }

    /// From the next tick on, the stable version answers as `model`: the stable pods run
    /// other code, as after a promotion.
    pub fn set_stable(&self, model: Model) {
        *self.stable.lock().unwrap() = model;
    }

    /// `127.0.0.1:PORT`, the scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every weight applied, in order, with the time since the start when it was first
    /// applied; consecutive repeats are one entry. Starts with the first tick's weight.
    pub fn weights(&self) -> Vec<(Duration, u8)> {
        self.state.lock().unwrap().weights.clone()
    }

    /// The weights applied, in order, without repeats or times.
    pub fn weight_sequence(&self) -> Vec<u8> {
        self.weights().into_iter().map(|(_, w)| w).collect()
    }

    /// The stable and the canary totals so far.
    pub fn totals(&self) -> (Totals, Totals) {
        let state = self.state.lock().unwrap();
        (state.stable.clone(), state.canary.clone())
    }

    /// The `/metrics` text as Prometheus would scrape it now.
    pub fn metrics(&self) -> String {
        render(&self.options, &self.state.lock().unwrap())
    }
}

fn render(options: &Options, state: &State) -> String {
    let versions = [
        ("", &state.stable),
        (&*options.canary_upstream, &state.canary),
    ];
    let labels = |canary: &str| {
        format!(
            "canary=\"{canary}\",host=\"{}\",ingress=\"{}\",method=\"GET\",namespace=\"{}\",path=\"/\",service=\"{}\"",
            options.host, options.ingress, options.namespace, options.service
        )
    };
    let mut out = String::new();
    out.push_str(
        "# HELP nginx_ingress_controller_requests The total number of client requests\n\
         # TYPE nginx_ingress_controller_requests counter\n",
    );
    for (canary, totals) in versions {
        if totals.requests() == 0 {
            continue;
        }
        let labels = labels(canary);
        for (status, count) in [("200", totals.ok), ("500", totals.errors)] {
            let _ = writeln!(
                out,
                "nginx_ingress_controller_requests{{{labels},status=\"{status}\"}} {count}"
            );
        }
    }
    out.push_str(
        "# HELP nginx_ingress_controller_request_duration_seconds The request processing time in \
         seconds\n\
         # TYPE nginx_ingress_controller_request_duration_seconds histogram\n",
    );
    for (canary, totals) in versions {
        if totals.requests() == 0 {
            continue;
        }
        let labels = labels(canary);
        let mut cumulative = 0;
        for (k, count) in totals.buckets.iter().enumerate() {
            cumulative += count;
            let le = BUCKETS.get(k).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "nginx_ingress_controller_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "nginx_ingress_controller_request_duration_seconds_sum{{{labels}}} {}",
            totals.latency_sum
        );
        let _ = writeln!(
            out,
            "nginx_ingress_controller_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
    out
}
