//! The decode entry points: header dimensions, checked against the pixel limit, and
//! decoding libjpeg-turbo first with zune-jpeg as the fallback.

use super::Scale;
use super::limits::{DEFAULT_MAX_FRAME_PIXELS, DecodeError, check_pixels};
#[cfg(framecache_libjpeg)]
use super::turbo;
use super::zune::{decode_zune_scaled, zune_header_dimensions};
use crate::pixels::Pixels;

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
