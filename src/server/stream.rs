//! Bounds: connections open at once (in all and per client address), idle connections, the
//! whole-request deadline, requests in flight and handler time.

use super::error::ApiError;
use super::versions::SendFile;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections open now, out of the cap, and those refused or closed by a bound (for
/// `/metrics`).
#[derive(Clone)]
pub(super) struct ConnectionGauge {
    permits: Arc<Semaphore>,
    max: usize,
    counters: Arc<ConnectionCounters>,
}

/// Connections the bounds ended.
#[derive(Default)]
pub(super) struct ConnectionCounters {
    /// Closed at once because their client address already held its share.
    pub refused_per_client: AtomicU64,
    /// Closed because a request head, or a whole request, took too long.
    pub timed_out: AtomicU64,
}

impl ConnectionGauge {
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    pub fn counters(&self) -> &ConnectionCounters {
        &self.counters
    }
}

/// Connections open per client address.
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A client address's share of the per-client cap, returned when dropped.
pub(super) struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerClient {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

/// The client an address belongs to for the per-client cap: an IPv4 address (however a
/// dual-stack socket spells it), or an IPv6 address's /64, the block a single host is
/// usually given (it can pick any address in it).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// A TCP listener that holds at most `max` connections open, and at most `per_client` from
/// one client address. Past the first, `accept` waits and new clients queue in the kernel's
/// backlog instead of costing memory here; past the second, the new connection is closed
/// at once, so one address cannot take every slot.
pub(super) struct CappedListener {
    inner: TcpListener,
    addr: SocketAddr,
    gauge: ConnectionGauge,
    clients: Arc<PerClient>,
}

/// What an accepted connection holds: its slots under both caps.
pub(super) struct Slots {
    _global: OwnedSemaphorePermit,
    _client: ClientSlot,
}

impl CappedListener {
    pub fn new(inner: TcpListener, max: usize, per_client: usize) -> Self {
        let addr = inner
            .local_addr()
            .expect("a bound TCP listener has an address");
        CappedListener {
            inner,
            addr,
            gauge: ConnectionGauge {
                permits: Arc::new(Semaphore::new(max)),
                max,
                counters: Arc::default(),
            },
            clients: Arc::new(PerClient {
                max: per_client,
                open: Mutex::default(),
            }),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gauge(&self) -> ConnectionGauge {
        self.gauge.clone()
    }

    /// The next connection within both caps.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, Slots) {
        loop {
            let global = self
                .gauge
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("the connection semaphore is never closed");
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let Some(client) = self.clients.enter(peer.ip()) else {
                        self.gauge.counters.refused_per_client.fetch_add(1, Relaxed);
                        tracing::debug!("{peer}: per-client connection cap reached; closed");
                        continue;
                    };
                    // Responses are written whole; waiting for more to coalesce only adds
                    // latency.
                    let _ = stream.set_nodelay(true);
                    let slots = Slots {
                        _global: global,
                        _client: client,
                    };
                    return (stream, peer, slots);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// What a connection's stream and its service share: when the request being received or
/// answered began (set by the first byte read while none is open, cleared when its
/// response has been handed to the connection), and the body to send from a file.
pub(super) struct ConnState {
    base: Instant,
    /// Nanoseconds from `base` to the request's first byte, plus one; 0 when none is open.
    started: AtomicU64,
    /// A response body the stream sends with `sendfile` from a copy of it in a file.
    send: Mutex<Option<SendHint>>,
}

/// Body bytes and the file holding the same bytes. Holding the bytes keeps their address
/// from being reused by other bytes, so a write of that address range is these bytes.
struct SendHint {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    bytes: Bytes,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    file: Arc<SendFile>,
}

impl ConnState {
    pub fn new() -> Self {
        ConnState {
            base: Instant::now(),
            started: AtomicU64::new(0),
            send: Mutex::new(None),
        }
    }

    /// The next writes of `bytes` (or of a part of them) go out with `sendfile` from
    /// `file`, which holds the same bytes.
    pub fn send_from(&self, bytes: Bytes, file: Arc<SendFile>) {
        *self.send.lock().unwrap_or_else(|e| e.into_inner()) = Some(SendHint { bytes, file });
    }

    fn start_if_idle(&self, now: Instant) {
        if self.started.load(Relaxed) == 0 {
            let nanos = u64::try_from((now - self.base).as_nanos()).unwrap_or(u64::MAX - 1);
            self.started.store(nanos + 1, Relaxed);
        }
    }

    /// The response is complete: the next byte read begins the next request.
    pub fn finish(&self) {
        self.started.store(0, Relaxed);
    }

    fn started(&self) -> Option<Instant> {
        match self.started.load(Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }
}

/// A connection that fails its pending read or write once nothing moved for `idle`, or
/// once the request it is on has run past `deadline` from its first byte (however the
/// bytes trickle in or out), and returns its slots under the connection caps when dropped.
pub(super) struct ConnStream {
    inner: TcpStream,
    _slots: Slots,
    idle: Duration,
    deadline: Duration,
    conn: Arc<ConnState>,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl ConnStream {
    pub fn new(
        inner: TcpStream,
        slots: Slots,
        idle: Duration,
        deadline: Duration,
        conn: Arc<ConnState>,
    ) -> Self {
        let now = Instant::now();
        ConnStream {
            inner,
            _slots: slots,
            idle,
            deadline,
            conn,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    fn request_deadline(&self) -> Option<Instant> {
        self.conn.started().map(|s| s + self.deadline)
    }

    /// Called when the inner stream is not ready: errors once `idle` passed since the last
    /// progress or the request's deadline passed. The timer is re-armed lazily, so
    /// progress costs only a clock read.
    fn check_timers(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let idle = self.last_progress + self.idle;
        let due = self.request_deadline().map_or(idle, |d| d.min(idle));
        if self.timer.deadline() != due {
            self.timer.as_mut().reset(due);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if due == idle {
                    "connection idle for too long"
                } else {
                    "request ran past its deadline"
                },
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
                let now = Instant::now();
                self.last_progress = now;
                // A client that keeps sending or reading a byte now and then is still
                // bounded by the request's deadline.
                if self.request_deadline().is_some_and(|d| now >= d) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request ran past its deadline",
                    )));
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.check_timers(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

#[cfg(target_os = "linux")]
impl ConnStream {
    /// Writes `bufs` when their last one lies within the body to send from a file: the
    /// slices before it with `writev`, then that part of the file with `sendfile` (the
    /// kernel hands its pages to the socket, no copy from user memory). `None` when there
    /// is no such body, for the plain write.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Option<Poll<io::Result<usize>>> {
        use std::os::fd::AsRawFd;
        let (last, head) = bufs.split_last()?;
        let (file, at) = {
            let hint = self.conn.send.lock().unwrap_or_else(|e| e.into_inner());
            let hint = hint.as_ref()?;
            let at = (last.as_ptr() as usize).checked_sub(hint.bytes.as_ptr() as usize)?;
            if last.is_empty() || at + last.len() > hint.bytes.len() {
                return None;
            }
            (hint.file.clone(), at)
        };
        let count = last.len();
        let head_len: usize = head.iter().map(|b| b.len()).sum();
        let socket = self.inner.as_raw_fd();
        let write = || -> io::Result<usize> {
            let mut written = 0;
            if head_len > 0 {
                let iovcnt = libc::c_int::try_from(head.len()).unwrap_or(libc::c_int::MAX);
                // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the slices are live for
                // the call and at most `iovcnt` of them are read.
                let n = unsafe { libc::writev(socket, head.as_ptr().cast(), iovcnt) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                written = n as usize;
                if written < head_len {
                    return Ok(written);
                }
            }
            let mut offset = libc::off_t::try_from(at).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open for the call (the file is held by `file`);
            // the kernel reads at most `count` bytes from `offset` of a file of at least
            // `at + count` bytes.
            let n = unsafe { libc::sendfile(socket, file.fd().as_raw_fd(), &mut offset, count) };
            if n < 0 {
                let e = io::Error::last_os_error();
                // The head went out: report it, and the body is retried next time.
                return if written > 0 { Ok(written) } else { Err(e) };
            }
            Ok(written + n as usize)
        };
        loop {
            match self.inner.poll_write_ready(cx) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Ready(Ok(())) => {}
            }
            match self.inner.try_io(tokio::io::Interest::WRITABLE, write) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Some(Poll::Ready(result)),
            }
        }
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.start_if_idle(Instant::now());
        }
        this.progressed(poll, cx)
    }
}

impl AsyncWrite for ConnStream {
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
        #[cfg(target_os = "linux")]
        if let Some(poll) = this.poll_send_file(cx, bufs) {
            return this.progressed(poll, cx);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_address_gets_its_share() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::default(),
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = clients.enter(a).unwrap();
        let _second = clients.enter(mapped).unwrap();
        assert!(clients.enter(a).is_none(), "a third from the same address");
        let _other = clients.enter(b).unwrap();
        drop(first);
        assert!(clients.enter(a).is_some(), "a slot returns when dropped");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::default(),
        });
        let a1: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let a2: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().unwrap();
        let a3: IpAddr = "2001:db8:1:2:8000::3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _first = clients.enter(a1).unwrap();
        let _second = clients.enter(a2).unwrap();
        assert!(
            clients.enter(a3).is_none(),
            "a third address of the same /64 is the same client"
        );
        assert!(
            clients.enter(other).is_some(),
            "the next /64 is another client"
        );
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(client_of(v4), v4, "IPv4 addresses stay whole");
        assert_eq!(client_of("::ffff:10.1.2.3".parse().unwrap()), v4);
    }

    #[test]
    fn the_request_clock_starts_once_and_finishes() {
        let clock = ConnState::new();
        assert!(clock.started().is_none());
        let t = Instant::now();
        clock.start_if_idle(t);
        let started = clock.started().unwrap();
        clock.start_if_idle(t + Duration::from_secs(5));
        assert_eq!(clock.started(), Some(started), "later bytes do not move it");
        clock.finish();
        assert!(clock.started().is_none());
    }
}
