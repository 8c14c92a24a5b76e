//! The hot path, before the router: `GET` of a versioned frame URL whose bytes were read
//! from memory lately, answered with the route's own headers, checks and counters but
//! without routing, extractors, middleware or a stat, its body sent with `sendfile`.
//!
//! Anything it is not sure about (another method or route, a percent-encoded id, a query
//! that is not exactly `v=<version>`, a refused `Host`, token or cross-site request, bytes
//! not held) goes to
//! the router, which answers it as before: this path only ever answers what the router
//! would answer the same way.

use super::Guard;
use super::routes::respond::Served;
use super::stream::ConnState;
use crate::layout;
use axum::http::{Method, Request, StatusCode, Uri};
use axum::response::Response;
use std::time::Instant;

/// The frame route, as `/metrics` labels it.
const FRAME_ROUTE: &str = "/v1/timelines/{id}/frames/{file}";

/// The answer to `request` when it is a held versioned frame; `None` for the router.
pub(super) fn answer<B>(guard: &Guard, request: &Request<B>, conn: &ConnState) -> Option<Response> {
    let started = Instant::now();
    if request.method() != Method::GET {
        return None;
    }
    let (id, seq, version) = versioned_frame(request.uri())?;
    if guard.deny(request).is_some() {
        return None;
    }
    layout::validate_id("timeline id", id).ok()?;
    let key = layout::frame_key(id, seq).ok()?;
    let held = guard.state.versions.held(&key, version)?;
    guard.state.count_memory_hit(held.bytes.len());
    let mut response = Served::new(held.bytes.clone(), held.version.clone(), true)
        .respond(request.headers(), "image/jpeg");
    guard.seal(&mut response);
    if response.status() == StatusCode::OK
        && let Some(file) = &held.file
    {
        conn.send_from(held.bytes.clone(), file.clone());
    }
    guard
        .state
        .metrics
        .observe(FRAME_ROUTE, response.status().as_u16(), started);
    Some(response)
}

/// `(id, seq, version)` of `/v1/timelines/{id}/frames/{seq}.jpg?v={version}` when every
/// part is already in canonical form (no percent-encoding, canonical seq, exactly one
/// query parameter of 32 lowercase hex digits).
fn versioned_frame(uri: &Uri) -> Option<(&str, u64, &str)> {
    let (id, file) = uri
        .path()
        .strip_prefix("/v1/timelines/")?
        .split_once("/frames/")?;
    if id.contains(['%', '/']) {
        return None;
    }
    let seq = layout::parse_frame_name(file)?;
    let version = uri.query()?.strip_prefix("v=")?;
    let canonical = version.len() == super::versions::VERSION_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    canonical.then_some((id, seq, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_versioned_frame_urls_take_the_hot_path() {
        let v = "0123456789abcdef0123456789abcdef";
        let parse = |s: &str| {
            let uri = s.parse::<Uri>().unwrap();
            versioned_frame(&uri).map(|(id, seq, v)| (id.to_owned(), seq, v.to_owned()))
        };
        assert_eq!(
            parse(&format!("/v1/timelines/tl-1/frames/17.jpg?v={v}")),
            Some(("tl-1".to_owned(), 17, v.to_owned()))
        );
        for other in [
            "/v1/timelines/tl-1/frames/17.jpg".to_owned(),
            format!("/v1/timelines/tl-1/frames/017.jpg?v={v}"),
            format!("/v1/timelines/tl-1/frames/17.png?v={v}"),
            format!("/v1/timelines/t%2Fl/frames/1.jpg?v={v}"),
            format!("/v1/timelines/tl-1/frames/1.jpg?v={}", v.to_uppercase()),
            format!("/v1/timelines/tl-1/frames/1.jpg?v={v}&x=1"),
            format!("/v1/timelines/tl-1/frames/1.jpg?x=1&v={v}"),
            format!("/v1/timelines/tl-1/frames/frames/1.jpg?v={v}"),
            format!("/v1/timelines/a/b/frames/1.jpg?v={v}"),
            format!("/v1/timelines/tl-1/overlays/1.jpg?v={v}"),
        ] {
            assert_eq!(parse(&other), None, "{other}");
        }
    }
}
