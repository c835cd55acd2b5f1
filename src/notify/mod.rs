//! Outgoing notifications: rollout events sent to chat tools and webhooks.
//!
//! A [`Notification`] is built from a rollout [`Event`] and the Release's state. Each
//! receiving service is a [`Provider`] (one file each), whose only job is PURE: turn a
//! notification, the receiver's secrets and the current time into an [`HttpRequest`] (URL
//! with any signed query parameters, headers, JSON body), and judge the response. Payloads
//! and signatures are therefore unit-testable without a network.
//!
//! Delivery is the [`dispatcher`]'s: a bounded queue drained by a background task, with
//! timeouts, bounded retries with exponential backoff and jitter, and de-duplication, so
//! that a slow or failing receiver never blocks or slows a rollout. Which notifications
//! go where is [`config`]'s: per Release (`spec.notifications`, secrets from Kubernetes
//! Secrets) and cluster-wide (`vigil run --notify-config`). `vigil run` hands each
//! reconcile's rollout events to the dispatcher (`crate::runtime::notifications`); this
//! module knows nothing of the reconciler.

pub mod config;
pub mod dingtalk;
pub mod discord;
pub mod dispatcher;
pub mod feishu;
pub mod slack;
pub mod teams;
pub mod webhook;

use crate::rollout::{Event, State};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of a notification: the rollout event's kind, under its stable kebab-case name
/// (payloads, filters' `events:`, de-duplication).
pub use crate::rollout::EventKind as EventName;

/// A short title for people, e.g. `Step advanced`.
fn title(kind: EventName) -> &'static str {
    match kind {
        EventName::Adopted => "Adopted",
        EventName::Started => "Rollout started",
        EventName::StepAdvanced => "Step advanced",
        EventName::Paused => "Rollout paused",
        EventName::Resumed => "Rollout resumed",
        EventName::AnalysisFailed => "Analysis failed",
        EventName::AnalysisInconclusive => "Analysis inconclusive",
        EventName::AnalysisError => "Analysis could not run",
        EventName::Aborted => "Rollout aborted and rolled back",
        EventName::Promoting => "Promoting",
        EventName::Succeeded => "Rollout succeeded",
        EventName::Superseded => "Superseded",
        EventName::Stalled => "Rollout stalled",
    }
}

/// How bad an event is: `error` for an abort or a failed analysis, `warning` for what
/// needs watching, `info` for progress.
pub fn severity(kind: EventName) -> Severity {
    match kind {
        EventName::Aborted | EventName::AnalysisFailed => Severity::Error,
        EventName::AnalysisInconclusive
        | EventName::AnalysisError
        | EventName::Stalled
        | EventName::Superseded => Severity::Warning,
        _ => Severity::Info,
    }
}

/// How bad a notification is; filters send those at or above a `minSeverity`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Progress.
    #[default]
    Info,
    /// Needs watching.
    Warning,
    /// A regression or a rollback.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// A colour for the services that show one: blue, amber, red (RGB).
    pub fn color(self) -> u32 {
        match self {
            Severity::Info => 0x2F81F7,
            Severity::Warning => 0xD29922,
            Severity::Error => 0xCF222E,
        }
    }
}

/// The last analysis of the rollout, as notifications carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// `pass`, `fail`, `inconclusive` or `error`.
    pub verdict: String,
    /// The verdict's reasons in words, one per template (`<template> <verdict>: <metric
    /// reasons>`), e.g. `http fail: error-rate 3.1% vs 0.4% (limit x1.5)`.
    pub reasons: Vec<String>,
    /// When it ran.
    pub at: DateTime<Utc>,
}

/// One rollout event, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// What happened.
    pub event: EventName,
    /// How bad it is.
    pub severity: Severity,
    /// The Release's namespace.
    pub namespace: String,
    /// The Release's name.
    pub name: String,
    /// The rollout phase after the event (`Progressing`, `Failed`, ...).
    pub phase: String,
    /// The current step, 1-based (0 before the first).
    pub step: u32,
    /// The number of steps.
    pub steps: u32,
    /// The canary's traffic share in percent.
    pub weight: u8,
    /// The revision under test (a pod-template hash), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The event in words.
    pub message: String,
    /// The rollout's last analysis, when one ran in this rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSummary>,
    /// Where to see the report: the Release's `status.report` when one was written, else
    /// the command that shows the status.
    pub report: String,
    /// When the event happened.
    pub time: DateTime<Utc>,
}

impl Notification {
    /// A notification for `event` of Release `namespace/name`, whose new state is `state`,
    /// with the report written at `report` if any.
    pub fn new(
        namespace: &str,
        name: &str,
        event: &Event,
        state: &State,
        report: Option<&str>,
        time: DateTime<Utc>,
    ) -> Self {
        let kind = event.kind;
        let step = if state.steps == 0 {
            0
        } else {
            state.current_step().saturating_add(1).min(state.steps)
        };
        // Only this rollout's analyses: an older one would describe another release.
        let analysis = state
            .analyses()
            .last()
            .filter(|a| state.release().is_none_or(|r| a.at >= r.started_at))
            .map(|a| AnalysisSummary {
                verdict: a.verdict.clone(),
                reasons: a
                    .summary
                    .split(" | ")
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect(),
                at: a.at,
            });
        let report = report
            .filter(|r| !r.trim().is_empty())
            .map(String::from)
            .unwrap_or_else(|| format!("kubectl vigil status {name} -n {namespace}"));
        Notification {
            event: kind,
            severity: severity(kind),
            namespace: namespace.into(),
            name: name.into(),
            phase: state.phase().as_str().into(),
            step,
            steps: state.steps,
            weight: state.weight(),
            revision: state.canary_revision().map(String::from),
            message: event.message.clone(),
            analysis,
            report,
            time,
        }
    }

    /// `<title>: <namespace>/<name>`, the headline every provider shows.
    pub fn headline(&self) -> String {
        format!("{}: {}/{}", title(self.event), self.namespace, self.name)
    }

    /// `Progressing, step 2/4, weight 25%, revision abc123`.
    pub fn progress(&self) -> String {
        let mut out = format!(
            "{}, step {}/{}, weight {}%",
            self.phase, self.step, self.steps, self.weight
        );
        if let Some(r) = &self.revision {
            out.push_str(&format!(", revision {r}"));
        }
        out
    }

    /// The verdict and its reasons as lines, empty without an analysis.
    pub fn verdict_lines(&self) -> Vec<String> {
        match &self.analysis {
            None => Vec::new(),
            Some(a) => {
                let mut lines = vec![format!("verdict: {}", a.verdict)];
                lines.extend(a.reasons.iter().cloned());
                lines
            }
        }
    }

    /// The whole notification as plain text lines (for text-only services and fallbacks).
    pub fn plain_text(&self) -> String {
        let mut lines = vec![
            format!("[{}] {}", self.severity.as_str(), self.headline()),
            self.message.clone(),
            self.progress(),
        ];
        lines.extend(self.verdict_lines());
        lines.push(format!("report: {}", self.report));
        lines.join("\n")
    }
}

/// What a receiver needs to be reached: its URL and, for services that sign, the secret.
/// Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// The webhook URL (it usually carries a token).
    pub url: String,
    /// The signing secret, when the receiver checks signatures.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("url", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An HTTP POST to send, built by a [`Provider`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Where, with any signed query parameters.
    pub url: reqwest::Url,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, exactly as sent (signatures cover these bytes).
    pub body: Vec<u8>,
}

/// Why a request could not be built: the configuration is wrong, retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The URL does not parse.
    #[error(
        "the webhook URL is not a valid http(s) URL ({0}); check the Secret or file it comes from"
    )]
    BadUrl(String),
    /// The body could not be encoded (a bug).
    #[error("cannot encode the payload: {0}")]
    Encode(String),
}

/// What a receiver's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Worth another try (overloaded, rate limited, a server error).
    Retry(String),
    /// Refused for good (bad token, bad payload): retrying cannot help.
    Refused(String),
}

/// A receiving service. Implementations are pure: no I/O, no clock.
pub trait Provider: Send + Sync {
    /// The provider, shown in `format` where the service offers a choice.
    fn with_format(format: Format) -> Self
    where
        Self: Sized;

    /// The provider's name in logs and metrics (`slack`, `dingtalk`, ...).
    fn name(&self) -> &'static str;

    /// The request that delivers `notification`, signed with `secrets` at `now` where the
    /// service wants a signature.
    fn request(
        &self,
        notification: &Notification,
        secrets: &Secrets,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, BuildError>;

    /// Judges the receiver's answer. By default 2xx is delivered; 408, 429 and 5xx are
    /// retried; anything else is refused.
    fn judge(&self, status: u16, body: &str) -> Verdict {
        judge_status(status, body)
    }
}

/// The default [`Provider::judge`]: by HTTP status.
pub fn judge_status(status: u16, body: &str) -> Verdict {
    let snippet: String = body.chars().take(200).collect();
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(format!("HTTP {status}: {snippet}")),
        _ => Verdict::Refused(format!("HTTP {status}: {snippet}")),
    }
}

/// How a service that answers HTTP 200 even when it refuses (DingTalk, Feishu) reports the
/// outcome in its JSON body.
pub struct CodedAnswer {
    /// The service's name, for messages.
    pub service: &'static str,
    /// The fields holding the code, tried in order; 0 or none means delivered.
    pub code_fields: &'static [&'static str],
    /// The field holding the message.
    pub message_field: &'static str,
    /// Codes worth a retry (rate limits).
    pub retry_codes: &'static [i64],
    /// What to check when refused.
    pub hint: &'static str,
}

impl CodedAnswer {
    /// Judges by status first, then by the body's code.
    pub fn judge(&self, status: u16, body: &str) -> Verdict {
        let by_status = judge_status(status, body);
        if by_status != Verdict::Delivered {
            return by_status;
        }
        let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let code = self
            .code_fields
            .iter()
            .find_map(|f| answer.get(*f))
            .and_then(|c| c.as_i64());
        let message = answer
            .get(self.message_field)
            .and_then(|m| m.as_str())
            .unwrap_or("");
        match code {
            None | Some(0) => Verdict::Delivered,
            Some(c) if self.retry_codes.contains(&c) => {
                Verdict::Retry(format!("{} code {c}: {message}", self.service))
            }
            Some(c) => Verdict::Refused(format!(
                "{} code {c}: {message} ({})",
                self.service, self.hint
            )),
        }
    }
}

/// A plain JSON POST to the receiver's URL, for services that sign nothing.
pub fn post_json(secrets: &Secrets, body: &serde_json::Value) -> Result<HttpRequest, BuildError> {
    Ok(HttpRequest {
        url: parse_url(&secrets.url)?,
        headers: Vec::new(),
        body: json_body(body)?,
    })
}

/// Declares the receiving services: one line each, from which come [`ProviderKind`] (the
/// configuration's `provider:` values), their names and the factory
/// [`ProviderKind::provider`]. A new service is its file implementing [`Provider`] and one
/// line here.
macro_rules! providers {
    ($($(#[$doc:meta])* $variant:ident $name:literal => $provider:ty,)+) => {
        /// The receiving services vigil knows.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            JsonSchema,
        )]
        pub enum ProviderKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl ProviderKind {
            /// The provider's name, as in configuration.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProviderKind::$variant => $name,)+
                }
            }

            /// The implementation, shown in `format` where the service has a choice.
            pub fn provider(self, format: Format) -> Box<dyn Provider> {
                match self {
                    $(ProviderKind::$variant => Box::new(<$provider>::with_format(format)),)+
                }
            }
        }
    };
}

providers! {
    /// Slack incoming webhook (Block Kit).
    Slack "slack" => slack::Slack,
    /// Microsoft Teams (Workflows or incoming webhook, Adaptive Card).
    Teams "teams" => teams::Teams,
    /// Discord webhook (embeds).
    Discord "discord" => discord::Discord,
    /// DingTalk custom robot (markdown, optional signing secret).
    Dingtalk "dingtalk" => dingtalk::DingTalk,
    /// Feishu/Lark custom bot (card or text, optional signing secret).
    Feishu "feishu" => feishu::Feishu,
    /// Any HTTP endpoint: vigil's versioned JSON, signed with HMAC-SHA256.
    Webhook "webhook" => webhook::Webhook,
}

/// How Feishu shows a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A message card (`msg_type: interactive`).
    #[default]
    Card,
    /// Plain text (`msg_type: text`).
    Text,
}

/// Parses a webhook URL, refusing anything but http(s). The error never repeats the URL,
/// which carries a token.
pub fn parse_url(url: &str) -> Result<reqwest::Url, BuildError> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| BuildError::BadUrl(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(BuildError::BadUrl(format!("scheme {other:?}"))),
    }
}

/// base64(HMAC-SHA256(key, message)), the signature DingTalk and Feishu robots check.
pub fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    use base64::Engine;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    base64::engine::general_purpose::STANDARD.encode(aws_lc_rs::hmac::sign(&key, message))
}

/// Serializes a JSON body.
pub fn json_body(value: &serde_json::Value) -> Result<Vec<u8>, BuildError> {
    serde_json::to_vec(value).map_err(|e| BuildError::Encode(e.to_string()))
}

/// Services refuse over-long fields.
pub use crate::judge::words::truncate;

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::rollout::{AnalysisRecord, Attempt, Flight, Stage, Traffic};

    /// A failed-analysis notification with two reasons.
    pub fn sample() -> Notification {
        let at = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let release = Attempt {
            current_step: 1,
            analyses: vec![AnalysisRecord {
                at,
                step: 1,
                weight: 25,
                verdict: "fail".into(),
                summary: "http fail: error-rate 3.1% vs 0.4% | latency pass: score 98".into(),
            }],
            ..Attempt::new("7d9f8c", at - chrono::Duration::minutes(10), 4)
        };
        let state = State {
            stage: Stage::Progressing(Flight {
                traffic: Traffic {
                    weight: 25,
                    matches: Vec::new(),
                    mirror: None,
                },
                ..Flight::new(release)
            }),
            steps: 4,
            ..State::default()
        };
        Notification::new(
            "shop",
            "web",
            &Event {
                kind: EventName::AnalysisFailed,
                message: "step 2/4: analysis failed (1 of 2)".into(),
            },
            &state,
            None,
            at,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_from_an_event() {
        let n = testing::sample();
        assert_eq!(n.event.as_str(), "analysis-failed");
        assert_eq!(n.severity, Severity::Error);
        assert_eq!((n.step, n.steps, n.weight), (2, 4, 25));
        assert_eq!(n.report, "kubectl vigil status web -n shop");
        let a = n.analysis.as_ref().unwrap();
        assert_eq!(a.reasons.len(), 2);
        assert_eq!(a.reasons[0], "http fail: error-rate 3.1% vs 0.4%");
        assert!(n.plain_text().contains("verdict: fail"));
    }

    #[test]
    fn names_serialize_as_documented() {
        for name in EventName::ALL {
            assert_eq!(
                serde_json::to_value(name).unwrap(),
                serde_json::json!(name.as_str())
            );
        }
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Info);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") is
        // 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843.
        assert_eq!(
            hmac_sha256_base64(b"Jefe", b"what do ya want for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo!", 5), "héll…");
    }

    #[test]
    fn default_judgement() {
        assert_eq!(judge_status(204, ""), Verdict::Delivered);
        assert!(matches!(judge_status(429, ""), Verdict::Retry(_)));
        assert!(matches!(judge_status(503, ""), Verdict::Retry(_)));
        assert!(matches!(judge_status(404, ""), Verdict::Refused(_)));
    }
}
