//! framecache's errors as Python exceptions: the classes live in `framecache/_errors.py`
//! (they inherit from both `FrameCacheError` and a builtin, which only Python can declare);
//! this maps each [`framecache::Error`] variant to one and sets its attributes.

use framecache::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ORIGIN: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static STORAGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INCOMPLETE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MISSING: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static SUPERSEDED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CODEC: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FRAME_TOO_LARGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OBJECT_TOO_LARGE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BASE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

const MODULE: &str = "framecache._errors";

/// The Python exception for a framecache error.
pub fn to_py(err: Error) -> PyErr {
    Python::attach(|py| build(py, &err).unwrap_or_else(|failed| failed))
}

/// An invalid-input error raised by the binding itself (a value the core never sees).
pub fn invalid(what: &'static str, value: impl ToString, rule: impl Into<String>) -> PyErr {
    to_py(Error::Invalid {
        what,
        value: value.to_string(),
        rule: rule.into(),
    })
}

/// A `FrameCacheError` with a message, for failures of the binding's own machinery.
pub fn other(py: Python<'_>, message: String) -> PyErr {
    match BASE.import(py, MODULE, "FrameCacheError") {
        Ok(class) => PyErr::from_type(class.clone(), message),
        Err(e) => e,
    }
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let message = err.to_string();
    let root = match err {
        Error::Shared(inner) => inner.as_ref(),
        other => other,
    };
    let (class, attrs): (&Bound<'_, PyType>, Vec<(&str, Py<PyAny>)>) = match root {
        Error::Invalid { what, value, .. } => (
            INVALID_INPUT.import(py, MODULE, "InvalidInputError")?,
            vec![
                ("what", what.into_pyobject(py)?.into_any().unbind()),
                ("value", value.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Config(_) => (
            INVALID_INPUT.import(py, MODULE, "InvalidInputError")?,
            vec![],
        ),
        Error::Storage { key, .. } | Error::Vanished { key } => (
            ORIGIN.import(py, MODULE, "OriginError")?,
            vec![("key", key.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::Io { path, .. } => (
            STORAGE.import(py, MODULE, "StorageError")?,
            vec![("filename", path.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::Incomplete {
            timeline,
            expected,
            present,
        } => (
            INCOMPLETE.import(py, MODULE, "IncompleteTimelineError")?,
            vec![
                ("timeline", timeline.into_pyobject(py)?.into_any().unbind()),
                ("expected", expected.into_pyobject(py)?.into_any().unbind()),
                ("present", present.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Superseded { timeline, other } => (
            SUPERSEDED.import(py, MODULE, "SupersededError")?,
            vec![
                ("timeline", timeline.into_pyobject(py)?.into_any().unbind()),
                ("other", other.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Contended { timeline, .. } => (
            SUPERSEDED.import(py, MODULE, "SupersededError")?,
            vec![("timeline", timeline.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::NoFrame { timeline, seq } => (
            MISSING.import(py, MODULE, "MissingFrameError")?,
            vec![
                ("timeline", timeline.into_pyobject(py)?.into_any().unbind()),
                ("seq", seq.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Decode { key, .. } => (
            CODEC.import(py, MODULE, "CodecError")?,
            vec![("key", key.into_pyobject(py)?.into_any().unbind())],
        ),
        Error::FrameTooLarge {
            key,
            width,
            height,
            limit,
        } => (
            FRAME_TOO_LARGE.import(py, MODULE, "FrameTooLargeError")?,
            vec![
                ("key", key.into_pyobject(py)?.into_any().unbind()),
                ("width", width.into_pyobject(py)?.into_any().unbind()),
                ("height", height.into_pyobject(py)?.into_any().unbind()),
                ("limit", limit.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::ObjectTooLarge {
            key, size, limit, ..
        } => (
            OBJECT_TOO_LARGE.import(py, MODULE, "ObjectTooLargeError")?,
            vec![
                ("key", key.into_pyobject(py)?.into_any().unbind()),
                ("size", size.into_pyobject(py)?.into_any().unbind()),
                ("limit", limit.into_pyobject(py)?.into_any().unbind()),
            ],
        ),
        Error::Encode { seq, .. } => (
            CODEC.import(py, MODULE, "CodecError")?,
            vec![("seq", seq.into_pyobject(py)?.into_any().unbind())],
        ),
        // Shared errors are unwrapped above; future variants land on the base class.
        _ => (BASE.import(py, MODULE, "FrameCacheError")?, vec![]),
    };
    let exception = class.call1((message,))?;
    for (name, value) in attrs {
        exception.setattr(name, value)?;
    }
    exception.setattr("retryable", err.is_retryable())?;
    Ok(PyErr::from_value(exception))
}
