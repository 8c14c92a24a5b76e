//! How the store takes its locks: the directory lock within its bound (going on without it,
//! counted, past the bound), and a key's fetch lock, tried without waiting.

use super::engine::Store;
use super::lock::DirGuard;
use crate::flock::{LockFile, Mode};
use crate::metrics::TierCounters;
use std::sync::atomic::Ordering;

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

impl Store {
    /// Takes the directory's lock, shared or exclusive.
    ///
    /// `None` when the lock file cannot be opened (the directory is failing anyway) or when
    /// the lock stayed busy for [`Store::lock_wait`]: the caller goes on without it.
    /// What it does stays safe (entries are linked into place whole); only the ledger may
    /// drift until the next recount. Timeouts are counted in `dir_lock_timeouts`.
    pub(super) fn lock(&self, exclusive: bool) -> Option<DirGuard<'_>> {
        let mode = if exclusive {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        match self.inner.dir_lock.take(mode, self.lock_wait()) {
            Ok(Some(guard)) => Some(guard),
            Ok(None) => {
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
        let stripes = &self.inner.fetch_stripes;
        let file = match stripes.open(&stripes.path(key)) {
            Ok(file) => file,
            Err(e) => return self.locks_unsupported(&e.to_string()),
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
