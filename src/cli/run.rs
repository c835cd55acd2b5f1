//! `vigil run`: the controller, and the logging of every command.

use super::exit::{EXIT_CANNOT_RUN, EXIT_PASS, Failure, tokio_main, usage};
use super::input::{ConnectionArgs, parse_duration, prometheus_config};
use super::term;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The examples of `vigil run --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil run --prometheus http://prometheus.monitoring:9090\n  \
    vigil run --prometheus http://prometheus:9090 --leader-elect --lease-namespace vigil-system\n  \
    vigil run --prometheus http://prometheus:9090 --shards 6 --lease-namespace vigil-system\n  \
    vigil run --prometheus http://localhost:9090 --watch-namespace shop --log-format json\n  \
    vigil run --prometheus http://prometheus:9090 --api-token-file /etc/vigil/token \\\n      \
        --api-read-token-file /etc/vigil/read-token --prometheus-ui-url https://prometheus.example.com\n\n\
    Serves the live dashboard (/), /metrics, /healthz, /readyz and the /v1 API on --listen. With --leader-elect, replicas \
    elect a leader on a coordination.k8s.io Lease and only the leader acts. With --shards N, \
    the Releases are split into N shards, one Lease each (<lease-name>-0 to -N-1), shared \
    fairly by the replicas, which all act (see docs/controller.md).";

/// Arguments of `vigil run`.
#[derive(Args)]
pub struct RunArgs {
    /// Prometheus base URL.
    #[arg(long, env = "VIGIL_PROMETHEUS_URL")]
    prometheus: String,
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: std::net::SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "VIGIL_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Elect a leader among replicas on a Lease; needed with more than one replica.
    #[arg(long)]
    leader_elect: bool,
    /// Split the Releases between the replicas into N shards by a stable hash of
    /// namespace/name, one Lease per shard (<lease-name>-<i>); every replica acts on the
    /// shards it holds. Implies election (per shard); every replica must be given the same N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(vigil::cluster::shards::MAX_SHARDS)))]
    shards: Option<u32>,
    /// The Lease's name; with --shards, the prefix of the shards' Leases.
    #[arg(long, default_value = "vigil-controller")]
    lease_name: String,
    /// The Lease's namespace (default: the pod's, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the other replicas wait, after they last saw a Lease renewed, before taking
    /// it over (a dead replica's shards or leadership). Whole seconds are written.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    lease_duration: String,
    /// How long a holder keeps trying to renew a Lease before it gives it up; shorter than
    /// --lease-duration.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    renew_deadline: String,
    /// How often Leases are renewed and free ones tried.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    retry_period: String,
    /// Releases reconciled at once at most (each reconcile mostly waits on the API server
    /// and Prometheus); 0 for no bound.
    #[arg(long, value_name = "N", default_value_t = vigil::cluster::reconciler::DEFAULT_WORKERS)]
    workers: u16,
    /// How long a Kubernetes API request may wait for its answer before it fails (and its
    /// reconcile is retried); watches are not cut by it. Without it, a request the API
    /// server never answers would hold its Release forever.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    kube_timeout: String,
    /// How old a point must be before an analysis takes it as final and later analyses
    /// stop fetching it: each analysis fetches only the points after the last final one,
    /// so what it reads does not grow with the rollout's age. Cover the delay with which
    /// samples reach the source (scrape and rule intervals; remote-write pipelines more).
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    query_lag: String,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Cluster-wide notification receivers: a YAML file of `notifications:` entries with
    /// `provider`, `urlFile`, optional `secretFile`, `events`, `minSeverity` (see
    /// docs/notifications.md).
    #[arg(long, value_name = "FILE", env = "VIGIL_NOTIFY_CONFIG")]
    notify_config: Option<std::path::PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
    /// Serve the dashboard at / to anyone who can reach --listen, without a credential
    /// (read-only, unless --api-insecure-no-auth opens the API too). Only for a port nothing
    /// untrusted can reach.
    #[arg(long)]
    dashboard_insecure_no_auth: bool,
    /// Prometheus's web UI (default: none), for the dashboard's links from each query to
    /// its graph page, e.g. https://prometheus.example.com.
    #[arg(long, value_name = "URL", env = "VIGIL_PROMETHEUS_UI_URL")]
    prometheus_ui_url: Option<String>,
}

/// The `/v1` API of `vigil run` (alerts, canary actions, judge).
#[derive(Args)]
struct ApiArgs {
    /// File with the bearer token API callers must send (Authorization: Bearer); or set
    /// the token in the VIGIL_API_TOKEN environment variable.
    #[arg(long, value_name = "PATH")]
    api_token_file: Option<PathBuf>,
    /// File with a read-only token: it may see the dashboard (no operator buttons), and
    /// /v1 answers it 403.
    #[arg(long, value_name = "PATH")]
    api_read_token_file: Option<PathBuf>,
    /// The bearer token, from the environment (prefer --api-token-file).
    #[arg(long, env = "VIGIL_API_TOKEN", hide_env_values = true, hide = true)]
    api_token: Option<String>,
    /// File with the secret of HMAC-signed requests (X-Vigil-Timestamp, X-Vigil-Signature).
    #[arg(long, value_name = "PATH")]
    api_hmac_secret_file: Option<PathBuf>,
    /// Without a token or secret, serve the API to anyone (default: it answers 503).
    #[arg(long)]
    api_insecure_no_auth: bool,
    /// The largest request body the API accepts, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = vigil::runtime::server::DEFAULT_BODY_LIMIT)]
    api_body_limit: usize,
    /// Judgements (POST /v1/judge) running at once; more wait, then get 503.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    judge_concurrency: u16,
    /// The alert label holding the Release's namespace ("" turns default matching off).
    #[arg(long, value_name = "LABEL", default_value = "namespace")]
    alert_namespace_label: String,
    /// The alert label holding the Release's name ("" turns it off).
    #[arg(long, value_name = "LABEL", default_value = "canary")]
    alert_canary_label: String,
    /// The alert label holding the Release's spec.service.name ("" turns it off).
    #[arg(long, value_name = "LABEL", default_value = "service")]
    alert_service_label: String,
}

impl ApiArgs {
    fn options(&self) -> Result<vigil::runtime::server::ApiOptions, Failure> {
        let auth = vigil::runtime::server::AuthConfig::load(
            self.api_token_file.as_deref(),
            self.api_token.as_deref(),
            self.api_hmac_secret_file.as_deref(),
            self.api_insecure_no_auth,
        )
        .and_then(|a| a.with_read_token_file(self.api_read_token_file.as_deref()))
        .map_err(usage)?;
        Ok(vigil::runtime::server::ApiOptions {
            auth,
            matching: vigil::api::alerts::Matching {
                namespace_label: self.alert_namespace_label.clone(),
                canary_label: self.alert_canary_label.clone(),
                service_label: self.alert_service_label.clone(),
            },
            body_limit: self.api_body_limit,
            judge_slots: usize::from(self.judge_concurrency),
        })
    }
}

/// A checked `--prometheus-ui-url`.
pub fn prometheus_ui(url: &str) -> Result<String, Failure> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.password().is_none() => {
            Ok(url.trim_end_matches('/').to_string())
        }
        Ok(_) => Err(usage(format!(
            "--prometheus-ui-url {url}: give an http(s) address without a password (viewers see it in links)"
        ))),
        Err(e) => Err(usage(format!(
            "--prometheus-ui-url {url}: not a URL ({e}); e.g. https://prometheus.example.com"
        ))),
    }
}

/// The format of log lines.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr; `VIGIL_LOG` filters (default: warnings, or info for the controller).
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: in a Pod (or a file) they are escape codes in every line.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(term::colour(term::Stream::Stderr))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

/// Runs the controller until it stops.
pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let prometheus = prometheus_config(&args.prometheus, &args.connection)?;
    let mut election = vigil::cluster::leader::LeaderConfig::new(
        args.lease_name.clone(),
        args.lease_namespace.clone(),
        vigil::cluster::leader::LeaderConfig::default_identity(),
    );
    election.lease_duration = parse_duration(&args.lease_duration, "--lease-duration")?.to_std();
    election.renew_deadline = parse_duration(&args.renew_deadline, "--renew-deadline")?.to_std();
    election.retry_period = parse_duration(&args.retry_period, "--retry-period")?.to_std();
    let shards = args
        .shards
        .map(|shards| vigil::cluster::shards::ShardConfig {
            base: election.clone(),
            shards,
        });
    match &shards {
        Some(s) => s.validate(),
        None => election.validate(),
    }
    .map_err(|e| usage(format!("{e}: see vigil run --help")))?;
    let leader = (args.leader_elect && shards.is_none()).then_some(election);
    let config = vigil::runtime::controller::RunConfig {
        prometheus,
        listen: args.listen,
        watch_namespace: args.watch_namespace.clone(),
        leader,
        shards,
        concurrency: args.connection.concurrency,
        workers: args.workers,
        query_lag: parse_duration(&args.query_lag, "--query-lag")?.to_std(),
        kube_timeout: match parse_duration(&args.kube_timeout, "--kube-timeout")?.to_std() {
            zero if zero.is_zero() => {
                return Err(usage("--kube-timeout must be longer than 0s, e.g. 60s"));
            }
            timeout => timeout,
        },
        notify_config: args.notify_config.clone(),
        api: args.api.options()?,
        dashboard: vigil::runtime::controller::DashboardOptions {
            insecure_no_auth: args.dashboard_insecure_no_auth,
            prometheus_ui: match args.prometheus_ui_url.as_deref() {
                Some(url) => Some(prometheus_ui(url)?),
                None => None,
            },
        },
    };
    tokio_main(async move {
        vigil::runtime::controller::run(config)
            .await
            .map(|()| EXIT_PASS)
            .map_err(|message| Failure {
                code: EXIT_CANNOT_RUN,
                message,
            })
    })
}
