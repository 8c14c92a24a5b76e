//! The viewer's page and script, health and metrics.

use super::super::AppState;
use super::super::versions;
use super::respond::Served;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

const VIEWER_HTML: &str = include_str!("viewer.html");

const VIEWER_JS: &str = include_str!("viewer.js");

pub(super) async fn healthz() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

fn static_file(request: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let bytes = Bytes::from_static(body.as_bytes());
    let version = versions::version_of(&bytes);
    let mut response = Served::new(bytes, version, false).respond(request, content_type);
    // The page loads only itself: no CDN, no inline script, images from this server.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' blob:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'",
        ),
    );
    response
}

pub(super) async fn viewer_page(headers: HeaderMap) -> Response {
    static_file(&headers, VIEWER_HTML, "text/html; charset=utf-8")
}

pub(super) async fn viewer_script(headers: HeaderMap) -> Response {
    static_file(&headers, VIEWER_JS, "text/javascript; charset=utf-8")
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let memory = state.cache.chain().memory().map(|m| m.weighted_size());
    let text = state.metrics.render(&state.cache.stats(), memory);
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}
