//! Decoded frames: `decoded memory => decoded disk => decode once per machine`.
//!
//! A load wants pixels, and decoding a 1280x720 JPEG costs about 2 ms of CPU; these tiers
//! keep the result. Entries are keyed by the frame's key, the blake3 of the JPEG they were
//! decoded from and the scale, so a changed JPEG can never return old pixels: its hash names
//! another entry. The memory tier hands out the buffers it holds without copying; the disk
//! tier holds raw frames that every process maps, so N workers loading one timeline decode
//! it once per machine and share the page cache. Like the JPEG tiers, a failing decoded
//! tier is counted and treated as a miss, never a failed load.

mod disk;
mod format;
mod frame;
mod memfd;
mod memory;
mod raw_writer;

pub use disk::DECODED_DIR;
pub(crate) use disk::Space as DiskSpace;
pub use format::{HEADER_LEN as RAW_HEADER_LEN, RAW_VERSION};
#[cfg(feature = "test-hooks")]
pub(crate) use format::{
    check_header as raw_check_header, read_name as raw_name, validate as raw_validate,
};
#[cfg(test)]
pub(crate) use format::{seal as seal_raw, write_header as write_raw_header};
pub use raw_writer::QUEUE_BYTES as RAW_WRITE_QUEUE_BYTES;
#[doc(hidden)]
pub use raw_writer::set_queue_bytes as set_raw_write_queue_bytes;

use crate::codec;
use crate::metrics::{Metrics, TierCounters};
use crate::store::{DiskUsage, VerifyReport};
use crate::tier::Source;
use disk::{Decode, DecodedDisk};
pub use frame::Access;
use frame::decode_in_memory;
pub(crate) use frame::{Decoded, DecodedKey};
use memory::DecodedMemory;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a clear waits for the raw-frame writes queued in this process.
const RAW_FLUSH_ON_CLEAR: Duration = Duration::from_secs(30);

/// Raw-frame writes this process has queued behind loads and not finished.
pub(crate) fn raw_writes_pending() -> u64 {
    raw_writer::pending() as u64
}

/// Waits up to `bound` for the raw frames this process decoded to be written to the
/// decoded disk tier (by every cache handle of the process); whether none is left. Loads do
/// not wait for these writes (see `docs/design.md`); a process that wants its raw frames on
/// disk before it exits, or a test, calls this. Blocking.
pub fn flush_raw_writes(bound: Duration) -> bool {
    raw_writer::flush(bound)
}

/// The decoded-frame tiers of one cache handle.
pub(crate) struct DecodedTiers {
    memory: Option<DecodedMemory>,
    disk: Option<DecodedDisk>,
    metrics: Arc<Metrics>,
}

/// Budgets of the decoded tiers (see [`crate::DecodedConfig`]).
impl DecodedTiers {
    pub(crate) fn new(
        memory_capacity: u64,
        disk: Option<(&Path, u64)>,
        space: DiskSpace,
        lock_wait: Duration,
        sharing: crate::localfs::Sharing,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        let memory =
            (memory_capacity > 0).then(|| DecodedMemory::new(memory_capacity, metrics.clone()));
        let disk = disk
            .filter(|(_, capacity)| *capacity > 0)
            .map(|(dir, capacity)| {
                DecodedDisk::open(dir, capacity, space, lock_wait, sharing, metrics.clone())
            });
        (memory.is_some() || disk.is_some()).then_some(DecodedTiers {
            memory,
            disk,
            metrics,
        })
    }

    /// Whether the disk tier is on.
    pub(crate) fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The memory tier only: no I/O, cheap enough for the async workers.
    pub(crate) fn memory_get(&self, key: &DecodedKey) -> Option<Arc<Decoded>> {
        self.memory.as_ref()?.get(key)
    }

    /// Memory, then disk (blocking), without decoding; the tier that answered.
    pub(crate) fn get_blocking(&self, key: &DecodedKey) -> Option<(Arc<Decoded>, Source)> {
        match self.memory_get(key) {
            Some(found) => Some((found, Source::Memory)),
            None => Some((self.disk_get_blocking(key)?, Source::Disk)),
        }
    }

    /// The disk tier (blocking): a verified entry is promoted to memory.
    fn disk_get_blocking(&self, key: &DecodedKey) -> Option<Arc<Decoded>> {
        let disk = self.disk.as_ref()?;
        match disk.read(&key.name()) {
            Ok(Some(found)) => Some(self.promote(key, Arc::new(found))),
            Ok(None) => None,
            Err(e) => {
                self.disk_failed(&e);
                None
            }
        }
    }

    fn promote(&self, key: &DecodedKey, found: Arc<Decoded>) -> Arc<Decoded> {
        if let Some(memory) = &self.memory {
            memory.insert(key.clone(), found.clone());
        }
        found
    }

    fn disk_failed(&self, err: &crate::error::Error) {
        TierCounters::bump(&self.metrics.decoded_disk.errors);
        if let Some(disk) = &self.disk {
            disk.store().warn_once(err);
        }
    }

    /// Memory, then disk, then a decode of `jpeg` (once per machine when the disk tier is
    /// on: concurrent loads of the frame, in this process or others, wait for one decode).
    /// Returns the tier that answered, `None` for a decode done here. A frame over
    /// `max_pixels` is refused from its header, before anything is allocated for it.
    ///
    /// # Errors
    /// The decoder's error when `jpeg` does not decode; nothing is kept then.
    pub(crate) fn get_or_decode_blocking(
        &self,
        key: &DecodedKey,
        jpeg: &[u8],
        max_pixels: u64,
    ) -> std::result::Result<(Arc<Decoded>, Option<Source>), codec::DecodeError> {
        if let Some(found) = self.memory_get(key) {
            return Ok((found, Some(Source::Memory)));
        }
        if let Some(disk) = &self.disk {
            match disk.decode_once(&key.name(), jpeg, key.scale, max_pixels) {
                Ok(Ok(Decode::Found(found))) => {
                    return Ok((self.promote(key, found), Some(Source::Disk)));
                }
                Ok(Ok(Decode::Waited(found))) => {
                    TierCounters::bump(&self.metrics.decode_waits);
                    return Ok((self.promote(key, found), Some(Source::Disk)));
                }
                Ok(Ok(Decode::Decoded(fresh))) => {
                    TierCounters::bump(&self.metrics.decodes);
                    return Ok((self.promote(key, fresh), None));
                }
                Ok(Err(reason)) => return Err(reason),
                Err(e) => self.disk_failed(&e),
            }
        }
        let decoded = decode_in_memory(jpeg, key.scale, max_pixels)?;
        TierCounters::bump(&self.metrics.decodes);
        Ok((self.promote(key, Arc::new(decoded)), None))
    }

    /// Drops every decoded frame whose frame key starts with `prefix`, from memory and disk;
    /// returns the disk entries removed.
    pub(crate) fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        // A write still queued would bring an entry back after the scan.
        if self.disk.is_some() && !raw_writer::flush(RAW_FLUSH_ON_CLEAR) {
            tracing::warn!("raw frame writes still queued after {RAW_FLUSH_ON_CLEAR:?}; clearing");
        }
        if let Some(memory) = &self.memory {
            memory.invalidate_prefix(prefix);
        }
        self.disk
            .as_ref()
            .map_or(0, |d| d.remove_prefix_blocking(prefix))
    }

    /// Checks every raw entry on disk; see [`crate::store::Store`].
    pub(crate) fn verify_blocking(&self, progress: impl FnMut(u64, u64)) -> Option<VerifyReport> {
        self.disk.as_ref().map(|d| d.verify_blocking(progress))
    }

    /// Disk usage of the raw entries, if the disk tier is on.
    pub(crate) fn disk_usage(&self) -> Option<DiskUsage> {
        self.disk.as_ref().map(|d| d.usage())
    }

    /// How eviction of the raw entries stands, if the disk tier is on (no scan).
    pub(crate) fn disk_eviction(&self) -> Option<crate::store::EvictionStatus> {
        self.disk.as_ref().map(|d| d.store().eviction_status())
    }

    /// Bytes the shared ledger counts on disk and the capacity, if the disk tier is on
    /// (no scan).
    pub(crate) fn disk_accounted(&self) -> Option<(u64, u64)> {
        self.disk
            .as_ref()
            .map(|d| (d.store().accounted(), d.store().capacity()))
    }

    /// Bytes the memory tier holds and its capacity, if it is on.
    pub(crate) fn memory_usage(&self) -> Option<(u64, u64)> {
        self.memory.as_ref().map(|m| (m.held_bytes(), m.capacity()))
    }

    /// Drops the memory tier's frames (the disk keeps its own).
    pub(crate) fn clear_memory(&self) {
        if let Some(memory) = &self.memory {
            memory.clear();
        }
    }
}
