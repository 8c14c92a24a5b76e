//! The raw-entry writer behind loads: a decode hands its frame to the caller at once and
//! queues the raw entry's write (temp file, checksum, link) for one background thread per
//! process, which keeps the frame's decode stripe lock until the entry is in place.
//!
//! The queue is bounded in bytes of pixels ([`QUEUE_BYTES`]). A write that does not fit
//! is never dropped: the loader writes the entry itself, at once (backpressure), so every
//! frame decoded here gets its entry unless the write really fails (disk full, I/O error;
//! counted in `raw_writes_dropped`).
//!
//! Why the lock travels with the write: processes waiting on a stripe lock wait for the
//! entry, not for the decode. They get the lock once every frame this process decoded
//! under it is linked into place (or its write failed), then find the entry, or decode
//! the frame themselves; as before, past the lock's bound they decode alone.
//!
//! Threads of one process share the stripe locks it holds (a `flock` would make them wait
//! on each other's queued writes): a stripe this process holds is claimed in memory, and a
//! frame another thread decoded and queued is answered from its queued buffer.
//!
//! Fork: the writer's state belongs to the fork generation that built it. A forked child
//! builds its own (fresh table, queue and thread) and never touches its parent's, which is
//! leaked there: the thread that would drain it does not exist in the child, and its locks
//! were already let go by the fork handler (see [`crate::flock`]).
//! Exit: writes still queued when the process exits are lost (best effort); a write cut
//! short leaves a dead writer's temp file, which the disk tier's sweep removes.
//!
//! Over 400 lines on purpose: the claims of stripes, the queue and the writer thread are one
//! state under one mutex with one fork-generation rule; split, each part would reach into
//! the other's state.

use super::frame::Decoded;
use crate::flock::{Backoff, LockFile, Mode, fork_generation};
#[cfg(feature = "test-hooks")]
use crate::flock::{LockKind, gate};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of pixels a process holds queued for the writer at most (92 frames of
/// 1280x720). Past it the loader writes the entry itself: loads slow down to the disk's
/// pace instead of dropping entries. The queued buffers are mostly the very ones the
/// memory tier and the callers hold anyway.
pub const QUEUE_BYTES: usize = 256 << 20;

/// The bound in force (see [`set_queue_bytes`]).
static QUEUE_BOUND: AtomicUsize = AtomicUsize::new(QUEUE_BYTES);

/// Sets the bound of the queue behind loads, in bytes of pixels, for this process; returns
/// the previous one. For tests, which stop the writer and need the bound reached with
/// small frames.
#[doc(hidden)]
pub fn set_queue_bytes(bytes: usize) -> usize {
    QUEUE_BOUND.swap(bytes, Ordering::Relaxed)
}

/// Nice value of the writer thread: it writes when the decoders leave a core idle.
const WRITER_NICE: i32 = 10;

/// Where a queued frame's raw entry is written: the decoded disk tier.
pub(crate) trait RawSink: Send + Sync {
    /// Writes `decoded` as `name`'s entry; whether it is in place.
    fn write(&self, name: &str, decoded: &Decoded) -> bool;
    /// Counts a frame whose entry could not be written.
    fn dropped(&self);
}

/// One write.
struct Job {
    sink: Arc<dyn RawSink>,
    name: String,
    decoded: Arc<Decoded>,
    /// The stripe lock file's path, when the decode held the stripe.
    stripe: Option<PathBuf>,
}

/// A frame claimed in a stripe this process holds.
enum Slot {
    /// A thread of this process is decoding it.
    Decoding,
    /// Decoded, its write queued or in progress.
    Queued(Arc<Decoded>),
}

/// A stripe lock this process holds, and the frames it holds it for.
struct Hold {
    lock: Option<LockFile>,
    names: HashMap<String, Slot>,
}

#[derive(Default)]
struct Table {
    holds: HashMap<PathBuf, Hold>,
    /// Writes queued or in progress (on the writer or a loader).
    pending: usize,
    /// Writes for the writer thread, oldest first.
    queue: VecDeque<Job>,
    /// Pixel bytes of the writes queued for the writer or in progress on it.
    queued_bytes: usize,
    /// The writer thread could not be started: every write is done by its loader.
    no_writer: bool,
}

/// The writer of one fork generation of this process.
pub(crate) struct RawWriter {
    generation: u64,
    table: Mutex<Table>,
    /// Claims given back, writes done.
    changed: Condvar,
    /// A write queued for the writer thread.
    work: Condvar,
}

/// This generation's writer (a leaked `Box`), null until the first decode.
static CURRENT: AtomicPtr<RawWriter> = AtomicPtr::new(std::ptr::null_mut());

/// What [`RawWriter::claim`] found.
pub(crate) enum Claim {
    /// Another thread of this process decoded the frame; its write is queued.
    Queued(Arc<Decoded>),
    /// This thread holds the frame's stripe and decodes it; the guard gives the claim back
    /// if it is dropped before [`Claimed::queue`].
    Held(Claimed),
    /// The stripe stayed busy past the bound: decode without it (the caller counts it).
    TimedOut,
}

/// A claimed frame: queue its write, or drop this to give the claim back.
pub(crate) struct Claimed {
    writer: &'static RawWriter,
    stripe: PathBuf,
    name: String,
    queued: bool,
    /// Another process held the stripe when it was first tried: this thread waited for it.
    waited: bool,
}

/// The writer of this process's fork generation, started on first use.
pub(crate) fn current() -> &'static RawWriter {
    let generation = fork_generation();
    let seen = CURRENT.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in CURRENT is a leaked `Box<RawWriter>`, never freed.
    if let Some(writer) = unsafe { seen.as_ref() }
        && writer.generation == generation
    {
        return writer;
    }
    let fresh = Box::into_raw(Box::new(RawWriter {
        generation,
        table: Mutex::new(Table::default()),
        changed: Condvar::new(),
        work: Condvar::new(),
    }));
    match CURRENT.compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: just leaked above and published; never freed.
            let writer: &'static RawWriter = unsafe { &*fresh };
            writer.start();
            writer
        }
        Err(winner) => {
            // SAFETY: `fresh` was never published: this thread still owns it.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: as above, published pointers are leaked boxes.
            let writer = unsafe { &*winner };
            if writer.generation == generation {
                writer
            } else {
                current()
            }
        }
    }
}

/// Writes queued or in progress in this process (0 before the first decode).
pub(crate) fn pending() -> usize {
    // SAFETY: as in `current`.
    match unsafe { CURRENT.load(Ordering::Acquire).as_ref() } {
        Some(writer) if writer.generation == fork_generation() => writer.table().pending,
        _ => 0,
    }
}

/// Waits up to `bound` for this process's queued writes to be done; whether they are.
pub(crate) fn flush(bound: Duration) -> bool {
    // SAFETY: as in `current`.
    let writer = match unsafe { CURRENT.load(Ordering::Acquire).as_ref() } {
        Some(writer) if writer.generation == fork_generation() => writer,
        _ => return true,
    };
    let deadline = Instant::now() + bound;
    let mut table = writer.table();
    while table.pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        table = writer
            .changed
            .wait_timeout(table, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    true
}

impl RawWriter {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&'static self) {
        let spawned = std::thread::Builder::new()
            .name("framecache-raw-writer".into())
            .spawn(move || {
                lower_priority();
                loop {
                    let job = {
                        let mut table = self.table();
                        loop {
                            if let Some(job) = table.queue.pop_front() {
                                break job;
                            }
                            table = self.work.wait(table).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    #[cfg(feature = "test-hooks")]
                    gate::reached(LockKind::RawWrite, None);
                    let bytes = job.decoded.pixel_bytes();
                    self.write(job, bytes);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the raw frame writer ({e}); loaders write raw frames");
            // Writes queued meanwhile are done here; later ones by their loaders.
            let queued = {
                let mut table = self.table();
                table.no_writer = true;
                std::mem::take(&mut table.queue)
            };
            for job in queued {
                let bytes = job.decoded.pixel_bytes();
                self.write(job, bytes);
            }
        }
    }

    /// Writes `job`'s entry (`bytes`: the pixel bytes it held in the queue), then gives its
    /// claim back.
    fn write(&self, job: Job, bytes: usize) {
        // A panic here must not take the writer (or the loader) down with the stripe still
        // held and the write still counted as pending: the entry is then just not written.
        let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.sink.write(&job.name, &job.decoded)
        }));
        let written = stored.unwrap_or_else(|_| {
            tracing::error!("writing the raw frame {:?} panicked; not kept", job.name);
            false
        });
        if !written {
            job.sink.dropped();
        }
        self.finish(job.stripe.as_deref(), &job.name, true, bytes);
    }

    /// Claims `name` in the stripe lock file at `stripe`, opened by `open`, waiting at most
    /// `bound` for another process to let the stripe go.
    ///
    /// # Errors
    /// When the lock file cannot be opened or locked.
    pub(crate) fn claim(
        &'static self,
        stripe: &Path,
        name: &str,
        open: impl Fn() -> io::Result<LockFile>,
        bound: Duration,
    ) -> io::Result<Claim> {
        let mut backoff = Backoff::new(bound);
        let mut opened: Option<LockFile> = None;
        // Whether another process held the stripe at some try.
        let mut waited = false;
        loop {
            {
                let mut table = self.table();
                if let Some(hold) = table.holds.get_mut(stripe) {
                    match hold.names.get(name) {
                        Some(Slot::Queued(found)) => return Ok(Claim::Queued(found.clone())),
                        // Another thread decodes it: wait for its buffer below.
                        Some(Slot::Decoding) => {}
                        None => {
                            hold.names.insert(name.to_owned(), Slot::Decoding);
                            return Ok(self.claimed(stripe, name, waited));
                        }
                    }
                } else {
                    drop(table);
                    // Taken outside the table's lock: a test gate may stop this thread
                    // while it holds the stripe.
                    let file = match opened.take() {
                        Some(file) => file,
                        None => open()?,
                    };
                    if file.try_lock(Mode::Exclusive)? {
                        let mut table = self.table();
                        let hold = table.holds.entry(stripe.to_owned()).or_insert(Hold {
                            lock: None,
                            names: HashMap::new(),
                        });
                        // Only where `flock` does not exclude could a hold have appeared
                        // meanwhile; the frame is then decoded twice at worst.
                        if hold.lock.is_none() {
                            hold.lock = Some(file);
                        }
                        hold.names.insert(name.to_owned(), Slot::Decoding);
                        return Ok(self.claimed(stripe, name, waited));
                    }
                    waited = true;
                    opened = Some(file);
                }
            }
            let Some(pause) = backoff.next_pause() else {
                return Ok(Claim::TimedOut);
            };
            // A release in this process wakes the wait early; another process's is polled.
            let table = self.table();
            let _ = self
                .changed
                .wait_timeout(table, pause)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn claimed(&'static self, stripe: &Path, name: &str, waited: bool) -> Claim {
        Claim::Held(Claimed {
            writer: self,
            stripe: stripe.to_owned(),
            name: name.to_owned(),
            queued: false,
            waited,
        })
    }

    /// Queues `decoded`'s write as `name`'s entry of `disk`, under `stripe` when the
    /// decode held it. When the queue has no room for its bytes (or there is no writer
    /// thread), this thread writes it at once instead.
    fn queue(&self, job: Job) {
        let bytes = job.decoded.pixel_bytes();
        let inline = {
            let mut table = self.table();
            if let Some(stripe) = &job.stripe
                && let Some(slot) = table
                    .holds
                    .get_mut(stripe)
                    .and_then(|h| h.names.get_mut(&job.name))
            {
                *slot = Slot::Queued(job.decoded.clone());
            }
            table.pending += 1;
            // An empty queue takes any frame, however large.
            let room = table.queued_bytes == 0
                || table.queued_bytes + bytes <= QUEUE_BOUND.load(Ordering::Relaxed);
            if room && !table.no_writer {
                table.queued_bytes += bytes;
                table.queue.push_back(job);
                None
            } else {
                Some(job)
            }
        };
        match inline {
            None => self.work.notify_one(),
            Some(job) => self.write(job, 0),
        }
        self.changed.notify_all();
    }

    /// Gives `name`'s claim back (`counted`: and its pending write, which held `bytes` of
    /// the queue); lets the stripe go once no frame of it is left.
    fn finish(&self, stripe: Option<&Path>, name: &str, counted: bool, bytes: usize) {
        let released = {
            let mut table = self.table();
            if counted {
                table.pending = table.pending.saturating_sub(1);
            }
            table.queued_bytes = table.queued_bytes.saturating_sub(bytes);
            let mut released = None;
            if let Some(stripe) = stripe
                && let Some(hold) = table.holds.get_mut(stripe)
            {
                hold.names.remove(name);
                if hold.names.is_empty() {
                    released = table.holds.remove(stripe);
                }
            }
            released
        };
        // Closed outside the table's lock: closing takes the fork registry's.
        drop(released);
        self.changed.notify_all();
    }
}

impl Claimed {
    /// Whether another process held the frame's stripe when this thread first tried it.
    pub(crate) fn waited(&self) -> bool {
        self.waited
    }

    /// Hands the decoded frame over: answered from memory to this process's other threads
    /// until its entry is written, written behind, and the stripe let go after that.
    pub(crate) fn queue(mut self, sink: Arc<dyn RawSink>, decoded: Arc<Decoded>) {
        self.queued = true;
        self.writer.queue(Job {
            sink,
            name: std::mem::take(&mut self.name),
            decoded,
            stripe: Some(std::mem::take(&mut self.stripe)),
        });
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.queued {
            self.writer.finish(Some(&self.stripe), &self.name, false, 0);
        }
    }
}

/// Queues the write of a frame decoded without its stripe (the lock's bound passed).
pub(crate) fn queue_unlocked(sink: Arc<dyn RawSink>, name: &str, decoded: Arc<Decoded>) {
    current().queue(Job {
        sink,
        name: name.to_owned(),
        decoded,
        stripe: None,
    });
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain system calls on this thread's own id; a failure leaves the priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, WRITER_NICE);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = WRITER_NICE;
}
