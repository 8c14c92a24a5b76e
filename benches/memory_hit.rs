//! A memory-tier hit: the moka lookup alone, and a whole `TieredCache::get_hit` answered by
//! memory. Target: median ≤ 1 µs.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use framecache::tier::MemoryTier;
use framecache::{Backend, CacheConfig, Metrics};
use std::hint::black_box;
use std::sync::Arc;

fn memory_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = framecache::layout::frame_key("timeline-0123456789", 42).unwrap();
    let value = Bytes::from(vec![7u8; 117_000]);

    let tier = MemoryTier::new(64 << 20, Arc::new(Metrics::default()));
    rt.block_on(tier.insert(&key, value.clone()));
    let chain = CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Memory,
            ..Default::default()
        },
        disk: None,
        ..CacheConfig::default()
    }
    .build()
    .unwrap();
    rt.block_on(chain.put(&key, value)).unwrap();

    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("memory_tier_lookup", |b| {
        b.to_async(&rt)
            .iter(|| async { tier.lookup(black_box(&key)).await.unwrap() })
    });
    group.bench_function("chain_get_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { chain.get_hit(black_box(&key)).await.unwrap().unwrap() })
    });
    group.finish();
}

criterion_group!(benches, memory_hit);
criterion_main!(benches);
