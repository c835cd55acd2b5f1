//! `vigil lint`: checks template files.

use super::exit::{EXIT_FAIL, EXIT_PASS};
use super::input::read_template;
use clap::Args;
use std::path::PathBuf;

/// The examples of `vigil lint --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil lint analysis-templates/*.yaml\n  \
    vigil lint my-template.yaml         # each problem names the file, line and field";

/// Arguments of `vigil lint`.
#[derive(Args)]
pub struct LintArgs {
    /// Template files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Checks each file; exits 1 if any has a problem.
pub fn run(args: &LintArgs) -> u8 {
    let files = &args.files;
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
