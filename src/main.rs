//! The `vigil` command line.

mod cli;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use vigil::analysis::{self, AnalysisRequest, PlanError};
use vigil::cluster::ops;
use vigil::data::Window;
use vigil::judge::{Outcome, Report, Verdict};
use vigil::report::{self, Format};
use vigil::rollout::Phase;
use vigil::source::prometheus::{Prometheus, PrometheusConfig};
use vigil::template::load;
use vigil::template::selector::Selector;
use vigil::template::units::PromDuration;

mod progress;
mod term;

/// Exit status: the canary passed.
const EXIT_PASS: u8 = 0;
/// Exit status: the canary failed.
const EXIT_FAIL: u8 = 1;
/// Exit status: bad arguments or input.
const EXIT_USAGE: u8 = 2;
/// Exit status: marginal or inconclusive.
const EXIT_UNDECIDED: u8 = 3;
/// Exit status: the analysis could not run.
const EXIT_CANNOT_RUN: u8 = 4;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Decides from metrics whether a canary release is safe to roll out",
    long_about = "Decides from metrics whether a canary release is safe to roll out.\n\n\
                  Exit status of judge: 0 pass, 1 fail, 3 marginal or inconclusive, \
                  4 the analysis could not run, 2 usage error.",
    after_help = "Examples:\n  \
        vigil demo                          # judge a simulated canary: no cluster, no Prometheus\n  \
        vigil lint analysis-templates/*.yaml\n  \
        vigil judge --prometheus http://prometheus.monitoring:9090 \\\n      \
            --template analysis-templates/http-prometheus-client.yaml --arg job=checkout \\\n      \
            --stable 'version=\"v1.4.2\"' --canary 'version=\"v1.5.0\"' --last 30m\n  \
        vigil crd | kubectl apply -f -      # install the Canary resources\n  \
        vigil run --prometheus http://prometheus.monitoring:9090\n  \
        vigil status web -n shop --watch\n  \
        vigil completions bash > ~/.local/share/bash-completion/completions/vigil\n\n\
        `vigil COMMAND --help` shows each command's options and examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge a canary against stable over a time window, from Prometheus.
    #[command(after_help = "Examples:\n  \
        vigil judge --prometheus http://prometheus.monitoring:9090 \\\n      \
            --template analysis-templates/http-prometheus-client.yaml --arg job=checkout \\\n      \
            --stable 'version=\"v1.4.2\"' --canary 'version=\"v1.5.0\"' --last 30m\n  \
        vigil judge --prometheus http://prometheus.istio-system:9090 \\\n      \
            --template analysis-templates/istio.yaml --arg namespace=bookinfo \\\n      \
            --stable 'destination_app=\"reviews\", destination_version=\"v1\"' \\\n      \
            --canary 'destination_app=\"reviews\", destination_version=\"v2\"' \\\n      \
            --start 2026-11-28T10:00:00Z --end 2026-11-28T11:00:00Z --output json --report review.md\n  \
        vigil judge --prometheus https://mimir.example.com/prometheus --header \"X-Scope-OrgID: team-a\" \\\n      \
            --bearer-token-file /var/run/secrets/kubernetes.io/serviceaccount/token \\\n      \
            --template analysis-templates/ingress-nginx.yaml --arg namespace=shop --arg ingress=web \\\n      \
            --stable 'canary=\"\"' --canary 'canary=\"shop-web-canary-80\"' --last 15m --step 30s\n\n\
        Exit status: 0 pass, 1 fail, 3 marginal or inconclusive, 4 the analysis could not run, \
        2 usage error.")]
    Judge(Box<JudgeArgs>),
    /// Check template files; exits 1 if any has a problem.
    #[command(after_help = "Examples:\n  \
        vigil lint analysis-templates/*.yaml\n  \
        vigil lint my-template.yaml         # each problem names the file, line and field")]
    Lint {
        /// Template files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Roll out two simulated canaries, a healthy one and a faulty one: no cluster, no Prometheus.
    #[command(after_help = "Examples:\n  \
        vigil demo                                  # both rollouts, then vigil-demo-report.html\n  \
        vigil demo --speed 0 --output json          # as fast as possible, one JSON document\n  \
        vigil demo --scenario no-traffic --report demo.md\n\n\
        The same against a real Prometheus: `vigil replay` walks your Canary's steps over a \
        past release with the same state machine and judge, e.g. with --canary canary.yaml \
        --template analysis-templates/demo.yaml --prometheus http://localhost:9090 \
        --stable 'version=\"v1\"' --canary-matchers 'version=\"v2\"' --from 2026-11-20T10:00:00Z \
        --to 2026-11-20T13:00:00Z --report replay.html (more in `vigil replay --help`). In a \
        cluster, `vigil run` does it live; a Canary with dryRun: true only judges and reports.")]
    Demo(cli::demo::DemoArgs),
    /// Replay a Canary over a past release's metrics: what vigil would have done, and when.
    #[command(after_help = "Examples:\n  \
        vigil replay --canary deploy/examples/nginx-gray-release/canary.yaml \\\n    \
        --template analysis-templates/ingress-nginx.yaml --prometheus http://localhost:9090 \\\n    \
        --from 2026-11-20T10:00:00Z --to 2026-11-20T13:00:00Z --report replay.html\n  \
        vigil replay --canary canary.yaml --template t.yaml --prometheus http://localhost:9090 \\\n    \
        --stable 'version=\"v1\"' --canary-matchers 'version=\"v2\"' --from 1789990000 --to 1790000000 --output json\n\n\
        The release starts at --from; the replay stops when the rollout ends or at --to. \
        Exit status: 0 promoted, 1 aborted, 3 unfinished at --to, 2 usage, 4 Prometheus unusable.")]
    Replay(Box<cli::replay::ReplayArgs>),
    /// Print vigil's CustomResourceDefinitions as YAML (kubectl apply -f -).
    #[command(after_help = "Examples:\n  \
        vigil crd | kubectl apply -f -\n  \
        vigil crd > deploy/crds/vigil.dev_crds.yaml")]
    Crd,
    /// Benchmarks on simulated rollouts.
    #[command(subcommand)]
    #[command(after_help = "Examples:\n  \
        vigil bench rollouts\n  \
        vigil bench rollouts --rollouts 200 --scenario errors-x2 --scenario aa-20rps --json results.json")]
    Bench(cli::bench::BenchCommand),
    /// Move a canary past its current step now (with --full, promote it completely).
    #[command(after_help = "Examples:\n  \
        vigil promote web                 # pass the current step (e.g. a pause without duration)\n  \
        vigil promote web -n shop --full  # skip every remaining step and promote now\n  \
        kubectl vigil promote web         # the same, as a kubectl plugin\n\n\
        The request is written to the Canary's status.request; the controller acts on it at its \
        next reconcile.")]
    Promote(PromoteArgs),
    /// Abort the release in flight and send all traffic back to the stable version.
    #[command(after_help = "Examples:\n  \
        vigil abort web\n  \
        vigil abort web -n shop --reason \"5xx spike on the dashboard\"\n\n\
        The request is written to the Canary's status.request; the controller acts on it at its \
        next reconcile. The aborted revision is not retried until the pod template changes again.")]
    Abort(AbortArgs),
    /// Hold a canary where it is (sets spec.paused).
    #[command(after_help = "Examples:\n  \
        vigil pause web\n  \
        vigil pause web -n shop\n\n\
        Traffic stays as it is until `vigil resume`.")]
    Pause(CanaryArgs),
    /// Let a paused canary go on (clears spec.paused).
    #[command(after_help = "Examples:\n  \
        vigil resume web\n  \
        vigil resume web -n shop")]
    Resume(CanaryArgs),
    /// Show where a canary's rollout stands.
    #[command(after_help = "Examples:\n  \
        vigil status web\n  \
        vigil status web -n shop --watch\n\n\
        With --watch, the status is printed again at every change until the rollout has \
        Succeeded (exit 0) or Failed (exit 1), or until Ctrl-C (exit 0).")]
    Status(StatusArgs),
    /// Run the controller: watch Canaries and roll them out (in a cluster, or with KUBECONFIG).
    #[command(after_help = "Examples:\n  \
        vigil run --prometheus http://prometheus.monitoring:9090\n  \
        vigil run --prometheus http://prometheus:9090 --leader-elect --lease-namespace vigil-system\n  \
        vigil run --prometheus http://localhost:9090 --watch-namespace shop --log-format json\n\n\
        Serves /metrics, /healthz and /readyz on --listen. With --leader-elect, replicas \
        elect a leader on a coordination.k8s.io Lease and only the leader acts.")]
    Run(Box<RunArgs>),
    /// Print a shell completion script for vigil to standard output.
    #[command(after_help = "Examples:\n  \
        vigil completions bash > ~/.local/share/bash-completion/completions/vigil\n  \
        vigil completions zsh > \"${fpath[1]}/_vigil\"\n  \
        vigil completions fish > ~/.config/fish/completions/vigil.fish\n  \
        vigil completions powershell >> $PROFILE\n  \
        vigil completions bash --bin-name kubectl-vigil   # for the kubectl plugin's name\n\n\
        The script completes the name the binary was invoked as (kubectl-vigil when installed \
        as the kubectl plugin), or --bin-name.")]
    Completions(CompletionsArgs),
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
    /// The command name the script completes (default: the name vigil was invoked as).
    #[arg(long, value_name = "NAME")]
    bin_name: Option<String>,
}

#[derive(Args)]
struct RunArgs {
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
    /// The Lease's name.
    #[arg(long, default_value = "vigil-controller")]
    lease_name: String,
    /// The Lease's namespace (default: the pod's, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Cluster-wide notification receivers: a YAML file of `notifications:` entries with
    /// `provider`, `urlFile`, optional `secretFile`, `events`, `minSeverity` (see
    /// docs/notifications.md).
    #[arg(long, value_name = "FILE", env = "VIGIL_NOTIFY_CONFIG")]
    notify_config: Option<std::path::PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

/// The `/v1` API of `vigil run` (alerts, canary actions, judge).
#[derive(Args)]
struct ApiArgs {
    /// File with the bearer token API callers must send (Authorization: Bearer); or set
    /// the token in the VIGIL_API_TOKEN environment variable.
    #[arg(long, value_name = "PATH")]
    api_token_file: Option<PathBuf>,
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
    /// The alert label holding the Canary's namespace ("" turns default matching off).
    #[arg(long, value_name = "LABEL", default_value = "namespace")]
    alert_namespace_label: String,
    /// The alert label holding the Canary's name ("" turns it off).
    #[arg(long, value_name = "LABEL", default_value = "canary")]
    alert_canary_label: String,
    /// The alert label holding the Canary's spec.service.name ("" turns it off).
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
struct CanaryArgs {
    /// The Canary's name.
    name: String,
    /// Its namespace; default the current kubeconfig context's.
    #[arg(short, long)]
    namespace: Option<String>,
}

#[derive(Args)]
struct PromoteArgs {
    #[command(flatten)]
    canary: CanaryArgs,
    /// Skip every remaining step and promote now.
    #[arg(long)]
    full: bool,
}

#[derive(Args)]
struct AbortArgs {
    #[command(flatten)]
    canary: CanaryArgs,
    /// Why, shown in the Canary's status and events.
    #[arg(long, value_name = "TEXT", default_value = "aborted by an operator")]
    reason: String,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    canary: CanaryArgs,
    /// Print the status again at every change, until the rollout ends.
    #[arg(short, long)]
    watch: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Markdown,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Json => Format::Json,
            OutputFormat::Markdown => Format::Markdown,
        }
    }
}

#[derive(Args)]
struct JudgeArgs {
    /// Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL.
    #[arg(long, env = "VIGIL_PROMETHEUS_URL")]
    prometheus: String,
    /// The AnalysisTemplate file.
    #[arg(long)]
    template: PathBuf,
    /// A template argument, NAME=VALUE; repeat for more.
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// Label matchers of the stable version, without braces, e.g. version="v1".
    #[arg(long, value_name = "MATCHERS")]
    stable: String,
    /// Label matchers of the canary, without braces, e.g. version="v2".
    #[arg(long, value_name = "MATCHERS")]
    canary: String,
    /// Window start: RFC 3339 or Unix seconds.
    #[arg(long, requires = "end", conflicts_with = "last")]
    start: Option<String>,
    /// Window end: RFC 3339 or Unix seconds.
    #[arg(long, requires = "start", conflicts_with = "last")]
    end: Option<String>,
    /// Judge the last DURATION up to now, e.g. 30m.
    #[arg(long, value_name = "DURATION", required_unless_present = "start")]
    last: Option<String>,
    /// Step between points, and the value of {{ interval }}.
    #[arg(long, default_value = "1m")]
    step: String,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
    /// Also write the report to FILE (.json, .html with charts, .md, or anything else for a table).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args)]
struct ConnectionArgs {
    /// Bearer token for Prometheus.
    #[arg(long, env = "VIGIL_PROMETHEUS_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// File with a bearer token, re-read when it changes (e.g. a service-account token).
    #[arg(long, conflicts_with = "bearer_token")]
    bearer_token_file: Option<PathBuf>,
    /// Basic auth as USER:PASSWORD.
    #[arg(long, env = "VIGIL_PROMETHEUS_BASIC_AUTH", hide_env_values = true)]
    basic_auth: Option<String>,
    /// Extra HTTP header, "Name: value" (e.g. "X-Scope-OrgID: team-a"); repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (testing only).
    #[arg(long)]
    insecure_skip_verify: bool,
    /// Timeout of one query.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Retries after a 5xx answer or a timeout.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// A message for the user and the exit status that goes with it.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

/// Logs to stderr; `VIGIL_LOG` filters (default: warnings, or info for the controller).
fn init_logging(format: LogFormat, default: &str) {
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

fn run_controller(args: RunArgs) -> Result<u8, Failure> {
    let prometheus = prometheus_config(&args.prometheus, &args.connection)?;
    let leader = args.leader_elect.then(|| {
        vigil::cluster::leader::LeaderConfig::new(
            args.lease_name.clone(),
            args.lease_namespace.clone(),
            vigil::cluster::leader::LeaderConfig::default_identity(),
        )
    });
    let config = vigil::runtime::controller::RunConfig {
        prometheus,
        listen: args.listen,
        watch_namespace: args.watch_namespace.clone(),
        leader,
        concurrency: args.connection.concurrency,
        notify_config: args.notify_config.clone(),
        api: args.api.options()?,
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

fn main() -> ExitCode {
    let cli = parse_cli();
    match &cli.command {
        Command::Run(args) => init_logging(args.log_format, "info"),
        _ => init_logging(LogFormat::Text, "warn"),
    }
    let result = match cli.command {
        Command::Lint { files } => Ok(lint(&files)),
        Command::Crd => print_crds(),
        Command::Judge(args) => tokio_main(judge(*args)),
        Command::Demo(args) => tokio_main(cli::demo::run(args)),
        Command::Replay(args) => tokio_main(cli::replay::run(*args)),
        Command::Bench(command) => cli::bench::run(&command),
        Command::Promote(args) => tokio_main(promote(args)),
        Command::Abort(args) => tokio_main(abort(args)),
        Command::Pause(args) => tokio_main(set_paused(args, true)),
        Command::Resume(args) => tokio_main(set_paused(args, false)),
        Command::Status(args) => tokio_main(status(args)),
        Command::Run(args) => run_controller(*args),
        Command::Completions(args) => completions(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("vigil: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Parses the command line. Installed as `kubectl-vigil` on the PATH, the binary is a kubectl
/// plugin (`kubectl vigil promote web`): the same commands, with usage shown as `kubectl vigil`.
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if invoked_name() == "kubectl-vigil" {
        command = command.bin_name("kubectl vigil");
    }
    // clap colours help (stdout) and errors (stderr) by the same rule as vigil's own output
    // (its `Auto` then looks at each stream as `term::colour` does).
    if !term::colour(term::Stream::Stdout) && !term::colour(term::Stream::Stderr) {
        command = command.color(clap::ColorChoice::Never);
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The name the binary was invoked as: `vigil`, or `kubectl-vigil` as a kubectl plugin.
fn invoked_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "vigil".to_string())
}

/// `vigil completions SHELL`: the completion script on standard output.
fn completions(args: &CompletionsArgs) -> Result<u8, Failure> {
    use clap::CommandFactory;
    use std::io::Write as _;
    let name = args.bin_name.clone().unwrap_or_else(invoked_name);
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| cannot_run(format!("cannot write the completion script: {e}")))?;
    Ok(EXIT_PASS)
}

fn cannot_run(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_CANNOT_RUN,
        message: message.to_string(),
    }
}

/// A client from the kubeconfig (or the in-cluster config) and the namespace to use.
async fn kube_client(args: &CanaryArgs) -> Result<(kube::Client, String), Failure> {
    let client = kube::Client::try_default().await.map_err(|e| {
        cannot_run(format!(
            "cannot configure a Kubernetes client: {e}: set KUBECONFIG or ~/.kube/config to a \
             cluster you can reach (or run inside a cluster)"
        ))
    })?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, namespace))
}

async fn promote(args: PromoteArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    let done = ops::promote(client, &ns, name, args.full)
        .await
        .map_err(cannot_run)?;
    let what = if args.full {
        "full promotion"
    } else {
        "promotion to the next step"
    };
    report_request(&ns, name, what, &done);
    Ok(EXIT_PASS)
}

async fn abort(args: AbortArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    let done = ops::abort(client, &ns, name, &args.reason)
        .await
        .map_err(cannot_run)?;
    report_request(&ns, name, "abort", &done);
    Ok(EXIT_PASS)
}

fn report_request(ns: &str, name: &str, what: &str, done: &ops::Requested) {
    println!(
        "canary {ns}/{name}: {what} requested (phase {}); the controller acts on it at its next reconcile",
        done.phase.as_str()
    );
    if let Some(old) = &done.replaced {
        println!(
            "  it replaces a pending {:?} request of {}",
            old.action,
            old.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if done.paused {
        println!("  note: spec.paused is set, so the rollout holds until `vigil resume {name}`");
    }
}

async fn set_paused(args: CanaryArgs, paused: bool) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args).await?;
    let name = &args.name;
    let changed = ops::set_paused(client, &ns, name, paused)
        .await
        .map_err(cannot_run)?;
    match (paused, changed) {
        (true, true) => println!("canary {ns}/{name} paused: `vigil resume {name}` to go on"),
        (true, false) => println!("canary {ns}/{name} was already paused"),
        (false, true) => println!("canary {ns}/{name} resumed"),
        (false, false) => println!("canary {ns}/{name} was not paused"),
    }
    Ok(EXIT_PASS)
}

async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    if !args.watch {
        print!(
            "{}",
            ops::status(client, &ns, name).await.map_err(cannot_run)?
        );
        return Ok(EXIT_PASS);
    }
    let mut first = true;
    let watch = ops::watch_status(client, &ns, name, |text| {
        if !first {
            println!();
        }
        first = false;
        println!(
            "[{}]",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        print!("{text}");
    });
    tokio::select! {
        phase = watch => match phase.map_err(cannot_run)? {
            Phase::Failed => Ok(EXIT_FAIL),
            _ => Ok(EXIT_PASS),
        },
        _ = tokio::signal::ctrl_c() => Ok(EXIT_PASS),
    }
}

fn tokio_main<F: std::future::Future<Output = Result<u8, Failure>>>(f: F) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!("cannot start the async runtime: {e}"),
        })?;
    runtime.block_on(f)
}

/// Reads and parses a template file; the template module itself does no I/O.
fn read_template(
    path: &std::path::Path,
) -> Result<(vigil::template::AnalysisTemplate, String, String), load::Problems> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        load::Problems(vec![load::Problem {
            file: origin.clone(),
            line: None,
            field: None,
            message: format!("cannot read the template: {e}: check the file's path"),
        }])
    })?;
    let template = load::parse(&text, &origin)?;
    Ok((template, text, origin))
}

fn print_crds() -> Result<u8, Failure> {
    print!(
        "{}",
        vigil::api::crd::crds_yaml().map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!("cannot render the CRDs: {e}"),
        })?
    );
    Ok(EXIT_PASS)
}

fn lint(files: &[PathBuf]) -> u8 {
    let mut bad = 0;
    for file in files {
        match read_template(file) {
            Ok((t, _, _)) => println!(
                "{}: ok (template {}, {} metrics)",
                file.display(),
                t.metadata.name,
                t.spec.metrics.len()
            ),
            Err(problems) => {
                bad += 1;
                eprintln!("{problems}");
            }
        }
    }
    if bad > 0 {
        eprintln!("vigil: {bad} of {} templates have problems", files.len());
        EXIT_FAIL
    } else {
        EXIT_PASS
    }
}

fn parse_time(text: &str, flag: &str) -> Result<DateTime<Utc>, Failure> {
    vigil::data::parse_time(text).ok_or_else(|| {
        usage(format!(
            "{flag} {text:?} is not a time: use RFC 3339 (2026-11-28T10:00:00Z) or Unix seconds"
        ))
    })
}

fn parse_duration(text: &str, flag: &str) -> Result<PromDuration, Failure> {
    text.parse().map_err(|e| usage(format!("{flag}: {e}")))
}

fn parse_args(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            usage(format!(
                "--arg {pair:?} must be NAME=VALUE, e.g. --arg job=checkout"
            ))
        })?;
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return Err(usage(format!(
                "--arg {name} is given twice: give each argument once"
            )));
        }
    }
    Ok(out)
}

fn prometheus_config(url: &str, c: &ConnectionArgs) -> Result<PrometheusConfig, Failure> {
    let mut config = PrometheusConfig::new(url);
    config.timeout = parse_duration(&c.timeout, "--timeout")?.to_std();
    config.retries = c.retries;
    config.bearer_token = c.bearer_token.clone();
    config.bearer_token_file = c.bearer_token_file.clone();
    if let Some(basic) = &c.basic_auth {
        let (user, password) = basic
            .split_once(':')
            .ok_or_else(|| usage("--basic-auth must be USER:PASSWORD, e.g. vigil:s3cret"))?;
        config.basic_auth = Some((user.to_string(), password.to_string()));
    }
    for header in &c.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            usage(format!(
                "--header {header:?} must be \"Name: value\", e.g. \"X-Scope-OrgID: team-a\""
            ))
        })?;
        config
            .headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    config.ca_file = c.ca_file.clone();
    config.insecure_skip_verify = c.insecure_skip_verify;
    Ok(config)
}

async fn judge(args: JudgeArgs) -> Result<u8, Failure> {
    let (template, text, origin) =
        read_template(&args.template).map_err(|p| usage(p.to_string()))?;
    let stable: Selector = args
        .stable
        .parse()
        .map_err(|e| usage(format!("--stable: {e}{}", braces_hint(&args.stable))))?;
    let canary: Selector = args
        .canary
        .parse()
        .map_err(|e| usage(format!("--canary: {e}{}", braces_hint(&args.canary))))?;
    let step = parse_duration(&args.step, "--step")?;
    let (start, end) = match (&args.start, &args.end, &args.last) {
        (Some(s), Some(e), _) => (parse_time(s, "--start")?, parse_time(e, "--end")?),
        (_, _, Some(last)) => {
            let length = parse_duration(last, "--last")?;
            let end = Utc::now();
            let millis = i64::try_from(length.as_millis()).map_err(|_| {
                usage("--last is too long: give a shorter one, or --start and --end")
            })?;
            (end - chrono::Duration::milliseconds(millis), end)
        }
        _ => return Err(usage("give --start and --end, or --last")),
    };
    let window = Window::new(start, end, step).map_err(|e| usage(e.to_string()))?;
    let config = prometheus_config(&args.prometheus, &args.connection)?;
    let concurrency = args.connection.concurrency;
    let source = Prometheus::new(config).map_err(|e| usage(e.to_string()))?;
    let request = AnalysisRequest {
        look: 1,
        position: vigil::judge::Position::one_off(),
        template: &template,
        args: parse_args(&args.args)?,
        stable,
        canary,
        window,
    };
    let locate = |e: PlanError| usage(locate_plan_error(&e, &template, &text, &origin));
    // A bar of the queries on a terminal: a long window on a slow server takes a while. In
    // pipes the judgement is quiet, as scripts expect.
    let queries: usize = analysis::plan(&request)
        .map_err(&locate)?
        .iter()
        .map(Vec::len)
        .sum();
    let progress = progress::Progress::on_terminal(queries as u64, "queries");
    let counted = cli::Counted {
        inner: &source,
        progress: progress.as_ref(),
    };
    let (report, data) = analysis::run_with_data(&counted, &request, concurrency)
        .await
        .map_err(&locate)?;
    if let Some(progress) = &progress {
        progress.finish_and_clear();
    }
    // .html and .md report files are documents with the data's charts; others go to finish.
    let file = args.report.as_deref();
    if let Some(path) = file.filter(|p| is_document(p)) {
        let charts = report::ChartData {
            template: &template,
            data: &data,
        };
        cli::write_document(&report::single(&report, Some(charts)), path)?;
    }
    finish(
        &report,
        args.output.into(),
        file.filter(|p| !is_document(p)),
    )
}

/// Whether a report file is a document (HTML or Markdown) rather than a plain report.
fn is_document(path: &std::path::Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("html" | "htm" | "md" | "markdown")
    )
}

/// What to do about label matchers given in braces, which `--stable` and `--canary` take
/// without them.
fn braces_hint(matchers: &str) -> &'static str {
    if matchers.trim_start().starts_with('{') {
        "; give the matchers without the braces"
    } else {
        ""
    }
}

/// A setup error prefixed with the file, line and field it concerns, where there is one.
fn locate_plan_error(
    error: &PlanError,
    template: &vigil::template::AnalysisTemplate,
    text: &str,
    origin: &str,
) -> String {
    let path = match error {
        PlanError::MissingArg { name, .. } => template
            .spec
            .args
            .iter()
            .position(|a| &a.name == name)
            .map(|i| format!("spec.args[{i}]")),
        PlanError::Render { metric, field, .. } => template
            .spec
            .metrics
            .iter()
            .position(|m| &m.name == metric)
            .map(|i| format!("spec.metrics[{i}].{field}")),
        PlanError::UnknownArg { .. } | PlanError::SameSelectors(_) => None,
    };
    match path {
        Some(path) => match load::line_of(text, &path) {
            Some(line) => format!("{origin}:{line}: {path}: {error}"),
            None => format!("{origin}: {path}: {error}"),
        },
        None => error.to_string(),
    }
}

/// Prints the report, writes the report file, and picks the exit status.
fn finish(report: &Report, format: Format, file: Option<&std::path::Path>) -> Result<u8, Failure> {
    let errors: Vec<&str> = report
        .metrics
        .iter()
        .filter(|m| m.outcome == Outcome::Error)
        .map(|m| m.reason.as_str())
        .collect();
    let all_failed = !report.metrics.is_empty() && errors.len() == report.metrics.len();
    if !(all_failed && format == Format::Table) {
        print!("{}", report::render(report, format));
        if format == Format::Json {
            println!();
        }
    }
    if let Some(path) = file {
        let file_format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            Some("md" | "markdown") => Format::Markdown,
            _ => Format::Table,
        };
        std::fs::write(path, report::render(report, file_format)).map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!(
                "cannot write the report to {}: {e}: give --report a path in a writable directory",
                path.display()
            ),
        })?;
    }
    if report.verdict == Verdict::Fail {
        return Ok(EXIT_FAIL);
    }
    if !errors.is_empty() {
        let mut message = if all_failed {
            "the analysis could not run: no metric could be fetched".to_string()
        } else {
            format!(
                "the analysis could not run completely: {} of {} metrics failed",
                errors.len(),
                report.metrics.len()
            )
        };
        // The same cause (e.g. an unreachable server) is worth saying once.
        let mut seen = std::collections::BTreeSet::new();
        for e in errors {
            if seen.insert(e) {
                message.push_str("\n  ");
                message.push_str(&e.replace('\n', "\n  "));
            }
        }
        return Err(Failure {
            code: EXIT_CANNOT_RUN,
            message,
        });
    }
    Ok(match report.verdict {
        Verdict::Pass => EXIT_PASS,
        Verdict::Fail => EXIT_FAIL,
        Verdict::Marginal | Verdict::Inconclusive => EXIT_UNDECIDED,
    })
}

#[cfg(test)]
mod tests {
    use super::{Cli, braces_hint};
    use clap::{CommandFactory, Parser};

    /// Every command with its path of names from the top (`["bench", "detection"]`).
    fn commands() -> Vec<(Vec<String>, clap::Command)> {
        fn walk(
            path: &[String],
            command: &clap::Command,
            out: &mut Vec<(Vec<String>, clap::Command)>,
        ) {
            out.push((path.to_vec(), command.clone()));
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let mut path = path.to_vec();
                path.push(sub.get_name().to_string());
                walk(&path, sub, out);
            }
        }
        let mut out = Vec::new();
        walk(&[], &Cli::command(), &mut out);
        out
    }

    /// The words of a shell command line, up to a comment, pipe or redirection.
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let w = word.get_or_insert_with(String::new);
                    for c in chars.by_ref().take_while(|&c| c != '\'') {
                        w.push(c);
                    }
                }
                '"' => {
                    let w = word.get_or_insert_with(String::new);
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => w.extend(chars.next()),
                            c => w.push(c),
                        }
                    }
                }
                '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
                '#' | '|' | '>' | ';' | '&' if word.is_none() => break,
                c if c.is_whitespace() => words.extend(word.take()),
                c => word.get_or_insert_with(String::new).push(c),
            }
        }
        words.extend(word);
        words
    }

    /// The example command lines of a help text (continuation lines joined), as words.
    fn examples(help: &str) -> Vec<Vec<String>> {
        let mut lines = Vec::new();
        let mut pending = String::new();
        for line in help.lines() {
            let line = line.trim();
            match line.strip_suffix('\\') {
                Some(start) => pending.push_str(start),
                None => {
                    pending.push_str(line);
                    lines.push(std::mem::take(&mut pending));
                }
            }
        }
        lines
            .iter()
            .filter_map(|line| {
                line.strip_prefix("vigil ")
                    .or_else(|| line.strip_prefix("kubectl vigil "))
            })
            .map(|rest| {
                let mut all = vec!["vigil".to_string()];
                all.extend(words(rest));
                all
            })
            .collect()
    }

    #[test]
    fn the_word_splitter_handles_quotes_comments_and_pipes() {
        assert_eq!(
            words(r#"judge --stable 'version="v1"' --header "X: a b" --x \"y  # a comment"#),
            [
                "judge",
                "--stable",
                "version=\"v1\"",
                "--header",
                "X: a b",
                "--x",
                "\"y"
            ]
        );
        assert_eq!(words("crd | kubectl apply -f -"), ["crd"]);
        assert_eq!(
            words("completions zsh > \"${fpath[1]}/_vigil\""),
            ["completions", "zsh"]
        );
    }

    #[test]
    fn every_command_has_examples_that_parse() {
        let all = commands();
        assert!(all.len() >= 14, "{} commands", all.len());
        for (path, command) in all {
            let help = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            let name = format!("vigil {}", path.join(" "));
            assert!(
                help.contains("Examples:"),
                "{name} has no examples:\n{help}"
            );
            let examples = examples(&help);
            assert!(!examples.is_empty(), "{name} has no example lines:\n{help}");
            for example in examples {
                if let Err(e) = Cli::try_parse_from(&example) {
                    panic!("the example {example:?} of {name} does not parse:\n{e}");
                }
                assert!(
                    example[1..].starts_with(&path),
                    "the example {example:?} is not one of {name}"
                );
            }
        }
    }

    #[test]
    fn clap_itself_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn matchers_in_braces_are_told_to_drop_them() {
        assert_eq!(
            braces_hint(" {version=\"v1\"}"),
            "; give the matchers without the braces"
        );
        assert_eq!(braces_hint("version=\"v1\""), "");
    }
}
