//! The memory tier: a `moka` cache bounded in bytes.

use crate::metrics::Metrics;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bytes charged per entry on top of key and value, for moka's own bookkeeping.
const ENTRY_OVERHEAD: usize = 64;

/// An in-process cache weighted by the bytes it holds.
///
/// moka enforces the weight only on its maintenance runs, so the tier adds up what it
/// inserted since the last run and runs maintenance itself as soon as that could cross the
/// capacity: the bytes held exceed the capacity by at most the entries being inserted.
#[derive(Clone)]
pub struct MemoryTier {
    cache: moka::future::Cache<String, Bytes>,
    capacity: u64,
    /// Weight inserted since moka last settled its weighted size.
    unsettled: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl MemoryTier {
    /// A memory tier holding at most `capacity` bytes (keys, values and overhead).
    pub fn new(capacity: u64, metrics: Arc<Metrics>) -> Self {
        let evict_metrics = metrics.clone();
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &String, value: &Bytes| {
                u32::try_from(key.len() + value.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _value, cause| {
                if cause.was_evicted() {
                    crate::metrics::TierCounters::bump(&evict_metrics.memory.evictions);
                }
            })
            .build();
        MemoryTier {
            cache,
            capacity,
            unsettled: Arc::new(AtomicU64::new(0)),
            metrics,
        }
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently charged (approximate until [`MemoryTier::run_maintenance`]).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs moka's pending evictions so the weighted size is within capacity.
    pub async fn run_maintenance(&self) {
        self.unsettled.store(0, Relaxed);
        self.cache.run_pending_tasks().await;
    }

    /// Reads `key` without boxing (the chain's hot path).
    pub async fn lookup(&self, key: &str) -> Option<Bytes> {
        let hit = self.cache.get(key).await;
        match &hit {
            Some(bytes) => self.metrics.memory.hit(bytes.len()),
            None => self.metrics.memory.miss(),
        }
        hit
    }

    /// Stores `value`; a value larger than the whole capacity is not kept.
    ///
    /// `value` must not pin a larger allocation (a slice of a big buffer or a memory map),
    /// or the tier would hold more memory than it weighs: callers pass compact bytes.
    pub async fn insert(&self, key: &str, value: Bytes) {
        let weight = (value.len() + key.len() + ENTRY_OVERHEAD) as u64;
        if weight > self.capacity {
            return;
        }
        self.metrics.memory.wrote(value.len());
        self.cache.insert(key.to_owned(), value).await;
        let unsettled = self.unsettled.fetch_add(weight, Relaxed) + weight;
        if self.cache.weighted_size() + unsettled > self.capacity {
            self.run_maintenance().await;
        }
    }

    /// Bytes of the entries held right now, summed entry by entry (slow; for tests).
    pub fn held_bytes(&self) -> u64 {
        self.cache
            .iter()
            .map(|(k, v)| (k.len() + v.len() + ENTRY_OVERHEAD) as u64)
            .sum()
    }

    /// Drops `key`.
    pub async fn invalidate(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Drops every key that starts with `prefix`.
    pub async fn invalidate_prefix(&self, prefix: &str) {
        let stale: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for key in stale {
            self.cache.invalidate(key.as_str()).await;
        }
    }

    /// Whether `key` is held, without touching its recency or the counters.
    pub fn contains(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stays_within_its_byte_capacity() {
        let metrics = Arc::new(Metrics::default());
        let tier = MemoryTier::new(100_000, metrics.clone());
        for i in 0..50 {
            tier.insert(&format!("k{i}"), Bytes::from(vec![0u8; 10_000]))
                .await;
            // Bounded after every insert, not only after maintenance.
            assert!(tier.held_bytes() <= 100_000, "{}", tier.held_bytes());
        }
        assert!(tier.weighted_size() <= 100_000, "{}", tier.weighted_size());
        assert!(metrics.snapshot().memory.evictions > 0);
        tier.insert("huge", Bytes::from(vec![0u8; 200_000])).await;
        assert!(!tier.contains("huge"));
    }

    #[tokio::test]
    async fn prefix_invalidation_only_drops_the_prefix() {
        let tier = MemoryTier::new(1 << 20, Arc::new(Metrics::default()));
        tier.insert("a/1", Bytes::from_static(b"1")).await;
        tier.insert("a/2", Bytes::from_static(b"2")).await;
        tier.insert("b/1", Bytes::from_static(b"3")).await;
        tier.invalidate_prefix("a/").await;
        assert_eq!(tier.lookup("a/1").await, None);
        assert_eq!(tier.lookup("a/2").await, None);
        assert_eq!(tier.lookup("b/1").await, Some(Bytes::from_static(b"3")));
    }
}
