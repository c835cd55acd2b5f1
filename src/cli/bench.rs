//! `vigil bench rollouts`: the closed-loop rollout benchmark ([`vigil::bench::rollouts`]);
//! `vigil bench controller`: the controller under load ([`vigil::runtime::bench`]).

use super::exit::{EXIT_CANNOT_RUN, EXIT_PASS, Failure, cannot_run, tokio_main, usage};
use super::progress::Progress;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vigil::bench::rollouts;
use vigil::runtime::bench as controller_bench;

/// The examples of `vigil bench --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil bench rollouts\n  \
    vigil bench rollouts --rollouts 200 --scenario errors-x2 --scenario aa-20rps --json results.json\n  \
    vigil bench controller --canaries 1000 --json controller.json";

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Drive simulated releases through the rollout state machine with each judge: shares
    /// promoted, aborted and held, minutes to decide, and the harm users saw.
    #[command(after_help = "Examples:\n  \
        vigil bench rollouts                                     # every scenario, 1000 rollouts each\n  \
        vigil bench rollouts --rollouts 200 --scenario errors-x2 --scenario aa-20rps\n  \
        vigil bench rollouts --seed 7 --threads 2 --json results.json\n  \
        vigil bench rollouts --weights 5,25,50,100 --interval 2 --deadline 90\n\n\
        Progress goes to standard error; the table to standard output.")]
    Rollouts(RolloutsArgs),
    /// Run the controller in this process with many Releases in flight, against a fake
    /// Kubernetes API server and a simulated Prometheus in a child process, on an accelerated
    /// clock: its memory, CPU, API requests, analysis cost and reconcile latency, and whether
    /// every rollout went through its plan.
    #[command(after_help = "Examples:\n  \
        vigil bench controller                                   # 1000 Releases, 70-minute rollouts\n  \
        vigil bench controller --canaries 20 --minutes 8 --speed 60\n  \
        vigil bench controller --canaries 1000 --speed 10 --json controller.json\n\n\
        Progress goes to standard error; the table to standard output. Linux only (/proc).")]
    Controller(ControllerArgs),
    /// Serve the fake Kubernetes API server and the simulated Prometheus of `bench
    /// controller` until standard input closes (its child process).
    #[command(hide = true)]
    Services,
}

/// Arguments of `vigil bench controller`.
#[derive(Args)]
pub struct ControllerArgs {
    /// Releases in flight.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    canaries: u32,
    /// Namespaces they are spread over (default: one per 10 Releases).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    namespaces: Option<u32>,
    /// Planned length of each rollout in simulated minutes (8 steps, each held at least an
    /// eighth of it, one minute at least).
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u32).range(8..=1440))]
    minutes: u32,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Prometheus queries in flight per analysis, as `vigil run --concurrency`.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Reconciles at once at most, as `vigil run --workers` (0: no bound).
    #[arg(long, default_value_t = vigil::cluster::reconciler::DEFAULT_WORKERS)]
    workers: u16,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Arguments of `vigil bench rollouts`.
#[derive(Args)]
pub struct RolloutsArgs {
    /// Rollouts simulated per scenario.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Base seed of the simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run only this scenario; repeat for more (default: all).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// The canary weights of the steps, in percent.
    #[arg(long, value_delimiter = ',', default_values_t = [10u8, 50, 100])]
    weights: Vec<u8>,
    /// Minutes between analyses.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Minutes after the first traffic at which an undecided rollout counts as held.
    #[arg(long, default_value_t = 60.0)]
    deadline: f64,
    /// False-abort level of vigil and the oracle.
    #[arg(long, default_value_t = rollouts::DEFAULT_ALPHA)]
    alpha: f64,
    /// Promotion error level of vigil and the oracle.
    #[arg(long, default_value_t = rollouts::DEFAULT_BETA)]
    beta: f64,
    /// vigil's (and the oracle's) promotion guard, as a multiple of each tolerance.
    #[arg(long, default_value_t = rollouts::DEFAULT_GUARD_FACTOR)]
    guard: f64,
}

/// Runs a benchmark.
pub fn run(command: &BenchCommand) -> Result<u8, Failure> {
    match command {
        BenchCommand::Rollouts(args) => run_rollouts(args),
        BenchCommand::Controller(args) => run_controller(args),
        BenchCommand::Services => tokio_main(serve_services()),
    }
}

/// The child process of `bench controller`: prints `{"kube": URL, "prometheus": URL}` on one
/// line once both listen, and serves until standard input closes.
async fn serve_services() -> Result<u8, Failure> {
    use vigil::bench::fake_prometheus::{self, SimulatedPrometheus};
    use vigil::fake_kube::{FakeKube, Options};
    use vigil::source::simulated::{SimulatedSource, VersionModel};
    let fake = FakeKube::try_start_with(Options {
        log_requests: false,
        ..Options::default()
    })
    .await
    .map_err(cannot_run)?;
    let template = vigil::template::load::parse(controller_bench::TEMPLATE_YAML, "built-in")
        .map_err(|e| cannot_run(format!("the built-in template does not load: {e:?}")))?;
    let model = VersionModel::default();
    let prometheus = SimulatedPrometheus {
        source: SimulatedSource::new(&template, model, model, 1),
        canary_matchers: controller_bench::CANARY_MATCHERS.into(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| cannot_run(format!("the simulated Prometheus cannot listen: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| cannot_run(format!("the simulated Prometheus cannot listen: {e}")))?;
    let app = fake_prometheus::router(std::sync::Arc::new(prometheus));
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!(
        "{}",
        serde_json::json!({"kube": fake.url(), "prometheus": format!("http://{address}")})
    );
    // Standard input closes when `bench controller` ends, however it ends.
    let _ = tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest)
    })
    .await;
    Ok(EXIT_PASS)
}

/// Kills the services' process when `bench controller` ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_controller(args: &ControllerArgs) -> Result<u8, Failure> {
    use std::io::BufRead;
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(usage(
            "--speed: give a positive number of simulated seconds per real second, e.g. 10",
        ));
    }
    let canaries = args.canaries as usize;
    let config = controller_bench::Config {
        canaries,
        namespaces: args
            .namespaces
            .map_or(canaries.div_ceil(10), |n| n as usize)
            .min(canaries),
        minutes: args.minutes,
        speed: args.speed,
        concurrency: usize::from(args.concurrency),
        workers: args.workers,
    };
    let exe = std::env::current_exe()
        .map_err(|e| cannot_run(format!("cannot find vigil's own binary: {e}")))?;
    let mut child = Child(
        std::process::Command::new(exe)
            .args(["bench", "services"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| cannot_run(format!("cannot start the benchmark's services: {e}")))?,
    );
    let mut line = String::new();
    if let Some(out) = child.0.stdout.take() {
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| cannot_run(format!("the benchmark's services did not start: {e}")))?;
    }
    let urls: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
        cannot_run(format!(
            "the benchmark's services did not start ({e}); they said {line:?}"
        ))
    })?;
    let services = controller_bench::Services {
        kube: urls["kube"].as_str().unwrap_or_default().to_string(),
        prometheus: urls["prometheus"].as_str().unwrap_or_default().to_string(),
        pid: child.0.id(),
    };
    let progress = Progress::new(canaries as u64, "Releases");
    let shown = std::sync::Mutex::new(String::new());
    let report = |phase: &str, done: usize, _of: usize| {
        let mut shown = shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *shown != phase {
            *shown = phase.to_string();
            progress.set_message(phase);
        }
        progress.set_position(done as u64);
    };
    let results = tokio_main(async {
        let results = controller_bench::run(&config, &services, &report)
            .await
            .map_err(cannot_run)?;
        progress.finish_and_clear();
        println!("{}", controller_bench::table(&results));
        write_json(args.json.as_deref(), &results)?;
        Ok(EXIT_PASS)
    });
    progress.stop();
    drop(child);
    results
}

/// Writes `value` as JSON to `path`, if one is given.
fn write_json(
    path: Option<&std::path::Path>,
    value: &impl serde::Serialize,
) -> Result<(), Failure> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure {
        code: EXIT_CANNOT_RUN,
        message: format!("cannot encode the results as JSON: {e}"),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Failure {
        code: EXIT_CANNOT_RUN,
        message: format!(
            "cannot write {}: {e}: give --json a path in a writable directory",
            path.display()
        ),
    })
}

fn run_rollouts(args: &RolloutsArgs) -> Result<u8, Failure> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        return Err(usage(
            "--interval: give a positive number of minutes, e.g. 1",
        ));
    }
    if !(args.deadline.is_finite() && args.deadline >= args.interval) {
        return Err(usage(
            "--deadline: give a number of minutes at least as long as --interval, e.g. 60",
        ));
    }
    for (flag, value) in [("--alpha", args.alpha), ("--beta", args.beta)] {
        if !(value > 0.0 && value < 0.5) {
            return Err(usage(format!(
                "{flag}: give a level between 0 and 0.5, e.g. 0.01 (got {value})"
            )));
        }
    }
    if !(args.guard.is_finite() && args.guard > 0.0) {
        return Err(usage(
            "--guard: give a positive multiple of the tolerance, e.g. 4",
        ));
    }
    let config = rollouts::Config {
        alpha: args.alpha,
        beta: args.beta,
        guard_factor: args.guard,
        rollouts: args.rollouts,
        seed: args.seed,
        threads: usize::from(args.threads),
        scenarios: args.scenarios.clone(),
        weights: args.weights.clone(),
        interval_minutes: args.interval,
        deadline_minutes: args.deadline,
        ..rollouts::Config::default()
    };
    let started = std::time::Instant::now();
    let failure = |e: rollouts::Error| match e {
        rollouts::Error::UnknownScenario { .. } => usage(format!("--scenario: {e}")),
        rollouts::Error::Plan(_) => usage(format!("--weights: {e}")),
        rollouts::Error::Worker => Failure {
            code: EXIT_CANNOT_RUN,
            message: e.to_string(),
        },
    };
    let total = rollouts::total_rollouts(&config).map_err(failure)?;
    rollouts::plan(&config).map_err(failure)?;
    let progress = Progress::new(total as u64, "rollouts");
    let results = rollouts::run_observed(&config, &|n| progress.inc(n as u64)).map_err(failure)?;
    progress.finish();
    println!("{}", rollouts::table(&results));
    println!(
        "{} rollouts per scenario and detector, seed {}, steps {:?}% every {} min, deadline {} min; \
         alpha {}, beta {}, guard {}x the tolerance; tolerances: errors +{}%, latency +{}%; {:.1} s",
        results.rollouts,
        config.seed,
        config.weights,
        config.interval_minutes,
        config.deadline_minutes,
        config.alpha,
        config.beta,
        config.guard_factor,
        100.0 * config.tolerances.errors,
        100.0 * config.tolerances.latency,
        started.elapsed().as_secs_f64()
    );
    write_json(args.json.as_deref(), &results)?;
    Ok(EXIT_PASS)
}
