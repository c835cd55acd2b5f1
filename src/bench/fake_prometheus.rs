//! A simulated Prometheus over HTTP, for `vigil bench controller`: `/api/v1/query_range`
//! answered by a [`SimulatedSource`], so that the controller under measurement queries it
//! through its real Prometheus client (HTTP, JSON decoding and all) while the data is made up
//! in another process.
//!
//! It knows the queries of the template `http-prometheus-client` only (the one the benchmark
//! uses): a query of `http_request_duration_seconds_bucket` is the metric `latency`; one with
//! a `code=~` matcher the errors of `error-rate`, any other its total. The canary's queries
//! are those that contain the canary's matchers.

use crate::data::{QueryRequest, Role, Window};
use crate::source::simulated::SimulatedSource;
use crate::template::QueryPart;
use crate::template::units::PromDuration;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// The template whose queries this Prometheus understands.
pub const TEMPLATE: &str = "http-prometheus-client";

/// What the simulated Prometheus answers from.
pub struct SimulatedPrometheus {
    /// The data.
    pub source: SimulatedSource,
    /// The canary's matchers as they appear in its queries (e.g. `version="v2"`).
    pub canary_matchers: String,
}

/// The HTTP routes: `GET` or `POST /api/v1/query_range`.
pub fn router(prometheus: Arc<SimulatedPrometheus>) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/query_range",
            axum::routing::get(query_range_get).post(query_range_post),
        )
        .with_state(prometheus)
}

async fn query_range_get(
    State(prometheus): State<Arc<SimulatedPrometheus>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(&prometheus, &params)
}

async fn query_range_post(
    State(prometheus): State<Arc<SimulatedPrometheus>>,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    answer(&prometheus, &params)
}

fn answer(prometheus: &SimulatedPrometheus, params: &HashMap<String, String>) -> Response {
    match request_of(prometheus, params).and_then(|request| {
        // Each application (the job its queries select) has its own data, as it would:
        // without it, the Releases whose windows began in the same second saw the same
        // numbers, and one false abort was counted as many.
        match job(&request.promql) {
            Some(job) => prometheus.source.answer_for(job, &request),
            None => prometheus.source.answer(&request),
        }
        .map_err(|e| e.to_string())
    }) {
        Ok(result) => {
            let series: Vec<Value> = result
                .series
                .iter()
                .map(|s| {
                    let values: Vec<Value> = s
                        .points
                        .iter()
                        .map(|(t, v)| json!([t, v.to_string()]))
                        .collect();
                    json!({"metric": s.labels, "values": values})
                })
                .collect();
            let body =
                json!({"status": "success", "data": {"resultType": "matrix", "result": series}});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(error) => {
            let body = json!({"status": "error", "errorType": "bad_data", "error": error});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}

/// The value of the query's `job="..."` matcher, if it has one.
fn job(promql: &str) -> Option<&str> {
    let (_, rest) = promql.split_once("job=\"")?;
    rest.split_once('"').map(|(job, _)| job)
}

/// Seconds since the epoch, as Prometheus takes them.
fn time(params: &HashMap<String, String>, name: &str) -> Result<DateTime<Utc>, String> {
    let text = params
        .get(name)
        .ok_or_else(|| format!("missing parameter {name}"))?;
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{name}: not a number of seconds: {text:?}"))?;
    DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)
        .ok_or_else(|| format!("{name}: out of range: {text:?}"))
}

/// The simulated source's request for a range query: its points are those of Prometheus
/// (`start`, `start + step`, ... up to `end`).
fn request_of(
    prometheus: &SimulatedPrometheus,
    params: &HashMap<String, String>,
) -> Result<QueryRequest, String> {
    let promql = params
        .get("query")
        .ok_or("missing parameter query")?
        .clone();
    let start = time(params, "start")?;
    let end = time(params, "end")?;
    let step_text = params.get("step").ok_or("missing parameter step")?;
    let step_seconds: f64 = step_text
        .parse()
        .map_err(|_| format!("step: not a number of seconds: {step_text:?}"))?;
    if !(step_seconds.is_finite() && step_seconds > 0.0) {
        return Err(format!(
            "step: not a positive number of seconds: {step_text:?}"
        ));
    }
    let step = PromDuration::from_millis((step_seconds * 1000.0).round() as u64);
    let step_chrono = chrono::Duration::milliseconds((step_seconds * 1000.0).round() as i64);
    // The window whose first point is `start`.
    let window = Window {
        start: start - step_chrono,
        end,
        step,
    };
    let (metric, part) = if promql.contains("http_request_duration_seconds_bucket") {
        ("latency", QueryPart::Query)
    } else if promql.contains("code=~") {
        ("error-rate", QueryPart::Errors)
    } else {
        ("error-rate", QueryPart::Total)
    };
    let role = if promql.contains(&prometheus.canary_matchers) {
        Role::Canary
    } else {
        Role::Stable
    };
    Ok(QueryRequest {
        template: TEMPLATE.into(),
        metric: metric.into(),
        part,
        role,
        promql,
        window,
        shift: None,
    })
}

#[cfg(test)]
mod tests {
    use super::job;

    #[test]
    fn the_application_is_the_job_a_query_selects() {
        let q = r#"sum(increase(http_requests_total{job="bench-001/app-0003", version="v2", code=~"5.."}[1m]))"#;
        assert_eq!(job(q), Some("bench-001/app-0003"));
        assert_eq!(job("sum(rate(x[1m]))"), None);
        assert_eq!(job(r#"x{job="unterminated}"#), None);
    }
}
