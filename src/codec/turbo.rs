//! The libjpeg-turbo decoder shim (`csrc/jpeg_decode.c`): RGB8 out, with DCT scaling.

use super::{DecodeError, MAX_SCANS};
use std::ffi::{CStr, c_char, c_int, c_uint, c_ulong};

unsafe extern "C" {
    fn fc_jpeg_decode_rgb(
        jpeg: *const u8,
        len: c_ulong,
        scale_denom: c_uint,
        max_scans: c_int,
        max_memory: c_ulong,
        out: *mut u8,
        out_len: usize,
        width: *mut c_uint,
        height: *mut c_uint,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// How the shim failed.
pub(super) enum Failure {
    /// libjpeg could not decode it (damaged, or a form it rejects): another decoder may try.
    Rejected(String),
    /// A limit refused it: no other decoder should try.
    Limit(String),
}

impl From<Failure> for DecodeError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Rejected(reason) => DecodeError::Damaged(reason),
            Failure::Limit(reason) => DecodeError::Limit(reason),
        }
    }
}

/// libjpeg's working memory for a decode into `out_len` bytes: a progressive frame keeps
/// every coefficient (two bytes each) of every component, 6 bytes a pixel at full size for
/// 4:4:4 and 8 for CMYK, so four times the full-size RGB output plus room for tables and
/// row buffers holds any ordinary file; more is one built to exhaust memory (libjpeg allows
/// up to 10 components).
fn memory_cap(out_len: usize, denom: u32) -> c_ulong {
    let full = out_len as u64 * u64::from(denom * denom);
    (4 * full + (64 << 20)) as c_ulong
}

/// Runs the shim: headers only when `out` is `None`. Returns the output's dimensions.
fn call(jpeg: &[u8], denom: u32, out: Option<&mut [u8]>) -> Result<(u32, u32), Failure> {
    let cap = memory_cap(out.as_ref().map_or(0, |o| o.len()), denom);
    call_capped(jpeg, denom, out, cap)
}

/// As [`call`], with libjpeg's working memory capped at `max_memory` bytes.
fn call_capped(
    jpeg: &[u8],
    denom: u32,
    out: Option<&mut [u8]>,
    max_memory: c_ulong,
) -> Result<(u32, u32), Failure> {
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
            MAX_SCANS as c_int,
            max_memory,
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
        let msg = msg.to_string_lossy().into_owned();
        return Err(if rc == -2 {
            Failure::Limit(msg)
        } else {
            Failure::Rejected(msg)
        });
    }
    Ok((w, h))
}

/// Output dimensions of `jpeg` decoded at `1/denom`, from its headers.
pub(super) fn dims(jpeg: &[u8], denom: u32) -> Result<(u32, u32), Failure> {
    call(jpeg, denom, None)
}

/// Decodes `jpeg` at `1/denom` into `out`, which must hold exactly the output's bytes.
pub(super) fn decode_into(jpeg: &[u8], denom: u32, out: &mut [u8]) -> Result<(), Failure> {
    call(jpeg, denom, Some(out)).map(|_| ())
}

/// As [`decode_into`] with libjpeg's memory capped at `max_memory`: tests the cap.
#[cfg(test)]
pub(super) fn decode_into_capped(
    jpeg: &[u8],
    out: &mut [u8],
    max_memory: u64,
) -> Result<(), Failure> {
    call_capped(jpeg, 1, Some(out), max_memory as c_ulong).map(|_| ())
}
