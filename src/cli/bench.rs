//! `vigil bench rollouts`: the closed-loop rollout benchmark ([`vigil::bench::rollouts`]).

use super::exit::{EXIT_CANNOT_RUN, EXIT_PASS, Failure, usage};
use super::progress::Progress;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use vigil::bench::rollouts;

/// The examples of `vigil bench --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil bench rollouts\n  \
    vigil bench rollouts --rollouts 200 --scenario errors-x2 --scenario aa-20rps --json results.json";

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
    }
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
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!("cannot encode the results as JSON: {e}"),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!(
                "cannot write {}: {e}: give --json a path in a writable directory",
                path.display()
            ),
        })?;
    }
    Ok(EXIT_PASS)
}
