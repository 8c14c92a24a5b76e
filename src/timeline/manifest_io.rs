//! The manifest at the origin: reading its head and the chunks a read needs (parsed chunks
//! kept in this process), and writing and dropping chunks. The format itself is
//! `manifest.rs`.

use super::FrameCache;
use super::manifest::{
    CHUNK_FRAMES, CHUNK_LIMIT, ChunkRef, Entries, FrameMeta, HEAD_LIMIT, Head, Manifest, parse_head,
};
use super::options::PageStart;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

impl FrameCache {
    /// The origin's manifest head of `timeline`, if it has a readable one: one small GET.
    pub(super) async fn read_head(&self, timeline: &str) -> Result<Option<Head>> {
        let key = layout::manifest_key(timeline)?;
        let bytes = self.cache.origin().get(&key, HEAD_LIMIT).await?;
        Ok(bytes.and_then(|b| {
            let head = parse_head(&key, &b);
            if head.is_none() {
                // The timeline then loads without its metadata, as one the Python module
                // wrote: never silently.
                TierCounters::bump(&self.cache.metrics().unreadable_manifests);
            }
            head
        }))
    }

    /// The manifest entries of `head` for the seqs within `first..=last`, sorted: only the
    /// chunks covering them are read, each once per process.
    ///
    /// # Errors
    /// A chunk gone from the origin ([`Error::Vanished`]: the timeline was rewritten since
    /// the head was read), or one that does not match the head's blake3, or the origin's.
    pub(super) async fn metas_between(
        &self,
        timeline: &str,
        head: &Head,
        first: u64,
        last: u64,
    ) -> Result<Vec<FrameMeta>> {
        let in_span = |f: &&FrameMeta| (first..=last).contains(&f.seq);
        match &head.entries {
            Entries::Inline(frames) => Ok(frames.iter().filter(in_span).cloned().collect()),
            Entries::Chunked(chunks) => {
                let wanted = Head::chunks_meeting(chunks, first, last);
                let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(wanted)
                    .map(|n| self.chunk(timeline, &chunks[n]))
                    .buffered(self.concurrency)
                    .try_collect()
                    .await?;
                Ok(parts
                    .iter()
                    .flat_map(|p| p.iter().filter(in_span).cloned())
                    .collect())
            }
        }
    }

    /// Every manifest entry of `head`, sorted by seq.
    pub(super) async fn all_metas(&self, timeline: &str, head: &Head) -> Result<Vec<FrameMeta>> {
        self.metas_between(timeline, head, 0, u64::MAX).await
    }

    /// The manifest entries of `head` for `seqs` (those it lists), reading only the chunks
    /// that could hold them.
    pub(super) async fn metas_of(
        &self,
        timeline: &str,
        head: &Head,
        seqs: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, FrameMeta>> {
        let listed = |f: &&FrameMeta| seqs.contains(&f.seq);
        Ok(match &head.entries {
            Entries::Inline(frames) => frames
                .iter()
                .filter(listed)
                .map(|f| (f.seq, f.clone()))
                .collect(),
            Entries::Chunked(chunks) => {
                let wanted: BTreeSet<usize> = seqs
                    .iter()
                    .filter_map(|&seq| {
                        let n = chunks.partition_point(|c| c.last < seq);
                        chunks.get(n).filter(|c| c.first <= seq).map(|_| n)
                    })
                    .collect();
                let parts: Vec<Arc<Vec<FrameMeta>>> = stream::iter(wanted)
                    .map(|n| self.chunk(timeline, &chunks[n]))
                    .buffered(self.concurrency)
                    .try_collect()
                    .await?;
                parts
                    .iter()
                    .flat_map(|p| p.iter().filter(listed).map(|f| (f.seq, f.clone())))
                    .collect()
            }
        })
    }

    /// Up to `n` manifest entries of `head` from seq `from` on, in order; the chunks are
    /// read one at a time, as far as needed.
    pub(super) async fn metas_from(
        &self,
        timeline: &str,
        head: &Head,
        from: u64,
        n: usize,
    ) -> Result<Vec<FrameMeta>> {
        Ok(self
            .metas_page(timeline, head, PageStart::Seq(from), n)
            .await?
            .1)
    }

    /// Up to `n` manifest entries of `head` from `start` on, in order, and the position (in
    /// seq order, from 0) of the first of them. Positions come from the chunk counts the
    /// head lists, so only the chunks holding the page are read, however far in it starts.
    pub(super) async fn metas_page(
        &self,
        timeline: &str,
        head: &Head,
        start: PageStart,
        n: usize,
    ) -> Result<(usize, Vec<FrameMeta>)> {
        match &head.entries {
            Entries::Inline(frames) => {
                let at = match start {
                    PageStart::Seq(from) => frames.partition_point(|f| f.seq < from),
                    PageStart::Position(at) => at.min(frames.len()),
                };
                Ok((at, frames[at..].iter().take(n).cloned().collect()))
            }
            Entries::Chunked(chunks) => {
                let mut out = Vec::with_capacity(n.min(CHUNK_FRAMES));
                // Entries of the chunks passed over, and the page's first position.
                let mut before = 0usize;
                let mut first = None;
                for chunk in chunks.iter() {
                    if out.len() >= n {
                        break;
                    }
                    let skip_chunk = match start {
                        PageStart::Seq(from) => chunk.last < from,
                        PageStart::Position(at) => before.saturating_add(chunk.count) <= at,
                    };
                    if skip_chunk {
                        before = before.saturating_add(chunk.count);
                        continue;
                    }
                    let part = self.chunk(timeline, chunk).await?;
                    let skip = match start {
                        PageStart::Seq(from) => part.partition_point(|f| f.seq < from),
                        PageStart::Position(at) => at.saturating_sub(before).min(part.len()),
                    };
                    first.get_or_insert(before.saturating_add(skip));
                    let rest = n - out.len();
                    out.extend(part.iter().skip(skip).take(rest).cloned());
                    before = before.saturating_add(part.len());
                }
                Ok((first.unwrap_or(before), out))
            }
        }
    }

    /// The chunk `reference` names: from this process's memo, else read through the tiers
    /// and checked against the head's blake3 (a local copy that does not match is dropped
    /// and the origin asked).
    pub(super) async fn chunk(
        &self,
        timeline: &str,
        reference: &ChunkRef,
    ) -> Result<Arc<Vec<FrameMeta>>> {
        let key = layout::manifest_chunk_key(timeline, &reference.dir, reference.n)?;
        if let Some(parsed) = self.chunks.get(&key) {
            return Ok(parsed);
        }
        let mut hit = self.cache.get_within(&key, None, Some(CHUNK_LIMIT)).await?;
        for attempt in 0..2 {
            let Some(found) = hit else {
                return Err(Error::Vanished { key });
            };
            let hash = found.blake3.unwrap_or_else(|| blake3::hash(&found.bytes));
            if hash.to_hex().as_str() == reference.blake3 {
                let parsed: Vec<FrameMeta> =
                    serde_json::from_slice(&found.bytes).map_err(|e| Error::Decode {
                        key: key.clone(),
                        reason: format!("manifest chunk: {e}"),
                    })?;
                // Binary searches over the head assume every entry lies within its span.
                if parsed
                    .iter()
                    .any(|f| f.seq < reference.first || f.seq > reference.last)
                {
                    return Err(Error::Decode {
                        key,
                        reason: "manifest chunk: an entry outside the span its manifest lists"
                            .into(),
                    });
                }
                let parsed = Arc::new(parsed);
                self.chunks.insert(key, parsed.clone());
                return Ok(parsed);
            }
            if attempt == 0 && found.source != crate::tier::Source::Origin {
                self.cache.invalidate_local(&key).await;
                hit = self.cache.get_within(&key, None, Some(CHUNK_LIMIT)).await?;
                continue;
            }
            break;
        }
        Err(Error::Decode {
            key,
            reason: "manifest chunk does not match the blake3 its manifest lists".into(),
        })
    }

    /// Stores `manifest`'s entries as chunks under its generation and records them in it.
    pub(super) async fn put_chunks(&self, timeline: &str, manifest: &mut Manifest) -> Result<()> {
        let parts: Vec<&[FrameMeta]> = manifest.frames.chunks(CHUNK_FRAMES).collect();
        manifest.chunks = self
            .put_chunk_parts(timeline, &manifest.generation, &parts)
            .await?;
        Ok(())
    }

    /// Stores each of `parts` (sorted entries) as chunk `n` under `manifest.d/{dir}/`;
    /// returns their references, in order.
    pub(super) async fn put_chunk_parts(
        &self,
        timeline: &str,
        dir: &str,
        parts: &[&[FrameMeta]],
    ) -> Result<Vec<ChunkRef>> {
        let mut refs = Vec::new();
        let mut puts = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            let bytes = Bytes::from(serde_json::to_vec(part).expect("entries always serialize"));
            refs.push(ChunkRef {
                first: part.first().map_or(0, |f| f.seq),
                last: part.last().map_or(0, |f| f.seq),
                count: part.len(),
                blake3: blake3::hash(&bytes).to_hex().to_string(),
                dir: dir.to_owned(),
                n,
            });
            puts.push((layout::manifest_chunk_key(timeline, dir, n)?, bytes));
        }
        stream::iter(puts)
            .map(|(key, bytes)| async move { self.cache.origin().put(&key, bytes).await })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(refs)
    }

    /// Removes the chunk directories `dirs` (best effort) except those `manifest.json`
    /// references now. Called by a rebuild, once published, with the directories of the
    /// manifest it replaced.
    pub(super) async fn drop_chunk_dirs(&self, timeline: &str, dirs: BTreeSet<String>) {
        let Ok(prefix) = layout::manifest_chunks_prefix(timeline) else {
            return;
        };
        let kept: BTreeSet<String> = match self.read_head(timeline).await {
            Ok(Some(head)) => head.dirs(),
            Ok(None) => BTreeSet::new(),
            Err(e) => {
                tracing::warn!("cannot read the manifest of {timeline}: {e}");
                return;
            }
        };
        let origin = self.cache.origin();
        for dir in dirs.difference(&kept) {
            // Directories of format 1 generations were never checked as ids.
            if layout::validate_id("manifest chunk directory", dir).is_err() {
                continue;
            }
            if let Err(e) = origin.remove_prefix(&format!("{prefix}{dir}/")).await {
                tracing::warn!("cannot remove old manifest chunks of {timeline}: {e}");
            }
        }
    }
}
