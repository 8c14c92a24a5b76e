//! The path parameters the timeline routes start with, extracted and checked once: a
//! handler that takes a [`TimelineId`] or a [`StagePath`] holds ids that `layout` accepts,
//! or was never called (the client got a 400 naming the value).

use super::super::AppState;
use super::super::error::ApiError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::Deserialize;

/// `{id}` of `/v1/timelines/{id}/...`: a valid timeline id.
pub(super) struct TimelineId(pub String);

#[derive(Deserialize)]
struct IdParam {
    id: String,
}

impl FromRequestParts<AppState> for TimelineId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(IdParam { id }) = Path::from_request_parts(parts, state).await?;
        state.validate("timeline id", &id)?;
        Ok(TimelineId(id))
    }
}

/// `{id}/overlays/{job}/{stage}`: one stage of a job's overlays on a timeline, every id
/// valid (checked in that order, so the first bad one is named).
#[derive(Deserialize)]
pub(super) struct StagePath {
    pub id: String,
    pub job: String,
    pub stage: String,
}

impl StagePath {
    /// The three ids, as `layout`'s overlay functions take them.
    pub(super) fn ids(&self) -> (&str, &str, &str) {
        (&self.id, &self.job, &self.stage)
    }
}

impl FromRequestParts<AppState> for StagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(path) = Path::<StagePath>::from_request_parts(parts, state).await?;
        state.validate("timeline id", &path.id)?;
        state.validate("job id", &path.job)?;
        state.validate("stage", &path.stage)?;
        Ok(path)
    }
}
