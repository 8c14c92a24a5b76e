//! Kernel locks on the cache directory: the directory lock (`flock`ed shared to reserve,
//! commit or remove, exclusive to recount) and the fetch locks that let one process per
//! machine download a missing key while the others wait for its entry.
//!
//! All are `flock` locks, which the kernel releases when their holder exits, however it
//! exits: a killed process never leaves a stale lock behind. They are [`LockFile`]s, so a
//! forked child never keeps one, and every wait for them is bounded.

use super::DiskTier;
use crate::flock::gate::LockKind;
use crate::flock::{LockFile, Mode, Waited};
use crate::localfs::{self, How, Sharing};
use crate::metrics::TierCounters;
use std::fs::File;
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
#[derive(Debug)]
pub enum FetchLock {
    /// This process holds the key's fetch lock until the lock file is dropped.
    Held(LockFile),
    /// Another process (or another fetch of this one in the same stripe) holds it.
    Busy,
    /// Locks do not work on this directory: fetch without one.
    Unsupported,
}

/// Opens (creating) a lock file, never through a link; read-only when it cannot be written
/// (a lock file of another user of the group, or a read-only directory).
pub(crate) fn open_lock_file(path: &Path, sharing: Sharing) -> std::io::Result<File> {
    localfs::open(path, How::ReadWriteCreate, sharing).or_else(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            return Err(e);
        }
        localfs::open(path, How::Read, sharing)
    })
}

impl DiskTier {
    /// Takes the directory's lock, shared or exclusive, on a descriptor of its own (flock
    /// locks belong to the open file, so threads of one process exclude each other too).
    ///
    /// `None` when the lock file cannot be opened (the directory is failing anyway) or when
    /// the lock stayed busy for [`DiskTier::lock_wait`]: the caller goes on without it.
    /// What it does stays safe (entries are linked into place whole); only the ledger may
    /// drift until the next recount. Timeouts are counted in `dir_lock_timeouts`.
    pub(super) fn lock(&self, exclusive: bool) -> Option<LockFile> {
        let path = self.inner.dir.join(LOCK_FILE);
        let sharing = self.inner.sharing;
        let file = LockFile::open(LockKind::Directory, || open_lock_file(&path, sharing)).ok()?;
        let mode = if exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        match file.lock_within(mode, self.lock_wait()) {
            Ok(Waited::Locked) => Some(file),
            Ok(Waited::TimedOut) => {
                TierCounters::bump(&self.metrics().dir_lock_timeouts);
                tracing::warn!(
                    "disk cache {}: its lock stayed busy for {:?}; going on without it",
                    self.inner.dir.display(),
                    self.lock_wait()
                );
                None
            }
            Err(_) => None,
        }
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
        let sharing = self.inner.sharing;
        let file = match LockFile::open(LockKind::Fetch, || open_lock_file(&path, sharing)) {
            Ok(file) => file,
            Err(_) => match localfs::create_dir_all(&dir, sharing)
                .and_then(|()| LockFile::open(LockKind::Fetch, || open_lock_file(&path, sharing)))
            {
                Ok(file) => file,
                Err(e) => return self.locks_unsupported(&e.to_string()),
            },
        };
        match file.try_lock(Mode::Exclusive) {
            Ok(true) => FetchLock::Held(file),
            Ok(false) => FetchLock::Busy,
            Err(e) => self.locks_unsupported(&e.to_string()),
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
