//! JPEG encode and decode of RGB8 frames.
//!
//! Encoding uses the system's libjpeg-turbo (SIMD, 4:2:0, byte-compatible with Pillow's
//! output) when the build found its headers, else the pure-Rust `jpeg-encoder` (also
//! 4:2:0, about 3x slower). Decoding uses libjpeg-turbo too when built with it (faster than
//! zune-jpeg on these frames, and it scales through the DCT), falling back to zune-jpeg for
//! files libjpeg rejects and in builds without it. Both are strict (damaged data is an
//! error, never a grey-filled frame), bounded in progressive scans ([`MAX_SCANS`]), and
//! every decode checks the header's dimensions against a pixel limit before allocating.

use crate::pixels::Pixels;
use image::RgbImage;
use zune_core::bytestream::ZCursor;

#[cfg(framecache_libjpeg)]
mod turbo;

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

/// Encodes an RGB8 image at `quality` (1..=100) with 4:2:0 chroma subsampling.
///
/// # Errors
/// A message when the quality or dimensions are out of range or the encoder fails.
pub fn encode_jpeg(image: &Pixels, quality: u8) -> Result<Vec<u8>, String> {
    if !(1..=100).contains(&quality) {
        return Err(format!("quality {quality} is outside 1..=100"));
    }
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(format!(
            "dimensions {width}x{height} are outside 1..={MAX_DIMENSION}"
        ));
    }
    encode_impl(image.as_raw(), width, height, quality, 0)
}

/// As [`encode_jpeg`], but the libjpeg encoder fails once `row` rows are in (its buffer has
/// grown by then): exercises the error path. Pure-Rust builds just encode.
#[doc(hidden)]
pub fn encode_jpeg_failing_at(image: &Pixels, quality: u8, row: u32) -> Result<Vec<u8>, String> {
    let (width, height) = image.dimensions();
    encode_impl(image.as_raw(), width, height, quality, row.max(1))
}

#[cfg(framecache_libjpeg)]
fn encode_impl(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    fail_at_row: u32,
) -> Result<Vec<u8>, String> {
    use std::ffi::{c_char, c_int, c_uint, c_ulong};
    unsafe extern "C" {
        fn fc_jpeg_encode_rgb(
            rgb: *const u8,
            width: c_uint,
            height: c_uint,
            quality: c_int,
            fail_at_row: c_uint,
            out: *mut *mut u8,
            out_len: *mut c_ulong,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        fn fc_jpeg_free(buf: *mut u8);
    }
    assert_eq!(rgb.len(), width as usize * height as usize * 3);
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut out_len: c_ulong = 0;
    let mut err = [0 as c_char; 200];
    // SAFETY: `rgb` holds exactly width * height * 3 bytes (asserted above) and outlives the
    // call; the shim writes a malloc'd buffer and its length into `out`/`out_len` on success
    // and a NUL-terminated message of at most `err.len()` bytes into `err` on failure.
    let rc = unsafe {
        fc_jpeg_encode_rgb(
            rgb.as_ptr(),
            width,
            height,
            c_int::from(quality),
            fail_at_row,
            &mut out,
            &mut out_len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: on failure the shim wrote a NUL-terminated string into `err`.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
        return Err(msg.to_string_lossy().into_owned());
    }
    // SAFETY: on success `out` points to `out_len` initialised bytes allocated by the shim,
    // which we copy and then release exactly once with the shim's matching free.
    let jpeg = unsafe { std::slice::from_raw_parts(out, out_len as usize) }.to_vec();
    // SAFETY: `out` came from the shim's allocator and is not used after this.
    unsafe { fc_jpeg_free(out) };
    Ok(jpeg)
}

#[cfg(not(framecache_libjpeg))]
fn encode_impl(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
    _fail_at_row: u32,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(
            rgb,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Output size of a decode: full, or scaled down through the DCT, which costs much less
/// than a full decode and a resize. Scaled sizes round up (`ceil(width / n)`), as libjpeg's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scale {
    /// Every pixel.
    #[default]
    Full,
    /// 1/2 of the width and height.
    Half,
    /// 1/4.
    Quarter,
    /// 1/8.
    Eighth,
}

impl Scale {
    /// The divisor: 1, 2, 4 or 8.
    pub fn denominator(self) -> u32 {
        match self {
            Scale::Full => 1,
            Scale::Half => 2,
            Scale::Quarter => 4,
            Scale::Eighth => 8,
        }
    }

    /// The scale with divisor `n` (1, 2, 4 or 8).
    pub fn from_denominator(n: u32) -> Option<Scale> {
        match n {
            1 => Some(Scale::Full),
            2 => Some(Scale::Half),
            4 => Some(Scale::Quarter),
            8 => Some(Scale::Eighth),
            _ => None,
        }
    }

    /// `(width, height)` scaled, rounded up.
    pub fn apply(self, (width, height): (u32, u32)) -> (u32, u32) {
        let n = self.denominator();
        (width.div_ceil(n), height.div_ceil(n))
    }
}

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

/// The frame header's dimensions as zune-jpeg reads them.
fn zune_header_dimensions(bytes: &[u8]) -> Result<(u32, u32), String> {
    let mut decoder = zune_decoder(bytes);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions().ok_or("no frame header")?;
    Ok((w as u32, h as u32))
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

/// zune-jpeg set up strictly: damaged data is an error (the `image` crate's wrapper is
/// lenient and fills what is missing with grey), scans and dimensions bounded.
fn zune_decoder(bytes: &[u8]) -> zune_jpeg::JpegDecoder<ZCursor<&[u8]>> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_DIMENSION as usize)
        .set_max_height(MAX_DIMENSION as usize)
        .jpeg_set_max_scans(MAX_SCANS as usize)
        .set_strict_mode(true);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
}

/// zune-jpeg into `out` at `scale`: a full decode, resized when scaled (it has no DCT
/// scaling). The full size is checked against `out` first, so a header claiming more than
/// the caller sized for allocates nothing.
fn decode_zune_scaled(bytes: &[u8], scale: Scale, out: &mut [u8]) -> Result<(), DecodeError> {
    let damaged = |e: String| DecodeError::Damaged(e);
    let mut decoder = zune_decoder(bytes);
    decoder
        .decode_headers()
        .map_err(|e| damaged(e.to_string()))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| damaged("no frame header".into()))?;
    let (w, h) = (w as u32, h as u32);
    let (sw, sh) = scale.apply((w, h));
    let fits = sw as usize * sh as usize * 3 == out.len()
        && decoder.output_buffer_size() == Some(w as usize * h as usize * 3);
    if !fits {
        return Err(damaged(format!(
            "decoded {w}x{h} at 1/{} does not fit a buffer of {} bytes",
            scale.denominator(),
            out.len()
        )));
    }
    if scale == Scale::Full {
        return decoder.decode_into(out).map_err(|e| damaged(e.to_string()));
    }
    let mut full = vec![0u8; w as usize * h as usize * 3];
    decoder
        .decode_into(&mut full)
        .map_err(|e| damaged(e.to_string()))?;
    let full = RgbImage::from_raw(w, h, full).expect("sized from the dimensions");
    let small = image::imageops::resize(&full, sw, sh, image::imageops::FilterType::Triangle);
    out.copy_from_slice(small.as_raw());
    Ok(())
}

/// Decodes a full-size frame with zune-jpeg (strict) straight into `out`, which must hold
/// exactly its RGB8 pixels.
///
/// # Errors
/// As [`decode_jpeg`], or when `out` has the wrong length.
pub fn decode_into_zune(bytes: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    decode_zune_scaled(bytes, Scale::Full, out)
}

/// Decodes with zune-jpeg (strict) whatever the build, refusing frames over
/// [`DEFAULT_MAX_FRAME_PIXELS`]: for comparing decoders, and the fallback's own tests.
///
/// # Errors
/// As [`decode_jpeg`].
pub fn decode_jpeg_zune(bytes: &[u8]) -> Result<Pixels, DecodeError> {
    let mut decoder = zune_decoder(bytes);
    decoder
        .decode_headers()
        .map_err(|e| DecodeError::Damaged(e.to_string()))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| DecodeError::Damaged("no frame header".into()))?;
    let (w, h) = (w as u32, h as u32);
    check_pixels((w, h), DEFAULT_MAX_FRAME_PIXELS)?;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    decode_zune_scaled(bytes, Scale::Full, &mut rgb)?;
    Ok(Pixels::from_vec(w, h, rgb).expect("sized from the dimensions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Pixels {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        })
        .into()
    }

    #[test]
    fn round_trip_is_close_and_subsampled() {
        let img = gradient(320, 240);
        let jpeg = encode_jpeg(&img, 85).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        // SOF0 component 1 sampling factors: 0x22 means 2x2 luma, i.e. 4:2:0.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        assert_eq!(jpeg[sof + 11], 0x22, "luma sampling factor");
        let back = decode_jpeg(&jpeg).unwrap();
        assert_eq!(back.dimensions(), (320, 240));
        let mae: f64 = img
            .as_raw()
            .iter()
            .zip(back.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(mae < 3.0, "mean abs error {mae}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(encode_jpeg(&gradient(8, 8), 0).is_err());
        assert!(encode_jpeg(&gradient(8, 8), 101).is_err());
        assert!(encode_jpeg(&RgbImage::new(0, 8).into(), 85).is_err());
        assert!(decode_jpeg(b"").is_err());
        assert!(decode_jpeg(b"not a jpeg").is_err());
        let jpeg = encode_jpeg(&gradient(64, 64), 85).unwrap();
        assert!(decode_jpeg(&jpeg[..jpeg.len() / 3]).is_err());
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn photo(w: u32, h: u32) -> Vec<u8> {
        encode_jpeg(&crate::synthetic_frame(3, w, h).image, 90).unwrap()
    }

    fn mean_abs_error(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn decoders_agree() {
        let jpeg = photo(160, 96);
        let ours = decode_jpeg(&jpeg).unwrap();
        let zune = decode_jpeg_zune(&jpeg).unwrap();
        assert_eq!(ours.dimensions(), (160, 96));
        assert!(mean_abs_error(ours.as_raw(), zune.as_raw()) < 1.5);
    }

    #[test]
    fn scaled_decodes_round_up_and_resemble_a_resize() {
        let jpeg = photo(161, 97);
        let full = decode_jpeg(&jpeg).unwrap().into_rgb_image();
        for scale in [Scale::Half, Scale::Quarter, Scale::Eighth] {
            let small = decode_jpeg_scaled(&jpeg, scale).unwrap();
            let (w, h) = scale.apply((161, 97));
            assert_eq!(small.dimensions(), (w, h), "{scale:?}");
            assert_eq!(decoded_dimensions(&jpeg, scale).unwrap(), (w, h));
            let resized =
                image::imageops::resize(&full, w, h, image::imageops::FilterType::Triangle);
            let mae = mean_abs_error(small.as_raw(), resized.as_raw());
            assert!(mae < 12.0, "{scale:?}: {mae}");
        }
    }

    #[test]
    fn zune_into_a_buffer_matches_the_image_crate() {
        let jpeg = photo(160, 96);
        let mut out = vec![0u8; 160 * 96 * 3];
        decode_into_zune(&jpeg, &mut out).unwrap();
        assert_eq!(out, decode_jpeg_zune(&jpeg).unwrap().into_vec());
        assert!(decode_into_zune(&jpeg, &mut out[1..]).is_err());
        assert!(decode_into_zune(&jpeg[..jpeg.len() / 3], &mut out).is_err());
    }

    #[test]
    fn wrong_buffer_and_damaged_input_are_errors() {
        let jpeg = photo(64, 32);
        assert!(decode_into(&jpeg, Scale::Full, &mut [0u8; 10]).is_err());
        let mut flipped = jpeg.clone();
        let mid = flipped.len() / 2;
        flipped.truncate(mid);
        assert!(decode_jpeg(&flipped).is_err());
        assert_eq!(Scale::from_denominator(4), Some(Scale::Quarter));
        assert_eq!(Scale::from_denominator(3), None);
    }
}

#[cfg(test)]
mod hostile_tests {
    //! Damaged and hostile files: refused with an error, never a best-effort frame.

    use super::*;

    fn photo(w: u32, h: u32) -> Vec<u8> {
        encode_jpeg(&crate::synthetic_frame(3, w, h).image, 90).unwrap()
    }

    /// A few hundred bytes whose frame header claims 65500x65500 (12.9 GB of RGB).
    fn bomb() -> Vec<u8> {
        let mut jpeg = photo(16, 16);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&65_500u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&65_500u16.to_be_bytes());
        // Headers through the scan header and a little data: libjpeg needs its tables.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        jpeg.truncate(sos + 32);
        jpeg
    }

    const MANY_SCANS: &[u8] = include_bytes!("../tests/data/many_scans.jpg");
    const PROGRESSIVE: &[u8] = include_bytes!("../tests/data/progressive.jpg");

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        let bomb = bomb();
        assert_eq!(frame_dimensions(&bomb), Ok((65_500, 65_500)));
        let error = DecodeError::TooManyPixels {
            width: 65_500,
            height: 65_500,
            limit: DEFAULT_MAX_FRAME_PIXELS,
        };
        let refused = Err(error.clone());
        assert_eq!(decode_jpeg(&bomb).map(|_| ()), refused);
        assert_eq!(
            decode_jpeg_scaled(&bomb, Scale::Eighth).map(|_| ()),
            refused
        );
        assert_eq!(decode_jpeg_zune(&bomb).map(|_| ()), refused);
        let text = error.to_string();
        assert!(text.contains("65500x65500") && text.contains("max_frame_pixels"));
    }

    #[test]
    fn the_pixel_limit_counts_full_size_pixels() {
        let jpeg = photo(64, 48);
        assert!(decode_jpeg_limited(&jpeg, Scale::Full, 64 * 48).is_ok());
        for scale in [Scale::Full, Scale::Eighth] {
            assert!(matches!(
                decode_jpeg_limited(&jpeg, scale, 64 * 48 - 1),
                Err(DecodeError::TooManyPixels {
                    width: 64,
                    height: 48,
                    ..
                })
            ));
        }
    }

    #[test]
    fn truncated_jpegs_are_errors_in_both_decoders() {
        let jpeg = photo(320, 240);
        let half = &jpeg[..jpeg.len() / 2];
        let mut out = vec![0u8; 320 * 240 * 3];
        assert!(decode_jpeg(half).is_err());
        assert!(decode_jpeg_zune(half).is_err(), "zune-jpeg filled in grey");
        assert!(decode_into_zune(half, &mut out).is_err());
        assert!(decode_into(half, Scale::Full, &mut out).is_err());
        for scale in [Scale::Half, Scale::Quarter, Scale::Eighth] {
            assert!(decode_jpeg_scaled(half, scale).is_err(), "{scale:?}");
        }
        #[cfg(framecache_libjpeg)]
        assert!(turbo::decode_into(half, 1, &mut out).is_err());
        // Cut anywhere in the entropy-coded data: always an error, never a frame.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        for cut in (sos + 20..jpeg.len() - 2).step_by(997) {
            assert!(decode_jpeg(&jpeg[..cut]).is_err(), "cut at {cut}");
            assert!(
                decode_jpeg_zune(&jpeg[..cut]).is_err(),
                "zune, cut at {cut}"
            );
        }
    }

    #[test]
    fn progressive_jpegs_of_too_many_scans_are_refused_by_both_decoders() {
        // 190 scans, each valid (one AC coefficient of one component): libjpeg decodes it
        // without complaint unless told a limit.
        let mut out = vec![0u8; 32 * 24 * 3];
        let err = decode_jpeg(MANY_SCANS).unwrap_err();
        assert!(err.to_string().contains("scans"), "{err}");
        assert!(decode_jpeg_zune(MANY_SCANS).is_err());
        assert!(decode_into_zune(MANY_SCANS, &mut out).is_err());
        #[cfg(framecache_libjpeg)]
        assert!(matches!(
            turbo::decode_into(MANY_SCANS, 1, &mut out),
            Err(turbo::Failure::Limit(_))
        ));
        // An ordinary progressive file decodes, the same in both.
        let ours = decode_jpeg(PROGRESSIVE).unwrap();
        let zune = decode_jpeg_zune(PROGRESSIVE).unwrap();
        assert_eq!(ours.dimensions(), (32, 24));
        assert_eq!(zune.dimensions(), (32, 24));
    }

    #[cfg(framecache_libjpeg)]
    #[test]
    fn libjpeg_memory_is_capped() {
        // A progressive decode keeps every coefficient of the frame in libjpeg's memory:
        // 512x512 at 4:2:0 is 768 KB of them.
        let jpeg: &[u8] = include_bytes!("../tests/data/progressive_512.jpg");
        let mut out = vec![0u8; 512 * 512 * 3];
        assert!(turbo::decode_into(jpeg, 1, &mut out).is_ok());
        assert!(turbo::decode_into_capped(jpeg, &mut out, 2 << 20).is_ok());
        assert!(matches!(
            turbo::decode_into_capped(jpeg, &mut out, 256 << 10),
            Err(turbo::Failure::Limit(_))
        ));
    }

    /// The encoder's error path once its output buffer has grown: it used to free the
    /// first buffer a second time (libjpeg had freed it when growing) and leak the live
    /// one; glibc aborts the process on the double free.
    #[cfg(framecache_libjpeg)]
    #[test]
    fn an_encoder_error_after_its_buffer_grew_frees_once() {
        let noise: Vec<u8> = (0..512u32 * 512 * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let image = Pixels::from_vec(512, 512, noise).unwrap();
        for _ in 0..3 {
            let err = encode_jpeg_failing_at(&image, 100, 400).unwrap_err();
            assert!(!err.is_empty());
        }
        // Nothing was left behind that breaks the next encode.
        let ok = encode_jpeg(&image, 100).unwrap();
        assert!(ok.len() > 64 * 1024, "the buffer grew: {} bytes", ok.len());
        assert_eq!(decode_jpeg(&ok).unwrap().dimensions(), (512, 512));
    }
}
