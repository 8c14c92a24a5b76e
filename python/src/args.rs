//! Python arguments as the core takes them: frames and encoded frames (copied while the
//! interpreter is held), overlays by name, JPEG qualities, clear scopes, write modes, load
//! options and the seqs of a read.

use crate::errors::invalid;
use crate::frame::{Read, frame_from_py};
use bytes::Bytes;
use framecache::{Access, ClearScope, LoadOptions, Scale, WriteMode};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;

/// A clear scope by name.
pub fn scope(name: &str) -> PyResult<ClearScope> {
    match name {
        "all" => Ok(ClearScope::All),
        "frames" => Ok(ClearScope::Frames),
        "overlays" => Ok(ClearScope::Overlays),
        other => Err(invalid(
            "clear scope",
            other,
            "must be \"all\", \"frames\" or \"overlays\"",
        )),
    }
}

/// `replace=True` rebuilds the timeline; the default keeps its other frames.
pub fn write_mode(replace: bool) -> WriteMode {
    if replace {
        WriteMode::Replace
    } else {
        WriteMode::Merge
    }
}

/// A JPEG quality as the core takes it.
pub fn quality(value: i64) -> PyResult<u8> {
    u8::try_from(value)
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| invalid("JPEG quality", value, "must be within 1..=100"))
}

/// How loads hand out frames: `writeable=False` asks for read-only views of the cache's
/// buffers; `scale` (1, 2, 4 or 8) decodes at 1/scale of the size through the DCT.
pub fn load_options(writeable: bool, scale: u32) -> PyResult<LoadOptions> {
    let scale = Scale::from_denominator(scale)
        .ok_or_else(|| invalid("scale", scale, "must be 1, 2, 4 or 8"))?;
    Ok(LoadOptions {
        access: if writeable {
            Access::Writable
        } else {
            Access::ReadOnly
        },
        scale,
    })
}

/// Frame-like objects as core frames, their pixels taken as `pixels` says.
pub fn frames_from_py(frames: &Bound<'_, PyAny>, pixels: Read) -> PyResult<Vec<framecache::Frame>> {
    let mut out = Vec::with_capacity(frames.len().unwrap_or(0));
    for frame in frames.try_iter()? {
        out.push(frame_from_py(&frame?, pixels)?);
    }
    Ok(out)
}

/// Encoded frames from dicts or objects with `seq`, `jpeg` and optional metadata.
pub fn encoded_from_py(frames: &Bound<'_, PyAny>) -> PyResult<Vec<framecache::EncodedFrame>> {
    let mut out = Vec::new();
    for item in frames.try_iter()? {
        let item = item?;
        let field = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            let value = match item.cast::<PyDict>() {
                Ok(dict) => dict.get_item(name)?,
                Err(_) => item.getattr(name).ok(),
            };
            Ok(value.filter(|v| !v.is_none()))
        };
        let seq: u64 = field("seq")?
            .ok_or_else(|| invalid("encoded frame", item.to_string(), "has no seq"))?
            .extract()
            .map_err(|_| {
                invalid(
                    "encoded frame",
                    item.to_string(),
                    "seq must be a non-negative integer",
                )
            })?;
        let jpeg: Vec<u8> = field("jpeg")?
            .ok_or_else(|| invalid("encoded frame", seq, "has no jpeg"))?
            .extract()
            .map_err(|_| invalid("encoded frame", seq, "jpeg must be bytes"))?;
        let unsigned = "must be a non-negative integer";
        out.push(framecache::EncodedFrame {
            seq,
            chunk_id: optional(field("chunk_id")?, "chunk_id of frame", seq, unsigned)?
                .unwrap_or(0),
            timestamp: optional(
                field("timestamp")?,
                "timestamp of frame",
                seq,
                "must be a number",
            )?
            .unwrap_or(0.0),
            perceptual_hash: optional(
                field("perceptual_hash")?,
                "perceptual_hash of frame",
                seq,
                "must be a string",
            )?
            .unwrap_or_default(),
            jpeg: Bytes::from(jpeg),
        });
    }
    Ok(out)
}

/// An optional field of frame `seq`, extracted, or `InvalidInputError` naming it.
fn optional<'py, T: FromPyObjectOwned<'py>>(
    value: Option<Bound<'py, PyAny>>,
    what: &'static str,
    seq: u64,
    rule: &'static str,
) -> PyResult<Option<T>> {
    value
        .map(|v| v.extract::<T>().map_err(|_| invalid(what, seq, rule)))
        .transpose()
}

/// Overlays as `{name: PNG bytes}`, stored as given.
pub fn overlay_bytes(overlays: &Bound<'_, PyDict>) -> PyResult<BTreeMap<String, Bytes>> {
    let pngs = by_name::<Vec<u8>>(overlays, "must be bytes (PNG) for save_overlays")?;
    Ok(pngs
        .into_iter()
        .map(|(name, png)| (name, Bytes::from(png)))
        .collect())
}

/// Overlays as `{name: base64 PNG}`, as the UI sends them.
pub fn overlay_strings(overlays: &Bound<'_, PyDict>) -> PyResult<BTreeMap<String, String>> {
    by_name(overlays, "must be a base64 string (PNG)")
}

/// A dict of overlays by name, each value extracted or refused with `rule`.
fn by_name<'py, T: FromPyObjectOwned<'py>>(
    overlays: &Bound<'py, PyDict>,
    rule: &'static str,
) -> PyResult<BTreeMap<String, T>> {
    overlays
        .iter()
        .map(|(name, value)| {
            let name: String = name
                .extract()
                .map_err(|_| invalid("overlay name", name.to_string(), "must be a string"))?;
            let value = value
                .extract::<T>()
                .map_err(|_| invalid("overlay", name.clone(), rule))?;
            Ok((name, value))
        })
        .collect()
}

/// `seqs=` of a read: `None` is the whole timeline; a `range` of step 1 stays a range
/// (nothing materialized); any other iterable of ints is read in its order, duplicates kept.
/// A negative or non-int item, or a selection past the core's limit, is an
/// `InvalidInputError` naming it.
pub fn seqs_of(seqs: Option<&Bound<'_, PyAny>>) -> PyResult<framecache::Seqs> {
    use framecache::Seqs;
    use pyo3::types::{PyRange, PyRangeMethods};
    let Some(seqs) = seqs.filter(|s| !s.is_none()) else {
        return Ok(Seqs::All);
    };
    let limit = framecache::MAX_SELECTION;
    if let Ok(range) = seqs.cast::<PyRange>()
        && range.step()? == 1
    {
        let (start, stop) = (range.start()?, range.stop()?);
        if start < 0 {
            return Err(invalid("frame seq", start, "must be ≥ 0"));
        }
        let stop = stop.max(start) as u64;
        let seqs = Seqs::Range(start as u64..stop);
        if stop - start as u64 > limit {
            return Err(invalid(
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
        let seq: u64 = item.extract().map_err(|_| {
            invalid(
                "frame seq",
                item.repr().map_or_else(|_| "?".into(), |r| r.to_string()),
                "must be an int ≥ 0",
            )
        })?;
        if out.len() as u64 >= limit {
            return Err(invalid(
                "frame seqs",
                "more",
                format!("at most {limit} frames in one read"),
            ));
        }
        out.push(seq);
    }
    Ok(Seqs::List(out))
}
