//! The tiers: one trait, one file per tier. The read-through chain composes them.

mod blob;
mod disk;
mod memory;

pub use blob::{BlobTier, ObjectInfo, Origin};
pub use disk::{DiskTier, DiskUsage};
pub use memory::MemoryTier;

use crate::error::Result;
use bytes::Bytes;
use futures::future::BoxFuture;
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

/// A key-value store of immutable byte payloads.
///
/// A miss is `Ok(None)`. Futures are boxed so tiers can be composed and substituted at run
/// time (`Arc<dyn Tier>`); the box costs tens of nanoseconds next to a microsecond hit.
pub trait Tier: Send + Sync {
    /// Reads `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;
    /// Stores `value` under `key`, replacing what was there.
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<()>>;
    /// Removes `key`; removing a missing key succeeds.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
}
