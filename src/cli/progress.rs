//! Progress of a long-running command, on standard error.
//!
//! On a terminal it is a live bar (or a spinner when the total is unknown), coloured unless
//! `NO_COLOR` is set; anywhere else (a pipe, a file, CI logs) it is plain lines such as
//! `rollouts: 300/1000 errors-x5`, at most one every few seconds, and a last line from
//! [`Progress::finish`]. Standard output is never touched, so `--output json` stays clean.
//!
//! ```ignore
//! let progress = Progress::new(10, "rollouts");
//! for i in 0..10 {
//!     progress.set_message(format!("scenario {i}"));
//!     // ... the work ...
//!     progress.inc(1);
//! }
//! progress.println("a line that stays above the bar");
//! progress.finish();
//! ```
//!
//! A `Progress` is `Send + Sync`: worker threads may share it by reference.

use super::term::{self, Stream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two plain lines.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// The progress of one long-running piece of work; see the module documentation.
pub struct Progress {
    inner: Inner,
}

enum Inner {
    Bar(ProgressBar),
    Plain(Mutex<Plain>),
}

/// The state of the plain-line mode.
struct Plain {
    out: Box<dyn Write + Send>,
    what: String,
    total: Option<u64>,
    position: u64,
    message: String,
    started: Instant,
    /// When the last progress line was written (None: not yet).
    last: Option<Instant>,
    every: Duration,
    finished: bool,
}

impl Progress {
    /// Progress through `total` units of work called `what` (e.g. "rollouts").
    pub fn new(total: u64, what: &str) -> Self {
        Self::on_stderr(Some(total), what)
    }

    /// A bar on a terminal, and nothing elsewhere: for work that is usually quick.
    pub fn on_terminal(total: u64, what: &str) -> Option<Self> {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
            .then(|| Self::bar(Some(total), what, term::colour(Stream::Stderr)))
    }

    /// Progress of work whose total is not known: a spinner and a count.
    #[allow(dead_code, reason = "API for `vigil demo` and `vigil replay`, to come")]
    pub fn spinner(what: &str) -> Self {
        Self::on_stderr(None, what)
    }

    fn on_stderr(total: Option<u64>, what: &str) -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Self::bar(total, what, term::colour(Stream::Stderr))
        } else {
            Self::plain(total, what, Box::new(std::io::stderr()), PLAIN_EVERY)
        }
    }

    fn bar(total: Option<u64>, what: &str, colour: bool) -> Self {
        let template = match (total.is_some(), colour) {
            (true, true) => {
                "{spinner:.green} {prefix}: [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed}, {eta} left)"
            }
            (true, false) => {
                "{spinner} {prefix}: [{bar:30}] {pos}/{len} {msg} ({elapsed}, {eta} left)"
            }
            (false, true) => "{spinner:.green} {prefix}: {pos} {msg} ({elapsed})",
            (false, false) => "{spinner} {prefix}: {pos} {msg} ({elapsed})",
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        // The templates are constants: a bad one is a bug, and the default style still works.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            inner: Inner::Bar(bar),
        }
    }

    /// Plain lines to `out`, at most one progress line every `every`.
    fn plain(total: Option<u64>, what: &str, out: Box<dyn Write + Send>, every: Duration) -> Self {
        Self {
            inner: Inner::Plain(Mutex::new(Plain {
                out,
                what: what.to_string(),
                total,
                position: 0,
                message: String::new(),
                started: Instant::now(),
                last: None,
                every,
                finished: false,
            })),
        }
    }

    /// What is being done now, shown after the count (e.g. the scenario's name).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.inner {
            Inner::Bar(bar) => bar.set_message(message),
            Inner::Plain(plain) => with_plain(plain, |p| {
                p.message = message;
                p.maybe_line();
            }),
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        match &self.inner {
            Inner::Bar(bar) => bar.inc(n),
            Inner::Plain(plain) => with_plain(plain, |p| {
                p.position = p.position.saturating_add(n);
                p.maybe_line();
            }),
        }
    }

    /// `n` units done in all (for work that can also go back, or jump).
    pub fn set_position(&self, n: u64) {
        match &self.inner {
            Inner::Bar(bar) => bar.set_position(n),
            Inner::Plain(plain) => with_plain(plain, |p| {
                p.position = n;
                p.maybe_line();
            }),
        }
    }

    /// A line of its own (a warning, a partial result) that stays above the bar.
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.inner {
            Inner::Bar(bar) => bar.println(line),
            Inner::Plain(plain) => with_plain(plain, |p| {
                // Standard error gone is no reason to stop the work.
                let _ = writeln!(p.out, "{}", line.as_ref());
            }),
        }
    }

    /// The work is done and its result follows: the bar goes (plain mode: a last line).
    pub fn finish_and_clear(&self) {
        match &self.inner {
            Inner::Bar(bar) => bar.finish_and_clear(),
            Inner::Plain(plain) => with_plain(plain, Plain::finish),
        }
    }

    /// The work stopped short of its total (e.g. a rollout aborted): like [`Progress::finish`],
    /// but the bar keeps the count it reached.
    pub fn stop(&self) {
        match &self.inner {
            Inner::Bar(bar) => bar.abandon(),
            Inner::Plain(plain) => with_plain(plain, Plain::finish),
        }
    }

    /// The work is done: the bar stays with its final count; in plain mode a last line
    /// `WHAT: N/TOTAL done in S s`.
    pub fn finish(&self) {
        match &self.inner {
            Inner::Bar(bar) => bar.finish(),
            Inner::Plain(plain) => with_plain(plain, Plain::finish),
        }
    }
}

fn with_plain(plain: &Mutex<Plain>, f: impl FnOnce(&mut Plain)) {
    // A thread that panicked while writing progress leaves nothing worth protecting.
    let mut guard = plain
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard);
}

impl Drop for Progress {
    /// Work abandoned (an error): the bar is cleared so that the error message stands alone.
    fn drop(&mut self) {
        if let Inner::Bar(bar) = &self.inner
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

impl Plain {
    fn count(&self) -> String {
        match self.total {
            Some(total) => format!("{}: {}/{total}", self.what, self.position),
            None => format!("{}: {}", self.what, self.position),
        }
    }

    /// Writes a progress line if none was written for `every`.
    fn maybe_line(&mut self) {
        let now = Instant::now();
        if self.finished || self.last.is_some_and(|last| now - last < self.every) {
            return;
        }
        self.last = Some(now);
        let line = if self.message.is_empty() {
            self.count()
        } else {
            format!("{} {}", self.count(), self.message)
        };
        let _ = writeln!(self.out, "{line}");
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let line = format!(
            "{} done in {:.1} s",
            self.count(),
            self.started.elapsed().as_secs_f64()
        );
        let _ = writeln!(self.out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_lines_count_up_to_the_total() {
        let out = Shared::default();
        let p = Progress::plain(Some(3), "rollouts", Box::new(out.clone()), Duration::ZERO);
        p.set_message("aa-low");
        p.inc(1);
        p.println("a warning");
        p.inc(2);
        p.finish();
        p.finish();
        p.inc(1);
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "rollouts: 0/3 aa-low",
                "rollouts: 1/3 aa-low",
                "a warning",
                "rollouts: 3/3 aa-low"
            ],
            "{text}"
        );
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[4].starts_with("rollouts: 3/3 done in ") && lines[4].ends_with(" s"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[test]
    fn plain_lines_come_at_a_modest_rate() {
        let out = Shared::default();
        let p = Progress::plain(
            Some(1000),
            "rollouts",
            Box::new(out.clone()),
            Duration::from_secs(3600),
        );
        for _ in 0..1000 {
            p.inc(1);
        }
        p.finish();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "rollouts: 1/1000");
        assert!(
            lines[1].starts_with("rollouts: 1000/1000 done in "),
            "{text}"
        );
    }

    #[test]
    fn a_spinner_counts_without_a_total() {
        let out = Shared::default();
        let p = Progress::plain(None, "queries", Box::new(out.clone()), Duration::ZERO);
        p.inc(5);
        assert_eq!(out.text(), "queries: 5\n");
    }

    #[test]
    fn progress_is_shared_between_threads() {
        let out = Shared::default();
        let p = Progress::plain(Some(8), "jobs", Box::new(out.clone()), Duration::ZERO);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    p.inc(1);
                    p.inc(1);
                });
            }
        });
        p.finish();
        assert!(out.text().contains("jobs: 8/8 done in "), "{}", out.text());
    }
}
