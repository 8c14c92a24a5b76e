//! A miss served by the origin: one frame-sized object read through the chain with no local
//! tier holding it, on the fs backend and on S3 when `AWS_ENDPOINT_URL` names a server.

mod common;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::{Backend, CacheConfig, TieredCache};
use std::hint::black_box;

const OBJECTS: u64 = 32;

fn bench_backend(c: &mut Criterion, name: &str, backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // No memory or disk tier: every get goes to the origin.
    let chain: TieredCache = CacheConfig {
        origin: framecache::OriginConfig {
            backend,
            ..Default::default()
        },
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: None,
        ..CacheConfig::default()
    }
    .build()
    .unwrap();
    let timeline = format!("miss-bench-{}", std::process::id());
    let payload = Bytes::from(vec![0x5Au8; 117_000]);
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| framecache::layout::frame_key(&timeline, i).unwrap())
        .collect();
    for key in &keys {
        rt.block_on(chain.put(key, payload.clone())).unwrap();
    }
    let mut group = c.benchmark_group(format!("origin_miss_117KB/{name}"));
    group.throughput(Throughput::Bytes(payload.len() as u64));
    let mut i = 0;
    group.bench_function("get", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % keys.len();
            let key = &keys[i];
            let chain = &chain;
            async move { chain.get_hit(black_box(key)).await.unwrap().unwrap() }
        })
    });
    group.finish();
    for key in &keys {
        rt.block_on(chain.remove(key)).unwrap();
    }
}

fn origin_miss(c: &mut Criterion) {
    common::for_each_backend(|name, backend| bench_backend(c, name, backend));
}

criterion_group!(benches, origin_miss);
criterion_main!(benches);
