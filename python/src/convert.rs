//! Results of the core API as Python values: dicts shaped like the core's JSON (stats,
//! status), frame listings, JPEGs and overlays as `bytes`.

use bytes::Bytes;
use framecache::{FrameEntry, FrameJpeg};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::collections::BTreeMap;

/// A serializable core value (stats, timeline status) as plain dicts, lists and scalars.
pub struct Json(pub serde_json::Value);

impl Json {
    /// Serializes `value` (the core's types always serialize).
    pub fn of(value: &impl serde::Serialize) -> Json {
        Json(serde_json::to_value(value).expect("framecache's public types serialize"))
    }
}

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, self.0)
    }
}

fn json_to_py(py: Python<'_>, value: serde_json::Value) -> PyResult<Bound<'_, PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (key, item) in fields {
                dict.set_item(key, json_to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// A timeline's listing: `{seq, key, size, meta}` dicts, `meta` the manifest's entry or `None`.
pub struct Entries(pub Vec<FrameEntry>);

impl<'py> IntoPyObject<'py> for Entries {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for entry in self.0 {
            let dict = PyDict::new(py);
            dict.set_item("seq", entry.seq)?;
            dict.set_item("key", entry.key)?;
            dict.set_item("size", entry.size)?;
            dict.set_item("meta", entry.meta.as_ref().map(Json::of))?;
            list.append(dict)?;
        }
        Ok(list)
    }
}

/// Stored JPEGs: `{seq, timestamp, jpeg, source}` dicts, `jpeg` as `bytes`.
pub struct Jpegs(pub Vec<FrameJpeg>);

impl<'py> IntoPyObject<'py> for Jpegs {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for frame in self.0 {
            list.append(jpeg_dict(py, frame)?)?;
        }
        Ok(list)
    }
}

/// One stored JPEG as a dict.
pub fn jpeg_dict(py: Python<'_>, frame: FrameJpeg) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("seq", frame.seq)?;
    dict.set_item("timestamp", frame.timestamp)?;
    dict.set_item("jpeg", PyBytes::new(py, &frame.jpeg))?;
    dict.set_item("source", frame.source.to_string())?;
    Ok(dict)
}

/// One frame's JPEG and the tier that answered, or `None`.
pub struct MaybeJpeg(pub Option<(Bytes, framecache::Source)>);

impl<'py> IntoPyObject<'py> for MaybeJpeg {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.0 {
            Some((jpeg, _)) => PyBytes::new(py, &jpeg).into_any(),
            None => py.None().into_bound(py),
        })
    }
}

/// Overlays as `{name: bytes}`, or `None` when there are none.
pub struct Overlays(pub Option<BTreeMap<String, Bytes>>);

impl<'py> IntoPyObject<'py> for Overlays {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(overlays) = self.0 else {
            return Ok(py.None().into_bound(py));
        };
        let dict = PyDict::new(py);
        for (name, png) in overlays {
            dict.set_item(name, PyBytes::new(py, &png))?;
        }
        Ok(dict.into_any())
    }
}

/// `seqs=` of a read: `None` is the whole timeline; a `range` of step 1 stays a range
/// (nothing materialized); any other iterable of ints is read in its order, duplicates kept.
/// A negative or non-int item, or a selection past the core's limit, is an
/// `InvalidInputError` naming it.
pub fn seqs_of(seqs: Option<&Bound<'_, PyAny>>) -> PyResult<framecache::Seqs> {
    use framecache::Seqs;
    use pyo3::types::PyRange;
    let Some(seqs) = seqs.filter(|s| !s.is_none()) else {
        return Ok(Seqs::All);
    };
    let limit = framecache::MAX_SELECTION;
    if let Ok(range) = seqs.cast::<PyRange>()
        && range.step()? == 1
    {
        let (start, stop) = (range.start()?, range.stop()?);
        if start < 0 {
            return Err(crate::errors::invalid("frame seq", start, "must be ≥ 0"));
        }
        let stop = stop.max(start) as u64;
        let seqs = Seqs::Range(start as u64..stop);
        if stop - start as u64 > limit {
            return Err(crate::errors::invalid(
                "frame seqs",
                seqs.len().unwrap_or(0),
                format!("at most {limit} frames in one read"),
            ));
        }
        return Ok(seqs);
    }
    let mut out = Vec::new();
    for item in seqs.try_iter()? {
        let item = item?;
        let seq: u64 = item
            .extract()
            .map_err(|_| crate::errors::invalid("frame seq", item.repr().map_or_else(|_| "?".into(), |r| r.to_string()), "must be an int ≥ 0"))?;
        if out.len() as u64 >= limit {
            return Err(crate::errors::invalid(
                "frame seqs",
                "more",
                format!("at most {limit} frames in one read"),
            ));
        }
        out.push(seq);
    }
    Ok(Seqs::List(out))
}
