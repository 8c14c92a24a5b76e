//! Errors as JSON: `{"error": {"status": 404, "message": "..."}}`, credentials redacted.

use crate::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// An HTTP error answer.
#[derive(Debug)]
pub(super) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for `Retry-After` (503 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// `503` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError {
            retry_after: Some(retry_after.as_secs().max(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// Maps a library error: bad input is `400`, an origin that fails (down, timing out,
    /// refusing) is `503`, a timeline whose writer has not finished (or a write another writer superseded) is `409`, an object
    /// deleted while being read or a frame a range lacks is `404`, anything else `500`. Messages are redacted.
    pub fn from_core(err: &Error, redactor: &Redactor, retry_after: Duration) -> Self {
        let message = redactor.redact(&err.to_string());
        let status = match root(err) {
            e if e.is_invalid_input() => StatusCode::BAD_REQUEST,
            Error::Storage { .. } => {
                tracing::warn!("origin failed: {message}");
                return Self::unavailable(
                    format!("origin unavailable and not held locally: {message}"),
                    retry_after,
                );
            }
            Error::Incomplete { .. } | Error::Superseded { .. } | Error::Contended { .. } => {
                StatusCode::CONFLICT
            }
            Error::Vanished { .. } | Error::NoFrame { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("{message}");
        }
        Self::new(status, message)
    }
}

fn root(err: &Error) -> &Error {
    match err {
        Error::Shared(inner) => root(inner),
        other => other,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_error(self.status, &self.message);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON error body with `Cache-Control: no-store`.
pub(super) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"status": status.as_u16(), "message": message}});
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Gives error answers made outside the handlers (axum's `405`, a caught panic's `500`, an
/// extractor's rejection) the same JSON shape as the rest; their headers (`Allow`) stay.
pub(super) fn json_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let fresh = json_error(status, &message);
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = fresh.headers().get(&name) {
            parts.headers.insert(name, value.clone());
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, fresh.into_body())
}

/// Removes credentials (the server's token and the S3 keys of the environment) from text.
#[derive(Debug, Default)]
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn from_env(token: Option<&str>) -> Self {
        let mut secrets: Vec<String> = [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SESSION_TOKEN",
            super::TOKEN_ENV,
        ]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .chain(token.map(str::to_owned))
        .filter(|s| s.len() >= 4)
        .collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_replaces_the_token_and_keeps_the_rest() {
        let r = Redactor::from_env(Some("s3cret-token"));
        assert_eq!(
            r.redact("bad s3cret-token here"),
            "bad <redacted> here".to_owned()
        );
        assert_eq!(r.redact("nothing"), "nothing");
    }

    #[test]
    fn library_errors_map_to_statuses() {
        let r = Redactor::default();
        let d = Duration::from_secs(3);
        let invalid = crate::layout::validate_id("timeline id", "..").unwrap_err();
        assert_eq!(
            ApiError::from_core(&invalid, &r, d).status,
            StatusCode::BAD_REQUEST
        );
        let storage = Error::Storage {
            op: "read",
            key: "k".into(),
            source: Box::new(opendal::Error::new(opendal::ErrorKind::Unexpected, "down")),
        };
        let e = ApiError::from_core(&storage, &r, d);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(3));
        let shared = Error::Shared(std::sync::Arc::new(Error::Vanished { key: "k".into() }));
        assert_eq!(
            ApiError::from_core(&shared, &r, d).status,
            StatusCode::NOT_FOUND
        );
    }
}
