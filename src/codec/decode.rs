//! The decode entry points: header dimensions, the pixel and scan limits, [`DecodeError`],
//! and decoding libjpeg-turbo first with zune-jpeg as the fallback.

use super::Scale;
#[cfg(framecache_libjpeg)]
use super::turbo;
use super::zune::{decode_zune_scaled, zune_header_dimensions};
use crate::pixels::Pixels;

/// Default of [`crate::CacheConfig::max_frame_pixels`]: Pillow's decompression-bomb limit
/// (twice `Image.MAX_IMAGE_PIXELS`), which the Python module's users already live with.
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 178_956_970;

/// Most scans a progressive JPEG may have: each scan passes over the whole image again, so
/// a small file of thousands of scans costs minutes of CPU. libjpeg-turbo advises about 100
/// (and zune-jpeg defaults to it); real encoders write about 10.
pub const MAX_SCANS: u32 = 100;

/// Why a JPEG was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The header claims more pixels than the limit; refused before any pixel buffer was
    /// allocated.
    TooManyPixels {
        /// Width the header claims.
        width: u32,
        /// Height the header claims.
        height: u32,
        /// The limit in pixels (`max_frame_pixels`).
        limit: u64,
    },
    /// A decoder limit refused the file (too many progressive scans, more working memory
    /// than its dimensions justify).
    Limit(String),
    /// Empty, truncated, corrupt or not a JPEG.
    Damaged(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooManyPixels {
                width,
                height,
                limit,
            } => write!(
                f,
                "{width}x{height} is {} pixels, over the limit of {limit} (max_frame_pixels)",
                u64::from(*width) * u64::from(*height)
            ),
            DecodeError::Limit(reason) | DecodeError::Damaged(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes JPEG bytes to RGB8 (grayscale and CMYK sources are converted), refusing frames
/// over [`DEFAULT_MAX_FRAME_PIXELS`].
///
/// # Errors
/// [`DecodeError`] for empty, truncated, corrupt, non-JPEG or oversized input.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Pixels, DecodeError> {
    decode_jpeg_limited(bytes, Scale::Full, DEFAULT_MAX_FRAME_PIXELS)
}

/// Decodes JPEG bytes to RGB8 at `scale`, into a buffer of its own, refusing frames over
/// [`DEFAULT_MAX_FRAME_PIXELS`].
///
/// # Errors
/// As [`decode_jpeg`].
pub fn decode_jpeg_scaled(bytes: &[u8], scale: Scale) -> Result<Pixels, DecodeError> {
    decode_jpeg_limited(bytes, scale, DEFAULT_MAX_FRAME_PIXELS)
}

/// Decodes JPEG bytes to RGB8 at `scale`, refusing a frame whose header claims more than
/// `max_pixels` pixels (at full size) before allocating anything for it.
///
/// # Errors
/// As [`decode_jpeg`]; [`DecodeError::TooManyPixels`] over the limit.
pub fn decode_jpeg_limited(
    bytes: &[u8],
    scale: Scale,
    max_pixels: u64,
) -> Result<Pixels, DecodeError> {
    let (width, height) = checked_dimensions(bytes, scale, max_pixels)?;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    decode_into(bytes, scale, &mut rgb)?;
    Ok(Pixels::from_vec(width, height, rgb).expect("sized from the dimensions"))
}

/// The full-size dimensions the JPEG's headers claim.
///
/// # Errors
/// [`DecodeError::Damaged`] for headers that do not parse.
pub fn frame_dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Damaged("empty file".into()));
    }
    #[cfg(framecache_libjpeg)]
    let turbo_err = match turbo::dims(bytes, 1) {
        Ok(dims) => return Ok(dims),
        Err(turbo::Failure::Limit(reason)) => return Err(DecodeError::Limit(reason)),
        Err(turbo::Failure::Rejected(reason)) => reason,
    };
    let zune = zune_header_dimensions(bytes);
    #[cfg(framecache_libjpeg)]
    // libjpeg's message names the problem better when both fail.
    let zune = zune.map_err(|_| turbo_err);
    zune.map_err(DecodeError::Damaged)
}

/// Refuses `(width, height)` over `max_pixels`.
///
/// # Errors
/// [`DecodeError::TooManyPixels`].
pub fn check_pixels((width, height): (u32, u32), max_pixels: u64) -> Result<(), DecodeError> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}

/// The dimensions [`decode_into`] produces at `scale`, after checking the full-size ones
/// against `max_pixels`: what to size a buffer from.
///
/// # Errors
/// As [`frame_dimensions`] and [`check_pixels`].
pub fn checked_dimensions(
    bytes: &[u8],
    scale: Scale,
    max_pixels: u64,
) -> Result<(u32, u32), DecodeError> {
    let full = frame_dimensions(bytes)?;
    check_pixels(full, max_pixels)?;
    Ok(scale.apply(full))
}

/// The dimensions [`decode_into`] produces, from the headers only (no pixel limit: see
/// [`checked_dimensions`]).
///
/// # Errors
/// As [`frame_dimensions`].
pub fn decoded_dimensions(bytes: &[u8], scale: Scale) -> Result<(u32, u32), DecodeError> {
    frame_dimensions(bytes).map(|dims| scale.apply(dims))
}

/// Decodes into `out`, which must hold exactly [`decoded_dimensions`]`(bytes, scale)` pixels:
/// the way to decode straight into memory the caller chose (a mapped cache file). The
/// caller sized `out`, so checking the pixel limit is its part ([`checked_dimensions`]).
///
/// libjpeg-turbo first (strict: its warnings are errors); for a file it rejects, zune-jpeg
/// in strict mode. A file a limit refused is not tried again.
///
/// # Errors
/// As [`decode_jpeg`], or when `out` has the wrong length.
pub fn decode_into(bytes: &[u8], scale: Scale, out: &mut [u8]) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Damaged("empty file".into()));
    }
    #[cfg(framecache_libjpeg)]
    let turbo_err = match turbo::decode_into(bytes, scale.denominator(), out) {
        Ok(()) => return Ok(()),
        Err(turbo::Failure::Limit(reason)) => return Err(DecodeError::Limit(reason)),
        Err(turbo::Failure::Rejected(reason)) => reason,
    };
    let zune = decode_zune_scaled(bytes, scale, out);
    #[cfg(framecache_libjpeg)]
    // libjpeg's message names the problem better when both fail.
    let zune = zune.map_err(|e| match e {
        DecodeError::Damaged(_) => DecodeError::Damaged(turbo_err),
        other => other,
    });
    zune
}
