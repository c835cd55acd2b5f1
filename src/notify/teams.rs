//! Microsoft Teams: an Adaptive Card in a message activity.
//!
//! Followed: Microsoft's "Create Incoming Webhooks" / "Send Adaptive Cards using an
//! Incoming Webhook" (learn.microsoft.com, msteams-platform/webhooks-and-connectors) and the
//! Workflows template "Send webhook alerts to a channel" that replaces Office 365
//! connectors: both accept `{"type": "message", "attachments": [{"contentType":
//! "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <AdaptiveCard>}]}`.
//! The card uses schema version 1.4 (what Teams renders), a `TextBlock` headline coloured by
//! severity, a `FactSet`, and the verdict's reasons. Workflows answers 202 Accepted.

use super::{
    BuildError, HttpRequest, Notification, Provider, Secrets, Severity, post_json, truncate,
};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The Teams provider.
pub struct Teams;

/// The message activity carrying the card.
pub fn payload(n: &Notification) -> serde_json::Value {
    let color = match n.severity {
        Severity::Info => "Accent",
        Severity::Warning => "Warning",
        Severity::Error => "Attention",
    };
    let mut facts = vec![
        json!({"title": "Release", "value": format!("{}/{}", n.namespace, n.name)}),
        json!({"title": "Phase", "value": n.phase}),
        json!({"title": "Step", "value": format!("{}/{}", n.step, n.steps)}),
        json!({"title": "Weight", "value": format!("{}%", n.weight)}),
    ];
    if let Some(r) = &n.revision {
        facts.push(json!({"title": "Revision", "value": r}));
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": truncate(&n.headline(), 200), "weight": "Bolder",
               "size": "Medium", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": n.message, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(a) = &n.analysis {
        body.push(
            json!({"type": "TextBlock", "text": format!("Verdict: {}", a.verdict),
                         "weight": "Bolder", "wrap": true}),
        );
        for reason in &a.reasons {
            body.push(
                json!({"type": "TextBlock", "text": format!("- {reason}"), "wrap": true,
                             "spacing": "None"}),
            );
        }
    }
    body.push(
        json!({"type": "TextBlock", "text": format!("Report: {}", n.report),
                     "isSubtle": true, "wrap": true}),
    );
    json!({
        "type": "message",
        "summary": truncate(&n.headline(), 200),
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

impl Provider for Teams {
    fn with_format(_: super::Format) -> Self {
        Teams
    }

    fn name(&self) -> &'static str {
        "teams"
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
    fn an_adaptive_card_attachment() {
        let p = payload(&sample());
        assert_eq!(p["type"], "message");
        let a = &p["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["body"][0]["color"], "Attention");
    }
}
