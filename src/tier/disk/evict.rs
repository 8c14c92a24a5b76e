//! Scanning the directory, recounting the ledger and evicting least recently used entries.

use super::DiskTier;
use super::temp::{TEMP_PREFIX, TempName, links, parse_temp};
use crate::metrics::TierCounters;
use serde::Serialize;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Eviction frees space down to this fraction of the capacity, so it runs in batches.
pub(super) const LOW_WATER_PERCENT: u64 = 90;

/// What a recount found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recount {
    /// Entries left.
    pub entries: u64,
    /// Bytes in use after the recount: entries plus writes in progress.
    pub bytes: u64,
    /// Entries evicted to get under the low-water mark.
    pub evicted: u64,
    /// Temp files of dead writers removed.
    pub temp_files_removed: u64,
}

/// An entry file found by a scan.
pub(crate) struct Scanned {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    modified: SystemTime,
}

impl Scanned {
    fn new(path: &Path, meta: &fs::Metadata) -> Scanned {
        Scanned {
            path: path.to_path_buf(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// Calls `f(path, metadata, temp)` for every file in the shard directories; `temp` is
/// the parsed name of a temp file, `None` for an entry.
pub(super) fn for_each_file(dir: &Path, mut f: impl FnMut(&Path, &fs::Metadata, Option<TempName>)) {
    let Ok(shards) = fs::read_dir(dir) else {
        return;
    };
    for shard in shards.flatten() {
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let name = name.to_string_lossy();
            let temp = if name.starts_with(TEMP_PREFIX) {
                match parse_temp(&name) {
                    Some(t) => Some(t),
                    None => continue, // not ours
                }
            } else if is_entry_name(&name) {
                None
            } else {
                continue;
            };
            let path = file.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                f(&path, &meta, temp);
            }
        }
    }
}

impl DiskTier {
    /// Every entry file with its size and recency.
    pub(crate) fn scan(&self) -> Vec<Scanned> {
        let mut found = Vec::new();
        for_each_file(&self.inner.dir, |path, meta, temp| {
            if temp.is_none() {
                found.push(Scanned::new(path, meta));
            }
        });
        found
    }

    /// Recounts and evicts if needed; runs once in the background at open.
    pub(super) fn check_on_open(&self) {
        let ledger = &self.inner.ledger;
        let mut dead_temps = false;
        if ledger.counted().load(Ordering::Acquire) != 0 {
            for_each_file(&self.inner.dir, |path, meta, temp| {
                dead_temps |= temp.is_some_and(|t| self.is_dead(path, &t, meta));
            });
        }
        if ledger.counted().load(Ordering::Acquire) == 0
            || dead_temps
            || self.accounted() > self.inner.capacity
        {
            self.recount();
        }
    }

    /// Takes the exclusive lock, recounts the directory into the ledger, removes dead
    /// writers' temp files and evicts down to the low-water mark if over capacity.
    pub fn recount(&self) -> Recount {
        let _exclusive = self.lock(true);
        self.recount_locked()
    }

    /// Makes room for the reservation of `len` bytes (temp file `tmp`) that crossed the
    /// capacity: recounts and evicts least recently used entries.
    ///
    /// Returns `false` when even that leaves the ledger over the capacity, which happens
    /// when the writes in progress alone exceed it (eviction only removes entries): the
    /// reservation is then withdrawn (its temp file removed, its bytes released), so the
    /// entries and the writes that go ahead never exceed the capacity together.
    pub(super) fn make_room(&self, tmp: &Path, len: u64) -> bool {
        let _exclusive = self.lock(true);
        // Another writer may have evicted while this one waited for the lock.
        if self.accounted() > self.inner.capacity {
            self.recount_locked();
        }
        if self.accounted() <= self.inner.capacity {
            return true;
        }
        // The recount counted this reservation by the length in the temp file's name.
        if fs::remove_file(tmp).is_ok() {
            self.inner.ledger.sub(len);
        }
        false
    }

    pub(super) fn recount_locked(&self) -> Recount {
        let mut entries = Vec::new();
        let mut pending = 0;
        let mut report = Recount::default();
        for_each_file(&self.inner.dir, |path, meta, temp| match temp {
            None => entries.push(Scanned::new(path, meta)),
            // Writers link and remove their temp files under the shared lock, so a linked
            // temp file seen here is a dead writer's leftover, like an old unlinked one.
            Some(t) if links(meta) > 1 || self.is_dead(path, &t, meta) => {
                if fs::remove_file(path).is_ok() {
                    report.temp_files_removed += 1;
                }
            }
            Some(t) => pending += t.len,
        });
        let mut used = entries.iter().map(|e| e.len).sum::<u64>() + pending;
        report.entries = entries.len() as u64;
        if used > self.inner.capacity {
            let target = self.inner.capacity / 100 * LOW_WATER_PERCENT;
            entries.sort_by_key(|e| e.modified);
            for victim in entries {
                if used <= target {
                    break;
                }
                match fs::remove_file(&victim.path) {
                    Ok(()) => {
                        report.evicted += 1;
                        TierCounters::bump(&self.counters().evictions);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(_) => continue,
                }
                used -= victim.len;
                report.entries -= 1;
            }
        }
        self.inner.ledger.used().store(used, Ordering::Release);
        self.inner.ledger.counted().store(1, Ordering::Release);
        report.bytes = used;
        report
    }
}

/// `{64 hex}` (a key's entry) or `{64 hex}.{16 hex}` (a key at a version).
pub(super) fn is_entry_name(name: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.split_once('.') {
        None => name.len() == 64 && hex(name),
        Some((key, version)) => key.len() == 64 && version.len() == 16 && hex(key) && hex(version),
    }
}
