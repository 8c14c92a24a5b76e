//! Reading some of a timeline's frames (a range, or any list of seqs) and streaming a whole
//! timeline before its listing is done: what a read costs follows what it asks for, not
//! the timeline's length.
//!
//! A selection of k frames costs one manifest head, the manifest chunks covering the k
//! seqs (once per process), one stat per frame (its version at the origin, which keeps
//! local copies honest exactly as a listing does) and the frames' reads. A seq the timeline
//! lacks fails the read with [`Error::NoFrame`] naming it; only the single-frame lookups
//! (`load_frame`, `frame_jpeg`) answer `None`.

use super::FrameCache;
use super::index::{FrameEntry, Index, TimelineStatus};
use super::manifest::{FrameMeta, Head, Start};
use super::read::{Frame, FrameJpeg};
use crate::decoded::LoadOptions;
use crate::error::{Error, Result};
use crate::layout;
use crate::metrics::TierCounters;
use crate::tier::{ObjectInfo, Source};
use futures::future::{RemoteHandle, Shared};
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt, stream};
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// Seqs resolved (stat'ed) together: a stream's first frames wait for one window, not all.
const WINDOW: usize = 256;
/// The most seqs one selection may name (a range is checked before anything is allocated).
pub const MAX_SELECTION: u64 = 1 << 24;

/// Which of a timeline's frames a read asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seqs {
    /// Every frame the timeline has, in seq order.
    #[default]
    All,
    /// The frames `start..end`, in order; each must exist.
    Range(Range<u64>),
    /// These frames in this order, duplicates repeated; each must exist.
    List(Vec<u64>),
}

impl From<Range<u64>> for Seqs {
    fn from(range: Range<u64>) -> Self {
        Seqs::Range(range)
    }
}

impl From<Vec<u64>> for Seqs {
    fn from(seqs: Vec<u64>) -> Self {
        Seqs::List(seqs)
    }
}

impl Seqs {
    /// The number of frames asked for; `None` for [`Seqs::All`].
    pub fn len(&self) -> Option<usize> {
        match self {
            Seqs::All => None,
            Seqs::Range(r) => Some(r.end.saturating_sub(r.start) as usize),
            Seqs::List(l) => Some(l.len()),
        }
    }

    /// Whether the selection names no frame (never true of [`Seqs::All`]).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Parses `A..B` (B excluded), `A..=B`, or one seq.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the text.
    pub fn parse(text: &str) -> Result<Seqs> {
        let invalid = || Error::Invalid {
            what: "frame seqs",
            value: text.to_owned(),
            rule: "expected `A..B` (B excluded), `A..=B` or one seq".into(),
        };
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
        let seqs = if let Some((a, b)) = text.split_once("..=") {
            Seqs::Range(num(a)?..num(b)?.checked_add(1).ok_or_else(invalid)?)
        } else if let Some((a, b)) = text.split_once("..") {
            Seqs::Range(num(a)?..num(b)?)
        } else {
            let seq = num(text)?;
            Seqs::Range(seq..seq + 1)
        };
        seqs.check()?;
        Ok(seqs)
    }

    /// Refuses a selection too large to hold.
    fn check(&self) -> Result<()> {
        let n = match self {
            Seqs::All => return Ok(()),
            Seqs::Range(r) => r.end.saturating_sub(r.start),
            Seqs::List(l) => l.len() as u64,
        };
        if n > MAX_SELECTION {
            return Err(Error::Invalid {
                what: "frame seqs",
                value: format!("{self:?}"),
                rule: format!("at most {MAX_SELECTION} frames in one read"),
            });
        }
        Ok(())
    }

    /// The seqs in windows of `WINDOW`, in order (`All` has none).
    fn windows(&self) -> Vec<Vec<u64>> {
        match self {
            Seqs::All => Vec::new(),
            Seqs::Range(r) => {
                let mut out = Vec::new();
                let mut start = r.start;
                while start < r.end {
                    let end = start.saturating_add(WINDOW as u64).min(r.end);
                    out.push((start..end).collect());
                    start = end;
                }
                out
            }
            Seqs::List(l) => l.chunks(WINDOW).map(<[u64]>::to_vec).collect(),
        }
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

/// A manifest head as read from the origin; the error is shared by every window.
type HeadRead = std::result::Result<Option<Head>, Arc<Error>>;

async fn read_shared(cache: &FrameCache, timeline: &str) -> HeadRead {
    cache.read_head(timeline).await.map_err(Arc::new)
}

impl FrameCache {
    /// The entries of `seqs` (in their order, duplicates repeated) as the origin has them
    /// now, against the manifest `head` the caller read (`Err`: the origin failed, so the
    /// entries this machine kept stand in, counted as an offline load).
    async fn resolve(
        &self,
        timeline: &str,
        head: &HeadRead,
        seqs: &[u64],
    ) -> Result<Vec<FrameEntry>> {
        self.resolve_some(timeline, head, seqs, false).await
    }

    /// [`FrameCache::resolve`]; with `skip_absent`, seqs the timeline lacks are left out
    /// instead of failing the read.
    async fn resolve_some(
        &self,
        timeline: &str,
        head: &HeadRead,
        seqs: &[u64],
        skip_absent: bool,
    ) -> Result<Vec<FrameEntry>> {
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        let online = match head {
            Ok(head) => match self.resolve_online(timeline, head.as_ref(), &unique).await {
                // The manifest changed since its head was read: read it once more.
                Err(Error::Vanished { key }) if !key.ends_with(".jpg") => {
                    match self.read_head(timeline).await {
                        Ok(head) => self.resolve_online(timeline, head.as_ref(), &unique).await,
                        Err(e) => Err(e),
                    }
                }
                other => other,
            },
            Err(e) => Err(Error::Shared(e.clone())),
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

    /// [`FrameCache::resolve`] at the origin: a stat per seq and the manifest chunks
    /// covering them, together. Seqs the origin lacks are left out (the caller names the
    /// first one in its order).
    async fn resolve_online(
        &self,
        timeline: &str,
        head: Option<&Head>,
        seqs: &BTreeSet<u64>,
    ) -> Result<HashMap<u64, FrameEntry>> {
        if let Some(head) = head.filter(|h| !h.complete) {
            return Err(self.incomplete(timeline, head).await);
        }
        let origin = self.cache.origin();
        let stats = stream::iter(seqs.iter().copied())
            .map(|seq| async move {
                let key = layout::frame_key(timeline, seq)?;
                let info = origin.stat(&key).await?;
                Ok::<_, Error>((seq, key, info))
            })
            .buffered(self.concurrency)
            .try_collect::<Vec<_>>();
        let metas = async {
            match head {
                Some(head) => self.metas_of(timeline, head, seqs).await,
                None => Ok(HashMap::new()),
            }
        };
        let (stats, mut metas) = futures::try_join!(stats, metas)?;
        let mut found = HashMap::with_capacity(stats.len());
        let mut absent = Vec::new();
        for (seq, key, info) in stats {
            let meta = metas.remove(&seq);
            match info {
                Some(info) => {
                    found.insert(
                        seq,
                        FrameEntry {
                            seq,
                            key,
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
    fn entries_of<'a>(
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
        stream::once(async move { Arc::new(read_shared(self, timeline).await) })
            .flat_map(move |head| {
                stream::iter(seqs.windows())
                    .map(move |window| {
                        let head = head.clone();
                        async move { self.resolve(timeline, &head, &window).await }
                    })
                    .buffered(2)
            })
            .map_ok(|entries| stream::iter(entries).map(Ok::<_, Error>))
            .try_flatten()
            .boxed()
    }

    /// Every entry of a timeline in seq order. The listing starts at once; with a complete
    /// manifest of more than [`AHEAD_MIN`] frames, the first windows are resolved by stat
    /// meanwhile, so the first frame does not wait for a long listing; once it is in, the
    /// rest comes from it (versions included, no stats). Shorter timelines, and timelines
    /// without a manifest (written by the Python module: nothing else says which seq comes
    /// first), wait for the listing, as whole loads do.
    fn entries_all<'a>(&'a self, timeline: &'a str) -> BoxStream<'a, Result<FrameEntry>> {
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
            let ahead = matches!(&head, Ok(Some(h)) if h.complete && h.count > AHEAD_MIN);
            match head {
                Ok(Some(head)) if ahead => self.entries_ahead(timeline, head, listing),
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

    /// The windows of [`FrameCache::entries_all`]: by stat until `listing` is in.
    fn entries_ahead<'a>(
        &'a self,
        timeline: &'a str,
        head: Head,
        listing: Listing,
    ) -> BoxStream<'a, Result<FrameEntry>> {
        let read: Arc<HeadRead> = Arc::new(Ok(Some(head.clone())));
        let head = Arc::new(head);
        // (next seq to emit, window size, done)
        let state = (Some(0u64), self.concurrency.min(WINDOW), false);
        stream::unfold(state, move |(from, size, done)| {
            let (head, read, listing) = (head.clone(), read.clone(), listing.clone());
            async move {
                let from = from.filter(|_| !done)?;
                let peeked = listing.peek().cloned();
                let listed = match peeked {
                    Some(listed) => listed,
                    None => match self.metas_from(timeline, &head, from, size).await {
                        // Every seq from `from` to the window's last entry is resolved, not
                        // only those the manifest lists: frames written without an entry
                        // (by the Python module, or an append that has not written its
                        // entries yet) between them are found too, in order. A window with
                        // wide gaps waits for the listing instead.
                        Ok(metas)
                            if metas.last().is_some_and(|m| {
                                m.seq - from < 2 * metas.len() as u64 + WINDOW as u64
                            }) =>
                        {
                            let last = metas.last().map_or(from, |m: &FrameMeta| m.seq);
                            let seqs: Vec<u64> = (from..=last).collect();
                            let window = self.resolve_some(timeline, &read, &seqs, true).await;
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
                    .map(|entries| entries.into_iter().filter(|e| e.seq >= from).collect());
                Some((rest, (None, size, true)))
            }
        })
        .map_ok(|entries: Vec<FrameEntry>| stream::iter(entries).map(Ok::<_, Error>))
        .try_flatten()
        .boxed()
    }

    /// Streams frames of a timeline in the order `seqs` names them (seq order for
    /// [`Seqs::All`]), each as soon as it and those before it are ready, with at most
    /// `concurrency` fetches and decodes in flight.
    ///
    /// # Errors
    /// Each item fails on its own: a seq the timeline lacks ([`Error::NoFrame`]), an
    /// incomplete timeline, an origin failure, a frame that does not decode.
    pub fn stream_frames_of<'a>(
        &'a self,
        timeline: &'a str,
        seqs: Seqs,
        options: LoadOptions,
    ) -> impl Stream<Item = Result<(Frame, Source)>> + Send + 'a {
        self.entries_of(timeline, seqs)
            .map_ok(move |entry| self.fetch_decoded(entry, options))
            .try_buffered(self.concurrency)
    }

    /// The frames `seqs` names, decoded, in its order.
    ///
    /// # Errors
    /// As [`FrameCache::stream_frames_of`], the first error met.
    pub async fn load_frames_of(
        &self,
        timeline: &str,
        seqs: Seqs,
        options: LoadOptions,
    ) -> Result<Vec<Frame>> {
        self.stream_frames_of(timeline, seqs, options)
            .map_ok(|(frame, _)| frame)
            .try_collect()
            .await
    }

    /// The stored JPEGs of the frames `seqs` names, in its order, and how many the stream
    /// yields (from the listing for [`Seqs::All`], as [`FrameCache::stream_jpegs`]).
    ///
    /// # Errors
    /// As [`FrameCache::stream_frames_of`], without decoding.
    pub async fn stream_jpegs_of<'a>(
        &'a self,
        timeline: &'a str,
        seqs: Seqs,
    ) -> Result<(usize, BoxStream<'a, Result<FrameJpeg>>)> {
        if seqs == Seqs::All {
            let (n, jpegs) = self.stream_jpegs(timeline).await?;
            return Ok((n, jpegs.boxed()));
        }
        seqs.check()?;
        layout::validate_id("timeline id", timeline)?;
        let n = seqs.len().unwrap_or(0);
        let jpegs = self
            .entries_of(timeline, seqs)
            .map_ok(move |entry| self.jpeg_of(entry))
            .try_buffered(self.concurrency)
            .boxed();
        Ok((n, jpegs))
    }

    /// The stored JPEGs of the frames `seqs` names, in its order.
    ///
    /// # Errors
    /// As [`FrameCache::stream_jpegs_of`].
    pub async fn load_jpegs_of(&self, timeline: &str, seqs: Seqs) -> Result<Vec<FrameJpeg>> {
        let (_, jpegs) = self.stream_jpegs_of(timeline, seqs).await?;
        jpegs.try_collect().await
    }

    /// One page of a timeline's index: up to `limit` frames from seq `from` on. With a
    /// complete manifest it is read from the chunks covering the page (no listing; the
    /// entries carry no version); otherwise from a listing (or the one kept here while the
    /// origin is down), as [`FrameCache::list_frames`].
    ///
    /// # Errors
    /// Invalid id, or the origin failed with nothing kept here.
    pub async fn list_frames_page(
        &self,
        timeline: &str,
        from: u64,
        limit: usize,
    ) -> Result<FramePage> {
        self.page(timeline, Start::Seq(from), limit).await
    }

    /// As [`FrameCache::list_frames_page`], from the frame at `offset` in seq order (the
    /// first is 0): what a viewer that scrubs by position asks for. With a complete
    /// manifest, the chunk counts its head lists say where the page is, so only the chunks
    /// holding it are read.
    ///
    /// # Errors
    /// As [`FrameCache::list_frames_page`].
    pub async fn list_frames_at(
        &self,
        timeline: &str,
        offset: usize,
        limit: usize,
    ) -> Result<FramePage> {
        self.page(timeline, Start::Position(offset), limit).await
    }

    async fn page(&self, timeline: &str, start: Start, limit: usize) -> Result<FramePage> {
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
            Start::Seq(from) => entries.partition_point(|e| e.seq < from),
            Start::Position(at) => at.min(total),
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
