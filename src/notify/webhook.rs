//! A generic JSON webhook: vigil's own versioned payload, signed with HMAC-SHA256.
//!
//! The payload (`apiVersion: vigil.dev/notification/v1`) and the signature scheme are
//! documented for receivers in docs/notifications.md; the signing is [`crate::signature`]'s,
//! shared with the signed alerts vigil receives. Within `v1`, fields are only ever added.

use super::{BuildError, HttpRequest, Notification, Provider, Secrets, json_body, parse_url};
use crate::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use chrono::{DateTime, Utc};
use serde_json::json;

/// The payload's `apiVersion`.
pub const API_VERSION: &str = "vigil.dev/notification/v1";
/// The header naming the event, for routing without parsing the body.
pub const EVENT_HEADER: &str = "X-Vigil-Event";
/// The header carrying the notification's id (stable across retries of one delivery).
pub const ID_HEADER: &str = "X-Vigil-Delivery";

/// The generic webhook provider.
pub struct Webhook;

/// A stable id for a notification: FNV-1a of its canary, event, message and time.
pub fn id(n: &Notification) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!(
        "{}/{}/{}/{}/{}",
        n.namespace,
        n.name,
        n.event.as_str(),
        n.message,
        n.time.timestamp_millis()
    );
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The versioned body: `apiVersion`, `kind`, `id`, then every field of the notification.
pub fn payload(n: &Notification) -> serde_json::Value {
    let mut body = json!({
        "apiVersion": API_VERSION,
        "kind": "Notification",
        "id": id(n),
    });
    if let (Some(object), Ok(serde_json::Value::Object(fields))) =
        (body.as_object_mut(), serde_json::to_value(n))
    {
        object.extend(fields);
    }
    body
}

impl Provider for Webhook {
    fn with_format(_: super::Format) -> Self {
        Webhook
    }

    fn name(&self) -> &'static str {
        "webhook"
    }

    fn request(
        &self,
        notification: &Notification,
        secrets: &Secrets,
        now: DateTime<Utc>,
    ) -> Result<HttpRequest, BuildError> {
        let url = parse_url(&secrets.url)?;
        let body = json_body(&payload(notification))?;
        let timestamp = now.timestamp();
        let mut headers = vec![
            (TIMESTAMP_HEADER.to_string(), timestamp.to_string()),
            (
                EVENT_HEADER.to_string(),
                notification.event.as_str().to_string(),
            ),
            (ID_HEADER.to_string(), id(notification)),
        ];
        if let Some(secret) = secrets.secret.as_deref().filter(|s| !s.is_empty()) {
            headers.push((
                SIGNATURE_HEADER.to_string(),
                sign(secret.as_bytes(), timestamp, &body),
            ));
        }
        Ok(HttpRequest { url, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::sample;
    use crate::signature::verify;

    #[test]
    fn versioned_and_signed() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let secrets = Secrets {
            url: "http://127.0.0.1:9/hook".into(),
            secret: Some("s".into()),
        };
        let req = Webhook.request(&sample(), &secrets, now).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["apiVersion"], API_VERSION);
        assert_eq!(body["event"], "analysis-failed");
        assert_eq!(body["severity"], "error");
        assert_eq!(body["analysis"]["verdict"], "fail");
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header(TIMESTAMP_HEADER), "1700000000");
        assert_eq!(
            verify(
                b"s",
                "1700000000",
                &header(SIGNATURE_HEADER),
                &req.body,
                1_700_000_000
            ),
            Ok(1_700_000_000)
        );
    }
}
