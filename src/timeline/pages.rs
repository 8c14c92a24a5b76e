//! Revalidating a selection by the page: the listing pages that cover its frames' keys,
//! not a stat per frame.
//!
//! Frame keys sort as strings (`1.jpg` < `10.jpg` < `100.jpg` < `11.jpg` < `2.jpg`), so a
//! range of seqs is not one span of keys: in a timeline of 100,000 frames, `5000.jpg` and
//! `5001.jpg` have `50000.jpg` … `50009.jpg` between them. A selection is planned on a
//! model of the timeline (every seq from 0 to its last, `m`: the manifest's count, or the
//! selection's highest seq), where a key's position in key order is computed (`rank`), and
//! cut into pages of [`LIST_PAGE`] keys starting after the model's key at each multiple of
//! it (`nth`). One S3 `ListObjectsV2` with `start-after` reads each page the selection
//! touches: a range of 240 in a 240-frame timeline is one request, `50_000..50_300` of a
//! 100,000-frame one too. Where the origin differs from the model (stray objects, sparse
//! seqs), a page covers less or more than planned; keys it did not cover are listed again
//! from just before them, so the plan only ever costs requests, never correctness.
//!
//! A page says what the origin held at some moment after its request was sent (`issued`).
//! A read started at `since` takes a page issued at or after `since` (strict, the
//! default), or, with a revalidation window `w`, one issued at or after `since - w`.
//! Concurrent reads of a process share each page's request (single-flight by timeline and
//! start key) and, within those bounds, its answer.
//!
//! The manifest head rides along: a page that reaches the end of the folder lists
//! `manifest.json` with its version, and the head this process parsed at that version is
//! used without reading it again; otherwise it is read, beside the pages.

use super::FrameCache;
use super::key_order::Model;
use super::manifest::{HEAD_LIMIT, Head, parse_head};
use super::memo::Memo;
use crate::error::{Error, Result};
use crate::layout::{self, frame_name};
use crate::metrics::TierCounters;
use crate::tier::{LIST_PAGE, ListPage, ObjectInfo};
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names of listing pages a process keeps (about 150 bytes each): a 100,000-frame
/// timeline's pages twice over.
const KEPT_NAMES: u64 = 200_000;
/// How long a page stays in memory without a window: long enough for the windows of one
/// read to share it, after which no read would take it anyway.
const STRICT_TTL: Duration = Duration::from_secs(60);
/// Manifest heads kept, one per timeline.
const KEPT_HEADS: u64 = 4096;
/// Rounds of listing for keys the planned pages did not cover, before a stat each.
const ROUNDS: usize = 8;

/// One page of a timeline's frames folder, as the origin answered it.
pub(super) struct Page {
    /// The name it starts after (exclusive); `None`: the folder's first name.
    after: Option<String>,
    listed: ListPage,
    /// When its answer came: it says what the origin held at some moment while its
    /// request was in flight, before this.
    answered: Instant,
}

impl Page {
    /// Whether the page says whether `name` exists.
    fn covers(&self, name: &str) -> bool {
        self.after.as_deref().is_none_or(|a| name > a)
            && self.listed.end.as_deref().is_none_or(|e| name <= e)
    }

    fn find(&self, key: &str) -> Option<&ObjectInfo> {
        let objects = &self.listed.objects;
        objects
            .binary_search_by(|o| o.key.as_str().cmp(key))
            .ok()
            .map(|i| &objects[i])
    }
}

/// A manifest head as last confirmed at the origin.
struct KnownHead {
    /// `None`: the timeline had no manifest.
    head: Option<Head>,
    /// When the answer confirming it came (see [`Page::answered`]).
    confirmed: Instant,
}

/// The pages and heads a process confirmed, shared by the clones of one `FrameCache`.
pub(super) struct Pages {
    window: Duration,
    pages: moka::future::Cache<(String, String), Arc<Page>>,
    /// The last head confirmed of each timeline: for the window, and for its count.
    heads: Memo<Arc<KnownHead>>,
    /// Heads read at the version a listing reported, by timeline and version tag: a
    /// version names one content, so these never go stale.
    versioned: moka::future::Cache<(String, String), Arc<Option<Head>>>,
}

impl Pages {
    pub(super) fn new(window: Duration) -> Self {
        Pages {
            window,
            pages: moka::future::Cache::builder()
                .max_capacity(KEPT_NAMES)
                .weigher(|_, page: &Arc<Page>| {
                    u32::try_from(page.listed.objects.len() + 1).unwrap_or(u32::MAX)
                })
                .time_to_live(window.max(STRICT_TTL))
                .support_invalidation_closures()
                .build(),
            heads: Memo::new(KEPT_HEADS),
            versioned: moka::future::Cache::new(KEPT_HEADS),
        }
    }

    pub(super) fn window(&self) -> Duration {
        self.window
    }

    /// Whether something confirmed by an answer that came at `at` may serve a read that
    /// started at `since`: an answer that came after the read began (its request in
    /// flight then, or sent since), or within the window before.
    fn fresh(&self, at: Instant, since: Instant) -> bool {
        at.checked_add(self.window)
            .is_none_or(|until| until >= since)
    }

    fn head(&self, timeline: &str) -> Option<Arc<KnownHead>> {
        self.heads.get(timeline)
    }

    fn note_head(&self, timeline: &str, known: KnownHead) {
        self.heads.insert(timeline.to_owned(), Arc::new(known));
    }

    /// Forgets a timeline's head (its chunks are gone: it was rewritten) or everything of
    /// it (cleared).
    pub(super) fn forget(&self, timeline: &str, pages_too: bool) {
        self.heads.remove(timeline);
        if pages_too {
            let timeline = timeline.to_owned();
            // Fails only without invalidation closures, which the builder enables.
            if self
                .pages
                .invalidate_entries_if(move |(t, _), _| *t == timeline)
                .is_err()
            {
                self.pages.invalidate_all();
            }
        }
    }
}

/// What the origin holds of a selection: each seq's object (absent: not there) and the
/// manifest head, confirmed as [`Pages`] says.
pub(super) struct Confirmed {
    pub(super) objects: HashMap<u64, Option<ObjectInfo>>,
    pub(super) head: Option<Head>,
}

impl FrameCache {
    /// Notes a manifest head read from the origin by a read that started at `since`.
    pub(super) fn note_head(&self, timeline: &str, head: Option<Head>, since: Instant) {
        self.pages.note_head(
            timeline,
            KnownHead {
                head,
                confirmed: since,
            },
        );
    }

    /// Confirms `seqs` of `timeline` and its manifest head at the origin for a read that
    /// started at `since`: by the listing pages covering their keys (see the module).
    pub(super) async fn confirm(
        &self,
        timeline: &str,
        since: Instant,
        seqs: &BTreeSet<u64>,
    ) -> Result<Confirmed> {
        let prefix = layout::frames_prefix(timeline)?;
        let known = self.pages.head(timeline);
        let fresh_head = known
            .clone()
            .filter(|k| self.pages.fresh(k.confirmed, since));
        let last_seq = seqs.last().copied().unwrap_or(0);
        let counted = known
            .as_ref()
            .and_then(|k| k.head.as_ref())
            .map_or(0, |h| h.count.saturating_sub(1) as u64);
        let model = Model {
            m: last_seq.max(counted),
        };
        let mut planned: BTreeSet<u64> = seqs.iter().map(|&s| model.rank(s) / PAGE).collect();
        if seqs.is_empty() {
            planned.insert(0);
        }
        let expect_end = planned.contains(&(model.m / PAGE));
        // The head, unless a page is expected to confirm it: read beside the pages.
        let head_read = async {
            if fresh_head.is_some() || expect_end {
                return Ok(None);
            }
            let head = self.read_head(timeline).await?;
            Ok::<_, Error>(Some(KnownHead {
                head,
                confirmed: Instant::now(),
            }))
        };
        let starts: Vec<Option<String>> = planned
            .iter()
            .map(|&i| (i > 0).then(|| frame_name(model.nth(i * PAGE - 1))))
            .collect();
        let first_pages = stream::iter(starts)
            .map(|after| self.listing_page(timeline, &prefix, after, since))
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>();
        let (read, mut pages) = futures::try_join!(head_read, first_pages)?;

        // Keys the planned pages missed: list from just before them.
        let names: Vec<(String, u64)> = {
            let mut names: Vec<(String, u64)> = seqs.iter().map(|&s| (frame_name(s), s)).collect();
            names.sort();
            names
        };
        for round in 0.. {
            let missed: Vec<&(String, u64)> = names
                .iter()
                .filter(|(name, _)| !pages.iter().any(|p| p.covers(name)))
                .collect();
            if missed.is_empty() || round == ROUNDS {
                break;
            }
            let mut starts = Vec::new();
            let mut last_rank = None;
            for (name, seq) in missed {
                let rank = model.rank(*seq);
                if last_rank.is_none_or(|r: u64| rank.abs_diff(r) >= PAGE) {
                    starts.push(Some(name[..name.len() - 1].to_owned()));
                    last_rank = Some(rank);
                }
            }
            let more: Vec<Arc<Page>> = stream::iter(starts)
                .map(|after| self.listing_page(timeline, &prefix, after, since))
                .buffer_unordered(self.concurrency)
                .try_collect()
                .await?;
            pages.extend(more);
        }

        let mut objects = HashMap::with_capacity(names.len());
        for (name, seq) in &names {
            let key = format!("{prefix}{name}");
            let found = match pages.iter().find(|p| p.covers(name)) {
                Some(page) => page.find(&key).cloned(),
                // Still not covered (an origin that keeps changing under the listings).
                None => self.cache.origin().stat(&key).await?,
            };
            objects.insert(*seq, found);
        }

        let head = match (fresh_head, read) {
            (Some(known), _) => known.head.clone(),
            (None, Some(read)) => {
                let head = read.head.clone();
                self.pages.note_head(timeline, read);
                head
            }
            (None, None) => self.head_from_pages(timeline, &pages).await?,
        };
        Ok(Confirmed { objects, head })
    }

    /// The manifest head as a page reaching the folder's end reports it: the head read at
    /// the version it lists (once per process and version); read as it is when no page
    /// reached the end, or the head changed since the listing.
    async fn head_from_pages(&self, timeline: &str, pages: &[Arc<Page>]) -> Result<Option<Head>> {
        let key = layout::manifest_key(timeline)?;
        let last = pages.iter().find(|p| p.listed.end.is_none());
        let listed = last.map(|p| p.find(&key).map(|o| o.version.clone()));
        let read_at_listed = match listed {
            // The folder's end without a manifest.
            Some(None) => Some(Ok(None)),
            Some(Some(Some(version))) => {
                let versioned = (timeline.to_owned(), version.tag.clone());
                let read = self
                    .pages
                    .versioned
                    .try_get_with(versioned, async {
                        let bytes = self
                            .cache
                            .origin()
                            .get_at(&key, &version, HEAD_LIMIT)
                            .await?;
                        let head = bytes.and_then(|b| self.parse_read_head(&key, &b));
                        Ok::<_, Error>(Arc::new(head))
                    })
                    .await;
                Some(read.map(|head| (*head).clone()).map_err(Error::Shared))
            }
            // The end not reached, or the manifest listed without a version.
            _ => None,
        };
        let (head, confirmed) = match (read_at_listed, last) {
            (Some(Ok(head)), Some(last)) => (head, last.answered),
            (Some(Err(e)), _) if !e.is_stale_version() => return Err(e),
            _ => (self.read_head(timeline).await?, Instant::now()),
        };
        self.pages.note_head(
            timeline,
            KnownHead {
                head: head.clone(),
                confirmed,
            },
        );
        Ok(head)
    }

    /// A manifest head's bytes parsed, an unreadable one counted.
    fn parse_read_head(&self, key: &str, bytes: &[u8]) -> Option<Head> {
        let head = parse_head(key, bytes);
        if head.is_none() {
            TierCounters::bump(&self.cache.metrics().unreadable_manifests);
        }
        head
    }

    /// The page of `timeline`'s frames folder after `after`, issued no earlier than the
    /// read's start allows: a page this process holds, the request another read has in
    /// flight for it, or a new request.
    async fn listing_page(
        &self,
        timeline: &str,
        prefix: &str,
        after: Option<String>,
        since: Instant,
    ) -> Result<Arc<Page>> {
        let key = (timeline.to_owned(), after.clone().unwrap_or_default());
        let list = || {
            let origin = self.cache.origin().clone();
            let (prefix, after) = (prefix.to_owned(), after.clone());
            async move {
                let listed = origin
                    .list_page(&prefix, after.as_deref(), LIST_PAGE)
                    .await?;
                Ok::<_, Error>(Arc::new(Page {
                    after,
                    listed,
                    answered: Instant::now(),
                }))
            }
        };
        for _ in 0..3 {
            let page = self
                .pages
                .pages
                .try_get_with(key.clone(), list())
                .await
                .map_err(Error::Shared)?;
            if self.pages.fresh(page.answered, since) {
                return Ok(page);
            }
            // Answered before this read began (beyond the window): ask again.
            self.pages.pages.invalidate(&key).await;
        }
        // Other reads keep putting older pages back: list alone.
        list().await
    }
}

/// Keys per planned page: what one listing request returns.
const PAGE: u64 = LIST_PAGE as u64;
