//! The read-through chain: `memory => disk => origin`.
//!
//! A hit in a lower tier fills the tiers above it. Concurrent misses of one key share one
//! fetch, which runs as its own task: a caller that is cancelled or times out only stops
//! waiting, the fetch goes on for the others. Local tiers never fail a read; their errors
//! are counted and the read falls through to the origin.
//!
//! Reads that know the object's version (from a listing or a stat) keep their local copies
//! under it ([`TieredCache::local_key`]), so a copy of another version is never served.
//! Misses are also single-flight across the processes sharing a disk tier: one takes the
//! key's fetch lock and downloads, the others wait for its disk entry (bounded by
//! [`crate::CacheConfig::lock_wait`], past which a waiter fetches itself).

use crate::error::{Error, Result};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{DiskTier, Limit, MemoryTier, Origin, Source, Version};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

mod build;
mod fetch;

use fetch::FinishFlight;

/// Bytes read through the chain and the tier that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The payload.
    pub bytes: Bytes,
    /// The tier that held it.
    pub source: Source,
    /// The payload's blake3 when the read already computed or verified it (disk hits and
    /// origin reads), so that no caller hashes the same bytes twice.
    pub blake3: Option<blake3::Hash>,
}

pub use crate::config::DEFAULT_MAX_OBJECT_SIZE;

type FlightResult = std::result::Result<Option<Hit>, Arc<Error>>;

/// What a fetch reads: the object key at the origin, the version it must be (if known),
/// and the key of its local copies.
#[derive(Clone)]
pub(super) struct FetchTarget {
    pub(super) key: String,
    pub(super) version: Option<Version>,
    pub(super) local: String,
    /// A bound of its own below the object size limit (manifest chunks), if any.
    pub(super) limit: Option<Limit>,
}

pub(super) struct Flight {
    pub(super) id: u64,
    /// The fork generation that started it: a forked child never joins a flight whose
    /// task ran on its parent's runtime (gone in the child); it starts its own.
    generation: u64,
    result: Shared<BoxFuture<'static, FlightResult>>,
}

/// Memory, disk and origin composed into one read-through, write-through cache.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    memory: Option<MemoryTier>,
    disk: Option<DiskTier>,
    origin: Arc<dyn Origin>,
    inflight: Mutex<HashMap<String, Flight>>,
    next_flight: AtomicU64,
    metrics: Arc<Metrics>,
    /// Largest object an origin read keeps (see [`TieredCache::with_max_object_size`]).
    max_object_size: AtomicU64,
}

impl TieredCache {
    /// Composes the tiers; `memory` and `disk` are optional.
    pub fn new(
        memory: Option<MemoryTier>,
        disk: Option<DiskTier>,
        origin: Arc<dyn Origin>,
        metrics: Arc<Metrics>,
    ) -> Self {
        TieredCache {
            inner: Arc::new(Inner {
                memory,
                disk,
                origin,
                inflight: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                metrics,
                max_object_size: AtomicU64::new(DEFAULT_MAX_OBJECT_SIZE),
            }),
        }
    }

    /// Refuses origin objects over `limit` bytes with [`Error::ObjectTooLarge`]: a read
    /// stops as soon as its object shows to be larger (never read whole), and nothing of it
    /// is returned or kept in any tier. (Callers that have the listed size refuse before
    /// reading; see [`crate::OriginConfig::max_object_size`].)
    pub fn with_max_object_size(self, limit: u64) -> Self {
        self.inner.max_object_size.store(limit, Relaxed);
        self
    }

    /// The largest origin object this cache reads, in bytes.
    pub fn max_object_size(&self) -> u64 {
        self.inner.max_object_size.load(Relaxed)
    }

    /// The memory tier, if configured.
    pub fn memory(&self) -> Option<&MemoryTier> {
        self.inner.memory.as_ref()
    }

    /// The disk tier, if configured.
    pub fn disk(&self) -> Option<&DiskTier> {
        self.inner.disk.as_ref()
    }

    /// The origin.
    pub fn origin(&self) -> &Arc<dyn Origin> {
        &self.inner.origin
    }

    /// The counters of every tier.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Fetches currently in flight. A test hook (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn fetches_in_flight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }

    /// The key local tiers keep `key` under: `key` itself, or at a version `{key}\n{tag}`
    /// (object keys never contain control characters, so the two never collide).
    pub fn local_key(key: &str, version: Option<&Version>) -> String {
        crate::layout::local_key(key, version.map(|v| v.tag.as_str()))
    }

    /// Reads `key` through the tiers and reports which one answered. Without a version, a
    /// local copy is served as it is; see [`TieredCache::get_at`] for revalidated reads.
    ///
    /// # Errors
    /// Only the origin's errors; a failing local tier is a miss.
    pub async fn get_hit(&self, key: &str) -> Result<Option<Hit>> {
        self.get_at(key, None).await
    }

    /// Reads `key` at `version` (as a listing or stat just reported it): only a local copy
    /// of that version is served, and the origin read carries the version as a precondition
    /// where the backend has ETags. If the object changed again since, the current bytes
    /// are served but not kept (their version is unknown).
    ///
    /// # Errors
    /// Only the origin's errors; a failing local tier is a miss.
    pub async fn get_at(&self, key: &str, version: Option<&Version>) -> Result<Option<Hit>> {
        self.get_within(key, version, None).await
    }

    /// [`TieredCache::get_at`] of an object with a bound of its own below the object size
    /// limit (`limit`, when given): an origin read past it is refused with
    /// [`Error::ObjectTooLarge`] naming it.
    ///
    /// # Errors
    /// As [`TieredCache::get_at`].
    pub async fn get_within(
        &self,
        key: &str,
        version: Option<&Version>,
        limit: Option<Limit>,
    ) -> Result<Option<Hit>> {
        let local = Self::local_key(key, version);
        if let Some(memory) = &self.inner.memory
            && let Some(bytes) = memory.lookup(&local).await
        {
            return Ok(Some(Hit {
                bytes,
                source: Source::Memory,
                blake3: None,
            }));
        }
        let flight = self.join_or_start(FetchTarget {
            key: key.to_owned(),
            version: version.cloned(),
            local,
            limit,
        });
        flight.await.map_err(Error::from_shared)
    }

    fn join_or_start(&self, want: FetchTarget) -> Shared<BoxFuture<'static, FlightResult>> {
        let mut inflight = self.inner.inflight.lock().expect("inflight lock");
        let generation = crate::flock::fork_generation();
        if let Some(flight) = inflight.get(&want.local)
            && flight.generation == generation
        {
            TierCounters::bump(&self.inner.metrics.coalesced);
            return flight.result.clone();
        }
        let id = self.inner.next_flight.fetch_add(1, Relaxed);
        let inner = self.inner.clone();
        let local = want.local.clone();
        let task = tokio::spawn(async move {
            // Ends the flight however the fetch ends, a panic included, so a later read
            // of the key starts afresh instead of joining a dead flight.
            let _finish = FinishFlight {
                inner: &inner,
                local: &want.local,
                id,
            };
            inner.fetch(&want, id).await.map_err(Arc::new)
        });
        let result = async move {
            task.await
                .unwrap_or_else(|join| Err(Arc::new(Error::task("fetch", join))))
        }
        .boxed()
        .shared();
        inflight.insert(
            local,
            Flight {
                id,
                generation,
                result: result.clone(),
            },
        );
        result
    }

    /// Writes `value` to the origin, then to the local tiers.
    ///
    /// # Errors
    /// The origin's error; the local tiers then hold no entry for `key`.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        self.put_version(key, value).await.map(|_| ())
    }

    /// [`TieredCache::put`], returning the version the origin now holds (when the backend
    /// reports one); the local copies are kept under it.
    ///
    /// # Errors
    /// The origin's error; the local tiers then hold no entry for `key`.
    pub async fn put_version(&self, key: &str, value: Bytes) -> Result<Option<Version>> {
        self.forget_flight(key);
        match self.inner.origin.put(key, value.clone()).await {
            Ok(version) => {
                let local = Self::local_key(key, version.as_ref());
                self.inner.fill_local(&local, value, None).await;
                Ok(version)
            }
            Err(e) => {
                self.invalidate_local(key).await;
                Err(e)
            }
        }
    }

    /// Deletes `key` from the origin and every local tier.
    ///
    /// # Errors
    /// The origin's error.
    pub async fn remove(&self, key: &str) -> Result<()> {
        self.invalidate_local(key).await;
        self.inner.origin.remove(key).await?;
        self.invalidate_local(key).await;
        Ok(())
    }

    /// Reads `key` from memory, then disk, never from the origin; a disk hit is promoted.
    pub async fn get_local(&self, key: &str) -> Option<Hit> {
        if let Some(memory) = &self.inner.memory
            && let Some(bytes) = memory.lookup(key).await
        {
            return Some(Hit {
                bytes,
                source: Source::Memory,
                blake3: None,
            });
        }
        let disk = self.inner.disk.as_ref()?;
        match disk.get_verified(key).await {
            Ok(Some((bytes, hash))) => {
                if let Some(memory) = &self.inner.memory {
                    memory.insert(key, bytes.clone()).await;
                }
                Some(Hit {
                    bytes,
                    source: Source::Disk,
                    blake3: Some(hash),
                })
            }
            Ok(None) => None,
            Err(e) => {
                self.inner.local_failed(Source::Disk, &e);
                None
            }
        }
    }

    /// Stores a copy of what the origin holds under `key` in the local tiers only.
    pub async fn put_local(&self, key: &str, value: Bytes) {
        self.forget_flight(key);
        self.inner.fill_local(key, value, None).await;
    }

    /// Marks `key`'s disk entry as just used, so eviction (least recently used first) keeps
    /// it; for entries that are read rarely but must stay, like kept listings.
    pub async fn touch_local(&self, key: &str) {
        if let Some(disk) = &self.inner.disk {
            let (disk, key) = (disk.clone(), key.to_owned());
            let _ = tokio::task::spawn_blocking(move || disk.touch_blocking(&key)).await;
        }
    }

    /// Drops `key`, at every version, from memory and disk; the origin keeps it.
    pub async fn invalidate_local(&self, key: &str) {
        self.forget_flight(key);
        self.inner.drop_local(key).await;
        if let Some(memory) = &self.inner.memory {
            memory
                .invalidate_prefix(&crate::layout::versions_prefix(key))
                .await;
        }
        if let Some(disk) = &self.inner.disk {
            let (disk, key) = (disk.clone(), key.to_owned());
            let _ =
                tokio::task::spawn_blocking(move || disk.remove_all_versions_blocking(&key)).await;
        }
    }

    /// Drops every key under `prefix` from memory and disk; returns the disk entries removed.
    pub async fn invalidate_local_prefix(&self, prefix: &str) -> u64 {
        self.inner
            .inflight
            .lock()
            .expect("inflight lock")
            .retain(|k, _| !k.starts_with(prefix));
        if let Some(memory) = &self.inner.memory {
            memory.invalidate_prefix(prefix).await;
        }
        match &self.inner.disk {
            Some(disk) => {
                let disk = disk.clone();
                let prefix = prefix.to_owned();
                tokio::task::spawn_blocking(move || disk.remove_prefix_blocking(&prefix))
                    .await
                    .unwrap_or(0)
            }
            None => 0,
        }
    }

    /// Which local tier holds `key` at `version` now, without reading or promoting it.
    pub fn local_source(&self, key: &str, version: Option<&Version>) -> Option<Source> {
        let local = Self::local_key(key, version);
        if self
            .inner
            .memory
            .as_ref()
            .is_some_and(|m| m.contains(&local))
        {
            return Some(Source::Memory);
        }
        if self
            .inner
            .disk
            .as_ref()
            .is_some_and(|d| d.path_of(&local).is_file())
        {
            return Some(Source::Disk);
        }
        None
    }

    /// A later get starts a new fetch instead of joining one that may return older bytes.
    fn forget_flight(&self, key: &str) {
        self.inner
            .inflight
            .lock()
            .expect("inflight lock")
            .remove(key);
    }
}
