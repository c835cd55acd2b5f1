//! DingTalk: a custom group robot, markdown message, optionally signed.
//!
//! Followed: DingTalk's custom robot docs ("自定义机器人接入" / "Custom robot access",
//! open.dingtalk.com, and its security settings "加签"): the body is `{"msgtype":
//! "markdown", "markdown": {"title", "text"}}`; with a signing secret (the `SEC...` string),
//! the URL gets `timestamp` (Unix milliseconds, within an hour of DingTalk's clock) and
//! `sign` = urlEncode(base64(HMAC-SHA256(key = secret, message = timestamp + "\n" +
//! secret))), UTF-8 throughout. The URL encoding is application/x-www-form-urlencoded, as
//! Java's `URLEncoder` and Python's `quote_plus` in the official samples do.
//!
//! DingTalk answers HTTP 200 even when it refuses: the body's `errcode` says (0 is ok,
//! 310000 a bad signature, keyword or IP; 130101 sending too fast, worth a retry).

use super::{
    BuildError, CodedAnswer, HttpRequest, Notification, Provider, Secrets, Verdict,
    hmac_sha256_base64, json_body, parse_url, truncate,
};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The DingTalk provider.
pub struct DingTalk;

/// `sign` before URL encoding: base64(HMAC-SHA256(secret, "<timestamp_ms>\n<secret>")).
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    hmac_sha256_base64(secret.as_bytes(), message.as_bytes())
}

/// Escapes what DingTalk's markdown would otherwise interpret at line starts.
fn md(text: &str) -> String {
    text.replace('\n', " ")
}

/// The markdown body.
pub fn payload(n: &Notification) -> serde_json::Value {
    let mut text = format!(
        "### {}\n\n**{}** {}\n\n- Release: {}/{}\n- {}\n",
        md(&n.headline()),
        n.severity.as_str().to_uppercase(),
        md(&n.message),
        n.namespace,
        n.name,
        md(&n.progress()),
    );
    if let Some(a) = &n.analysis {
        text.push_str(&format!("\n**Verdict: {}**\n\n", a.verdict));
        for reason in &a.reasons {
            text.push_str(&format!("- {}\n", md(reason)));
        }
    }
    text.push_str(&format!("\n> Report: {}\n", md(&n.report)));
    json!({
        "msgtype": "markdown",
        "markdown": {
            "title": truncate(&n.headline(), 100),
            "text": truncate(&text, 4000),
        }
    })
}

impl Provider for DingTalk {
    fn with_format(_: super::Format) -> Self {
        DingTalk
    }

    fn name(&self) -> &'static str {
        "dingtalk"
    }

    fn request(
        &self,
        notification: &Notification,
        secrets: &Secrets,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, BuildError> {
        let mut url = parse_url(&secrets.url)?;
        if let Some(secret) = secrets.secret.as_deref().filter(|s| !s.is_empty()) {
            let timestamp = now.timestamp_millis();
            url.query_pairs_mut()
                .append_pair("timestamp", &timestamp.to_string())
                .append_pair("sign", &sign(secret, timestamp));
        }
        Ok(HttpRequest {
            url,
            headers: Vec::new(),
            body: json_body(&payload(notification))?,
        })
    }

    fn judge(&self, status: u16, body: &str) -> Verdict {
        CodedAnswer {
            service: "DingTalk",
            code_fields: &["errcode"],
            message_field: "errmsg",
            retry_codes: &[130101],
            hint: "310000: check the robot's signing secret, keywords and IP allow-list",
        }
        .judge(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::sample;

    #[test]
    fn signed_url_keeps_the_token_and_adds_timestamp_and_sign() {
        let now = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let secrets = Secrets {
            url: "https://oapi.dingtalk.com/robot/send?access_token=abc".into(),
            secret: Some("SECxyz".into()),
        };
        let req = DingTalk.request(&sample(), &secrets, now).unwrap();
        let pairs: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("access_token".into(), "abc".into()));
        assert_eq!(pairs[1], ("timestamp".into(), "1700000000123".into()));
        assert_eq!(pairs[2].1, sign("SECxyz", 1_700_000_000_123));
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["msgtype"], "markdown");
        assert!(
            body["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains("Verdict: fail")
        );
    }

    #[test]
    fn errcodes_are_judged() {
        assert_eq!(
            DingTalk.judge(200, r#"{"errcode":0,"errmsg":"ok"}"#),
            Verdict::Delivered
        );
        assert!(matches!(
            DingTalk.judge(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            DingTalk.judge(200, r#"{"errcode":130101}"#),
            Verdict::Retry(_)
        ));
    }
}
