//! The manifest framecache writes beside a timeline's frames: the metadata JPEGs cannot hold
//! (chunk id, timestamp, perceptual hash), each frame's size and blake3, a generation and a
//! completeness flag.
//!
//! Stored form (format 3): `manifest.json` is a small head (generation, flags, frame count
//! and one reference per chunk: its seq span, entry count, blake3 and location), and the
//! frame entries live in chunks of at most [`CHUNK_FRAMES`] under
//! `manifest.d/{dir}/{n}.json`. The references are sorted by seq and their spans never
//! overlap. A rebuild writes its chunks under its generation; an append writes the chunks it
//! changes under a fresh directory (see `append.rs`), so every chunk object is written once
//! and never changes, and this process keeps chunks it parsed by key. A read of a few frames
//! reads the head and the chunks covering them, never the whole index, however long the
//! timeline. Formats 1 (every entry inline) and 2 (chunks always under the generation) are
//! still read.

use super::FrameCache;
use super::options::PageStart;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::Limit;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Version of the manifest's JSON layout this build writes.
pub(super) const MANIFEST_FORMAT: u32 = 3;
/// The first layout, every frame inline in `manifest.json`; still read.
const INLINE_FORMAT: u32 = 1;
/// The second layout, chunk `n` always at `manifest.d/{generation}/{n}.json`; still read.
const GENERATION_CHUNKS_FORMAT: u32 = 2;
/// Frame entries per chunk: one chunk of JSON is ~130 KB and parses in about a millisecond.
pub(super) const CHUNK_FRAMES: usize = 1000;
/// The largest `manifest.json` read: a head lists one reference of ~150 bytes per chunk
/// (8 MiB: tens of millions of frames); a format 1 manifest, every entry inline, up to
/// ~50,000 frames.
pub(super) const HEAD_LIMIT: Limit = Limit::new(8 << 20, "the manifest head limit");
/// The largest manifest chunk read: [`CHUNK_FRAMES`] entries of ~130 bytes, with room.
const CHUNK_LIMIT: Limit = Limit::new(4 << 20, "the manifest chunk limit");
/// Parsed chunks this process keeps (about 0.2 MB each parsed).
pub(super) const KEPT_CHUNKS: u64 = 256;

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
    pub(super) fn pending(
        seq: u64,
        chunk_id: u64,
        timestamp: f64,
        perceptual_hash: &str,
    ) -> FrameMeta {
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

/// A reference from the head to one chunk of frame entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ChunkRef {
    /// Lowest seq in the chunk.
    pub(super) first: u64,
    /// Highest seq in the chunk.
    pub(super) last: u64,
    /// Entries in the chunk.
    pub(super) count: usize,
    /// Hex blake3 of the chunk's bytes: a copy that does not match is not used.
    pub(super) blake3: String,
    /// Where the chunk is: `manifest.d/{dir}/{n}.json` (format 3; filled in from the
    /// generation and the reference's position when a format 2 head is read).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) dir: String,
    #[serde(default)]
    pub(super) n: usize,
}

/// A manifest as a writer builds it: every entry in memory, and once stored, the chunks.
#[derive(Debug, Clone)]
pub(super) struct Manifest {
    pub(super) generation: String,
    pub(super) complete: bool,
    pub(super) frames: Vec<FrameMeta>,
    /// The chunks as stored ([`FrameCache::put_chunks`]); empty while incomplete.
    pub(super) chunks: Vec<ChunkRef>,
}

/// `manifest.json` as stored, of either format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredHead {
    pub(super) format: u32,
    pub(super) generation: String,
    pub(super) complete: bool,
    /// Set by a writer that failed after storing its incomplete manifest: other writers of
    /// the timeline need not give way to it. Absent in manifests written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) abandoned: bool,
    /// Frames the manifest lists (format 2).
    #[serde(default)]
    pub(super) count: usize,
    /// Format 2: the chunks, in seq order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) chunks: Vec<ChunkRef>,
    /// Format 1: every entry inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) frames: Vec<FrameMeta>,
}

/// What a writer needs of whichever manifest is at the origin, of any format.
#[derive(Debug, Deserialize)]
pub(super) struct ManifestHead {
    pub(super) generation: String,
    pub(super) complete: bool,
    #[serde(default)]
    pub(super) abandoned: bool,
}

/// A parsed manifest head: where to find each frame's entry.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) generation: String,
    pub(super) complete: bool,
    /// Frames the manifest lists.
    pub(super) count: usize,
    pub(super) entries: Entries,
}

#[derive(Debug, Clone)]
pub(super) enum Entries {
    /// Format 1, sorted by seq.
    Inline(Arc<Vec<FrameMeta>>),
    /// Format 2.
    Chunked(Arc<Vec<ChunkRef>>),
}

/// A manifest of a known format; anything else is logged and ignored.
pub(super) fn parse_head(key: &str, bytes: &[u8]) -> Option<Head> {
    let stored = match serde_json::from_slice::<StoredHead>(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{key}: unreadable manifest ignored: {e}");
            return None;
        }
    };
    let entries = match stored.format {
        INLINE_FORMAT => {
            let mut frames = stored.frames;
            frames.sort_by_key(|f| f.seq);
            Entries::Inline(Arc::new(frames))
        }
        GENERATION_CHUNKS_FORMAT => {
            // Chunk keys are built from the generation: it must be a valid id.
            if let Err(e) = layout::validate_id("manifest generation", &stored.generation) {
                tracing::warn!("{key}: manifest ignored: {e}");
                return None;
            }
            let mut chunks = stored.chunks;
            for (n, chunk) in chunks.iter_mut().enumerate() {
                chunk.dir = stored.generation.clone();
                chunk.n = n;
            }
            Entries::Chunked(Arc::new(chunks))
        }
        MANIFEST_FORMAT => {
            // Chunk keys are built from each reference's directory: each must be a valid id,
            // and the spans sorted and apart, as every reader's binary search assumes.
            let sorted = stored
                .chunks
                .windows(2)
                .all(|w| w[0].last < w[1].first && w[0].first <= w[0].last);
            if let Some(e) = stored
                .chunks
                .iter()
                .find_map(|c| layout::validate_id("manifest chunk directory", &c.dir).err())
            {
                tracing::warn!("{key}: manifest ignored: {e}");
                return None;
            }
            if !sorted || stored.chunks.last().is_some_and(|c| c.first > c.last) {
                tracing::warn!("{key}: manifest ignored: chunk spans out of order");
                return None;
            }
            // A chunk holds at most CHUNK_FRAMES entries, and no more than its span has seqs.
            if stored.chunks.iter().any(|c| {
                c.count > CHUNK_FRAMES || (c.count as u64).saturating_sub(1) > c.last - c.first
            }) {
                tracing::warn!("{key}: manifest ignored: a chunk count out of range");
                return None;
            }
            Entries::Chunked(Arc::new(stored.chunks))
        }
        other => {
            tracing::warn!("{key}: unknown manifest format {other}");
            return None;
        }
    };
    let count = match &entries {
        Entries::Inline(frames) => frames.len(),
        Entries::Chunked(_) => stored.count,
    };
    Some(Head {
        generation: stored.generation,
        complete: stored.complete,
        count,
        entries,
    })
}

/// The head of `manifest` as stored: its chunks once stored, none while incomplete.
pub(super) fn manifest_bytes(manifest: &Manifest) -> Bytes {
    head_bytes(&StoredHead {
        format: MANIFEST_FORMAT,
        generation: manifest.generation.clone(),
        complete: manifest.complete,
        abandoned: false,
        count: manifest.frames.len(),
        chunks: manifest.chunks.clone(),
        frames: Vec::new(),
    })
}

pub(super) fn head_bytes(head: &StoredHead) -> Bytes {
    Bytes::from(serde_json::to_vec(head).expect("a manifest always serializes"))
}

pub(super) fn new_generation() -> String {
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

impl Head {
    /// Indexes of the chunks whose span meets `first..=last`.
    fn chunks_meeting(chunks: &[ChunkRef], first: u64, last: u64) -> std::ops::Range<usize> {
        let start = chunks.partition_point(|c| c.last < first);
        let end = chunks.partition_point(|c| c.first <= last);
        start..end.max(start)
    }
}

impl FrameCache {
    /// The origin's manifest head of `timeline`, if it has a readable one: one small GET.
    pub(super) async fn read_head(&self, timeline: &str) -> Result<Option<Head>> {
        let key = layout::manifest_key(timeline)?;
        let bytes = self.cache.origin().get(&key, HEAD_LIMIT).await?;
        Ok(bytes.and_then(|b| {
            let head = parse_head(&key, &b);
            if head.is_none() {
                // The timeline then loads without its metadata, as one the Python module
                // wrote: never silently.
                TierCounters::bump(&self.cache.metrics().unreadable_manifests);
            }
            head
        }))
    }

    /// The manifest entries of `head` for the seqs within `first..=last`, sorted: only the
    /// chunks covering them are read, each once per process.
    ///
    /// # Errors
    /// A chunk gone from the origin ([`Error::Vanished`]: the timeline was rewritten since
    /// the head was read), or one that does not match the head's blake3, or the origin's.
    pub(super) async fn metas_between(
        &self,
        timeline: &str,
        head: &Head,
        first: u64,
        last: u64,
    ) -> Result<Vec<FrameMeta>> {
        let in_span = |f: &&FrameMeta| (first..=last).contains(&f.seq);
        match &head.entries {
            Entries::Inline(frames) => Ok(frames.iter().filter(in_span).cloned().collect()),
            Entries::Chunked(chunks) => {
                let wanted = Head::chunks_meeting(chunks, first, last);
                let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(wanted)
                    .map(|n| self.chunk(timeline, &chunks[n]))
                    .buffered(self.concurrency)
                    .try_collect()
                    .await?;
                Ok(parts
                    .iter()
                    .flat_map(|p| p.iter().filter(in_span).cloned())
                    .collect())
            }
        }
    }

    /// Every manifest entry of `head`, sorted by seq.
    pub(super) async fn all_metas(&self, timeline: &str, head: &Head) -> Result<Vec<FrameMeta>> {
        self.metas_between(timeline, head, 0, u64::MAX).await
    }

    /// The manifest entries of `head` for `seqs` (those it lists), reading only the chunks
    /// that could hold them.
    pub(super) async fn metas_of(
        &self,
        timeline: &str,
        head: &Head,
        seqs: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, FrameMeta>> {
        let listed = |f: &&FrameMeta| seqs.contains(&f.seq);
        Ok(match &head.entries {
            Entries::Inline(frames) => frames
                .iter()
                .filter(listed)
                .map(|f| (f.seq, f.clone()))
                .collect(),
            Entries::Chunked(chunks) => {
                let wanted: BTreeSet<usize> = seqs
                    .iter()
                    .filter_map(|&seq| {
                        let n = chunks.partition_point(|c| c.last < seq);
                        chunks.get(n).filter(|c| c.first <= seq).map(|_| n)
                    })
                    .collect();
                let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(wanted)
                    .map(|n| self.chunk(timeline, &chunks[n]))
                    .buffered(self.concurrency)
                    .try_collect()
                    .await?;
                parts
                    .iter()
                    .flat_map(|p| p.iter().filter(listed).map(|f| (f.seq, f.clone())))
                    .collect()
            }
        })
    }

    /// Up to `n` manifest entries of `head` from seq `from` on, in order; the chunks are
    /// read one at a time, as far as needed.
    pub(super) async fn metas_from(
        &self,
        timeline: &str,
        head: &Head,
        from: u64,
        n: usize,
    ) -> Result<Vec<FrameMeta>> {
        Ok(self
            .metas_page(timeline, head, PageStart::Seq(from), n)
            .await?
            .1)
    }

    /// Up to `n` manifest entries of `head` from `start` on, in order, and the position (in
    /// seq order, from 0) of the first of them. Positions come from the chunk counts the
    /// head lists, so only the chunks holding the page are read, however far in it starts.
    pub(super) async fn metas_page(
        &self,
        timeline: &str,
        head: &Head,
        start: PageStart,
        n: usize,
    ) -> Result<(usize, Vec<FrameMeta>)> {
        match &head.entries {
            Entries::Inline(frames) => {
                let at = match start {
                    PageStart::Seq(from) => frames.partition_point(|f| f.seq < from),
                    PageStart::Position(at) => at.min(frames.len()),
                };
                Ok((at, frames[at..].iter().take(n).cloned().collect()))
            }
            Entries::Chunked(chunks) => {
                let mut out = Vec::with_capacity(n.min(CHUNK_FRAMES));
                // Entries of the chunks passed over, and the page's first position.
                let mut before = 0usize;
                let mut first = None;
                for chunk in chunks.iter() {
                    if out.len() >= n {
                        break;
                    }
                    let skip_chunk = match start {
                        PageStart::Seq(from) => chunk.last < from,
                        PageStart::Position(at) => before.saturating_add(chunk.count) <= at,
                    };
                    if skip_chunk {
                        before = before.saturating_add(chunk.count);
                        continue;
                    }
                    let part = self.chunk(timeline, chunk).await?;
                    let skip = match start {
                        PageStart::Seq(from) => part.partition_point(|f| f.seq < from),
                        PageStart::Position(at) => at.saturating_sub(before).min(part.len()),
                    };
                    first.get_or_insert(before.saturating_add(skip));
                    let rest = n - out.len();
                    out.extend(part.iter().skip(skip).take(rest).cloned());
                    before = before.saturating_add(part.len());
                }
                Ok((first.unwrap_or(before), out))
            }
        }
    }

    /// The chunk `reference` names: from this process's memo, else read through the tiers
    /// and checked against the head's blake3 (a local copy that does not match is dropped
    /// and the origin asked).
    pub(super) async fn chunk(
        &self,
        timeline: &str,
        reference: &ChunkRef,
    ) -> Result<Arc<Vec<FrameMeta>>> {
        let key = layout::manifest_chunk_key(timeline, &reference.dir, reference.n)?;
        if let Some(parsed) = self.chunks.get(&key) {
            return Ok(parsed);
        }
        let mut hit = self.cache.get_within(&key, None, Some(CHUNK_LIMIT)).await?;
        for attempt in 0..2 {
            let Some(found) = hit else {
                return Err(Error::Vanished { key });
            };
            let hash = found.blake3.unwrap_or_else(|| blake3::hash(&found.bytes));
            if hash.to_hex().as_str() == reference.blake3 {
                let parsed: Vec<FrameMeta> =
                    serde_json::from_slice(&found.bytes).map_err(|e| Error::Decode {
                        key: key.clone(),
                        reason: format!("manifest chunk: {e}"),
                    })?;
                // Binary searches over the head assume every entry lies within its span.
                if parsed
                    .iter()
                    .any(|f| f.seq < reference.first || f.seq > reference.last)
                {
                    return Err(Error::Decode {
                        key,
                        reason: "manifest chunk: an entry outside the span its manifest lists"
                            .into(),
                    });
                }
                let parsed = Arc::new(parsed);
                self.chunks.insert(key, parsed.clone());
                return Ok(parsed);
            }
            if attempt == 0 && found.source != crate::tier::Source::Origin {
                self.cache.invalidate_local(&key).await;
                hit = self.cache.get_within(&key, None, Some(CHUNK_LIMIT)).await?;
                continue;
            }
            break;
        }
        Err(Error::Decode {
            key,
            reason: "manifest chunk does not match the blake3 its manifest lists".into(),
        })
    }

    /// Stores `manifest`'s entries as chunks under its generation and records them in it.
    pub(super) async fn put_chunks(&self, timeline: &str, manifest: &mut Manifest) -> Result<()> {
        let parts: Vec<&[FrameMeta]> = manifest.frames.chunks(CHUNK_FRAMES).collect();
        manifest.chunks = self
            .put_chunk_parts(timeline, &manifest.generation, &parts)
            .await?;
        Ok(())
    }

    /// Stores each of `parts` (sorted entries) as chunk `n` under `manifest.d/{dir}/`;
    /// returns their references, in order.
    pub(super) async fn put_chunk_parts(
        &self,
        timeline: &str,
        dir: &str,
        parts: &[&[FrameMeta]],
    ) -> Result<Vec<ChunkRef>> {
        let mut refs = Vec::new();
        let mut puts = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            let bytes = Bytes::from(serde_json::to_vec(part).expect("entries always serialize"));
            refs.push(ChunkRef {
                first: part.first().map_or(0, |f| f.seq),
                last: part.last().map_or(0, |f| f.seq),
                count: part.len(),
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                dir: dir.to_owned(),
                n,
            });
            puts.push((layout::manifest_chunk_key(timeline, dir, n)?, bytes));
        }
        stream::iter(puts)
            .map(|(key, bytes)| async move { self.cache.origin().put(&key, bytes).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(refs)
    }

    /// Removes the chunk directories `dirs` (best effort) except those `manifest.json`
    /// references now. Called by a rebuild, once published, with the directories of the
    /// manifest it replaced.
    pub(super) async fn drop_chunk_dirs(&self, timeline: &str, dirs: BTreeSet<String>) {
        let Ok(prefix) = layout::manifest_chunks_prefix(timeline) else {
            return;
        };
        let kept: BTreeSet<String> = match self.read_head(timeline).await {
            Ok(Some(head)) => head.dirs(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                tracing::warn!("cannot read the manifest of {timeline}: {e}");
                return;
            }
        };
        let origin = self.cache.origin();
        for dir in dirs.difference(&kept) {
            // Directories of format 1 generations were never checked as ids.
            if layout::validate_id("manifest chunk directory", dir).is_err() {
                continue;
            }
            if let Err(e) = origin.remove_prefix(&format!("{prefix}{dir}/")).await {
                tracing::warn!("cannot remove old manifest chunks of {timeline}: {e}");
            }
        }
    }
}

impl Head {
    /// The chunk directories this head references.
    pub(super) fn dirs(&self) -> BTreeSet<String> {
        match &self.entries {
            Entries::Inline(_) => BTreeSet::new(),
            Entries::Chunked(chunks) => chunks.iter().map(|c| c.dir.clone()).collect(),
        }
    }
}

/// Fuzz entry point ([`crate::fuzzing::manifest`]): a head that parses comes back with the
/// same generation, count and chunks from the JSON written for it; a chunk's entries parse
/// and serialize back to the same number of entries.
pub(crate) fn fuzz_manifest(bytes: &[u8]) {
    if let Ok(stored) = serde_json::from_slice::<StoredHead>(bytes) {
        let _ = parse_head("fuzz", bytes);
        let again: StoredHead =
            serde_json::from_slice(&head_bytes(&stored)).expect("a written head parses");
        assert_eq!(again.generation, stored.generation);
        assert_eq!(again.count, stored.count);
        assert_eq!(again.chunks.len(), stored.chunks.len());
        assert_eq!(again.frames, stored.frames);
    }
    if let Ok(chunk) = serde_json::from_slice::<Vec<FrameMeta>>(bytes) {
        let json = serde_json::to_vec(&chunk).expect("a chunk serializes");
        let again: Vec<FrameMeta> = serde_json::from_slice(&json).expect("a written chunk parses");
        assert_eq!(again, chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: u64, last: u64) -> ChunkRef {
        ChunkRef {
            first,
            last,
            count: 0,
            blake3: String::new(),
            dir: "d".into(),
            n: 0,
        }
    }

    #[test]
    fn chunks_meeting_a_span_are_only_those_overlapping_it() {
        let chunks = [chunk(0, 9), chunk(10, 19), chunk(30, 39)];
        assert_eq!(Head::chunks_meeting(&chunks, 5, 12), 0..2);
        assert_eq!(Head::chunks_meeting(&chunks, 20, 29), 2..2);
        assert_eq!(Head::chunks_meeting(&chunks, 35, 100), 2..3);
        assert_eq!(Head::chunks_meeting(&chunks, 40, 50), 3..3);
        assert_eq!(Head::chunks_meeting(&chunks, 0, u64::MAX), 0..3);
    }

    #[test]
    fn both_formats_parse_and_a_bad_generation_is_ignored() {
        let inline = br#"{"format":1,"generation":"g","complete":true,"frames":[
            {"seq":2,"chunk_id":0,"timestamp":0.0,"perceptual_hash":"","size":1,"blake3":"x"},
            {"seq":1,"chunk_id":0,"timestamp":0.0,"perceptual_hash":"","size":1,"blake3":"x"}]}"#;
        let head = parse_head("k", inline).unwrap();
        assert_eq!(head.count, 2);
        let chunked = br#"{"format":2,"generation":"g","complete":true,"count":5,"chunks":[]}"#;
        assert_eq!(parse_head("k", chunked).unwrap().count, 5);
        let hostile = br#"{"format":2,"generation":"../x","complete":true,"count":5}"#;
        assert!(parse_head("k", hostile).is_none());
        assert!(parse_head("k", br#"{"format":4,"generation":"g","complete":true}"#).is_none());
    }

    #[test]
    fn format_3_chunk_counts_beyond_their_span_or_chunk_size_are_rejected() {
        let head = |count: &str, last: u64| {
            format!(
                r#"{{"format":3,"generation":"g","complete":true,"count":1,"chunks":[
                {{"first":0,"last":{last},"count":{count},"blake3":"x","dir":"d"}}]}}"#
            )
        };
        assert!(parse_head("k", head("1", 0).as_bytes()).is_some());
        assert!(parse_head("k", head("1000", 5000).as_bytes()).is_some());
        assert!(parse_head("k", head("2", 0).as_bytes()).is_none());
        assert!(parse_head("k", head("1001", 5000).as_bytes()).is_none());
        assert!(parse_head("k", head("18446744073709551615", u64::MAX).as_bytes()).is_none());
    }

    #[test]
    fn format_2_chunks_are_located_by_generation_and_format_3_by_their_reference() {
        let two = br#"{"format":2,"generation":"g","complete":true,"count":2,"chunks":[
            {"first":0,"last":0,"count":1,"blake3":"x"},{"first":1,"last":1,"count":1,"blake3":"y"}]}"#;
        let head = parse_head("k", two).unwrap();
        let Entries::Chunked(chunks) = &head.entries else {
            panic!("chunked")
        };
        assert_eq!((chunks[1].dir.as_str(), chunks[1].n), ("g", 1));
        let three = br#"{"format":3,"generation":"g","complete":true,"count":2,"chunks":[
            {"first":0,"last":0,"count":1,"blake3":"x","dir":"a1","n":0},
            {"first":1,"last":1,"count":1,"blake3":"y","dir":"b2","n":3}]}"#;
        let head = parse_head("k", three).unwrap();
        assert_eq!(
            head.dirs(),
            BTreeSet::from(["a1".to_owned(), "b2".to_owned()])
        );
        // A location that is not an id, or spans that overlap, make the head unusable.
        let hostile = br#"{"format":3,"generation":"g","complete":true,"count":1,"chunks":[
            {"first":0,"last":0,"count":1,"blake3":"x","dir":"../../x","n":0}]}"#;
        assert!(parse_head("k", hostile).is_none());
        let overlapping = br#"{"format":3,"generation":"g","complete":true,"count":2,"chunks":[
            {"first":0,"last":5,"count":1,"blake3":"x","dir":"a","n":0},
            {"first":5,"last":9,"count":1,"blake3":"y","dir":"b","n":0}]}"#;
        assert!(parse_head("k", overlapping).is_none());
    }
}
