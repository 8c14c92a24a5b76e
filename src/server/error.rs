//! Errors as JSON: `{"error": {"status": 404, "message": "..."}}`, credentials redacted.
//! A `5xx` answer says only what kind of failure it was and carries a request id
//! (`"request_id"` in the body, `X-Request-Id`); its detail goes to the log under that id,
//! so local paths and the origin's own error text never reach a client.

use crate::Error;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The header a `5xx` answer names its request id in.
pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An HTTP error answer.
#[derive(Debug)]
pub(super) struct ApiError {
    pub status: StatusCode,
    /// What the client is told.
    pub message: String,
    /// What only the log is told (redacted), for `5xx` answers.
    pub detail: Option<String>,
    /// Seconds for `Retry-After` (503 answers).
    pub retry_after: Option<u64>,
}

/// A new id for a failed request: unique within the process and unlikely to repeat across
/// restarts (a per-process random start, then a counter).
pub(super) fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    format!("{:016x}", start.wrapping_add(NEXT.fetch_add(1, Relaxed)))
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    /// A `5xx` answer: `message` to the client, `detail` to the log.
    pub fn server(status: StatusCode, message: &str, detail: String) -> Self {
        ApiError {
            detail: Some(detail),
            ..Self::new(status, message)
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
    /// refusing) is `503`, an origin object over its size limit `502` (naming the limit), a timeline whose writer has not finished (or a write another
    /// writer superseded) is `409`, an object deleted while being read or a frame a range lacks is `404`, anything
    /// else `500`. Messages are redacted; those of `5xx` answers go only to the log.
    pub fn from_core(err: &Error, redactor: &Redactor, retry_after: Duration) -> Self {
        let message = redactor.redact(&err.to_string());
        let status = match root(err) {
            e if e.is_invalid_input() => StatusCode::BAD_REQUEST,
            Error::Storage { .. } => {
                return ApiError {
                    retry_after: Some(retry_after.as_secs().max(1)),
                    ..Self::server(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "origin unavailable and not held locally",
                        format!("origin failed: {message}"),
                    )
                };
            }
            Error::Incomplete { .. } | Error::Superseded { .. } | Error::Contended { .. } => {
                StatusCode::CONFLICT
            }
            Error::Vanished { .. } | Error::NoFrame { .. } => StatusCode::NOT_FOUND,
            // The origin holds an object over a limit this server keeps: its key, size and
            // the limit are the client's to know (no path, no origin text).
            Error::ObjectTooLarge { .. } => {
                return Self::server(StatusCode::BAD_GATEWAY, &message, message.clone());
            }
            _ => return Self::server(StatusCode::INTERNAL_SERVER_ERROR, "internal error", message),
        };
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
        let mut response = if self.status.is_server_error() {
            server_error(self.status, &self.message, self.detail.as_deref())
        } else {
            json_error(self.status, &self.message)
        };
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

/// A `5xx` JSON answer with a fresh request id; `detail` is logged under that id.
pub(super) fn server_error(status: StatusCode, message: &str, detail: Option<&str>) -> Response {
    let id = request_id();
    let detail = detail.unwrap_or(message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(request_id = %id, "{}: {detail}", status.as_u16());
    } else {
        tracing::error!(request_id = %id, "{}: {detail}", status.as_u16());
    }
    let body = serde_json::json!({"error": {
        "status": status.as_u16(), "message": message, "request_id": id,
    }});
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
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
    let fresh = if status.is_server_error() {
        server_error(status, &message, None)
    } else {
        json_error(status, &message)
    };
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL, REQUEST_ID] {
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
        assert!(!e.message.contains("down"), "{}", e.message);
        assert!(e.detail.unwrap().contains("down"));
        let io = Error::io(
            "read",
            "/home/me/.cache/framecache/v1/ab/entry",
            std::io::Error::other("disk on fire"),
        );
        let e = ApiError::from_core(&io, &r, d);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "internal error");
        let shared = Error::Shared(std::sync::Arc::new(Error::Vanished { key: "k".into() }));
        assert_eq!(
            ApiError::from_core(&shared, &r, d).status,
            StatusCode::NOT_FOUND
        );
    }
}
