//! The decoded-frame memory tier: decoded frames by [`DecodedKey`], bounded in pixel bytes.

use super::frame::{Decoded, DecodedKey};
use crate::metrics::{Metrics, TierCounters};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Decoded frames held in this process, weighted by their pixel bytes.
///
/// An entry is either a heap buffer or a verified read-only map of a raw disk entry; either
/// way callers share it without copying. As the JPEG memory tier does, it runs moka's
/// maintenance itself before inserts could cross the capacity.
#[derive(Clone)]
pub(crate) struct DecodedMemory {
    cache: moka::sync::Cache<DecodedKey, Arc<Decoded>>,
    capacity: u64,
    unsettled: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

fn weight(value: &Decoded) -> u64 {
    value.pixel_bytes() as u64 + 256
}

impl DecodedMemory {
    pub(crate) fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let evict_metrics = metrics.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_key: &DecodedKey, value: &Arc<Decoded>| {
                u32::try_from(weight(value)).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _value, cause| {
                if cause.was_evicted() {
                    TierCounters::bump(&evict_metrics.decoded_memory.evictions);
                }
            })
            .support_invalidation_closures()
            .build();
        DecodedMemory {
            cache,
            capacity,
            unsettled: Arc::new(AtomicU64::new(0)),
            metrics,
        }
    }

    fn counters(&self) -> &TierCounters {
        &self.metrics.decoded_memory
    }

    /// The configured capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes charged now, after settling pending evictions.
    pub(crate) fn held_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    pub(crate) fn get(&self, key: &DecodedKey) -> Option<Arc<Decoded>> {
        let hit = self.cache.get(key);
        match &hit {
            Some(d) => self.counters().hit(d.pixel_bytes()),
            None => self.counters().miss(),
        }
        hit
    }

    /// Keeps `value`; one larger than the whole capacity is not kept.
    pub(crate) fn insert(&self, key: DecodedKey, value: Arc<Decoded>) {
        let w = weight(&value);
        if w > self.capacity {
            return;
        }
        self.counters().wrote(value.pixel_bytes());
        self.cache.insert(key, value);
        let unsettled = self.unsettled.fetch_add(w, Relaxed) + w;
        if self.cache.weighted_size() + unsettled > self.capacity {
            self.unsettled.store(0, Relaxed);
            self.cache.run_pending_tasks();
        }
    }

    /// Drops every entry whose frame key starts with `prefix`.
    pub(crate) fn invalidate_prefix(&self, prefix: &str) {
        let prefix = prefix.to_owned();
        let _ = self
            .cache
            .invalidate_entries_if(move |k, _| k.key.starts_with(&prefix));
        self.cache.run_pending_tasks();
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }
}
