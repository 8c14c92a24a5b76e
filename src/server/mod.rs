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
mod caps;
mod conn;
mod dashboard;
mod error;
mod host;
mod hot_path;
mod metrics;
mod options;
mod prometheus;
mod routes;
mod stream;
mod versions;

use crate::FrameCache;
use crate::{Error, Result};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
pub use options::{MIN_TOKEN_LEN, ServeOptions, TOKEN_ENV, read_token_file};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    connections: Option<caps::ConnectionGauge>,
) -> Result<(Router, Arc<Guard>)> {
    opts.validate()?;
    let state: AppState = Arc::new(Shared {
        cache,
        versions: versions::Versions::new(opts.version_memo_bytes, opts.sendfile),
        metrics: metrics::HttpMetrics::new(routes::ROUTES, connections),
        redactor: error::Redactor::from_env(opts.token.as_deref()),
        retry_after: opts.retry_after,
    });
    let in_flight = caps::InFlight::new(opts.max_in_flight, opts.request_timeout, opts.retry_after);
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
    in_flight: caps::InFlight,
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
        None => caps::bounded(&guard.in_flight, next.run(request)).await,
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
    listener: caps::CappedListener,
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
            caps::CappedListener::new(tcp, opts.max_connections, opts.max_connections_per_client);
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
