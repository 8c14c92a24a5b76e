//! A disk-tier hit (open, map, verify the blake3, no copy) against reading the same entry
//! files with `std::fs::read`, over 64 entries of a 1280x720 frame's size in the page cache.
//! Target: the verified read costs at most 2x the plain one.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::tier::DiskTier;
use framecache::{Metrics, codec, synthetic_frame};
use std::hint::black_box;
use std::sync::Arc;

const ENTRIES: usize = 64;

fn disk_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::open(dir.path(), 1 << 30, Arc::new(Metrics::default()));
    let jpeg = codec::encode_jpeg(&synthetic_frame(3, 1280, 720).image, 85).unwrap();
    let keys: Vec<String> = (0..ENTRIES)
        .map(|i| framecache::layout::frame_key("disk-bench", i as u64).unwrap())
        .collect();
    for key in &keys {
        disk.write_blocking(key, &jpeg).unwrap();
    }
    let paths: Vec<_> = keys.iter().map(|k| disk.path_of(k)).collect();

    let mut group = c.benchmark_group(format!("disk_hit_{}KB", jpeg.len() / 1000));
    group.throughput(Throughput::Bytes(jpeg.len() as u64));
    let mut i = 0;
    group.bench_function("disk_tier_read_verified", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            disk.read_blocking(black_box(&keys[i])).unwrap().unwrap()
        })
    });
    group.bench_function("std_fs_read", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            std::fs::read(black_box(&paths[i])).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, disk_hit);
criterion_main!(benches);
