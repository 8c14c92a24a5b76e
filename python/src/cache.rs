//! `framecache.FrameCache`: the timeline API with keyword configuration, blocking methods
//! that release the interpreter, and `_async` twins for asyncio.
//!
//! Fork safety: the core cache (tiers, connections, runtime tasks) is built per process. A
//! call from a forked child builds fresh handles from the same configuration and leaves
//! the parent's alone: their threads and connections do not exist in the child.

use crate::config::{Overrides, describe};
use crate::convert::{Entries, Jpegs, Json, MaybeJpeg, Overlays};
use crate::errors::{invalid, other, to_py};
use crate::frame::{B64Frames, Frames, MaybeFrame, PyFrame, frame_from_py, frame_to_py};
use crate::iter::FrameIterator;
use crate::runtime::{self, awaitable, block_on};
use bytes::Bytes;
use framecache::{Access, CacheConfig, ClearScope, LoadOptions, Scale};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The core cache of one process.
struct Handles {
    pid: u32,
    cache: framecache::FrameCache,
}

/// A tiered read-through cache of timelines' frames and overlays: memory, then a disk
/// cache shared by the machine's processes, then blob storage (S3 or a local directory).
///
/// Every keyword defaults to the environment, as the ``framecache`` command reads it
/// (``FRAMECACHE_BACKEND``, ``FRAMECACHE_ROOT``, ``S3_BUCKET``, ``AWS_ENDPOINT_URL``,
/// ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
/// ``FRAMECACHE_CACHE_DIR``, ``FRAMECACHE_MEMORY_CAPACITY``, ``FRAMECACHE_DISK_CAPACITY``,
/// ``FRAMECACHE_DECODED_MEMORY_CAPACITY``, ``FRAMECACHE_DECODED_DISK_CAPACITY``,
/// ``FRAMECACHE_LOCK_WAIT``: seconds a process waits for a disk-cache lock another one
/// holds before it goes on alone, default 60). Decoded
/// frames are kept too: in this process's memory, and as raw frames under the disk cache
/// that the machine's processes share (decoded once per machine); 0 turns either off.
/// Methods release the GIL while they work; each has an ``_async`` twin returning an
/// awaitable. Safe to share between threads and to use again after ``os.fork()``.
#[pyclass(module = "framecache", name = "FrameCache", frozen)]
pub struct PyFrameCache {
    config: CacheConfig,
    handles: Mutex<Option<Handles>>,
}

impl PyFrameCache {
    /// The core cache of the calling process, built on first use and after a fork.
    pub fn core(&self) -> PyResult<framecache::FrameCache> {
        let pid = std::process::id();
        let mut slot = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(handles) = slot.as_ref().filter(|h| h.pid == pid) {
            return Ok(handles.cache.clone());
        }
        // Inherited through fork: its tasks and connections belong to the parent.
        if let Some(inherited) = slot.take() {
            std::mem::forget(inherited);
        }
        let runtime = runtime::handle()?;
        let _inside = runtime.enter();
        let cache = build(&self.config).map_err(to_py)?;
        *slot = Some(Handles {
            pid,
            cache: cache.clone(),
        });
        Ok(cache)
    }
}

/// The core cache `config` describes, as `framecache::FrameCache::new` builds it, except that
/// its origin gets an HTTP client of its own. OpenDAL's default is one client per process,
/// whose pooled connections a forked child inherits: they belong to the parent's runtime,
/// whose threads the child does not have, so a request on one waits until it times out.
fn build(config: &CacheConfig) -> framecache::Result<framecache::FrameCache> {
    let metrics = Arc::new(framecache::Metrics::default());
    let (op, description) = framecache::build_operator(config, &metrics)?;
    let client = opendal_http_transport_reqwest::ReqwestTransport::new(reqwest::Client::new());
    let op = op.with_context(
        opendal::OperationContext::new().with_http_transport(opendal::HttpTransporter::new(client)),
    );
    let origin = Arc::new(framecache::tier::BlobTier::new(
        op,
        description,
        metrics.clone(),
    ));
    let chain = config.build_with_origin(origin, metrics);
    Ok(framecache::FrameCache::from_chain(chain, config.concurrency).with_decoded_tiers(config))
}

impl Drop for PyFrameCache {
    fn drop(&mut self) {
        let handles = self
            .handles
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if handles
            .as_ref()
            .is_some_and(|h| h.pid != std::process::id())
        {
            std::mem::forget(handles.take());
        }
    }
}

fn scope(name: &str) -> PyResult<ClearScope> {
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

/// A JPEG quality as the core takes it.
pub fn quality(value: i64) -> PyResult<u8> {
    u8::try_from(value)
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| invalid("JPEG quality", value, "must be within 1..=100"))
}

/// Frame-like objects as core frames (their pixels copied while the GIL is held).
pub fn frames_from_py(frames: &Bound<'_, PyAny>) -> PyResult<Vec<framecache::Frame>> {
    let mut out = Vec::with_capacity(frames.len().unwrap_or(0));
    for frame in frames.try_iter()? {
        out.push(frame_from_py(&frame?)?);
    }
    Ok(out)
}

/// Encoded frames from dicts or objects with `seq`, `jpeg` and optional metadata.
fn encoded_from_py(frames: &Bound<'_, PyAny>) -> PyResult<Vec<framecache::EncodedFrame>> {
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
        let chunk_id: u64 = match field("chunk_id")? {
            Some(v) => v
                .extract()
                .map_err(|_| invalid("chunk_id of frame", seq, "must be a non-negative integer"))?,
            None => 0,
        };
        let timestamp: f64 = match field("timestamp")? {
            Some(v) => v
                .extract()
                .map_err(|_| invalid("timestamp of frame", seq, "must be a number"))?,
            None => 0.0,
        };
        let perceptual_hash: String = match field("perceptual_hash")? {
            Some(v) => v
                .extract()
                .map_err(|_| invalid("perceptual_hash of frame", seq, "must be a string"))?,
            None => String::new(),
        };
        out.push(framecache::EncodedFrame {
            seq,
            chunk_id,
            timestamp,
            perceptual_hash,
            jpeg: Bytes::from(jpeg),
        });
    }
    Ok(out)
}

fn overlay_bytes(overlays: &Bound<'_, PyDict>) -> PyResult<BTreeMap<String, Bytes>> {
    overlays
        .iter()
        .map(|(name, png)| {
            let name: String = name
                .extract()
                .map_err(|_| invalid("overlay name", name.to_string(), "must be a string"))?;
            let png: Vec<u8> = png.extract().map_err(|_| {
                invalid(
                    "overlay",
                    name.clone(),
                    "must be bytes (PNG) for save_overlays",
                )
            })?;
            Ok((name, Bytes::from(png)))
        })
        .collect()
}

fn overlay_strings(overlays: &Bound<'_, PyDict>) -> PyResult<BTreeMap<String, String>> {
    overlays
        .iter()
        .map(|(name, b64)| {
            let name: String = name
                .extract()
                .map_err(|_| invalid("overlay name", name.to_string(), "must be a string"))?;
            let b64: String = b64
                .extract()
                .map_err(|_| invalid("overlay", name.clone(), "must be a base64 string (PNG)"))?;
            Ok((name, b64))
        })
        .collect()
}

/// How loads hand out frames: `writeable=False` asks for read-only views of the cache's
/// buffers; `scale` (1, 2, 4 or 8) decodes at 1/scale of the size through the DCT.
fn load_options(writeable: bool, scale: u32) -> PyResult<LoadOptions> {
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

/// Maps a core result for an awaitable.
async fn py_result<T>(future: impl Future<Output = framecache::Result<T>>) -> PyResult<T> {
    future.await.map_err(to_py)
}

#[pymethods]
impl PyFrameCache {
    #[new]
    #[pyo3(signature = (*, backend=None, root=None, bucket=None, endpoint=None, region=None,
        access_key_id=None, secret_access_key=None, cache_dir=None, memory_capacity=None,
        disk_capacity=None, disk=None, decoded_memory_capacity=None, decoded_disk_capacity=None,
        concurrency=None, origin_timeout=None, origin_io_timeout=None, retries=None,
        lock_wait=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        backend: Option<String>,
        root: Option<PathBuf>,
        bucket: Option<String>,
        endpoint: Option<String>,
        region: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        cache_dir: Option<PathBuf>,
        memory_capacity: Option<u64>,
        disk_capacity: Option<u64>,
        disk: Option<bool>,
        decoded_memory_capacity: Option<u64>,
        decoded_disk_capacity: Option<u64>,
        concurrency: Option<usize>,
        origin_timeout: Option<f64>,
        origin_io_timeout: Option<f64>,
        retries: Option<usize>,
        lock_wait: Option<f64>,
    ) -> PyResult<Self> {
        let config = Overrides {
            backend,
            root,
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            cache_dir,
            memory_capacity,
            disk_capacity,
            disk,
            decoded_memory_capacity,
            decoded_disk_capacity,
            concurrency,
            origin_timeout,
            origin_io_timeout,
            retries,
            lock_wait,
        }
        .apply()?;
        let cache = PyFrameCache {
            config,
            handles: Mutex::new(None),
        };
        // Built now, so a configuration that cannot work fails here.
        cache.core()?;
        Ok(cache)
    }

    fn __repr__(&self) -> String {
        format!("FrameCache({})", describe(&self.config))
    }

    /// Where the origin and the disk cache are (no credentials).
    #[getter]
    fn origin(&self) -> String {
        describe(&self.config)
    }

    /// Every counter of this process's cache: per tier (``memory``, ``disk``, ``origin``,
    /// ``decoded_memory``, ``decoded_disk``) hits, misses, bytes read and written, writes,
    /// corrupt entries, evictions, errors, retries; and ``coalesced``, ``skipped_names``,
    /// ``offline_loads``, ``fetched_by_other_process``, ``fetch_lock_timeouts``,
    /// ``decodes``, ``decode_waits``, ``decode_lock_timeouts``, ``dir_lock_timeouts``,
    /// ``inherited_locks_closed``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Json::of(&self.core()?.stats()).into_pyobject(py)
    }

    /// Whether the timeline has frames (one small request).
    fn exists(&self, py: Python<'_>, timeline: String) -> PyResult<bool> {
        let fc = self.core()?;
        block_on(py, async move { fc.exists(&timeline).await })
    }

    /// Awaitable :meth:`exists`.
    fn exists_async<'py>(&self, py: Python<'py>, timeline: String) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(py, py_result(async move { fc.exists(&timeline).await }))
    }

    /// Completeness and provenance: ``{"state": "missing" | "complete" | "partial" |
    /// "unmanaged", ...}`` with the frame counts (and the generation when complete).
    fn status<'py>(&self, py: Python<'py>, timeline: String) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let status = block_on(py, async move { fc.status(&timeline).await })?;
        Json::of(&status).into_pyobject(py)
    }

    /// Awaitable :meth:`status`.
    fn status_async<'py>(&self, py: Python<'py>, timeline: String) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.status(&timeline).await.map(|s| Json::of(&s)) }),
        )
    }

    /// The timeline's frames, sorted: ``{"seq", "key", "size", "meta"}`` dicts, ``meta``
    /// the manifest's entry (chunk_id, timestamp, perceptual_hash, size, blake3) or None.
    fn list_frames<'py>(&self, py: Python<'py>, timeline: String) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let entries = block_on(py, async move { fc.list_frames(&timeline).await })?;
        Ok(Entries(entries).into_pyobject(py)?.into_any())
    }

    /// Awaitable :meth:`list_frames`.
    fn list_frames_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.list_frames(&timeline).await.map(Entries) }),
        )
    }

    /// Every frame, decoded, sorted by sequence; ``[]`` when the timeline has none.
    /// Raises ``IncompleteTimelineError`` while a writer has not finished.
    ///
    /// Each ``image`` is writable and belongs to its frame alone (a copy-on-write map of the
    /// machine's decoded frame, or a private buffer). With ``writeable=False`` the arrays are
    /// read-only views of the cache's own buffers: never copied, the cheapest for frames
    /// found in the cache; assigning to one raises ``ValueError``. ``scale`` 2, 4 or 8
    /// decodes at 1/2, 1/4 or 1/8 of the size (rounded up) through the JPEG's DCT, much
    /// cheaper than a full decode and a resize; scaled frames are cached apart.
    #[pyo3(signature = (timeline, *, writeable=true, scale=1))]
    fn load_frames<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        writeable: bool,
        scale: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let options = load_options(writeable, scale)?;
        let frames = block_on(
            py,
            async move { fc.load_frames_with(&timeline, options).await },
        )?;
        Ok(Frames(frames, options.access).into_pyobject(py)?.into_any())
    }

    /// Awaitable :meth:`load_frames`.
    #[pyo3(signature = (timeline, *, writeable=true, scale=1))]
    fn load_frames_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        writeable: bool,
        scale: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let options = load_options(writeable, scale)?;
        awaitable(
            py,
            py_result(async move {
                let frames = fc.load_frames_with(&timeline, options).await?;
                Ok(Frames(frames, options.access))
            }),
        )
    }

    /// One frame, decoded, or None when the timeline has no such frame; ``writeable`` and
    /// ``scale`` as for :meth:`load_frames`.
    #[pyo3(signature = (timeline, seq, *, writeable=true, scale=1))]
    fn load_frame<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        seq: u64,
        writeable: bool,
        scale: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let options = load_options(writeable, scale)?;
        let frame = block_on(py, async move {
            fc.load_frame_with(&timeline, seq, options).await
        })?;
        MaybeFrame(frame, options.access).into_pyobject(py)
    }

    /// Awaitable :meth:`load_frame`.
    #[pyo3(signature = (timeline, seq, *, writeable=true, scale=1))]
    fn load_frame_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        seq: u64,
        writeable: bool,
        scale: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let options = load_options(writeable, scale)?;
        awaitable(
            py,
            py_result(async move {
                let frame = fc.load_frame_with(&timeline, seq, options).await?;
                Ok(MaybeFrame(frame, options.access))
            }),
        )
    }

    /// An iterator over the timeline's frames in sequence order, each yielded as soon as
    /// it (and those before it) is decoded, with fetches and decodes running ahead;
    /// ``writeable`` and ``scale`` as for :meth:`load_frames`.
    #[pyo3(signature = (timeline, *, writeable=true, scale=1))]
    fn iter_frames(
        &self,
        timeline: String,
        writeable: bool,
        scale: u32,
    ) -> PyResult<FrameIterator> {
        FrameIterator::start(self.core()?, timeline, load_options(writeable, scale)?)
    }

    /// One frame's JPEG bytes as stored, or None.
    fn frame_jpeg<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        seq: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let jpeg = block_on(py, async move { fc.frame_jpeg(&timeline, seq).await })?;
        MaybeJpeg(jpeg).into_pyobject(py)
    }

    /// Awaitable :meth:`frame_jpeg`.
    fn frame_jpeg_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        seq: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.frame_jpeg(&timeline, seq).await.map(MaybeJpeg) }),
        )
    }

    /// Every frame's stored JPEG, sorted, not decoded: ``{"seq", "timestamp", "jpeg",
    /// "source"}`` dicts (``jpeg`` is ``bytes``; ``source`` the tier that answered).
    fn load_jpegs<'py>(&self, py: Python<'py>, timeline: String) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let jpegs = block_on(py, async move { fc.load_jpegs(&timeline).await })?;
        Ok(Jpegs(jpegs).into_pyobject(py)?.into_any())
    }

    /// Awaitable :meth:`load_jpegs`.
    fn load_jpegs_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.load_jpegs(&timeline).await.map(Jpegs) }),
        )
    }

    /// Every frame as ``{"seq", "timestamp", "jpeg_b64"}``, the stored JPEG in base64
    /// (nothing decoded or re-encoded), sorted by sequence.
    fn load_frames_b64<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let frames = block_on(py, async move { fc.load_frames_b64(&timeline).await })?;
        Ok(B64Frames(frames).into_pyobject(py)?.into_any())
    }

    /// Awaitable :meth:`load_frames_b64`.
    fn load_frames_b64_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.load_frames_b64(&timeline).await.map(B64Frames) }),
        )
    }

    /// Encodes frames (objects with ``sequence``, ``chunk_id``, ``timestamp``, ``image``,
    /// ``perceptual_hash``) as JPEG and writes them through every tier, replacing the
    /// timeline (frames of a longer earlier version are removed). Returns the count.
    #[pyo3(signature = (timeline, frames, quality=85))]
    fn cache_frames(
        &self,
        py: Python<'_>,
        timeline: String,
        frames: &Bound<'_, PyAny>,
        quality: i64,
    ) -> PyResult<usize> {
        let quality = self::quality(quality)?;
        let frames = frames_from_py(frames)?;
        let fc = self.core()?;
        block_on(py, async move {
            fc.cache_frames(&timeline, &frames, quality).await
        })
    }

    /// Awaitable :meth:`cache_frames` (the pixels are copied before it returns).
    #[pyo3(signature = (timeline, frames, quality=85))]
    fn cache_frames_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        frames: &Bound<'py, PyAny>,
        quality: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let quality = self::quality(quality)?;
        let frames = frames_from_py(frames)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.cache_frames(&timeline, &frames, quality).await }),
        )
    }

    /// Stores overlays (``{name: PNG bytes}``, stored as given) of one frame of a job's
    /// stage. Returns the count.
    fn save_overlays(
        &self,
        py: Python<'_>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
        overlays: &Bound<'_, PyDict>,
    ) -> PyResult<usize> {
        let overlays = overlay_bytes(overlays)?;
        let fc = self.core()?;
        block_on(py, async move {
            fc.save_overlays(&timeline, &job, &stage, seq, &overlays)
                .await
        })
    }

    /// Awaitable :meth:`save_overlays`.
    fn save_overlays_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
        overlays: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let overlays = overlay_bytes(overlays)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move {
                fc.save_overlays(&timeline, &job, &stage, seq, &overlays)
                    .await
            }),
        )
    }

    /// :meth:`save_overlays` for base64 PNG strings, as the UI sends them.
    fn save_overlays_b64(
        &self,
        py: Python<'_>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
        overlays: &Bound<'_, PyDict>,
    ) -> PyResult<usize> {
        let overlays = overlay_strings(overlays)?;
        let fc = self.core()?;
        block_on(py, async move {
            fc.save_overlays_b64(&timeline, &job, &stage, seq, &overlays)
                .await
        })
    }

    /// Awaitable :meth:`save_overlays_b64`.
    fn save_overlays_b64_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
        overlays: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let overlays = overlay_strings(overlays)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move {
                fc.save_overlays_b64(&timeline, &job, &stage, seq, &overlays)
                    .await
            }),
        )
    }

    /// One frame's overlays as ``{name: PNG bytes}``, or None when it has none.
    fn load_overlays<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        let overlays = block_on(py, async move {
            fc.load_overlays(&timeline, &job, &stage, seq).await
        })?;
        Overlays(overlays).into_pyobject(py)
    }

    /// Awaitable :meth:`load_overlays`.
    fn load_overlays_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move {
                fc.load_overlays(&timeline, &job, &stage, seq)
                    .await
                    .map(Overlays)
            }),
        )
    }

    /// One frame's overlays as ``{name: base64 PNG}``, or None when it has none.
    fn load_overlays_b64(
        &self,
        py: Python<'_>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
    ) -> PyResult<Option<BTreeMap<String, String>>> {
        let fc = self.core()?;
        block_on(py, async move {
            fc.load_overlays_b64(&timeline, &job, &stage, seq).await
        })
    }

    /// Awaitable :meth:`load_overlays_b64`.
    fn load_overlays_b64_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
        seq: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.load_overlays_b64(&timeline, &job, &stage, seq).await }),
        )
    }

    /// Sorted sequence numbers of the frames with overlays in a job's stage.
    fn list_overlay_frames(
        &self,
        py: Python<'_>,
        timeline: String,
        job: String,
        stage: String,
    ) -> PyResult<Vec<u64>> {
        let fc = self.core()?;
        block_on(py, async move {
            fc.list_overlay_frames(&timeline, &job, &stage).await
        })
    }

    /// Awaitable :meth:`list_overlay_frames`.
    fn list_overlay_frames_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        job: String,
        stage: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.list_overlay_frames(&timeline, &job, &stage).await }),
        )
    }

    /// Deletes a timeline's ``"frames"``, ``"overlays"`` or ``"all"`` from blob storage and
    /// from this machine's memory and disk tiers.
    #[pyo3(signature = (timeline, scope="all"))]
    fn clear(&self, py: Python<'_>, timeline: String, scope: &str) -> PyResult<()> {
        let scope = self::scope(scope)?;
        let fc = self.core()?;
        block_on(py, async move { fc.clear(&timeline, scope).await })
    }

    /// Awaitable :meth:`clear`.
    #[pyo3(signature = (timeline, scope="all"))]
    fn clear_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        scope: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let scope = self::scope(scope)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.clear(&timeline, scope).await }),
        )
    }

    /// Drops a timeline's copies from this machine's memory and disk tiers only; returns
    /// the disk entries removed.
    #[pyo3(signature = (timeline, scope="all"))]
    fn clear_local(&self, py: Python<'_>, timeline: String, scope: &str) -> PyResult<u64> {
        let scope = self::scope(scope)?;
        let fc = self.core()?;
        block_on(py, async move { fc.clear_local(&timeline, scope).await })
    }

    /// Awaitable :meth:`clear_local`.
    #[pyo3(signature = (timeline, scope="all"))]
    fn clear_local_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        scope: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let scope = self::scope(scope)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.clear_local(&timeline, scope).await }),
        )
    }

    /// Writes already encoded JPEGs as the timeline's frames, byte for byte, replacing the
    /// timeline as :meth:`cache_frames` does. Each item is a dict (or object) with ``seq``
    /// and ``jpeg`` (bytes) and optionally ``chunk_id``, ``timestamp``, ``perceptual_hash``.
    /// Returns the count.
    fn cache_jpegs(
        &self,
        py: Python<'_>,
        timeline: String,
        frames: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let frames = encoded_from_py(frames)?;
        let fc = self.core()?;
        block_on(py, async move {
            fc.cache_jpegs(&timeline, frames, &|_| {}).await
        })
    }

    /// Awaitable :meth:`cache_jpegs`.
    fn cache_jpegs_async<'py>(
        &self,
        py: Python<'py>,
        timeline: String,
        frames: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let frames = encoded_from_py(frames)?;
        let fc = self.core()?;
        awaitable(
            py,
            py_result(async move { fc.cache_jpegs(&timeline, frames, &|_| {}).await }),
        )
    }

    /// Ids of every timeline in blob storage, sorted.
    fn timelines(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let fc = self.core()?;
        block_on(py, async move { fc.timelines().await })
    }

    /// Awaitable :meth:`timelines`.
    fn timelines_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fc = self.core()?;
        awaitable(py, py_result(async move { fc.timelines().await }))
    }

    /// The process id the cache's handles belong to (they are rebuilt after a fork).
    #[getter]
    fn _pid(&self, py: Python<'_>) -> PyResult<u32> {
        let slot = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref()
            .map(|h| h.pid)
            .ok_or_else(|| other(py, "the cache has not been built".to_owned()))
    }
}

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
    let frames = frames_from_py(frames)?;
    let encoded = py
        .detach(|| framecache::frames_to_b64(&frames, quality))
        .map_err(to_py)?;
    Ok(B64Frames(encoded).into_pyobject(py)?.into_any())
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
