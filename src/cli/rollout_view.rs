//! A rollout as it is replayed, on the terminal: shared by the subcommands that drive whole
//! rollouts offline, `replay` over a real Prometheus and `demo` over the simulation. Both walk
//! the controller's state machine with [`vigil::replay`].

use super::progress::Progress;
use chrono::{DateTime, Utc};
use std::io::IsTerminal;
use vigil::replay::timeline_line;
use vigil::report::doc::{Mark, MarkKind};
use vigil::rollout::{Phase, State};

/// Shows a rollout as it is replayed: each decision as a line of the timeline on standard
/// output, and progress on standard error (on a terminal a live bar with the step, the
/// weight, the simulated time and the verdict of every analysis so far; plain lines
/// otherwise).
pub struct Live {
    progress: Progress,
    /// Print the timeline.
    lines: bool,
    /// Print it above the bar: both streams are the same terminal.
    above_bar: bool,
    indent: &'static str,
    steps: u32,
    /// One character per analysis: `+` pass, `x` fail, `?` inconclusive, `!` error.
    verdicts: String,
    /// Where the rollout is, in words.
    stage: String,
}

impl Live {
    /// Progress of a rollout of `steps` steps called `what`; `lines`: print the timeline.
    pub fn new(what: &str, steps: usize, lines: bool, indent: &'static str) -> Self {
        let steps = u32::try_from(steps).unwrap_or(u32::MAX);
        Self {
            progress: Progress::new(u64::from(steps), what),
            lines,
            above_bar: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            indent,
            steps,
            verdicts: String::new(),
            stage: String::new(),
        }
    }

    /// The rollout's state after a reconcile at `now`.
    pub fn reconciled(&mut self, now: DateTime<Utc>, state: &State) {
        let step = (state.current_step() + 1).min(self.steps);
        let (done, stage) = match state.phase() {
            Phase::Promoting => (self.steps, "promoting".to_string()),
            Phase::Succeeded => (self.steps, "promoted".to_string()),
            Phase::Failed => (state.current_step(), "rolled back".to_string()),
            _ => (
                state.current_step(),
                format!("step {step}/{} at {}%", self.steps, state.weight()),
            ),
        };
        self.progress.set_position(u64::from(done));
        self.stage = format!("{stage}, {}", now.format("%H:%M"));
        self.show();
    }

    fn show(&self) {
        let n = self.verdicts.chars().count();
        let tail: String = self.verdicts.chars().skip(n.saturating_sub(30)).collect();
        self.progress
            .set_message(format!("{} | analyses {tail}", self.stage));
    }

    /// A decision.
    pub fn marked(&mut self, mark: &Mark) {
        if let Some(verdict) = mark.text.strip_prefix("analysis ") {
            self.verdicts.push(match mark.kind {
                MarkKind::Advance => '+',
                MarkKind::Abort => 'x',
                MarkKind::Warn if verdict.starts_with("failed") => 'x',
                MarkKind::Warn => '!',
                _ => '?',
            });
        }
        self.show();
        if self.lines {
            self.line(&format!("{}{}", self.indent, timeline_line(mark)));
        }
    }

    /// A line of the output (above the bar when they share the terminal).
    pub fn line(&self, text: &str) {
        if self.above_bar {
            self.progress.println(text);
        } else {
            println!("{text}");
        }
    }

    /// The rollout ended (or the replay did).
    pub fn finish(&self, end: vigil::replay::End) {
        match end {
            vigil::replay::End::Promoted => self.progress.finish(),
            _ => self.progress.stop(),
        }
    }
}
