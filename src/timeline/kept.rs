//! The last listing of each timeline, kept on this machine so that loads go on while the
//! origin is down, whoever wrote the timeline (with or without a manifest).
//!
//! It lives in the local tiers under `{frames prefix}\nlisting`, a key no object can have
//! (object keys hold no control characters), is rewritten when the listing changes and
//! touched on every load so eviction, which goes by recency, keeps it as long as the frames.

use super::FrameCache;
use super::index::{Index, TimelineStatus};
use crate::error::Result;
use crate::layout;
use bytes::Bytes;

fn kept_key(timeline: &str) -> Result<String> {
    Ok(format!("{}\nlisting", layout::frames_prefix(timeline)?))
}

impl FrameCache {
    /// Keeps `index` as this machine's last listing of `timeline`; a timeline that is gone
    /// at the origin forgets it, so an offline load never brings it back.
    pub(super) async fn keep_listing(&self, timeline: &str, index: &Index) {
        let Ok(key) = kept_key(timeline) else {
            return;
        };
        match index.status {
            TimelineStatus::Missing => {
                self.kept.lock().expect("kept listings lock").remove(&key);
                self.cache.invalidate_local(&key).await;
                return;
            }
            TimelineStatus::Partial { .. } => return,
            TimelineStatus::Complete { .. } | TimelineStatus::Unmanaged { .. } => {}
        }
        let Ok(json) = serde_json::to_vec(index) else {
            return;
        };
        let digest = blake3::hash(&json);
        let unchanged = self
            .kept
            .lock()
            .expect("kept listings lock")
            .insert(key.clone(), digest)
            == Some(digest);
        if unchanged && self.cache.local_source(&key, None).is_some() {
            self.cache.touch_local(&key).await;
        } else {
            self.cache.put_local(&key, Bytes::from(json)).await;
        }
    }

    /// This machine's last listing of `timeline`, if it kept one.
    pub(super) async fn kept_listing(&self, timeline: &str) -> Option<Index> {
        let key = kept_key(timeline).ok()?;
        let hit = self.cache.get_local(&key).await?;
        match parse_listing(&hit.bytes) {
            Ok(index) => Some(index),
            Err(e) => {
                tracing::warn!("{key:?}: unreadable kept listing ignored: {e}");
                None
            }
        }
    }
}

fn parse_listing(bytes: &[u8]) -> serde_json::Result<Index> {
    serde_json::from_slice(bytes)
}

/// Fuzz entry point ([`crate::fuzzing::kept_listing`]): a listing that parses comes back
/// equal from the JSON written for it.
pub(crate) fn fuzz_kept_listing(bytes: &[u8]) {
    if let Ok(index) = parse_listing(bytes) {
        let json = serde_json::to_vec(&index).expect("a listing serializes");
        let again = parse_listing(&json).expect("a listing written from a parsed one parses");
        assert_eq!(again.status, index.status);
        assert_eq!(again.entries.len(), index.entries.len());
    }
}
