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
//! [`FETCH_LOCK_WAIT`], past which a waiter fetches itself).

use crate::error::{Error, Result};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{DiskTier, FetchLock, MemoryTier, Origin, Source, Version};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes read through the chain and the tier that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The payload.
    pub bytes: Bytes,
    /// The tier that held it.
    pub source: Source,
}

/// Longest a miss waits for another process's fetch of the same key before fetching itself.
pub const FETCH_LOCK_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting miss checks whether the other process is done.
const FETCH_LOCK_POLL: Duration = Duration::from_millis(2);

type FlightResult = std::result::Result<Option<Hit>, Arc<Error>>;

/// What a fetch reads: the object key at the origin, the version it must be (if known),
/// and the key of its local copies.
#[derive(Clone)]
struct Want {
    key: String,
    version: Option<Version>,
    local: String,
}

/// A miss's place among the processes of the machine.
enum BoxTurn {
    /// Another process fetched it meanwhile: its disk entry.
    Served(Bytes),
    /// Fetch it; holding the lock (if any) until the entry is on disk.
    Fetch(Option<std::fs::File>),
}

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
    #[doc(hidden)]
    pub fn fetches_in_flight(&self) -> usize {
        self.inner.inflight.lock().expect("inflight lock").len()
    }

    /// The key local tiers keep `key` under: `key` itself, or at a version `{key}\n{tag}`
    /// (object keys never contain control characters, so the two never collide).
    pub fn local_key(key: &str, version: Option<&Version>) -> String {
        match version {
            Some(v) => format!("{key}\n{}", v.tag),
            None => key.to_owned(),
        }
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
        let local = Self::local_key(key, version);
        if let Some(memory) = &self.inner.memory
            && let Some(bytes) = memory.lookup(&local).await
        {
            return Ok(Some(Hit {
                bytes,
                source: Source::Memory,
            }));
        }
        let flight = self.join_or_start(Want {
            key: key.to_owned(),
            version: version.cloned(),
            local,
        });
        flight.await.map_err(Error::from_shared)
    }

    fn join_or_start(&self, want: Want) -> Shared<BoxFuture<'static, FlightResult>> {
        let mut inflight = self.inner.inflight.lock().expect("inflight lock");
        if let Some(flight) = inflight.get(&want.local) {
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
                self.inner.fill_local(&local, value).await;
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
            });
        }
        let disk = self.inner.disk.as_ref()?;
        match disk.get(key).await {
            Ok(Some(bytes)) => {
                if let Some(memory) = &self.inner.memory {
                    memory.insert(key, Bytes::copy_from_slice(&bytes)).await;
                }
                Some(Hit {
                    bytes,
                    source: Source::Disk,
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
        self.inner.fill_local(key, value).await;
    }

    /// Marks `key`'s disk entry as just used, so eviction (least recently used first) keeps
    /// it; for entries that are read rarely but must stay, like kept listings.
    pub async fn touch_local(&self, key: &str) {
        if let Some(disk) = &self.inner.disk {
            let path = disk.path_of(key);
            let _ = tokio::task::spawn_blocking(move || {
                std::fs::File::options()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            })
            .await;
        }
    }

    /// Drops `key`, at every version, from memory and disk; the origin keeps it.
    pub async fn invalidate_local(&self, key: &str) {
        self.forget_flight(key);
        self.inner.drop_local(key).await;
        if let Some(memory) = &self.inner.memory {
            memory.invalidate_prefix(&format!("{key}\n")).await;
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

impl Inner {
    /// Fetch `id` of `want`: disk, then (once per machine) origin, filling the tiers above.
    ///
    /// A write or invalidation of the key while the fetch runs ends the flight early; the
    /// bytes fetched may then be older than the write's, so they are served to the
    /// waiters but withdrawn from the local tiers.
    async fn fetch(&self, want: &Want, id: u64) -> Result<Option<Hit>> {
        let local = want.local.as_str();
        if let Some(bytes) = self.disk_hit(local).await {
            self.promote(local, &bytes, id).await;
            return Ok(Some(Hit {
                bytes,
                source: Source::Disk,
            }));
        }
        let _lock = match self.box_turn(local).await {
            BoxTurn::Served(bytes) => {
                self.promote(local, &bytes, id).await;
                return Ok(Some(Hit {
                    bytes,
                    source: Source::Disk,
                }));
            }
            BoxTurn::Fetch(lock) => lock,
        };
        let read = match &want.version {
            Some(version) => self.origin.get_at(&want.key, version).await,
            None => self.origin.get(&want.key).await,
        };
        let bytes = match read {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) if e.is_stale_version() => {
                // Rewritten since it was listed: serve what is there now, keep nothing.
                tracing::debug!("{}: changed since listed; read unconditionally", want.key);
                return Ok(self.origin.get(&want.key).await?.map(|bytes| Hit {
                    bytes,
                    source: Source::Origin,
                }));
            }
            Err(e) => return Err(e),
        };
        if self.is_current(local, id) {
            self.fill_local(local, bytes.clone()).await;
            if !self.is_current(local, id) {
                self.drop_local(local).await;
            }
        }
        Ok(Some(Hit {
            bytes,
            source: Source::Origin,
        }))
    }

    async fn disk_hit(&self, local: &str) -> Option<Bytes> {
        match self.disk.as_ref()?.get(local).await {
            Ok(hit) => hit,
            Err(e) => {
                self.local_failed(Source::Disk, &e);
                None
            }
        }
    }

    /// A second look at the disk for a key just missed: a miss here is not counted again.
    async fn disk_hit_quiet(&self, local: &str) -> Option<Bytes> {
        let disk = self.disk.as_ref()?;
        if !disk.path_of(local).is_file() {
            return None;
        }
        self.disk_hit(local).await
    }

    /// Copies a disk hit into memory, unless a write replaced the flight meanwhile.
    async fn promote(&self, local: &str, bytes: &Bytes, id: u64) {
        if let Some(memory) = &self.memory {
            // The disk hit borrows a memory map; the memory tier gets its own copy so an
            // evicted entry's file space is not pinned by the map.
            memory.insert(local, Bytes::copy_from_slice(bytes)).await;
            if !self.is_current(local, id) {
                memory.invalidate(local).await;
            }
        }
    }

    /// Waits for this process's turn to fetch `local` for the machine: the key's fetch lock,
    /// or the disk entry another process wrote while holding it.
    async fn box_turn(&self, local: &str) -> BoxTurn {
        let Some(disk) = &self.disk else {
            return BoxTurn::Fetch(None);
        };
        let deadline = Instant::now() + FETCH_LOCK_WAIT;
        loop {
            match disk.try_fetch_lock(local) {
                FetchLock::Held(lock) => {
                    // Another process may have fetched the key between this one's disk miss
                    // and now (waiting or not): look again before downloading it.
                    if let Some(bytes) = self.disk_hit_quiet(local).await {
                        TierCounters::bump(&self.metrics.fetched_by_other_process);
                        return BoxTurn::Served(bytes);
                    }
                    return BoxTurn::Fetch(Some(lock));
                }
                FetchLock::Unsupported => return BoxTurn::Fetch(None),
                FetchLock::Busy if Instant::now() >= deadline => {
                    tracing::warn!(
                        "{local:?}: another fetch held its lock for {FETCH_LOCK_WAIT:?}; \
                         fetching without it"
                    );
                    TierCounters::bump(&self.metrics.fetch_lock_timeouts);
                    return BoxTurn::Fetch(None);
                }
                FetchLock::Busy => tokio::time::sleep(FETCH_LOCK_POLL).await,
            }
        }
    }

    /// Stores `value` in the local tiers (the origin has it); a disk failure is counted.
    async fn fill_local(&self, key: &str, value: Bytes) {
        if let Some(disk) = &self.disk
            && let Err(e) = disk.put(key, value.clone()).await
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
    ///
    /// Called from [`FinishFlight`]'s drop, so it must not panic.
    fn finish(&self, key: &str, id: u64) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
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

/// Ends a flight when its fetch task ends, by return, error or panic.
struct FinishFlight<'a> {
    inner: &'a Inner,
    local: &'a str,
    id: u64,
}

impl Drop for FinishFlight<'_> {
    fn drop(&mut self) {
        self.inner.finish(self.local, self.id);
    }
}
