//! One fetch of the chain: disk, then (once per machine) the origin, filling the tiers
//! above; and the cross-process turn-taking that makes it once per machine.

use super::{FetchTarget, Hit, Inner};
use crate::error::{Error, Result};
use crate::flock::{Backoff, LockFile};
use crate::metrics::TierCounters;
use crate::tier::{FetchLock, Limit, Source};
use bytes::Bytes;

/// A miss's turn among the processes of the machine that want the same key.
enum FetchTurn {
    /// Another process fetched it meanwhile: its disk entry.
    FetchedByOther((Bytes, blake3::Hash)),
    /// Fetch it; holding the lock (if any) until the entry is on disk.
    Fetch(Option<LockFile>),
}

impl Inner {
    /// Fetch `id` of `want`: disk, then (once per machine) origin, filling the tiers above.
    ///
    /// A write or invalidation of the key while the fetch runs ends the flight early; the
    /// bytes fetched may then be older than the write's, so they are served to the
    /// waiters but withdrawn from the local tiers.
    pub(super) async fn fetch(&self, want: &FetchTarget, id: u64) -> Result<Option<Hit>> {
        let local = want.local.as_str();
        if let Some((bytes, hash)) = self.disk_hit(local).await {
            self.promote(local, &bytes, id).await;
            return Ok(Some(Hit {
                bytes,
                source: Source::Disk,
                blake3: Some(hash),
            }));
        }
        let _lock = match self.fetch_turn(local).await {
            FetchTurn::FetchedByOther((bytes, hash)) => {
                self.promote(local, &bytes, id).await;
                return Ok(Some(Hit {
                    bytes,
                    source: Source::Disk,
                    blake3: Some(hash),
                }));
            }
            FetchTurn::Fetch(lock) => lock,
        };
        let limit = self.limit_of(want);
        let read = match &want.version {
            Some(version) => self.origin.get_at(&want.key, version, limit).await,
            None => self.origin.get(&want.key, limit).await,
        };
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) if e.is_stale_version() => {
                // Rewritten since it was listed: serve what is there now, keep nothing.
                tracing::debug!("{}: changed since listed; read unconditionally", want.key);
                return match self.origin.get(&want.key, limit).await? {
                    Some(bytes) => Ok(Some(Hit {
                        blake3: Some(blake3::hash(&bytes)),
                        bytes,
                        source: Source::Origin,
                    })),
                    None => Ok(None),
                };
            }
            Err(e) => return Err(e),
        };
        // Hashed once here for the disk entry's header and for the caller's checks.
        let hash = blake3::hash(&bytes);
        if self.is_current(local, id) {
            self.fill_local(local, bytes.clone(), Some(hash)).await;
            if !self.is_current(local, id) {
                self.drop_local(local).await;
            }
        }
        Ok(Some(Hit {
            bytes,
            source: Source::Origin,
            blake3: Some(hash),
        }))
    }

    /// The bound of `want`'s origin read: its own, within the object size limit.
    fn limit_of(&self, want: &FetchTarget) -> Limit {
        let max = self
            .max_object_size
            .load(std::sync::atomic::Ordering::Relaxed);
        match want.limit {
            Some(limit) if limit.bytes <= max => limit,
            _ => Limit::object(max),
        }
    }

    /// A verified disk hit with its payload's blake3.
    pub(super) async fn disk_hit(&self, local: &str) -> Option<(Bytes, blake3::Hash)> {
        match self.disk.as_ref()?.get_verified(local).await {
            Ok(hit) => hit,
            Err(e) => {
                self.local_failed(Source::Disk, &e);
                None
            }
        }
    }

    /// A second look at the disk for a key just missed: a miss here is not counted again.
    async fn disk_hit_quiet(&self, local: &str) -> Option<(Bytes, blake3::Hash)> {
        let disk = self.disk.as_ref()?;
        if !disk.path_of(local).is_file() {
            return None;
        }
        self.disk_hit(local).await
    }

    /// Copies a disk hit into memory, unless a write replaced the flight meanwhile.
    async fn promote(&self, local: &str, bytes: &Bytes, id: u64) {
        if let Some(memory) = &self.memory {
            // A disk hit is an owned buffer (the tier reads, it does not map): shared as is.
            memory.insert(local, bytes.clone()).await;
            if !self.is_current(local, id) {
                memory.invalidate(local).await;
            }
        }
    }

    /// Waits for this process's turn to fetch `local` for the machine: the key's fetch lock,
    /// or the disk entry another process wrote while holding it. The wait is bounded by the
    /// disk tier's lock bound, past which this process fetches too.
    async fn fetch_turn(&self, local: &str) -> FetchTurn {
        let Some(disk) = &self.disk else {
            return FetchTurn::Fetch(None);
        };
        let mut backoff = Backoff::new(disk.lock_wait());
        loop {
            match disk.try_fetch_lock(local) {
                FetchLock::Held(lock) => {
                    // Another process may have fetched the key between this one's disk miss
                    // and now (waiting or not): look again before downloading it.
                    if let Some(bytes) = self.disk_hit_quiet(local).await {
                        TierCounters::bump(&self.metrics.fetched_by_other_process);
                        return FetchTurn::FetchedByOther(bytes);
                    }
                    return FetchTurn::Fetch(Some(lock));
                }
                FetchLock::Unsupported => return FetchTurn::Fetch(None),
                FetchLock::Busy => match backoff.next_pause() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        tracing::warn!(
                            "{local:?}: another fetch held its lock for {:?}; fetching \
                             without it",
                            disk.lock_wait()
                        );
                        TierCounters::bump(&self.metrics.fetch_lock_timeouts);
                        return FetchTurn::Fetch(None);
                    }
                },
            }
        }
    }

    /// Stores `value` in the local tiers (the origin has it); a disk failure is counted.
    /// `hash` is its blake3 when the caller has it.
    pub(super) async fn fill_local(&self, key: &str, value: Bytes, hash: Option<blake3::Hash>) {
        if let Some(disk) = &self.disk
            && let Err(e) = match hash {
                Some(hash) => disk.put_hashed(key, value.clone(), hash).await,
                None => disk.put(key, value.clone()).await,
            }
        {
            self.local_failed(Source::Disk, &e);
        }
        if let Some(memory) = &self.memory {
            memory.insert(key, value).await;
        }
    }

    /// Whether flight `id` is still the one for `key` (no write or invalidation since).
    pub(super) fn is_current(&self, key: &str, id: u64) -> bool {
        self.inflight
            .lock()
            .expect("inflight lock")
            .get(key)
            .is_some_and(|f| f.id == id)
    }

    /// Drops `key` from memory and disk; the next get asks the origin again.
    pub(super) async fn drop_local(&self, key: &str) {
        if let Some(memory) = &self.memory {
            memory.invalidate(key).await;
        }
        if let Some(disk) = &self.disk
            && let Err(e) = disk.remove(key).await
        {
            self.local_failed(Source::Disk, &e);
        }
    }

    /// Ends flight `id` unless a write already replaced it.
    ///
    /// Called from [`FinishFlight`]'s drop, so it must not panic.
    pub(super) fn finish(&self, key: &str, id: u64) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(key).is_some_and(|f| f.id == id) {
            inflight.remove(key);
        }
    }

    pub(super) fn local_failed(&self, tier: Source, err: &Error) {
        match tier {
            Source::Disk => {
                TierCounters::bump(&self.metrics.disk.errors);
                if let Some(disk) = &self.disk {
                    disk.warn_once(err);
                }
            }
            Source::Memory => TierCounters::bump(&self.metrics.memory.errors),
            Source::Origin => TierCounters::bump(&self.metrics.origin.errors),
        }
    }
}

/// Ends a flight when its fetch task ends, by return, error or panic.
pub(super) struct FinishFlight<'a> {
    pub(super) inner: &'a Inner,
    pub(super) local: &'a str,
    pub(super) id: u64,
}

impl Drop for FinishFlight<'_> {
    fn drop(&mut self) {
        self.inner.finish(self.local, self.id);
    }
}
