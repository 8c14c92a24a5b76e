//! Thumbnails: a frame decoded at 1/2, 1/4 or 1/8 of its size through the DCT, encoded again
//! and kept in the local tiers beside the frame it was made from.
//!
//! A thumbnail's local key is `{frame key}\nt:{scale}:{frame blake3}`: a version slot of the
//! frame's key whose tag (`t:`) no origin version uses (those are `e:` and `m:`, see
//! [`crate::tier::Version`]), so it is never served for the frame; it names the bytes it was
//! made from, so a rewritten frame never returns an old thumbnail; and whatever drops the
//! frame's local copies (every version of its key, or its timeline's prefix) drops it too.
//! Thumbnails never reach the origin: they are derived, and cost one small decode to remake.

use super::FrameCache;
use crate::chain::TieredCache;
use crate::codec::{self, Scale};
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::Source;
use bytes::Bytes;

/// JPEG quality of thumbnails: small files, and the artefacts do not show at that size.
pub const THUMBNAIL_QUALITY: u8 = 80;

/// One frame's thumbnail, from [`FrameCache::frame_thumbnail`].
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    /// The JPEG.
    pub jpeg: Bytes,
    /// The local tier that held it; `None` when this call made it.
    pub source: Option<Source>,
    /// The blake3 of the frame's JPEG it was made from (what versions it).
    pub frame_blake3: blake3::Hash,
}

/// The local key of `frame_key`'s thumbnail at `scale`, made from the JPEG hashing to `jpeg`.
pub(super) fn thumbnail_key(frame_key: &str, scale: Scale, jpeg: &blake3::Hash) -> String {
    layout::thumbnail_key(frame_key, scale.denominator(), jpeg)
}

impl FrameCache {
    /// One frame's thumbnail at `scale` (half, quarter or eighth of the size, rounded up):
    /// from the local tiers when this version of the frame was thumbnailed before, else
    /// decoded at that scale through the DCT, encoded at [`THUMBNAIL_QUALITY`] and kept in
    /// memory and on disk. `None` when the timeline has no such frame.
    ///
    /// Costs one stat at the origin (the frame's current version), like
    /// [`FrameCache::frame_jpeg`]; a thumbnail made before from the same version is found
    /// without reading the frame again.
    ///
    /// # Errors
    /// [`Error::Invalid`] for [`Scale::Full`] or an invalid id; the origin's errors;
    /// [`Error::Decode`] or [`Error::Encode`] when the frame's bytes do not make one.
    pub async fn frame_thumbnail(
        &self,
        timeline: &str,
        seq: u64,
        scale: Scale,
    ) -> Result<Option<Thumbnail>> {
        if scale == Scale::Full {
            return Err(Error::Invalid {
                what: "thumbnail scale",
                value: "1".into(),
                rule: "must be 2, 4 or 8".into(),
            });
        }
        let Some(entry) = self.frame_entry(timeline, seq, false).await? else {
            return Ok(None);
        };
        let local = TieredCache::local_key(&entry.key, entry.version.as_ref());
        if entry.version.is_some()
            && let Some(hash) = self.verified_hash(&local)
            && let Some(hit) = self
                .cache
                .get_local(&thumbnail_key(&entry.key, scale, &hash))
                .await
        {
            return Ok(Some(Thumbnail {
                jpeg: hit.bytes,
                source: Some(hit.source),
                frame_blake3: hash,
            }));
        }
        let frame = match self.get_listed(&entry).await {
            Ok(hit) => hit,
            Err(Error::Vanished { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let hash = frame.blake3.unwrap_or_else(|| blake3::hash(&frame.bytes));
        if entry.version.is_some() {
            self.remember_verified(local, hash);
        }
        let key = thumbnail_key(&entry.key, scale, &hash);
        if let Some(hit) = self.cache.get_local(&key).await {
            return Ok(Some(Thumbnail {
                jpeg: hit.bytes,
                source: Some(hit.source),
                frame_blake3: hash,
            }));
        }
        let metrics = self.cache.metrics().clone();
        let max_pixels = self.max_frame_pixels;
        let made = {
            let _slot = self.codec_slot().await;
            let bytes = frame.bytes;
            tokio::task::spawn_blocking(move || {
                let pixels =
                    codec::decode_jpeg_limited(&bytes, scale, max_pixels).map_err(Made::Decode)?;
                TierCounters::bump(&metrics.decodes);
                let jpeg = codec::encode_jpeg(&pixels, THUMBNAIL_QUALITY).map_err(Made::Encode)?;
                TierCounters::bump(&metrics.thumbnails);
                Ok(Bytes::from(jpeg))
            })
            .await
            .map_err(|join| Error::task(format!("thumbnail of {:?}", entry.key), join))?
        };
        let jpeg = made.map_err(|failed| match failed {
            Made::Decode(err) => Error::decode(&entry.key, err),
            Made::Encode(reason) => Error::Encode { seq, reason },
        })?;
        self.cache.put_local(&key, jpeg.clone()).await;
        Ok(Some(Thumbnail {
            jpeg,
            source: None,
            frame_blake3: hash,
        }))
    }
}

/// Which half of making a thumbnail failed.
enum Made {
    Decode(codec::DecodeError),
    Encode(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_keys_are_version_slots_no_origin_version_uses() {
        let hash = blake3::hash(b"jpeg");
        let key = thumbnail_key("cache/timelines/t/frames/5.jpg", Scale::Quarter, &hash);
        let (frame, tag) = key.split_once('\n').unwrap();
        assert_eq!(frame, "cache/timelines/t/frames/5.jpg");
        assert!(tag.starts_with("t:4:"), "{tag}");
        assert!(!tag.starts_with("e:") && !tag.starts_with("m:"));
        assert_ne!(
            key,
            thumbnail_key("cache/timelines/t/frames/5.jpg", Scale::Half, &hash)
        );
    }
}
