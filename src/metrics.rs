//! Every counter, defined once: the two tables at the bottom of this file yield the live
//! atomics ([`Metrics`], [`TierCounters`]), the snapshot ([`Stats`], [`TierStats`]: the
//! stats JSON and Python's dict), the Prometheus names and help, and the dashboard's series.
//!
//! Adding a counter is one entry in a table (its doc, its name, how it is shown), then
//! bumping it where it happens; `/metrics`, the dashboard and Python's dict follow, and
//! tests hold the Python stubs and docs/operations.md to the tables. A `sampled` entry (a
//! value kept elsewhere) is also filled in by [`crate::FrameCache::stats`].

use serde::Serialize;

mod eviction;
pub use eviction::{EvictionStatus, LimitedBy};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How one counter is shown beyond the snapshot: its Prometheus metric and its plot.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Counter {
    /// The field: in [`Stats`] or [`TierStats`], the stats JSON and Python's dict.
    pub name: &'static str,
    /// The Prometheus metric, or `""` when it is not exported.
    pub metric: &'static str,
    /// One line on what it counts: the metric's HELP.
    pub help: &'static str,
    /// A level (Prometheus gauge) rather than a running total.
    pub gauge: bool,
    /// The label that tells this counter apart from others sharing its metric name.
    pub label: Option<(&'static str, &'static str)>,
    /// The dashboard's series that plot it.
    pub shown: &'static [Shown],
}

impl Counter {
    /// A running total exported as `metric` (a name ending in `_total`).
    const fn total(metric: &'static str, help: &'static str) -> Self {
        Counter {
            name: "",
            metric,
            help,
            gauge: false,
            label: None,
            shown: &[],
        }
    }

    /// A level exported as `metric`.
    const fn gauge(metric: &'static str, help: &'static str) -> Self {
        Counter {
            gauge: true,
            ..Counter::total(metric, help)
        }
    }

    /// A counter kept out of `/metrics` (in the snapshot only).
    const fn unexported(help: &'static str) -> Self {
        Counter::total("", help)
    }

    /// This counter's sample of a metric several counters share, labelled `key="value"`.
    const fn label(self, key: &'static str, value: &'static str) -> Self {
        Counter {
            label: Some((key, value)),
            ..self
        }
    }

    /// Plotted by the dashboard as `shown`.
    const fn shown(self, shown: &'static [Shown]) -> Self {
        Counter { shown, ..self }
    }
}

/// A series of the dashboard (`server/dashboard.rs` has the plots) that plots a counter.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Shown {
    /// The plot's id.
    pub plot: &'static str,
    /// The series' name; for a tier's counter, `""` names one series per tier after it.
    /// Counters shown under one name are summed.
    pub series: &'static str,
    /// For a tier's counter: the tiers plotted (`&[]`: every tier).
    pub tiers: &'static [&'static str],
}

impl Shown {
    /// The series `series` of `plot`.
    const fn series(plot: &'static str, series: &'static str) -> Self {
        Shown {
            plot,
            series,
            tiers: &[],
        }
    }

    /// One series per tier in `tiers` (`&[]`: every tier), named after the tier.
    const fn each_tier(plot: &'static str, tiers: &'static [&'static str]) -> Self {
        Shown {
            plot,
            series: "",
            tiers,
        }
    }

    /// The series `series` of `plot`, for the origin only.
    const fn origin(plot: &'static str, series: &'static str) -> Self {
        Shown {
            plot,
            series,
            tiers: &["origin"],
        }
    }
}

/// One tier: its field in [`Metrics`] and [`Stats`], and whether `/metrics` has it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Tier {
    /// The field, and the `tier` label on `/metrics`.
    pub name: &'static str,
    /// Whether `/metrics` has its counters (`framecache_tier_*_total{tier=...}`).
    pub exported: bool,
}

/// Declares [`TierCounters`] (live) and [`TierStats`] (snapshot), one field per entry, and
/// [`TIER_COUNTERS`], the entries' [`Counter`]s in the same order.
macro_rules! tier_counters {
    ($( $(#[$doc:meta])* $field:ident: $counter:expr, )*) => {
        /// Live counters of one tier.
        #[derive(Debug, Default)]
        pub struct TierCounters {
            $( $(#[$doc])* pub(crate) $field: AtomicU64, )*
        }

        /// A point-in-time copy of one tier's counters.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
        pub struct TierStats {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl TierCounters {
            /// Copies the counters.
            pub fn snapshot(&self) -> TierStats {
                TierStats { $( $field: self.$field.load(Relaxed), )* }
            }
        }

        impl TierStats {
            /// Each counter with its value, in table order.
            #[cfg_attr(not(feature = "server"), allow(dead_code))]
            pub(crate) fn values(&self) -> impl Iterator<Item = (&'static Counter, u64)> {
                TIER_COUNTERS.iter().zip([$( self.$field, )*])
            }
        }

        /// Every counter of a tier, in the order of [`TierStats`]'s fields.
        #[cfg_attr(not(feature = "server"), allow(dead_code))]
        pub(crate) const TIER_COUNTERS: &[Counter] = &[
            $( Counter { name: stringify!($field), ..$counter }, )*
        ];
    };
}

/// Declares [`Metrics`] (live) and [`Stats`] (snapshot): a field per tier, per counted
/// entry (an atomic in [`Metrics`]) and per sampled entry (a value kept elsewhere, which
/// [`crate::FrameCache::stats`] fills in); and [`TIERS`] and [`COUNTERS`] (counted, then
/// sampled), in the order of [`Stats`]'s fields.
macro_rules! cache_counters {
    (
        tiers { $( $(#[$tdoc:meta])* $tier:ident: $exported:expr, )* }
        counted { $( $(#[$cdoc:meta])* $counted:ident: $ccounter:expr, )* }
        sampled { $( $(#[$sdoc:meta])* $sampled:ident: $scounter:expr, )* }
    ) => {
        /// Counters of a whole cache: one set per tier, plus what the chain itself observed.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[$tdoc])* pub $tier: TierCounters, )*
            $( $(#[$cdoc])* pub(crate) $counted: AtomicU64, )*
        }

        /// A point-in-time copy of every counter.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
        pub struct Stats {
            $( $(#[$tdoc])* pub $tier: TierStats, )*
            $( $(#[$cdoc])* pub $counted: u64, )*
            $( $(#[$sdoc])* pub $sampled: u64, )*
            /// How eviction stands on the disk tier's directory (machine-wide), when there
            /// is one; filled in by [`crate::FrameCache::stats`].
            pub disk_eviction: Option<EvictionStatus>,
            /// The same for the decoded-frame disk tier.
            pub decoded_disk_eviction: Option<EvictionStatus>,
        }

        impl Metrics {
            /// Copies every counter; the sampled values and the eviction status are left
            /// at zero and `None` ([`crate::FrameCache::stats`] fills them in).
            pub fn snapshot(&self) -> Stats {
                Stats {
                    $( $tier: self.$tier.snapshot(), )*
                    $( $counted: self.$counted.load(Relaxed), )*
                    ..Stats::default()
                }
            }
        }

        impl Stats {
            /// Each tier with its counters, in table order.
            #[cfg_attr(not(feature = "server"), allow(dead_code))]
            pub(crate) fn tiers(&self) -> impl Iterator<Item = (&'static Tier, &TierStats)> {
                TIERS.iter().zip([$( &self.$tier, )*])
            }

            /// Each counter outside the tiers with its value, in table order.
            #[cfg_attr(not(feature = "server"), allow(dead_code))]
            pub(crate) fn values(&self) -> impl Iterator<Item = (&'static Counter, u64)> {
                COUNTERS.iter().zip([$( self.$counted, )* $( self.$sampled, )*])
            }
        }

        /// The tiers, in the order of [`Stats`]'s fields.
        #[cfg_attr(not(feature = "server"), allow(dead_code))]
        pub(crate) const TIERS: &[Tier] = &[
            $( Tier { name: stringify!($tier), exported: $exported }, )*
        ];

        /// The counters outside the tiers, in the order of [`Stats`]'s fields.
        #[cfg_attr(not(feature = "server"), allow(dead_code))]
        pub(crate) const COUNTERS: &[Counter] = &[
            $( Counter { name: stringify!($counted), ..$ccounter }, )*
            $( Counter { name: stringify!($sampled), ..$scounter }, )*
        ];
    };
}

impl TierCounters {
    pub(crate) fn hit(&self, bytes: usize) {
        self.hits.fetch_add(1, Relaxed);
        self.bytes_read.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }

    pub(crate) fn wrote(&self, bytes: usize) {
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The tiers the dashboard plots evictions for (the origin evicts nothing).
const LOCAL_TIERS: &[&str] = &["memory", "disk", "decoded_memory", "decoded_disk"];

tier_counters! {
    /// Reads answered by this tier.
    hits: Counter::total("framecache_tier_hits_total", "Reads answered by the tier.").shown(&[
        Shown::each_tier("hits", &[]),
        Shown::origin("origin", "reads"),
    ]),
    /// Reads this tier could not answer.
    misses: Counter::total("framecache_tier_misses_total", "Reads the tier could not answer.")
        .shown(&[Shown::origin("origin", "reads")]),
    /// Payload bytes returned by hits.
    bytes_read: Counter::total("framecache_tier_bytes_read_total", "Payload bytes returned by hits.")
        .shown(&[Shown::origin("origin-bytes", "read")]),
    /// Payload bytes stored.
    bytes_written: Counter::total("framecache_tier_bytes_written_total", "Payload bytes stored.")
        .shown(&[Shown::origin("origin-bytes", "written")]),
    /// Entries stored.
    writes: Counter::total("framecache_tier_writes_total", "Entries stored.")
        .shown(&[Shown::origin("origin", "writes")]),
    /// Entries found corrupt, removed and treated as misses (disk tier).
    corrupt: Counter::total("framecache_tier_corrupt_total", "Entries found corrupt and removed."),
    /// Entries removed to stay within capacity.
    evictions: Counter::total(
        "framecache_tier_evictions_total",
        "Entries removed to stay within capacity.",
    )
    .shown(&[Shown::each_tier("evictions", LOCAL_TIERS)]),
    /// Operations that failed (for a local tier: degraded to a miss or a skipped write).
    errors: Counter::total("framecache_tier_errors_total", "Operations that failed.")
        .shown(&[Shown::origin("origin", "errors")]),
    /// Retried origin requests.
    retries: Counter::total("framecache_tier_retries_total", "Retried origin requests.")
        .shown(&[Shown::origin("origin", "retries")]),
}

/// The HELP of `framecache_lock_timeouts_total`, which the lock-timeout counters share.
const LOCK_TIMEOUTS: &str =
    "Lock waits that reached their bound; the waiter went on without the lock.";

cache_counters! {
    tiers {
        /// The memory tier.
        memory: true,
        /// The disk tier.
        disk: true,
        /// Blob storage.
        origin: true,
        /// The decoded-frame memory tier.
        decoded_memory: false,
        /// The decoded-frame disk tier.
        decoded_disk: false,
    }
    counted {
        /// Gets served by joining a fetch already in flight.
        coalesced: Counter::total(
            "framecache_coalesced_total",
            "Gets that joined a fetch already in flight.",
        ),
        /// Listed object names that were not canonical and were skipped.
        skipped_names: Counter::total(
            "framecache_skipped_names_total",
            "Listed object names that were not canonical and were skipped.",
        ),
        /// Timeline loads served from the local copy of their manifest while the origin
        /// failed.
        offline_loads: Counter::total(
            "framecache_offline_loads_total",
            "Timeline loads served from a local manifest while the origin failed.",
        ),
        /// Misses served by another process's fetch (it held the key's fetch lock; this one
        /// waited for its disk entry instead of downloading the key again).
        fetched_by_other_process: Counter::unexported("Misses served by another process's fetch."),
        /// Waits for another process's fetch that ran out of time, after which this one
        /// fetched.
        fetch_lock_timeouts: Counter::total("framecache_lock_timeouts_total", LOCK_TIMEOUTS)
            .label("lock", "fetch"),
        /// JPEG decodes this process ran for loads.
        decodes: Counter::unexported("JPEG decodes this process ran for loads.")
            .shown(&[Shown::series("decodes", "decodes")]),
        /// Thumbnails this process made (decoded at a scale and encoded again); their
        /// decodes count in `decodes` too.
        thumbnails: Counter::unexported("Thumbnails this process made.")
            .shown(&[Shown::series("decodes", "of them thumbnails")]),
        /// Frames another process was decoding when this one wanted them: it waited on the
        /// frame's decode lock, then mapped the entry the other wrote. A frame whose entry
        /// was already on disk is a plain hit (`decoded_disk.hits`), not a wait.
        decode_waits: Counter::unexported("Frames another process was decoding: waited for.")
            .shown(&[Shown::series("decodes", "waited for another")]),
        /// Manifests that did not parse: each time, a timeline loaded without its metadata
        /// (chunk ids, timestamps, hashes); the log says why.
        unreadable_manifests: Counter::unexported("Manifests read from the origin that did not parse."),
        /// Disk tiers that could not allocate the shared ledger page in their cache
        /// directory (a full or read-only filesystem) and count their usage privately: the
        /// capacity then holds per process, not per machine.
        private_ledgers: Counter::unexported("Disk tiers counting their usage privately."),
        /// Waits for a frame's decode lock that ran out of time
        /// ([`crate::CacheConfig::lock_wait`]), after which this one decoded the frame
        /// itself.
        decode_lock_timeouts: Counter::total("framecache_lock_timeouts_total", LOCK_TIMEOUTS)
            .label("lock", "decode"),
        /// Waits for a disk cache directory's lock (or a write's temp-file lock) that ran
        /// out of time, after which this one went on without it.
        dir_lock_timeouts: Counter::total("framecache_lock_timeouts_total", LOCK_TIMEOUTS)
            .label("lock", "directory"),
        /// Raw frames this process decoded whose disk entry could not be written: the
        /// decoded disk tier was full beside the writes in progress, or an I/O error (the
        /// frame is decoded again on a later miss). Never for lack of room in the queue
        /// behind loads: a write that does not fit there is done by the loader itself.
        raw_writes_dropped: Counter::total(
            "framecache_raw_writes_dropped_total",
            "Raw decoded frames whose disk entry could not be written (disk full, I/O error).",
        ),
        /// Requests this cache sent to the origin: reads, stats, writes, deletes, and one
        /// per page of 1,000 names of each listing (retries of a failed attempt not
        /// counted).
        origin_requests: Counter::unexported("Requests this cache sent to the origin."),
    }
    sampled {
        /// Lock descriptors this process inherited through `fork` and closed at once (its
        /// parent's threads held them open at the fork); process-wide.
        inherited_locks_closed: Counter::total(
            "framecache_inherited_locks_closed_total",
            "Lock descriptors inherited through fork and closed in the child.",
        ),
        /// Raw-frame writes queued behind loads and not yet done; process-wide.
        raw_writes_pending: Counter::gauge(
            "framecache_raw_writes_pending",
            "Raw decoded frames queued behind loads and not yet written.",
        ),
    }
}

#[cfg(test)]
mod tests;
