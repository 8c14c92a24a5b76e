//! Free space as a limit like the capacity: what the filesystem under a cache directory can
//! spare (`statvfs`), shared between the disk tiers that live on it, and the defaults that
//! follow the filesystem's size.
//!
//! A tier's effective limit is `min(capacity, what the filesystem spares it)`. The cache's
//! tiers on one filesystem may hold together `S = their usage + free − min_free`; each is
//! sure of its share of `S`, proportional to its capacity, and may borrow what the others
//! leave unused (`S − their usage`), which it gives back by eviction as they grow. The
//! filesystem is sampled by the evictor on each of its turns, by a writer every few MiB
//! written, and by a write that found it full; never per write.

use super::engine::{FORMAT_DIR, Sibling, Store};
use super::ledger::{Ledger, word};
use super::share::{MinFree, Share, fs_space, is_full, limit, same_fs};
use crate::metrics::LimitedBy;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// A writer samples the filesystem again after reserving this fraction of the last limit
/// (bounded below and above by the next two constants).
const SAMPLE_EVERY_FRACTION: u64 = 16;
const SAMPLE_EVERY_MIN: u64 = 1 << 20;
const SAMPLE_EVERY_MAX: u64 = 64 << 20;

/// What the last sample found, as the ledger keeps it (every process shares it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sampled {
    pub(super) limit: u64,
    pub(super) limited_by: LimitedBy,
    pub(super) fs_size: u64,
    pub(super) fs_free: u64,
    pub(super) min_free: u64,
}

impl Store {
    /// Keeps `min_free` of the directory's filesystem free (see [`MinFree`]); the default is
    /// [`MinFree::Auto`].
    pub fn with_min_free(self, min_free: MinFree) -> Self {
        if let Ok(mut policy) = self.inner.space.lock() {
            policy.min_free = min_free;
        }
        self.force_sample();
        self
    }

    /// Shares the filesystem's spare space with the tier whose directory is `root` (as
    /// given to [`Store::open`]), of capacity `weight`, if it is on the same filesystem.
    pub(crate) fn with_sibling(self, root: &Path, weight: u64) -> Self {
        let dir: PathBuf = root.join(FORMAT_DIR);
        if weight == 0 || dir == self.inner.dir || !same_fs(&self.inner.dir, &dir) {
            return self;
        }
        match Ledger::map(&dir, self.inner.sharing) {
            Ok(map) => {
                if let Ok(mut policy) = self.inner.space.lock() {
                    policy.siblings.push(Sibling {
                        ledger: Ledger::Shared(map),
                        weight,
                    });
                }
                self.force_sample();
            }
            Err(e) => tracing::debug!("disk tier {} not shared with: {e}", dir.display()),
        }
        self
    }

    /// The limit usage is kept under: the capacity, or less when the filesystem cannot
    /// spare that much. Samples the filesystem when this process has not yet, or has
    /// reserved enough since (see [`SAMPLE_EVERY_FRACTION`]).
    pub(super) fn limit(&self) -> u64 {
        let ledger = &self.inner.ledger;
        let last = ledger.get(word::LIMIT);
        let every = (last / SAMPLE_EVERY_FRACTION).clamp(SAMPLE_EVERY_MIN, SAMPLE_EVERY_MAX);
        if ledger.get(word::SAMPLED_MS) == 0
            || self.inner.since_sample.load(Ordering::Relaxed) >= every
        {
            return self.sample_space().limit;
        }
        last
    }

    /// Counts `len` reserved bytes towards the next sample.
    pub(super) fn count_towards_sample(&self, len: u64) {
        self.inner.since_sample.fetch_add(len, Ordering::Relaxed);
    }

    /// Makes the next [`Store::limit`] sample the filesystem.
    pub(super) fn force_sample(&self) {
        self.inner
            .since_sample
            .store(u64::MAX / 2, Ordering::Relaxed);
    }

    /// Asks the filesystem how much it can spare and publishes the limit in the ledger.
    pub(super) fn sample_space(&self) -> Sampled {
        self.inner.since_sample.store(0, Ordering::Relaxed);
        // The tier's own files (ledger, bitmap) count in its capacity: entries get the rest.
        let capacity = self.inner.capacity.saturating_sub(self.inner.metadata);
        let own = Share {
            used: self.inner.ledger.used(),
            weight: self.inner.capacity,
        };
        let sampled = match (fs_space(&self.inner.dir), self.inner.space.lock()) {
            (Ok(fs), Ok(policy)) => {
                let min_free = policy.min_free.bytes(fs.size);
                let others: Vec<Share> = policy
                    .siblings
                    .iter()
                    .map(|s| Share {
                        used: s.ledger.used(),
                        weight: s.weight,
                    })
                    .collect();
                let (limit, limited_by) = limit(capacity, own, &others, fs.free, min_free);
                Sampled {
                    limit,
                    limited_by,
                    fs_size: fs.size,
                    fs_free: fs.free,
                    min_free,
                }
            }
            _ => Sampled {
                limit: capacity,
                limited_by: LimitedBy::Budget,
                ..Sampled::default()
            },
        };
        let ledger = &self.inner.ledger;
        ledger.set(word::LIMIT, sampled.limit);
        ledger.set(word::LIMITED_BY, sampled.limited_by.code());
        ledger.set(word::FS_SIZE, sampled.fs_size);
        ledger.set(word::FS_FREE, sampled.fs_free);
        ledger.set(word::MIN_FREE, sampled.min_free);
        ledger.set(word::SAMPLED_MS, super::ledger::now_ms().max(1));
        sampled
    }

    /// Looks at a failed write's error: a full filesystem makes room (see
    /// [`Store::filesystem_full`]); the write is skipped either way.
    pub(super) fn on_write_error(&self, e: &io::Error) {
        if is_full(e) {
            self.filesystem_full();
        }
    }

    /// A write found the filesystem full: counts it, samples the filesystem again (which
    /// lowers the limit) and evicts one bounded batch down to the new limit, so that later
    /// writes find room. The write itself is skipped by its caller.
    pub(super) fn filesystem_full(&self) {
        self.inner.ledger.bump(word::FULL_WRITES);
        let limit = self.sample_space().limit;
        self.evict_to(limit, super::evict::WRITER_BATCH_ENTRIES, false);
    }
}
