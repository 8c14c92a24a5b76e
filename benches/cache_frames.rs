//! `cache_frames` of a synthetic 300-frame 1280x720 timeline (encode and write through
//! every tier), on the fs backend and on S3 when `AWS_ENDPOINT_URL` names a server.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::WriteOptions;
use framecache::{Backend, CacheConfig, DiskConfig, Frame, FrameCache, synthetic_frame};
use std::time::{Duration, Instant};

fn bench_backend(c: &mut Criterion, name: &str, backend: Backend) {
    let n = common::timeline_frames();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let frames: Vec<Frame> = (0..n).map(|s| synthetic_frame(s, 1280, 720)).collect();
    let mut group = c.benchmark_group(format!("timeline_{n}x1280x720/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(n));
    let mut run = 0;
    group.bench_function("cache_frames", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let fc = FrameCache::new(&CacheConfig {
                    origin: framecache::OriginConfig {
                        backend: backend.clone(),
                        ..Default::default()
                    },
                    memory: framecache::MemoryConfig { capacity: 1 << 30 },
                    disk: Some(DiskConfig {
                        dir: scratch.path().join(format!("w{run}")),
                        capacity: 4 << 30,
                        ..Default::default()
                    }),
                    ..CacheConfig::default()
                })
                .unwrap();
                let tl = format!("bench-{}-w{run}", std::process::id());
                let start = Instant::now();
                rt.block_on(fc.cache_frames(&tl, &frames, WriteOptions::default()))
                    .unwrap();
                total += start.elapsed();
                rt.block_on(fc.clear(&tl, framecache::ClearScope::All))
                    .unwrap();
            }
            total
        })
    });
    group.finish();
}

fn cache_frames(c: &mut Criterion) {
    common::for_each_backend(|name, backend| bench_backend(c, name, backend));
}

criterion_group!(benches, cache_frames);
criterion_main!(benches);
