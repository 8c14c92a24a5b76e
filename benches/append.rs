//! Appending 100 tiny frames onto a timeline of 100 frames and onto one of 20,000 (the
//! default write, `cache_jpegs`): an append must cost what it writes, whatever the
//! timeline's length. fs origin, and S3 when `AWS_ENDPOINT_URL` names a server.
//!
//! Each timed append goes onto a fresh copy of the base timeline: its manifest (head and
//! chunks) copied under a new timeline id before the timer starts. An append reads nothing
//! else of a timeline (it never lists it or reads its frames), so the copy is the whole
//! state the append sees, and each append starts from the same length.

mod common;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use framecache::WriteOptions;
use framecache::{Backend, CacheConfig, DiskConfig, EncodedFrame, FrameCache, WriteMode, layout};
use std::time::{Duration, Instant};

const APPENDED: u64 = 100;

fn tiny(seqs: std::ops::Range<u64>) -> Vec<EncodedFrame> {
    let jpeg = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]);
    seqs.map(|seq| EncodedFrame {
        seq,
        chunk_id: 1,
        timestamp: seq as f64 / 25.0,
        perceptual_hash: String::new(),
        jpeg: jpeg.clone(),
    })
    .collect()
}

/// Copies `from`'s manifest objects under timeline `to`.
async fn copy_manifest(fc: &FrameCache, from: &str, to: &str) {
    let origin = fc.chain().origin();
    let (src, dst) = (
        layout::frames_prefix(from).unwrap(),
        layout::frames_prefix(to).unwrap(),
    );
    for object in origin.list(&src).await.unwrap() {
        let name = &object.key[src.len()..];
        if layout::is_metadata_name(name) {
            let bytes = origin
                .get(&object.key, framecache::tier::Limit::object(u64::MAX))
                .await
                .unwrap()
                .unwrap();
            origin.put(&format!("{dst}{name}"), bytes).await.unwrap();
        }
    }
}

fn bench_backend(c: &mut Criterion, name: &str, backend: Backend) {
    let bench = std::env::args().any(|a| a == "--bench");
    let lengths: &[u64] = if bench { &[100, 20_000] } else { &[100, 1_000] };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let fc = FrameCache::new(&CacheConfig {
        origin: framecache::OriginConfig {
            backend,
            ..Default::default()
        },
        memory: framecache::MemoryConfig {
            capacity: 256 << 20,
        },
        disk: Some(DiskConfig {
            dir: scratch.path().join("disk"),
            capacity: 4 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    })
    .unwrap();
    let mut group = c.benchmark_group(format!("append_{APPENDED}_tiny/{name}"));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for &length in lengths {
        let base = format!("bench-append-{}-{length}", std::process::id());
        rt.block_on(fc.cache_jpegs(
            &base,
            tiny(0..length),
            WriteOptions::default().mode(WriteMode::Replace),
        ))
        .unwrap();
        let mut run = 0u64;
        group.bench_function(BenchmarkId::new("onto", length), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let tl = format!("{base}-{run}");
                    rt.block_on(copy_manifest(&fc, &base, &tl));
                    let frames = tiny(length..length + APPENDED);
                    let start = Instant::now();
                    rt.block_on(fc.cache_jpegs(&tl, frames, WriteOptions::default()))
                        .unwrap();
                    total += start.elapsed();
                    rt.block_on(fc.clear(&tl, framecache::ClearScope::All))
                        .unwrap();
                }
                total
            })
        });
        rt.block_on(fc.clear(&base, framecache::ClearScope::All))
            .unwrap();
    }
    group.finish();
}

fn append(c: &mut Criterion) {
    common::for_each_backend(|name, backend| bench_backend(c, name, backend));
}

criterion_group!(benches, append);
criterion_main!(benches);
