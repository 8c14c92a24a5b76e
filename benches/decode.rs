//! JPEG decode of one 1280x720 q85 4:2:0 frame to RGB, one core: libjpeg-turbo (the default
//! when built with it) against zune-jpeg on the same bytes, and the DCT-scaled decodes.
//! Also the checksum candidates for raw decoded entries (2.76 MB each).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::codec::{self, Scale};
use framecache::synthetic_frame;
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let frame = synthetic_frame(7, 1280, 720);
    let jpeg = codec::encode_jpeg(&frame.image, 85).unwrap();
    let mut group = c.benchmark_group("jpeg_1280x720_q85");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("decode/{}", codec::decoder_name()), |b| {
        b.iter(|| codec::decode_jpeg(black_box(&jpeg)).unwrap())
    });
    group.bench_function("decode/image-zune-jpeg", |b| {
        b.iter(|| codec::decode_jpeg_zune(black_box(&jpeg)).unwrap())
    });
    let mut out = vec![0u8; 1280 * 720 * 3];
    group.bench_function("decode_into_reused_buffer", |b| {
        b.iter(|| codec::decode_into(black_box(&jpeg), Scale::Full, &mut out).unwrap())
    });
    group.bench_function("decode_into_reused_buffer/zune-jpeg", |b| {
        b.iter(|| codec::decode_into_zune(black_box(&jpeg), &mut out).unwrap())
    });
    for scale in [Scale::Half, Scale::Quarter, Scale::Eighth] {
        group.bench_function(format!("decode_scaled/1_{}", scale.denominator()), |b| {
            b.iter(|| codec::decode_jpeg_scaled(black_box(&jpeg), scale).unwrap())
        });
    }
    group.finish();

    // Two ways to store a decoded frame as a raw entry file (4 KiB header, then pixels):
    // decoding straight into a mapped file (what the decoded disk tier does), or decoding
    // into a heap buffer and writing it out.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entry");
    let len = 4096 + 1280 * 720 * 3;
    let mut group = c.benchmark_group("raw_entry_1280x720");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_into_mapped_file", |b| {
        b.iter(|| {
            let file = std::fs::File::create_new(&path).unwrap();
            file.set_len(len as u64).unwrap();
            // SAFETY: the file was just created here and nothing else maps or writes it.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
            codec::decode_into(&jpeg, Scale::Full, &mut map[4096..]).unwrap();
            drop(map);
            std::fs::remove_file(&path).unwrap();
        })
    });
    group.bench_function("decode_to_heap_then_write", |b| {
        b.iter(|| {
            let pixels = codec::decode_jpeg(&jpeg).unwrap();
            let mut file = std::fs::File::create_new(&path).unwrap();
            std::io::Write::write_all(&mut file, &[0u8; 4096]).unwrap();
            std::io::Write::write_all(&mut file, pixels.as_raw()).unwrap();
            drop(file);
            std::fs::remove_file(&path).unwrap();
        })
    });
    group.finish();

    let raw = frame.image.as_raw();
    let mut group = c.benchmark_group("checksum_2.76MB");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("xxh3_64", |b| {
        b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(raw)))
    });
    group.bench_function("crc32fast", |b| b.iter(|| crc32fast::hash(black_box(raw))));
    group.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(raw))));
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
