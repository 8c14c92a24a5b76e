//! A timeline's overlay stages, a stage's overlays per frame, one frame's, and one PNG.

use super::super::AppState;
use super::super::error::ApiError;
use super::super::versions;
use super::params::{StagePath, TimelineId};
use super::respond::{json_response, overlay_url};
use super::timelines::StageInfo;
use super::{ApiResult, VersionQuery, parse_seq};
use crate::Hit;
use crate::layout;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

/// Overlays whose versions one stage listing reads at once.
const LISTING_READS: usize = 16;
/// Overlays per page of a stage when `limit` is not given, and the most: each is read
/// through the cache for its version.
const STAGE_PAGE: usize = 1000;

/// `?after=&limit=` on a stage's overlays: one page of them.
#[derive(Debug, Deserialize)]
pub(super) struct StageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn overlay_stages(
    State(state): State<AppState>,
    TimelineId(id): TimelineId,
    headers: HeaderMap,
) -> ApiResult {
    let stages = state
        .cache
        .overlay_stages(&id)
        .await
        .map_err(|e| state.core_error(&e))?;
    let stages = StageInfo::all(&id, stages);
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

/// One overlay's key, and its bytes read through the cache (`None` when there are none).
async fn read_overlay(
    state: &AppState,
    (id, job, stage): (&str, &str, &str),
    seq: u64,
    name: &str,
) -> Result<(String, Option<Hit>), ApiError> {
    let key = layout::overlay_key(id, job, stage, seq, name).map_err(|e| state.core_error(&e))?;
    let hit = state
        .cache
        .chain()
        .get_hit(&key)
        .await
        .map_err(|e| state.core_error(&e))?;
    Ok((key, hit))
}

/// Reads one overlay through the cache and describes it with its versioned URL.
async fn describe_overlay(
    state: &AppState,
    (id, job, stage): (&str, &str, &str),
    seq: u64,
    name: String,
) -> Result<Option<(u64, OverlayInfo)>, ApiError> {
    let (key, hit) = read_overlay(state, (id, job, stage), seq, &name).await?;
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

/// One page of a stage's overlays, grouped by frame, each with its versioned URL, and the
/// cursor of the next page (`next`, `null` on the last). The versions come from the bytes,
/// so listing a page reads its overlays through the cache once.
pub(super) async fn stage_overlays(
    State(state): State<AppState>,
    path: StagePath,
    query: Result<Query<StageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Query(page) = query?;
    let limit = page.limit.unwrap_or(STAGE_PAGE);
    if !(1..=STAGE_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "invalid limit {limit}: must be within 1..={STAGE_PAGE}"
        )));
    }
    if let Some(after) = &page.after
        && (after.is_empty() || after.contains('/') || after.len() > 1024)
    {
        return Err(ApiError::bad_request(
            "invalid `after`: the `next` of the page before",
        ));
    }
    let found = state
        .cache
        .list_overlays_page(
            &path.id,
            &path.job,
            &path.stage,
            page.after.as_deref(),
            limit,
        )
        .await
        .map_err(|e| state.core_error(&e))?;
    let described: Vec<Option<(u64, OverlayInfo)>> = stream::iter(found.overlays)
        .map(|r| describe_overlay(&state, path.ids(), r.seq, r.name))
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
    let StagePath { id, job, stage } = path;
    Ok(json_response(
        &headers,
        &serde_json::json!({
            "timeline": id, "job": job, "stage": stage, "frames": frames, "next": found.next,
        }),
    ))
}

/// `{seq}` of a frame's overlays, as sent.
#[derive(Deserialize)]
pub(super) struct SeqParam {
    seq: String,
}

/// The overlays of one frame of a stage (an empty list when it has none).
pub(super) async fn frame_overlays(
    State(state): State<AppState>,
    StagePath { id, job, stage }: StagePath,
    seq: Result<Path<SeqParam>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let seq = parse_seq(&seq?.0.seq)?;
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

/// `{seq}/{file}` of `/v1/timelines/{id}/overlays/{job}/{stage}/{seq}/{file}`, as sent.
#[derive(Deserialize)]
pub(super) struct OverlayFile {
    seq: String,
    file: String,
}

pub(super) async fn overlay_png(
    State(state): State<AppState>,
    StagePath { id, job, stage }: StagePath,
    file: Result<Path<OverlayFile>, PathRejection>,
    query: Result<Query<VersionQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(OverlayFile { seq, file }) = file?;
    let seq = parse_seq(&seq)?;
    let Some(name) = file.strip_suffix(".png") else {
        return Err(ApiError::bad_request(format!(
            "invalid overlay {file:?}: expected `{{name}}.png`"
        )));
    };
    state.validate("overlay name", name)?;
    let wanted = query?.0.checked()?;
    // Revalidated (one stat), unlike the stage listing: a wrong `v` is then a stale URL,
    // never a stale local copy.
    let key =
        layout::overlay_key(&id, &job, &stage, seq, name).map_err(|e| state.core_error(&e))?;
    let hit = state
        .current(&key)
        .await
        .map_err(|e| state.core_error(&e))?;
    let Some(hit) = hit else {
        return Err(ApiError::not_found(format!(
            "timeline {id:?} has no overlay {name:?} for frame {seq} in {job}/{stage}"
        )));
    };
    let url_of = |v: &str| overlay_url(&id, &job, &stage, seq, name, v);
    match state
        .resolve(&key, hit.bytes, hit.source, wanted.as_deref(), url_of)
        .await
    {
        Ok(served) => Ok(served.respond(&headers, "image/png")),
        Err(moved) => Ok(moved),
    }
}
