//! Debug overlays: PNGs per job, stage and frame, stored as given.

use super::FrameCache;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::{Limit, ObjectInfo};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::BTreeMap;

pub(super) const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

impl FrameCache {
    /// Stores debug overlays (PNG bytes, stored as given) for one frame of a job's stage.
    ///
    /// # Errors
    /// An invalid id or name, or bytes that are not a PNG (nothing written); origin failure.
    pub async fn save_overlays(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
        overlays: &BTreeMap<String, Bytes>,
    ) -> Result<usize> {
        layout::overlay_stage_prefix(timeline, job, stage)?;
        let mut writes = Vec::with_capacity(overlays.len());
        for (name, png) in overlays {
            let key = layout::overlay_key(timeline, job, stage, seq, name)?;
            if !png.starts_with(PNG_SIGNATURE) {
                return Err(Error::Invalid {
                    what: "overlay",
                    value: name.clone(),
                    rule: "must be PNG bytes (no PNG signature found)".into(),
                });
            }
            writes.push((key, png.clone()));
        }
        let n = writes.len();
        stream::iter(writes)
            .map(|(key, png)| async move { self.cache.put(&key, png).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(n)
    }

    /// The overlays of one frame (`name -> PNG bytes`), or `None` when there are none.
    ///
    /// Lists only this frame's names (`{seq}_` prefix), not the whole stage.
    ///
    /// # Errors
    /// Invalid ids or origin failure.
    pub async fn load_overlays(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        seq: u64,
    ) -> Result<Option<BTreeMap<String, Bytes>>> {
        let stage_prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let listed = self
            .cache
            .origin()
            .list(&format!("{stage_prefix}{seq}_"))
            .await?;
        let wanted: Vec<(String, ObjectInfo)> = listed
            .into_iter()
            .filter_map(|o| match layout::overlay_under(&stage_prefix, &o.key) {
                Some((s, name)) if s == seq => Some((name.to_owned(), o.clone())),
                _ => {
                    TierCounters::bump(&self.cache.metrics().skipped_names);
                    None
                }
            })
            .collect();
        let loaded: Vec<Option<(String, Bytes)>> = stream::iter(wanted)
            .map(|(name, object)| async move {
                // Refused from its listed size before any of it is read.
                Limit::object(self.cache.max_object_size()).check(&object.key, object.size)?;
                let hit = self
                    .cache
                    .get_at(&object.key, object.version.as_ref())
                    .await?;
                Ok::<_, Error>(hit.map(|h| (name, h.bytes)))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let overlays: BTreeMap<String, Bytes> = loaded.into_iter().flatten().collect();
        Ok((!overlays.is_empty()).then_some(overlays))
    }

    /// Sorted seqs of the frames that have overlays in a job's stage.
    ///
    /// # Errors
    /// Invalid ids or origin failure.
    pub async fn list_overlay_frames(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
    ) -> Result<Vec<u64>> {
        let prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let listed = self.cache.origin().list(&prefix).await?;
        let mut seqs: Vec<u64> = listed
            .iter()
            .filter_map(|o| {
                let parsed = layout::overlay_under(&prefix, &o.key);
                if parsed.is_none() {
                    TierCounters::bump(&self.cache.metrics().skipped_names);
                }
                parsed.map(|(seq, _)| seq)
            })
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }
}
