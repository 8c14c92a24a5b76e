//! Writing timelines: encode, write through every tier, replace the old version.

use super::FrameCache;
use super::manifest::{FrameMeta, MANIFEST_FORMAT, Manifest, manifest_bytes, new_generation};
use super::read::Frame;
use crate::codec;
use crate::error::{Error, Result};
use crate::layout;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{HashMap, HashSet};

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
    pub(super) async fn write_timeline<F, Fut>(
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
                layout::frame_seq_under(&prefix, &o.key).is_some_and(|seq| !keep.contains(&seq))
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
}
