//! The Prometheus HTTP API as a [`MetricSource`]: range and instant queries, with auth,
//! tenancy headers, TLS options, typed errors and bounded retries. The same API serves
//! Thanos, Mimir, Cortex and VictoriaMetrics.

use super::{MetricSource, SourceError, SourceErrorKind};
use crate::data::{QueryRequest, QueryResult, Series};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How to reach and authenticate to a Prometheus-compatible server.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus:9090` or `https://mimir/prometheus`.
    pub url: String,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// A bearer token.
    pub bearer_token: Option<String>,
    /// A file holding a bearer token; re-read whenever it changes (service-account tokens).
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth user and password.
    pub basic_auth: Option<(String, String)>,
    /// Extra headers, e.g. `X-Scope-OrgID` for Mimir, Cortex or Thanos tenancy.
    pub headers: Vec<(String, String)>,
    /// A PEM file of CA certificates to trust in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
    /// How many times to retry a query after a 5xx answer or a timeout.
    pub retries: u32,
    /// The wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl PrometheusConfig {
    /// Defaults for a server at `url`: 30 s timeout, 2 retries after 250 ms.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_secs(30),
            bearer_token: None,
            bearer_token_file: None,
            basic_auth: None,
            headers: Vec::new(),
            ca_file: None,
            insecure_skip_verify: false,
            retries: 2,
            retry_backoff: Duration::from_millis(250),
        }
    }
}

/// A Prometheus HTTP API client.
#[derive(Debug)]
pub struct Prometheus {
    config: PrometheusConfig,
    base: String,
    client: reqwest::Client,
    token_cache: Mutex<Option<CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    modified: Option<SystemTime>,
    len: u64,
    token: String,
}

/// Queries longer than this are sent as a POST form instead of a GET URL.
const POST_THRESHOLD: usize = 1500;

impl Prometheus {
    /// A client for `config`. Fails on a bad URL, header, or CA file.
    pub fn new(config: PrometheusConfig) -> Result<Self, SourceErrorKind> {
        let base = config.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            SourceErrorKind::Config(format!(
                "--prometheus {:?} is not a URL ({e}); write e.g. http://localhost:9090",
                config.url
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SourceErrorKind::Config(format!(
                "--prometheus {:?} must start with http:// or https://",
                config.url
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str()).map_err(|e| {
                SourceErrorKind::Config(format!(
                    "--header: header name {name:?} is invalid: {e}; give \"Name: value\", e.g. \"X-Scope-OrgID: team-a\""
                ))
            })?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|e| {
                SourceErrorKind::Config(format!(
                    "--header: header {name}'s value is invalid: {e}; give printable ASCII without line breaks"
                ))
            })?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .default_headers(headers)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                SourceErrorKind::Config(format!("cannot read CA file {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SourceErrorKind::Config(format!(
                    "CA file {} holds no valid PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| SourceErrorKind::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            config,
            base,
            client,
            token_cache: Mutex::new(None),
        })
    }

    /// The bearer token to send, re-reading the token file when it changed.
    fn bearer_token(&self) -> Result<Option<String>, SourceErrorKind> {
        if let Some(path) = &self.config.bearer_token_file {
            let meta = std::fs::metadata(path).map_err(|e| {
                SourceErrorKind::Config(format!(
                    "cannot read bearer token file {}: {e}",
                    path.display()
                ))
            })?;
            let modified = meta.modified().ok();
            let mut cache = self
                .token_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(cached) = cache.as_ref()
                && cached.modified == modified
                && cached.len == meta.len()
            {
                return Ok(Some(cached.token.clone()));
            }
            let token = std::fs::read_to_string(path)
                .map_err(|e| {
                    SourceErrorKind::Config(format!(
                        "cannot read bearer token file {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_string();
            *cache = Some(CachedToken {
                modified,
                len: meta.len(),
                token: token.clone(),
            });
            return Ok(Some(token));
        }
        Ok(self.config.bearer_token.clone())
    }

    /// Runs an instant query at `time`.
    pub async fn query_instant(
        &self,
        promql: &str,
        time: DateTime<Utc>,
    ) -> Result<QueryResult, SourceErrorKind> {
        let params = vec![("query", promql.to_string()), ("time", unix_seconds(time))];
        self.call("/api/v1/query", params).await
    }

    /// Runs a range query from `start` to `end` with one point per `step`.
    pub async fn query_range_raw(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<QueryResult, SourceErrorKind> {
        let params = vec![
            ("query", promql.to_string()),
            ("start", unix_seconds(start)),
            ("end", unix_seconds(end)),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        self.call("/api/v1/query_range", params).await
    }

    /// One API call with retries on 5xx answers and timeouts.
    async fn call(
        &self,
        path: &str,
        params: Vec<(&'static str, String)>,
    ) -> Result<QueryResult, SourceErrorKind> {
        let mut attempt = 0;
        loop {
            let result = self.call_once(path, &params).await;
            let retryable = match &result {
                Err(SourceErrorKind::Timeout { .. }) => true,
                Err(
                    SourceErrorKind::Query { status, .. } | SourceErrorKind::Http { status, .. },
                ) => *status >= 500,
                _ => false,
            };
            if !retryable || attempt >= self.config.retries {
                return result;
            }
            let wait = self.config.retry_backoff * 2u32.saturating_pow(attempt);
            tracing::debug!(attempt, ?wait, "retrying a Prometheus query");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn call_once(
        &self,
        path: &str,
        params: &[(&'static str, String)],
    ) -> Result<QueryResult, SourceErrorKind> {
        let url = format!("{}{}", self.base, path);
        let long = params.iter().map(|(_, v)| v.len()).sum::<usize>() > POST_THRESHOLD;
        let mut request = if long {
            self.client.post(&url).form(params)
        } else {
            self.client.get(&url).query(params)
        };
        if let Some(token) = self.bearer_token()? {
            request = request.bearer_auth(token);
        } else if let Some((user, password)) = &self.config.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        parse_response(status, &body, &url)
    }

    fn transport_error(&self, e: &reqwest::Error) -> SourceErrorKind {
        if e.is_timeout() {
            SourceErrorKind::Timeout {
                url: self.base.clone(),
                seconds: self.config.timeout.as_secs_f64(),
            }
        } else {
            SourceErrorKind::Unreachable {
                url: self.base.clone(),
                detail: error_chain(e),
            }
        }
    }
}

/// An error with its causes, e.g. "error sending request: tcp connect error: Connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn unix_seconds(time: DateTime<Utc>) -> String {
    let millis = time.timestamp_millis();
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

impl MetricSource for Prometheus {
    async fn query_range(&self, request: &QueryRequest) -> Result<QueryResult, SourceError> {
        let window = &request.window;
        self.query_range_raw(
            &request.promql,
            window.first_point(),
            window.end,
            window.step.to_std(),
        )
        .await
        .map_err(|kind| SourceError::new(request, kind))
    }

    fn describe(&self) -> String {
        format!("Prometheus at {}", self.base)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Parses a Prometheus API answer (the HTTP status and body of a query to `url`): success
/// with data, or an error with its type.
pub fn parse_response(status: u16, body: &[u8], url: &str) -> Result<QueryResult, SourceErrorKind> {
    let parsed: ApiResponse = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_string();
            return Err(if (200..300).contains(&status) {
                SourceErrorKind::Malformed {
                    url: url.to_string(),
                    detail: format!("the body is not Prometheus API JSON ({e}): {text}"),
                }
            } else {
                SourceErrorKind::Http {
                    status,
                    url: url.to_string(),
                    body: text,
                }
            });
        }
    };
    if parsed.status != "success" {
        return Err(SourceErrorKind::Query {
            status,
            error_type: parsed.error_type.unwrap_or_else(|| "unknown".into()),
            error: parsed.error.unwrap_or_else(|| "no message".into()),
        });
    }
    let malformed = |detail: String| SourceErrorKind::Malformed {
        url: url.to_string(),
        detail,
    };
    let data = parsed
        .data
        .ok_or_else(|| malformed("a successful answer without data".into()))?;
    let series = match data.result_type.as_str() {
        "matrix" | "vector" => {
            let raw: Vec<ApiSeries> = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("bad {} result: {e}", data.result_type)))?;
            raw.into_iter()
                .map(|s| {
                    let pairs = s.values.into_iter().chain(s.value);
                    let points = pairs
                        .map(|(t, v)| parse_value(&v).map(|v| (t, v)))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(malformed)?;
                    Ok(Series {
                        labels: s.metric,
                        points,
                    })
                })
                .collect::<Result<Vec<_>, SourceErrorKind>>()?
        }
        "scalar" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| malformed(format!("bad scalar result: {e}")))?;
            vec![Series {
                labels: BTreeMap::new(),
                points: vec![(t, parse_value(&v).map_err(malformed)?)],
            }]
        }
        other => {
            return Err(malformed(format!(
                "result type {other:?}; vigil needs a vector, matrix or scalar"
            )));
        }
    };
    let mut warnings = parsed.warnings;
    warnings.extend(parsed.infos.into_iter().map(|i| format!("info: {i}")));
    Ok(QueryResult { series, warnings })
}

/// Prometheus sample values are strings: numbers, "NaN", "+Inf", "-Inf".
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("sample value {text:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_matrix_with_special_values() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"le":"+Inf"},"values":[[1.5,"NaN"],[2,"+Inf"],[3,"-Inf"],[4,"0.25"]]}]},"warnings":["w1"]}"#;
        let r = parse_response(200, body, "u").unwrap();
        let p = &r.series[0].points;
        assert!(p[0].1.is_nan());
        assert_eq!(p[1].1, f64::INFINITY);
        assert_eq!(p[2].1, f64::NEG_INFINITY);
        assert_eq!(p[3], (4.0, 0.25));
        assert_eq!(r.warnings, vec!["w1".to_string()]);
        assert_eq!(r.series[0].labels["le"], "+Inf");
    }

    #[test]
    fn parses_vector_and_scalar() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"]}]}}"#;
        assert_eq!(
            parse_response(200, body, "u").unwrap().series[0].points,
            vec![(1.0, 2.0)]
        );
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(
            parse_response(200, body, "u").unwrap().series[0].points,
            vec![(1.0, 3.0)]
        );
    }

    #[test]
    fn errors_are_typed() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected"}"#;
        assert_eq!(
            parse_response(400, body, "u"),
            Err(SourceErrorKind::Query {
                status: 400,
                error_type: "bad_data".into(),
                error: "parse error: unexpected".into()
            })
        );
        let err = parse_response(502, b"<html>Bad Gateway</html>", "u").unwrap_err();
        assert!(
            matches!(err, SourceErrorKind::Http { status: 502, .. }),
            "{err:?}"
        );
        let err = parse_response(200, b"not json", "u").unwrap_err();
        assert!(matches!(err, SourceErrorKind::Malformed { .. }), "{err:?}");
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#;
        assert!(matches!(
            parse_response(200, body, "u"),
            Err(SourceErrorKind::Malformed { .. })
        ));
    }

    #[test]
    fn bad_config_is_reported() {
        assert!(matches!(
            Prometheus::new(PrometheusConfig::new("localhost:9090")),
            Err(SourceErrorKind::Config(_))
        ));
        assert!(matches!(
            Prometheus::new(PrometheusConfig::new("not a url")),
            Err(SourceErrorKind::Config(_))
        ));
        let mut c = PrometheusConfig::new("http://localhost:9090");
        c.headers.push(("bad header".into(), "x".into()));
        assert!(matches!(
            Prometheus::new(c),
            Err(SourceErrorKind::Config(_))
        ));
    }
}
