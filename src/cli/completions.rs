//! `vigil completions SHELL`: a shell completion script.

use super::exit::{EXIT_PASS, Failure, cannot_run};
use super::{Cli, invoked_name};
use clap::Args;

/// The examples of `vigil completions --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil completions bash > ~/.local/share/bash-completion/completions/vigil\n  \
    vigil completions zsh > \"${fpath[1]}/_vigil\"\n  \
    vigil completions fish > ~/.config/fish/completions/vigil.fish\n  \
    vigil completions powershell >> $PROFILE\n  \
    vigil completions bash --bin-name kubectl-vigil   # for the kubectl plugin's name\n\n\
    The script completes the name the binary was invoked as (kubectl-vigil when installed \
    as the kubectl plugin), or --bin-name.";

/// Arguments of `vigil completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
    /// The command name the script completes (default: the name vigil was invoked as).
    #[arg(long, value_name = "NAME")]
    bin_name: Option<String>,
}

/// Prints the completion script on standard output.
pub fn run(args: &CompletionsArgs) -> Result<u8, Failure> {
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
