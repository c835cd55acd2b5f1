//! What commands read: times, durations and template arguments from flags, the connection to
//! Prometheus, template files.

use super::exit::{Failure, usage};
use chrono::{DateTime, Utc};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use vigil::source::prometheus::PrometheusConfig;
use vigil::template::load;
use vigil::template::units::PromDuration;

/// How to reach Prometheus: authentication, TLS, timeouts (flattened into the commands that
/// query it).
#[derive(Args)]
pub struct ConnectionArgs {
    /// Bearer token for Prometheus.
    #[arg(long, env = "VIGIL_PROMETHEUS_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// File with a bearer token, re-read when it changes (e.g. a service-account token).
    #[arg(long, conflicts_with = "bearer_token")]
    bearer_token_file: Option<PathBuf>,
    /// Basic auth as USER:PASSWORD.
    #[arg(long, env = "VIGIL_PROMETHEUS_BASIC_AUTH", hide_env_values = true)]
    basic_auth: Option<String>,
    /// Extra HTTP header, "Name: value" (e.g. "X-Scope-OrgID: team-a"); repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (testing only).
    #[arg(long)]
    insecure_skip_verify: bool,
    /// Timeout of one query.
    #[arg(long, default_value = "30s")]
    timeout: String,
    /// Retries after a 5xx answer or a timeout.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Queries in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

/// Reads and parses a template file; the template module itself does no I/O.
pub fn read_template(
    path: &std::path::Path,
) -> Result<(vigil::template::ReleaseAnalysis, String, String), load::Problems> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        load::Problems(vec![load::Problem {
            file: origin.clone(),
            line: None,
            field: None,
            message: format!("cannot read the template: {e}: check the file's path"),
        }])
    })?;
    let template = load::parse(&text, &origin)?;
    Ok((template, text, origin))
}

/// A time given as `flag`: RFC 3339 or Unix seconds.
pub fn parse_time(text: &str, flag: &str) -> Result<DateTime<Utc>, Failure> {
    vigil::data::parse_time(text).ok_or_else(|| {
        usage(format!(
            "{flag} {text:?} is not a time: use RFC 3339 (2026-11-28T10:00:00Z) or Unix seconds"
        ))
    })
}

/// A duration given as `flag`, e.g. `30m`.
pub fn parse_duration(text: &str, flag: &str) -> Result<PromDuration, Failure> {
    text.parse().map_err(|e| usage(format!("{flag}: {e}")))
}

/// Template arguments given as `--arg NAME=VALUE`, each once.
pub fn parse_args(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            usage(format!(
                "--arg {pair:?} must be NAME=VALUE, e.g. --arg job=checkout"
            ))
        })?;
        if out.insert(name.to_string(), value.to_string()).is_some() {
            return Err(usage(format!(
                "--arg {name} is given twice: give each argument once"
            )));
        }
    }
    Ok(out)
}

/// The configuration of a Prometheus client at `url` with the connection flags.
pub fn prometheus_config(url: &str, c: &ConnectionArgs) -> Result<PrometheusConfig, Failure> {
    let mut config = PrometheusConfig::new(url);
    config.timeout = parse_duration(&c.timeout, "--timeout")?.to_std();
    config.retries = c.retries;
    config.bearer_token = c.bearer_token.clone();
    config.bearer_token_file = c.bearer_token_file.clone();
    if let Some(basic) = &c.basic_auth {
        let (user, password) = basic
            .split_once(':')
            .ok_or_else(|| usage("--basic-auth must be USER:PASSWORD, e.g. vigil:s3cret"))?;
        config.basic_auth = Some((user.to_string(), password.to_string()));
    }
    for header in &c.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            usage(format!(
                "--header {header:?} must be \"Name: value\", e.g. \"X-Scope-OrgID: team-a\""
            ))
        })?;
        config
            .headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    config.ca_file = c.ca_file.clone();
    config.insecure_skip_verify = c.insecure_skip_verify;
    Ok(config)
}

/// A Release's plan, or a usage error naming the field at fault.
pub fn canary_plan(canary: &vigil::api::crd::Release) -> Result<vigil::rollout::Plan, Failure> {
    vigil::api::plan::plan(&canary.spec)
        .map_err(|e| usage(vigil::replay::ReplayError::Spec(e).to_string()))
}
