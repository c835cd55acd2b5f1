//! How a command ends: its exit status, and the message of a failure.

/// Exit status: the canary passed.
pub const EXIT_PASS: u8 = 0;
/// Exit status: the canary failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit status: bad arguments or input.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: marginal or inconclusive.
pub const EXIT_UNDECIDED: u8 = 3;
/// Exit status: the analysis could not run.
pub const EXIT_CANNOT_RUN: u8 = 4;

/// A message for the user and the exit status that goes with it.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// A failure of the arguments or the input ([`EXIT_USAGE`]).
pub fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}

/// A failure of the environment: a cluster, a file, the runtime ([`EXIT_CANNOT_RUN`]).
pub fn cannot_run(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_CANNOT_RUN,
        message: message.to_string(),
    }
}

/// Runs an async command on a multi-threaded runtime, to its exit status.
pub fn tokio_main<F: std::future::Future<Output = Result<u8, Failure>>>(
    f: F,
) -> Result<u8, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cannot_run(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(f)
}

/// The process's exit code for a command's result; a failure's message goes to standard error.
pub fn exit_code(result: Result<u8, Failure>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            eprintln!("vigil: {}", f.message);
            std::process::ExitCode::from(f.code)
        }
    }
}
