//! Deterministic synthetic frames for the demo, benchmarks and tests.

use crate::timeline::Frame;
use image::RgbImage;

/// Frame `seq` of a panning gradient with blocks and mild noise: it compresses like real
/// video (about 117 KB per 1280x720 frame at q85), not like noise.
pub fn synthetic_frame(seq: u64, width: u32, height: u32) -> Frame {
    let t = seq as u32;
    let image = RgbImage::from_fn(width, height, |x, y| {
        let xs = x + 2 * t;
        let block = ((xs / 97) + (y / 61)).is_multiple_of(5);
        let noise = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) ^ t) % 9;
        let r = (60 + (xs % 256) / 2 + noise) as u8;
        let g = (90 + (y * 160 / height.max(1)) + noise) as u8;
        let b = if block {
            200
        } else {
            (120 + (xs + y) % 64) as u8
        };
        image::Rgb([r, g, b])
    });
    Frame {
        seq,
        chunk_id: seq / 100,
        timestamp: seq as f64 / 30.0,
        image: image.into(),
        perceptual_hash: format!("{seq:016x}"),
    }
}
