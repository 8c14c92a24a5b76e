//! What `framecache serve` is told: [`ServeOptions`] (plain data, safe defaults) and their
//! checks, and the bearer token read from a file.

use crate::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Environment variable the command line reads the bearer token from.
pub const TOKEN_ENV: &str = "FRAMECACHE_TOKEN";

/// The shortest bearer token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token in `path`: its first line, surrounding whitespace removed.
///
/// # Errors
/// [`Error::Config`] when the file cannot be read or holds no token (never its content).
pub fn read_token_file(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(Error::Config(format!(
            "the token file {} holds no token on its first line",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// How the server listens and what it bounds. Plain data; [`ServeOptions::default`] is the
/// safe configuration: loopback only, no token.
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// Bearer token every route but `/healthz` and the viewer's static page requires.
    /// Mandatory when `bind` is not a loopback address.
    pub token: Option<String>,
    /// Connections open at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections open at once from one client address; further ones are closed at once.
    pub max_connections_per_client: usize,
    /// `Host` names answered besides loopback ones (`localhost`, `127.0.0.0/8`, `[::1]`),
    /// any port. Without a token only those are answered; with a token and an empty list,
    /// any.
    pub allowed_hosts: Vec<String>,
    /// Requests being handled at once; beyond that, `503` with `Retry-After` at once.
    pub max_in_flight: usize,
    /// Longest a handler may take before the request is answered `503`.
    pub request_timeout: Duration,
    /// Longest a request's head may take to arrive, counted from when the connection
    /// starts waiting for it (so also the longest a keep-alive connection stays idle);
    /// the connection is closed past it, however the bytes trickle in.
    pub header_timeout: Duration,
    /// Longest a whole request may take, from its first byte to its response handed to the
    /// connection, however the bytes trickle in or out; the connection is closed past it.
    pub request_deadline: Duration,
    /// A connection that neither reads nor writes for this long is closed (a client that
    /// stopped sending or reading).
    pub idle_timeout: Duration,
    /// `Retry-After` sent with `503` answers.
    pub retry_after: Duration,
    /// Bytes of frames whose content version is remembered, so a memory hit is not
    /// hashed again. The entries share their buffers with the memory tier.
    pub version_memo_bytes: u64,
    /// Send large remembered frames with `sendfile` from an in-memory file holding a
    /// copy of them (Linux), instead of copying them into the socket each time. The copy
    /// counts against `version_memo_bytes`.
    pub sendfile: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            token: None,
            max_connections: 1024,
            max_connections_per_client: 128,
            allowed_hosts: Vec::new(),
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            retry_after: Duration::from_secs(5),
            version_memo_bytes: 64 << 20,
            sendfile: true,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_client",
                &self.max_connections_per_client,
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_in_flight", &self.max_in_flight)
            .field("request_timeout", &self.request_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("request_deadline", &self.request_deadline)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry_after", &self.retry_after)
            .field("version_memo_bytes", &self.version_memo_bytes)
            .field("sendfile", &self.sendfile)
            .finish()
    }
}

impl ServeOptions {
    /// Checks the options: a non-loopback bind needs a token, a token must not be blank
    /// and has at least [`MIN_TOKEN_LEN`] characters,
    /// allowed hosts are plain names, and every bound must be at least 1 (timeouts above
    /// zero).
    ///
    /// # Errors
    /// [`Error::Config`] naming the problem (never the token itself).
    pub fn validate(&self) -> Result<()> {
        if let Some(token) = &self.token {
            if token.trim().is_empty() {
                return Err(Error::Config("the bearer token must not be blank".into()));
            }
            let len = token.chars().count();
            if len < MIN_TOKEN_LEN {
                return Err(Error::Config(format!(
                    "the bearer token is {len} characters; at least {MIN_TOKEN_LEN} are needed \
                     (e.g. `openssl rand -hex 16`)"
                )));
            }
        }
        if !self.bind.ip().is_loopback() && self.token.is_none() {
            return Err(Error::Config(format!(
                "binding to {} (not loopback) requires a bearer token: pass --token-file or set {TOKEN_ENV}",
                self.bind
            )));
        }
        if self.max_connections == 0
            || self.max_connections_per_client == 0
            || self.max_in_flight == 0
        {
            return Err(Error::Config(
                "max connections (in all and per client) and max requests in flight must be at least 1"
                    .into(),
            ));
        }
        if [
            self.request_timeout,
            self.header_timeout,
            self.request_deadline,
            self.idle_timeout,
        ]
        .contains(&Duration::ZERO)
        {
            return Err(Error::Config("timeouts must be above zero".into()));
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        }) {
            return Err(Error::Config(format!(
                "allowed host {bad:?} must be a plain host name (letters, digits, `-`, `.`), without port"
            )));
        }
        Ok(())
    }
}
