//! The manifest framecache writes beside a timeline's frames: the metadata JPEGs cannot hold
//! (chunk id, timestamp, perceptual hash), each frame's size and blake3, a generation and a
//! completeness flag; and the local copy of the last complete one, for offline loads.

use super::FrameCache;
use crate::error::Result;
use crate::layout;
use crate::metrics::{Metrics, TierCounters};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Version of the manifest's JSON layout.
pub(super) const MANIFEST_FORMAT: u32 = 1;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub(super) format: u32,
    pub(super) generation: String,
    pub(super) complete: bool,
    /// Set by a writer that failed after storing its incomplete manifest: other writers of
    /// the timeline need not give way to it. Absent in manifests written before it existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) abandoned: bool,
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

/// A manifest of the known format; anything else is logged, counted in
/// [`crate::Stats::unreadable_manifests`] and ignored (the timeline then loads without its
/// metadata, as one written by the Python module).
pub(super) fn parse_manifest(key: &str, bytes: &[u8], metrics: &Metrics) -> Option<Manifest> {
    let parsed = parse_manifest_quiet(bytes);
    if let Err(reason) = &parsed {
        tracing::warn!("{key}: manifest ignored, its frames load without metadata: {reason}");
        TierCounters::bump(&metrics.unreadable_manifests);
    }
    parsed.ok()
}

/// Fuzz entry point ([`crate::fuzzing::manifest`]): a manifest that parses comes back
/// equal from the JSON written for it.
pub(crate) fn fuzz_manifest(bytes: &[u8]) {
    if let Ok(parsed) = parse_manifest_quiet(bytes) {
        let again = parse_manifest_quiet(&manifest_bytes(&parsed))
            .expect("a manifest written from a parsed one parses");
        assert_eq!(again.frames, parsed.frames);
        assert_eq!(again.generation, parsed.generation);
    }
}

/// A manifest of the known format, or why not.
fn parse_manifest_quiet(bytes: &[u8]) -> std::result::Result<Manifest, String> {
    match serde_json::from_slice::<Manifest>(bytes) {
        Ok(m) if m.format == MANIFEST_FORMAT => Ok(m),
        Ok(m) => Err(format!("unknown manifest format {}", m.format)),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

pub(super) fn manifest_bytes(manifest: &Manifest) -> Bytes {
    Bytes::from(serde_json::to_vec(manifest).expect("a manifest always serializes"))
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

impl FrameCache {
    /// The origin's manifest of `timeline`, if it has a readable one.
    pub(super) async fn read_manifest(&self, timeline: &str) -> Result<Option<Manifest>> {
        let key = layout::manifest_key(timeline)?;
        let bytes = self.cache.origin().get(&key).await?;
        Ok(bytes.and_then(|b| parse_manifest(&key, &b, self.cache.metrics())))
    }
}
