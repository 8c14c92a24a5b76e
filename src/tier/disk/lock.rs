//! The directory lock: `flock`ed shared to reserve, commit or remove, exclusive to recount.

use super::DiskTier;
use std::fs::{File, OpenOptions};

/// The lock file.
pub(super) const LOCK_FILE: &str = ".lock";

impl DiskTier {
    /// Takes the directory's lock, shared or exclusive, on a descriptor of its own (flock
    /// locks belong to the open file, so threads of one process exclude each other too).
    /// `None` when the lock file cannot be opened: the directory is failing anyway.
    pub(super) fn lock(&self, exclusive: bool) -> Option<File> {
        let path = self.inner.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .or_else(|_| File::open(&path))
            .ok()?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.ok().map(|()| file)
    }
}
