//! The libjpeg-turbo decoder shim (`csrc/jpeg_decode.c`): RGB8 out, with DCT scaling.

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong};

unsafe extern "C" {
    fn fc_jpeg_decode_rgb(
        jpeg: *const u8,
        len: c_ulong,
        scale_denom: c_uint,
        out: *mut u8,
        out_len: usize,
        width: *mut c_uint,
        height: *mut c_uint,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Runs the shim: headers only when `out` is `None`. Returns the output's dimensions.
fn call(jpeg: &[u8], denom: u32, out: Option<&mut [u8]>) -> Result<(u32, u32), String> {
    let (mut w, mut h): (c_uint, c_uint) = (0, 0);
    let mut err = [0 as c_char; 200];
    let (out_ptr, out_len) = match out {
        Some(out) => (out.as_mut_ptr(), out.len()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `jpeg` is valid for reads of its length during the call (libjpeg only reads
    // it); `out_ptr` is null or valid for writes of `out_len` bytes, and the shim checks
    // that the decoded size equals `out_len` before writing any row; `w`, `h` and `err` are
    // valid for writes, and the shim NUL-terminates `err` within its length.
    let rc = unsafe {
        fc_jpeg_decode_rgb(
            jpeg.as_ptr(),
            jpeg.len() as c_ulong,
            denom,
            out_ptr,
            out_len,
            &mut w,
            &mut h,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: on failure the shim wrote a NUL-terminated string into `err`.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
        return Err(msg.to_string_lossy().into_owned());
    }
    Ok((w, h))
}

/// Output dimensions of `jpeg` decoded at `1/denom`.
pub(super) fn dims(jpeg: &[u8], denom: u32) -> Result<(u32, u32), String> {
    call(jpeg, denom, None)
}

/// Decodes `jpeg` at `1/denom` into `out`, which must hold exactly the output's bytes.
pub(super) fn decode_into(jpeg: &[u8], denom: u32, out: &mut [u8]) -> Result<(), String> {
    call(jpeg, denom, Some(out)).map(|_| ())
}
