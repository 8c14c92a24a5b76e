//! The read-through chain: `memory => disk => origin`.
//!
//! A hit in a lower tier fills the tiers above it. Concurrent misses of one key share one
//! fetch, which runs as its own task: a caller that is cancelled or times out only stops
//! waiting, the fetch goes on for the others. Local tiers never fail a read; their errors
//! are counted and the read falls through to the origin.

use crate::error::{Error, Result};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{DiskTier, MemoryTier, Origin, Source};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

type FlightResult = std::result::Result<Option<Hit>, Arc<Error>>;

struct Flight {
    id: u64,
    result: Shared<BoxFuture<'static, FlightResult>>,
}

/// Memory, disk and origin composed into one read-through, write-through cache.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
}

struct Inner {
    memory: Option<MemoryTier>,
    disk: Option<DiskTier>,
    origin: Arc<dyn Origin>,
    inflight: Mutex<HashMap<String, Flight>>,
    next_flight: AtomicU64,
    metrics: Arc<Metrics>,
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
            }),
        }
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

    /// Fetches currently in flight (for tests and diagnostics).
    pub fn fetches_in_flight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }

    /// Reads `key` through the tiers and reports which one answered.
    ///
    /// # Errors
    /// Only the origin's errors; a failing local tier is a miss.
    pub async fn get_hit(&self, key: &str) -> Result<Option<Hit>> {
        if let Some(memory) = &self.inner.memory
            && let Some(bytes) = memory.lookup(key).await
        {
            return Ok(Some(Hit {
                bytes,
                source: Source::Memory,
                blake3: None,
            }));
        }
        let flight = self.join_or_start(key);
        flight.await.map_err(Error::from_shared)
    }

    fn join_or_start(&self, key: &str) -> Shared<BoxFuture<'static, FlightResult>> {
        let mut inflight = self.inner.inflight.lock().expect("inflight lock");
        if let Some(flight) = inflight.get(key) {
            TierCounters::bump(&self.inner.metrics.coalesced);
            return flight.result.clone();
        }
        let id = self.inner.next_flight.fetch_add(1, Relaxed);
        let inner = self.inner.clone();
        let owned = key.to_owned();
        let task = tokio::spawn(async move {
            let result = inner.fetch(&owned, id).await.map_err(Arc::new);
            inner.finish(&owned, id);
            result
        });
        let result = async move {
            task.await
                .unwrap_or_else(|join| Err(Arc::new(Error::task("fetch", join))))
        }
        .boxed()
        .shared();
        inflight.insert(
            key.to_owned(),
            Flight {
                id,
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
        self.forget_flight(key);
        if let Err(e) = self.inner.origin.put(key, value.clone()).await {
            self.invalidate_local(key).await;
            return Err(e);
        }
        self.inner.fill_local(key, value, None).await;
        Ok(())
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
                    memory.insert(key, Bytes::copy_from_slice(&bytes)).await;
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

    /// Drops `key` from memory and disk; the origin keeps it.
    pub async fn invalidate_local(&self, key: &str) {
        self.forget_flight(key);
        self.inner.drop_local(key).await;
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

    /// Which local tier holds `key` now, without reading or promoting it.
    pub fn local_source(&self, key: &str) -> Option<Source> {
        if self.inner.memory.as_ref().is_some_and(|m| m.contains(key)) {
            return Some(Source::Memory);
        }
        if self
            .inner
            .disk
            .as_ref()
            .is_some_and(|d| d.path_of(key).is_file())
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

impl Inner {
    /// Fetch `id` of `key`: disk, then origin, filling the tiers above.
    ///
    /// A write or invalidation of `key` while the fetch runs ends the flight early; the
    /// bytes fetched may then be older than the write's, so they are served to the
    /// waiters but withdrawn from the local tiers.
    async fn fetch(&self, key: &str, id: u64) -> Result<Option<Hit>> {
        if let Some(disk) = &self.disk {
            match disk.get_verified(key).await {
                Ok(Some((bytes, hash))) => {
                    if let Some(memory) = &self.memory {
                        // The disk hit borrows a memory map; the memory tier gets its own
                        // copy so an evicted entry's file space is not pinned by the map.
                        memory.insert(key, Bytes::copy_from_slice(&bytes)).await;
                        if !self.is_current(key, id) {
                            memory.invalidate(key).await;
                        }
                    }
                    return Ok(Some(Hit {
                        bytes,
                        source: Source::Disk,
                        blake3: Some(hash),
                    }));
                }
                Ok(None) => {}
                Err(e) => self.local_failed(Source::Disk, &e),
            }
        }
        let Some(bytes) = self.origin.get(key).await? else {
            return Ok(None);
        };
        // Hashed once here for the disk entry's header and for the caller's checks.
        let hash = blake3::hash(&bytes);
        if self.is_current(key, id) {
            self.fill_local(key, bytes.clone(), Some(hash)).await;
            if !self.is_current(key, id) {
                self.drop_local(key).await;
            }
        }
        Ok(Some(Hit {
            bytes,
            source: Source::Origin,
            blake3: Some(hash),
        }))
    }

    /// Stores `value` in the local tiers (the origin has it); a disk failure is counted.
    /// `hash` is its blake3 when the caller has it.
    async fn fill_local(&self, key: &str, value: Bytes, hash: Option<blake3::Hash>) {
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
    fn is_current(&self, key: &str, id: u64) -> bool {
        self.inflight
            .lock()
            .expect("inflight lock")
            .get(key)
            .is_some_and(|f| f.id == id)
    }

    /// Drops `key` from memory and disk; the next get asks the origin again.
    async fn drop_local(&self, key: &str) {
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
    fn finish(&self, key: &str, id: u64) {
        let mut inflight = self.inflight.lock().expect("inflight lock");
        if inflight.get(key).is_some_and(|f| f.id == id) {
            inflight.remove(key);
        }
    }

    fn local_failed(&self, tier: Source, err: &Error) {
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
