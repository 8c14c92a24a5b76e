//! Adding frame entries to a timeline's manifest without rewriting it: what a write that
//! keeps the other frames (the default, [`super::WriteMode::Merge`]) does once its JPEGs are
//! stored.
//!
//! The head's chunk references stay sorted and apart. An append reads the chunks whose span
//! holds one of its seqs (and the chunk just before its first seq when both fit in one
//! chunk, so appends in seq order fill chunks instead of adding one reference each), merges
//! its entries into them (its own win per seq), stores the result as new chunks under a
//! fresh directory and writes a head that references them in place of the chunks it read.
//! Chunks are never changed or removed by an append, so a reader holding the old head still
//! finds every chunk it names. An append onto the end of a timeline of any length costs one
//! head read, at most one chunk read, one chunk write and one head write, and one more head
//! read on an origin without conditional writes.
//!
//! Concurrent appenders: where the origin honours conditional writes (probed once per
//! [`FrameCache`]), the head is written with `If-Match` on the ETag read, and a refused write
//! starts the round again from the head now stored. Elsewhere the head is read back after
//! writing it; if the entries of this append are gone (another appender's head write, based
//! on the head before this one, replaced it) the append is merged again into the head read
//! back, in at most [`APPEND_ROUNDS`] rounds. A head written by another appender after that
//! read back can still drop this append's entries: its frames then load with the module's
//! defaults (their JPEGs are at the origin regardless). An append whose conditional writes
//! keep being refused, or whose entries keep being dropped, fails with
//! [`Error::Contended`] after its rounds (with jittered backoff) instead of returning as if
//! its entries were in. A head this build cannot read is never replaced by an append.
//!
//! Over 400 lines because the append is one protocol (read, merge, conditional write, read
//! back, retry) best read in one place; the chunk arithmetic it uses is in `append_chunks.rs`.

use super::FrameCache;
use super::append_chunks::{split_runs, touched_chunks};
use super::manifest::{
    ChunkRef, Entries, FrameMeta, HEAD_LIMIT, Head, MANIFEST_FORMAT, StoredHead, head_bytes,
    new_generation, parse_head,
};
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::{PutCondition, PutOutcome, Version};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Rounds of merge, write and read back (no conditional writes) before an append whose
/// entries keep being replaced fails with [`Error::Contended`].
pub(super) const APPEND_ROUNDS: usize = 8;

/// Refused conditional head writes before an append fails with [`Error::Contended`]: each
/// refusal means another appender wrote the head meanwhile.
const REFUSALS: usize = 10;

/// The error of an append whose entries could not be made to stick: its frames are stored
/// (their JPEGs are at the origin), their metadata may be missing; writing again restores it.
fn contended(timeline: &str, entries: &[FrameMeta], rounds: usize) -> Error {
    tracing::warn!(
        "{timeline}: the manifest kept changing under {rounds} rounds of appends; {} frames \
         are stored and may load without their metadata",
        entries.len()
    );
    Error::Contended {
        timeline: timeline.to_owned(),
        rounds,
    }
}

/// Waits before another round: 10 ms doubling per round up to 320 ms, times a random
/// factor in [0.5, 1.5), so that appenders that collided do not collide again in step.
async fn backoff(round: usize) {
    let base = 10u64 << round.min(5);
    let random = u64::from_str_radix(&new_generation()[..8], 16).unwrap_or_default();
    let ms = base / 2 + random % base.max(1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The head as this append found it, with the ETag to write it back with `If-Match`.
struct Found {
    head: Option<Head>,
    etag: Option<String>,
    /// Whether `manifest.json` exists (an unreadable one too).
    exists: bool,
}

/// A head with this append's entries merged in.
struct Merged {
    bytes: Bytes,
    generation: String,
    /// The directory this round's chunks went to.
    dir: String,
    /// The blake3 each of this append's seqs had in the head merged into, if any.
    before: HashMap<u64, String>,
}

impl FrameCache {
    /// Merges `entries` (sorted by seq, one per seq, their JPEGs stored) into the timeline's
    /// manifest. A manifest that is incomplete (a rebuild at work, or one that died) is left
    /// to its rebuild: that rebuild decides which frames the timeline keeps.
    pub(super) async fn append_entries(&self, timeline: &str, entries: &[FrameMeta]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = layout::manifest_key(timeline)?;
        let conditional = self.conditional_writes().await;
        let mut found = self.found_head(&key, conditional).await?;
        let mut merged_into: Option<String> = None;
        // Refused conditional writes (each means another appender progressed) and rounds of
        // write and read back, each bounded.
        let (mut refusals, mut rounds) = (0, 0);
        loop {
            match &found.head {
                Some(head) => {
                    if !head.complete {
                        tracing::info!(
                            "{timeline}: a rebuild has not finished; its manifest is left to it"
                        );
                        return Ok(());
                    }
                    // A rebuild published after this append's last head write: it decides.
                    if merged_into.as_ref().is_some_and(|g| *g != head.generation) {
                        return Ok(());
                    }
                }
                None if found.exists => {
                    // A head this build cannot read (a later format, or a rejected one):
                    // replacing it would drop every other frame's metadata.
                    tracing::warn!(
                        "{timeline}: manifest unreadable; {} frames stored without entries, \
                         the manifest left as it is",
                        entries.len()
                    );
                    TierCounters::bump(&self.cache.metrics().unreadable_manifests);
                    return Ok(());
                }
                None => {}
            }
            let merged = self.merge(timeline, found.head.as_ref(), entries).await?;
            merged_into = Some(merged.generation.clone());
            if conditional {
                let condition = match (&found.etag, found.exists) {
                    (Some(etag), _) => Some(PutCondition::Matches(etag)),
                    (None, false) => Some(PutCondition::Absent),
                    // Exists, but its ETag is unknown: write and read back.
                    (None, true) => None,
                };
                if let Some(condition) = condition {
                    match self
                        .cache
                        .origin()
                        .put_if(&key, merged.bytes.clone(), condition)
                        .await?
                    {
                        PutOutcome::Written(_) => return Ok(()),
                        PutOutcome::Refused => {
                            refusals += 1;
                            if refusals >= REFUSALS {
                                return Err(contended(timeline, entries, refusals));
                            }
                            backoff(refusals).await;
                            found = self.found_head(&key, true).await?;
                            continue;
                        }
                        // Write and read back.
                        PutOutcome::Unsupported => {}
                    }
                }
            }
            self.cache.origin().put(&key, merged.bytes.clone()).await?;
            found = self.found_head(&key, conditional).await?;
            if self.holds(timeline, &found, &merged, entries).await? {
                return Ok(());
            }
            rounds += 1;
            if rounds >= APPEND_ROUNDS {
                return Err(contended(timeline, entries, rounds));
            }
            tracing::info!("{timeline}: another append replaced the manifest; merging again");
            backoff(rounds).await;
        }
    }

    /// The head at the origin; with `etag`, its ETag too (a stat, then a read of exactly
    /// that version).
    async fn found_head(&self, key: &str, etag: bool) -> Result<Found> {
        let origin = self.cache.origin();
        let (bytes, etag) = if etag {
            let Some(info) = origin.stat(key).await? else {
                return Ok(Found {
                    head: None,
                    etag: None,
                    exists: false,
                });
            };
            let version = info.version.filter(|v| v.etag.is_some());
            let read = match &version {
                Some(v) => origin.get_at(key, v, HEAD_LIMIT).await,
                None => origin.get(key, HEAD_LIMIT).await,
            };
            match read {
                Ok(bytes) => (bytes, version.and_then(|v: Version| v.etag)),
                // Changed between the stat and the read: the newer bytes, with the stat's
                // ETag, so the If-Match write is refused and the round starts again.
                Err(e) if e.is_stale_version() => (
                    origin.get(key, HEAD_LIMIT).await?,
                    version.and_then(|v: Version| v.etag),
                ),
                Err(e) => return Err(e),
            }
        } else {
            (origin.get(key, HEAD_LIMIT).await?, None)
        };
        let exists = bytes.is_some();
        let head = bytes.and_then(|b| parse_head(key, &b));
        Ok(Found { head, etag, exists })
    }

    /// `head` with `entries` merged in, its new chunks stored.
    async fn merge(
        &self,
        timeline: &str,
        head: Option<&Head>,
        entries: &[FrameMeta],
    ) -> Result<Merged> {
        let dir = new_generation();
        let (generation, refs, inline): (String, Vec<ChunkRef>, Vec<FrameMeta>) = match head {
            None => (first_generation(timeline), Vec::new(), Vec::new()),
            Some(head) => match &head.entries {
                Entries::Inline(frames) => (head.generation.clone(), Vec::new(), frames.to_vec()),
                Entries::Chunked(chunks) => (head.generation.clone(), chunks.to_vec(), Vec::new()),
            },
        };
        // Format 1 generations were never checked as ids; a merged head needs a valid one.
        let generation = if layout::validate_id("manifest generation", &generation).is_ok() {
            generation
        } else {
            first_generation(timeline)
        };
        let touched = touched_chunks(&refs, entries);
        let read = &refs;
        let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(touched.iter().copied())
            .map(|i| async move {
                match self.chunk(timeline, &read[i]).await {
                    // Removed under a head that still names it (see docs/design.md): its
                    // frames keep their bytes and fall back to the defaults.
                    Err(Error::Vanished { key }) => {
                        tracing::warn!("{key}: manifest chunk gone; its entries are dropped");
                        Ok(Arc::new(Vec::new()))
                    }
                    other => other,
                }
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut all: BTreeMap<u64, FrameMeta> = inline
            .into_iter()
            .chain(parts.iter().flat_map(|p| p.iter().cloned()))
            .map(|f| (f.seq, f))
            .collect();
        let before = entries
            .iter()
            .filter_map(|e| all.get(&e.seq).map(|f| (e.seq, f.blake3.clone())))
            .collect();
        all.extend(entries.iter().map(|e| (e.seq, e.clone())));
        let untouched: Vec<ChunkRef> = refs
            .iter()
            .enumerate()
            .filter(|(i, _)| !touched.contains(i))
            .map(|(_, c)| c.clone())
            .collect();
        let merged: Vec<FrameMeta> = all.into_values().collect();
        let parts = split_runs(&merged, &untouched);
        let new_refs = self.put_chunk_parts(timeline, &dir, &parts).await?;
        let mut chunks = untouched;
        chunks.extend(new_refs);
        chunks.sort_by_key(|c| c.first);
        let count = chunks.iter().fold(0usize, |n, c| n.saturating_add(c.count));
        let bytes = head_bytes(&StoredHead {
            format: MANIFEST_FORMAT,
            generation: generation.clone(),
            complete: true,
            abandoned: false,
            count,
            chunks,
            frames: Vec::new(),
        });
        Ok(Merged {
            bytes,
            generation,
            dir,
            before,
        })
    }

    /// Whether the head read back still gives this append's seqs its entries, or entries a
    /// later writer gave them (neither its own nor the ones it replaced).
    async fn holds(
        &self,
        timeline: &str,
        found: &Found,
        merged: &Merged,
        entries: &[FrameMeta],
    ) -> Result<bool> {
        let Some(head) = &found.head else {
            // Cleared meanwhile, or unreadable: nothing to add to.
            return Ok(true);
        };
        if !head.complete || head.generation != merged.generation {
            // A rebuild took the timeline over: it decides.
            return Ok(true);
        }
        let Entries::Chunked(chunks) = &head.entries else {
            return Ok(true);
        };
        let seqs: BTreeSet<u64> = entries.iter().map(|e| e.seq).collect();
        // Chunks of this round's directory hold exactly this append's entries for its seqs.
        let elsewhere: BTreeSet<u64> = seqs
            .iter()
            .copied()
            .filter(|&seq| {
                let n = chunks.partition_point(|c| c.last < seq);
                !chunks
                    .get(n)
                    .is_some_and(|c| c.first <= seq && c.dir == merged.dir)
            })
            .collect();
        if elsewhere.is_empty() {
            return Ok(true);
        }
        let now = self.metas_of(timeline, head, &elsewhere).await?;
        Ok(entries
            .iter()
            .filter(|e| elsewhere.contains(&e.seq))
            .all(|e| match now.get(&e.seq) {
                None => false,
                Some(f) if f.blake3 == e.blake3 => true,
                Some(f) => merged.before.get(&e.seq) != Some(&f.blake3),
            }))
    }

    /// Whether the origin honours conditional writes: probed on the first append of a cache
    /// handle by writing an object with `If-None-Match: *`, then again (which must be
    /// refused), then with `If-Match` on an ETag it does not have (refused too), and
    /// removing it (4 requests). The verdict is kept in the local tiers (the shared disk
    /// directory) for [`PROBE_KEPT`], so other handles and processes on this machine do not
    /// probe again. Origins without the capability are not asked at all.
    pub(super) async fn conditional_writes(&self) -> bool {
        *self
            .conditional
            .get_or_init(|| async {
                let origin = self.cache.origin();
                let kept_key = layout::conditional_writes_key(&origin.describe());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                if let Some(hit) = self.cache.get_local(&kept_key).await
                    && let Ok(kept) = serde_json::from_slice::<KeptVerdict>(&hit.bytes)
                    && now.saturating_sub(kept.at) < PROBE_KEPT.as_secs()
                {
                    return kept.honoured;
                }
                let key = format!(
                    "{}/.framecache-probe-{}",
                    layout::CACHE_PREFIX,
                    new_generation()
                );
                let probe =
                    |condition| origin.put_if(&key, Bytes::from_static(b"probe"), condition);
                let (honoured, known) = match probe(PutCondition::Absent).await {
                    Ok(PutOutcome::Written(_)) => {
                        let again = probe(PutCondition::Absent).await;
                        let other =
                            probe(PutCondition::Matches("\"framecache-no-such-etag\"")).await;
                        if let Err(e) = origin.remove(&key).await {
                            tracing::warn!("cannot remove the probe {key}: {e}");
                        }
                        let honoured = matches!(again, Ok(PutOutcome::Refused))
                            && matches!(other, Ok(PutOutcome::Refused));
                        (honoured, again.is_ok() && other.is_ok())
                    }
                    Ok(_) => (false, true),
                    Err(e) => {
                        tracing::warn!("probing conditional writes failed: {e}");
                        (false, false)
                    }
                };
                tracing::debug!(
                    "{}: conditional writes {}",
                    origin.describe(),
                    if honoured { "honoured" } else { "not honoured" }
                );
                // A probe that failed is not kept: the next handle asks again.
                if known {
                    let verdict = KeptVerdict { honoured, at: now };
                    if let Ok(json) = serde_json::to_vec(&verdict) {
                        self.cache.put_local(&kept_key, Bytes::from(json)).await;
                    }
                }
                honoured
            })
            .await
    }
}

/// How long a probed conditional-writes verdict is kept on this machine.
const PROBE_KEPT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// A conditional-writes verdict as kept in the local tiers.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptVerdict {
    honoured: bool,
    /// When it was probed, in seconds since the Unix epoch.
    at: u64,
}

/// The generation of a manifest an append creates: the same for every appender of the
/// timeline, so that two first appends at once see one generation and merge again into each
/// other's head (a different generation means a rebuild took the timeline over).
fn first_generation(timeline: &str) -> String {
    let hash = blake3::hash(format!("framecache append generation\0{timeline}").as_bytes());
    format!("a{}", &hash.to_hex()[..15])
}
