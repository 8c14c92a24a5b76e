//! The routes, one module per resource: `timelines` (timelines, frames and thumbnails),
//! `overlays`, `site` (the viewer's and dashboard's files, health, metrics, stats);
//! `params` checks the ids they share;
//! `respond` labels what they send.
//! Here: the route table and what every handler shares (input checks, version resolution).

mod overlays;
mod params;
pub(super) mod respond;
mod site;
mod timelines;

use super::AppState;
use super::error::ApiError;
use super::versions::{self, VERSION_LEN};
use crate::Source;
use crate::layout;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use overlays::{frame_overlays, overlay_png, overlay_stages, stage_overlays};
use respond::Served;
use serde::Deserialize;
use site::{healthz, metrics, stats_json, stats_page, ui_file, viewer_page, viewer_script};
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
    "/stats",
    "/ui/{file}",
    "/v1/stats",
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
        .route(ROUTES[11], get(stats_page))
        .route(ROUTES[12], get(ui_file))
        .route(ROUTES[13], get(stats_json))
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

    /// `key` as the origin has it now: the local copy of the origin's version (one stat),
    /// `None` once the origin no longer has it; the local copy as it is when the origin
    /// cannot be asked.
    async fn current(&self, key: &str) -> crate::Result<Option<crate::Hit>> {
        let chain = self.cache.chain();
        match chain.origin().stat(key).await {
            Ok(Some(info)) => chain.get_at(key, info.version.as_ref()).await,
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(
                    "{key}: origin failed ({}); sending the local copy if any",
                    self.redactor.redact(&e.to_string())
                );
                chain.get_hit(key).await
            }
        }
    }

    /// The payload a versioned URL names, when its bytes were read from memory lately
    /// (see [`versions::Versions::held`]): served without a stat or a read, as a
    /// memory-tier hit. Content-addressed, so as current as the URL itself; the index hands
    /// out the URLs of what the origin has now.
    fn held(&self, key: &str, wanted: Option<&str>) -> Option<Served> {
        let held = self.versions.held(key, wanted?)?;
        self.count_memory_hit(held.bytes.len());
        Some(Served::new(held.bytes.clone(), held.version.clone(), true))
    }

    /// Decides what to send when the client asked for version `wanted` of `bytes`, read
    /// under `key` from `source`. The bytes are the current ones: the read that returned
    /// them checked the local copy against the origin's version of the object. So a `v`
    /// they do not have names bytes that are gone (a stale index) or never were: the
    /// answer is a redirect to `url_of` the current version, and the origin is not read
    /// again, whatever `v` a client sends.
    async fn resolve(
        &self,
        key: &str,
        bytes: Bytes,
        source: Source,
        wanted: Option<&str>,
        url_of: impl FnOnce(&str) -> String,
    ) -> Result<Served, Response> {
        let version = self.versions.of(key, &bytes, source).await;
        match wanted {
            Some(wanted) if *wanted != *version => Err(respond::redirect(&url_of(&version))),
            wanted => Ok(Served::new(bytes, version, wanted.is_some())),
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
