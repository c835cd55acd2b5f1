//! A small hand-written SVG builder for the HTML report's charts: linear scales, nice ticks,
//! axes, lines, bars, error bars, markers and a legend.
//!
//! Every element gets CSS classes only (no colours), so the page's stylesheet colours the
//! charts with `currentColor` and CSS variables and they read well in light, dark and print.
//! Data elements carry the class `data`, so a test can tell a chart with something plotted
//! from an empty frame. Every text goes through [`escape`].

use super::text::escape;
use std::fmt::Write as _;

/// The width of every chart's `viewBox`.
pub const WIDTH: f64 = 640.0;
/// The height of every chart's `viewBox`.
pub const HEIGHT: f64 = 240.0;
/// The plot area inside the chart: left, top, right, bottom.
pub const AREA: [f64; 4] = [60.0, 28.0, WIDTH - 16.0, HEIGHT - 30.0];

/// A linear map from a data domain onto a pixel range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// The domain's ends.
    pub domain: [f64; 2],
    /// The pixel range the domain maps onto.
    pub range: [f64; 2],
}

impl Scale {
    /// A scale of `domain` onto `range`; an empty or non-finite domain is widened so that
    /// every value maps somewhere finite.
    pub fn new(domain: [f64; 2], range: [f64; 2]) -> Self {
        let [mut lo, mut hi] = domain;
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi <= lo {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        Self {
            domain: [lo, hi],
            range,
        }
    }

    /// The pixel position of `v`.
    pub fn at(&self, v: f64) -> f64 {
        let [d0, d1] = self.domain;
        let [r0, r1] = self.range;
        r0 + (v - d0) / (d1 - d0) * (r1 - r0)
    }
}

/// The horizontal scale of the plot area.
pub fn x_scale(domain: [f64; 2]) -> Scale {
    Scale::new(domain, [AREA[0], AREA[2]])
}

/// The vertical scale of the plot area (values grow upwards).
pub fn y_scale(domain: [f64; 2]) -> Scale {
    Scale::new(domain, [AREA[3], AREA[1]])
}

/// The smallest and largest finite values, padded by 5% (from zero when all are positive
/// and `from_zero` is set), or `None` when there is none.
pub fn extent(values: impl IntoIterator<Item = f64>, from_zero: bool) -> Option<[f64; 2]> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return None;
    }
    let lo = if from_zero && lo >= 0.0 { 0.0 } else { lo };
    let pad = (hi - lo) * 0.05;
    Some([if lo == 0.0 { 0.0 } else { lo - pad }, hi + pad])
}

/// About `count` round tick values (1, 2 or 5 times a power of ten) within `[lo, hi]`.
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / count as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Tick times (Unix seconds) at round minutes, hours or days, about five within the range.
pub fn time_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const STEPS: [f64; 14] = [
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
        86400.0, 172_800.0, 604_800.0,
    ];
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return Vec::new();
    }
    let step = STEPS
        .into_iter()
        .find(|s| (hi - lo) / s <= 6.0)
        .unwrap_or_else(|| ((hi - lo) / 6.0 / 86400.0).ceil() * 86400.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A time as `HH:MM` (UTC), with the date too when the chart spans more than a day.
pub fn time_label(t: f64, span: f64) -> String {
    let Some(at) = chrono::DateTime::from_timestamp(t.floor() as i64, 0) else {
        return String::new();
    };
    if span > 86400.0 {
        at.format("%m-%d %H:%M").to_string()
    } else {
        at.format("%H:%M").to_string()
    }
}

/// An SVG document being written.
#[derive(Debug)]
pub struct Svg {
    out: String,
}

fn num(v: f64) -> String {
    // Coordinates of non-finite values would make the SVG invalid: clamp them to 0.
    let v = if v.is_finite() { v } else { 0.0 };
    format!("{v:.1}")
}

impl Svg {
    /// A chart of `metric` with the accessible `title`.
    pub fn new(metric: &str, kind: &str, title: &str) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" role=\"img\" \
             viewBox=\"0 0 {} {}\" data-metric=\"{}\" data-chart=\"{}\"><title>{}</title>",
            WIDTH,
            HEIGHT,
            escape(metric),
            escape(kind),
            escape(title)
        );
        let _ = write!(
            out,
            "<text class=\"heading\" x=\"{}\" y=\"16\">{}</text>",
            num(AREA[0]),
            escape(title)
        );
        Self { out }
    }

    /// The finished `<svg>` element.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }

    /// A straight line.
    pub fn line(&mut self, from: (f64, f64), to: (f64, f64), class: &str) {
        let _ = write!(
            self.out,
            "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
            num(from.0),
            num(from.1),
            num(to.0),
            num(to.1)
        );
    }

    /// A line through pixel points (nothing for fewer than one point; a dot for one).
    pub fn polyline(&mut self, points: &[(f64, f64)], class: &str) {
        match points {
            [] => {}
            [(x, y)] => self.circle((*x, *y), 2.5, class),
            _ => {
                let coords: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{},{}", num(*x), num(*y)))
                    .collect();
                let _ = write!(
                    self.out,
                    "<polyline class=\"{class}\" points=\"{}\"/>",
                    coords.join(" ")
                );
            }
        }
    }

    /// A rectangle from its corner and size (negative sizes are flipped).
    pub fn rect(&mut self, corner: (f64, f64), size: (f64, f64), class: &str, tip: &str) {
        let (x, w) = if size.0 < 0.0 {
            (corner.0 + size.0, -size.0)
        } else {
            (corner.0, size.0)
        };
        let (y, h) = if size.1 < 0.0 {
            (corner.1 + size.1, -size.1)
        } else {
            (corner.1, size.1)
        };
        let _ = write!(
            self.out,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            num(x),
            num(y),
            num(w),
            num(h),
            escape(tip)
        );
    }

    /// A dot.
    pub fn circle(&mut self, at: (f64, f64), r: f64, class: &str) {
        let _ = write!(
            self.out,
            "<circle class=\"{class}\" cx=\"{}\" cy=\"{}\" r=\"{}\"/>",
            num(at.0),
            num(at.1),
            num(r)
        );
    }

    /// A point with a vertical error bar from `low` to `high` (pixels) and a tooltip.
    pub fn error_bar(&mut self, x: f64, y: f64, low: f64, high: f64, class: &str, tip: &str) {
        let _ = write!(
            self.out,
            "<g class=\"{class}\"><title>{}</title>",
            escape(tip)
        );
        self.line((x, low), (x, high), "data bar-line");
        self.line((x - 8.0, low), (x + 8.0, low), "data bar-line");
        self.line((x - 8.0, high), (x + 8.0, high), "data bar-line");
        self.circle((x, y), 5.0, "data point");
        self.out.push_str("</g>");
    }

    /// A text label; `anchor` is `start`, `middle` or `end`.
    pub fn text(&mut self, at: (f64, f64), anchor: &str, class: &str, text: &str) {
        let _ = write!(
            self.out,
            "<text class=\"{class}\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            num(at.0),
            num(at.1),
            escape(text)
        );
    }

    /// The plot area's frame, horizontal grid lines with value labels at `y_ticks`, and
    /// the labels of the horizontal axis at `x_ticks` (value, label).
    pub fn axes(
        &mut self,
        y: &Scale,
        y_ticks: &[(f64, String)],
        x: &Scale,
        x_ticks: &[(f64, String)],
    ) {
        for (v, label) in y_ticks {
            let py = y.at(*v);
            self.line((AREA[0], py), (AREA[2], py), "grid");
            self.text((AREA[0] - 6.0, py + 4.0), "end", "tick", label);
        }
        for (v, label) in x_ticks {
            let px = x.at(*v);
            self.line((px, AREA[3]), (px, AREA[3] + 4.0), "axis");
            self.text((px, AREA[3] + 18.0), "middle", "tick", label);
        }
        self.line((AREA[0], AREA[3]), (AREA[2], AREA[3]), "axis");
        self.line((AREA[0], AREA[1]), (AREA[0], AREA[3]), "axis");
    }

    /// A legend at the top right: one swatch and name per entry (name, CSS class).
    pub fn legend(&mut self, entries: &[(&str, &str)]) {
        let mut x = AREA[2];
        for (name, class) in entries.iter().rev() {
            let width = 7.0 * name.chars().count() as f64 + 22.0;
            x -= width;
            self.line((x, 12.0), (x + 14.0, 12.0), &format!("swatch {class}"));
            self.text((x + 18.0, 16.0), "start", "legend", name);
        }
    }

    /// A vertical marker line at pixel `x` with a short label near the top.
    pub fn marker(&mut self, x: f64, class: &str, label: &str, tip: &str) {
        let _ = write!(
            self.out,
            "<g class=\"mark {class}\"><title>{}</title>",
            escape(tip)
        );
        self.line((x, AREA[1]), (x, AREA[3]), "mark-line");
        self.text((x + 3.0, AREA[1] + 10.0), "start", "mark-label", label);
        self.out.push_str("</g>");
    }
}

/// A chart that says why there is nothing to plot: still a valid, non-empty SVG.
pub fn no_data(metric: &str, kind: &str, title: &str, why: &str) -> String {
    let mut svg = Svg::new(metric, kind, title);
    svg.axes(&y_scale([0.0, 1.0]), &[], &x_scale([0.0, 1.0]), &[]);
    svg.text(
        ((AREA[0] + AREA[2]) / 2.0, (AREA[1] + AREA[3]) / 2.0),
        "middle",
        "nodata",
        &format!("no data: {why}"),
    );
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_within_range() {
        let t = ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6, "{t:?}");
        assert!((t[1] - 0.2).abs() < 1e-12 && (t[5] - 1.0).abs() < 1e-12);
        assert_eq!(ticks(0.013, 0.087, 4), vec![0.02, 0.04, 0.06, 0.08]);
        assert!(ticks(1.0, 1.0, 5).is_empty());
        assert!(ticks(f64::NAN, 1.0, 5).is_empty());
        let t = time_ticks(0.0, 3600.0);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() <= 7 && t.len() >= 3, "{t:?}");
        assert_eq!(time_label(3600.0 * 13.5, 3600.0), "13:30");
    }

    #[test]
    fn scales_survive_degenerate_domains() {
        let s = Scale::new([5.0, 5.0], [0.0, 100.0]);
        assert!(s.at(5.0).is_finite());
        let s = Scale::new([f64::NAN, 1.0], [0.0, 100.0]);
        assert_eq!(s.at(0.0), 0.0);
        assert_eq!(extent([f64::NAN, f64::INFINITY], true), None);
    }

    #[test]
    fn non_finite_coordinates_do_not_leak_into_the_svg() {
        let mut svg = Svg::new("m", "time", "t");
        svg.polyline(&[(f64::NAN, 1.0), (2.0, f64::INFINITY)], "data");
        let out = svg.finish();
        assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
    }
}
