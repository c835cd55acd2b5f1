//! The controller's metric source, observed: every failed query is counted in `/metrics`
//! (`vigil_metric_source_errors_total{kind}`) and logged, whatever the analysis then
//! decides (it holds the step: a failed query never promotes).

use super::metrics::Metrics;
use crate::data::{QueryRequest, QueryResult};
use crate::source::{MetricSource, SourceError, SourceErrorKind};
use std::sync::Arc;

/// A [`MetricSource`] that counts and logs the failures of the one it wraps.
pub struct Observed<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Observed<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

/// The label of a failure, one of [`super::metrics::SOURCE_ERRORS`].
pub fn error_kind(kind: &SourceErrorKind) -> &'static str {
    match kind {
        SourceErrorKind::Unreachable { .. } => "unreachable",
        SourceErrorKind::Timeout { .. } => "timeout",
        SourceErrorKind::Query { .. } => "query",
        SourceErrorKind::Http { .. } => "http",
        SourceErrorKind::Malformed { .. } => "malformed",
        _ => "other",
    }
}

impl<S: MetricSource> MetricSource for Observed<S> {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        let result = self.inner.query_range(request).await;
        if let Err(e) = &result {
            let kind = error_kind(&e.kind);
            self.metrics.source_error(kind);
            tracing::warn!(kind, "a metric query failed (the step holds): {e}");
        }
        result
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_failure_has_its_label() {
        let url = "http://prometheus:9090".to_string();
        let kinds = [
            SourceErrorKind::Unreachable {
                url: url.clone(),
                detail: "connection refused".into(),
            },
            SourceErrorKind::Timeout {
                url: url.clone(),
                seconds: 30.0,
            },
            SourceErrorKind::Query {
                status: 422,
                error_type: "execution".into(),
                error: "bad".into(),
            },
            SourceErrorKind::Http {
                status: 502,
                url: url.clone(),
                body: "bad gateway".into(),
            },
            SourceErrorKind::Malformed {
                url,
                detail: "not JSON".into(),
            },
            SourceErrorKind::Config("token file".into()),
        ];
        let labels: Vec<&str> = kinds.iter().map(error_kind).collect();
        assert_eq!(labels, super::super::metrics::SOURCE_ERRORS);
    }
}
