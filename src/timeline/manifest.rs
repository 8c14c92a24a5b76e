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
//!
//! This file is the format (types, parsing, serializing); reading and writing it at the
//! origin is `manifest_io.rs`.

use crate::layout;
use crate::tier::Limit;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
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
pub(super) const CHUNK_LIMIT: Limit = Limit::new(4 << 20, "the manifest chunk limit");
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
    /// The chunks as stored ([`FrameCache::put_chunks`](super::FrameCache::put_chunks));
    /// empty while incomplete.
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
    pub(super) fn chunks_meeting(
        chunks: &[ChunkRef],
        first: u64,
        last: u64,
    ) -> std::ops::Range<usize> {
        let start = chunks.partition_point(|c| c.last < first);
        let end = chunks.partition_point(|c| c.first <= last);
        start..end.max(start)
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
#[cfg(feature = "test-hooks")]
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
