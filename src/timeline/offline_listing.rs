//! The last listing of each timeline, kept on this machine so that loads go on while the
//! origin is down, whoever wrote the timeline (with or without a manifest).
//!
//! It lives in the local tiers in parts of [`KEPT_PART`] seqs, under
//! `{frames prefix}\nlisting.{part}`, beside a small head `{frames prefix}\nlisting` naming
//! the status and parts of the last whole listing (keys no object can have: object keys
//! hold no control characters). A whole listing rewrites the parts that changed; a read of
//! a range updates only the parts it touched, so offline reads of ranges work whether or
//! not the whole timeline was ever listed here. Parts are touched on every use, so
//! eviction, which goes by recency, keeps them as long as the frames.

use super::FrameCache;
use super::index::{FrameEntry, Index, TimelineStatus};
use crate::layout;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Seqs per kept part.
const KEPT_PART: u64 = 4096;

/// The head of a kept whole listing.
#[derive(Debug, Serialize, Deserialize)]
struct KeptHead {
    status: TimelineStatus,
    parts: Vec<u64>,
}

impl FrameCache {
    /// Keeps `index` as this machine's last listing of `timeline`; a timeline that is gone
    /// at the origin forgets it, so an offline load never brings it back.
    pub(super) async fn keep_listing(&self, timeline: &str, index: &Index) {
        let Ok(key) = layout::kept_listing_key(timeline) else {
            return;
        };
        match index.status {
            TimelineStatus::Missing => {
                let old: Option<KeptHead> = self.read_kept(&key).await;
                self.kept.remove(&key);
                self.cache.invalidate_local(&key).await;
                for part in old.map(|h| h.parts).unwrap_or_default() {
                    if let Ok(part_key) = layout::kept_listing_part_key(timeline, part) {
                        self.kept.remove(&part_key);
                        self.cache.invalidate_local(&part_key).await;
                    }
                }
                return;
            }
            TimelineStatus::Partial { .. } => return,
            TimelineStatus::Complete { .. } | TimelineStatus::Unmanaged { .. } => {}
        }
        let mut parts: BTreeMap<u64, Vec<&FrameEntry>> = BTreeMap::new();
        for entry in &index.entries {
            parts.entry(entry.seq / KEPT_PART).or_default().push(entry);
        }
        let head = KeptHead {
            status: index.status.clone(),
            parts: parts.keys().copied().collect(),
        };
        // The parts an older listing kept and this one has not must be emptied; unless this
        // process kept this very head last, which names the same parts.
        let same_head = serde_json::to_vec(&head)
            .is_ok_and(|json| self.kept.get(&key) == Some(blake3::hash(&json)));
        let old: Option<KeptHead> = if same_head {
            None
        } else {
            self.read_kept(&key).await
        };
        let gone = old
            .map(|h| h.parts)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !parts.contains_key(p));
        for part in gone {
            if let Ok(part_key) = layout::kept_listing_part_key(timeline, part) {
                self.keep(&part_key, &Vec::<FrameEntry>::new()).await;
            }
        }
        for (part, entries) in &parts {
            if let Ok(part_key) = layout::kept_listing_part_key(timeline, *part) {
                self.keep(&part_key, entries).await;
            }
        }
        self.keep(&key, &head).await;
    }

    /// Updates the kept parts touched by a read of some seqs: `found` are their entries as
    /// the origin has them now, `absent` the seqs it has not.
    pub(super) async fn keep_entries(&self, timeline: &str, found: &[FrameEntry], absent: &[u64]) {
        let mut touched: BTreeMap<u64, (Vec<&FrameEntry>, Vec<u64>)> = BTreeMap::new();
        for entry in found {
            touched
                .entry(entry.seq / KEPT_PART)
                .or_default()
                .0
                .push(entry);
        }
        for &seq in absent {
            touched.entry(seq / KEPT_PART).or_default().1.push(seq);
        }
        for (part, (found, absent)) in touched {
            let Ok(key) = layout::kept_listing_part_key(timeline, part) else {
                return;
            };
            let mut entries: BTreeMap<u64, FrameEntry> = self
                .read_kept::<Vec<FrameEntry>>(&key)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.seq, e))
                .collect();
            for entry in found {
                entries.insert(entry.seq, entry.clone());
            }
            for seq in absent {
                entries.remove(&seq);
            }
            let entries: Vec<FrameEntry> = entries.into_values().collect();
            self.keep(&key, &entries).await;
        }
    }

    /// This machine's last whole listing of `timeline`, if it kept one.
    pub(super) async fn kept_listing(&self, timeline: &str) -> Option<Index> {
        let head: KeptHead = self
            .read_kept(&layout::kept_listing_key(timeline).ok()?)
            .await?;
        let mut entries = Vec::new();
        for part in head.parts {
            let part: Vec<FrameEntry> = self
                .read_kept(&layout::kept_listing_part_key(timeline, part).ok()?)
                .await?;
            entries.extend(part);
        }
        Some(Index {
            entries,
            status: head.status,
        })
    }

    /// The kept entries of `seqs` this machine holds (whole listings and earlier reads of
    /// ranges alike).
    pub(super) async fn kept_entries(
        &self,
        timeline: &str,
        seqs: &BTreeSet<u64>,
    ) -> HashMap<u64, FrameEntry> {
        let parts: BTreeSet<u64> = seqs.iter().map(|s| s / KEPT_PART).collect();
        let mut out = HashMap::new();
        for part in parts {
            let Ok(key) = layout::kept_listing_part_key(timeline, part) else {
                break;
            };
            let entries: Vec<FrameEntry> = self.read_kept(&key).await.unwrap_or_default();
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| seqs.contains(&e.seq))
                    .map(|e| (e.seq, e)),
            );
        }
        out
    }

    /// Stores `value` under a kept key unless this process last stored the same there.
    async fn keep<T: Serialize + ?Sized>(&self, key: &str, value: &T) {
        let Ok(json) = serde_json::to_vec(value) else {
            return;
        };
        let digest = blake3::hash(&json);
        let unchanged = self.kept.replace(key.to_owned(), digest) == Some(digest);
        if unchanged && self.cache.local_source(key, None).is_some() {
            self.cache.touch_local(key).await;
            return;
        }
        // A new process: reading what is kept costs less than writing it again.
        if !unchanged
            && let Some(hit) = self.cache.get_local(key).await
            && hit.blake3.unwrap_or_else(|| blake3::hash(&hit.bytes)) == digest
        {
            self.cache.touch_local(key).await;
            return;
        }
        self.cache.put_local(key, Bytes::from(json)).await;
    }

    async fn read_kept<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let hit = self.cache.get_local(key).await?;
        match serde_json::from_slice(&hit.bytes) {
            Ok(value) => {
                // Remember what is there, so an unchanged listing is not written again.
                self.kept.insert_if_absent(key, || blake3::hash(&hit.bytes));
                Some(value)
            }
            Err(e) => {
                tracing::warn!("{key:?}: unreadable kept listing ignored: {e}");
                None
            }
        }
    }
}

/// Fuzz entry point ([`crate::fuzzing::kept_listing`]): a kept head or part that parses
/// comes back equal from the JSON written for it.
#[cfg(feature = "test-hooks")]
pub(crate) fn fuzz_kept_listing(bytes: &[u8]) {
    if let Ok(head) = serde_json::from_slice::<KeptHead>(bytes) {
        let json = serde_json::to_vec(&head).expect("a kept head serializes");
        let again: KeptHead = serde_json::from_slice(&json).expect("a written head parses");
        assert_eq!(again.parts, head.parts);
        assert_eq!(again.status, head.status);
    }
    if let Ok(part) = serde_json::from_slice::<Vec<FrameEntry>>(bytes) {
        let json = serde_json::to_vec(&part).expect("a kept part serializes");
        let again: Vec<FrameEntry> = serde_json::from_slice(&json).expect("a written part parses");
        assert_eq!(again.len(), part.len());
    }
}
