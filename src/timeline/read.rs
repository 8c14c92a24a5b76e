//! Reading frames: fetch through the tiers, revalidate against the index, decode, stream.

use super::FrameCache;
use super::index::FrameEntry;
use crate::codec;
use crate::error::{Error, Result};
use crate::layout;
use crate::tier::Source;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use image::RgbImage;

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

impl FrameCache {
    /// Reads one frame's JPEG and checks it against the manifest. Returns the bytes, the
    /// tier that answered and whether the manifest metadata belongs to these bytes.
    pub(super) async fn fetch(&self, entry: &FrameEntry) -> Result<(Bytes, Source, bool)> {
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
    pub(super) async fn get_listed(&self, key: &str) -> Result<crate::chain::Hit> {
        self.cache
            .get_hit(key)
            .await?
            .ok_or_else(|| Error::Vanished {
                key: key.to_owned(),
            })
    }

    pub(super) async fn fetch_decoded(&self, entry: FrameEntry) -> Result<(Frame, Source)> {
        let (bytes, source, current) = self.fetch(&entry).await?;
        let key = entry.key.clone();
        let _slot = self.codec_slot().await;
        let image = tokio::task::spawn_blocking(move || codec::decode_jpeg(&bytes))
            .await
            .map_err(|join| Error::task(format!("decode of {key:?}"), join))?
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
    /// skipped and counted in [`Stats::skipped_names`](crate::Stats::skipped_names), never an error.
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

    /// Every frame's JPEG bytes as stored, in seq order, checked against the manifest, with
    /// its timestamp and the tier that answered; nothing is decoded. Also returns the number
    /// of frames the stream will yield, known from the listing before the first one arrives
    /// (for progress reporting).
    ///
    /// # Errors
    /// As [`FrameCache::load_frames`], without decoding: the listing's errors here, each
    /// frame's in the stream.
    pub async fn stream_jpegs<'a>(
        &'a self,
        timeline: &'a str,
    ) -> Result<(usize, impl Stream<Item = Result<FrameJpeg>> + Send + 'a)> {
        let entries = self.loadable(timeline).await?;
        Ok((entries.len(), self.jpegs_of(entries)))
    }

    pub(super) fn jpegs_of(
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
}
