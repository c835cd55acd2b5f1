//! The `vigil` command line: parses the arguments and runs the command (each in [`cli`]).

mod cli;

use cli::exit::{exit_code, tokio_main};
use cli::run::{LogFormat, init_logging};
use cli::{Command, bench, completions, crd, dashboard, demo, judge, lint, ops, replay, run};
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: the controller's reconciles run on several threads,
/// and glibc keeps an arena per thread whose freed memory it rarely gives back, so the
/// process held about a fifth more memory than it used (`vigil bench controller`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = cli::parse();
    match &cli.command {
        Command::Run(args) => init_logging(args.log_format, "info"),
        _ => init_logging(LogFormat::Text, "warn"),
    }
    exit_code(match cli.command {
        Command::Lint(args) => Ok(lint::run(&args)),
        Command::Crd => crd::run(),
        Command::Judge(args) => tokio_main(judge::run(*args)),
        Command::Demo(args) => tokio_main(demo::run(args)),
        Command::Replay(args) => tokio_main(replay::run(*args)),
        Command::Bench(command) => bench::run(&command),
        Command::Promote(args) => tokio_main(ops::promote(args)),
        Command::Abort(args) => tokio_main(ops::abort(args)),
        Command::Pause(args) => tokio_main(ops::set_paused(args, true)),
        Command::Resume(args) => tokio_main(ops::set_paused(args, false)),
        Command::Status(args) => tokio_main(ops::status(args)),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Run(args) => run::run(*args),
        Command::Completions(args) => completions::run(&args),
    })
}
