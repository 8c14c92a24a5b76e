//! `/v1/timelines`, one timeline's frames and overlay stages, and one frame's JPEG or thumbnail.

use super::super::AppState;
use super::super::error::ApiError;
use super::super::versions;
use super::params::TimelineId;
use super::respond::{Served, frame_url, json_response, stage_url};
use super::{ApiResult, VersionQuery, parse_seq};
use crate::Scale;
use crate::Source;
use crate::layout;
use crate::{FramePage, PageStart};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

/// `?after=&limit=` on `/v1/timelines`: one page of ids.
#[derive(Debug, serde::Deserialize)]
pub(super) struct TimelinesQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn timelines(
    State(state): State<AppState>,
    query: Result<Query<TimelinesQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Query(page) = query?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "invalid limit {limit}: must be within 1..={MAX_PAGE}"
        )));
    }
    if let Some(after) = &page.after
        && (after.is_empty() || after.contains('/') || after.len() > 1024)
    {
        return Err(ApiError::bad_request(
            "invalid `after`: the last id of the page before",
        ));
    }
    let found = state
        .cache
        .timelines_page(page.after.as_deref(), limit)
        .await
        .map_err(|e| state.core_error(&e))?;
    Ok(json_response(
        &headers,
        &serde_json::json!({ "timelines": found.timelines, "next": found.next }),
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
pub(super) struct StageInfo {
    job: String,
    stage: String,
    url: String,
}

impl StageInfo {
    /// Each `(job, stage)` of a timeline with the URL of its overlays.
    pub(super) fn all(timeline: &str, stages: Vec<(String, String)>) -> Vec<StageInfo> {
        stages
            .into_iter()
            .map(|(job, stage)| StageInfo {
                url: stage_url(timeline, &job, &stage),
                job,
                stage,
            })
            .collect()
    }
}

/// `?from=&limit=` (or `?offset=&limit=`) on a timeline's index: one page of it.
#[derive(Debug, serde::Deserialize)]
pub(super) struct PageQuery {
    from: Option<u64>,
    /// The page's first frame by position in seq order, for viewers that scrub by position.
    offset: Option<usize>,
    limit: Option<usize>,
}

/// Frames per page when `from` comes without `limit`.
const DEFAULT_PAGE: usize = 1000;
/// The largest page.
const MAX_PAGE: usize = 10_000;

pub(super) async fn timeline(
    State(state): State<AppState>,
    TimelineId(id): TimelineId,
    query: Result<Query<PageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Query(page) = query?;
    let paged = page.from.is_some() || page.offset.is_some() || page.limit.is_some();
    if page.from.is_some() && page.offset.is_some() {
        return Err(ApiError::bad_request(
            "a page starts at `from` (a seq) or at `offset` (a position), not both",
        ));
    }
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "invalid limit {limit}: must be within 1..={MAX_PAGE}"
        )));
    }
    let listing = async {
        if paged {
            let start = match page.offset {
                Some(offset) => PageStart::Position(offset),
                None => PageStart::Seq(page.from.unwrap_or(0)),
            };
            state.cache.list_frames_page(&id, start, limit).await
        } else {
            let frames = state.cache.list_frames(&id).await?;
            Ok(FramePage {
                total: frames.len(),
                offset: 0,
                frames,
                next: None,
            })
        }
    };
    let (frames, stages) = futures::join!(listing, state.cache.overlay_stages(&id));
    let page_found = frames.map_err(|e| state.core_error(&e))?;
    if page_found.total == 0 {
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
    let frames: Vec<FrameInfo> = page_found
        .frames
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
                // A page read from the manifest carries no object versions: `cached` then
                // says only what an unversioned backend's local tiers hold.
                cached: state
                    .cache
                    .chain()
                    .local_source(&entry.key, entry.version.as_ref()),
            }
        })
        .collect();
    let overlays = StageInfo::all(&id, stages);
    let mut body = serde_json::json!({
        "timeline": id,
        "frames": frames,
        "overlays": overlays,
        "warnings": warnings,
    });
    if paged {
        body["total"] = page_found.total.into();
        body["offset"] = page_found.offset.into();
        body["next"] = page_found.next.into();
    }
    Ok(json_response(&headers, &body))
}

/// `?v=<version>&scale=2|4|8` on frame URLs.
#[derive(Debug, Deserialize)]
pub(super) struct FrameQuery {
    v: Option<String>,
    scale: Option<String>,
}

impl FrameQuery {
    /// The version asked for and the thumbnail scale, if any.
    fn checked(self) -> Result<(Option<String>, Option<Scale>), ApiError> {
        let scale = match self.scale.as_deref() {
            None => None,
            Some(text) => Some(
                match text {
                    "2" | "4" | "8" => text.parse().ok().and_then(Scale::from_denominator),
                    _ => None,
                }
                .ok_or_else(|| {
                    ApiError::bad_request(format!("invalid scale {text:?}: must be 2, 4 or 8"))
                })?,
            ),
        };
        let v = VersionQuery { v: self.v }.checked()?;
        Ok((v, scale))
    }
}

/// `{file}` of `/v1/timelines/{id}/frames/{file}`, as sent.
#[derive(Deserialize)]
pub(super) struct FrameFile {
    file: String,
}

pub(super) async fn frame(
    State(state): State<AppState>,
    TimelineId(id): TimelineId,
    file: Result<Path<FrameFile>, PathRejection>,
    query: Result<Query<FrameQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(FrameFile { file }) = file?;
    let Some(digits) = file.strip_suffix(".jpg") else {
        return Err(ApiError::bad_request(format!(
            "invalid frame {file:?}: expected `{{seq}}.jpg`"
        )));
    };
    let seq = parse_seq(digits)?;
    let (wanted, scale) = query?.0.checked()?;
    if let Some(scale) = scale {
        return thumbnail(&state, &id, seq, scale, wanted.as_deref(), &headers).await;
    }
    let key = layout::frame_key(&id, seq).map_err(|e| state.core_error(&e))?;
    if let Some(served) = state.held(&key, wanted.as_deref()) {
        return Ok(served.respond(&headers, "image/jpeg"));
    }
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
    let url_of = |v: &str| frame_url(&id, seq, Some(v));
    match state
        .resolve(&key, bytes, source, wanted.as_deref(), url_of)
        .await
    {
        Ok(served) => Ok(served.respond(&headers, "image/jpeg")),
        Err(moved) => Ok(moved),
    }
}

/// A frame's thumbnail. Its URL carries the frame's own version (`?v=`): a thumbnail is a
/// function of the frame's bytes and the scale, so it is immutable exactly when the frame
/// is. Its ETag is the version of the thumbnail's own bytes.
async fn thumbnail(
    state: &AppState,
    id: &str,
    seq: u64,
    scale: Scale,
    wanted: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult {
    state.metrics.thumbnail_requested(scale);
    let made = state
        .cache
        .frame_thumbnail(id, seq, scale)
        .await
        .map_err(|e| state.core_error(&e))?;
    let Some(thumb) = made else {
        return Err(ApiError::not_found(format!(
            "timeline {id:?} has no frame {seq}"
        )));
    };
    let frame_version = thumb.frame_blake3.to_hex();
    let immutable =
        wanted.is_some_and(|w| versions::version_from_blake3(&frame_version) == Some(w));
    let version = versions::version_of(&thumb.jpeg);
    Ok(Served::new(thumb.jpeg, version, immutable).respond(headers, "image/jpeg"))
}
