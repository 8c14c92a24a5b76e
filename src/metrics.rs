//! Counters per tier, cheap to bump from any thread and readable as a plain snapshot.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one tier.
#[derive(Debug, Default)]
pub struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// A point-in-time copy of one tier's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierStats {
    /// Reads answered by this tier.
    pub hits: u64,
    /// Reads this tier could not answer.
    pub misses: u64,
    /// Payload bytes returned by hits.
    pub bytes_read: u64,
    /// Payload bytes stored.
    pub bytes_written: u64,
    /// Entries stored.
    pub writes: u64,
    /// Entries found corrupt, removed and treated as misses (disk tier).
    pub corrupt: u64,
    /// Entries removed to stay within capacity.
    pub evictions: u64,
    /// Operations that failed (for a local tier: degraded to a miss or a skipped write).
    pub errors: u64,
    /// Retried origin requests.
    pub retries: u64,
}

impl TierCounters {
    pub(crate) fn hit(&self, bytes: usize) {
        self.hits.fetch_add(1, Relaxed);
        self.bytes_read.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    pub(crate) fn wrote(&self, bytes: usize) {
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> TierStats {
        TierStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            writes: self.writes.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            errors: self.errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }
}

/// Counters of a whole cache: one set per tier, plus what the chain itself observed.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The memory tier.
    pub memory: TierCounters,
    /// The disk tier.
    pub disk: TierCounters,
    /// Blob storage.
    pub origin: TierCounters,
    /// Gets that joined a fetch already in flight instead of starting their own.
    pub(crate) coalesced: AtomicU64,
    /// Object names under a timeline that are not canonical frames or overlays.
    pub(crate) skipped_names: AtomicU64,
    /// Loads that used the local copy of a manifest because the origin failed.
    pub(crate) offline_loads: AtomicU64,
    /// Misses served by another process's fetch: this one waited for its disk entry.
    pub(crate) fetched_by_other_process: AtomicU64,
    /// Waits for another process's fetch that ran out of time (this one then fetched).
    pub(crate) fetch_lock_timeouts: AtomicU64,
    /// The decoded-frame memory tier.
    pub decoded_memory: TierCounters,
    /// The decoded-frame disk tier.
    pub decoded_disk: TierCounters,
    /// JPEG decodes this process ran for loads.
    pub(crate) decodes: AtomicU64,
    /// Frames another process was decoding: this one waited on its decode lock, then
    /// mapped the entry it wrote.
    pub(crate) decode_waits: AtomicU64,
    /// Manifests read from the origin that did not parse (their timeline loaded without
    /// metadata).
    pub(crate) unreadable_manifests: AtomicU64,
    /// Disk tiers whose shared ledger page could not be allocated in the cache directory
    /// (full or read-only), which count their bytes privately instead.
    pub(crate) private_ledgers: AtomicU64,
    /// Waits for a frame's decode lock that ran out of time (this one then decoded).
    pub(crate) decode_lock_timeouts: AtomicU64,
    /// Waits for a disk cache directory's lock, or a write's temp-file lock, that ran out of
    /// time (this one then went on without it).
    pub(crate) dir_lock_timeouts: AtomicU64,
    /// Thumbnails this process made (decoded at a scale and encoded again).
    pub(crate) thumbnails: AtomicU64,
    /// Raw frames decoded here whose entry could not be written (disk full, I/O error).
    pub(crate) raw_writes_dropped: AtomicU64,
    /// Requests sent to the origin.
    pub(crate) origin_requests: AtomicU64,
}

/// A point-in-time copy of every counter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// The memory tier.
    pub memory: TierStats,
    /// The disk tier.
    pub disk: TierStats,
    /// Blob storage.
    pub origin: TierStats,
    /// Gets served by joining a fetch already in flight.
    pub coalesced: u64,
    /// Listed object names that were not canonical and were skipped.
    pub skipped_names: u64,
    /// Timeline loads served from the local copy of their manifest while the origin failed.
    pub offline_loads: u64,
    /// Misses served by another process's fetch (it held the key's fetch lock; this one
    /// waited for its disk entry instead of downloading the key again).
    pub fetched_by_other_process: u64,
    /// Waits for another process's fetch that ran out of time, after which this one fetched.
    pub fetch_lock_timeouts: u64,
    /// The decoded-frame memory tier.
    pub decoded_memory: TierStats,
    /// The decoded-frame disk tier.
    pub decoded_disk: TierStats,
    /// JPEG decodes this process ran for loads.
    pub decodes: u64,
    /// Frames another process was decoding when this one wanted them: it waited on the
    /// frame's decode lock, then mapped the entry the other wrote. A frame whose entry was
    /// already on disk is a plain hit (`decoded_disk.hits`), not a wait.
    pub decode_waits: u64,
    /// How eviction stands on the disk tier's directory (machine-wide), when there is one;
    /// filled in by [`crate::FrameCache::stats`].
    pub disk_eviction: Option<crate::tier::EvictionStatus>,
    /// The same for the decoded-frame disk tier.
    pub decoded_disk_eviction: Option<crate::tier::EvictionStatus>,
    /// Manifests that did not parse: each time, a timeline loaded without its metadata
    /// (chunk ids, timestamps, hashes); the log says why.
    pub unreadable_manifests: u64,
    /// Disk tiers that could not allocate the shared ledger page in their cache directory
    /// (a full or read-only filesystem) and count their usage privately: the capacity then
    /// holds per process, not per machine.
    pub private_ledgers: u64,
    /// Waits for a frame's decode lock that ran out of time
    /// ([`crate::CacheConfig::lock_wait`]), after which this one decoded the frame itself.
    pub decode_lock_timeouts: u64,
    /// Waits for a disk cache directory's lock (or a write's temp-file lock) that ran out of
    /// time, after which this one went on without it.
    pub dir_lock_timeouts: u64,
    /// Lock descriptors this process inherited through `fork` and closed at once (its
    /// parent's threads held them open at the fork); process-wide.
    pub inherited_locks_closed: u64,
    /// Thumbnails this process made (decoded at a scale and encoded again); their decodes
    /// count in `decodes` too.
    pub thumbnails: u64,
    /// Raw frames this process decoded whose disk entry could not be written: the decoded
    /// disk tier was full beside the writes in progress, or an I/O error (the frame is
    /// decoded again on a later miss). Never for lack of room in the queue behind loads:
    /// a write that does not fit there is done by the loader itself.
    pub raw_writes_dropped: u64,
    /// Raw-frame writes queued behind loads and not yet done; process-wide.
    pub raw_writes_pending: u64,
    /// Requests this cache sent to the origin: reads, stats, writes, deletes, and one per
    /// page of 1,000 names of each listing (retries of a failed attempt not counted).
    pub origin_requests: u64,
}

impl Metrics {
    /// Copies every counter.
    pub fn snapshot(&self) -> Stats {
        Stats {
            memory: self.memory.snapshot(),
            disk: self.disk.snapshot(),
            origin: self.origin.snapshot(),
            coalesced: self.coalesced.load(Relaxed),
            skipped_names: self.skipped_names.load(Relaxed),
            offline_loads: self.offline_loads.load(Relaxed),
            fetched_by_other_process: self.fetched_by_other_process.load(Relaxed),
            fetch_lock_timeouts: self.fetch_lock_timeouts.load(Relaxed),
            decoded_memory: self.decoded_memory.snapshot(),
            decoded_disk: self.decoded_disk.snapshot(),
            decodes: self.decodes.load(Relaxed),
            decode_waits: self.decode_waits.load(Relaxed),
            disk_eviction: None,
            decoded_disk_eviction: None,
            unreadable_manifests: self.unreadable_manifests.load(Relaxed),
            private_ledgers: self.private_ledgers.load(Relaxed),
            decode_lock_timeouts: self.decode_lock_timeouts.load(Relaxed),
            dir_lock_timeouts: self.dir_lock_timeouts.load(Relaxed),
            inherited_locks_closed: crate::flock::inherited_locks_closed(),
            thumbnails: self.thumbnails.load(Relaxed),
            raw_writes_dropped: self.raw_writes_dropped.load(Relaxed),
            raw_writes_pending: 0, // this process's figure: set by `FrameCache::stats`
            origin_requests: self.origin_requests.load(Relaxed),
        }
    }
}
