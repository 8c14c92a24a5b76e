//! Building the chain a configuration describes: the cache directory checked, the disk
//! capacities resolved against its filesystem, the memory, disk and decoded tiers opened in
//! front of the origin.

use super::TieredCache;
use crate::config::{
    AUTO_CAPACITY, AUTO_DECODED_MAX, AUTO_DECODED_PERCENT, AUTO_DISK_MAX, AUTO_DISK_PERCENT,
    CacheConfig,
};
use crate::error::Result;
use crate::localfs;
use crate::metrics::Metrics;
use crate::store::MinFree;
use crate::tier::{DiskTier, MemoryTier, Origin};
use std::sync::Arc;

impl CacheConfig {
    /// Assembles the tiers described by this configuration.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) or [`Error::Io`](crate::Error::Io) when the origin cannot be set up.
    pub fn build(&self) -> Result<TieredCache> {
        self.prepare_cache_dir()?;
        let metrics = Arc::new(Metrics::default());
        let origin: Arc<dyn Origin> = Arc::new(crate::tier::build_origin(self, &metrics)?);
        Ok(self.build_with_origin(origin, metrics))
    }

    /// The JPEG and decoded disk tiers' capacities, [`AUTO_CAPACITY`] resolved against the
    /// filesystem of the cache directory; `None` without a disk tier.
    pub fn disk_capacities(&self) -> Option<(u64, u64)> {
        let disk = self.disk.as_ref()?;
        let resolve = |capacity: u64, percent: u64, max: u64| {
            if capacity == AUTO_CAPACITY {
                crate::tier::auto_capacity(&disk.dir, percent, max)
            } else {
                capacity
            }
        };
        Some((
            resolve(disk.capacity, AUTO_DISK_PERCENT, AUTO_DISK_MAX),
            resolve(
                self.decoded.disk_capacity,
                AUTO_DECODED_PERCENT,
                AUTO_DECODED_MAX,
            ),
        ))
    }

    /// Creates the disk cache directory (if any) and checks it before use: owned by this
    /// user (or shared as [`CacheConfig::sharing`] says), not on a network filesystem unless
    /// [`crate::DiskConfig::allow_network_fs`]. [`CacheConfig::build`] calls it; a builder that
    /// starts from [`CacheConfig::build_with_origin`] calls it first.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the directory, what is wrong and the setting that changes
    /// it; [`Error::Io`](crate::Error::Io) when it cannot be created.
    pub fn prepare_cache_dir(&self) -> Result<()> {
        match &self.disk {
            Some(disk) => {
                localfs::prepare_cache_dir(&disk.dir, self.sharing, disk.allow_network_fs)
            }
            None => Ok(()),
        }
    }

    /// Assembles the decoded-frame tiers, counting into `metrics`; `None` when both are off.
    pub(crate) fn build_decoded(
        &self,
        metrics: Arc<Metrics>,
    ) -> Option<crate::decoded::DecodedTiers> {
        let capacities = self.disk_capacities();
        let disk = self
            .disk
            .as_ref()
            .zip(capacities)
            .map(|(d, (_, decoded))| (d.dir.as_path(), decoded));
        let space = crate::decoded::DiskSpace {
            min_free: self
                .disk
                .as_ref()
                .map_or_else(MinFree::default, |d| d.min_free),
            jpeg_capacity: capacities.map_or(0, |c| c.0),
        };
        crate::decoded::DecodedTiers::new(
            self.decoded.memory_capacity,
            disk,
            space,
            self.lock_wait,
            self.sharing,
            metrics,
        )
    }

    /// Assembles the local tiers in front of a given origin (a wrapped or instrumented one).
    pub fn build_with_origin(&self, origin: Arc<dyn Origin>, metrics: Arc<Metrics>) -> TieredCache {
        let memory = (self.memory.capacity > 0)
            .then(|| MemoryTier::new(self.memory.capacity, metrics.clone()));
        let disk = self
            .disk
            .as_ref()
            .zip(self.disk_capacities())
            .map(|(d, (jpeg, decoded))| {
                DiskTier::open_with(&d.dir, jpeg, self.sharing, metrics.clone())
                    .with_lock_wait(self.lock_wait)
                    .with_min_free(d.min_free)
                    // The decoded tier of the same cache directory: the spare space is shared.
                    .with_sibling(&d.dir.join(crate::decoded::DECODED_DIR), decoded)
            });
        TieredCache::new(memory, disk, origin, metrics)
            .with_max_object_size(self.origin.max_object_size)
    }
}
