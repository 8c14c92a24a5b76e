//! What a timeline holds: its listing joined with its manifest, status, and the store's
//! timeline ids.

use super::FrameCache;
use super::manifest::{Entries, FrameMeta, Head};
use super::options::PageStart;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::{ObjectInfo, Version};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// What a timeline's objects say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum TimelineStatus {
    /// No frames.
    Missing,
    /// Written by framecache and complete.
    Complete {
        /// Frames.
        frames: usize,
        /// The generation written by the last `cache_frames`.
        generation: String,
    },
    /// Written by framecache, but its writer has not finished (or died, failed, or gave way
    /// to other writers).
    Partial {
        /// Frames the manifest lists.
        expected: usize,
        /// Frames present.
        present: usize,
    },
    /// Frames without a manifest (written by the Python module): loaded with its defaults.
    Unmanaged {
        /// Frames.
        frames: usize,
    },
}

/// A frame found by listing, with the manifest's metadata when it is current.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameEntry {
    /// Sequence number.
    pub seq: u64,
    /// Object key.
    pub key: String,
    /// Size reported by the listing.
    pub size: u64,
    /// The version the listing reported; local copies of any other version are not served.
    pub version: Option<Version>,
    /// Manifest metadata, when the manifest lists this frame.
    pub meta: Option<FrameMeta>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Index {
    pub(super) entries: Vec<FrameEntry>,
    pub(super) status: TimelineStatus,
}

impl FrameCache {
    /// Whether the timeline has frames: one small request, not a listing of the timeline.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn exists(&self, timeline: &str) -> Result<bool> {
        let origin = self.cache.origin();
        if origin.exists(&layout::manifest_key(timeline)?).await? {
            return Ok(true);
        }
        origin.has_any(&layout::frames_prefix(timeline)?).await
    }

    /// Completeness and provenance of a timeline.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn status(&self, timeline: &str) -> Result<TimelineStatus> {
        Ok(self.index(timeline).await?.status)
    }

    /// The frames of a timeline, sorted by seq, with their current metadata.
    ///
    /// # Errors
    /// Invalid id, or the origin failed.
    pub async fn list_frames(&self, timeline: &str) -> Result<Vec<FrameEntry>> {
        Ok(self.index(timeline).await?.entries)
    }

    /// The origin's index of a timeline, or, when the origin fails, the last one this
    /// machine saw (see [`FrameCache::keep_listing`]).
    pub(super) async fn index(&self, timeline: &str) -> Result<Index> {
        let index = self.origin_index(timeline).await;
        self.settle_index(timeline, index).await
    }

    /// Keeps an index the origin gave, or stands in the kept one for an origin's failure.
    pub(super) async fn settle_index(&self, timeline: &str, index: Result<Index>) -> Result<Index> {
        match index {
            Ok(index) => {
                self.keep_listing(timeline, &index).await;
                Ok(index)
            }
            // An object over its limit is the origin's answer, not its absence.
            Err(err @ Error::ObjectTooLarge { .. }) => Err(err),
            Err(err) => {
                let Some(index) = self.kept_listing(timeline).await else {
                    return Err(err);
                };
                tracing::warn!(
                    "origin failed ({err}); loading {timeline} from the last listing seen on \
                     this machine ({} frames)",
                    index.entries.len()
                );
                TierCounters::bump(&self.cache.metrics().offline_loads);
                Ok(index)
            }
        }
    }

    /// Lists the timeline and reads its manifest from the origin (the head, then every
    /// chunk: a listing is proportional to the timeline anyway).
    pub(super) async fn origin_index(&self, timeline: &str) -> Result<Index> {
        let prefix = layout::frames_prefix(timeline)?;
        let origin = self.cache.origin();
        let (listed, head) = futures::try_join!(origin.list(&prefix), self.read_head(timeline))?;
        self.join_index(timeline, listed, head).await
    }

    /// The index of a listing and a manifest head read together.
    pub(super) async fn join_index(
        &self,
        timeline: &str,
        listed: Vec<ObjectInfo>,
        head: Option<Head>,
    ) -> Result<Index> {
        let prefix = layout::frames_prefix(timeline)?;
        let metas = match &head {
            Some(head) if head.complete => self.readable_metas(timeline, head).await?,
            _ => Vec::new(),
        };
        let mut metas: HashMap<u64, FrameMeta> = metas.into_iter().map(|f| (f.seq, f)).collect();
        let mut entries = Vec::with_capacity(listed.len());
        for object in listed {
            if layout::name_under(&prefix, &object.key).is_some_and(layout::is_metadata_name) {
                continue;
            }
            let Some(seq) = layout::frame_seq_under(&prefix, &object.key) else {
                tracing::debug!("skipping {:?}: not a canonical frame name", object.key);
                TierCounters::bump(&self.cache.metrics().skipped_names);
                continue;
            };
            // An entry whose size is not the object's describes other bytes (the module,
            // or a writer whose manifest entry was lost, rewrote the frame): the frame is
            // the module's, with its defaults. (Same-size rewrites are caught by the
            // blake3 when the frame is read.)
            let meta = metas.remove(&seq).filter(|m| m.size == object.size);
            entries.push(FrameEntry {
                seq,
                key: object.key,
                size: object.size,
                version: object.version,
                meta,
            });
        }
        entries.sort_by_key(|e| e.seq);
        let status = match head {
            Some(head) if head.complete => {
                // Entries without an object: frames removed under a complete manifest (a
                // `clear` or a rebuild racing an append, or by hand). Only an incomplete
                // manifest (a rebuild at work, or one that died) makes a timeline partial;
                // these frames are simply not there.
                if !metas.is_empty() {
                    tracing::debug!(
                        "{timeline}: {} manifest entries name no object; left out",
                        metas.len()
                    );
                }
                TimelineStatus::Complete {
                    frames: entries.len(),
                    generation: head.generation,
                }
            }
            // An incomplete manifest has no entries yet: every frame present counts.
            Some(head) => TimelineStatus::Partial {
                expected: head.count,
                present: entries.len().min(head.count),
            },
            None if entries.is_empty() => TimelineStatus::Missing,
            None => TimelineStatus::Unmanaged {
                frames: entries.len(),
            },
        };
        Ok(Index { entries, status })
    }

    /// Every manifest entry of a complete `head` that can be read: a chunk gone from the
    /// origin or unreadable (removed under the head by a `clear` or a rebuild racing an
    /// append) leaves its frames without metadata, with a warning and a count, rather than
    /// failing the load.
    pub(super) async fn readable_metas(
        &self,
        timeline: &str,
        head: &Head,
    ) -> Result<Vec<FrameMeta>> {
        let Entries::Chunked(chunks) = &head.entries else {
            return self.all_metas(timeline, head).await;
        };
        let chunks: &[_] = chunks;
        let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(0..chunks.len())
            .map(|i| async move {
                let chunk = &chunks[i];
                match self.chunk(timeline, chunk).await {
                    Err(e @ (Error::Vanished { .. } | Error::Decode { .. })) => {
                        tracing::warn!(
                            "{timeline}: manifest chunk unreadable ({e}); its {} frames load \
                             without metadata",
                            chunk.count
                        );
                        TierCounters::bump(&self.cache.metrics().unreadable_manifests);
                        Ok(Arc::new(Vec::new()))
                    }
                    other => other,
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok(parts.iter().flat_map(|p| p.iter().cloned()).collect())
    }

    /// The complete index of a timeline, or the reason it cannot be loaded.
    pub(super) async fn loadable(&self, timeline: &str) -> Result<Vec<FrameEntry>> {
        let index = self.index(timeline).await?;
        if let TimelineStatus::Partial { expected, present } = index.status {
            return Err(Error::Incomplete {
                timeline: timeline.to_owned(),
                expected,
                present,
            });
        }
        Ok(index.entries)
    }

    /// Ids of every timeline in the store, sorted: [`FrameCache::timelines_page`] after
    /// page, so memory follows the number of timelines, not of objects.
    ///
    /// # Errors
    /// Origin failure.
    pub async fn timelines(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .timelines_page(after.as_deref(), TIMELINES_PAGE)
                .await?;
            ids.extend(page.timelines);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Up to `limit` timeline ids after `after` (a cursor: the last id of the page before),
    /// in key order, and the cursor of the next page if there may be more: one delimiter
    /// listing of the timelines' prefix, never of their objects.
    ///
    /// # Errors
    /// Origin failure.
    pub async fn timelines_page(&self, after: Option<&str>, limit: usize) -> Result<TimelinePage> {
        let prefix = format!("{}/", layout::CACHE_PREFIX);
        let mut names = self
            .cache
            .origin()
            .list_dirs(&prefix, after, limit.saturating_add(1))
            .await?;
        let more = names.len() > limit;
        names.truncate(limit);
        // The page's last name, valid or not, so a page of stray names still advances.
        let next = more.then(|| names.last().cloned()).flatten();
        let mut timelines = Vec::with_capacity(names.len());
        for name in names {
            if layout::validate_id("timeline id", &name).is_ok() {
                timelines.push(name);
            } else {
                TierCounters::bump(&self.cache.metrics().skipped_names);
            }
        }
        Ok(TimelinePage { timelines, next })
    }
}

/// One page of a timeline's index, from [`FrameCache::list_frames_page`].
#[derive(Debug, Clone)]
pub struct FramePage {
    /// The frames from the page's start on, at most `limit` of them, sorted by seq.
    pub frames: Vec<FrameEntry>,
    /// Frames in the whole timeline.
    pub total: usize,
    /// The position of the page's first frame in the timeline, in seq order (the first
    /// frame's is 0); `total` when the page is empty.
    pub offset: usize,
    /// The `from` of the next page; `None` on the last.
    pub next: Option<u64>,
}

/// Timelines per listing page of [`FrameCache::timelines`].
const TIMELINES_PAGE: usize = 1000;

/// One page of the store's timeline ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePage {
    /// Ids, in key order.
    pub timelines: Vec<String>,
    /// The cursor of the next page (`after`), when there may be more.
    pub next: Option<String>,
}

impl FrameCache {
    /// One page of a timeline's index: up to `limit` frames from `start` on. With a
    /// complete manifest it is read from the chunks covering the page (no listing; the
    /// entries carry no version); otherwise from a listing (or the one kept here while the
    /// origin is down), as [`FrameCache::list_frames`].
    ///
    /// # Errors
    /// Invalid id, or the origin failed with nothing kept here.
    pub async fn list_frames_page(
        &self,
        timeline: &str,
        start: PageStart,
        limit: usize,
    ) -> Result<FramePage> {
        self.page(timeline, start, limit).await
    }

    async fn page(&self, timeline: &str, start: PageStart, limit: usize) -> Result<FramePage> {
        if let Ok(Some(head)) = self.read_head(timeline).await
            && head.complete
        {
            let (offset, mut metas) = self
                .metas_page(timeline, &head, start, limit.saturating_add(1))
                .await?;
            let next = (metas.len() > limit).then(|| metas[limit].seq);
            metas.truncate(limit);
            let frames = metas
                .into_iter()
                .map(|meta| {
                    Ok(FrameEntry {
                        seq: meta.seq,
                        key: layout::frame_key(timeline, meta.seq)?,
                        size: meta.size,
                        version: None,
                        meta: Some(meta),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(FramePage {
                frames,
                total: head.count,
                offset,
                next,
            });
        }
        let entries = self.index(timeline).await?.entries;
        let total = entries.len();
        let offset = match start {
            PageStart::Seq(from) => entries.partition_point(|e| e.seq < from),
            PageStart::Position(at) => at.min(total),
        };
        let mut frames: Vec<FrameEntry> = entries
            .into_iter()
            .skip(offset)
            .take(limit.saturating_add(1))
            .collect();
        let next = (frames.len() > limit).then(|| frames[limit].seq);
        frames.truncate(limit);
        Ok(FramePage {
            frames,
            total,
            offset,
            next,
        })
    }
}
