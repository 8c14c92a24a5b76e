//! The accept loop: each connection within the caps is served by hyper's HTTP/1 with a
//! header-read timeout, its stream bounded in idleness and per-request time.

use super::Guard;
use super::caps::{CappedListener, ConnectionGauge};
use super::stream::{ConnState, ConnStream};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_service::Service;

/// How long each connection may take for what.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub request: Duration,
}

/// Serves connections from `listener` with `app` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is on, and returns when all
/// are closed.
pub(super) async fn serve(
    listener: CappedListener,
    app: Router,
    guard: Arc<Guard>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true)
        .writev(true);
    let http = Arc::new(http);
    // Turns the route table into its final form once, not per connection.
    let app = app.with_state(());
    let gauge = listener.gauge();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _peer, slots) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let conn = Arc::new(ConnState::new());
        let stream = ConnStream::new(stream, slots, timeouts.idle, timeouts.request, conn.clone());
        let service = ConnService {
            app: app.clone(),
            guard: guard.clone(),
            conn,
        };
        let (http, gauge, mut stopping, open) =
            (http.clone(), gauge.clone(), stopping.clone(), open.clone());
        tokio::spawn(async move {
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                closed_with(&gauge, &e);
            }
            drop(open);
        });
    }
    let _ = stop.send(true);
    drop(open);
    // Every connection task holds a sender: `None` once the last one ended.
    let _ = all_closed.recv().await;
}

/// Counts a connection a bound closed; the rest (clients that went away) are routine.
fn closed_with(gauge: &ConnectionGauge, e: &hyper::Error) {
    let timed_out = e.is_timeout()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if timed_out {
        gauge.counters().timed_out.fetch_add(1, Relaxed);
        tracing::debug!("connection closed: {e}");
    }
}

/// The hot path, else the router, for one connection; marks each response's end on the
/// connection's clock.
#[derive(Clone)]
struct ConnService {
    app: Router,
    guard: Arc<Guard>,
    conn: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Respond;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let conn = Some(self.conn.clone());
        match super::hot_path::answer(&self.guard, &request, &self.conn) {
            Some(response) => Respond::Ready {
                response: Some(response),
                conn,
            },
            None => Respond::Routed {
                inner: self.app.clone().call(request.map(Body::new)),
                conn,
            },
        }
    }
}

/// The answer, its body wrapped in [`Tracked`].
enum Respond {
    Ready {
        response: Option<Response>,
        conn: Option<Arc<ConnState>>,
    },
    Routed {
        inner: axum::routing::future::RouteFuture<Infallible>,
        conn: Option<Arc<ConnState>>,
    },
}

impl Future for Respond {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (response, conn) = match self.get_mut() {
            Respond::Ready { response, conn } => (response.take(), conn),
            Respond::Routed { inner, conn } => {
                let Ok(response) = std::task::ready!(Pin::new(inner).poll(cx));
                (Some(response), conn)
            }
        };
        let response = response.expect("polled after completion");
        let conn = conn.take().expect("polled after completion");
        Poll::Ready(Ok(response.map(|inner| Tracked { inner, conn })))
    }
}

/// A response body that ends the request on the connection's clock when hyper drops it,
/// that is once it has all been handed to the connection.
struct Tracked {
    inner: Body,
    conn: Arc<ConnState>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.conn.finish();
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
