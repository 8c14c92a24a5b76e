//! The libjpeg-turbo decoder shim (`csrc/jpeg_decode.c`): RGB8 out, with DCT scaling.

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong};

unsafe extern "C" {
    fn fc_jpeg_decode_dims(
        jpeg: *const u8,
        len: c_ulong,
        scale_denom: c_uint,
        width: *mut c_uint,
        height: *mut c_uint,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn fc_jpeg_decode_rgb(
        jpeg: *const u8,
        len: c_ulong,
        scale_denom: c_uint,
        out: *mut u8,
        out_len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

fn message(err: &[c_char]) -> String {
    // SAFETY: on failure the shim wrote a NUL-terminated string of at most `err.len()` bytes.
    unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Output dimensions of `jpeg` decoded at `1/denom`.
pub(super) fn dims(jpeg: &[u8], denom: u32) -> Result<(u32, u32), String> {
    let (mut w, mut h): (c_uint, c_uint) = (0, 0);
    let mut err = [0 as c_char; 200];
    // SAFETY: `jpeg` is valid for `len` bytes during the call (libjpeg only reads it); `w`,
    // `h` and `err` are valid for writes of their sizes, `err` NUL-terminated by the shim.
    let rc = unsafe {
        fc_jpeg_decode_dims(
            jpeg.as_ptr(),
            jpeg.len() as c_ulong,
            denom,
            &mut w,
            &mut h,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(message(&err));
    }
    Ok((w, h))
}

/// Decodes `jpeg` at `1/denom` into `out`, which must hold exactly the output's bytes.
pub(super) fn decode_into(jpeg: &[u8], denom: u32, out: &mut [u8]) -> Result<(), String> {
    let mut err = [0 as c_char; 200];
    // SAFETY: `jpeg` is valid for reads of its length and `out` for writes of its length
    // during the call; the shim checks that the decoded size equals `out.len()` before
    // writing any row and writes only within it.
    let rc = unsafe {
        fc_jpeg_decode_rgb(
            jpeg.as_ptr(),
            jpeg.len() as c_ulong,
            denom,
            out.as_mut_ptr(),
            out.len(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(message(&err));
    }
    Ok(())
}
