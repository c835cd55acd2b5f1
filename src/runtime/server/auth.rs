//! Who may call the `/v1` API.
//!
//! - **Bearer token** (`vigil run --api-token-file PATH`, or `VIGIL_API_TOKEN`):
//!   `Authorization: Bearer <token>`. Alertmanager sends it with
//!   `http_config: {authorization: {credentials_file: ...}}`.
//! - **HMAC signature** (`vigil run --api-hmac-secret-file PATH`): `X-Vigil-Timestamp` and
//!   `X-Vigil-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, within 5
//!   minutes of the server's clock and never twice (see [`crate::signature`]).
//!
//! A request passes when it presents at least one credential and every credential it
//! presents is valid; otherwise 401. With neither a token nor a secret configured the API
//! answers 503, unless `--api-insecure-no-auth` opens it to anyone who can reach the port.

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
        })
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
            return Ok(());
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the API has no credentials configured, so it accepts no request",
            "start vigil run with --api-token-file (or VIGIL_API_TOKEN) and/or --api-hmac-secret-file; --api-insecure-no-auth opens it to anyone",
        ));
    }
    let mut presented = false;
    if let Some(value) = header_text(headers, header::AUTHORIZATION.as_str()) {
        presented = true;
        let Some(expected) = &auth.token else {
            return Err(unauthorized(
                "bearer tokens are not accepted here: no token is configured",
            ));
        };
        let given = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes())
            .is_err()
        {
            return Err(unauthorized("wrong bearer token"));
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
