//! Overlay listings: a timeline's stages, and a stage's overlays a page at a time (used by
//! the server): no call lists more than one page of the origin.

use super::FrameCache;
use crate::error::Result;
use crate::layout;
use crate::metrics::TierCounters;
use futures::{StreamExt, TryStreamExt, stream};

/// The most `(job, stage)` pairs [`FrameCache::overlay_stages`] lists.
pub const MAX_OVERLAY_STAGES: usize = 256;

/// One stored overlay, as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayRef {
    /// Sequence number of the frame it belongs to.
    pub seq: u64,
    /// Overlay name (`{seq}_{name}.png`).
    pub name: String,
}

impl FrameCache {
    /// The `(job, stage)` pairs that hold at least one object of `timeline`'s overlays,
    /// sorted; at most 256 (the first in key order).
    ///
    /// Cost: delimiter listings of the jobs and of each job's stages, and one listing of
    /// at most one object per stage, never a listing of the overlays themselves: bounded
    /// in memory and requests by the number of stages, however many overlays they hold.
    ///
    /// # Errors
    /// Invalid id or origin failure. Job and stage names that are not valid ids are
    /// skipped and counted in [`crate::Stats::skipped_names`].
    pub async fn overlay_stages(&self, timeline: &str) -> Result<Vec<(String, String)>> {
        let prefix = layout::overlays_prefix(timeline)?;
        let origin = self.chain().origin();
        let valid = |what, name: &str| {
            let ok = layout::validate_id(what, name).is_ok();
            if !ok {
                TierCounters::bump(&self.chain().metrics().skipped_names);
            }
            ok
        };
        let mut candidates = Vec::new();
        for job in origin.list_dirs(&prefix, None, MAX_OVERLAY_STAGES).await? {
            if !valid("job id", &job) {
                continue;
            }
            let left = MAX_OVERLAY_STAGES - candidates.len();
            for stage in origin
                .list_dirs(&format!("{prefix}{job}/"), None, left)
                .await?
            {
                if valid("stage", &stage) {
                    candidates.push((job.clone(), stage));
                }
            }
            if candidates.len() >= MAX_OVERLAY_STAGES {
                break;
            }
        }
        // A directory can outlive its objects on a filesystem origin.
        let held: Vec<Option<(String, String)>> = stream::iter(candidates)
            .map(|(job, stage)| {
                let stage_prefix = format!("{prefix}{job}/{stage}/");
                async move {
                    let any = origin.has_any(&stage_prefix).await?;
                    Ok::<_, crate::error::Error>(any.then_some((job, stage)))
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut stages: Vec<(String, String)> = held.into_iter().flatten().collect();
        stages.sort();
        Ok(stages)
    }

    /// One page of a job's stage's overlays as `(seq, name)`: up to `limit` names from
    /// after `after` (the `next` of the page before; the first page when `None`), in the
    /// key order of their names (`{seq}_{name}.png`, so seqs follow their decimal text,
    /// not their value), each page sorted by seq then name. One frame's overlays are
    /// contiguous in that order, though a page may end inside them. Cost: one listing page
    /// at the origin, whatever the stage holds.
    ///
    /// # Errors
    /// Invalid ids or origin failure; stray names are skipped and counted (they still take
    /// their place on the page, so a page of them still advances).
    pub async fn list_overlays_page(
        &self,
        timeline: &str,
        job: &str,
        stage: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<OverlayPage> {
        let prefix = layout::overlay_stage_prefix(timeline, job, stage)?;
        let page = self
            .chain()
            .origin()
            .list_page(&prefix, after, limit)
            .await?;
        let mut overlays: Vec<OverlayRef> = page
            .objects
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
        overlays.sort();
        Ok(OverlayPage {
            overlays,
            next: page.end,
        })
    }
}

/// One page of a stage's overlays, from [`FrameCache::list_overlays_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPage {
    /// The page's overlays, sorted by seq then name.
    pub overlays: Vec<OverlayRef>,
    /// The cursor of the next page (`after`), when there may be more.
    pub next: Option<String>,
}
