//! The module's functions: encoding frames for API responses, and the synthetic video.

use crate::args::{frames_from_py, quality};
use crate::convert::ToPython;
use crate::errors::{invalid, to_py};
use crate::frame::{PyFrame, Read, frame_to_py};
use framecache::Access;
use pyo3::prelude::*;

/// Encodes in-memory frames to ``{"seq", "timestamp", "jpeg_b64"}`` dicts (JPEG at
/// ``quality``, on all cores), sorted by sequence, for API responses.
#[pyfunction]
#[pyo3(signature = (frames, quality=75))]
pub fn frames_to_b64<'py>(
    py: Python<'py>,
    frames: &Bound<'py, PyAny>,
    quality: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let quality = self::quality(quality)?;
    // Blocking: the arrays are read in place, the interpreter released until they are done.
    let frames = frames_from_py(frames, Read::InPlace)?;
    let encoded = py
        .detach(|| framecache::frames_to_b64(&frames, quality))
        .map_err(to_py)?;
    encoded.to_python(py)
}

/// Frame ``seq`` of framecache's deterministic synthetic video (a panning gradient with
/// blocks and mild noise, about 117 KB per 1280×720 frame at q85), for demos and benchmarks.
#[pyfunction]
#[pyo3(signature = (seq, width=1280, height=720))]
pub fn synthetic_frame(
    py: Python<'_>,
    seq: u64,
    width: u32,
    height: u32,
) -> PyResult<Bound<'_, PyFrame>> {
    if width == 0 || height == 0 {
        return Err(invalid(
            "synthetic frame size",
            format!("{width}x{height}"),
            "must not be empty",
        ));
    }
    let frame = py.detach(|| framecache::synthetic_frame(seq, width, height));
    frame_to_py(py, frame, Access::Writable)
}

/// Waits up to `timeout` seconds, the interpreter released, for this process's raw-frame
/// writes behind loads; whether none is left.
pub fn flush_raw_writes(py: Python<'_>, timeout: f64) -> bool {
    let bound = std::time::Duration::try_from_secs_f64(timeout).unwrap_or_default();
    py.detach(|| framecache::flush_raw_writes(bound))
}

/// `atexit`: waits a bounded time for raw frames still queued behind loads, so that a
/// process loading once and exiting leaves them for the machine. Never waits longer than
/// `timeout`, and returns at once when nothing is queued.
#[pyfunction]
pub fn _flush_raw_writes_at_exit(py: Python<'_>, timeout: f64) -> bool {
    flush_raw_writes(py, timeout)
}
