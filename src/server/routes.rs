//! The routes: timelines, frames, overlays, metrics, health and the viewer's two files.

use super::AppState;
use super::error::ApiError;
use super::versions::{self, VERSION_LEN};
use crate::layout;
use crate::tier::Source;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Every route, as matched (the `route` label of `/metrics`).
pub(super) const ROUTES: &[&str] = &[
    "/",
    "/viewer.js",
    "/healthz",
    "/metrics",
    "/v1/timelines",
    "/v1/timelines/{id}",
    "/v1/timelines/{id}/frames/{file}",
    "/v1/timelines/{id}/overlays",
    "/v1/timelines/{id}/overlays/{job}/{stage}",
    "/v1/timelines/{id}/overlays/{job}/{stage}/{seq}",
    "/v1/timelines/{id}/overlays/{job}/{stage}/{seq}/{file}",
];

/// `Cache-Control` of responses whose URL names their content version.
pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else that may be cached: store, but revalidate each use.
pub(super) const REVALIDATE: &str = "no-cache";
/// Overlays whose versions one stage listing reads at once.
const LISTING_READS: usize = 16;

const VIEWER_HTML: &str = include_str!("viewer.html");
const VIEWER_JS: &str = include_str!("viewer.js");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(ROUTES[0], get(viewer_page))
        .route(ROUTES[1], get(viewer_script))
        .route(ROUTES[2], get(healthz))
        .route(ROUTES[3], get(metrics))
        .route(ROUTES[4], get(timelines))
        .route(ROUTES[5], get(timeline))
        .route(ROUTES[6], get(frame))
        .route(ROUTES[7], get(overlay_stages))
        .route(ROUTES[8], get(stage_overlays))
        .route(ROUTES[9], get(frame_overlays))
        .route(ROUTES[10], get(overlay_png))
        .fallback(not_found)
}

type ApiResult = Result<Response, ApiError>;

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// `?v=<version>` on payload URLs.
#[derive(Debug, Deserialize)]
struct VersionQuery {
    v: Option<String>,
}

impl VersionQuery {
    fn checked(self) -> Result<Option<String>, ApiError> {
        match self.v {
            Some(v) if versions::version_from_blake3(&v) != Some(v.as_str()) => {
                Err(ApiError::bad_request(format!(
                    "invalid version {v:?}: must be {VERSION_LEN} lowercase hex digits"
                )))
            }
            v => Ok(v),
        }
    }
}

impl super::Shared {
    fn core_error(&self, err: &crate::Error) -> ApiError {
        ApiError::from_core(err, &self.redactor, self.retry_after)
    }

    fn validate(&self, what: &'static str, value: &str) -> Result<(), ApiError> {
        layout::validate_id(what, value).map_err(|e| self.core_error(&e))
    }

    /// Decides what to send for `key` when the client asked for version `wanted`.
    ///
    /// A copy held locally that differs from the version the client learned from the
    /// origin's listing may be stale (the timeline was rebuilt elsewhere): the origin is
    /// asked, and a newer copy replaces the local one. When the origin fails, the local
    /// copy is sent but not marked immutable.
    async fn resolve(
        &self,
        key: &str,
        bytes: Bytes,
        source: Source,
        wanted: Option<&str>,
    ) -> Result<Served, ApiError> {
        let version = self.versions.of(key, &bytes, source).await;
        let Some(wanted) = wanted else {
            return Ok(Served::new(bytes, version, false));
        };
        if *wanted == *version || source == Source::Origin {
            let immutable = *wanted == *version;
            return Ok(Served::new(bytes, version, immutable));
        }
        match self.cache.chain().origin().get(key).await {
            Ok(Some(fresh)) => {
                let fresh_version = versions::version_of(&fresh);
                if fresh_version != version {
                    tracing::debug!("{key}: local copy is stale, replaced by the origin's");
                    self.cache.chain().put_local(key, fresh.clone()).await;
                }
                let immutable = *wanted == *fresh_version;
                Ok(Served::new(fresh, fresh_version, immutable))
            }
            Ok(None) => Err(ApiError::not_found(format!("{key:?} no longer exists"))),
            Err(e) => {
                tracing::warn!(
                    "{key}: cannot check version {wanted} at the origin ({}); sending the local copy",
                    self.redactor.redact(&e.to_string())
                );
                Ok(Served::new(bytes, version, false))
            }
        }
    }
}

/// A payload and how to label it.
struct Served {
    bytes: Bytes,
    version: Arc<str>,
    immutable: bool,
}

impl Served {
    fn new(bytes: Bytes, version: Arc<str>, immutable: bool) -> Self {
        Served {
            bytes,
            version,
            immutable,
        }
    }

    /// `200` with the bytes, or `304` when `If-None-Match` names its ETag. axum sends the
    /// same headers without a body for `HEAD`.
    fn respond(self, request: &HeaderMap, content_type: &'static str) -> Response {
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

/// Whether `If-None-Match` lists `etag` or `*` (weak comparison, as RFC 9110 asks for
/// this header: `W/"x"` matches `"x"`).
fn none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// JSON with `no-cache` and an ETag of its own bytes, so a client can revalidate listings.
fn json_response(request: &HeaderMap, value: &impl Serialize) -> Response {
    let body = Bytes::from(serde_json::to_vec(value).expect("listings always serialize"));
    let version = versions::version_of(&body);
    Served::new(body, version, false).respond(request, "application/json")
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
fn segment(value: &str) -> String {
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

fn frame_url(timeline: &str, seq: u64, version: Option<&str>) -> String {
    with_version(
        format!("/v1/timelines/{}/frames/{seq}.jpg", segment(timeline)),
        version,
    )
}

fn stage_url(timeline: &str, job: &str, stage: &str) -> String {
    format!(
        "/v1/timelines/{}/overlays/{}/{}",
        segment(timeline),
        segment(job),
        segment(stage)
    )
}

fn overlay_url(
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

/// A canonical sequence number: `0`, or decimal digits without a leading zero.
fn parse_seq(text: &str) -> Result<u64, ApiError> {
    layout::parse_frame_name(&format!("{text}.jpg")).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid frame seq {text:?}: must be a decimal number without leading zeros"
        ))
    })
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn healthz() -> Response {
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

async fn viewer_page(headers: HeaderMap) -> Response {
    static_file(&headers, VIEWER_HTML, "text/html; charset=utf-8")
}

async fn viewer_script(headers: HeaderMap) -> Response {
    static_file(&headers, VIEWER_JS, "text/javascript; charset=utf-8")
}

async fn metrics(State(state): State<AppState>) -> Response {
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

async fn timelines(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let ids = state
        .cache
        .timelines()
        .await
        .map_err(|e| state.core_error(&e))?;
    Ok(json_response(
        &headers,
        &serde_json::json!({ "timelines": ids }),
    ))
}

#[derive(Serialize)]
struct FrameInfo {
    seq: u64,
    timestamp: f64,
    chunk_id: u64,
    perceptual_hash: String,
    size: u64,
    /// Content version (from the manifest's blake3), `null` for timelines without one.
    version: Option<String>,
    /// Versioned when the version is known, so browsers keep it for good.
    url: String,
    /// The local tier holding the frame now, if any.
    cached: Option<Source>,
}

#[derive(Serialize)]
struct StageInfo {
    job: String,
    stage: String,
    url: String,
}

async fn timeline(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(id) = path?;
    state.validate("timeline id", &id)?;
    let (frames, stages) = futures::join!(
        state.cache.list_frames(&id),
        state.cache.overlay_stages(&id)
    );
    let frames = frames.map_err(|e| state.core_error(&e))?;
    if frames.is_empty() {
        return Err(ApiError::not_found(format!(
            "timeline {id:?} has no frames"
        )));
    }
    let mut warnings = Vec::new();
    let stages = stages.unwrap_or_else(|e| {
        warnings.push(format!(
            "overlays not listed: {}",
            state.redactor.redact(&e.to_string())
        ));
        Vec::new()
    });
    let frames: Vec<FrameInfo> = frames
        .into_iter()
        .map(|entry| {
            let meta = entry.meta.as_ref();
            let version = meta
                .and_then(|m| versions::version_from_blake3(&m.blake3))
                .map(str::to_owned);
            FrameInfo {
                seq: entry.seq,
                timestamp: meta.map_or(0.0, |m| m.timestamp),
                chunk_id: meta.map_or(0, |m| m.chunk_id),
                perceptual_hash: meta.map(|m| m.perceptual_hash.clone()).unwrap_or_default(),
                size: meta.map_or(entry.size, |m| if m.size > 0 { m.size } else { entry.size }),
                url: frame_url(&id, entry.seq, version.as_deref()),
                version,
                cached: state
                    .cache
                    .chain()
                    .local_source(&entry.key, entry.version.as_ref()),
            }
        })
        .collect();
    let overlays: Vec<StageInfo> = stages
        .into_iter()
        .map(|(job, stage)| StageInfo {
            url: stage_url(&id, &job, &stage),
            job,
            stage,
        })
        .collect();
    Ok(json_response(
        &headers,
        &serde_json::json!({
            "timeline": id,
            "frames": frames,
            "overlays": overlays,
            "warnings": warnings,
        }),
    ))
}

async fn frame(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<VersionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path((id, file)) = path?;
    state.validate("timeline id", &id)?;
    let Some(digits) = file.strip_suffix(".jpg") else {
        return Err(ApiError::bad_request(format!(
            "invalid frame {file:?}: expected `{{seq}}.jpg`"
        )));
    };
    let seq = parse_seq(digits)?;
    let wanted = query?.0.checked()?;
    let key = layout::frame_key(&id, seq).map_err(|e| state.core_error(&e))?;
    let hit = state
        .cache
        .frame_jpeg(&id, seq)
        .await
        .map_err(|e| state.core_error(&e))?;
    let Some((bytes, source)) = hit else {
        return Err(ApiError::not_found(format!(
            "timeline {id:?} has no frame {seq}"
        )));
    };
    let served = state
        .resolve(&key, bytes, source, wanted.as_deref())
        .await?;
    Ok(served.respond(&headers, "image/jpeg"))
}

async fn overlay_stages(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(id) = path?;
    state.validate("timeline id", &id)?;
    let stages = state
        .cache
        .overlay_stages(&id)
        .await
        .map_err(|e| state.core_error(&e))?;
    let stages: Vec<StageInfo> = stages
        .into_iter()
        .map(|(job, stage)| StageInfo {
            url: stage_url(&id, &job, &stage),
            job,
            stage,
        })
        .collect();
    Ok(json_response(
        &headers,
        &serde_json::json!({ "timeline": id, "overlays": stages }),
    ))
}

#[derive(Serialize)]
struct OverlayInfo {
    name: String,
    size: usize,
    version: String,
    url: String,
}

#[derive(Serialize)]
struct FrameOverlays {
    seq: u64,
    overlays: Vec<OverlayInfo>,
}

/// Reads one overlay through the cache and describes it with its versioned URL.
async fn describe_overlay(
    state: &AppState,
    (id, job, stage): (&str, &str, &str),
    seq: u64,
    name: String,
) -> Result<Option<(u64, OverlayInfo)>, ApiError> {
    let key = layout::overlay_key(id, job, stage, seq, &name).map_err(|e| state.core_error(&e))?;
    let hit = state
        .cache
        .chain()
        .get_hit(&key)
        .await
        .map_err(|e| state.core_error(&e))?;
    let Some(hit) = hit else {
        return Ok(None); // deleted since the listing
    };
    let version = state.versions.of(&key, &hit.bytes, hit.source).await;
    Ok(Some((
        seq,
        OverlayInfo {
            url: overlay_url(id, job, stage, seq, &name, &version),
            size: hit.bytes.len(),
            version: version.to_string(),
            name,
        },
    )))
}

/// Every overlay of a stage, grouped by frame, each with its versioned URL. The versions
/// come from the bytes, so listing a stage reads its overlays through the cache once.
async fn stage_overlays(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path((id, job, stage)) = path?;
    state.validate("timeline id", &id)?;
    state.validate("job id", &job)?;
    state.validate("stage", &stage)?;
    let refs = state
        .cache
        .list_overlays(&id, &job, &stage)
        .await
        .map_err(|e| state.core_error(&e))?;
    let described: Vec<Option<(u64, OverlayInfo)>> = stream::iter(refs)
        .map(|r| describe_overlay(&state, (&id, &job, &stage), r.seq, r.name))
        .buffered(LISTING_READS)
        .try_collect()
        .await?;
    let mut frames: Vec<FrameOverlays> = Vec::new();
    for (seq, info) in described.into_iter().flatten() {
        match frames.last_mut() {
            Some(last) if last.seq == seq => last.overlays.push(info),
            _ => frames.push(FrameOverlays {
                seq,
                overlays: vec![info],
            }),
        }
    }
    Ok(json_response(
        &headers,
        &serde_json::json!({ "timeline": id, "job": job, "stage": stage, "frames": frames }),
    ))
}

/// The overlays of one frame of a stage (an empty list when it has none).
async fn frame_overlays(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path((id, job, stage, seq)) = path?;
    state.validate("timeline id", &id)?;
    state.validate("job id", &job)?;
    state.validate("stage", &stage)?;
    let seq = parse_seq(&seq)?;
    let loaded = state
        .cache
        .load_overlays(&id, &job, &stage, seq)
        .await
        .map_err(|e| state.core_error(&e))?
        .unwrap_or_default();
    let mut overlays = Vec::with_capacity(loaded.len());
    for (name, bytes) in loaded {
        let version = versions::version_of(&bytes);
        overlays.push(OverlayInfo {
            url: overlay_url(&id, &job, &stage, seq, &name, &version),
            size: bytes.len(),
            version: version.to_string(),
            name,
        });
    }
    Ok(json_response(
        &headers,
        &serde_json::json!({
            "timeline": id, "job": job, "stage": stage, "seq": seq, "overlays": overlays,
        }),
    ))
}

/// `/v1/timelines/{id}/overlays/{job}/{stage}/{seq}/{file}`.
#[derive(Deserialize)]
struct OverlayFile {
    id: String,
    job: String,
    stage: String,
    seq: String,
    file: String,
}

async fn overlay_png(
    State(state): State<AppState>,
    path: Result<Path<OverlayFile>, PathRejection>,
    query: Result<Query<VersionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(OverlayFile {
        id,
        job,
        stage,
        seq,
        file,
    }) = path?;
    state.validate("timeline id", &id)?;
    state.validate("job id", &job)?;
    state.validate("stage", &stage)?;
    let seq = parse_seq(&seq)?;
    let Some(name) = file.strip_suffix(".png") else {
        return Err(ApiError::bad_request(format!(
            "invalid overlay {file:?}: expected `{{name}}.png`"
        )));
    };
    state.validate("overlay name", name)?;
    let wanted = query?.0.checked()?;
    let key =
        layout::overlay_key(&id, &job, &stage, seq, name).map_err(|e| state.core_error(&e))?;
    let hit = state
        .cache
        .chain()
        .get_hit(&key)
        .await
        .map_err(|e| state.core_error(&e))?;
    let Some(hit) = hit else {
        return Err(ApiError::not_found(format!(
            "timeline {id:?} has no overlay {name:?} for frame {seq} in {job}/{stage}"
        )));
    };
    let served = state
        .resolve(&key, hit.bytes, hit.source, wanted.as_deref())
        .await?;
    Ok(served.respond(&headers, "image/png"))
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

    #[test]
    fn seqs_must_be_canonical() {
        assert_eq!(parse_seq("0").unwrap(), 0);
        assert_eq!(parse_seq("17").unwrap(), 17);
        for bad in ["01", "-1", "x", "", "1.5", "99999999999999999999999"] {
            let err = parse_seq(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(&format!("{bad:?}")), "{}", err.message);
        }
    }
}
