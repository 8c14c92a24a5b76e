//! The timeline API: everything the Python frame cache does, through the tiers, in parallel.
//!
//! Beside the frames, each timeline written by framecache has `frames/manifest.json`
//! holding the metadata the JPEGs cannot (chunk id, timestamp, perceptual hash), each
//! frame's size and blake3, a generation and a completeness flag. The Python module skips
//! it (it does not end in `.jpg`), and timelines without one load with the Python defaults.
//!
//! Revalidation: the manifest is read from the origin on every load, and every frame is
//! checked against the blake3 it lists, so a timeline rebuilt elsewhere is never served
//! from stale local copies: a mismatching local entry is dropped and refetched.
//!
//! Origin failures: the last complete manifest a load saw is kept in the local tiers. When
//! the origin fails (down, timing out, refusing credentials), a load falls back to that copy
//! and serves what memory and disk hold, logging it and counting it in
//! [`Stats::offline_loads`]; frames held nowhere locally then fail with the origin's error.
//! An origin error is never taken for a missing timeline or frame.

use crate::chain::TieredCache;
use crate::codec;
use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::layout::{self, MANIFEST_NAME};
use crate::metrics::{Stats, TierCounters};
use crate::tier::Source;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Default JPEG quality of [`FrameCache::cache_frames`], as the Python module.
pub const DEFAULT_QUALITY: u8 = 85;
/// Default JPEG quality of [`frames_to_b64`], as the Python module.
pub const DEFAULT_B64_QUALITY: u8 = 75;
/// Version of the manifest's JSON layout.
const MANIFEST_FORMAT: u32 = 1;
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// One video frame with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Sequence number within the timeline.
    pub seq: u64,
    /// The video chunk it was extracted from.
    pub chunk_id: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
    /// The pixels, RGB8.
    pub image: RgbImage,
    /// Perceptual hash, as computed by the extractor.
    pub perceptual_hash: String,
}

/// A frame as the UI wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameB64 {
    /// Sequence number.
    pub seq: u64,
    /// Presentation time in seconds (0.0 when unknown).
    pub timestamp: f64,
    /// The JPEG, base64 (standard alphabet, padded).
    pub jpeg_b64: String,
}

/// A frame already encoded as JPEG, for [`FrameCache::cache_jpegs`].
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFrame {
    /// Sequence number within the timeline.
    pub seq: u64,
    /// The video chunk it was extracted from.
    pub chunk_id: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
    /// Perceptual hash.
    pub perceptual_hash: String,
    /// The JPEG bytes, stored as given.
    pub jpeg: Bytes,
}

/// One frame's stored JPEG, from [`FrameCache::stream_jpegs`].
#[derive(Debug, Clone, PartialEq)]
pub struct FrameJpeg {
    /// Sequence number.
    pub seq: u64,
    /// Presentation time in seconds (0.0 when unknown).
    pub timestamp: f64,
    /// The JPEG bytes.
    pub jpeg: Bytes,
    /// The tier that answered.
    pub source: Source,
}

/// One frame's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    /// Sequence number.
    pub seq: u64,
    /// Video chunk id.
    pub chunk_id: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
    /// Perceptual hash.
    pub perceptual_hash: String,
    /// JPEG size in bytes (0 while the write is in progress).
    pub size: u64,
    /// Hex blake3 of the JPEG (empty while the write is in progress).
    pub blake3: String,
}

impl FrameMeta {
    /// The entry of a frame about to be written: size and blake3 come once it is stored.
    fn pending(seq: u64, chunk_id: u64, timestamp: f64, perceptual_hash: &str) -> FrameMeta {
        FrameMeta {
            seq,
            chunk_id,
            timestamp,
            perceptual_hash: perceptual_hash.to_owned(),
            size: 0,
            blake3: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    generation: String,
    complete: bool,
    frames: Vec<FrameMeta>,
}

/// What a timeline's objects say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum TimelineStatus {
    /// No frames.
    Missing,
    /// Written by framecache and complete.
    Complete {
        /// Frames.
        frames: usize,
        /// The generation written by the last `cache_frames`.
        generation: String,
    },
    /// Written by framecache, but its writer has not finished (or died).
    Partial {
        /// Frames the manifest lists.
        expected: usize,
        /// Frames present.
        present: usize,
    },
    /// Frames without a manifest (written by the Python module): loaded with its defaults.
    Unmanaged {
        /// Frames.
        frames: usize,
    },
}

/// Which objects [`FrameCache::clear`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearScope {
    /// Frames and the manifest.
    Frames,
    /// Every overlay of the timeline.
    Overlays,
    /// Both.
    All,
}

/// A frame found by listing, with the manifest's metadata when it is current.
#[derive(Debug, Clone)]
pub struct FrameEntry {
    /// Sequence number.
    pub seq: u64,
    /// Object key.
    pub key: String,
    /// Size reported by the listing.
    pub size: u64,
    /// Manifest metadata, when the manifest lists this frame.
    pub meta: Option<FrameMeta>,
}

struct Index {
    entries: Vec<FrameEntry>,
    status: TimelineStatus,
}

/// Frames and overlays of timelines, cached in memory and on disk in front of blob storage.
#[derive(Clone)]
pub struct FrameCache {
    cache: TieredCache,
    concurrency: usize,
    /// Generation of the manifest copy kept locally, per manifest key.
    kept_manifests: Arc<Mutex<HashMap<String, String>>>,
    /// Slots for JPEG encodes and decodes, a few per core: enough to keep every core busy,
    /// while more would only add threads and scratch buffers (RSS); fetches, which wait on
    /// I/O, still go `concurrency` wide.
    codec_slots: Arc<tokio::sync::Semaphore>,
}

impl FrameCache {
    /// Builds the tiers described by `config`.
    ///
    /// # Errors
    /// When the origin cannot be set up.
    pub fn new(config: &CacheConfig) -> Result<Self> {
        Ok(Self::from_chain(config.build()?, config.concurrency))
    }

    /// Wraps an assembled chain; `concurrency` bounds the fetches and codec jobs in flight.
    pub fn from_chain(cache: TieredCache, concurrency: usize) -> Self {
        FrameCache {
            cache,
            concurrency: concurrency.max(1),
            kept_manifests: Arc::default(),
            codec_slots: Arc::new(tokio::sync::Semaphore::new(
                4 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        }
    }

    /// The read-through chain underneath.
    pub fn chain(&self) -> &TieredCache {
        &self.cache
    }

    /// Every counter.
    pub fn stats(&self) -> Stats {
        self.cache.metrics().snapshot()
    }

    /// Whether the timeline has frames: one small request, not a listing of the timeline.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn exists(&self, timeline: &str) -> Result<bool> {
        let origin = self.cache.origin();
        if origin.exists(&layout::manifest_key(timeline)?).await? {
            return Ok(true);
        }
        origin.has_any(&layout::frames_prefix(timeline)?).await
    }

    /// Completeness and provenance of a timeline.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn status(&self, timeline: &str) -> Result<TimelineStatus> {
        Ok(self.index(timeline).await?.status)
    }

    /// The frames of a timeline, sorted by seq, with their current metadata.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn list_frames(&self, timeline: &str) -> Result<Vec<FrameEntry>> {
        Ok(self.index(timeline).await?.entries)
    }

    /// The origin's index of a timeline, or, when the origin fails, the index the local copy
    /// of its last complete manifest gives.
    async fn index(&self, timeline: &str) -> Result<Index> {
        let manifest_key = layout::manifest_key(timeline)?;
        let err = match self.origin_index(timeline).await {
            Ok((index, manifest)) => {
                if let (TimelineStatus::Complete { generation, .. }, Some(bytes)) =
                    (&index.status, manifest)
                {
                    self.keep_manifest(&manifest_key, generation, bytes).await;
                }
                return Ok(index);
            }
            Err(e) => e,
        };
        let Some(hit) = self.cache.get_local(&manifest_key).await else {
            return Err(err);
        };
        let Some(manifest) = parse_manifest(&manifest_key, &hit.bytes).filter(|m| m.complete)
        else {
            return Err(err);
        };
        tracing::warn!(
            "origin failed ({err}); loading {timeline} from the local copy of its manifest \
             (generation {})",
            manifest.generation
        );
        TierCounters::bump(&self.cache.metrics().offline_loads);
        let entries = manifest
            .frames
            .iter()
            .map(|meta| {
                Ok(FrameEntry {
                    seq: meta.seq,
                    key: layout::frame_key(timeline, meta.seq)?,
                    size: meta.size,
                    meta: Some(meta.clone()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Index {
            status: TimelineStatus::Complete {
                frames: entries.len(),
                generation: manifest.generation,
            },
            entries,
        })
    }

    /// Keeps a local copy of a complete manifest, once per generation and process.
    async fn keep_manifest(&self, key: &str, generation: &str, bytes: Bytes) {
        {
            let mut kept = self.kept_manifests.lock().expect("kept manifests lock");
            if kept.get(key).is_some_and(|g| g == generation) {
                return;
            }
            kept.insert(key.to_owned(), generation.to_owned());
        }
        self.cache.put_local(key, bytes).await;
    }

    /// Lists the timeline and reads its manifest from the origin; also returns the
    /// manifest's bytes.
    async fn origin_index(&self, timeline: &str) -> Result<(Index, Option<Bytes>)> {
        let prefix = layout::frames_prefix(timeline)?;
        let manifest_key = layout::manifest_key(timeline)?;
        let origin = self.cache.origin();
        let (listed, manifest_bytes) =
            futures::try_join!(origin.list(&prefix), origin.get(&manifest_key))?;
        let manifest = manifest_bytes
            .as_ref()
            .and_then(|bytes| parse_manifest(&manifest_key, bytes));
        let mut metas: HashMap<u64, FrameMeta> = manifest
            .as_ref()
            .map(|m| m.frames.iter().map(|f| (f.seq, f.clone())).collect())
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(listed.len());
        for object in listed {
            let name = &object.key[prefix.len().min(object.key.len())..];
            if name == MANIFEST_NAME {
                continue;
            }
            let Some(seq) = layout::parse_frame_name(name) else {
                tracing::debug!("skipping {:?}: not a canonical frame name", object.key);
                TierCounters::bump(&self.cache.metrics().skipped_names);
                continue;
            };
            let meta = metas.remove(&seq);
            entries.push(FrameEntry {
                seq,
                key: object.key,
                size: object.size,
                meta,
            });
        }
        entries.sort_by_key(|e| e.seq);
        let status = match manifest {
            Some(m) => {
                let expected = m.frames.len();
                let present = expected - metas.len();
                if m.complete && metas.is_empty() {
                    TimelineStatus::Complete {
                        frames: entries.len(),
                        generation: m.generation,
                    }
                } else {
                    TimelineStatus::Partial { expected, present }
                }
            }
            None if entries.is_empty() => TimelineStatus::Missing,
            None => TimelineStatus::Unmanaged {
                frames: entries.len(),
            },
        };
        Ok((Index { entries, status }, manifest_bytes))
    }

    /// The complete index of a timeline, or the reason it cannot be loaded.
    async fn loadable(&self, timeline: &str) -> Result<Vec<FrameEntry>> {
        let index = self.index(timeline).await?;
        if let TimelineStatus::Partial { expected, present } = index.status {
            return Err(Error::Incomplete {
                timeline: timeline.to_owned(),
                expected,
                present,
            });
        }
        Ok(index.entries)
    }

    /// Reads one frame's JPEG and checks it against the manifest. Returns the bytes, the
    /// tier that answered and whether the manifest metadata belongs to these bytes.
    async fn fetch(&self, entry: &FrameEntry) -> Result<(Bytes, Source, bool)> {
        let hit = self.get_listed(&entry.key).await?;
        let Some(expected) = entry.meta.as_ref().map(|m| m.blake3.as_str()) else {
            return Ok((hit.bytes, hit.source, false));
        };
        if blake3::hash(&hit.bytes).to_hex().as_str() == expected {
            return Ok((hit.bytes, hit.source, true));
        }
        if hit.source != Source::Origin {
            // A local copy of an older generation: drop it and ask the origin.
            tracing::debug!("{}: local copy is stale, refetching", entry.key);
            self.cache.invalidate_local(&entry.key).await;
            let fresh = self.get_listed(&entry.key).await?;
            let current = blake3::hash(&fresh.bytes).to_hex().as_str() == expected;
            return Ok((fresh.bytes, fresh.source, current));
        }
        // The origin's frame was rewritten by a writer that kept the old manifest (the
        // Python module does): serve the bytes, not the metadata.
        Ok((hit.bytes, hit.source, false))
    }

    /// Reads a key that a listing or manifest just named; its absence means a concurrent delete.
    async fn get_listed(&self, key: &str) -> Result<crate::chain::Hit> {
        self.cache
            .get_hit(key)
            .await?
            .ok_or_else(|| Error::Vanished {
                key: key.to_owned(),
            })
    }

    async fn fetch_decoded(&self, entry: FrameEntry) -> Result<(Frame, Source)> {
        let (bytes, source, current) = self.fetch(&entry).await?;
        let key = entry.key.clone();
        let _slot = self.codec_slot().await;
        let image = tokio::task::spawn_blocking(move || codec::decode_jpeg(&bytes))
            .await
            .map_err(|e| Error::Decode {
                key: key.clone(),
                reason: e.to_string(),
            })?
            .map_err(|reason| Error::Decode { key, reason })?;
        let meta = entry.meta.filter(|_| current);
        Ok((
            Frame {
                seq: entry.seq,
                chunk_id: meta.as_ref().map_or(0, |m| m.chunk_id),
                timestamp: meta.as_ref().map_or(0.0, |m| m.timestamp),
                perceptual_hash: meta.map(|m| m.perceptual_hash).unwrap_or_default(),
                image,
            },
            source,
        ))
    }

    /// Streams a timeline's frames in seq order, each as soon as it and those before it
    /// are ready, with at most `concurrency` fetches and decodes in flight.
    ///
    /// # Errors
    /// Each item fails on its own: a frame that does not decode is an error naming its key.
    pub fn stream_frames<'a>(
        &'a self,
        timeline: &'a str,
    ) -> impl Stream<Item = Result<(Frame, Source)>> + Send + 'a {
        stream::once(self.loadable(timeline))
            .map_ok(move |entries| {
                stream::iter(entries)
                    .map(move |entry| self.fetch_decoded(entry))
                    .buffered(self.concurrency)
            })
            .try_flatten()
    }

    /// Every frame of a timeline, decoded to RGB and sorted by seq; empty when there are none.
    ///
    /// # Errors
    /// Invalid id, an incomplete timeline ([`Error::Incomplete`]), an origin failure, or a
    /// frame that does not decode ([`Error::Decode`] naming its key). Stray object names are
    /// skipped and counted in [`Stats::skipped_names`], never an error.
    pub async fn load_frames(&self, timeline: &str) -> Result<Vec<Frame>> {
        self.stream_frames(timeline)
            .map_ok(|(frame, _)| frame)
            .try_collect()
            .await
    }

    /// One frame, or `None` when the timeline has no such frame.
    ///
    /// # Errors
    /// Invalid id, origin failure, or undecodable bytes.
    pub async fn load_frame(&self, timeline: &str, seq: u64) -> Result<Option<Frame>> {
        let key = layout::frame_key(timeline, seq)?;
        let manifest = self.read_manifest(timeline).await?;
        let meta = manifest.and_then(|m| m.frames.into_iter().find(|f| f.seq == seq));
        let entry = FrameEntry {
            seq,
            key,
            size: 0,
            meta,
        };
        match self.fetch_decoded(entry).await {
            Ok((frame, _)) => Ok(Some(frame)),
            Err(Error::Vanished { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One frame's JPEG bytes as stored, and the tier that answered; `None` when absent.
    ///
    /// # Errors
    /// Invalid id or origin failure.
    pub async fn frame_jpeg(&self, timeline: &str, seq: u64) -> Result<Option<(Bytes, Source)>> {
        let key = layout::frame_key(timeline, seq)?;
        Ok(self.cache.get_hit(&key).await?.map(|h| (h.bytes, h.source)))
    }

    /// The origin's manifest, or its local copy when the origin fails.
    async fn read_manifest(&self, timeline: &str) -> Result<Option<Manifest>> {
        let key = layout::manifest_key(timeline)?;
        match self.cache.origin().get(&key).await {
            Ok(bytes) => Ok(bytes.and_then(|b| parse_manifest(&key, &b))),
            Err(e) => match self.cache.get_local(&key).await {
                Some(hit) => {
                    TierCounters::bump(&self.cache.metrics().offline_loads);
                    Ok(parse_manifest(&key, &hit.bytes))
                }
                None => Err(e),
            },
        }
    }

    async fn codec_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.codec_slots
            .acquire()
            .await
            .expect("the codec semaphore is never closed")
    }

    /// Forgets which manifests were kept locally, after a clear dropped them.
    fn forget_kept(&self, timeline: &str) -> Result<()> {
        let prefix = layout::timeline_prefix(timeline)?;
        self.kept_manifests
            .lock()
            .expect("kept manifests lock")
            .retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }

    /// Every frame's JPEG bytes as stored, in seq order, checked against the manifest, with
    /// its timestamp and the tier that answered; nothing is decoded.
    ///
    /// # Errors
    /// As [`FrameCache::load_frames`], without decoding.
    pub fn stream_jpegs<'a>(
        &'a self,
        timeline: &'a str,
    ) -> impl Stream<Item = Result<FrameJpeg>> + Send + 'a {
        stream::once(self.loadable(timeline))
            .map_ok(move |entries| self.jpegs_of(entries))
            .try_flatten()
    }

    /// [`FrameCache::stream_jpegs`] with the number of frames it will yield, known before
    /// the first one (for progress reporting) from the same listing.
    ///
    /// # Errors
    /// As [`FrameCache::stream_jpegs`]: the listing's errors here, each frame's in the stream.
    pub async fn count_and_stream_jpegs<'a>(
        &'a self,
        timeline: &'a str,
    ) -> Result<(usize, impl Stream<Item = Result<FrameJpeg>> + Send + 'a)> {
        let entries = self.loadable(timeline).await?;
        Ok((entries.len(), self.jpegs_of(entries)))
    }

    fn jpegs_of(
        &self,
        entries: Vec<FrameEntry>,
    ) -> impl Stream<Item = Result<FrameJpeg>> + Send + '_ {
        stream::iter(entries)
            .map(move |entry| async move {
                let (jpeg, source, current) = self.fetch(&entry).await?;
                Ok(FrameJpeg {
                    seq: entry.seq,
                    timestamp: entry.meta.filter(|_| current).map_or(0.0, |m| m.timestamp),
                    jpeg,
                    source,
                })
            })
            .buffered(self.concurrency)
    }

    /// Every frame as `{seq, timestamp, jpeg_b64}` with the stored JPEG bytes (no re-encode).
    ///
    /// # Errors
    /// As [`FrameCache::load_frames`], without decoding.
    pub async fn load_frames_b64(&self, timeline: &str) -> Result<Vec<FrameB64>> {
        self.stream_jpegs(timeline)
            .map_ok(|f| FrameB64 {
                seq: f.seq,
                timestamp: f.timestamp,
                jpeg_b64: B64.encode(&f.jpeg),
            })
            .try_collect()
            .await
    }

    /// Encodes `frames` to JPEG at `quality` and writes them through every tier, replacing the
    /// timeline: frames of an earlier, longer version are removed. Returns the frames written.
    ///
    /// The manifest is written first as incomplete and last as complete, so a writer that
    /// dies halfway leaves a timeline that loads as [`Error::Incomplete`], not a short one.
    ///
    /// # Errors
    /// Invalid id, quality or duplicate seqs (nothing written), an encoder failure naming the
    /// seq, or an origin failure.
    pub async fn cache_frames(
        &self,
        timeline: &str,
        frames: &[Frame],
        quality: u8,
    ) -> Result<usize> {
        if !(1..=100).contains(&quality) {
            return Err(Error::Invalid {
                what: "JPEG quality",
                value: quality.to_string(),
                rule: "must be within 1..=100".into(),
            });
        }
        let metas = frames
            .iter()
            .map(|f| FrameMeta::pending(f.seq, f.chunk_id, f.timestamp, &f.perceptual_hash))
            .collect();
        let encode = |i: usize| {
            let seq = frames[i].seq;
            async move {
                let _slot = self.codec_slot().await;
                let image = frames[i].image.clone();
                let jpeg = tokio::task::spawn_blocking(move || codec::encode_jpeg(&image, quality))
                    .await
                    .map_err(|e| Error::Encode {
                        seq,
                        reason: e.to_string(),
                    })?
                    .map_err(|reason| Error::Encode { seq, reason })?;
                Ok(Bytes::from(jpeg))
            }
        };
        self.write_timeline(timeline, metas, encode, &|_| {}).await
    }

    /// Writes already encoded JPEGs as a timeline's frames, stored byte for byte, replacing
    /// the timeline as [`FrameCache::cache_frames`] does. `progress(n)` is called after each
    /// frame written, with the count so far.
    ///
    /// # Errors
    /// Invalid id, duplicate seqs or bytes that do not start like a JPEG (nothing written),
    /// or an origin failure.
    pub async fn cache_jpegs(
        &self,
        timeline: &str,
        frames: Vec<EncodedFrame>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<usize> {
        if let Some(bad) = frames
            .iter()
            .find(|f| !f.jpeg.starts_with(&[0xFF, 0xD8, 0xFF]))
        {
            return Err(Error::Invalid {
                what: "JPEG of frame",
                value: bad.seq.to_string(),
                rule: "does not start with a JPEG marker".into(),
            });
        }
        let metas = frames
            .iter()
            .map(|f| FrameMeta::pending(f.seq, f.chunk_id, f.timestamp, &f.perceptual_hash))
            .collect();
        let given = |i: usize| {
            let jpeg = frames[i].jpeg.clone();
            async move { Ok(jpeg) }
        };
        self.write_timeline(timeline, metas, given, progress).await
    }

    /// Replaces a timeline's frames: incomplete manifest, frames (made by `jpeg_of(index)`)
    /// written through in parallel, extra old frames removed, complete manifest.
    async fn write_timeline<F, Fut>(
        &self,
        timeline: &str,
        metas: Vec<FrameMeta>,
        jpeg_of: F,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<usize>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let prefix = layout::frames_prefix(timeline)?;
        let mut seen = HashSet::with_capacity(metas.len());
        if let Some(dup) = metas.iter().find(|f| !seen.insert(f.seq)) {
            return Err(Error::Invalid {
                what: "frame seq",
                value: dup.seq.to_string(),
                rule: "appears more than once".into(),
            });
        }
        let manifest_key = layout::manifest_key(timeline)?;
        let origin = self.cache.origin();
        let old = origin.list(&prefix).await?;
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT,
            generation: new_generation(),
            complete: false,
            frames: metas,
        };
        origin.put(&manifest_key, manifest_bytes(&manifest)).await?;

        let done = std::sync::atomic::AtomicU64::new(0);
        let written: Vec<(u64, u64, String)> = stream::iter(0..manifest.frames.len())
            .map(|i| {
                let seq = manifest.frames[i].seq;
                let key = layout::frame_key(timeline, seq);
                let jpeg = jpeg_of(i);
                let done = &done;
                async move {
                    let key = key?;
                    let jpeg = jpeg.await?;
                    let hash = blake3::hash(&jpeg).to_hex().to_string();
                    let size = jpeg.len() as u64;
                    self.cache.put(&key, jpeg).await?;
                    progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                    Ok::<_, Error>((seq, size, hash))
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;

        // Frames of an earlier, longer version of this timeline must not stay visible.
        let keep: HashSet<u64> = manifest.frames.iter().map(|f| f.seq).collect();
        let stale: Vec<String> = old
            .into_iter()
            .filter(|o| {
                let name = &o.key[prefix.len().min(o.key.len())..];
                layout::parse_frame_name(name).is_some_and(|seq| !keep.contains(&seq))
            })
            .map(|o| o.key)
            .collect();
        stream::iter(stale)
            .map(|key| async move { self.cache.remove(&key).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;

        let by_seq: HashMap<u64, (u64, String)> =
            written.into_iter().map(|(s, n, h)| (s, (n, h))).collect();
        for meta in &mut manifest.frames {
            if let Some((size, hash)) = by_seq.get(&meta.seq) {
                meta.size = *size;
                meta.blake3 = hash.clone();
            }
        }
        manifest.frames.sort_by_key(|f| f.seq);
        manifest.complete = true;
        origin.put(&manifest_key, manifest_bytes(&manifest)).await?;
        let count = manifest.frames.len();
        tracing::info!("cached {count} frames for timeline {timeline}");
        Ok(count)
    }

    /// Stores debug overlays (PNG bytes, stored as given) for one frame of a job's stage.
    ///
    /// # Errors
    /// An invalid id or name, or bytes that are not a PNG (nothing written); origin failure.
    pub async fn save_overlays(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
        overlays: &BTreeMap<String, Bytes>,
    ) -> Result<usize> {
        layout::overlay_stage_prefix(timeline, job, stage)?;
        let mut writes = Vec::with_capacity(overlays.len());
        for (name, png) in overlays {
            let key = layout::overlay_key(timeline, job, stage, seq, name)?;
            if !png.starts_with(PNG_SIGNATURE) {
                return Err(Error::Invalid {
                    what: "overlay",
                    value: name.clone(),
                    rule: "must be PNG bytes (no PNG signature found)".into(),
                });
            }
            writes.push((key, png.clone()));
        }
        let n = writes.len();
        stream::iter(writes)
            .map(|(key, png)| async move { self.cache.put(&key, png).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(n)
    }

    /// [`FrameCache::save_overlays`] for base64 PNG strings, as the UI sends them.
    ///
    /// # Errors
    /// As `save_overlays`, plus invalid base64 (naming the overlay; nothing written).
    pub async fn save_overlays_b64(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
        overlays: &BTreeMap<String, String>,
    ) -> Result<usize> {
        let mut decoded = BTreeMap::new();
        for (name, b64) in overlays {
            let png = B64.decode(b64.trim()).map_err(|e| Error::Invalid {
                what: "overlay",
                value: name.clone(),
                rule: format!("must be base64: {e}"),
            })?;
            decoded.insert(name.clone(), Bytes::from(png));
        }
        self.save_overlays(timeline, job, stage, seq, &decoded)
            .await
    }

    /// The overlays of one frame (`name -> PNG bytes`), or `None` when there are none.
    ///
    /// Lists only this frame's names (`{seq}_` prefix), not the whole stage.
    ///
    /// # Errors
    /// Invalid ids or origin failure.
    pub async fn load_overlays(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
    ) -> Result<Option<BTreeMap<String, Bytes>>> {
        let stage_prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let listed = self
            .cache
            .origin()
            .list(&format!("{stage_prefix}{seq}_"))
            .await?;
        let wanted: Vec<(String, String)> = listed
            .into_iter()
            .filter_map(|o| {
                let file = o.key.get(stage_prefix.len()..)?;
                match layout::parse_overlay_name(file) {
                    Some((s, name)) if s == seq => Some((name.to_owned(), o.key.clone())),
                    _ => {
                        TierCounters::bump(&self.cache.metrics().skipped_names);
                        None
                    }
                }
            })
            .collect();
        let loaded: Vec<Option<(String, Bytes)>> = stream::iter(wanted)
            .map(|(name, key)| async move {
                Ok::<_, Error>(self.cache.get_hit(&key).await?.map(|h| (name, h.bytes)))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let overlays: BTreeMap<String, Bytes> = loaded.into_iter().flatten().collect();
        Ok((!overlays.is_empty()).then_some(overlays))
    }

    /// [`FrameCache::load_overlays`] as base64 strings, as the Python module returns them.
    ///
    /// # Errors
    /// As `load_overlays`.
    pub async fn load_overlays_b64(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
    ) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self
            .load_overlays(timeline, job, stage, seq)
            .await?
            .map(|m| m.into_iter().map(|(k, v)| (k, B64.encode(&v))).collect()))
    }

    /// Sorted seqs of the frames that have overlays in a job's stage.
    ///
    /// # Errors
    /// Invalid ids or origin failure.
    pub async fn list_overlay_frames(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
    ) -> Result<Vec<u64>> {
        let prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let listed = self.cache.origin().list(&prefix).await?;
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|o| {
                let parsed = o
                    .key
                    .get(prefix.len()..)
                    .and_then(layout::parse_overlay_name);
                if parsed.is_none() {
                    TierCounters::bump(&self.cache.metrics().skipped_names);
                }
                parsed.map(|(seq, _)| seq)
            })
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// Deletes a timeline's frames and/or overlays from the origin and from this machine's
    /// memory and disk tiers.
    ///
    /// # Errors
    /// Invalid id or origin failure (local copies are dropped regardless).
    pub async fn clear(&self, timeline: &str, scope: ClearScope) -> Result<()> {
        let prefixes = clear_prefixes(timeline, scope)?;
        self.forget_kept(timeline)?;
        let mut result = Ok(());
        for prefix in &prefixes {
            if let Err(e) = self.cache.origin().remove_prefix(prefix).await {
                result = Err(e);
            }
            self.cache.invalidate_local_prefix(prefix).await;
        }
        result
    }

    /// Drops a timeline's copies from this machine's memory and disk tiers only.
    ///
    /// # Errors
    /// Invalid id. Returns the disk entries removed.
    pub async fn clear_local(&self, timeline: &str, scope: ClearScope) -> Result<u64> {
        let mut removed = 0;
        self.forget_kept(timeline)?;
        for prefix in clear_prefixes(timeline, scope)? {
            removed += self.cache.invalidate_local_prefix(&prefix).await;
        }
        Ok(removed)
    }

    /// Ids of every timeline in the store.
    ///
    /// # Errors
    /// Origin failure.
    pub async fn timelines(&self) -> Result<Vec<String>> {
        let listed = self
            .cache
            .origin()
            .list(&format!("{}/", layout::CACHE_PREFIX))
            .await?;
        let mut ids: Vec<String> = listed
            .iter()
            .filter_map(|o| layout::timeline_of(&o.key).map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

fn clear_prefixes(timeline: &str, scope: ClearScope) -> Result<Vec<String>> {
    Ok(match scope {
        ClearScope::Frames => vec![layout::frames_prefix(timeline)?],
        ClearScope::Overlays => vec![layout::overlays_prefix(timeline)?],
        ClearScope::All => vec![layout::timeline_prefix(timeline)?],
    })
}

/// A manifest of the known format; anything else is logged and ignored.
fn parse_manifest(key: &str, bytes: &[u8]) -> Option<Manifest> {
    match serde_json::from_slice::<Manifest>(bytes) {
        Ok(m) if m.format == MANIFEST_FORMAT => Some(m),
        Ok(m) => {
            tracing::warn!("{key}: unknown manifest format {}", m.format);
            None
        }
        Err(e) => {
            tracing::warn!("{key}: unreadable manifest ignored: {e}");
            None
        }
    }
}

fn manifest_bytes(manifest: &Manifest) -> Bytes {
    Bytes::from(serde_json::to_vec(manifest).expect("a manifest always serializes"))
}

fn new_generation() -> String {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = blake3::Hasher::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&COUNTER.fetch_add(1, Relaxed).to_le_bytes());
    hasher.finalize().to_hex()[..16].to_owned()
}

/// Encodes in-memory frames to base64 JPEGs at `quality` for API responses, on all cores.
///
/// # Errors
/// An encoder failure naming the frame's seq.
pub fn frames_to_b64(frames: &[Frame], quality: u8) -> Result<Vec<FrameB64>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = frames.len().div_ceil(threads).max(1);
    let mut out: Vec<FrameB64> = std::thread::scope(|scope| {
        let workers: Vec<_> = frames
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| {
                            let jpeg = codec::encode_jpeg(&f.image, quality)
                                .map_err(|reason| Error::Encode { seq: f.seq, reason })?;
                            Ok(FrameB64 {
                                seq: f.seq,
                                timestamp: f.timestamp,
                                jpeg_b64: B64.encode(jpeg),
                            })
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("encoder thread panicked"))
            .collect::<Result<Vec<Vec<_>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    out.sort_by_key(|f| f.seq);
    Ok(out)
}
