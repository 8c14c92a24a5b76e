//! Decoding frames through the decoded-frame tiers: a frame this machine has decoded before
//! is neither read as a JPEG nor decoded again, in this process or a new one.

use super::FrameCache;
use super::index::FrameEntry;
use super::options::LoadOptions;
use super::read::Frame;
use crate::codec;
use crate::decoded::DecodedKey;
use crate::error::{Error, Result};
use crate::metrics::TierCounters;
use crate::pixels::Pixels;
use crate::tier::Source;

/// Frame versions whose blake3 a process remembers (each entry is a few hundred bytes, and
/// a forgotten one costs one JPEG header read from the local tiers).
pub(super) const VERIFIED_LIMIT: u64 = 1 << 20;

/// The frame of `entry` with `image`; the manifest's metadata only when `current`.
fn frame(entry: FrameEntry, current: bool, image: Pixels) -> Frame {
    let meta = entry.meta.filter(|_| current);
    Frame {
        seq: entry.seq,
        chunk_id: meta.as_ref().map_or(0, |m| m.chunk_id),
        timestamp: meta.as_ref().map_or(0.0, |m| m.timestamp),
        perceptual_hash: meta.map(|m| m.perceptual_hash).unwrap_or_default(),
        image,
    }
}

/// Whether the manifest's metadata of `entry` describes the JPEG of blake3 `hash`.
fn is_current(entry: &FrameEntry, hash: &blake3::Hash) -> bool {
    entry
        .meta
        .as_ref()
        .is_some_and(|m| m.blake3 == hash.to_hex().as_str())
}

impl FrameCache {
    /// The blake3 this process read for the frame version under local key `local`.
    pub(super) fn verified_hash(&self, local: &str) -> Option<blake3::Hash> {
        self.verified.get(local)
    }

    /// Remembers the blake3 of the frame version under local key `local`.
    pub(super) fn remember_verified(&self, local: String, hash: blake3::Hash) {
        self.verified.insert(local, hash);
    }

    /// One frame, decoded as `options` say: from the decoded tiers when they hold it under
    /// the JPEG's blake3, else read, decoded once per machine and kept.
    pub(super) async fn fetch_decoded(
        &self,
        entry: FrameEntry,
        options: LoadOptions,
    ) -> Result<(Frame, Source)> {
        // The manifest names the JPEG's blake3, so the pixels can be found before the JPEG
        // is read: the manifest (read from the origin on each load) is what revalidates.
        let local = crate::chain::TieredCache::local_key(&entry.key, entry.version.as_ref());
        let listed = match &entry.version {
            // Known once this process has read this version of the frame (or found its
            // pixels by the hash below).
            Some(_) => self.verified_hash(&local),
            // No validator from this backend: the manifest is all there is.
            None => entry
                .meta
                .as_ref()
                .and_then(|m| blake3::Hash::from_hex(&m.blake3).ok()),
        };
        if let Some(tiers) = &self.decoded {
            if let Some(hash) = listed {
                let key = DecodedKey::new(&entry.key, hash, options.scale);
                if let Some(found) = tiers.memory_get(&key) {
                    let image = found.pixels(options.access);
                    let current = is_current(&entry, &hash);
                    return Ok((frame(entry, current, image), Source::Memory));
                }
            }
            // A version this process has not read yet: the JPEG's disk entry records its
            // blake3 in its header, which names the pixels without reading the JPEG (a new
            // process's warm load reads no JPEG at all). That field is not verified here (the
            // checksum covers the payload): a damaged one names no entry and costs a miss,
            // after which the JPEG is read, verified and decoded as below.
            let peek = match (listed, &entry.version) {
                (None, Some(_)) if tiers.has_disk() => self.cache.disk().cloned(),
                _ => None,
            };
            if listed.is_some() || peek.is_some() {
                let (tiers, name, scale) = (tiers.clone(), entry.key.clone(), options.scale);
                let jpeg = local.clone();
                let on_disk = tokio::task::spawn_blocking(move || {
                    let hash = listed.or_else(|| peek?.peek_blake3_blocking(&jpeg))?;
                    let key = DecodedKey::new(&name, hash, scale);
                    let (found, source) = tiers.get_blocking(&key)?;
                    Some((found.pixels(options.access), hash, source))
                })
                .await
                .map_err(|join| Error::task(format!("decoded read of {:?}", entry.key), join))?;
                if let Some((image, hash, source)) = on_disk {
                    if listed.is_none() {
                        // The pixels decoded from that hash's JPEG are on disk, verified:
                        // later loads of this version find them in memory by it.
                        self.remember_verified(local, hash);
                    }
                    let current = is_current(&entry, &hash);
                    return Ok((frame(entry, current, image), source));
                }
            }
        }
        let fetched = self.fetch(&entry).await?;
        if entry.version.is_some() {
            self.remember_verified(local, fetched.blake3());
        }
        let current = fetched.current;
        let key = entry.key.clone();
        let tiers = self.decoded.clone();
        let metrics = self.cache.metrics().clone();
        let max_pixels = self.max_frame_pixels;
        let _slot = self.codec_slot().await;
        let decoded = tokio::task::spawn_blocking(move || match tiers {
            Some(tiers) => {
                let dkey = DecodedKey::new(&key, fetched.blake3(), options.scale);
                let (found, answered) =
                    tiers.get_or_decode_blocking(&dkey, &fetched.bytes, max_pixels)?;
                Ok((
                    found.pixels(options.access),
                    answered.unwrap_or(fetched.source),
                ))
            }
            None => {
                TierCounters::bump(&metrics.decodes);
                codec::decode_jpeg_limited(&fetched.bytes, options.scale, max_pixels)
                    .map(|image| (image, fetched.source))
            }
        })
        .await
        .map_err(|join| Error::task(format!("decode of {:?}", entry.key), join))?;
        match decoded {
            Ok((image, source)) => Ok((frame(entry, current, image), source)),
            Err(err) => {
                // The decoded tiers kept nothing; the JPEG goes too, so no tier holds a frame
                // known to be bad and a repaired object is read again.
                self.cache.invalidate_local(&entry.key).await;
                Err(Error::decode(&entry.key, err))
            }
        }
    }
}
