//! What every response carries: an ETag of its bytes, `Cache-Control` (immutable when the
//! URL names the version), `304` for a matching `If-None-Match`; and the URLs handed out.

use super::super::versions;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;

/// `Cache-Control` of responses whose URL names their content version.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `Cache-Control` of everything else that may be cached: store, but revalidate each use.
const REVALIDATE: &str = "no-cache";

/// A payload and how to label it.
pub(in crate::server) struct Served {
    bytes: Bytes,
    version: Arc<str>,
    immutable: bool,
}

impl Served {
    pub(in crate::server) fn new(bytes: Bytes, version: Arc<str>, immutable: bool) -> Self {
        Served {
            bytes,
            version,
            immutable,
        }
    }

    /// `200` with the bytes, or `304` when `If-None-Match` names its ETag. axum sends the
    /// same headers without a body for `HEAD`.
    pub(in crate::server) fn respond(
        self,
        request: &HeaderMap,
        content_type: &'static str,
    ) -> Response {
        let etag = format!("\"{}\"", self.version);
        let cache_control = if self.immutable {
            IMMUTABLE
        } else {
            REVALIDATE
        };
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("a hex ETag is a valid header value"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        if none_match(request, &etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.bytes.len()));
        (headers, Body::from(self.bytes)).into_response()
    }
}

/// `307` to `location`, the URL of the version the server has now. Not cached: the
/// current version changes when the timeline is rebuilt.
pub(super) fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::TEMPORARY_REDIRECT,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        // Segments are percent-encoded, so this cannot happen; never a panic for it.
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether `If-None-Match` lists `etag` or `*` (weak comparison, as RFC 9110 asks for
/// this header: `W/"x"` matches `"x"`).
pub(super) fn none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// JSON with `no-cache` and an ETag of its own bytes, so a client can revalidate listings.
pub(super) fn json_response(request: &HeaderMap, value: &impl Serialize) -> Response {
    let body = Bytes::from(serde_json::to_vec(value).expect("listings always serialize"));
    let version = versions::version_of(&body);
    Served::new(body, version, false).respond(request, "application/json")
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
pub(super) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_version(url: String, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{url}?v={v}"),
        None => url,
    }
}

pub(super) fn frame_url(timeline: &str, seq: u64, version: Option<&str>) -> String {
    with_version(
        format!("/v1/timelines/{}/frames/{seq}.jpg", segment(timeline)),
        version,
    )
}

pub(super) fn stage_url(timeline: &str, job: &str, stage: &str) -> String {
    format!(
        "/v1/timelines/{}/overlays/{}/{}",
        segment(timeline),
        segment(job),
        segment(stage)
    )
}

pub(super) fn overlay_url(
    timeline: &str,
    job: &str,
    stage: &str,
    seq: u64,
    name: &str,
    version: &str,
) -> String {
    format!(
        "{}/{seq}/{}.png?v={version}",
        stage_url(timeline, job, stage),
        segment(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("tl-1_a.b~"), "tl-1_a.b~");
        assert_eq!(segment("a b?#%"), "a%20b%3F%23%25");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&h, "\"a\""));
        assert!(none_match(&h, "\"b\""));
        assert!(!none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, "\"c\""));
        assert!(!none_match(&HeaderMap::new(), "\"a\""));
    }
}
