//! 64 concurrent gets of one key missing from memory and disk: one origin read serves them
//! all. Each iteration uses a fresh key and asserts that exactly one origin read happened.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use framecache::{Backend, CacheConfig, DiskConfig};
use std::time::{Duration, Instant};

const WAITERS: usize = 64;

fn coalesced(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let config = CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Fs {
                root: scratch.path().join("origin"),
            },
            ..Default::default()
        },
        disk: Some(DiskConfig {
            dir: scratch.path().join("disk"),
            capacity: 1 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    };
    let writer = config.build().unwrap();
    let payload = Bytes::from(vec![1u8; 117_000]);
    let mut n = 0u64;
    let mut group = c.benchmark_group("coalesced_misses");
    group.bench_function(format!("{WAITERS}_gets_one_key"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let key = framecache::layout::frame_key("coalesce-bench", n).unwrap();
                rt.block_on(writer.origin().put(&key, payload.clone()))
                    .unwrap();
                // A new handle on a new disk directory: nothing local holds the key.
                let reader = CacheConfig {
                    disk: Some(DiskConfig {
                        dir: scratch.path().join(format!("disk-{n}")),
                        capacity: 1 << 30,
                        ..Default::default()
                    }),
                    ..config.clone()
                }
                .build()
                .unwrap();
                let start = Instant::now();
                rt.block_on(async {
                    let gets = (0..WAITERS).map(|_| reader.get_hit(&key));
                    for hit in futures::future::join_all(gets).await {
                        assert_eq!(hit.unwrap().unwrap().bytes.len(), payload.len());
                    }
                });
                total += start.elapsed();
                assert_eq!(reader.metrics().snapshot().origin.hits, 1);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, coalesced);
criterion_main!(benches);
