//! Discord: a webhook message with one embed.
//!
//! Followed: Discord's "Execute Webhook" and "Embed Object" references
//! (discord.com/developers/docs/resources/webhook#execute-webhook,
//! .../resources/message#embed-object). The body is `{"content", "embeds": [{title,
//! description, color, fields, footer, timestamp}], "allowed_mentions": {"parse": []}}`;
//! embed limits honoured: title 256, description 4096, field name 256 and value 1024, 25
//! fields, footer 2048. `allowed_mentions` with no `parse` keeps event text from pinging
//! `@everyone`. Discord answers 204 (or 200 with `?wait=true`), 429 when rate limited.

use super::{BuildError, HttpRequest, Notification, Provider, Secrets, post_json, truncate};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// The Discord provider.
pub struct Discord;

/// The webhook body.
pub fn payload(n: &Notification) -> serde_json::Value {
    let mut fields = vec![
        json!({"name": "Phase", "value": truncate(&n.phase, 1024), "inline": true}),
        json!({"name": "Step", "value": format!("{}/{}", n.step, n.steps), "inline": true}),
        json!({"name": "Weight", "value": format!("{}%", n.weight), "inline": true}),
    ];
    if let Some(r) = &n.revision {
        fields.push(json!({"name": "Revision", "value": truncate(r, 1024), "inline": true}));
    }
    if let Some(a) = &n.analysis {
        let reasons = if a.reasons.is_empty() {
            "-".to_string()
        } else {
            a.reasons
                .iter()
                .map(|r| format!("• {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        fields.push(json!({
            "name": truncate(&format!("Verdict: {}", a.verdict), 256),
            "value": truncate(&reasons, 1024),
            "inline": false
        }));
    }
    fields.push(json!({"name": "Report", "value": truncate(&n.report, 1024), "inline": false}));
    json!({
        "content": truncate(&n.headline(), 2000),
        "embeds": [{
            "title": truncate(&n.headline(), 256),
            "description": truncate(&n.message, 4096),
            "color": n.severity.color(),
            "fields": fields,
            "footer": {"text": format!("vigil · {}", n.event.as_str())},
            "timestamp": n.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        }],
        "allowed_mentions": {"parse": []},
    })
}

impl Provider for Discord {
    fn with_format(_: super::Format) -> Self {
        Discord
    }

    fn name(&self) -> &'static str {
        "discord"
    }

    fn request(
        &self,
        notification: &Notification,
        secrets: &Secrets,
        _now: DateTime<Utc>,
    ) -> Result<HttpRequest, BuildError> {
        post_json(secrets, &payload(notification))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::sample;

    #[test]
    fn one_embed_with_fields_and_no_mentions() {
        let p = payload(&sample());
        let embed = &p["embeds"][0];
        assert_eq!(embed["title"], "Analysis failed: shop/web");
        assert_eq!(embed["color"], 0xCF222E);
        assert_eq!(embed["timestamp"], "2026-03-01T12:00:00Z");
        assert!(embed["fields"].as_array().unwrap().len() <= 25);
        assert_eq!(p["allowed_mentions"]["parse"], json!([]));
    }
}
