//! A simulated source: synthetic stable and canary traffic with known properties, for
//! `vigil demo` and benchmarks. It answers each metric of a template with the signal that
//! fits the metric's type:
//! - `ratio`: request and error counts per step (Poisson arrivals, errors at a base rate);
//! - `histogram`: cumulative latency bucket counts per step (log-normal latencies);
//! - `series`: one CPU-like reading per step (normal noise around a mean);
//! - `threshold`: the success ratio per step.
//!
//! Everything is drawn from a seeded generator, so a run is reproducible.

use super::{MetricSource, SourceError, SourceErrorKind};
use crate::data::{QueryRequest, QueryResult, Role, Series};
pub use crate::stats::random::Rng;
use crate::template::{MetricType, QueryPart, ReleaseAnalysis};
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The canary's traffic weight over time, as a simulated rollout sets it: the simulation
/// splits traffic by it, like a router would.
#[derive(Debug, Default)]
pub struct WeightLog {
    /// (Unix seconds, weight from then on), in time order.
    changes: Mutex<Vec<(f64, u8)>>,
}

impl WeightLog {
    /// Records that the canary gets `weight`% of traffic from `at` on.
    pub fn set(&self, at: f64, weight: u8) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        if changes.last().map(|(_, w)| *w) != Some(weight) {
            changes.push((at, weight));
        }
    }

    /// The canary's weight at `t` (0 before the first change).
    pub fn at(&self, t: f64) -> u8 {
        let changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        changes
            .iter()
            .take_while(|(at, _)| *at < t)
            .last()
            .map_or(0, |(_, w)| *w)
    }
}

/// How one simulated version behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VersionModel {
    /// Requests per second reaching this version.
    pub rps: f64,
    /// The chance that a request fails.
    pub error_rate: f64,
    /// Median latency in seconds.
    pub latency_median: f64,
    /// Log-scale spread of latency (sigma of the log-normal).
    pub latency_sigma: f64,
    /// Mean of the `series` reading (e.g. CPU cores).
    pub cpu_mean: f64,
    /// Standard deviation of the `series` reading.
    pub cpu_sd: f64,
}

impl Default for VersionModel {
    fn default() -> Self {
        Self {
            rps: 100.0,
            error_rate: 0.005,
            latency_median: 0.080,
            latency_sigma: 0.6,
            cpu_mean: 0.40,
            cpu_sd: 0.04,
        }
    }
}

/// The default latency bucket bounds, in seconds (the Prometheus client defaults).
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A source that makes up data for a template's metrics.
#[derive(Debug, Clone)]
pub struct SimulatedSource {
    kinds: BTreeMap<String, MetricType>,
    stable: VersionModel,
    canary: VersionModel,
    seed: u64,
    /// When set, traffic follows the canary's weight: the two versions share the sum of
    /// their models' `rps` in its proportion.
    weights: Option<Arc<WeightLog>>,
}

impl SimulatedSource {
    /// A simulation of `template`'s metrics with the two versions' behaviour.
    pub fn new(
        template: &ReleaseAnalysis,
        stable: VersionModel,
        canary: VersionModel,
        seed: u64,
    ) -> Self {
        Self {
            kinds: template
                .spec
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.kind))
                .collect(),
            stable,
            canary,
            seed,
            weights: None,
        }
    }

    /// Splits traffic by the canary weights `log` records, as a router would, instead of
    /// each version's fixed `rps`.
    pub fn following(mut self, log: Arc<WeightLog>) -> Self {
        self.weights = Some(log);
        self
    }

    /// Requests per second reaching `role` at `t`.
    fn rps(&self, role: Role, t: f64) -> f64 {
        let Some(log) = &self.weights else {
            return self.model(role).rps;
        };
        let total = self.stable.rps + self.canary.rps;
        let share = f64::from(log.at(t)) / 100.0;
        match role {
            Role::Stable => total * (1.0 - share),
            Role::Canary => total * share,
        }
    }

    fn model(&self, role: Role) -> &VersionModel {
        match role {
            Role::Stable => &self.stable,
            Role::Canary => &self.canary,
        }
    }

    /// The answer to one request, deterministic for a given seed and request.
    pub fn answer(&self, request: &QueryRequest) -> Result<QueryResult, SourceErrorKind> {
        self.answer_drawing(request, &format!("{}/{}", request.metric, request.role))
    }

    /// As [`SimulatedSource::answer`], for one of several applications simulated alike:
    /// each `application` (e.g. the `job` its queries select) draws its own numbers, so
    /// that applications whose windows start in the same second do not see the same data.
    pub fn answer_for(
        &self,
        application: &str,
        request: &QueryRequest,
    ) -> Result<QueryResult, SourceErrorKind> {
        self.answer_drawing(
            request,
            &format!("{application}/{}/{}", request.metric, request.role),
        )
    }

    /// The answer, drawn from the stream named `stream`.
    fn answer_drawing(
        &self,
        request: &QueryRequest,
        stream: &str,
    ) -> Result<QueryResult, SourceErrorKind> {
        let kind = self.kinds.get(&request.metric).ok_or_else(|| {
            SourceErrorKind::Simulation(format!(
                "the simulation knows no metric {:?}",
                request.metric
            ))
        })?;
        let model = self.model(request.role);
        let window = &request.window;
        let step = window.step.as_secs_f64();
        let first = window.first_point().timestamp_millis() as f64 / 1000.0;
        let end = window.end.timestamp_millis() as f64 / 1000.0;
        let steps = (((end - first) / step).floor() as usize) + 1;
        // A version has a point only where it had traffic; without any it has no series at
        // all, as in Prometheus.
        let times: Vec<(f64, f64)> = (0..steps)
            .map(|i| first + i as f64 * step)
            .map(|t| (t, self.rps(request.role, t) * step))
            .filter(|(_, per_step)| *per_step > 0.0)
            .collect();
        if times.is_empty() {
            return Ok(QueryResult::default());
        }
        // Each metric, version and point draws from its own stream, so that overlapping
        // windows agree on their common points; the errors and total queries of one ratio
        // metric share a stream so their counts agree.
        let stream = self.seed ^ fnv(stream);
        let rng_at = |t: f64| Rng::new(Rng::new(stream ^ (t as i64 as u64)).next_u64());
        let series = match kind {
            MetricType::Ratio => {
                let mut errors = Vec::with_capacity(times.len());
                let mut totals = Vec::with_capacity(times.len());
                for &(t, per_step) in &times {
                    let mut rng = rng_at(t);
                    let e = rng.poisson(per_step * model.error_rate);
                    let ok = rng.poisson(per_step * (1.0 - model.error_rate));
                    errors.push((t, e));
                    totals.push((t, e + ok));
                }
                let points = if request.part == QueryPart::Errors {
                    errors
                } else {
                    totals
                };
                vec![Series {
                    labels: BTreeMap::new(),
                    points,
                }]
            }
            MetricType::Histogram => {
                let probabilities = bucket_probabilities(model);
                let mut cumulative: Vec<Vec<(f64, f64)>> =
                    vec![Vec::with_capacity(times.len()); probabilities.len()];
                for &(t, per_step) in &times {
                    let mut rng = rng_at(t);
                    let mut running = 0.0;
                    for (k, p) in probabilities.iter().enumerate() {
                        running += rng.poisson(per_step * p);
                        cumulative[k].push((t, running));
                    }
                }
                DEFAULT_BUCKETS
                    .iter()
                    .map(|le| le.to_string())
                    .chain(std::iter::once("+Inf".to_string()))
                    .zip(cumulative)
                    .map(|(le, points)| Series {
                        labels: BTreeMap::from([("le".to_string(), le)]),
                        points,
                    })
                    .collect()
            }
            MetricType::Series => vec![Series {
                labels: BTreeMap::new(),
                points: times
                    .iter()
                    .map(|&(t, _)| {
                        let noise = rng_at(t).normal();
                        (t, (model.cpu_mean + model.cpu_sd * noise).max(0.0))
                    })
                    .collect(),
            }],
            MetricType::Threshold => vec![Series {
                labels: BTreeMap::new(),
                points: times
                    .iter()
                    .map(|&(t, per_step)| {
                        let mut rng = rng_at(t);
                        let n = rng.poisson(per_step).max(1.0);
                        let e = rng.poisson(per_step * model.error_rate).min(n);
                        (t, 1.0 - e / n)
                    })
                    .collect(),
            }],
        };
        Ok(QueryResult {
            series,
            warnings: Vec::new(),
        })
    }
}

impl MetricSource for SimulatedSource {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        self.answer(request)
            .map_err(|kind| SourceError::new(request, kind))
    }

    fn describe(&self) -> String {
        format!("simulation (seed {})", self.seed)
    }
}

/// The chance of a request landing in each bucket (the last is +Inf).
fn bucket_probabilities(model: &VersionModel) -> Vec<f64> {
    let Ok(normal) = Normal::new(model.latency_median.ln(), model.latency_sigma.max(1e-9)) else {
        return vec![0.0; DEFAULT_BUCKETS.len() + 1];
    };
    let mut previous = 0.0;
    let mut out = Vec::with_capacity(DEFAULT_BUCKETS.len() + 1);
    for le in DEFAULT_BUCKETS {
        let cdf = normal.cdf(le.ln());
        out.push(cdf - previous);
        previous = cdf;
    }
    out.push(1.0 - previous);
    out
}

/// FNV-1a hash, to derive one stream per metric and version from the seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_has_the_right_mean() {
        let mut rng = Rng::new(7);
        for lambda in [0.3, 4.0, 80.0, 2000.0] {
            let n = 20_000;
            let mean: f64 = (0..n).map(|_| rng.poisson(lambda)).sum::<f64>() / n as f64;
            assert!(
                (mean - lambda).abs() < 4.0 * (lambda / n as f64).sqrt() + 1e-9,
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn each_application_draws_its_own_numbers_and_its_ratio_queries_agree() {
        let template = crate::template::load::parse(
            include_str!("../../analysis-templates/demo.yaml"),
            "demo.yaml",
        )
        .unwrap();
        let source = SimulatedSource::new(
            &template,
            VersionModel::default(),
            VersionModel::default(),
            3,
        );
        let start = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let request = |part: QueryPart| QueryRequest {
            template: "demo".into(),
            metric: "error-rate".into(),
            part,
            role: Role::Canary,
            promql: String::new(),
            window: crate::data::Window {
                start,
                end: start + chrono::Duration::minutes(30),
                step: "1m".parse().unwrap(),
            },
            shift: None,
        };
        let points = |application: &str, part: QueryPart| -> Vec<(f64, f64)> {
            source
                .answer_for(application, &request(part))
                .unwrap()
                .series[0]
                .points
                .clone()
        };
        let a = points("shop/web", QueryPart::Total);
        assert_eq!(a, points("shop/web", QueryPart::Total), "reproducible");
        assert_ne!(
            a,
            points("shop/cart", QueryPart::Total),
            "another application"
        );
        // The errors and the total of one application are drawn together: never more
        // errors than requests.
        let errors = points("shop/cart", QueryPart::Errors);
        let total = points("shop/cart", QueryPart::Total);
        assert!(
            errors
                .iter()
                .zip(&total)
                .all(|(e, t)| e.0 == t.0 && e.1 <= t.1)
        );
        // Without an application, the answer is the one it always was.
        assert_eq!(
            source.answer(&request(QueryPart::Total)).unwrap(),
            source
                .answer_drawing(&request(QueryPart::Total), "error-rate/canary")
                .unwrap()
        );
    }

    #[test]
    fn bucket_probabilities_sum_to_one() {
        let p = bucket_probabilities(&VersionModel::default());
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.iter().all(|x| *x >= 0.0));
    }
}
