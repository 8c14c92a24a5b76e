//! JPEG decode of one 1280x720 q85 4:2:0 frame to RGB, one core.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::{codec, synthetic_frame};
use std::hint::black_box;

fn decode(c: &mut Criterion) {
    let frame = synthetic_frame(7, 1280, 720);
    let jpeg = codec::encode_jpeg(&frame.image, 85).unwrap();
    let mut group = c.benchmark_group("jpeg_1280x720_q85");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode/image-zune-jpeg", |b| {
        b.iter(|| codec::decode_jpeg(black_box(&jpeg)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
