//! The SVG charts of one metric in the HTML report, drawn with [`super::chart`] from the
//! numbers [`super::charts`] takes out of the fetched data:
//! - every metric: stable vs canary over the window (error rate, a latency quantile, the
//!   values, or the canary against a threshold's bounds), with the rollout's marks;
//! - histograms: the share of requests per bucket of each version over the window;
//! - ratios: each version's error rate with its 95% Wilson interval, and the change.

use super::chart::{self, AREA, Svg};
use super::charts::{self, MAX_POINTS, Points, Z95};
use super::doc::{Mark, MarkKind};
use crate::data::{Role, Window};
use crate::judge::{MetricData, MetricResult, words};
use crate::template::{MetricSpec, MetricType};

/// The CSS class of a mark's kind (timeline rows and chart markers).
pub fn mark_class(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Info => "info",
        MarkKind::Advance => "advance",
        MarkKind::Warn => "warn",
        MarkKind::Abort => "abort",
        MarkKind::Promote => "promote",
    }
}

/// The charts of one metric, each a complete `<svg>` element.
pub fn metric_figures(
    spec: &MetricSpec,
    result: Option<&MetricResult>,
    data: &MetricData,
    window: &Window,
    marks: &[Mark],
) -> Vec<String> {
    let name = spec.name.as_str();
    let both =
        |f: &dyn Fn(Role) -> Points| vec![("stable", f(Role::Stable)), ("canary", f(Role::Canary))];
    let time = TimeChart {
        metric: name,
        window,
        marks,
    };
    match spec.kind {
        MetricType::Ratio => vec![
            time.draw(
                "error rate per step, stable vs canary over the window",
                &both(&|role| charts::error_rate(data, role)),
                &[],
                words::percent,
            ),
            interval_chart(name, result),
        ],
        MetricType::Histogram => {
            let q = spec
                .quantiles
                .as_ref()
                .and_then(|qs| {
                    qs.iter()
                        .copied()
                        .filter(|q| q.is_finite())
                        .reduce(f64::max)
                })
                .unwrap_or(0.99);
            vec![
                time.draw(
                    &format!(
                        "p{} per step, stable vs canary over the window",
                        words::significant(q * 100.0, 3)
                    ),
                    &both(&|role| charts::quantile(data, role, q)),
                    &[],
                    words::value,
                ),
                distribution_chart(name, data),
            ]
        }
        MetricType::Series => vec![time.draw(
            "values per step, stable vs canary over the window",
            &both(&|role| charts::values(data, role)),
            &[],
            words::value,
        )],
        MetricType::Threshold => {
            let bounds: Vec<(&str, f64)> = [("min", spec.min), ("max", spec.max)]
                .into_iter()
                .filter_map(|(label, v)| v.filter(|v| v.is_finite()).map(|v| (label, v)))
                .collect();
            vec![time.draw(
                "canary values per step against the bounds",
                &[("canary", charts::values(data, Role::Canary))],
                &bounds,
                words::value,
            )]
        }
    }
}

/// A chart of values over the window of one metric, with the rollout's marks.
struct TimeChart<'a> {
    metric: &'a str,
    window: &'a Window,
    marks: &'a [Mark],
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

impl TimeChart<'_> {
    /// Lines of (version, points), horizontal bound lines of (label, value).
    fn draw(
        &self,
        title: &str,
        lines: &[(&str, Points)],
        bounds: &[(&str, f64)],
        format: fn(f64) -> String,
    ) -> String {
        let lines: Vec<(&str, Points)> = lines
            .iter()
            .map(|(role, points)| (*role, charts::downsample(points, MAX_POINTS)))
            .collect();
        let values = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, v)| *v))
            .chain(bounds.iter().map(|(_, v)| *v));
        // Against bounds the detail near the bound matters more than the distance from zero.
        let Some(y_domain) = chart::extent(values, bounds.is_empty()) else {
            return chart::no_data(self.metric, "time", title, "no points in the window");
        };
        let times = lines.iter().flat_map(|(_, p)| p.iter().map(|(t, _)| *t));
        let x_domain = chart::extent(
            times.chain([seconds(self.window.first_point()), seconds(self.window.end)]),
            false,
        )
        .unwrap_or([0.0, 1.0]);
        // No padding in time: the window's ends are the chart's ends.
        let [t0, t1] = [
            x_domain[0].max(seconds(self.window.start)),
            x_domain[1].min(seconds(self.window.end)),
        ];
        let x = chart::x_scale([t0, t1]);
        let y = chart::y_scale(y_domain);
        let mut svg = Svg::new(self.metric, "time", title);
        let y_ticks: Vec<(f64, String)> = chart::ticks(y.domain[0], y.domain[1], 4)
            .into_iter()
            .map(|v| (v, format(v)))
            .collect();
        let span = x.domain[1] - x.domain[0];
        let x_ticks: Vec<(f64, String)> = chart::time_ticks(x.domain[0], x.domain[1])
            .into_iter()
            .map(|t| (t, chart::time_label(t, span)))
            .collect();
        svg.axes(&y, &y_ticks, &x, &x_ticks);
        svg.text((AREA[0] - 6.0, AREA[3] + 18.0), "end", "tick", "UTC");
        for (label, v) in bounds {
            let py = y.at(*v);
            svg.line((AREA[0], py), (AREA[2], py), "data bound");
            svg.text(
                (AREA[2] - 4.0, py - 4.0),
                "end",
                "bound-label",
                &format!("{label} {}", format(*v)),
            );
        }
        for (role, points) in &lines {
            let pixels: Points = points.iter().map(|(t, v)| (x.at(*t), y.at(*v))).collect();
            svg.polyline(&pixels, &format!("data line {role}"));
        }
        // The decisions that changed something: a new weight, a failed check, the end. The
        // analyses that only held or passed stay in the timeline, not on the charts.
        let shown = self.marks.iter().filter(|m| match m.kind {
            MarkKind::Info => false,
            MarkKind::Advance => !m.text.starts_with("analysis "),
            MarkKind::Warn | MarkKind::Abort | MarkKind::Promote => true,
        });
        for mark in shown {
            let t = seconds(mark.at);
            if t < x.domain[0] || t > x.domain[1] {
                continue;
            }
            let short = match mark.kind {
                MarkKind::Abort => "abort".to_string(),
                MarkKind::Promote => "promote".to_string(),
                MarkKind::Warn => "warn".to_string(),
                MarkKind::Info | MarkKind::Advance => format!("{}%", mark.weight),
            };
            let tip = format!(
                "{} {} (weight {}%): {}",
                mark.at.format("%H:%M UTC"),
                mark.step,
                mark.weight,
                mark.text
            );
            svg.marker(x.at(t), mark_class(mark.kind), &short, &tip);
        }
        let mut legend: Vec<(&str, &str)> = lines.iter().map(|(role, _)| (*role, *role)).collect();
        if !bounds.is_empty() {
            legend.push(("bound", "bound"));
        }
        svg.legend(&legend);
        svg.finish()
    }
}

/// A bucket's `le` bound as a short label.
fn le_label(le: f64) -> String {
    if le.is_infinite() {
        "+Inf".into()
    } else {
        words::value(le)
    }
}

/// Grouped bars: the share of each version's requests in each bucket over the window.
fn distribution_chart(metric: &str, data: &MetricData) -> String {
    let title = "share of requests per bucket (le), whole window";
    let versions = [
        ("stable", charts::distribution(data, Role::Stable)),
        ("canary", charts::distribution(data, Role::Canary)),
    ];
    // The buckets of both versions, in le order.
    let mut bounds: Vec<f64> = versions
        .iter()
        .flat_map(|(_, d)| d.iter().map(|b| b.le))
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let shares: Vec<(&str, Vec<f64>)> = versions
        .iter()
        .filter_map(|(role, d)| {
            let total: f64 = d.iter().map(|b| b.count).sum();
            (total > 0.0).then(|| {
                let share = bounds
                    .iter()
                    .map(|le| {
                        d.iter()
                            .filter(|b| b.le == *le)
                            .map(|b| b.count / total)
                            .sum()
                    })
                    .collect();
                (*role, share)
            })
        })
        .collect();
    if shares.is_empty() || bounds.is_empty() {
        return chart::no_data(metric, "distribution", title, "no requests in the window");
    }
    let top = shares
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .fold(0.0, f64::max);
    let y = chart::y_scale([0.0, top.max(1e-9) * 1.1]);
    let x = chart::x_scale([0.0, bounds.len() as f64]);
    let mut svg = Svg::new(metric, "distribution", title);
    let y_ticks: Vec<(f64, String)> = chart::ticks(y.domain[0], y.domain[1], 4)
        .into_iter()
        .map(|v| (v, words::percent(v)))
        .collect();
    let x_ticks: Vec<(f64, String)> = bounds
        .iter()
        .enumerate()
        .map(|(i, le)| (i as f64 + 0.5, le_label(*le)))
        .collect();
    svg.axes(&y, &y_ticks, &x, &x_ticks);
    svg.text((AREA[0] - 6.0, AREA[3] + 18.0), "end", "tick", "le");
    let slot = x.at(1.0) - x.at(0.0);
    let width = slot * 0.8 / shares.len() as f64;
    for (k, (role, share)) in shares.iter().enumerate() {
        for (i, s) in share.iter().enumerate() {
            let left = x.at(i as f64) + slot * 0.1 + k as f64 * width;
            svg.rect(
                (left, y.at(0.0)),
                (width, y.at(*s) - y.at(0.0)),
                &format!("data bar {role}"),
                &format!("{role}, le {}: {}", le_label(bounds[i]), words::percent(*s)),
            );
        }
    }
    let legend: Vec<(&str, &str)> = shares.iter().map(|(role, _)| (*role, *role)).collect();
    svg.legend(&legend);
    svg.finish()
}

/// Each version's overall error rate with its 95% Wilson interval, and the judged change.
fn interval_chart(metric: &str, result: Option<&MetricResult>) -> String {
    let title = "error rate over the window with 95% Wilson interval";
    let versions: Vec<(&str, f64, [f64; 2])> = [
        ("stable", result.and_then(|r| r.stable.as_ref())),
        ("canary", result.and_then(|r| r.canary.as_ref())),
    ]
    .into_iter()
    .filter_map(|(role, s)| {
        let s = s?;
        let errors = s.errors?;
        Some((role, errors / s.n, charts::wilson(errors, s.n, Z95)?))
    })
    .collect();
    if versions.is_empty() {
        return chart::no_data(metric, "interval", title, "no requests in the window");
    }
    let top = versions
        .iter()
        .map(|(_, _, [_, hi])| *hi)
        .fold(0.0, f64::max);
    let y = chart::y_scale([0.0, top.max(1e-9) * 1.15]);
    let x = chart::x_scale([0.0, 2.0]);
    let mut svg = Svg::new(metric, "interval", title);
    let y_ticks: Vec<(f64, String)> = chart::ticks(y.domain[0], y.domain[1], 4)
        .into_iter()
        .map(|v| (v, words::percent(v)))
        .collect();
    svg.axes(&y, &y_ticks, &x, &[]);
    for (role, rate, [lo, hi]) in &versions {
        let i = if *role == "stable" { 0.5 } else { 1.5 };
        let text = format!(
            "{role} {} [{}, {}]",
            words::percent(*rate),
            words::percent(*lo),
            words::percent(*hi)
        );
        svg.error_bar(x.at(i), y.at(*rate), y.at(*lo), y.at(*hi), role, &text);
        svg.text((x.at(i), AREA[3] + 18.0), "middle", "tick", &text);
    }
    if let Some(r) = result {
        let change = match (r.estimate, r.ci) {
            (Some(e), Some([lo, hi])) => format!(
                "canary vs stable: {} [{}, {}]",
                words::change(e),
                words::change(lo),
                words::change(hi)
            ),
            (Some(e), None) => format!("canary vs stable: {}", words::change(e)),
            _ => "canary vs stable: no estimate".into(),
        };
        svg.text((AREA[0] + 8.0, AREA[1] + 12.0), "start", "note", &change);
    }
    svg.finish()
}
