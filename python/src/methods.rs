//! `FrameCache`'s Python methods. Each I/O method is written once, under `twins`: its
//! blocking form (the interpreter released) and its `_async` twin come from that one body.

use crate::args::{
    encoded_from_py, frames_from_py, load_options, overlay_bytes, overlay_strings, quality, scope,
    seqs_of, write_mode,
};
use crate::cache::PyFrameCache;
use crate::config::{MinFreeArg, Overrides, describe};
use crate::convert::{Decoded, Json, ToPython};
use crate::errors::other;
use crate::frame::Read;
use crate::iter::FrameIterator;
use crate::twins::{Reply, pymethods_with_twins, reply};
use framecache::WriteOptions;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

pymethods_with_twins! {
    impl PyFrameCache {
        #[new]
        #[pyo3(signature = (*, backend=None, root=None, bucket=None, endpoint=None, region=None,
            access_key_id=None, secret_access_key=None, session_token=None, anonymous=None,
            addressing=None, cache_dir=None, memory_capacity=None,
            disk_capacity=None, disk=None, decoded_memory_capacity=None, decoded_disk_capacity=None,
            concurrency=None, origin_timeout=None, origin_io_timeout=None, retries=None,
            max_frame_pixels=None, max_object_size=None, lock_wait=None, min_free=None,
            revalidate_after=None, share_group=None, allow_network_fs=None))]
        #[allow(clippy::too_many_arguments)]
        fn new(
            backend: Option<String>,
            root: Option<PathBuf>,
            bucket: Option<String>,
            endpoint: Option<String>,
            region: Option<String>,
            access_key_id: Option<String>,
            secret_access_key: Option<String>,
            session_token: Option<String>,
            anonymous: Option<bool>,
            addressing: Option<String>,
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
            max_frame_pixels: Option<u64>,
            max_object_size: Option<u64>,
            lock_wait: Option<f64>,
            min_free: Option<MinFreeArg>,
            revalidate_after: Option<f64>,
            share_group: Option<crate::config::GroupArg>,
            allow_network_fs: Option<bool>,
        ) -> PyResult<Self> {
            PyFrameCache::configured(Overrides {
                backend,
                root,
                bucket,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                session_token,
                anonymous,
                addressing,
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
                max_frame_pixels,
                max_object_size,
                lock_wait,
                min_free,
                revalidate_after,
                share_group,
                allow_network_fs,
            })
        }

        fn __repr__(&self) -> String {
            format!("FrameCache({})", describe(self.config()))
        }

        /// Where the origin and the disk cache are (no credentials).
        #[getter]
        fn origin(&self) -> String {
            describe(self.config())
        }

        /// Every counter of this process's cache, as a dict: per tier (``memory``, ``disk``,
        /// ``origin``, ``decoded_memory``, ``decoded_disk``) a dict of counts, then the
        /// process's counts, and ``disk_eviction``, ``decoded_disk_eviction``: the machine's
        /// evictor, the last eviction round and usage against the watermarks (``None`` without
        /// that disk tier). Its keys are the fields of the core's ``Stats`` (the ``Stats``
        /// type in the stubs); docs/operations.md says what each counts.
        fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            Json::of(&self.core()?.stats()).to_python(py)
        }

        /// Waits up to ``timeout`` seconds (the interpreter released) for the raw frames this
        /// process decoded to be written to the decoded disk tier: loads return before
        /// those writes, which a background thread does. Returns whether none is left. At
        /// interpreter exit the package waits for them up to 10 seconds.
        #[pyo3(signature = (timeout=60.0))]
        fn flush_raw_writes(&self, py: Python<'_>, timeout: f64) -> bool {
            crate::functions::flush_raw_writes(py, timeout)
        }

        /// An iterator over the timeline's frames in sequence order (or those ``seqs`` names,
        /// in its order), each yielded as soon as it (and those before it) is decoded, with
        /// fetches and decodes running ahead; ``seqs``, ``writeable`` and ``scale`` as for
        /// :meth:`load_frames`. A long timeline's first frames come before its listing.
        #[pyo3(signature = (timeline, seqs=None, *, writeable=true, scale=1))]
        fn iter_frames(
            &self,
            timeline: String,
            seqs: Option<&Bound<'_, PyAny>>,
            writeable: bool,
            scale: u32,
        ) -> PyResult<FrameIterator> {
            let seqs = seqs_of(seqs)?;
            let options = load_options(writeable, scale)?;
            FrameIterator::start(self.core()?, timeline, seqs, options)
        }

        /// Encodes frames (objects with ``sequence``, ``chunk_id``, ``timestamp``, ``image``,
        /// ``perceptual_hash``) as JPEG and writes them through every tier, keeping every
        /// other frame of the timeline, as the Python module does (a seq written again is
        /// replaced). With ``replace=True`` the timeline becomes exactly these frames (a
        /// rebuild: the others are removed). Returns the count. The images are read where
        /// they are while the call runs (do not write to them from another thread until it
        /// returns).
        #[pyo3(signature = (timeline, frames, quality=85, *, replace=false))]
        fn cache_frames<'py>(
            &self,
            py: Python<'py>,
            timeline: String,
            frames: &Bound<'py, PyAny>,
            quality: i64,
            replace: bool,
        ) -> PyResult<Bound<'py, PyAny>> {
            let write = self.write_frames(timeline, frames, Read::InPlace, quality, replace)?;
            reply(py, Reply::Blocking, write)
        }

        /// Awaitable :meth:`cache_frames`. The images are copied before it returns, so the
        /// caller may change them while the write runs.
        #[pyo3(signature = (timeline, frames, quality=85, *, replace=false))]
        fn cache_frames_async<'py>(
            &self,
            py: Python<'py>,
            timeline: String,
            frames: &Bound<'py, PyAny>,
            quality: i64,
            replace: bool,
        ) -> PyResult<Bound<'py, PyAny>> {
            let write = self.write_frames(timeline, frames, Read::Copy, quality, replace)?;
            reply(py, Reply::Awaitable, write)
        }

        /// The process id the cache's handles belong to (they are rebuilt after a fork).
        #[getter]
        fn _pid(&self, py: Python<'_>) -> PyResult<u32> {
            self.pid()
                .ok_or_else(|| other(py, "the cache has not been built".to_owned()))
        }
    }

    twins {
        /// Whether the timeline has frames (one small request).
        fn exists / exists_async(&self, timeline: String) {
            let fc = self.core()?;
            async move { fc.exists(&timeline).await }
        }

        /// Completeness and provenance: ``{"state": "missing" | "complete" | "partial" |
        /// "unmanaged", ...}`` with the frame counts (and the generation when complete).
        fn status / status_async(&self, timeline: String) {
            let fc = self.core()?;
            async move { fc.status(&timeline).await.map(|s| Json::of(&s)) }
        }

        /// The timeline's frames, sorted: ``{"seq", "key", "size", "meta"}`` dicts, ``meta``
        /// the manifest's entry (chunk_id, timestamp, perceptual_hash, size, blake3) or None.
        fn list_frames / list_frames_async(&self, timeline: String) {
            let fc = self.core()?;
            async move { fc.list_frames(&timeline).await }
        }

        /// Every frame, decoded, sorted by sequence; ``[]`` when the timeline has none.
        /// Raises ``IncompleteTimelineError`` while a writer has not finished.
        ///
        /// ``seqs``: only these frames, in this order (any iterable of ints, a ``range`` the
        /// common case; duplicates repeated). It costs what it asks: the manifest's head and
        /// the chunks covering them, one stat and one read per frame, no listing. A seq the
        /// timeline lacks raises ``MissingFrameError`` naming it.
        ///
        /// Each ``image`` is writable and belongs to its frame alone (a copy-on-write map of the
        /// machine's decoded frame, or a private buffer). With ``writeable=False`` the arrays are
        /// read-only views of the cache's own buffers: never copied, the cheapest for frames
        /// found in the cache; assigning to one raises ``ValueError``. ``scale`` 2, 4 or 8
        /// decodes at 1/2, 1/4 or 1/8 of the size (rounded up) through the JPEG's DCT, much
        /// cheaper than a full decode and a resize; scaled frames are cached apart.
        #[pyo3(signature = (timeline, seqs=None, *, writeable=true, scale=1))]
        fn load_frames / load_frames_async(
            &self,
            timeline: String,
            seqs: Option<&Bound<'_, PyAny>>,
            writeable: bool,
            scale: u32,
        ) {
            let fc = self.core()?;
            let options = load_options(writeable, scale)?;
            let seqs = seqs_of(seqs)?;
            async move {
                let frames = fc.load_frames(&timeline, seqs, options).await?;
                Ok(Decoded::all(frames, options.access))
            }
        }

        /// One frame, decoded, or None when the timeline has no such frame; ``writeable`` and
        /// ``scale`` as for :meth:`load_frames`.
        #[pyo3(signature = (timeline, seq, *, writeable=true, scale=1))]
        fn load_frame / load_frame_async(
            &self,
            timeline: String,
            seq: u64,
            writeable: bool,
            scale: u32,
        ) {
            let fc = self.core()?;
            let options = load_options(writeable, scale)?;
            async move {
                let frame = fc.load_frame(&timeline, seq, options).await?;
                Ok(frame.map(|f| Decoded(f, options.access)))
            }
        }

        /// One frame's JPEG bytes as stored, or None.
        fn frame_jpeg / frame_jpeg_async(&self, timeline: String, seq: u64) {
            let fc = self.core()?;
            async move {
                let jpeg = fc.frame_jpeg(&timeline, seq).await?;
                Ok(jpeg.map(|(bytes, _source)| bytes))
            }
        }

        /// Every frame's stored JPEG (or those ``seqs`` names, as for :meth:`load_frames`),
        /// not decoded: ``{"seq", "timestamp", "jpeg", "source"}`` dicts (``jpeg`` is
        /// ``bytes``; ``source`` the tier that answered).
        #[pyo3(signature = (timeline, seqs=None))]
        fn load_jpegs / load_jpegs_async(&self, timeline: String, seqs: Option<&Bound<'_, PyAny>>) {
            let fc = self.core()?;
            let seqs = seqs_of(seqs)?;
            async move { fc.load_jpegs(&timeline, seqs).await }
        }

        /// Every frame as ``{"seq", "timestamp", "jpeg_b64"}``, the stored JPEG in base64
        /// (nothing decoded or re-encoded), sorted by sequence.
        fn load_frames_b64 / load_frames_b64_async(&self, timeline: String) {
            let fc = self.core()?;
            async move { fc.load_frames_b64(&timeline).await }
        }

        /// Stores overlays (``{name: PNG bytes}``, stored as given) of one frame of a job's
        /// stage. Returns the count.
        fn save_overlays / save_overlays_async(
            &self,
            timeline: String,
            job: String,
            stage: String,
            seq: u64,
            overlays: &Bound<'_, PyDict>,
        ) {
            let overlays = overlay_bytes(overlays)?;
            let fc = self.core()?;
            async move { fc.save_overlays(&timeline, &job, &stage, seq, &overlays).await }
        }

        /// :meth:`save_overlays` for base64 PNG strings, as the UI sends them.
        fn save_overlays_b64 / save_overlays_b64_async(
            &self,
            timeline: String,
            job: String,
            stage: String,
            seq: u64,
            overlays: &Bound<'_, PyDict>,
        ) {
            let overlays = overlay_strings(overlays)?;
            let fc = self.core()?;
            async move { fc.save_overlays_b64(&timeline, &job, &stage, seq, &overlays).await }
        }

        /// One frame's overlays as ``{name: PNG bytes}``, or None when it has none.
        fn load_overlays / load_overlays_async(
            &self,
            timeline: String,
            job: String,
            stage: String,
            seq: u64,
        ) {
            let fc = self.core()?;
            async move { fc.load_overlays(&timeline, &job, &stage, seq).await }
        }

        /// One frame's overlays as ``{name: base64 PNG}``, or None when it has none.
        fn load_overlays_b64 / load_overlays_b64_async(
            &self,
            timeline: String,
            job: String,
            stage: String,
            seq: u64,
        ) {
            let fc = self.core()?;
            async move { fc.load_overlays_b64(&timeline, &job, &stage, seq).await }
        }

        /// Sorted sequence numbers of the frames with overlays in a job's stage.
        fn list_overlay_frames / list_overlay_frames_async(
            &self,
            timeline: String,
            job: String,
            stage: String,
        ) {
            let fc = self.core()?;
            async move { fc.list_overlay_frames(&timeline, &job, &stage).await }
        }

        /// Deletes a timeline's ``"frames"``, ``"overlays"`` or ``"all"`` from blob storage and
        /// from this machine's memory and disk tiers.
        #[pyo3(signature = (timeline, scope="all"))]
        fn clear / clear_async(&self, timeline: String, scope: &str) {
            let scope = self::scope(scope)?;
            let fc = self.core()?;
            async move { fc.clear(&timeline, scope).await }
        }

        /// Drops a timeline's copies from this machine's memory and disk tiers only; returns
        /// the disk entries removed.
        #[pyo3(signature = (timeline, scope="all"))]
        fn clear_local / clear_local_async(&self, timeline: String, scope: &str) {
            let scope = self::scope(scope)?;
            let fc = self.core()?;
            async move { fc.clear_local(&timeline, scope).await }
        }

        /// Writes already encoded JPEGs as the timeline's frames, byte for byte, keeping its
        /// other frames (or, with ``replace=True``, removing them) as :meth:`cache_frames`
        /// does. Each item is a dict (or object) with ``seq`` and ``jpeg`` (bytes) and
        /// optionally ``chunk_id``, ``timestamp``, ``perceptual_hash``. Returns the count.
        #[pyo3(signature = (timeline, frames, *, replace=false))]
        fn cache_jpegs / cache_jpegs_async(
            &self,
            timeline: String,
            frames: &Bound<'_, PyAny>,
            replace: bool,
        ) {
            let frames = encoded_from_py(frames)?;
            let fc = self.core()?;
            let mode = write_mode(replace);
            async move { fc.cache_jpegs(&timeline, frames, WriteOptions::default().mode(mode)).await }
        }

        /// Ids of every timeline in blob storage, sorted.
        fn timelines / timelines_async(&self) {
            let fc = self.core()?;
            async move { fc.timelines().await }
        }
    }
}

impl PyFrameCache {
    /// The core's write of `frames` (their pixels taken as `read` says), checked and
    /// converted while the interpreter is held.
    fn write_frames(
        &self,
        timeline: String,
        frames: &Bound<'_, PyAny>,
        read: Read,
        quality: i64,
        replace: bool,
    ) -> PyResult<impl Future<Output = framecache::Result<usize>> + Send + 'static> {
        let quality = self::quality(quality)?;
        let frames = frames_from_py(frames, read)?;
        let fc = self.core()?;
        let options = WriteOptions::default()
            .quality(quality)
            .mode(write_mode(replace));
        Ok(async move { fc.cache_frames(&timeline, &frames, options).await })
    }
}
