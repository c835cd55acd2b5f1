//! The `vigil` command line: a module per command with its arguments (and their help) and
//! what it does, and what the commands share: exit statuses ([`exit`]), what they read
//! ([`input`]) and write ([`output`]), progress on the terminal.

pub mod bench;
pub mod completions;
pub mod crd;
pub mod dashboard;
pub mod demo;
pub mod exit;
pub mod input;
pub mod judge;
pub mod lint;
pub mod ops;
pub mod output;
pub mod progress;
pub mod replay;
pub mod rollout_view;
pub mod run;
pub mod term;
#[cfg(test)]
mod tests;

use clap::{Parser, Subcommand};

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
        vigil crd | kubectl apply -f -      # install the Release resources\n  \
        vigil run --prometheus http://prometheus.monitoring:9090\n  \
        vigil status web -n shop --watch\n  \
        vigil completions bash > ~/.local/share/bash-completion/completions/vigil\n\n\
        `vigil COMMAND --help` shows each command's options and examples."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Judge a canary against stable over a time window, from Prometheus.
    #[command(after_help = judge::EXAMPLES)]
    Judge(Box<judge::JudgeArgs>),
    /// Check template files; exits 1 if any has a problem.
    #[command(after_help = lint::EXAMPLES)]
    Lint(lint::LintArgs),
    /// Roll out two simulated canaries, a healthy one and a faulty one: no cluster, no Prometheus.
    #[command(after_help = demo::EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Replay a Release over a past release's metrics: what vigil would have done, and when.
    #[command(after_help = replay::EXAMPLES)]
    Replay(Box<replay::ReplayArgs>),
    /// Print vigil's CustomResourceDefinitions as YAML (kubectl apply -f -).
    #[command(after_help = crd::EXAMPLES)]
    Crd,
    /// Benchmarks on simulated rollouts.
    #[command(subcommand)]
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::BenchCommand),
    /// Move a canary past its current step now (with --full, promote it completely).
    #[command(after_help = ops::PROMOTE_EXAMPLES)]
    Promote(ops::PromoteArgs),
    /// Abort the release in flight and send all traffic back to the stable version.
    #[command(after_help = ops::ABORT_EXAMPLES)]
    Abort(ops::AbortArgs),
    /// Hold a canary where it is (sets spec.paused).
    #[command(after_help = ops::PAUSE_EXAMPLES)]
    Pause(ops::ReleaseArgs),
    /// Let a paused canary go on (clears spec.paused).
    #[command(after_help = ops::RESUME_EXAMPLES)]
    Resume(ops::ReleaseArgs),
    /// Show where a canary's rollout stands.
    #[command(after_help = ops::STATUS_EXAMPLES)]
    Status(ops::StatusArgs),
    /// Serve the live dashboard locally, from the kubeconfig's cluster.
    #[command(after_help = dashboard::EXAMPLES)]
    Dashboard(dashboard::DashboardArgs),
    /// Run the controller: watch Releases and roll them out (in a cluster, or with KUBECONFIG).
    #[command(after_help = run::EXAMPLES)]
    Run(Box<run::RunArgs>),
    /// Print a shell completion script for vigil to standard output.
    #[command(after_help = completions::EXAMPLES)]
    Completions(completions::CompletionsArgs),
}

/// Parses the command line. Installed as `kubectl-vigil` on the PATH, the binary is a kubectl
/// plugin (`kubectl vigil promote web`): the same commands, with usage shown as `kubectl vigil`.
pub fn parse() -> Cli {
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
pub fn invoked_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "vigil".to_string())
}
