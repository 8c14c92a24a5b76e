//! Bounds: connections open at once, idle connections, requests in flight, request time.

use super::error::ApiError;
use axum::response::{IntoResponse, Response};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections open now, out of the cap (for `/metrics`).
#[derive(Clone)]
pub(super) struct ConnectionGauge {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionGauge {
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// A TCP listener that holds at most `max` connections open: past that, `accept` waits
/// and new clients queue in the kernel's backlog instead of costing memory here. Each
/// connection is closed after `idle` without a byte read or written.
pub(super) struct CappedListener {
    inner: TcpListener,
    addr: SocketAddr,
    gauge: ConnectionGauge,
    idle: Duration,
}

impl CappedListener {
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        let addr = inner
            .local_addr()
            .expect("a bound TCP listener has an address");
        CappedListener {
            inner,
            addr,
            gauge: ConnectionGauge {
                permits: Arc::new(Semaphore::new(max)),
                max,
            },
            idle,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gauge(&self) -> ConnectionGauge {
        self.gauge.clone()
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = IdleTimeoutStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self
            .gauge
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Responses are written whole; waiting for more to coalesce only adds
                    // latency.
                    let _ = stream.set_nodelay(true);
                    return (IdleTimeoutStream::new(stream, permit, self.idle), addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A connection that fails its pending read or write once nothing moved for `idle`, and
/// returns its slot under the connection cap when dropped.
pub(super) struct IdleTimeoutStream {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleTimeoutStream {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, idle: Duration) -> Self {
        let now = Instant::now();
        IdleTimeoutStream {
            inner,
            _slot: slot,
            idle,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// Called when the inner stream is not ready: errors once `idle` passed since the last
    /// progress. The timer is re-armed lazily, so progress costs only a clock read.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let deadline = self.last_progress + self.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
        }
    }

    fn progressed<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.last_progress = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => match self.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncRead for IdleTimeoutStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progressed(poll, cx)
    }
}

impl AsyncWrite for IdleTimeoutStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(poll, cx)
    }

    // hyper writes a response's head and body in one `writev` when the stream supports it;
    // without these two it would copy every body into its own buffer first.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(poll, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

/// The overall cap on requests being handled and the deadline of each.
#[derive(Clone)]
pub(super) struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
    retry_after: Duration,
}

impl InFlight {
    pub fn new(max: usize, timeout: Duration, retry_after: Duration) -> Self {
        InFlight {
            slots: Arc::new(Semaphore::new(max)),
            max,
            timeout,
            retry_after,
        }
    }

    /// Requests being handled now.
    pub fn busy(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// Runs `handle` in a slot, or answers `503` at once when none is free (shedding load
/// rather than queueing it); answers `503` when it runs past the deadline (the handler is
/// dropped; an origin fetch it started goes on for the other readers of that key).
pub(super) async fn bounded(limits: &InFlight, handle: impl Future<Output = Response>) -> Response {
    let Ok(_slot) = limits.slots.try_acquire() else {
        return ApiError::unavailable(
            format!("busy: {} requests in flight", limits.max),
            limits.retry_after,
        )
        .into_response();
    };
    match tokio::time::timeout(limits.timeout, handle).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            format!("request timed out after {:?}", limits.timeout),
            limits.retry_after,
        )
        .into_response(),
    }
}
