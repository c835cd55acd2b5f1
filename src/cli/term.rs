//! Whether the command line may colour what it writes: one decision for clap's help and
//! errors, the log lines, and the progress bars.

use std::io::IsTerminal;

/// Where a piece of output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// Whether colours and other styling escapes may be written to `stream`: only on a terminal,
/// and never when the `NO_COLOR` environment variable is set to something (no-color.org).
pub fn colour(stream: Stream) -> bool {
    decide(
        std::env::var_os("NO_COLOR").as_deref(),
        stream.is_terminal(),
    )
}

/// [`colour`]'s decision from its inputs: the value of `NO_COLOR`, and whether the stream is
/// a terminal.
fn decide(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
    let no_color = no_color.is_some_and(|v| !v.is_empty());
    terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::decide;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(decide(None, true));
        assert!(!decide(None, false));
        assert!(!decide(Some(OsStr::new("1")), true));
        assert!(!decide(Some(OsStr::new("1")), false));
        // The convention: an empty NO_COLOR is as if it were not set.
        assert!(decide(Some(OsStr::new("")), true));
        assert!(!decide(Some(OsStr::new("")), false));
    }
}
