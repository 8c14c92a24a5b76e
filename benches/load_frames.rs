//! End-to-end `load_frames` of a synthetic 300-frame 1280x720 timeline: cold (from the
//! origin, decoded and kept), warm (a new handle with empty memory tiers: raw frames mapped
//! from the decoded disk tier; and with the decoded tiers off, JPEGs from disk decoded again)
//! and hot (decoded memory tier, writable and read-only). Runs on the fs backend, and on S3
//! too when the environment names a server (`source DIR/env` after `scripts/garage.sh start
//! DIR`).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::{
    Access, Backend, CacheConfig, DecodedConfig, DiskConfig, Frame, FrameCache, LoadOptions,
    synthetic_frame,
};
use framecache::{Seqs, WriteOptions};
use std::time::{Duration, Instant};

fn config(backend: &Backend, disk: &std::path::Path) -> CacheConfig {
    CacheConfig {
        origin: framecache::OriginConfig {
            backend: backend.clone(),
            ..Default::default()
        },
        memory: framecache::MemoryConfig { capacity: 1 << 30 },
        disk: Some(DiskConfig {
            dir: disk.to_path_buf(),
            capacity: 4 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    }
}

fn bench_backend(c: &mut Criterion, name: &str, backend: Backend) {
    let n = common::timeline_frames();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let frames: Vec<Frame> = (0..n).map(|s| synthetic_frame(s, 1280, 720)).collect();
    let timeline = format!("bench-{}", std::process::id());
    let writer = FrameCache::new(&config(&backend, &scratch.path().join("writer"))).unwrap();
    rt.block_on(writer.cache_frames(&timeline, &frames, WriteOptions::default()))
        .unwrap();

    let mut group = c.benchmark_group(format!("timeline_{n}x1280x720/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(n));

    let mut run = 0;
    group.bench_function("load_frames/cold", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let fc =
                    FrameCache::new(&config(&backend, &scratch.path().join(format!("c{run}"))))
                        .unwrap();
                let start = Instant::now();
                let loaded = rt
                    .block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
                    .unwrap();
                total += start.elapsed();
                assert_eq!(loaded.len(), n as usize);
                assert!(fc.stats().origin.hits >= n, "every frame from the origin");
            }
            total
        })
    });
    let warm_dir = scratch.path().join("warm");
    let warming = FrameCache::new(&config(&backend, &warm_dir)).unwrap();
    rt.block_on(warming.load_frames(&timeline, Seqs::All, LoadOptions::default()))
        .unwrap();
    // Raw frames are written behind the load; the warm runs need them on disk.
    assert!(warming.flush_raw_writes(Duration::from_secs(120)));
    group.bench_function("load_frames/warm_decoded_disk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let fc = FrameCache::new(&config(&backend, &warm_dir)).unwrap();
                let start = Instant::now();
                let loaded = rt
                    .block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
                    .unwrap();
                total += start.elapsed();
                assert_eq!(loaded.len(), n as usize);
                assert_eq!((fc.stats().decoded_disk.hits, fc.stats().decodes), (n, 0));
            }
            total
        })
    });
    let jpeg_only = CacheConfig {
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 0,
            ..Default::default()
        },
        ..config(&backend, &warm_dir)
    };
    group.bench_function("load_frames/warm_jpeg_disk_decoded_again", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let fc = FrameCache::new(&jpeg_only).unwrap();
                let start = Instant::now();
                let loaded = rt
                    .block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
                    .unwrap();
                total += start.elapsed();
                assert_eq!(loaded.len(), n as usize);
                // Every frame from disk (the manifest chunk and the kept listing are disk
                // hits too).
                assert!(fc.stats().disk.hits >= n);
            }
            total
        })
    });
    let hot = FrameCache::new(&config(&backend, &warm_dir)).unwrap();
    rt.block_on(hot.load_frames(&timeline, Seqs::All, LoadOptions::default()))
        .unwrap();
    group.bench_function("load_frames/hot_memory", |b| {
        b.iter(|| {
            rt.block_on(hot.load_frames(&timeline, Seqs::All, LoadOptions::default()))
                .unwrap()
        })
    });
    let read_only = LoadOptions {
        access: Access::ReadOnly,
        ..LoadOptions::default()
    };
    group.bench_function("load_frames/hot_memory_read_only", |b| {
        b.iter(|| {
            rt.block_on(hot.load_frames(&timeline, Seqs::All, read_only))
                .unwrap()
        })
    });
    group.finish();
    rt.block_on(writer.clear(&timeline, framecache::ClearScope::All))
        .unwrap();
}

fn load_frames_bench(c: &mut Criterion) {
    common::for_each_backend(|name, backend| bench_backend(c, name, backend));
}

criterion_group!(benches, load_frames_bench);
criterion_main!(benches);
