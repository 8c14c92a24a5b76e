//! The timeline API: everything the Python frame cache does, through the tiers, in parallel.
//!
//! Beside the frames, each timeline written by framecache has `frames/manifest.json`
//! holding the metadata the JPEGs cannot (chunk id, timestamp, perceptual hash), each
//! frame's size and blake3, a generation and a completeness flag. The Python module skips
//! it (it does not end in `.jpg`), and timelines without one load with the Python defaults.
//!
//! Revalidation: every load lists the timeline, and the listing reports each frame's
//! version (ETag, or size and mtime); local copies are kept under the version they were
//! read at, so a frame rewritten elsewhere is read again and a timeline rebuilt elsewhere is
//! never served from stale copies, at no extra request. The manifest's blake3 then only
//! says whether its metadata describes the bytes.
//!
//! Origin failures: the last listing a load saw is kept in the local tiers
//! (`offline_listing.rs`). When the origin fails (down, timing out, refusing credentials),
//! a load falls back to it and serves what memory and disk hold, logging it and counting it
//! in [`Stats::offline_loads`]; frames held nowhere locally then fail with the origin's
//! error.
//! An origin error is never taken for a missing timeline or frame.

mod append;
mod append_chunks;
mod b64;
mod decode;
mod finish;
mod index;
mod key_order;
mod manifest;
mod manifest_io;
mod memo;
mod offline_listing;
mod options;
mod overlay_index;
mod overlays;
mod pages;
mod read;
mod select;
mod thumbnail;
mod write;

pub use b64::{DEFAULT_B64_QUALITY, FrameB64, frames_to_b64};
pub use index::{FrameEntry, FramePage, TimelinePage, TimelineStatus};
pub use manifest::FrameMeta;
#[cfg(feature = "test-hooks")]
pub(crate) use manifest::fuzz_manifest;
#[cfg(feature = "test-hooks")]
pub(crate) use offline_listing::fuzz_kept_listing;
pub use options::{LoadOptions, MAX_SELECTION, PageStart, Seqs, WriteMode, WriteOptions};
pub use overlay_index::{OverlayPage, OverlayRef};
pub use read::{Frame, FrameJpeg};
pub use thumbnail::{THUMBNAIL_QUALITY, Thumbnail};
pub use write::EncodedFrame;

use crate::chain::TieredCache;
use crate::config::CacheConfig;
use crate::decoded::DecodedTiers;
use crate::error::Result;
use crate::layout;
use crate::metrics::Stats;
use memo::Memo;
use std::sync::Arc;

/// Digests of kept listings remembered (a head and its parts per timeline read).
const KEPT_LISTINGS: u64 = 1 << 16;

/// Default JPEG quality of [`FrameCache::cache_frames`], as the Python module.
pub const DEFAULT_QUALITY: u8 = 85;

/// Which objects [`FrameCache::clear`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearScope {
    /// Frames and the manifest.
    Frames,
    /// Every overlay of the timeline.
    Overlays,
    /// Both.
    All,
}

/// Frames and overlays of timelines, cached in memory and on disk in front of blob storage.
#[derive(Clone)]
pub struct FrameCache {
    cache: TieredCache,
    concurrency: usize,
    /// Digest of the listing this process last kept locally, per kept key.
    kept: Memo<blake3::Hash>,
    /// Manifest chunks this process parsed, by key (each generation's are immutable).
    chunks: Memo<Arc<Vec<FrameMeta>>>,
    /// Whether the origin honours conditional writes, probed on the first append.
    conditional: Arc<tokio::sync::OnceCell<bool>>,
    /// Slots for JPEG encodes and decodes, a few per core: enough to keep every core busy,
    /// while more would only add threads and scratch buffers (RSS); fetches, which wait on
    /// I/O, still go `concurrency` wide.
    codec_slots: Arc<tokio::sync::Semaphore>,
    /// Decoded frames in memory and on disk; `None` when both budgets are 0.
    decoded: Option<Arc<DecodedTiers>>,
    /// The blake3 of each frame version this process has read (by local key): what finds
    /// its decoded pixels without reading the JPEG. A manifest's blake3 cannot: another
    /// writer may have rewritten the frame and left the manifest behind.
    verified: Memo<blake3::Hash>,
    /// Frames whose header claims more pixels are refused before decoding.
    max_frame_pixels: u64,
    /// Listing pages and manifest heads confirmed at the origin, for reads of selections.
    pages: Arc<pages::Pages>,
}

pub(super) fn clear_prefixes(timeline: &str, scope: ClearScope) -> Result<Vec<String>> {
    Ok(match scope {
        ClearScope::Frames => vec![layout::frames_prefix(timeline)?],
        ClearScope::Overlays => vec![layout::overlays_prefix(timeline)?],
        ClearScope::All => vec![layout::timeline_prefix(timeline)?],
    })
}

impl FrameCache {
    /// Builds the tiers described by `config`.
    ///
    /// # Errors
    /// When the origin cannot be set up.
    pub fn new(config: &CacheConfig) -> Result<Self> {
        Ok(Self::from_chain(config.build()?, config.concurrency)
            .with_decoded_tiers(config)
            .with_revalidate_after(config.revalidate_after))
    }

    /// Adds the decoded-frame tiers `config` describes (counted in this chain's metrics)
    /// and takes its decode limit ([`crate::DecodedConfig::max_frame_pixels`]).
    pub fn with_decoded_tiers(mut self, config: &CacheConfig) -> Self {
        self.decoded = config
            .build_decoded(self.cache.metrics().clone())
            .map(Arc::new);
        self.max_frame_pixels = config.decoded.max_frame_pixels;
        self
    }

    /// Wraps an assembled chain; `concurrency` bounds the fetches and codec jobs in flight.
    /// It has no decoded-frame tiers until [`FrameCache::with_decoded_tiers`].
    pub fn from_chain(cache: TieredCache, concurrency: usize) -> Self {
        FrameCache {
            cache,
            concurrency: concurrency.max(1),
            kept: Memo::new(KEPT_LISTINGS),
            chunks: Memo::new(manifest::KEPT_CHUNKS),
            conditional: Arc::default(),
            verified: Memo::new(decode::VERIFIED_LIMIT),
            codec_slots: Arc::new(tokio::sync::Semaphore::new(
                4 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            decoded: None,
            max_frame_pixels: crate::codec::DEFAULT_MAX_FRAME_PIXELS,
            pages: Arc::new(pages::Pages::new(std::time::Duration::ZERO)),
        }
    }

    /// Lets reads of selections reuse the listing pages (and manifest heads) this handle
    /// confirmed at the origin for `window` ([`CacheConfig::revalidate_after`]); zero, the
    /// default, revalidates on every read.
    pub fn with_revalidate_after(mut self, window: std::time::Duration) -> Self {
        self.pages = Arc::new(pages::Pages::new(window));
        self
    }

    /// The read-through chain underneath.
    pub fn chain(&self) -> &TieredCache {
        &self.cache
    }

    /// Every counter, and how eviction stands on the disk tiers (read from their shared
    /// ledgers: no scan).
    pub fn stats(&self) -> Stats {
        let mut stats = self.cache.metrics().snapshot();
        stats.disk_eviction = self.cache.disk().map(|d| d.eviction_status());
        stats.decoded_disk_eviction = self.decoded.as_ref().and_then(|t| t.disk_eviction());
        stats.inherited_locks_closed = crate::flock::inherited_locks_closed();
        stats.raw_writes_pending = crate::decoded::raw_writes_pending();
        stats
    }

    /// [`crate::flush_raw_writes`]: waits up to `bound` for the raw frames this process
    /// decoded to be written behind its loads; whether none is left. Blocking.
    pub fn flush_raw_writes(&self, bound: std::time::Duration) -> bool {
        crate::decoded::flush_raw_writes(bound)
    }

    pub(super) async fn codec_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.codec_slots
            .acquire()
            .await
            .expect("the codec semaphore is never closed")
    }

    /// Forgets which listings were kept locally, after a clear dropped them.
    pub(super) fn forget_kept(&self, timeline: &str) -> Result<()> {
        let prefix = layout::timeline_prefix(timeline)?;
        self.kept.remove_prefixed(&prefix);
        Ok(())
    }

    /// Deletes a timeline's frames and/or overlays from the origin and from this machine's
    /// memory and disk tiers.
    ///
    /// # Errors
    /// Invalid id or origin failure (local copies are dropped regardless).
    pub async fn clear(&self, timeline: &str, scope: ClearScope) -> Result<()> {
        let prefixes = clear_prefixes(timeline, scope)?;
        self.forget_kept(timeline)?;
        self.pages.forget(timeline, true);
        let mut result = Ok(());
        for prefix in &prefixes {
            if let Err(e) = self.cache.origin().remove_prefix(prefix).await {
                result = Err(e);
            }
            self.cache.invalidate_local_prefix(prefix).await;
            self.drop_decoded(prefix).await;
        }
        result
    }

    /// Drops a timeline's copies from this machine's memory and disk tiers only.
    ///
    /// # Errors
    /// Invalid id. Returns the disk entries removed.
    pub async fn clear_local(&self, timeline: &str, scope: ClearScope) -> Result<u64> {
        let mut removed = 0;
        self.forget_kept(timeline)?;
        self.pages.forget(timeline, true);
        for prefix in clear_prefixes(timeline, scope)? {
            removed += self.cache.invalidate_local_prefix(&prefix).await;
            removed += self.drop_decoded(&prefix).await;
        }
        Ok(removed)
    }

    /// Drops the decoded frames under `prefix` from memory and disk; returns the disk
    /// entries removed.
    async fn drop_decoded(&self, prefix: &str) -> u64 {
        let Some(tiers) = self.decoded.clone() else {
            return 0;
        };
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || tiers.remove_prefix_blocking(&prefix))
            .await
            .unwrap_or(0)
    }

    /// Every local tier's bytes held and capacity, from counters the tiers keep (no scan of
    /// a directory): cheap enough to poll every second.
    pub fn usage(&self) -> CacheUsage {
        let decoded = self.decoded.as_deref();
        CacheUsage {
            memory: TierUsage::of(
                self.cache
                    .memory()
                    .map(|m| (m.weighted_size(), m.capacity())),
            ),
            disk: TierUsage::of(self.cache.disk().map(|d| (d.accounted(), d.capacity()))),
            decoded_memory: TierUsage::of(decoded.and_then(|t| t.memory_usage())),
            decoded_disk: TierUsage::of(decoded.and_then(|t| t.disk_accounted())),
        }
    }

    /// The decoded-frame tiers' usage: memory held and capacity, and the disk directory's.
    pub fn decoded_usage(&self) -> DecodedUsage {
        let tiers = self.decoded.as_deref();
        let memory = tiers.and_then(|t| t.memory_usage());
        DecodedUsage {
            memory_bytes: memory.map_or(0, |m| m.0),
            memory_capacity: memory.map_or(0, |m| m.1),
            disk: tiers.and_then(|t| t.disk_usage()),
        }
    }

    /// Checks every raw decoded entry on disk, removing and reporting the bad ones; `None`
    /// without a decoded disk tier. Blocking: scans and reads the whole directory.
    pub fn verify_decoded_blocking(
        &self,
        progress: impl FnMut(u64, u64),
    ) -> Option<crate::tier::VerifyReport> {
        self.decoded.as_ref()?.verify_blocking(progress)
    }

    /// Drops this handle's decoded frames from memory (the disk tier keeps them): the next
    /// load is what a new process on this machine would see.
    pub fn clear_decoded_memory(&self) {
        if let Some(tiers) = &self.decoded {
            tiers.clear_memory();
        }
    }
}

/// Bytes held against capacity in one tier; both 0 when the tier is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierUsage {
    /// Bytes held (the disk tiers: as their shared ledger counts them, writes in progress
    /// included).
    pub bytes: u64,
    /// The configured capacity.
    pub capacity: u64,
}

impl TierUsage {
    fn of(pair: Option<(u64, u64)>) -> Self {
        let (bytes, capacity) = pair.unwrap_or_default();
        TierUsage { bytes, capacity }
    }
}

/// Every local tier's usage, from [`FrameCache::usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheUsage {
    /// The JPEG memory tier.
    pub memory: TierUsage,
    /// The JPEG disk tier.
    pub disk: TierUsage,
    /// The decoded-frame memory tier.
    pub decoded_memory: TierUsage,
    /// The decoded-frame disk tier.
    pub decoded_disk: TierUsage,
}

/// The decoded-frame tiers' usage, from [`FrameCache::decoded_usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodedUsage {
    /// Pixel bytes the memory tier holds.
    pub memory_bytes: u64,
    /// Its capacity (0 when off).
    pub memory_capacity: u64,
    /// The raw entries on disk, when the disk tier is on.
    pub disk: Option<crate::tier::DiskUsage>,
}
