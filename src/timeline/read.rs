//! Reading frames: fetch through the tiers, revalidate against the index, decode, stream.

use super::FrameCache;
use super::index::FrameEntry;
use super::options::{LoadOptions, Seqs};
use crate::chain::Hit;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::pixels::Pixels;
use crate::tier::{Limit, Source};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use std::time::Instant;

/// One video frame with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Sequence number within the timeline.
    pub seq: u64,
    /// The video chunk it was extracted from.
    pub chunk_id: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
    /// The pixels, RGB8; possibly shared with the decoded-frame cache (see [`Pixels`]).
    pub image: Pixels,
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
    /// The video chunk it was extracted from (0 when unknown).
    pub chunk_id: u64,
    /// Perceptual hash (empty when unknown).
    pub perceptual_hash: String,
    /// The JPEG bytes.
    pub jpeg: Bytes,
    /// The tier that answered.
    pub source: Source,
}

/// One frame's JPEG as [`FrameCache::fetch`] read it.
pub(super) struct Fetched {
    pub(super) bytes: Bytes,
    pub(super) source: Source,
    /// Whether the manifest's metadata belongs to these bytes.
    pub(super) current: bool,
    /// The bytes' blake3, when this read needed it (a manifest to compare with) or a tier
    /// had verified it: each read hashes a frame at most once.
    pub(super) blake3: Option<blake3::Hash>,
}

impl Fetched {
    /// The bytes' blake3, computed now if this read has not needed it yet.
    pub(super) fn blake3(&self) -> blake3::Hash {
        self.blake3.unwrap_or_else(|| blake3::hash(&self.bytes))
    }
}

impl FrameCache {
    /// Reads one frame's JPEG at the version its listing reported and checks it against
    /// the manifest.
    ///
    /// With a version, the bytes are the origin's by construction: a mismatch with the
    /// manifest means another writer rewrote the frame and left the manifest behind, so the
    /// bytes are served with their metadata unknown (and stay cached: nothing is refetched
    /// on later loads). Without one (a backend that reports no validator), a local copy that
    /// does not match is dropped and the origin asked again.
    pub(super) async fn fetch(&self, entry: &FrameEntry) -> Result<Fetched> {
        let fetched = |hit: Hit, current, blake3| Fetched {
            bytes: hit.bytes,
            source: hit.source,
            current,
            blake3,
        };
        let hit = self.get_listed(entry).await?;
        let Some(expected) = entry.meta.as_ref().map(|m| m.blake3.as_str()) else {
            let known = hit.blake3;
            return Ok(fetched(hit, false, known));
        };
        let hash = hit.blake3.unwrap_or_else(|| blake3::hash(&hit.bytes));
        if hash.to_hex().as_str() == expected {
            return Ok(fetched(hit, true, Some(hash)));
        }
        if entry.version.is_none() && hit.source != Source::Origin {
            tracing::debug!("{}: local copy is stale, refetching", entry.key);
            self.cache.invalidate_local(&entry.key).await;
            let fresh = self.get_listed(entry).await?;
            let hash = fresh.blake3.unwrap_or_else(|| blake3::hash(&fresh.bytes));
            let current = hash.to_hex().as_str() == expected;
            return Ok(fetched(fresh, current, Some(hash)));
        }
        Ok(fetched(hit, false, Some(hash)))
    }

    /// Reads a frame that a listing just named; its absence means a concurrent delete. A
    /// frame listed larger than the object size limit is refused before it is read.
    pub(super) async fn get_listed(&self, entry: &FrameEntry) -> Result<Hit> {
        Limit::object(self.cache.max_object_size()).check(&entry.key, entry.size)?;
        self.cache
            .get_at(&entry.key, entry.version.as_ref())
            .await?
            .ok_or_else(|| Error::Vanished {
                key: entry.key.clone(),
            })
    }

    /// One frame's entry as the origin has it now: one stat for its version and, when
    /// `with_meta`, the manifest head and the one chunk holding its metadata (with a
    /// revalidation window, the page covering it instead, which later reads share). When
    /// the origin fails, the entry this machine kept (counted as an offline load).
    pub(super) async fn frame_entry(
        &self,
        timeline: &str,
        seq: u64,
        with_meta: bool,
    ) -> Result<Option<FrameEntry>> {
        let key = layout::frame_key(timeline, seq)?;
        let origin = self.cache.origin();
        let paged = async {
            let seqs = std::iter::once(seq).collect();
            let confirmed = self.confirm(timeline, Instant::now(), &seqs).await?;
            let Some(Some(info)) = confirmed.objects.get(&seq).cloned() else {
                return Ok(None);
            };
            let meta = match confirmed.head.as_ref().filter(|_| with_meta) {
                Some(head) => self.metas_of(timeline, head, &seqs).await?.remove(&seq),
                None => None,
            };
            Ok::<_, Error>(Some(FrameEntry {
                seq,
                key: info.key,
                size: info.size,
                version: info.version,
                meta,
            }))
        };
        if !self.pages.window().is_zero() {
            match paged.await {
                Err(err) if err.is_origin_failure() => {
                    return self.kept_entry(timeline, seq, err).await;
                }
                other => return other,
            }
        }
        let meta = async {
            if !with_meta {
                return Ok(None);
            }
            let Some(head) = self.read_head(timeline).await? else {
                return Ok(None);
            };
            let mut metas = self
                .metas_of(timeline, &head, &std::iter::once(seq).collect())
                .await?;
            Ok(metas.remove(&seq))
        };
        match futures::try_join!(origin.stat(&key), meta) {
            Ok((None, _)) => Ok(None),
            Ok((Some(info), meta)) => Ok(Some(FrameEntry {
                seq,
                key,
                size: info.size,
                version: info.version,
                meta,
            })),
            Err(err) if err.is_origin_failure() => self.kept_entry(timeline, seq, err).await,
            Err(err) => Err(err),
        }
    }

    /// The entry this machine kept for a frame the origin failed to confirm (counted as an
    /// offline load), else `err`.
    async fn kept_entry(&self, timeline: &str, seq: u64, err: Error) -> Result<Option<FrameEntry>> {
        let kept = self
            .kept_entries(timeline, &std::iter::once(seq).collect())
            .await;
        let Some(entry) = kept.into_values().next() else {
            return Err(err);
        };
        tracing::warn!(
            "origin failed ({err}); reading {} from the last listing kept",
            entry.key
        );
        TierCounters::bump(&self.cache.metrics().offline_loads);
        Ok(Some(entry))
    }

    /// One frame, scaled and shared as `options` say, or `None` when the timeline has no
    /// such frame (unlike a [`Seqs`](super::Seqs) selection, which fails naming it).
    ///
    /// # Errors
    /// Invalid id, origin failure, or undecodable bytes.
    pub async fn load_frame(
        &self,
        timeline: &str,
        seq: u64,
        options: LoadOptions,
    ) -> Result<Option<Frame>> {
        let Some(entry) = self.frame_entry(timeline, seq, true).await? else {
            return Ok(None);
        };
        match self.fetch_decoded(entry, options).await {
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
        let Some(entry) = self.frame_entry(timeline, seq, false).await? else {
            return Ok(None);
        };
        match self.get_listed(&entry).await {
            Ok(hit) => Ok(Some((hit.bytes, hit.source))),
            Err(Error::Vanished { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) fn jpegs_of(
        &self,
        entries: Vec<FrameEntry>,
    ) -> impl Stream<Item = Result<FrameJpeg>> + Send + '_ {
        stream::iter(entries)
            .map(move |entry| self.jpeg_of(entry))
            .buffered(self.concurrency)
    }

    /// One listed frame's JPEG, checked against the manifest.
    pub(super) async fn jpeg_of(&self, entry: FrameEntry) -> Result<FrameJpeg> {
        let fetched = self.fetch(&entry).await?;
        // The manifest describes these bytes only when its blake3 matches them.
        let meta = entry.meta.filter(|_| fetched.current);
        Ok(FrameJpeg {
            seq: entry.seq,
            timestamp: meta.as_ref().map_or(0.0, |m| m.timestamp),
            chunk_id: meta.as_ref().map_or(0, |m| m.chunk_id),
            perceptual_hash: meta.map(|m| m.perceptual_hash).unwrap_or_default(),
            jpeg: fetched.bytes,
            source: fetched.source,
        })
    }

    /// Streams the frames `seqs` names in its order (seq order for [`Seqs::All`]), each as
    /// soon as it and those before it are ready, with at most `concurrency` fetches and
    /// decodes in flight, scaled and shared as `options` say.
    ///
    /// # Errors
    /// Each item fails on its own: a seq the timeline lacks ([`Error::NoFrame`]), an
    /// incomplete timeline ([`Error::Incomplete`]), an origin failure, a frame that does not
    /// decode ([`Error::Decode`] naming its key). Stray object names are skipped and counted
    /// in [`Stats::skipped_names`](crate::Stats::skipped_names), never an error.
    pub fn stream_frames<'a>(
        &'a self,
        timeline: &'a str,
        seqs: Seqs,
        options: LoadOptions,
    ) -> impl Stream<Item = Result<(Frame, Source)>> + Send + 'a {
        self.entries_of(timeline, seqs)
            .map_ok(move |entry| self.fetch_decoded(entry, options))
            .try_buffered(self.concurrency)
    }

    /// The frames `seqs` names, decoded, in its order ([`Seqs::All`]: every frame, sorted
    /// by seq; empty when there are none).
    ///
    /// # Errors
    /// As [`FrameCache::stream_frames`], the first error met.
    pub async fn load_frames(
        &self,
        timeline: &str,
        seqs: Seqs,
        options: LoadOptions,
    ) -> Result<Vec<Frame>> {
        self.stream_frames(timeline, seqs, options)
            .map_ok(|(frame, _)| frame)
            .try_collect()
            .await
    }

    /// The stored JPEGs of the frames `seqs` names, in its order, checked against the
    /// manifest, with their timestamps and the tier that answered; nothing is decoded. Also
    /// returns the number of frames the stream will yield, known before the first one
    /// arrives (for [`Seqs::All`], from the listing), for progress reporting.
    ///
    /// # Errors
    /// As [`FrameCache::stream_frames`], without decoding: the listing's errors here (for
    /// [`Seqs::All`]), each frame's in the stream.
    pub async fn stream_jpegs<'a>(
        &'a self,
        timeline: &'a str,
        seqs: Seqs,
    ) -> Result<(usize, BoxStream<'a, Result<FrameJpeg>>)> {
        if seqs == Seqs::All {
            let entries = self.loadable(timeline).await?;
            return Ok((entries.len(), self.jpegs_of(entries).boxed()));
        }
        seqs.check()?;
        layout::validate_id("timeline id", timeline)?;
        let n = seqs.len().unwrap_or(0);
        let jpegs = self
            .entries_of(timeline, seqs)
            .map_ok(move |entry| self.jpeg_of(entry))
            .try_buffered(self.concurrency)
            .boxed();
        Ok((n, jpegs))
    }

    /// The stored JPEGs of the frames `seqs` names, in its order, as
    /// [`FrameCache::stream_jpegs`] yields them.
    ///
    /// # Errors
    /// As [`FrameCache::stream_jpegs`].
    pub async fn load_jpegs(&self, timeline: &str, seqs: Seqs) -> Result<Vec<FrameJpeg>> {
        let (_, jpegs) = self.stream_jpegs(timeline, seqs).await?;
        jpegs.try_collect().await
    }
}
