//! Bearer-token check for every route but `/healthz` and the pages' static files.

use super::error::json_error;
use axum::http::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// Paths served without a token: the health probe, and the viewer's and the dashboard's
/// pages and scripts (also everything under [`OPEN_PREFIX`]), which hold no data (the pages
/// ask for the token and send it with every API call; a browser cannot attach a bearer
/// header to the navigation that loads a page itself, nor to the module imports it makes).
pub(super) const OPEN_PATHS: &[&str] = &["/healthz", "/", "/viewer.js", "/stats"];

/// Prefix of the pages' script modules, served without a token.
pub(super) const OPEN_PREFIX: &str = "/ui/";

/// The expected token, kept only as its blake3 so comparisons take the same time whatever
/// the guess (`blake3::Hash` compares in constant time).
pub(super) struct Token {
    digest: blake3::Hash,
}

impl Token {
    pub fn new(token: &str) -> Self {
        Token {
            digest: blake3::hash(token.as_bytes()),
        }
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        blake3::hash(presented) == self.digest
    }
}

/// The `401` answer (with `WWW-Authenticate`) for a request that may not go on; `None`
/// when its path is open or it carries `Authorization: Bearer <token>`. Neither the
/// expected nor the presented token is ever echoed.
pub(super) fn deny<B>(token: &Token, request: &Request<B>) -> Option<Response> {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) || path.starts_with(OPEN_PREFIX) {
        return None;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    if presented.is_some_and(|t| token.accepts(t)) {
        return None;
    }
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "this server requires `Authorization: Bearer <token>`",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"framecache\""),
    );
    Some(response)
}

/// The `403` answer for a cross-site request (`Sec-Fetch-Site: cross-site`, which browsers
/// send with every request a page of another site makes) to a data route of a server
/// without a token: a page the operator visits cannot read, or make this server fetch,
/// anything. The pages themselves (which hold no data) stay open to links from anywhere.
/// Clients that are not browsers send no such header and are not affected.
pub(super) fn deny_cross_site<B>(request: &Request<B>) -> Option<Response> {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) || path.starts_with(OPEN_PREFIX) {
        return None;
    }
    let cross_site = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    cross_site.then(|| {
        json_error(
            StatusCode::FORBIDDEN,
            "cross-site requests are refused: this server has no token, so only its own \
             pages and clients that are not browsers may read it (see --token-file)",
        )
    })
}

/// `Cache-Control: public, …` made `private, …`: an answer that needed a token is never
/// for shared caches.
pub(super) fn make_private(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CACHE_CONTROL) else {
        return;
    };
    let Some(rest) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("public"))
        .map(str::to_owned)
    else {
        return;
    };
    if let Ok(private) = HeaderValue::from_str(&format!("private{rest}")) {
        headers.insert(header::CACHE_CONTROL, private);
    }
}

/// The credentials of a `Bearer` authorization value (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_parse() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bear"), None);
        let token = Token::new("t0ken");
        assert!(token.accepts(b"t0ken"));
        assert!(!token.accepts(b"t0ke"));
    }
}
