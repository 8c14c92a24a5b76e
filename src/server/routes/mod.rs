//! The routes, one module per resource: `timelines` (timelines and frames), `overlays`,
//! `site` (the viewer's two files, health, metrics); `params` checks the ids they share;
//! `respond` labels what they send.
//! Here: the route table and what every handler shares (input checks, version resolution).

mod overlays;
mod params;
mod respond;
mod site;
mod timelines;

use super::AppState;
use super::error::ApiError;
use super::versions::{self, VERSION_LEN};
use crate::layout;
use crate::tier::Source;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use overlays::{frame_overlays, overlay_png, overlay_stages, stage_overlays};
use respond::Served;
use serde::Deserialize;
use site::{healthz, metrics, viewer_page, viewer_script};
use timelines::{frame, timeline, timelines};

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

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
