//! Base64 forms for the UI, as the Python module returns them.

use super::FrameCache;
use super::read::Frame;
use crate::codec;
use crate::error::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default JPEG quality of [`frames_to_b64`], as the Python module.
pub const DEFAULT_B64_QUALITY: u8 = 75;

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

impl FrameCache {
    /// Every frame as `{seq, timestamp, jpeg_b64}` with the stored JPEG bytes (no re-encode).
    ///
    /// # Errors
    /// As [`FrameCache::load_frames`], without decoding.
    pub async fn load_frames_b64(&self, timeline: &str) -> Result<Vec<FrameB64>> {
        let (_, jpegs) = self.stream_jpegs(timeline, super::Seqs::All).await?;
        jpegs
            .map_ok(|f| FrameB64 {
                seq: f.seq,
                timestamp: f.timestamp,
                jpeg_b64: B64.encode(&f.jpeg),
            })
            .try_collect()
            .await
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
}
