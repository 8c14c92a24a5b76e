//! JPEG encoding of RGB8 frames: libjpeg-turbo through its shim when the build has it,
//! else the pure-Rust `jpeg-encoder`; both 4:2:0.

use super::MAX_DIMENSION;
use crate::pixels::Pixels;

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
/// grown by then): exercises the error path. Pure-Rust builds just encode. A test hook
/// (feature `test-hooks`).
#[cfg(any(test, feature = "test-hooks"))]
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
