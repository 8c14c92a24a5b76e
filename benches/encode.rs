//! JPEG encode of one 1280x720 RGB frame at q85 (4:2:0), one core. Compare with Pillow's
//! `Image.save(quality=85)` on the same machine (README, Performance).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framecache::{codec, synthetic_frame};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let frame = synthetic_frame(7, 1280, 720);
    let mut group = c.benchmark_group("jpeg_1280x720_q85");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("encode/{}", codec::encoder_name()), |b| {
        b.iter(|| codec::encode_jpeg(black_box(&frame.image), 85).unwrap())
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
