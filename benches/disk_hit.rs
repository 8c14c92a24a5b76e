//! A disk-tier hit (open, read into one buffer, verify the checksum) against reading the same
//! entry files with `std::fs::read`, over 64 entries of a 1280x720 frame's JPEG in the page
//! cache. Target: the verified read costs at most 2x the plain one.
//!
//! Beside them, in the same run: the same verified read through a memory map, as the tier
//! read before; what a hit cost with entry format 1, which verified the payload's blake3
//! instead of an xxh3 checksum (open, map, blake3 of the payload, compare); the two hashes
//! alone over one payload (in cache).

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
    group.bench_function("format_1_read_blake3_verified", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            let file = std::fs::File::open(black_box(&paths[i])).unwrap();
            // SAFETY: the bench's own entry files, which nothing modifies while it runs.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let payload_at = framecache::entry::FIXED_HEADER_LEN + keys[i].len();
            let hash = blake3::hash(&map[payload_at..]);
            assert_eq!(hash.as_bytes(), &map[24..56]);
            map
        })
    });
    group.bench_function("format_2_mapped_verified", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            let file = std::fs::File::open(black_box(&paths[i])).unwrap();
            // SAFETY: the bench's own entry files, which nothing modifies while it runs.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let range = framecache::entry::validate(&keys[i], &map).unwrap();
            black_box(range);
            map
        })
    });
    group.bench_function("xxh3_64_alone", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(&jpeg)))
    });
    group.bench_function("blake3_alone", |b| {
        b.iter(|| blake3::hash(black_box(&jpeg)))
    });
    group.finish();
}

criterion_group!(benches, disk_hit);
criterion_main!(benches);
