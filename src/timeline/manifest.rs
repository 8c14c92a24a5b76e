//! The manifest framecache writes beside a timeline's frames: the metadata JPEGs cannot hold
//! (chunk id, timestamp, perceptual hash), each frame's size and blake3, a generation and a
//! completeness flag; and the local copy of the last complete one, for offline loads.

use super::FrameCache;
use crate::error::Result;
use crate::layout;
use crate::metrics::TierCounters;
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
    pub(super) frames: Vec<FrameMeta>,
}

/// A manifest of the known format; anything else is logged and ignored.
pub(super) fn parse_manifest(key: &str, bytes: &[u8]) -> Option<Manifest> {
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
    /// Keeps a local copy of a complete manifest, once per generation and process.
    pub(super) async fn keep_manifest(&self, key: &str, generation: &str, bytes: Bytes) {
        {
            let mut kept = self.kept_manifests.lock().expect("kept manifests lock");
            if kept.get(key).is_some_and(|g| g == generation) {
                return;
            }
            kept.insert(key.to_owned(), generation.to_owned());
        }
        self.cache.put_local(key, bytes).await;
    }

    /// The origin's manifest, or its local copy when the origin fails.
    pub(super) async fn read_manifest(&self, timeline: &str) -> Result<Option<Manifest>> {
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
}
