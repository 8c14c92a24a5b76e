//! A connection's stream: it fails a read or write once nothing moved for the idle
//! timeout or the request it is on has run past its deadline, sends file-backed bodies with
//! `sendfile`, and gives back the connection's slots under the caps when dropped.

use super::caps::Slots;
use super::versions::SendFile;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

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

#[cfg(test)]
mod tests {
    use super::*;

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
