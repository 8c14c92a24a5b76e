//! `framecache serve`: frames, overlays and counters over HTTP, and a scrubbing viewer at `/`.
//!
//! Request flow: `connection caps (all, per client) => hyper HTTP/1 (header-read timeout,
//! request deadline, idle timeout) => guard (metrics, Host, token, in-flight cap and
//! handler deadline, JSON errors) => panic guard => route`, every route a thin call into
//! [`FrameCache`]. Stored bytes are sent as they are, with a strong ETag from their blake3;
//! URLs that carry the content version (`?v=`) are cached by browsers for a year
//! (`immutable`), the others revalidate (`no-cache`).
//!
//! Safe by default: the default bind is loopback, any other bind needs a bearer token,
//! without a token only requests addressed to a loopback name are answered (DNS
//! rebinding), ids are checked by [`crate::layout::validate_id`], HTTP/1.1 only (one
//! request at a time per connection), bounded connections, requests in flight and request
//! time however slowly a client sends, credentials are redacted from every response and
//! log line, and `5xx` answers carry a request id instead of their detail.

mod auth;
mod conn;
mod error;
mod host;
mod hot_path;
mod limits;
mod metrics;
mod routes;
mod versions;

use crate::FrameCache;
use crate::{Error, Result};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Everything the handlers share.
struct Shared {
    cache: FrameCache,
    versions: versions::Versions,
    metrics: metrics::HttpMetrics,
    redactor: error::Redactor,
    retry_after: Duration,
}

type AppState = Arc<Shared>;

/// The whole application as a [`Router`]: routes, viewer and middleware (no listener).
///
/// # Errors
/// Invalid options (see [`ServeOptions::validate`]).
pub fn router(cache: FrameCache, opts: &ServeOptions) -> Result<Router> {
    Ok(build(cache, opts, None)?.0)
}

impl Shared {
    /// Counts a payload answered from memory without going through the tiers.
    fn count_memory_hit(&self, len: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let memory = &self.cache.chain().metrics().memory;
        memory.hits.fetch_add(1, Relaxed);
        memory
            .bytes_read
            .fetch_add(u64::try_from(len).unwrap_or(u64::MAX), Relaxed);
    }
}

fn build(
    cache: FrameCache,
    opts: &ServeOptions,
    connections: Option<limits::ConnectionGauge>,
) -> Result<(Router, Arc<Guard>)> {
    opts.validate()?;
    let state: AppState = Arc::new(Shared {
        cache,
        versions: versions::Versions::new(opts.version_memo_bytes, opts.sendfile),
        metrics: metrics::HttpMetrics::new(routes::ROUTES, connections),
        redactor: error::Redactor::from_env(opts.token.as_deref()),
        retry_after: opts.retry_after,
    });
    let in_flight =
        limits::InFlight::new(opts.max_in_flight, opts.request_timeout, opts.retry_after);
    state.metrics.set_in_flight(in_flight.clone());
    let guard = Arc::new(Guard {
        state: state.clone(),
        token: opts.token.as_deref().map(auth::Token::new),
        hosts: host::HostPolicy::new(opts.token.is_some(), &opts.allowed_hosts),
        in_flight,
    });
    let app = routes::routes()
        .with_state(state)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(from_fn_with_state(guard.clone(), guard_request));
    Ok((app, guard))
}

/// What every request goes through, in one layer: each axum layer costs a boxed future
/// and a service clone per request, which shows at thousands of frames a second.
struct Guard {
    state: AppState,
    token: Option<auth::Token>,
    hosts: host::HostPolicy,
    in_flight: limits::InFlight,
}

impl Guard {
    /// The answer for a request that may not go on (`Host`, cross-site without a token,
    /// token), or `None`.
    fn deny<B>(&self, request: &Request<B>) -> Option<Response> {
        self.hosts.deny(request).or_else(|| match &self.token {
            Some(token) => auth::deny(token, request),
            None => auth::deny_cross_site(request),
        })
    }

    /// What every answer carries, from the router or the hot path: only same-origin pages
    /// may embed it (`Cross-Origin-Resource-Policy`), and with a token nothing is stored
    /// by shared caches (`Cache-Control: private` instead of `public`).
    fn seal(&self, response: &mut Response) {
        let headers = response.headers_mut();
        headers.insert(
            axum::http::HeaderName::from_static("cross-origin-resource-policy"),
            axum::http::HeaderValue::from_static("same-origin"),
        );
        if self.token.is_some() {
            auth::make_private(headers);
        }
    }
}

/// Times and counts the request by route and status, checks the `Host` and the token,
/// bounds it (slot and deadline), and gives error answers made outside the handlers the
/// JSON shape.
async fn guard_request(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let denied = guard.deny(&request);
    let response = match denied {
        Some(denied) => denied,
        None => limits::bounded(&guard.in_flight, next.run(request)).await,
    };
    let mut response = error::json_for_bare_errors(response);
    guard.seal(&mut response);
    guard.state.metrics.observe(
        route
            .as_ref()
            .map_or(metrics::UNMATCHED, MatchedPath::as_str),
        response.status().as_u16(),
        started,
    );
    response
}

/// A bound server, ready to run: bind first to learn the address (port 0 picks one).
pub struct Server {
    listener: limits::CappedListener,
    app: Router,
    guard: Arc<Guard>,
    timeouts: conn::Timeouts,
}

impl Server {
    /// Validates the options and binds the listening socket.
    ///
    /// # Errors
    /// Invalid options, or the address cannot be bound.
    pub async fn bind(cache: FrameCache, opts: &ServeOptions) -> Result<Server> {
        opts.validate()?;
        let tcp = tokio::net::TcpListener::bind(opts.bind)
            .await
            .map_err(|e| Error::io("bind", opts.bind.to_string(), e))?;
        let listener =
            limits::CappedListener::new(tcp, opts.max_connections, opts.max_connections_per_client);
        let (app, guard) = build(cache, opts, Some(listener.gauge()))?;
        let timeouts = conn::Timeouts {
            header: opts.header_timeout,
            idle: opts.idle_timeout,
            request: opts.request_deadline,
        };
        Ok(Server {
            listener,
            app,
            guard,
            timeouts,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight
    /// finish and returns once every connection is closed.
    ///
    /// # Errors
    /// Never in practice: accept errors are logged and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        conn::serve(self.listener, self.app, self.guard, self.timeouts, shutdown).await;
        Ok(())
    }
}

/// Binds and serves `cache` until `shutdown` completes (see [`shutdown_signal`]).
///
/// # Errors
/// Invalid options or an address that cannot be bound.
pub async fn serve(
    cache: FrameCache,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let server = Server::bind(cache, &opts).await?;
    tracing::info!("serving on http://{}", server.local_addr());
    server.run(shutdown).await
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
