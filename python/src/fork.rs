//! Forked processes: the test gate that stops a thread while it holds one of the core's
//! locks, so tests fork at exactly that moment.

use crate::errors::invalid;
use framecache::flock::gate::{self, LockKind};
use pyo3::prelude::*;
use std::time::Duration;

/// Arms the gate: the next thread to take a lock of `kind` (``"decode"``, ``"fetch"``,
/// ``"directory"``, ``"temp"``, ``"evictor"``) stops, holding it, until
/// :func:`_lock_gate_release`; ``"raw-write"`` stops the writer behind loads before its
/// next write.
#[pyfunction]
pub fn _lock_gate_arm(kind: &str) -> PyResult<()> {
    let kind = LockKind::parse(kind).ok_or_else(|| {
        invalid(
            "lock kind",
            kind,
            "decode, fetch, directory, temp, evictor or raw-write",
        )
    })?;
    gate::arm(kind);
    Ok(())
}

/// Waits (the interpreter released) up to `timeout` seconds for a thread to stop at the
/// gate. Returns the path of the lock file it holds (``""`` where the system does not
/// tell), or None when no thread stopped in time.
#[pyfunction]
pub fn _lock_gate_wait(py: Python<'_>, timeout: f64) -> Option<String> {
    let timeout = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
    py.detach(|| {
        gate::wait_held(timeout).then(|| {
            gate::held_path()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
    })
}

/// Lets the stopped thread go on.
#[pyfunction]
pub fn _lock_gate_release() {
    gate::release();
}
