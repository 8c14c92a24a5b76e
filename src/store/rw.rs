//! Writing and removing one entry: reserve in the ledger, temp file, link into place;
//! unlink and release; the referenced bit a use sets; whether a temp file's writer is gone.

use super::engine::Store;
use super::evict::shard_of;
use super::temp::{STALE_TEMP_AGE, TEMP_PREFIX, TempName, process_alive};
use crate::error::{Error, Result};
use crate::flock::LockKind;
use crate::flock::{LockFile, Mode, Waited};
use crate::localfs::{self, How};
use crate::metrics::TierCounters;
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

impl Store {
    /// Records that the entry at `path` was used: sets its referenced bit, which the
    /// eviction hand takes instead of evicting it. No syscall, no metadata write.
    pub(crate) fn mark_used(&self, path: &Path) {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            self.inner.clock.mark(name);
        }
    }

    /// Unlinks an entry and releases its bytes; `Ok(false)` when it was already gone.
    pub(crate) fn unlink_entry(&self, path: &Path) -> io::Result<bool> {
        let _shared = self.lock(false);
        self.release(path).map(|len| len.is_some())
    }

    /// Unlinks the entry at `path` and releases exactly its bytes from the ledger.
    ///
    /// The entry is first renamed to a name of this process's own: of several processes
    /// replacing or removing one key at once, exactly one moves a given file away, and the
    /// size it then reads is that file's, so the ledger never drifts. A process killed in
    /// between leaves a temp file whose writer is dead, which gets the shard recounted
    /// (the bytes are released before the file is removed for that reason: every crash
    /// window leaves such a trace). The caller holds the directory lock (shared). Returns
    /// the bytes released, `None` when the entry was already gone.
    pub(super) fn release(&self, path: &Path) -> io::Result<Option<u64>> {
        let Some(shard) = path.parent() else {
            return Ok(None);
        };
        let tomb = shard.join(self.temp_name(0));
        match fs::rename(path, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = fs::symlink_metadata(&tomb).map(|m| m.len()).unwrap_or(0);
        self.inner.ledger.sub(shard_of(path), len);
        fs::remove_file(&tomb)?;
        Ok(Some(len))
    }

    /// Writes a file of exactly `len` bytes as `key`'s entry: reserves the bytes (evicting
    /// one batch first if that crosses the capacity), lets `fill` write the temp file, links it into
    /// place. Returns the file, now the entry. `fill` defines the format; readers validate it.
    /// The caller counts the write.
    ///
    /// # Errors
    /// When the directory cannot be written, when `fill` fails (nothing is left behind), or
    /// when the entry does not fit even after eviction ([`ErrorKind::QuotaExceeded`]: the
    /// writes in progress, this one included, exceed the capacity).
    pub(crate) fn write_file_blocking(
        &self,
        key: &str,
        len: u64,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<File> {
        let path = self.path_of(key);
        // The capacity, or less when the filesystem cannot spare it (sampled now and then).
        let limit = self.limit();
        let full = |why: &str| {
            let e = io::Error::new(
                ErrorKind::QuotaExceeded,
                format!("{len} bytes do not fit in the limit of {limit} bytes{why}"),
            );
            Err(Error::io("write cache entry", &path, e))
        };
        if len > limit {
            // Refused before reserving, so it evicts nothing.
            return full("");
        }
        let shard = path.parent().expect("entry paths have a shard directory");
        let (tmp, file, used) = self.reserve(shard, len).map_err(|e| {
            self.on_write_error(&e);
            Error::io("write cache entry", &path, e)
        })?;
        self.count_towards_sample(len);
        // Between the watermarks the evictor is at work; above the limit this writer
        // evicts one bounded batch itself.
        if used > limit && !self.make_room(&tmp, len) {
            return full(" beside the writes in progress");
        }
        // The temp file stays open (and locked, marking its writer alive) until committed.
        let written = fill(file.file()).and_then(|()| self.commit(&tmp, &path));
        if let Err(e) = written {
            let _shared = self.lock(false);
            if tmp.exists() {
                // Released first: a crash before the removal leaves a dead writer's temp
                // file, which gets the shard recounted.
                self.inner.ledger.sub(shard_of(&tmp), len);
                let _ = fs::remove_file(&tmp);
            }
            // Unlocked before making room: eviction may recount a shard, exclusively.
            drop((_shared, file));
            self.on_write_error(&e);
            return Err(Error::io("write cache entry", path, e));
        }
        // Written is used: the hand passes it once before it can be evicted.
        self.mark_used(&path);
        // Now an entry: its lock marked a write in progress and goes.
        Ok(file.into_file())
    }

    /// Creates the temp file and reserves `len` bytes in the ledger, under the shared lock
    /// so that a recount sees either both or neither. Returns the ledger's new total.
    pub(super) fn reserve(&self, shard: &Path, len: u64) -> io::Result<(PathBuf, LockFile, u64)> {
        let tmp = shard.join(self.temp_name(len));
        let _shared = self.lock(false);
        let sharing = self.inner.sharing;
        let create = || {
            LockFile::open(LockKind::Temp, || {
                localfs::open(&tmp, How::CreateNew, sharing)
            })
        };
        let file = match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                localfs::create_dir_all(shard, sharing)?;
                create()?
            }
            other => other?,
        };
        // Held until the file is committed: a recount that can take this lock knows the
        // writer is gone, whatever PID namespace either of them runs in. Waited for, not
        // only tried: a probe of temp files holds a probed file's lock for a moment, and a
        // writer that gave up its lock then would look dead to the next recount, which would
        // delete the write in progress. Past the bound the write goes on unlocked: a recount
        // may then delete it, which fails the write cleanly (its link finds no file).
        if let Ok(Waited::TimedOut) = file.lock_within(Mode::Exclusive, self.lock_wait()) {
            TierCounters::bump(&self.metrics().dir_lock_timeouts);
        }
        let used = self.inner.ledger.add(shard_of(&tmp), len);
        Ok((tmp, file, used))
    }

    /// Links the finished temp file into place, replacing (and releasing) an older entry.
    pub(super) fn commit(&self, tmp: &Path, path: &Path) -> io::Result<()> {
        let _shared = self.lock(false);
        for _ in 0..8 {
            match fs::hard_link(tmp, path) {
                Ok(()) => {
                    // The entry is in place; a leftover link is swept by a later recount.
                    let _ = fs::remove_file(tmp);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    self.release(path)?;
                }
                Err(_) => {
                    // No hard links on this filesystem: move the old entry away, then
                    // rename the new one into place.
                    self.release(path)?;
                    fs::rename(tmp, path)?;
                    return Ok(());
                }
            }
        }
        Err(io::Error::other(
            "the entry kept being replaced by other writers",
        ))
    }

    /// Marks `key`'s entry as used, as a hit does, for entries that are read rarely but
    /// must stay as long as what they describe. Sets one shared bit, whether or not the
    /// entry exists.
    pub fn touch_blocking(&self, key: &str) {
        self.mark_used(&self.path_of(key));
    }

    /// Removes `key`'s entry on the calling thread.
    ///
    /// # Errors
    /// When the file exists and cannot be removed.
    pub fn remove_blocking(&self, key: &str) -> Result<()> {
        let path = self.path_of(key);
        self.unlink_entry(&path)
            .map(|_| ())
            .map_err(|e| Error::io("remove cache entry", path, e))
    }

    /// Removes `key`'s entry and the entries of every version of it, reading only the
    /// key's shard directory. Returns the entries removed.
    pub fn remove_all_versions_blocking(&self, key: &str) -> u64 {
        let path = self.path_of(key);
        let (Some(shard), Some(name)) = (path.parent(), path.file_name()) else {
            return 0;
        };
        let name = name.to_string_lossy().into_owned();
        if !localfs::is_real_dir(shard) {
            return 0;
        }
        let Ok(files) = fs::read_dir(shard) else {
            return 0;
        };
        let mut removed = 0;
        for file in files.flatten() {
            let file_name = file.file_name();
            let file_name = file_name.to_string_lossy();
            let ours = file_name == name.as_str()
                || file_name
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('.'));
            if ours && self.unlink_entry(&file.path()).unwrap_or(false) {
                removed += 1;
            }
        }
        removed
    }
}

impl Store {
    /// A fresh temp file name for a write of `len` bytes (0 for a file being removed).
    pub(super) fn temp_name(&self, len: u64) -> String {
        let n = self.inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{TEMP_PREFIX}{}-{}-{n}-{len}",
            std::process::id(),
            self.inner.nonce
        )
    }

    /// Whether a temp file was left by a writer that is gone.
    ///
    /// A writer holds a `flock` on its temp file until it is done, so a temp file whose
    /// lock can be taken has no writer. This holds across PID namespaces (containers sharing
    /// one cache volume, where every main process may be PID 1), unlike a PID check, which
    /// remains only for filesystems where locks do not work.
    pub(super) fn is_dead(&self, path: &Path, temp: &TempName, meta: &fs::Metadata) -> bool {
        // A lock file for the moment of the probe: a fork meanwhile must not leave a child
        // holding the writer's lock (the writer waits for it, see `reserve`).
        let open = || crate::localfs::open(path, crate::localfs::How::Read, self.inner.sharing);
        if let Ok(file) = LockFile::open(LockKind::Temp, open) {
            match file.try_lock(Mode::Exclusive) {
                Ok(true) => return true,
                Ok(false) => return false,
                Err(_) => {}
            }
        }
        if temp.pid == std::process::id() {
            return temp.nonce != self.inner.nonce;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        old || !process_alive(temp.pid)
    }
}
