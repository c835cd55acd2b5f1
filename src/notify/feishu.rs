//! Feishu/Lark: a custom bot, card or text message, optionally signed.
//!
//! Followed: Feishu's "Custom bot usage guide" (open.feishu.cn/document/client-docs/bot-v3/
//! add-custom-bot): text is `{"msg_type": "text", "content": {"text"}}`, a card is
//! `{"msg_type": "interactive", "card": {"header": {"title": {"tag": "plain_text",
//! "content"}, "template"}, "elements": [...]}}`. With signature verification on, the body
//! also carries `timestamp` (Unix seconds, as a string, within an hour) and `sign` =
//! base64(HMAC-SHA256(key = timestamp + "\n" + secret, message = empty)): note the key is
//! the string to sign and the message is empty, unlike DingTalk.
//!
//! Feishu answers HTTP 200 with `{"code": 0}` on success; a non-zero `code` is a refusal
//! (19021 bad signature, 19022 IP, 19024 keywords, 9499 bad request), except 11232
//! (rate limited), worth a retry.

use super::{
    BuildError, CodedAnswer, Format, HttpRequest, Notification, Provider, Secrets, Severity,
    Verdict, hmac_sha256_base64, json_body, parse_url, truncate,
};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The Feishu provider.
pub struct Feishu {
    /// Card or text.
    pub format: Format,
}

/// base64(HMAC-SHA256(key = "<timestamp>\n<secret>", message = "")).
pub fn sign(secret: &str, timestamp: i64) -> String {
    let key = format!("{timestamp}\n{secret}");
    hmac_sha256_base64(key.as_bytes(), b"")
}

/// The message body, without the signature.
pub fn payload(n: &Notification, format: Format) -> serde_json::Value {
    match format {
        Format::Text => json!({
            "msg_type": "text",
            "content": {"text": truncate(&n.plain_text(), 4000)}
        }),
        Format::Card => {
            let template = match n.severity {
                Severity::Info => "blue",
                Severity::Warning => "orange",
                Severity::Error => "red",
            };
            let mut details = format!(
                "{}\n**Release:** {}/{}\n**Progress:** {}",
                n.message,
                n.namespace,
                n.name,
                n.progress()
            );
            if let Some(a) = &n.analysis {
                details.push_str(&format!("\n**Verdict:** {}", a.verdict));
                for reason in &a.reasons {
                    details.push_str(&format!("\n- {reason}"));
                }
            }
            json!({
                "msg_type": "interactive",
                "card": {
                    "config": {"wide_screen_mode": true},
                    "header": {
                        "title": {"tag": "plain_text", "content": truncate(&n.headline(), 100)},
                        "template": template,
                    },
                    "elements": [
                        {"tag": "div", "text": {"tag": "lark_md", "content": truncate(&details, 4000)}},
                        {"tag": "hr"},
                        {"tag": "note", "elements": [
                            {"tag": "plain_text", "content": truncate(&format!("Report: {}", n.report), 500)}
                        ]},
                    ],
                }
            })
        }
    }
}

impl Provider for Feishu {
    fn with_format(format: Format) -> Self {
        Feishu { format }
    }

    fn name(&self) -> &'static str {
        "feishu"
    }

    fn request(
        &self,
        notification: &Notification,
        secrets: &Secrets,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, BuildError> {
        let url = parse_url(&secrets.url)?;
        let mut body = payload(notification, self.format);
        if let (Some(secret), Some(object)) = (
            secrets.secret.as_deref().filter(|s| !s.is_empty()),
            body.as_object_mut(),
        ) {
            let timestamp = now.timestamp();
            object.insert("timestamp".into(), json!(timestamp.to_string()));
            object.insert("sign".into(), json!(sign(secret, timestamp)));
        }
        Ok(HttpRequest {
            url,
            headers: Vec::new(),
            body: json_body(&body)?,
        })
    }

    fn judge(&self, status: u16, body: &str) -> Verdict {
        // Older answers carry `StatusCode` instead of `code`.
        CodedAnswer {
            service: "Feishu",
            code_fields: &["code", "StatusCode"],
            message_field: "msg",
            retry_codes: &[11232],
            hint: "19021: check the signing secret; 19024: keywords; 19022: IP allow-list",
        }
        .judge(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::sample;

    #[test]
    fn card_and_text() {
        let card = payload(&sample(), Format::Card);
        assert_eq!(card["msg_type"], "interactive");
        assert_eq!(card["card"]["header"]["template"], "red");
        let text = payload(&sample(), Format::Text);
        assert_eq!(text["msg_type"], "text");
        assert!(
            text["content"]["text"]
                .as_str()
                .unwrap()
                .contains("analysis failed")
        );
    }

    #[test]
    fn signed_body() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let secrets = Secrets {
            url: "https://open.feishu.cn/open-apis/bot/v2/hook/x".into(),
            secret: Some("k".into()),
        };
        let req = Feishu {
            format: Format::Card,
        }
        .request(&sample(), &secrets, now)
        .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["timestamp"], "1700000000");
        assert_eq!(body["sign"], sign("k", 1_700_000_000));
        assert_eq!(
            Feishu { format: Format::Card }.judge(200, r#"{"code":19021,"msg":"sign match fail"}"#),
            Verdict::Refused("Feishu code 19021: sign match fail (19021: check the signing secret; 19024: keywords; 19022: IP allow-list)".into())
        );
    }
}
