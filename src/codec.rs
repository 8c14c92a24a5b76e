//! JPEG encode and decode of RGB8 frames.
//!
//! Encoding uses the system's libjpeg-turbo (SIMD, 4:2:0, byte-compatible with Pillow's
//! output) when the build found its headers, else the pure-Rust `jpeg-encoder` (also
//! 4:2:0, about 3x slower). Decoding uses the `image` crate (zune-jpeg).

use image::RgbImage;

/// Largest width or height a JPEG can hold.
pub const MAX_DIMENSION: u32 = 65_500;

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
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, String> {
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

/// Decodes JPEG bytes to RGB8 (grayscale and CMYK sources are converted).
///
/// # Errors
/// The decoder's message for empty, truncated or non-JPEG input.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
        .map(|img| img.into_rgb8())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        })
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
        assert!(encode_jpeg(&RgbImage::new(0, 8), 85).is_err());
        assert!(decode_jpeg(b"").is_err());
        assert!(decode_jpeg(b"not a jpeg").is_err());
        let jpeg = encode_jpeg(&gradient(64, 64), 85).unwrap();
        assert!(decode_jpeg(&jpeg[..jpeg.len() / 3]).is_err());
    }
}
