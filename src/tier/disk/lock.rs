//! Kernel locks on the cache directory: the directory lock (`flock`ed shared to reserve,
//! commit or remove, exclusive to recount) and the fetch locks that let one process per
//! machine download a missing key while the others wait for its entry.
//!
//! All are `flock` locks, which the kernel releases when their holder exits, however it
//! exits: a killed process never leaves a stale lock behind.

use super::DiskTier;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::atomic::Ordering;

/// The lock file.
pub(super) const LOCK_FILE: &str = ".lock";
/// Directory of the fetch-lock files.
const FETCH_LOCK_DIR: &str = ".fetch";
/// Fetch locks are striped: misses of keys in one stripe take turns, and the directory
/// holds at most this many lock files, never deleted (deleting a lock file others may be
/// waiting on would let two holders in).
const FETCH_LOCK_STRIPES: u64 = 4096;

/// The outcome of trying to become the process that fetches a key for the machine.
pub enum FetchLock {
    /// This process holds the key's fetch lock until the file is dropped.
    Held(File),
    /// Another process (or another fetch of this one in the same stripe) holds it.
    Busy,
    /// Locks do not work on this directory: fetch without one.
    Unsupported,
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .or_else(|_| File::open(path))
}

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
        crate::flock::gate::reached(crate::flock::gate::LockKind::Directory, &file);
        locked.ok().map(|()| file)
    }

    /// Tries, without waiting, to take the fetch lock of `key`'s stripe.
    pub fn try_fetch_lock(&self, key: &str) -> FetchLock {
        let stripe = u64::from_le_bytes(
            blake3::hash(key.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        ) % FETCH_LOCK_STRIPES;
        let dir = self.inner.dir.join(FETCH_LOCK_DIR);
        let path = dir.join(format!("{stripe:03x}"));
        let file = match open_lock_file(&path) {
            Ok(file) => file,
            Err(_) => match fs::create_dir_all(&dir).and_then(|()| open_lock_file(&path)) {
                Ok(file) => file,
                Err(e) => return self.locks_unsupported(&e.to_string()),
            },
        };
        match file.try_lock() {
            Ok(()) => {
                crate::flock::gate::reached(crate::flock::gate::LockKind::Fetch, &file);
                FetchLock::Held(file)
            }
            Err(TryLockError::WouldBlock) => FetchLock::Busy,
            Err(TryLockError::Error(e)) => self.locks_unsupported(&e.to_string()),
        }
    }

    fn locks_unsupported(&self, why: &str) -> FetchLock {
        if !self.inner.locks_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "disk cache {}: fetch locks unavailable ({why}); processes on this machine may \
                 download the same frame more than once",
                self.inner.dir.display()
            );
        }
        FetchLock::Unsupported
    }
}
