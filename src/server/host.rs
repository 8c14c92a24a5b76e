//! The `Host` a request is addressed to: without a token only loopback names (and the
//! names allowed explicitly) are answered, so a page whose own name was re-pointed at this
//! machine (DNS rebinding) reads nothing.

use super::error::json_error;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use std::net::IpAddr;

/// Which `Host` values are answered.
pub(super) enum HostPolicy {
    /// Any (a token guards the data).
    Any,
    /// Loopback names (`localhost`, `127.0.0.0/8`, `[::1]`, any port) and these names,
    /// lowercase.
    Loopback(Vec<String>),
}

impl HostPolicy {
    /// Loopback names and `allowed` without a token; with a token, any host unless names
    /// are given.
    pub fn new(token: bool, allowed: &[String]) -> Self {
        if token && allowed.is_empty() {
            return HostPolicy::Any;
        }
        HostPolicy::Loopback(allowed.iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    /// The `421` answer for a request addressed to a host not served; `None` when it is.
    pub fn deny<B>(&self, request: &Request<B>) -> Option<Response> {
        let HostPolicy::Loopback(names) = self else {
            return None;
        };
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| request.headers().get(header::HOST).map(|v| v.as_bytes()));
        if host.and_then(name_of).is_some_and(|name| {
            is_loopback(name)
                || names
                    .iter()
                    .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        }) {
            return None;
        }
        Some(json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers requests addressed to localhost, 127.0.0.1 or [::1] only \
             (see --allow-host)",
        ))
    }
}

/// The name of a `Host` value without its port (`[::1]:8080` gives `[::1]`).
fn name_of(host: &[u8]) -> Option<&[u8]> {
    let host = match host.iter().rposition(|&b| b == b'@') {
        Some(at) => &host[at + 1..], // userinfo in an absolute-form target
        None => host,
    };
    if host.first() == Some(&b'[') {
        let end = host.iter().position(|&b| b == b']')?;
        return Some(&host[..=end]);
    }
    let name = match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    };
    (!name.is_empty()).then_some(name)
}

fn is_loopback(name: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(b"localhost") {
        return true;
    }
    let literal = name
        .strip_prefix(b"[")
        .and_then(|n| n.strip_suffix(b"]"))
        .unwrap_or(name);
    std::str::from_utf8(literal)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        // IPv6 literals come in brackets, IPv4 ones without.
        .is_some_and(|ip| ip.is_loopback() && ip.is_ipv6() == name.starts_with(b"["))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(policy: &HostPolicy, host: &str) -> bool {
        let request = Request::builder()
            .uri("/healthz")
            .header(header::HOST, host)
            .body(axum::body::Body::empty())
            .unwrap();
        policy.deny(&request).is_none()
    }

    #[test]
    fn only_loopback_names_are_answered_without_a_token() {
        let policy = HostPolicy::new(false, &[]);
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(answered(&policy, host), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "127.0.0.1.attacker.example",
            "10.0.0.1",
            "[::2]:80",
            "::1",
            "[127.0.0.1]",
            "",
            ":8080",
        ] {
            assert!(!answered(&policy, host), "{host}");
        }
        let request = Request::builder()
            .uri("/healthz")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(policy.deny(&request).is_some(), "no Host at all");
    }

    #[test]
    fn allowed_names_and_tokens() {
        let allowed = HostPolicy::new(false, &["Frames.Internal".into()]);
        assert!(answered(&allowed, "frames.internal:8080"));
        assert!(answered(&allowed, "localhost"));
        assert!(!answered(&allowed, "attacker.example"));
        assert!(answered(&HostPolicy::new(true, &[]), "attacker.example"));
        let with_token = HostPolicy::new(true, &["frames.internal".into()]);
        assert!(!answered(&with_token, "attacker.example"));
    }
}
