//! Reading some of a timeline's frames (a range, or any list of seqs) and streaming a whole
//! timeline before its listing is done: what a read costs follows what it asks for, not
//! the timeline's length.
//!
//! A selection of k frames costs the listing pages covering its keys (one request per
//! 1,000 keys of a span; see `pages.rs`), which give each frame's version at the origin and
//! keep local copies honest exactly as a whole listing does, the manifest head (none when
//! a page reaches the folder's end and this process has already read the head at the
//! version it lists), the manifest chunks covering the k seqs (once per process) and the
//! frames' reads. A seq the timeline
//! lacks fails the read with [`Error::NoFrame`] naming it; only the single-frame lookups
//! (`load_frame`, `frame_jpeg`) answer `None`.

use super::FrameCache;
use super::index::{FrameEntry, Index, TimelineStatus};
use super::manifest::{FrameMeta, Head};
use super::options::Seqs;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::ObjectInfo;
use futures::future::{RemoteHandle, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt, stream};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Seqs resolved (confirmed by their pages) together: a stream's first frames wait for one
/// window, not all.
const WINDOW: usize = 256;
/// A timeline's listing, awaited by a stream that goes on without it meanwhile.
type Listing = Shared<RemoteHandle<std::result::Result<Arc<Vec<ObjectInfo>>, Arc<Error>>>>;

/// Timelines longer than this (one listing page) stream their first frames before their
/// listing is in.
const AHEAD_MIN: usize = 1000;

/// The entries of a whole index, or why it cannot be loaded.
fn loadable(timeline: &str, index: Index) -> Result<Vec<FrameEntry>> {
    match index.status {
        TimelineStatus::Partial { expected, present } => Err(Error::Incomplete {
            timeline: timeline.to_owned(),
            expected,
            present,
        }),
        _ => Ok(index.entries),
    }
}

impl FrameCache {
    /// The entries of `seqs` (in their order, duplicates repeated) as the origin has them
    /// for a read that started at `since` (see [`FrameCache::confirm`]); when the origin
    /// fails, the entries this machine kept stand in, counted as an offline load.
    async fn resolve(
        &self,
        timeline: &str,
        since: Instant,
        seqs: &[u64],
    ) -> Result<Vec<FrameEntry>> {
        self.resolve_some(timeline, since, seqs, false).await
    }

    /// [`FrameCache::resolve`]; with `skip_absent`, seqs the timeline lacks are left out
    /// instead of failing the read.
    async fn resolve_some(
        &self,
        timeline: &str,
        since: Instant,
        seqs: &[u64],
        skip_absent: bool,
    ) -> Result<Vec<FrameEntry>> {
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        let online = match self.resolve_online(timeline, since, &unique).await {
            // The manifest changed since its head was confirmed: confirm it again.
            Err(Error::Vanished { key }) if !key.ends_with(".jpg") => {
                self.pages.forget(timeline, false);
                self.resolve_online(timeline, Instant::now(), &unique).await
            }
            other => other,
        };
        let found = match online {
            Ok(found) => found,
            Err(err) if err.is_origin_failure() => {
                let kept = self.kept_entries(timeline, &unique).await;
                if kept.len() < unique.len() {
                    return Err(err);
                }
                tracing::warn!(
                    "origin failed ({err}); reading {} frames of {timeline} from the entries \
                     kept on this machine",
                    unique.len()
                );
                TierCounters::bump(&self.cache.metrics().offline_loads);
                kept
            }
            Err(err) => return Err(err),
        };
        seqs.iter()
            .filter(|seq| !skip_absent || found.contains_key(seq))
            .map(|&seq| {
                found.get(&seq).cloned().ok_or_else(|| Error::NoFrame {
                    timeline: timeline.to_owned(),
                    seq,
                })
            })
            .collect()
    }

    /// [`FrameCache::resolve`] at the origin: the listing pages covering the seqs and the
    /// manifest head ([`FrameCache::confirm`]), then the manifest chunks covering them. Seqs
    /// the origin lacks are left out (the caller names the first one in its order).
    async fn resolve_online(
        &self,
        timeline: &str,
        since: Instant,
        seqs: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, FrameEntry>> {
        let confirmed = self.confirm(timeline, since, seqs).await?;
        let head = confirmed.head.as_ref();
        if let Some(head) = head.filter(|h| !h.complete) {
            return Err(self.incomplete(timeline, head).await);
        }
        let mut metas = match head {
            Some(head) => self.metas_of(timeline, head, seqs).await?,
            None => HashMap::new(),
        };
        let mut found = HashMap::with_capacity(confirmed.objects.len());
        let mut absent = Vec::new();
        for (seq, info) in confirmed.objects {
            let meta = metas.remove(&seq);
            match info {
                Some(info) => {
                    // An entry whose size is not the object's describes other bytes (see
                    // `join_index`): the frame loads with the module's defaults.
                    let meta = meta.filter(|m| m.size == info.size);
                    found.insert(
                        seq,
                        FrameEntry {
                            seq,
                            key: info.key,
                            size: info.size,
                            version: info.version,
                            meta,
                        },
                    );
                }
                // Not there, whatever a complete manifest lists (see `join_index`).
                None => absent.push(seq),
            }
        }
        let found_list: Vec<FrameEntry> = found.values().cloned().collect();
        self.keep_entries(timeline, &found_list, &absent).await;
        Ok(found)
    }

    /// The error of a timeline whose manifest says it is incomplete, with its counts from
    /// a listing (an error path: the listing's cost does not matter).
    async fn incomplete(&self, timeline: &str, head: &Head) -> Error {
        let (expected, present) = match self.origin_index(timeline).await {
            Ok(Index {
                status: TimelineStatus::Partial { expected, present },
                ..
            }) => (expected, present),
            Ok(index) => (head.count, index.entries.len()),
            Err(e) => return e,
        };
        Error::Incomplete {
            timeline: timeline.to_owned(),
            expected,
            present,
        }
    }

    /// The entries of a selection, a window at a time (the next one resolved while the
    /// caller works through the current one).
    pub(super) fn entries_of<'a>(
        &'a self,
        timeline: &'a str,
        seqs: Seqs,
    ) -> BoxStream<'a, Result<FrameEntry>> {
        if seqs == Seqs::All {
            return self.entries_all(timeline);
        }
        if let Err(e) = seqs.check() {
            return stream::once(async { Err(e) }).boxed();
        }
        let since = Instant::now();
        stream::iter(seqs.windows(WINDOW))
            .map(move |window| async move { self.resolve(timeline, since, &window).await })
            .buffered(2)
            .map_ok(|entries| stream::iter(entries).map(Ok::<_, Error>))
            .try_flatten()
            .boxed()
    }

    /// Every entry of a timeline in seq order. The listing starts at once; with a complete
    /// manifest of more than [`AHEAD_MIN`] frames, the first windows are resolved by their
    /// pages meanwhile, so the first frame does not wait for a long listing; once it is in, the
    /// rest comes from it (versions included, no stats). Shorter timelines, and timelines
    /// without a manifest (written by the Python module: nothing else says which seq comes
    /// first), wait for the listing, as whole loads do.
    fn entries_all<'a>(&'a self, timeline: &'a str) -> BoxStream<'a, Result<FrameEntry>> {
        let since = Instant::now();
        stream::once(async move {
            let listing: Listing = {
                let origin = self.cache.origin().clone();
                let prefix = layout::frames_prefix(timeline);
                let (task, handle) = async move {
                    let prefix = prefix.map_err(Arc::new)?;
                    origin.list(&prefix).await.map(Arc::new).map_err(Arc::new)
                }
                .remote_handle();
                tokio::spawn(task);
                handle.shared()
            };
            let head = self.read_head(timeline).await;
            if let Ok(head) = &head {
                self.note_head(timeline, head.clone(), since);
            }
            let ahead = matches!(&head, Ok(Some(h)) if h.complete && h.count > AHEAD_MIN);
            match head {
                Ok(Some(head)) if ahead => self.entries_ahead(timeline, since, head, listing),
                head => {
                    let index = match (head, listing.await) {
                        (Ok(head), Ok(listed)) => {
                            self.join_index(timeline, listed.to_vec(), head).await
                        }
                        (Err(e), _) => Err(e),
                        (_, Err(e)) => Err(Error::Shared(e)),
                    };
                    let entries = self
                        .settle_index(timeline, index)
                        .await
                        .and_then(|index| loadable(timeline, index));
                    stream::iter(
                        entries.map_or_else(|e| vec![Err(e)], |v| v.into_iter().map(Ok).collect()),
                    )
                    .boxed()
                }
            }
        })
        .flatten()
        .boxed()
    }

    /// The windows of [`FrameCache::entries_all`]: by their pages until `listing` is in.
    fn entries_ahead<'a>(
        &'a self,
        timeline: &'a str,
        since: Instant,
        head: Head,
        listing: Listing,
    ) -> BoxStream<'a, Result<FrameEntry>> {
        let head = Arc::new(head);
        // (next seq to emit, window size, done); the seq is wide enough to go past the last
        // a manifest may hold (u64::MAX) without overflowing.
        let state = (Some(0u128), self.concurrency.min(WINDOW), false);
        stream::unfold(state, move |(from, size, done)| {
            let (head, listing) = (head.clone(), listing.clone());
            async move {
                let from = from.filter(|_| !done)?;
                let peeked = listing.peek().cloned();
                let listed = match peeked {
                    Some(listed) => listed,
                    None => match match u64::try_from(from) {
                        Ok(from) => self.metas_from(timeline, &head, from, size).await,
                        // Past u64::MAX: the manifest has nothing further.
                        Err(_) => Ok(Vec::new()),
                    } {
                        // Every seq from `from` to the window's last entry is resolved, not
                        // only those the manifest lists: frames written without an entry
                        // (by the Python module, or an append that has not written its
                        // entries yet) between them are found too, in order. A window with
                        // wide gaps waits for the listing instead.
                        Ok(metas)
                            if metas.last().is_some_and(|m| {
                                u128::from(m.seq).saturating_sub(from)
                                    < 2 * metas.len() as u128 + WINDOW as u128
                            }) =>
                        {
                            let last = metas.last().map_or(from, |m: &FrameMeta| u128::from(m.seq));
                            let seqs: Vec<u64> = (from..=last)
                                .filter_map(|s| u64::try_from(s).ok())
                                .collect();
                            let window = self.resolve_some(timeline, since, &seqs, true).await;
                            let done = window.is_err();
                            return Some((window, (Some(last + 1), WINDOW, done)));
                        }
                        // The manifest's frames are all out, or far apart: the listing says
                        // what else there is.
                        Ok(_) => listing.await,
                        Err(e) => return Some((Err(e), (None, size, true))),
                    },
                };
                let index = match listed {
                    Ok(listed) => {
                        self.join_index(timeline, listed.to_vec(), Some((*head).clone()))
                            .await
                    }
                    Err(e) => Err(Error::Shared(e)),
                };
                let rest = self
                    .settle_index(timeline, index)
                    .await
                    .and_then(|index| loadable(timeline, index))
                    .map(|entries| {
                        entries
                            .into_iter()
                            .filter(|e| u128::from(e.seq) >= from)
                            .collect()
                    });
                Some((rest, (None, size, true)))
            }
        })
        .map_ok(|entries: Vec<FrameEntry>| stream::iter(entries).map(Ok::<_, Error>))
        .try_flatten()
        .boxed()
    }
}
