//! Where metric data comes from: the [`MetricSource`] trait, the Prometheus implementation
//! and a simulated one for demos and benchmarks.

pub mod incremental;
pub mod prometheus;
pub mod simulated;

use crate::data::{QueryRequest, QueryResult};
use std::future::Future;

/// What went wrong when running a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceErrorKind {
    /// The server could not be reached at all.
    #[error("cannot connect to {url}: {detail}; check --prometheus and that the server is up")]
    Unreachable {
        /// The server's address.
        url: String,
        /// The underlying error.
        detail: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {seconds}s; raise the timeout or shorten the window")]
    Timeout {
        /// The server's address.
        url: String,
        /// The timeout.
        seconds: f64,
    },
    /// Prometheus answered with an error of its own.
    #[error("Prometheus rejected the query ({error_type}, HTTP {status}): {error}")]
    Query {
        /// HTTP status.
        status: u16,
        /// Prometheus's `errorType` (bad_data, execution, timeout, ...).
        error_type: String,
        /// Prometheus's `error` message.
        error: String,
    },
    /// An HTTP error without a Prometheus error body (a proxy, auth, a wrong URL).
    #[error("HTTP {status} from {url}: {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The URL called.
        url: String,
        /// The start of the response body.
        body: String,
    },
    /// An answer that is not what the Prometheus API promises.
    #[error("unexpected answer from {url}: {detail}")]
    Malformed {
        /// The URL called.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// A problem with the source's own configuration (token file, CA file).
    #[error("{0}")]
    Config(String),
    /// The simulated source has no data for this request.
    #[error("{0}")]
    Simulation(String),
}

/// A failed query, with the query that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{context}: {kind}\n  query: {promql}")]
pub struct SourceError {
    /// "template X, metric Y (field, version)".
    pub context: String,
    /// The rendered query.
    pub promql: String,
    /// What went wrong.
    pub kind: SourceErrorKind,
}

impl SourceError {
    /// An error about one request.
    pub fn new(request: &QueryRequest, kind: SourceErrorKind) -> Self {
        Self {
            context: request.describe(),
            promql: request.promql.clone(),
            kind,
        }
    }

    /// Whether the source as a whole is unusable (as opposed to one bad query).
    pub fn is_source_down(&self) -> bool {
        matches!(
            self.kind,
            SourceErrorKind::Unreachable { .. } | SourceErrorKind::Config(_)
        )
    }
}

/// Something that answers range queries over a window.
pub trait MetricSource: Send + Sync {
    /// Runs one query over its window, one point per step.
    fn query_range(
        &self,
        request: &QueryRequest,
    ) -> impl Future<Output = Result<QueryResult, SourceError>> + Send;

    /// A short description for reports, e.g. the server's URL.
    fn describe(&self) -> String;
}
