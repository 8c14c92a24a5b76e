//! Decoding frames through the decoded-frame tiers: a frame this machine has decoded before
//! is neither read as a JPEG nor decoded again.

use super::FrameCache;
use super::index::FrameEntry;
use super::read::Frame;
use crate::codec;
use crate::decoded::{DecodedKey, LoadOptions};
use crate::error::{Error, Result};
use crate::metrics::TierCounters;
use crate::pixels::Pixels;
use crate::tier::Source;

/// The frame of `entry` with `image`; the manifest's metadata only when `current`.
/// Frame versions whose blake3 a process remembers; past this it starts over (each entry is
/// about a hundred bytes, and a forgotten one costs one JPEG read from the local tiers).
const VERIFIED_LIMIT: usize = 1 << 20;

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

impl FrameCache {
    /// The blake3 this process read for the frame version under local key `local`.
    pub(super) fn verified_hash(&self, local: &str) -> Option<blake3::Hash> {
        self.verified
            .lock()
            .expect("verified hashes lock")
            .get(local)
            .copied()
    }

    /// Remembers the blake3 of the frame version under local key `local`.
    pub(super) fn remember_verified(&self, local: String, hash: blake3::Hash) {
        let mut verified = self.verified.lock().expect("verified hashes lock");
        if verified.len() >= VERIFIED_LIMIT {
            verified.clear();
        }
        verified.insert(local, hash);
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
        let local = crate::TieredCache::local_key(&entry.key, entry.version.as_ref());
        let listed = match &entry.version {
            // Known only once this process has read this version of the frame.
            Some(_) => self.verified_hash(&local),
            // No validator from this backend: the manifest is all there is.
            None => entry
                .meta
                .as_ref()
                .and_then(|m| blake3::Hash::from_hex(&m.blake3).ok()),
        };
        if let (Some(tiers), Some(hash)) = (&self.decoded, listed) {
            let current = entry
                .meta
                .as_ref()
                .is_some_and(|m| m.blake3 == hash.to_hex().as_str());
            let key = DecodedKey::new(&entry.key, hash, options.scale);
            if let Some(found) = tiers.memory_get(&key) {
                let image = found.pixels(options.access);
                return Ok((frame(entry, current, image), Source::Memory));
            }
            let tiers = tiers.clone();
            let on_disk = tokio::task::spawn_blocking(move || {
                tiers
                    .disk_get_blocking(&key)
                    .map(|found| found.pixels(options.access))
            })
            .await
            .map_err(|join| Error::task(format!("decoded read of {:?}", entry.key), join))?;
            if let Some(image) = on_disk {
                return Ok((frame(entry, current, image), Source::Disk));
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
        let _slot = self.codec_slot().await;
        let decoded = tokio::task::spawn_blocking(move || match tiers {
            Some(tiers) => {
                let dkey = DecodedKey::new(&key, fetched.blake3(), options.scale);
                let (found, answered) = tiers.get_or_decode_blocking(&dkey, &fetched.bytes)?;
                Ok((
                    found.pixels(options.access),
                    answered.unwrap_or(fetched.source),
                ))
            }
            None => {
                TierCounters::bump(&metrics.decodes);
                codec::decode_jpeg_scaled(&fetched.bytes, options.scale)
                    .map(|image| (image, fetched.source))
            }
        })
        .await
        .map_err(|join| Error::task(format!("decode of {:?}", entry.key), join))?;
        let (image, source) = decoded.map_err(|reason| Error::Decode {
            key: entry.key.clone(),
            reason,
        })?;
        Ok((frame(entry, current, image), source))
    }
}
