//! How eviction stands on a disk tier's directory, as the stats report it: plain data the
//! store fills in, defined here so the counters need nothing from the tiers.

use serde::Serialize;

/// How eviction stands on a cache directory, from the ledger every process shares.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EvictionStatus {
    /// Whether an evictor is running on this machine (its heartbeat is recent).
    pub evictor_running: bool,
    /// Whether this process is the evictor.
    pub evictor_here: bool,
    /// The evictor's pid (0 before any evictor ran).
    pub evictor_pid: u64,
    /// Bytes in use: entries plus writes in progress.
    pub used_bytes: u64,
    /// Eviction stops at this usage.
    pub low_watermark: u64,
    /// Eviction starts above this usage.
    pub high_watermark: u64,
    /// The effective limit: above it a writer evicts one batch itself, or is refused. The
    /// capacity, or less when the filesystem cannot spare it (`limited_by`).
    pub hard_limit: u64,
    /// The capacity (the budget), as configured or as it follows the filesystem's size.
    pub capacity: u64,
    /// Why `hard_limit` is what it is: `budget` (the capacity) or `free_space`.
    pub limited_by: LimitedBy,
    /// The size of the filesystem under the directory, as last sampled (0 when unknown).
    pub fs_size: u64,
    /// Its bytes available to the cache, as last sampled.
    pub fs_free: u64,
    /// The bytes the tiers leave free on it (the `min_free` setting).
    pub min_free: u64,
    /// Writes that found the filesystem full: skipped (the load went on without them), and
    /// a batch evicted to make room.
    pub full_writes: u64,
    /// Whether every shard's counter has been set by a recount (false until the first
    /// rebuild of a new or foreign ledger ends).
    pub counted: bool,
    /// Eviction rounds completed on this directory.
    pub rounds: u64,
    /// The last round's duration, in microseconds.
    pub last_round_us: u64,
    /// Entries the last round removed.
    pub last_round_entries: u64,
    /// Bytes the last round freed.
    pub last_round_bytes: u64,
    /// Writes that found usage above the hard limit and evicted a batch themselves.
    pub writer_batches: u64,
    /// Shards recounted after a process died while changing them.
    pub repaired_shards: u64,
    /// Full rebuilds of the counters.
    pub rebuilds: u64,
    /// The last rebuild's duration, in microseconds.
    pub last_rebuild_us: u64,
    /// Times the evictor's lock changed hands.
    pub takeovers: u64,
}

/// Why a tier's limit is what it is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// Not sampled yet.
    #[default]
    Unknown,
    /// The capacity (the budget): the filesystem can spare more.
    Budget,
    /// What the filesystem can spare beside `min_free` and the other tiers on it.
    FreeSpace,
}

impl LimitedBy {
    pub(crate) fn code(self) -> u64 {
        match self {
            LimitedBy::Unknown => 0,
            LimitedBy::Budget => 1,
            LimitedBy::FreeSpace => 2,
        }
    }
}
