//! The data that flows from a metric source into the judge: which query to run for which
//! version over which window, and the series that come back. Pure types, no I/O.

use crate::template::QueryPart;
use crate::template::units::PromDuration;
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Which version a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The version in production.
    Stable,
    /// The new version under test.
    Canary,
}

impl Role {
    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The time window of an analysis, judged in steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Start of the window (exclusive: the first step covers `(start, start + step]`).
    pub start: DateTime<Utc>,
    /// End of the window (inclusive).
    pub end: DateTime<Utc>,
    /// The step: one point per step, and the value of `{{ interval }}`.
    #[serde(serialize_with = "serialize_display")]
    pub step: PromDuration,
}

fn serialize_display<S: serde::Serializer, T: fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Why a window is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The end is not after the start.
    #[error("the window's end ({end}) must be after its start ({start})")]
    Empty {
        /// Start.
        start: DateTime<Utc>,
        /// End.
        end: DateTime<Utc>,
    },
    /// The step is longer than the window.
    #[error(
        "the step {step} is longer than the window ({window}); use a shorter --step or a longer window"
    )]
    StepTooLong {
        /// Step.
        step: PromDuration,
        /// Window length.
        window: PromDuration,
    },
    /// Too many points for one query.
    #[error(
        "the window has {points} steps of {step}; Prometheus allows at most 11,000 points per query: use a longer --step"
    )]
    TooManyPoints {
        /// Points.
        points: u64,
        /// Step.
        step: PromDuration,
    },
}

/// A time given as RFC 3339 (`2026-11-28T10:00:00Z`) or Unix seconds (`1790000000.5`), as
/// `vigil judge --start/--end` and `POST /v1/judge` take it.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let secs = text.parse::<f64>().ok().filter(|s| s.is_finite())?;
    Utc.timestamp_millis_opt((secs * 1000.0).round() as i64)
        .single()
}

impl Window {
    /// A checked window.
    pub fn new(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: PromDuration,
    ) -> Result<Self, WindowError> {
        let length_ms = (end - start).num_milliseconds();
        if length_ms <= 0 {
            return Err(WindowError::Empty { start, end });
        }
        let length = PromDuration::from_millis(length_ms.unsigned_abs());
        if step > length {
            return Err(WindowError::StepTooLong {
                step,
                window: length,
            });
        }
        let points = length.as_millis() / step.as_millis().max(1);
        if points > 11_000 {
            return Err(WindowError::TooManyPoints { points, step });
        }
        Ok(Self { start, end, step })
    }

    /// The length of the window.
    pub fn length(&self) -> PromDuration {
        PromDuration::from_millis((self.end - self.start).num_milliseconds().unsigned_abs())
    }

    /// The same window `by` earlier (same length and step), or `None` when that lies outside
    /// the range of times.
    pub fn shifted_back(&self, by: PromDuration) -> Option<Self> {
        let by = chrono::Duration::try_milliseconds(i64::try_from(by.as_millis()).ok()?)?;
        Some(Self {
            start: self.start.checked_sub_signed(by)?,
            end: self.end.checked_sub_signed(by)?,
            step: self.step,
        })
    }

    /// The first evaluation time of a range query that covers the window with
    /// `increase(...[step])`: one step after the start, so no point reaches before it.
    pub fn first_point(&self) -> DateTime<Utc> {
        let step = chrono::Duration::milliseconds(
            i64::try_from(self.step.as_millis()).unwrap_or(i64::MAX),
        );
        (self.start + step).min(self.end)
    }
}

/// One query to run: the rendered PromQL and what it is for, so errors can say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRequest {
    /// The template's name.
    pub template: String,
    /// The metric's name.
    pub metric: String,
    /// Which field of the metric the query came from.
    pub part: QueryPart,
    /// Which version.
    pub role: Role,
    /// The rendered PromQL.
    pub promql: String,
    /// The window to query.
    pub window: Window,
    /// For the baseline of a before/after comparison: how much earlier `window` lies than
    /// the window judged. The answer is moved forward by as much
    /// ([`QueryResult::shifted_forward`]), onto the judged window's steps, before the judge
    /// sees it. `None`: `window` is the window judged.
    pub shift: Option<PromDuration>,
}

impl QueryRequest {
    /// "template http-red, metric error-rate (errors, canary)"; for a shifted baseline
    /// "template http-red, metric error-rate (errors, stable, baseline
    /// 2026-09-20T13:48:20Z to 2026-09-20T14:13:20Z, 1d earlier)"
    pub fn describe(&self) -> String {
        let baseline = self
            .shift
            .map(|by| {
                format!(
                    ", baseline {} to {}, {by} earlier",
                    rfc3339(self.window.start),
                    rfc3339(self.window.end)
                )
            })
            .unwrap_or_default();
        format!(
            "template {}, metric {} ({}, {}{baseline})",
            self.template,
            self.metric,
            self.part.field(),
            self.role
        )
    }
}

/// A time as messages write it: RFC 3339 in UTC, whole seconds unless it has fractions, as
/// `--start` and `--end` take it.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// One time series of a query's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// (Unix seconds, value) pairs in time order; values may be NaN or infinite.
    pub points: Vec<(f64, f64)>,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// The series returned; empty when nothing matched.
    pub series: Vec<Series>,
    /// Warnings the source reported alongside the data.
    pub warnings: Vec<String>,
}

impl QueryResult {
    /// The answer with every point `by` later: a baseline queried over an earlier window,
    /// put on the steps of the window judged. Exact to the millisecond (the judge pairs
    /// points by their millisecond), so shifting by a whole number of steps keeps the grid.
    pub fn shifted_forward(mut self, by: PromDuration) -> Self {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        for series in &mut self.series {
            for point in &mut series.points {
                let millis = (point.0 * 1000.0).round() as i64;
                point.0 = millis.saturating_add(by) as f64 / 1000.0;
            }
        }
        self
    }
}
