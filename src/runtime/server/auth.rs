//! Who may call the `/v1` API.
//!
//! - **Bearer token** (`vigil run --api-token-file PATH`, or `VIGIL_API_TOKEN`):
//!   `Authorization: Bearer <token>`. Alertmanager sends it with
//!   `http_config: {authorization: {credentials_file: ...}}`.
//! - **HMAC signature** (`vigil run --api-hmac-secret-file PATH`): `X-Vigil-Timestamp` and
//!   `X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, within 5
//!   minutes of the server's clock and never twice (see [`crate::signature`]).
//!
//! - **Read-only token** (`vigil run --api-read-token-file PATH`): lets a viewer read the
//!   dashboard; every `/v1` request made with it gets 403.
//! - **The dashboard's cookie** ([`COOKIE`]): a token entered once in the dashboard's sign-in
//!   form, kept by the browser (HttpOnly, SameSite=Strict) and read like a bearer token when
//!   the request has no `Authorization` header.
//!
//! A request passes when it presents at least one credential and every credential it
//! presents is valid; otherwise 401. With neither a token nor a secret configured the API
//! answers 503, unless `--api-insecure-no-auth` opens it to anyone who can reach the port.
//! A browser's request from another origin (an `Origin` header that is not this host) gets
//! 403 when only a cookie or the open API would let it in: another site cannot act for a
//! viewer.

use super::{ApiError, ApiState};
use crate::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use axum::http::{HeaderMap, StatusCode, header};
use std::path::Path;

/// The configured credentials. `Debug` does not print them.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// The bearer token callers must send.
    pub token: Option<String>,
    /// The shared secret of HMAC signatures.
    pub hmac_secret: Option<Vec<u8>>,
    /// Without a token or a secret, let every request in (tests, or a port that only
    /// trusted callers can reach). Off by default: the API then answers 503.
    pub insecure_no_auth: bool,
    /// A token that may read the dashboard but not act: `/v1` answers it 403.
    pub read_token: Option<String>,
}

/// The cookie that keeps the dashboard's token.
pub const COOKIE: &str = "vigil_token";

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// See the dashboard.
    Read,
    /// See the dashboard and act: the `/v1` API.
    Write,
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Whether a browser's `Origin` (if it sent one) is this server's own `Host`.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().unwrap_or("");
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((bare, host), (Some(o), Some(h)) if o == h)
}

fn cross_site() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "a request from another site (its Origin is not this host) with no credential of its own",
        "send Authorization: Bearer <token>; the dashboard's buttons work from its own pages",
    )
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field(
                "read_token",
                &self.read_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn read_secret(path: &Path, flag: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "{flag} {}: the file is empty: write the secret into it (e.g. from a Kubernetes Secret)",
            path.display()
        ));
    }
    Ok(trimmed.to_string())
}

impl AuthConfig {
    /// Reads the token (from `token_file`, else `token`) and the HMAC secret from their
    /// files; surrounding whitespace (a trailing newline) is not part of them.
    pub fn load(
        token_file: Option<&Path>,
        token: Option<&str>,
        hmac_secret_file: Option<&Path>,
        insecure_no_auth: bool,
    ) -> Result<Self, String> {
        let token = match (token_file, token.map(str::trim).filter(|t| !t.is_empty())) {
            (Some(path), _) => Some(read_secret(path, "--api-token-file")?),
            (None, Some(t)) => Some(t.to_string()),
            (None, None) => None,
        };
        let hmac_secret = hmac_secret_file
            .map(|path| read_secret(path, "--api-hmac-secret-file").map(String::into_bytes))
            .transpose()?;
        Ok(AuthConfig {
            token,
            hmac_secret,
            insecure_no_auth,
            read_token: None,
        })
    }

    /// Adds the read-only token from `path` (`--api-read-token-file`).
    pub fn with_read_token_file(mut self, path: Option<&Path>) -> Result<Self, String> {
        self.read_token = path
            .map(|p| read_secret(p, "--api-read-token-file"))
            .transpose()?;
        if self.read_token.is_some() && self.read_token == self.token {
            return Err(
                "--api-read-token-file holds the same token as --api-token-file: give viewers a token of their own"
                    .into(),
            );
        }
        Ok(self)
    }

    /// What `token` may do: write with the API token, read with the read-only one.
    pub fn access_of(&self, token: &str) -> Option<Access> {
        if self.token.as_deref().is_some_and(|t| equal(token, t)) {
            Some(Access::Write)
        } else if self.read_token.as_deref().is_some_and(|t| equal(token, t)) {
            Some(Access::Read)
        } else {
            None
        }
    }

    /// Whether a token or a secret is configured.
    pub fn configured(&self) -> bool {
        self.token.is_some() || self.hmac_secret.is_some()
    }
}

fn unauthorized(error: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        error,
        "send Authorization: Bearer <token>, or sign the body (X-Vigil-Timestamp, X-Vigil-Signature: sha256=...)",
    )
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// Checks the request's credentials against the configuration, at `now` (Unix seconds).
pub(crate) fn check(
    api: &ApiState,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), ApiError> {
    let auth = &api.auth;
    if !auth.configured() {
        if auth.insecure_no_auth {
            return if same_origin(headers) {
                Ok(())
            } else {
                Err(cross_site())
            };
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the API has no credentials configured, so it accepts no request",
            "start vigil run with --api-token-file (or VIGIL_API_TOKEN) and/or --api-hmac-secret-file; --api-insecure-no-auth opens it to anyone",
        ));
    }
    let mut presented = false;
    let bearer = match header_text(headers, header::AUTHORIZATION.as_str()) {
        Some(value) => Some(
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?,
        ),
        // The dashboard's cookie, from its own pages only.
        None => match cookie(headers, COOKIE) {
            Some(_) if !same_origin(headers) => return Err(cross_site()),
            found => found,
        },
    };
    if let Some(given) = bearer {
        presented = true;
        if auth.token.is_none() && auth.read_token.is_none() {
            return Err(unauthorized(
                "bearer tokens are not accepted here: no token is configured",
            ));
        }
        match auth.access_of(given) {
            Some(Access::Write) => {}
            Some(Access::Read) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this token may read the dashboard only",
                    "use the API token (--api-token-file) to act on Releases",
                ));
            }
            None => return Err(unauthorized("wrong bearer token")),
        }
    }
    if let Some(sig) = header_text(headers, SIGNATURE_HEADER) {
        presented = true;
        let Some(secret) = &auth.hmac_secret else {
            return Err(unauthorized(
                "signatures are not accepted here: no HMAC secret is configured",
            ));
        };
        let timestamp = header_text(headers, TIMESTAMP_HEADER)
            .ok_or_else(|| unauthorized(format!("{SIGNATURE_HEADER} needs {TIMESTAMP_HEADER}")))?;
        let at = signature::verify(secret, timestamp, sig, body, now)
            .map_err(|e| unauthorized(e.to_string()))?;
        if !api.replays.first_use(sig.trim(), at, now) {
            return Err(unauthorized(
                "this signature was already used (a replay): sign every request afresh",
            ));
        }
    }
    if presented {
        Ok(())
    } else {
        Err(unauthorized("no credentials"))
    }
}
