//! The viewer's and the dashboard's pages and scripts, health, metrics and `/v1/stats`.

use super::super::AppState;
use super::super::dashboard::PLOTS_JS;
use super::super::error::ApiError;
use super::super::versions;
use super::ApiResult;
use super::respond::{Served, json_response};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

const VIEWER_HTML: &str = include_str!("viewer.html");

const VIEWER_JS: &str = include_str!("viewer.js");

const STATS_HTML: &str = include_str!("stats.html");

/// The pages' modules under `/ui/`, each `(name, source)`; nothing else is served there
/// but `plots.js`, which the dashboard's table makes ([`PLOTS_JS`]).
const UI_FILES: &[(&str, &str)] = &[
    ("fetcher.js", include_str!("ui/fetcher.js")),
    ("filmstrip.js", include_str!("ui/filmstrip.js")),
    ("pages.js", include_str!("ui/pages.js")),
    ("panes.js", include_str!("ui/panes.js")),
    ("link.js", include_str!("ui/link.js")),
    ("stats.js", include_str!("ui/stats.js")),
];

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

pub(super) async fn stats_page(headers: HeaderMap) -> Response {
    static_file(&headers, STATS_HTML, "text/html; charset=utf-8")
}

pub(super) async fn ui_file(
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(name) = path?;
    let source = match UI_FILES.iter().find(|(n, _)| *n == name) {
        Some(&(_, source)) => source,
        None if name == "plots.js" => PLOTS_JS.as_str(),
        None => return Err(ApiError::not_found(format!("no viewer file {name:?}"))),
    };
    Ok(static_file(
        &headers,
        source,
        "text/javascript; charset=utf-8",
    ))
}

/// Every counter of the cache and the server, and each tier's usage against its capacity:
/// what the dashboard at `/stats` polls and plots.
pub(super) async fn stats_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = json_response(
        &headers,
        &serde_json::json!({
            "cache": state.cache.stats(),
            "usage": state.cache.usage(),
            "http": state.metrics.totals(),
        }),
    );
    // Counters change with every request: never stored.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
