//! Results of the core API as Python values: dicts shaped like the core's JSON (stats,
//! status), frame listings, JPEGs and overlays as `bytes`, decoded frames as `Frame`s.
//!
//! One trait, [`ToPython`], says how each core value looks in Python; lists, optional values
//! and name maps are built from it once, and [`PyValue`] hands any of them to PyO3.

use crate::frame::frame_to_py;
use bytes::Bytes;
use framecache::{Access, FrameB64, FrameEntry, FrameJpeg};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::collections::BTreeMap;

/// A result of the core API as the Python value a method returns.
pub trait ToPython: Send + 'static {
    /// Builds the Python value (the interpreter is held).
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

/// Any [`ToPython`] value where PyO3 wants an `IntoPyObject` (awaitables' results).
pub struct PyValue<T>(pub T);

impl<'py, T: ToPython> IntoPyObject<'py> for PyValue<T> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.0.to_python(py)
    }
}

/// Values PyO3 already converts the way the methods return them.
macro_rules! as_pyo3_converts {
    ($($ty:ty),*) => {$(
        impl ToPython for $ty {
            fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
                Ok(self.into_pyobject(py)?.to_owned().into_any())
            }
        }
    )*};
}

as_pyo3_converts!(bool, u64, usize, f64, String);

/// A method that returns nothing returns `None` (PyO3 would make `()` an empty tuple).
impl ToPython for () {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(py.None().into_bound(py))
    }
}

/// A stored JPEG or PNG as `bytes`.
impl ToPython for Bytes {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(PyBytes::new(py, &self).into_any())
    }
}

/// A list.
impl<T: ToPython> ToPython for Vec<T> {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let list = PyList::empty(py);
        for item in self {
            list.append(item.to_python(py)?)?;
        }
        Ok(list.into_any())
    }
}

/// `None` when the core found nothing.
impl<T: ToPython> ToPython for Option<T> {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        match self {
            Some(value) => value.to_python(py),
            None => Ok(py.None().into_bound(py)),
        }
    }
}

/// Overlays by name.
impl<T: ToPython> ToPython for BTreeMap<String, T> {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let dict = PyDict::new(py);
        for (name, value) in self {
            dict.set_item(name, value.to_python(py)?)?;
        }
        Ok(dict.into_any())
    }
}

/// A serializable core value (stats, timeline status) as plain dicts, lists and scalars.
pub struct Json(pub serde_json::Value);

impl Json {
    /// Serializes `value` (the core's types always serialize).
    pub fn of(value: &impl serde::Serialize) -> Json {
        Json(serde_json::to_value(value).expect("framecache's public types serialize"))
    }
}

impl ToPython for Json {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        use serde_json::Value;
        Ok(match self.0 {
            Value::Null => py.None().into_bound(py),
            Value::Bool(b) => b.to_python(py)?,
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u.into_pyobject(py)?.into_any(),
                (None, Some(i)) => i.into_pyobject(py)?.into_any(),
                _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
            },
            Value::String(s) => s.to_python(py)?,
            Value::Array(items) => items
                .into_iter()
                .map(Json)
                .collect::<Vec<_>>()
                .to_python(py)?,
            Value::Object(fields) => {
                let dict = PyDict::new(py);
                for (key, item) in fields {
                    dict.set_item(key, Json(item).to_python(py)?)?;
                }
                dict.into_any()
            }
        })
    }
}

/// A dict of `fields`, in order.
fn dict<'py, const N: usize>(
    py: Python<'py>,
    fields: [(&str, Bound<'py, PyAny>); N],
) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for (name, value) in fields {
        dict.set_item(name, value)?;
    }
    Ok(dict.into_any())
}

/// One entry of a timeline's listing: `{seq, key, size, meta}`, `meta` the manifest's entry
/// or `None`.
impl ToPython for FrameEntry {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let meta = self.meta.as_ref().map(Json::of);
        dict(
            py,
            [
                ("seq", self.seq.to_python(py)?),
                ("key", self.key.to_python(py)?),
                ("size", self.size.to_python(py)?),
                ("meta", meta.to_python(py)?),
            ],
        )
    }
}

/// One stored JPEG: `{seq, timestamp, jpeg, source}`, `jpeg` as `bytes`.
impl ToPython for FrameJpeg {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        dict(
            py,
            [
                ("seq", self.seq.to_python(py)?),
                ("timestamp", self.timestamp.to_python(py)?),
                ("jpeg", self.jpeg.to_python(py)?),
                ("source", self.source.to_string().to_python(py)?),
            ],
        )
    }
}

/// One frame as `{seq, timestamp, jpeg_b64}`, as the seed module returns them.
impl ToPython for FrameB64 {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        dict(
            py,
            [
                ("seq", self.seq.to_python(py)?),
                ("timestamp", self.timestamp.to_python(py)?),
                ("jpeg_b64", self.jpeg_b64.to_python(py)?),
            ],
        )
    }
}

/// A decoded frame as a `framecache.Frame`, its image writable or read-only as loaded.
pub struct Decoded(pub framecache::Frame, pub Access);

impl Decoded {
    /// Every frame of a load, with the access it was loaded with.
    pub fn all(frames: Vec<framecache::Frame>, access: Access) -> Vec<Decoded> {
        frames.into_iter().map(|f| Decoded(f, access)).collect()
    }
}

impl ToPython for Decoded {
    fn to_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(frame_to_py(py, self.0, self.1)?.into_any())
    }
}
