//! The tiers, one module each: memory, disk, and the origin (blob storage). The
//! read-through chain, [`crate::TieredCache`], composes them.

mod disk;
mod memory;
mod origin;

pub use disk::{
    BadEntry, DiskTier, DiskUsage, EvictionStatus, FetchLock, LimitedBy, MinFree, Recount,
    VerifyReport, auto_capacity,
};
pub use memory::MemoryTier;
#[cfg(feature = "test-hooks")]
pub use origin::build_origin_with_read_faults;
pub use origin::{
    BlobTier, LIST_PAGE, Limit, ListPage, ObjectInfo, Origin, PutCondition, PutOutcome, Version,
    build_operator, build_origin,
};

use serde::Serialize;

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The in-process memory tier.
    Memory,
    /// The local disk tier, shared by the processes of one machine.
    Disk,
    /// Blob storage.
    Origin,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Origin => "origin",
        })
    }
}
