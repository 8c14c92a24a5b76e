//! The store engine under both disk tiers: one checksummed entry file per key, shared by
//! every process on a machine. A tier is a format on it (`src/tier/disk.rs` for JPEGs,
//! `src/decoded/disk.rs` for raw frames): the engine reads, checks the length of, discards,
//! writes, locks, counts and evicts entries; the format says what an entry holds.
//!
//! Layout under `{dir}/v1/`:
//! - `{h[0..2]}/{h}`: the entry of the key whose hex blake3 is `h` (see
//!   [`crate::layout::disk_entry_path`]);
//! - `{h[0..2]}/.tmp-{pid}-{nonce}-{n}-{len}`: a write in progress, `len` bytes when done;
//! - `.usage`: the ledger, a page every process maps: bytes in use per shard directory,
//!   the eviction hand and the evictor's state;
//! - `.recent`: the referenced bits (CLOCK), a mapped bitmap set by hits and writes, sized
//!   by the capacity;
//! - `.lock`: `flock`ed shared to reserve, commit, remove or evict, exclusively to recount;
//!   opened once per process (see `lock.rs`);
//! - `.evictor`: `flock`ed (tried, never waited for) by the one evictor of the machine.
//!
//! A write goes to a temp file that is hard-linked into place (renamed where links are not
//! supported), so a reader sees the old entry, the new one or none, never a partial one.
//! Nothing is rewritten or truncated in place, which is what makes memory-mapping safe.
//! A writer reserves its bytes in the ledger before writing. The limit is the capacity less
//! the ledger and the bitmap (the tier's own files count in its capacity), or less when the
//! filesystem cannot spare it beside `min_free` (see `space.rs`). The evictor
//! (one process per machine, in the background) keeps usage between the low and the high
//! watermark of that limit, visiting one shard directory at a time with a CLOCK hand; a
//! writer whose reservation crosses the limit evicts one bounded batch itself, and a write
//! that still does not fit (the writes in progress alone fill the limit) is refused, so
//! entries and writes in progress never exceed it together; a write that finds the
//! filesystem full anyway is skipped and makes room. Nothing scans the whole directory on open,
//! read or write; see `docs/design.md` for the design and its trade-offs.

mod clock;
mod evict;
mod evictor;
mod format;
mod ledger;
mod lock;
mod rw;
mod share;
mod space;
mod temp;
#[cfg(test)]
mod tests;
mod verify;

pub use evict::Recount;
pub use evictor::EvictionStatus;
pub(crate) use format::Format;
pub use lock::FetchLock;
pub(crate) use lock::Stripes;
pub use share::{LimitedBy, MinFree, auto_capacity};
pub use verify::{BadEntry, VerifyReport};

use crate::error::Error;
use crate::localfs::Sharing;
use crate::metrics::{Metrics, TierCounters};
use clock::Clock;
use evict::for_each_file;
use ledger::Ledger;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use temp::process_nonce;

/// Sub-directory of the cache directory holding entries of the current format.
const FORMAT_DIR: &str = "v1";

/// Disk usage found by a scan of the cache directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Entry files.
    pub entries: u64,
    /// Their total size in bytes, headers included.
    pub bytes: u64,
    /// Temp files: writes in progress, or leftovers of writers that died.
    pub temp_files: u64,
    /// Bytes the shared ledger counts (entries plus writes in progress).
    pub accounted: u64,
    /// The configured capacity in bytes.
    pub capacity: u64,
}

/// A cache directory of checksummed entries: the engine a disk tier's format runs on.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    capacity: u64,
    /// The modes (and group) of what this tier creates.
    sharing: Sharing,
    ledger: Ledger,
    /// The referenced bits.
    clock: Clock,
    /// Bytes of the tier's own files (the ledger and the bitmap), counted in its capacity.
    metadata: u64,
    /// Whether this process is the directory's evictor.
    elected: AtomicBool,
    /// The slow sweep's next shard.
    sweep: AtomicU64,
    /// Dropped with the tier, which ends the evictor candidate thread.
    _stop: mpsc::Sender<()>,
    /// The other end, until the candidate thread takes it.
    stopped: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    /// Tells this process's temp files from those of an earlier process with the same pid.
    nonce: u32,
    temp_seq: AtomicU64,
    /// How much of the filesystem to leave free, and the other tiers sharing it.
    space: std::sync::Mutex<space::SpacePolicy>,
    /// Bytes this process reserved since it last sampled the filesystem.
    since_sample: AtomicU64,
    /// Set once the directory has failed, so the condition is logged once.
    warned: AtomicBool,
    /// Set once fetch locks have failed, so the condition is logged once.
    locks_warned: AtomicBool,
    /// Longest wait for any of this directory's locks, in nanoseconds (see
    /// [`Store::with_lock_wait`]).
    lock_wait_nanos: AtomicU64,
    /// The directory lock's file, opened once per process (see `lock.rs`).
    dir_lock: lock::DirLock,
    /// The fetch locks' stripes.
    fetch_stripes: Stripes,
    /// Longest entry file a read accepts (see [`Store::with_entry_limit`]).
    entry_limit: AtomicU64,
    metrics: Arc<Metrics>,
    /// Which of the metrics' tiers this directory counts into.
    counters: fn(&Metrics) -> &TierCounters,
}

fn nanos(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)
}

impl Store {
    /// Opens (lazily creating) the store in `{dir}/v1`, bounded to `capacity` bytes,
    /// creating files as `sharing` says and counting into the tier `counters` picks.
    ///
    /// Never fails, never blocks on the directory and never scans it: existing entries are
    /// served at once. With `elect`, a background thread stands for election as the
    /// machine's evictor for this directory (trying a lock now and then); the process
    /// elected rebuilds counters that were never set, evicts, and finds dead writers'
    /// leftovers. Without (tools and tests looking at a directory others use), its writers
    /// still evict a batch when usage crosses the capacity, so the cap holds.
    pub(crate) fn open(
        dir: impl Into<PathBuf>,
        capacity: u64,
        sharing: Sharing,
        metrics: Arc<Metrics>,
        counters: fn(&Metrics) -> &TierCounters,
        elect: bool,
    ) -> Self {
        let dir = dir.into().join(FORMAT_DIR);
        let ledger = Ledger::open(&dir, sharing);
        if ledger.is_private() {
            TierCounters::bump(&metrics.private_ledgers);
        }
        let clock = Clock::open(&dir, capacity, sharing);
        let metadata = if ledger.is_shared() {
            ledger::LEDGER_LEN
        } else {
            0
        } + clock.file_len();
        let (stop, stopped) = mpsc::channel();
        let store = Store {
            inner: Arc::new(Inner {
                clock,
                metadata,
                ledger,
                elected: AtomicBool::new(false),
                sweep: AtomicU64::new(128),
                _stop: stop,
                stopped: std::sync::Mutex::new(Some(stopped)),
                dir_lock: lock::DirLock::new(dir.join(lock::LOCK_FILE), sharing),
                fetch_stripes: Stripes::new(
                    dir.join(lock::FETCH_LOCK_DIR),
                    lock::FETCH_LOCK_STRIPES,
                    sharing,
                    crate::flock::gate::LockKind::Fetch,
                ),
                entry_limit: AtomicU64::new(capacity),
                dir,
                capacity,
                sharing,
                nonce: process_nonce(),
                temp_seq: AtomicU64::new(0),
                space: std::sync::Mutex::new(space::SpacePolicy::default()),
                since_sample: AtomicU64::new(u64::MAX / 2),
                warned: AtomicBool::new(false),
                locks_warned: AtomicBool::new(false),
                lock_wait_nanos: AtomicU64::new(nanos(crate::flock::DEFAULT_LOCK_WAIT)),
                metrics,
                counters,
            }),
        };
        if elect {
            store.start_candidate();
        }
        store
    }

    /// Refuses, as a broken entry, any entry file longer than `limit` bytes, before
    /// anything is allocated for it (the default is the capacity: no write makes one).
    pub fn with_entry_limit(self, limit: u64) -> Self {
        self.inner
            .entry_limit
            .store(limit.min(self.inner.capacity), Ordering::Relaxed);
        self
    }

    /// Bounds every wait for one of this directory's locks (the directory lock, fetch locks,
    /// writers' temp-file locks) to `wait`; past it the waiter goes on without the lock,
    /// counted in [`crate::Stats`]. The default is [`crate::flock::DEFAULT_LOCK_WAIT`].
    pub fn with_lock_wait(self, wait: Duration) -> Self {
        self.inner
            .lock_wait_nanos
            .store(nanos(wait), Ordering::Relaxed);
        self
    }

    /// The bound of a wait for one of this directory's locks.
    pub fn lock_wait(&self) -> Duration {
        Duration::from_nanos(self.inner.lock_wait_nanos.load(Ordering::Relaxed))
    }

    /// The counters this directory reports into.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The directory holding this format's entries.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Bytes the shared ledger counts now: entries plus writes in progress.
    pub fn accounted(&self) -> u64 {
        self.inner.ledger.used()
    }

    /// Where `key`'s entry lives: [`crate::layout::disk_entry_path`] in this directory.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.inner.dir.join(crate::layout::disk_entry_path(key))
    }

    /// The counters of the tier this store runs.
    pub(crate) fn counters(&self) -> &TierCounters {
        (self.inner.counters)(&self.inner.metrics)
    }

    /// Logs a failing directory once; the chain counts every occurrence.
    pub(crate) fn warn_once(&self, err: &Error) {
        if !self.inner.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "disk cache {} is failing, reads pass through to the origin: {err}",
                self.inner.dir.display()
            );
        }
    }

    /// Scans the directory and reports its usage.
    pub fn usage(&self) -> DiskUsage {
        let mut usage = DiskUsage {
            capacity: self.inner.capacity,
            accounted: self.accounted(),
            ..DiskUsage::default()
        };
        for_each_file(&self.inner.dir, |_, meta, temp| {
            if temp.is_some() {
                usage.temp_files += 1;
            } else {
                usage.entries += 1;
                usage.bytes += meta.len();
            }
        });
        usage
    }
}
