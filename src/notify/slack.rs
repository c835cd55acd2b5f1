//! Slack: an incoming webhook with Block Kit blocks.
//!
//! Followed: Slack's "Sending messages using incoming webhooks" and the Block Kit reference
//! (api.slack.com/messaging/webhooks, api.slack.com/reference/block-kit/blocks). The body is
//! `{"text": ..., "blocks": [...]}`: with blocks, `text` is the fallback shown in
//! notifications. Limits honoured: a `header` block's plain text is at most 150 characters,
//! a `section` text at most 3000, a field at most 2000, at most 10 fields. Slack answers
//! 200 `ok`, or 4xx with a short reason (`invalid_token`, `no_service`), and 429 when rate
//! limited. `&`, `<` and `>` are escaped in mrkdwn so that event text cannot ping
//! `<!channel>` or forge links.

use super::{BuildError, HttpRequest, Notification, Provider, Secrets, post_json, truncate};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The Slack provider.
pub struct Slack;

/// Escapes the three characters Slack's mrkdwn treats as control sequences.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn emoji(n: &Notification) -> &'static str {
    match n.severity {
        super::Severity::Info => ":large_blue_circle:",
        super::Severity::Warning => ":large_orange_circle:",
        super::Severity::Error => ":red_circle:",
    }
}

/// The Block Kit body.
pub fn payload(n: &Notification) -> serde_json::Value {
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Release*\n{}/{}", escape(&n.namespace), escape(&n.name))}),
        json!({"type": "mrkdwn", "text": format!("*Phase*\n{}", escape(&n.phase))}),
        json!({"type": "mrkdwn", "text": format!("*Step*\n{}/{}", n.step, n.steps)}),
        json!({"type": "mrkdwn", "text": format!("*Weight*\n{}%", n.weight)}),
    ];
    if let Some(r) = &n.revision {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Revision*\n`{}`", escape(r))}));
    }
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&n.headline(), 150), "emoji": true}
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("{} {}", emoji(n), escape(&n.message)), 3000)}
        }),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(a) = &n.analysis {
        let mut text = format!("*Verdict: {}*", escape(&a.verdict));
        for reason in &a.reasons {
            text.push_str(&format!("\n• {}", escape(reason)));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(&format!("Report: {}", escape(&n.report)), 2000)}]
    }));
    json!({
        "text": truncate(&format!("{}: {}", n.headline(), n.message), 3000),
        "blocks": blocks,
    })
}

impl Provider for Slack {
    fn with_format(_: super::Format) -> Self {
        Slack
    }

    fn name(&self) -> &'static str {
        "slack"
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
    fn blocks_have_a_header_fields_the_verdict_and_a_fallback() {
        let mut n = sample();
        n.message = "<!channel> & co".into();
        let p = payload(&n);
        assert!(
            p["text"]
                .as_str()
                .unwrap()
                .starts_with("Analysis failed: shop/web")
        );
        let blocks = p["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(
            blocks[1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("&lt;!channel&gt; &amp; co")
        );
        assert!(blocks[2]["fields"].as_array().unwrap().len() <= 10);
        let verdict = blocks[3]["text"]["text"].as_str().unwrap();
        assert!(
            verdict.contains("*Verdict: fail*") && verdict.contains("error-rate"),
            "{verdict}"
        );
        assert_eq!(blocks.last().unwrap()["type"], "context");
    }
}
