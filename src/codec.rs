//! JPEG encode and decode of RGB8 frames.
//!
//! Encoding uses the system's libjpeg-turbo (SIMD, 4:2:0, byte-compatible with Pillow's
//! output) when the build found its headers, else the pure-Rust `jpeg-encoder` (also
//! 4:2:0, about 3x slower). Decoding uses libjpeg-turbo too when built with it (faster than
//! zune-jpeg on these frames, and it scales through the DCT), falling back to the `image`
//! crate (zune-jpeg) for files libjpeg rejects and in builds without it.

use crate::pixels::Pixels;
use image::RgbImage;

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
    encode_impl(image.as_raw(), width, height, quality)
}

#[cfg(framecache_libjpeg)]
fn encode_impl(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    use std::ffi::{c_char, c_int, c_uint, c_ulong};
    unsafe extern "C" {
        fn fc_jpeg_encode_rgb(
            rgb: *const u8,
            width: c_uint,
            height: c_uint,
            quality: c_int,
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
fn encode_impl(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
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

/// Decodes JPEG bytes to RGB8 (grayscale and CMYK sources are converted).
///
/// # Errors
/// The decoder's message for empty, truncated or non-JPEG input.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Pixels, String> {
    decode_jpeg_scaled(bytes, Scale::Full)
}

/// Decodes JPEG bytes to RGB8 at `scale`, into a buffer of its own.
///
/// # Errors
/// As [`decode_jpeg`].
pub fn decode_jpeg_scaled(bytes: &[u8], scale: Scale) -> Result<Pixels, String> {
    let (width, height) = decoded_dimensions(bytes, scale)?;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    decode_into(bytes, scale, &mut rgb)?;
    Ok(Pixels::from_vec(width, height, rgb).expect("sized from the dimensions"))
}

/// The dimensions [`decode_into`] produces, from the headers only.
///
/// # Errors
/// As [`decode_jpeg`], for headers that do not parse.
pub fn decoded_dimensions(bytes: &[u8], scale: Scale) -> Result<(u32, u32), String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    #[cfg(framecache_libjpeg)]
    if let Ok(dims) = turbo::dims(bytes, scale.denominator()) {
        return Ok(dims);
    }
    let reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let dims = reader.into_dimensions().map_err(|e| e.to_string())?;
    Ok(scale.apply(dims))
}

/// Decodes into `out`, which must hold exactly [`decoded_dimensions`]`(bytes, scale)` pixels:
/// the way to decode straight into memory the caller chose (a mapped cache file).
///
/// # Errors
/// As [`decode_jpeg`], or when `out` has the wrong length.
pub fn decode_into(bytes: &[u8], scale: Scale, out: &mut [u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    #[cfg(framecache_libjpeg)]
    let turbo_err = match turbo::decode_into(bytes, scale.denominator(), out) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let image = decode_with_image_crate(bytes, scale);
    #[cfg(framecache_libjpeg)]
    // libjpeg's message names the problem better when both fail.
    let image = image.map_err(|_| turbo_err);
    let image = image?;
    if image.as_raw().len() != out.len() {
        return Err(format!(
            "decoded {}x{} does not fit a buffer of {} bytes",
            image.width(),
            image.height(),
            out.len()
        ));
    }
    out.copy_from_slice(image.as_raw());
    Ok(())
}

/// zune-jpeg through the `image` crate, resized when scaled (no DCT scaling there).
fn decode_with_image_crate(bytes: &[u8], scale: Scale) -> Result<RgbImage, String> {
    let full = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .map(|img| img.into_rgb8())
        .map_err(|e| e.to_string())?;
    if scale == Scale::Full {
        return Ok(full);
    }
    let (w, h) = scale.apply(full.dimensions());
    Ok(image::imageops::resize(
        &full,
        w,
        h,
        image::imageops::FilterType::Triangle,
    ))
}

/// Decodes a full-size frame with zune-jpeg straight into `out`, which must hold exactly its
/// RGB8 pixels.
///
/// # Errors
/// As [`decode_jpeg`], or when `out` has the wrong length.
pub fn decode_into_zune(bytes: &[u8], out: &mut [u8]) -> Result<(), String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_DIMENSION as usize)
        .set_max_height(MAX_DIMENSION as usize)
        .set_strict_mode(true);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    if decoder.output_buffer_size() != Some(out.len()) {
        return Err(format!(
            "decoded size {:?} does not fit a buffer of {} bytes",
            decoder.output_buffer_size(),
            out.len()
        ));
    }
    decoder.decode_into(out).map_err(|e| e.to_string())
}

/// Decodes with zune-jpeg (the `image` crate) whatever the build: for comparing decoders.
///
/// # Errors
/// As [`decode_jpeg`].
pub fn decode_jpeg_zune(bytes: &[u8]) -> Result<Pixels, String> {
    decode_with_image_crate(bytes, Scale::Full).map(Pixels::from)
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
