//! Writing timelines: encode, write through every tier, then either merge the frames into
//! the timeline (the default, as the Python module: every other frame stays) or replace it
//! (an explicit rebuild).

use super::FrameCache;
use super::finish::Written;
use super::manifest::{FrameMeta, Manifest, manifest_bytes, new_generation};
use super::options::{WriteMode, WriteOptions};
use super::read::Frame;
use crate::codec;
use crate::error::{Error, Result};
use crate::layout;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

impl FrameCache {
    /// Encodes `frames` to JPEG at `options.quality` and writes them through every tier in
    /// `options.mode` ([`WriteMode::Merge`] by default, as the Python module: the timeline's
    /// other frames stay). Returns the frames written.
    ///
    /// Merging, each frame is stored (JPEG first), then its manifest entry: a writer that
    /// dies halfway leaves the frames it stored, loading with the module's defaults.
    /// Replacing, the manifest is written first as incomplete and complete only once every
    /// frame is stored, so a writer that dies halfway leaves a timeline that loads as
    /// [`Error::Incomplete`], not a short one; concurrent rebuilds: see `finish.rs`.
    ///
    /// # Errors
    /// Invalid id, quality or duplicate seqs (nothing written), an encoder failure naming the
    /// seq, an origin failure, or (replacing) another writer of the timeline at work at the
    /// same time ([`Error::Superseded`], [`Error::Contended`]; see `finish.rs` for the rule).
    pub async fn cache_frames(
        &self,
        timeline: &str,
        frames: &[Frame],
        options: WriteOptions<'_>,
    ) -> Result<usize> {
        let quality = options.quality;
        if !(1..=100).contains(&quality) {
            return Err(Error::Invalid {
                what: "JPEG quality",
                value: quality.to_string(),
                rule: "must be within 1..=100".into(),
            });
        }
        // Every frame is checked before anything is written: a bad one must not leave an
        // existing timeline marked incomplete.
        if let Some(bad) = frames.iter().find(|f| {
            let (w, h) = f.image.dimensions();
            !(1..=codec::MAX_DIMENSION).contains(&w) || !(1..=codec::MAX_DIMENSION).contains(&h)
        }) {
            let (w, h) = bad.image.dimensions();
            return Err(Error::Invalid {
                what: "frame image",
                value: format!("seq {} ({w}x{h})", bad.seq),
                rule: format!(
                    "width and height must be within 1..={}",
                    codec::MAX_DIMENSION
                ),
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
                    .map_err(|join| Error::task(format!("encode of frame {seq}"), join))?
                    .map_err(|reason| Error::Encode { seq, reason })?;
                // The encoder's buffer is sized for the raw image; the memory tier must not
                // keep that whole allocation alive for a much smaller JPEG.
                let mut jpeg = jpeg;
                jpeg.shrink_to_fit();
                Ok(Bytes::from(jpeg))
            }
        };
        self.write_timeline(timeline, metas, encode, options).await
    }

    /// Writes already encoded JPEGs as a timeline's frames, stored byte for byte, in
    /// `options.mode` as [`FrameCache::cache_frames`] does (`options.quality` is not used).
    ///
    /// # Errors
    /// Invalid id, duplicate seqs or bytes that do not start like a JPEG (nothing written),
    /// an origin failure, or (replacing) another writer at work ([`Error::Superseded`],
    /// [`Error::Contended`]).
    pub async fn cache_jpegs(
        &self,
        timeline: &str,
        frames: Vec<EncodedFrame>,
        options: WriteOptions<'_>,
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
        self.write_timeline(timeline, metas, given, options).await
    }

    /// Checks the entries of a write, then writes it in `mode`.
    async fn write_timeline<F, Fut>(
        &self,
        timeline: &str,
        metas: Vec<FrameMeta>,
        jpeg_of: F,
        options: WriteOptions<'_>,
    ) -> Result<usize>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let mut seen = HashSet::with_capacity(metas.len());
        if let Some(dup) = metas.iter().find(|f| !seen.insert(f.seq)) {
            return Err(Error::Invalid {
                what: "frame seq",
                value: dup.seq.to_string(),
                rule: "appears more than once".into(),
            });
        }
        // JSON has no NaN or infinity (serde_json writes null), so such a timestamp would
        // make the whole manifest unreadable and drop every frame's metadata.
        if let Some(bad) = metas.iter().find(|f| !f.timestamp.is_finite()) {
            return Err(Error::Invalid {
                what: "frame timestamp",
                value: format!("seq {}: {}", bad.seq, bad.timestamp),
                rule: "must be a finite number of seconds".into(),
            });
        }
        let keys = metas
            .iter()
            .map(|f| layout::frame_key(timeline, f.seq))
            .collect::<Result<Vec<_>>>()?;
        let progress = &|n| options.report(n);
        match options.mode {
            WriteMode::Merge => {
                self.merge_timeline(timeline, metas, keys, jpeg_of, progress)
                    .await
            }
            WriteMode::Replace => {
                self.replace_timeline(timeline, metas, keys, jpeg_of, progress)
                    .await
            }
        }
    }

    /// Stores each frame (made by `jpeg_of(index)`) through the chain, in parallel, and
    /// returns what was stored.
    async fn store_frames<F, Fut>(
        &self,
        metas: &[FrameMeta],
        keys: &[String],
        jpeg_of: F,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<Written>>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let done = AtomicU64::new(0);
        stream::iter(0..metas.len())
            .map(|i| {
                let seq = metas[i].seq;
                let key = keys[i].clone();
                let jpeg = jpeg_of(i);
                let done = &done;
                async move {
                    let jpeg = jpeg.await?;
                    let version = self.cache.put_version(&key, jpeg.clone()).await?;
                    progress(done.fetch_add(1, Relaxed) + 1);
                    Ok::<_, Error>(Written {
                        seq,
                        key,
                        jpeg,
                        version,
                    })
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await
    }

    /// Merges frames into a timeline: every JPEG stored first, then their entries added to
    /// the manifest ([`FrameCache::append_entries`]). Nothing else is removed or rewritten.
    async fn merge_timeline<F, Fut>(
        &self,
        timeline: &str,
        mut metas: Vec<FrameMeta>,
        keys: Vec<String>,
        jpeg_of: F,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<usize>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        if metas.is_empty() {
            return Ok(0);
        }
        let written = self.store_frames(&metas, &keys, jpeg_of, progress).await?;
        fill_sizes(&mut metas, &written);
        self.append_entries(timeline, &metas).await?;
        let count = metas.len();
        tracing::info!("cached {count} frames into timeline {timeline}");
        Ok(count)
    }

    /// Replaces a timeline's frames: incomplete manifest, frames (made by `jpeg_of(index)`)
    /// written through in parallel, then [`FrameCache::finish_timeline`]. A write that fails
    /// after its manifest is stored marks it abandoned, so other writers go on.
    async fn replace_timeline<F, Fut>(
        &self,
        timeline: &str,
        metas: Vec<FrameMeta>,
        keys: Vec<String>,
        jpeg_of: F,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<usize>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<Bytes>>,
    {
        let prefix = layout::frames_prefix(timeline)?;
        let manifest_key = layout::manifest_key(timeline)?;
        let mut manifest = Manifest {
            generation: new_generation(),
            complete: false,
            frames: metas,
            chunks: Vec::new(),
        };
        // The chunks of the manifest published before this write: their writers are done,
        // so they can go once this write has published. Chunks of a writer still at work
        // (its manifest incomplete) are never removed by another writer.
        let previous = self
            .read_head(timeline)
            .await?
            .filter(|head| head.complete)
            .map(|head| head.dirs());
        self.cache
            .origin()
            .put(&manifest_key, manifest_bytes(&manifest))
            .await?;

        let written = async {
            let written = self
                .store_frames(&manifest.frames, &keys, jpeg_of, progress)
                .await?;
            fill_sizes(&mut manifest.frames, &written);
            // Under this write's generation, so no reader of another manifest sees them.
            self.put_chunks(timeline, &mut manifest).await?;
            manifest.complete = true;
            self.finish_timeline(timeline, &prefix, &manifest_key, &manifest, written)
                .await
        }
        .await;
        match written {
            Ok(()) => {
                if let Some(mut previous) = previous {
                    previous.remove(&manifest.generation);
                    self.drop_chunk_dirs(timeline, previous).await;
                }
                let count = manifest.frames.len();
                tracing::info!("cached {count} frames for timeline {timeline}");
                Ok(count)
            }
            Err(e) => {
                // Whatever failed, the incomplete manifest must not make other writers of
                // this timeline give way to a write that is over.
                if !matches!(e, Error::Superseded { .. } | Error::Contended { .. }) {
                    self.abandon(&manifest_key, &manifest.generation).await;
                }
                Err(e)
            }
        }
    }
}

/// Each entry's size and blake3 from what was stored for its seq; sorted by seq.
fn fill_sizes(metas: &mut [FrameMeta], written: &[Written]) {
    let by_seq: HashMap<u64, &Written> = written.iter().map(|w| (w.seq, w)).collect();
    for meta in metas.iter_mut() {
        let frame = by_seq[&meta.seq];
        meta.size = frame.jpeg.len() as u64;
        meta.blake3 = blake3::hash(&frame.jpeg).to_hex().to_string();
    }
    metas.sort_by_key(|f| f.seq);
}
