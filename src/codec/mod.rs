//! JPEG encode and decode of RGB8 frames: which codec this build uses, and the files that
//! hold each concern.
//!
//! Encoding uses the system's libjpeg-turbo (SIMD, 4:2:0, byte-compatible with Pillow's
//! output) when the build found its headers, else the pure-Rust `jpeg-encoder` (also
//! 4:2:0, about 3x slower). Decoding uses libjpeg-turbo too when built with it (faster than
//! zune-jpeg on these frames, and it scales through the DCT), falling back to zune-jpeg for
//! files libjpeg rejects and in builds without it. Both are strict (damaged data is an
//! error, never a grey-filled frame), bounded in progressive scans ([`MAX_SCANS`]), and
//! every decode checks the header's dimensions against a pixel limit before allocating.
//!
//! `encode.rs`: encoding; `decode.rs`: the decode entry points; `limits.rs`: the decode
//! limits and [`DecodeError`]; `zune.rs`: the pure-Rust decoder; `turbo.rs`:
//! libjpeg-turbo's shims; `scale.rs`: [`Scale`].

mod decode;
mod encode;
mod limits;
mod scale;
#[cfg(test)]
mod tests;
#[cfg(framecache_libjpeg)]
mod turbo;
mod zune;

pub use decode::{
    checked_dimensions, decode_into, decode_jpeg, decode_jpeg_limited, decode_jpeg_scaled,
    decoded_dimensions, frame_dimensions,
};
pub use encode::encode_jpeg;
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub use encode::encode_jpeg_failing_at;
pub use limits::{DEFAULT_MAX_FRAME_PIXELS, DecodeError, MAX_SCANS, check_pixels};
pub use scale::Scale;
pub use zune::{decode_into_zune, decode_jpeg_zune};

/// Largest width or height a JPEG can hold.
pub const MAX_DIMENSION: u32 = 65_500;

/// Which decoder this build tries first.
pub fn decoder_name() -> &'static str {
    if cfg!(framecache_libjpeg) {
        "libjpeg-turbo"
    } else {
        "zune-jpeg (pure Rust)"
    }
}

/// Which encoder this build uses.
pub fn encoder_name() -> &'static str {
    if cfg!(framecache_libjpeg) {
        "libjpeg-turbo"
    } else {
        "jpeg-encoder (pure Rust)"
    }
}
