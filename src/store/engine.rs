//! `Store`: the handle on one store directory and what every process keeps of it (the
//! mapped ledger and referenced bits, the directory lock, the settings); what it does is in
//! the files beside this one.

use super::clock::Clock;
use super::ledger::{self, Ledger};
use super::lock::{self, DirLock, Stripes};
use super::share::MinFree;
use super::temp::process_nonce;
use crate::error::Error;
use crate::localfs::Sharing;
use crate::metrics::{Metrics, TierCounters};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Sub-directory of the cache directory holding entries of the current format.
pub(super) const FORMAT_DIR: &str = "v1";

/// A cache directory of checksummed entries: the engine a disk tier's format runs on.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) capacity: u64,
    /// The modes (and group) of what this tier creates.
    pub(super) sharing: Sharing,
    pub(super) ledger: Ledger,
    /// The referenced bits.
    pub(super) clock: Clock,
    /// Bytes of the tier's own files (the ledger and the bitmap), counted in its capacity.
    pub(super) metadata: u64,
    /// Whether this process is the directory's evictor.
    pub(super) elected: AtomicBool,
    /// The slow sweep's next shard.
    pub(super) sweep: AtomicU64,
    /// Dropped with the tier, which ends the evictor candidate thread.
    pub(super) _stop: mpsc::Sender<()>,
    /// The other end, until the candidate thread takes it.
    pub(super) stopped: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
    /// Tells this process's temp files from those of an earlier process with the same pid.
    pub(super) nonce: u32,
    pub(super) temp_seq: AtomicU64,
    /// How much of the filesystem to leave free, and the other tiers sharing it.
    pub(super) space: std::sync::Mutex<SpacePolicy>,
    /// Bytes this process reserved since it last sampled the filesystem.
    pub(super) since_sample: AtomicU64,
    /// Set once the directory has failed, so the condition is logged once.
    pub(super) warned: AtomicBool,
    /// Set once fetch locks have failed, so the condition is logged once.
    pub(super) locks_warned: AtomicBool,
    /// Longest wait for any of this directory's locks, in nanoseconds (see
    /// [`Store::with_lock_wait`]).
    pub(super) lock_wait_nanos: AtomicU64,
    /// The directory lock's file, opened once per process (see `lock.rs`).
    pub(super) dir_lock: DirLock,
    /// The fetch locks' stripes.
    pub(super) fetch_stripes: Stripes,
    /// Longest entry file a read accepts (see [`Store::with_entry_limit`]).
    pub(super) entry_limit: AtomicU64,
    pub(super) metrics: Arc<Metrics>,
    /// Which of the metrics' tiers this directory counts into.
    pub(super) counters: fn(&Metrics) -> &TierCounters,
}

fn nanos(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)
}

impl Store {
    /// Opens (lazily creating) the store in `{dir}/v1`, bounded to `capacity` bytes,
    /// creating files as `sharing` says and counting into the tier `counters` picks.
    ///
    /// Never fails, never blocks on the directory and never scans it: existing entries are
    /// served at once. It does not stand for election as the evictor until
    /// [`Store::stand_for_evictor`] (tools and tests looking at a directory others use
    /// never do): its writers still evict a batch when usage crosses the capacity, so the
    /// cap holds.
    pub(crate) fn open(
        dir: impl Into<PathBuf>,
        capacity: u64,
        sharing: Sharing,
        metrics: Arc<Metrics>,
        counters: fn(&Metrics) -> &TierCounters,
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
        Store {
            inner: Arc::new(Inner {
                clock,
                metadata,
                ledger,
                elected: AtomicBool::new(false),
                sweep: AtomicU64::new(128),
                _stop: stop,
                stopped: std::sync::Mutex::new(Some(stopped)),
                dir_lock: DirLock::new(dir.join(lock::LOCK_FILE), sharing),
                fetch_stripes: Stripes::new(
                    dir.join(lock::FETCH_LOCK_DIR),
                    lock::FETCH_LOCK_STRIPES,
                    sharing,
                    crate::flock::LockKind::Fetch,
                ),
                entry_limit: AtomicU64::new(capacity),
                dir,
                capacity,
                sharing,
                nonce: process_nonce(),
                temp_seq: AtomicU64::new(0),
                space: std::sync::Mutex::new(SpacePolicy::default()),
                since_sample: AtomicU64::new(u64::MAX / 2),
                warned: AtomicBool::new(false),
                locks_warned: AtomicBool::new(false),
                lock_wait_nanos: AtomicU64::new(nanos(crate::flock::DEFAULT_LOCK_WAIT)),
                metrics,
                counters,
            }),
        }
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
}

/// Another tier on the filesystem, whose usage is read from its ledger.
pub(super) struct Sibling {
    pub(super) ledger: Ledger,
    pub(super) weight: u64,
}

/// A store's free-space settings.
#[derive(Default)]
pub(super) struct SpacePolicy {
    pub(super) min_free: MinFree,
    pub(super) siblings: Vec<Sibling>,
}
