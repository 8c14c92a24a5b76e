//! Overlay listings by stage and by name, from one origin listing each (used by the server).

use super::FrameCache;
use crate::error::Result;
use crate::layout;
use crate::metrics::TierCounters;
use std::collections::BTreeSet;

/// One stored overlay, as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayRef {
    /// Sequence number of the frame it belongs to.
    pub seq: u64,
    /// Overlay name (`{seq}_{name}.png`).
    pub name: String,
}

impl FrameCache {
    /// The `(job, stage)` pairs that hold at least one overlay of `timeline`, sorted.
    ///
    /// Cost: one recursive listing of the timeline's overlays at the origin.
    ///
    /// # Errors
    /// Invalid id or origin failure. Object names that are not canonical overlays are
    /// skipped and counted in [`crate::Stats::skipped_names`].
    pub async fn overlay_stages(&self, timeline: &str) -> Result<Vec<(String, String)>> {
        let prefix = layout::overlays_prefix(timeline)?;
        let listed = self.chain().origin().list(&prefix).await?;
        let mut stages = BTreeSet::new();
        for object in &listed {
            let parsed = object.key.get(prefix.len()..).and_then(|rest| {
                let mut parts = rest.splitn(3, '/');
                let (job, stage, file) = (parts.next()?, parts.next()?, parts.next()?);
                layout::validate_id("job id", job).ok()?;
                layout::validate_id("stage", stage).ok()?;
                layout::parse_overlay_name(file)?;
                Some((job.to_owned(), stage.to_owned()))
            });
            match parsed {
                Some(pair) => {
                    stages.insert(pair);
                }
                None => TierCounters::bump(&self.chain().metrics().skipped_names),
            }
        }
        Ok(stages.into_iter().collect())
    }

    /// Every overlay of a job's stage as `(seq, name)`, sorted by seq then name.
    ///
    /// Unlike [`FrameCache::list_overlay_frames`] this keeps the names, so a client can
    /// address each PNG without listing frame by frame. Cost: one listing of the stage.
    ///
    /// # Errors
    /// Invalid ids or origin failure; stray names are skipped and counted.
    pub async fn list_overlays(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
    ) -> Result<Vec<OverlayRef>> {
        let prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let listed = self.chain().origin().list(&prefix).await?;
        let mut refs: Vec<OverlayRef> = listed
            .iter()
            .filter_map(|o| {
                let parsed = o
                    .key
                    .get(prefix.len()..)
                    .and_then(layout::parse_overlay_name);
                if parsed.is_none() {
                    TierCounters::bump(&self.chain().metrics().skipped_names);
                }
                parsed.map(|(seq, name)| OverlayRef {
                    seq,
                    name: name.to_owned(),
                })
            })
            .collect();
        refs.sort();
        Ok(refs)
    }
}
