//! Finishing a rebuild (`WriteMode::Replace`) while other writers may be rebuilding the same
//! timeline. (Appends, the default, never remove frames: see `append.rs`.)
//!
//! Blob storage offers no transactions or conditional writes to build on, so writers agree
//! through the manifest: each stores its own incomplete one (a fresh generation) before its
//! frames, and a finishing writer reads it again before every batch of changes it makes.
//! The rule is that the writer that finishes last wins; see [`FrameCache::finish_timeline`].

use super::FrameCache;
use super::manifest::{HEAD_LIMIT, Manifest, ManifestHead, StoredHead, head_bytes, manifest_bytes};
use crate::error::{Error, Result};
use crate::layout;
use crate::tier::{ObjectInfo, Version};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{HashMap, HashSet};

/// Rounds of list-and-repair before a writer gives up on a timeline others keep changing.
const FINISH_ROUNDS: usize = 4;

/// A frame this writer stored, kept until the write returns in case another writer
/// replaces it meanwhile and it must be written again.
pub(super) struct Written {
    pub(super) seq: u64,
    pub(super) key: String,
    pub(super) jpeg: Bytes,
    pub(super) version: Option<Version>,
}

impl Written {
    /// Whether the listed object is still the one this writer stored: same version where
    /// both sides report one of the same kind, else the same size.
    fn is_at(&self, listed: &ObjectInfo) -> bool {
        fn kind(v: &Version) -> Option<&str> {
            v.tag.split_once(':').map(|(k, _)| k)
        }
        match (&self.version, &listed.version) {
            (Some(ours), Some(now)) if kind(ours) == kind(now) => ours.tag == now.tag,
            _ => listed.size == self.jpeg.len() as u64,
        }
    }
}

/// Whose manifest the origin holds, as a finishing writer sees it.
enum Owner {
    /// This writer's.
    Ours,
    /// Another writer's, complete or abandoned: that writer is done with the timeline.
    Done,
    /// Another writer's, incomplete: that writer stored it after this one did and has not
    /// finished.
    Writing(String),
    /// None: the timeline was removed.
    Gone,
}

impl FrameCache {
    /// Makes the timeline `written` and publishes `manifest` (complete) unless another writer
    /// is ahead of this one. In rounds, each listing the timeline, then (unless this writer
    /// has published and nothing changed: done) reading the manifest at the origin:
    /// - another writer's *incomplete* manifest, before this one published: that writer
    ///   stored it after this one began and has not finished, so this write fails with
    ///   [`Error::Superseded`] and changes nothing more;
    /// - another writer's manifest (or none) after this one published: another writer, or
    ///   a `clear`, has the timeline now, and this write has succeeded;
    /// - otherwise (its own, or another writer's complete or abandoned one) this writer is
    ///   the last at work: it lists the timeline, writes again any of its frames another
    ///   writer replaced or removed, removes every frame it did not write, and publishes.
    ///
    /// The round after publishing lists once more and repairs what a losing writer stored
    /// meanwhile; a write that still finds changes after [`FINISH_ROUNDS`] rounds (the
    /// first included) un-publishes its manifest, best effort, and fails with
    /// [`Error::Contended`]. The manifest is read again before each batch of changes and
    /// before publishing, so a writer that has lost stops within one batch.
    pub(super) async fn finish_timeline(
        &self,
        timeline: &str,
        prefix: &str,
        manifest_key: &str,
        manifest: &Manifest,
        mut written: Vec<Written>,
    ) -> Result<()> {
        let generation = manifest.generation.as_str();
        let ours: HashSet<u64> = written.iter().map(|w| w.seq).collect();
        let mut published = false;
        let head = manifest_bytes(manifest);
        for _ in 0..FINISH_ROUNDS {
            let listed: HashMap<u64, ObjectInfo> = self
                .cache
                .origin()
                .list(prefix)
                .await?
                .into_iter()
                .filter_map(|o| layout::frame_seq_under(prefix, &o.key).map(|seq| (seq, o)))
                .collect();
            let replaced: Vec<usize> = (0..written.len())
                .filter(|&i| {
                    !listed
                        .get(&written[i].seq)
                        .is_some_and(|o| written[i].is_at(o))
                })
                .collect();
            let extra: Vec<String> = listed
                .into_iter()
                .filter(|(seq, _)| !ours.contains(seq))
                .map(|(_, o)| o.key)
                .collect();
            let repairing = !replaced.is_empty();
            let changed = repairing || !extra.is_empty();
            if published && !changed {
                return Ok(());
            }
            // After the listing, so nothing the listing missed is overwritten unseen.
            if let Some(end) = self
                .check_owner(
                    timeline,
                    manifest_key,
                    generation,
                    published.then_some(&head),
                )
                .await?
            {
                return end;
            }
            if !replaced.is_empty() {
                tracing::warn!(
                    "timeline {timeline}: {} frames replaced or removed by another writer; \
                     writing them again",
                    replaced.len()
                );
                let versions: Vec<(usize, Option<Version>)> = stream::iter(replaced)
                    .map(|i| {
                        let frame = &written[i];
                        async move {
                            let version = self
                                .cache
                                .put_version(&frame.key, frame.jpeg.clone())
                                .await?;
                            Ok::<_, Error>((i, version))
                        }
                    })
                    .buffer_unordered(self.concurrency)
                    .try_collect()
                    .await?;
                for (i, version) in versions {
                    written[i].version = version;
                }
            }
            if !extra.is_empty() {
                // Frames of an earlier, longer version, or of another writer.
                if repairing
                    && let Some(end) = self
                        .check_owner(
                            timeline,
                            manifest_key,
                            generation,
                            published.then_some(&head),
                        )
                        .await?
                {
                    return end;
                }
                stream::iter(extra)
                    .map(|key| async move { self.cache.remove(&key).await })
                    .buffer_unordered(self.concurrency)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
            if !published {
                if changed
                    && let Some(end) = self
                        .check_owner(
                            timeline,
                            manifest_key,
                            generation,
                            published.then_some(&head),
                        )
                        .await?
                {
                    return end;
                }
                self.cache.origin().put(manifest_key, head.clone()).await?;
                published = true;
            }
        }
        self.abandon(manifest_key, generation).await;
        Err(Error::Contended {
            timeline: timeline.to_owned(),
            rounds: FINISH_ROUNDS,
        })
    }

    /// Reads the manifest and says whether this writer must stop, and with what result.
    /// `published`: the head this writer published, if it has.
    async fn check_owner(
        &self,
        timeline: &str,
        manifest_key: &str,
        generation: &str,
        published: Option<&Bytes>,
    ) -> Result<Option<Result<()>>> {
        Ok(
            match (
                self.manifest_owner(manifest_key, generation, published)
                    .await?,
                published.is_some(),
            ) {
                (Owner::Ours, _) => None,
                // Another writer stored its manifest after this one published (or the timeline
                // was cleared): the timeline is no longer this write's to repair.
                (_, true) => Some(Ok(())),
                (Owner::Writing(other), false) => Some(Err(Error::Superseded {
                    timeline: timeline.to_owned(),
                    other,
                })),
                (Owner::Done | Owner::Gone, false) => None,
            },
        )
    }

    /// Whose manifest the origin holds. Once this writer has `published` its head, a head
    /// of its generation with other bytes is an append's (appends keep the generation they
    /// merge into): another writer has the timeline now, and its frames must not be removed.
    async fn manifest_owner(
        &self,
        manifest_key: &str,
        generation: &str,
        published: Option<&Bytes>,
    ) -> Result<Owner> {
        let Some(bytes) = self.cache.origin().get(manifest_key, HEAD_LIMIT).await? else {
            return Ok(Owner::Gone);
        };
        if published.is_some_and(|p| *p != bytes) {
            return Ok(Owner::Done);
        }
        Ok(match serde_json::from_slice::<ManifestHead>(&bytes) {
            Ok(head) if head.generation == generation => Owner::Ours,
            Ok(head) if head.complete || head.abandoned => Owner::Done,
            Ok(head) => Owner::Writing(head.generation),
            Err(e) => {
                // Nobody can be waiting on a manifest nobody can read.
                tracing::warn!("{manifest_key}: unreadable manifest replaced: {e}");
                Owner::Done
            }
        })
    }

    /// Marks this writer's manifest, if it is still at the origin, incomplete and abandoned:
    /// readers see an incomplete timeline, and other writers need not give way to it.
    /// Best effort: a failure is logged, and the manifest stays incomplete or complete as
    /// it was.
    pub(super) async fn abandon(&self, manifest_key: &str, generation: &str) {
        let origin = self.cache.origin();
        let mut manifest = match origin.get(manifest_key, HEAD_LIMIT).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<StoredHead>(&bytes) {
                Ok(m) if m.generation == generation => m,
                _ => return,
            },
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot mark {manifest_key} abandoned: {e}");
                return;
            }
        };
        manifest.complete = false;
        manifest.abandoned = true;
        if let Err(e) = origin.put(manifest_key, head_bytes(&manifest)).await {
            tracing::warn!("cannot mark {manifest_key} abandoned: {e}");
        }
    }
}
