//! framecache for Python: the native half of the `framecache` package (`framecache._native`).
//!
//! A thin binding over the core crate's public API: configuration from keywords and the
//! environment, frames as numpy arrays, the GIL released for all I/O and codec work, one
//! runtime per process (rebuilt after a fork, see `runtime.rs`), errors as Python exceptions, the
//! core's log events in Python's `logging` (`logs.rs`).

mod args;
mod cache;
mod config;
mod convert;
mod errors;
mod frame;
mod functions;
mod iter;
mod logs;
mod methods;
mod runtime;
mod twins;

use pyo3::prelude::*;

/// The native module; `framecache/__init__.py` re-exports what users need.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    m.add_class::<frame::PyFrame>()?;
    m.add_class::<cache::PyFrameCache>()?;
    m.add_class::<iter::FrameIterator>()?;
    m.add_function(wrap_pyfunction!(functions::frames_to_b64, m)?)?;
    m.add_function(wrap_pyfunction!(functions::synthetic_frame, m)?)?;
    m.add_function(wrap_pyfunction!(functions::_flush_raw_writes_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_set_log_threshold, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_log_threshold, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_log_counters, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_flush_logs, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_logs_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(logs::_close_logs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("JPEG_ENCODER", framecache::codec::encoder_name())?;
    Ok(())
}
