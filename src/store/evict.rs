//! Eviction one shard directory at a time (a CLOCK hand over the 256 shards, second chance
//! for entries used since it last passed), and recounting a shard or the whole directory.

use super::engine::Store;
use super::ledger::{SHARDS, word};
use super::temp::{TEMP_PREFIX, TempName, links, parse_temp};
use crate::metrics::TierCounters;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Eviction frees space down to this fraction of the capacity (the low watermark).
pub(super) const LOW_WATER_PERCENT: u64 = 90;
/// Above this fraction of the capacity (the high watermark) the evictor starts a round.
pub(super) const HIGH_WATER_PERCENT: u64 = 95;
/// A writer that finds usage above the capacity (the hard limit) evicts one batch itself:
/// shards from the hand on, until usage is back under the capacity or this many entries
/// were looked at (the shard in progress is finished).
pub(super) const WRITER_BATCH_ENTRIES: u64 = 4096;
/// The evictor's shortest pause between two shards (see [`pace`]).
pub(super) const MIN_PACE: Duration = Duration::from_micros(200);
/// Its longest: a shard of a very large directory is not followed by a long stall.
pub(super) const MAX_PACE: Duration = Duration::from_millis(50);

/// Disk usage found by a scan of the cache directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Entry files.
    pub entries: u64,
    /// Their total size in bytes, headers included.
    pub bytes: u64,
    /// Temp files: writes in progress, or leftovers of writers that died.
    pub temp_files: u64,
    /// Bytes the shared ledger counts (entries plus writes in progress).
    pub accounted: u64,
    /// The configured capacity in bytes.
    pub capacity: u64,
}

/// What a recount found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recount {
    /// Entries left.
    pub entries: u64,
    /// Bytes in use after the recount: entries plus writes in progress.
    pub bytes: u64,
    /// Entries evicted to get under the low watermark.
    pub evicted: u64,
    /// Temp files of dead writers removed.
    pub temp_files_removed: u64,
}

/// An entry file found by a scan.
pub(crate) struct Scanned {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// What one visit of the hand to a shard did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pass {
    /// Entries looked at.
    pub(super) examined: u64,
    /// Entries removed, and their bytes.
    pub(super) removed: u64,
    pub(super) freed: u64,
    /// Temp files whose writer is gone: the shard's counter needs a recount.
    pub(super) dead_temps: bool,
    /// Whether usage was seen at or under the target.
    pub(super) reached: bool,
}

/// Calls `f(path, metadata, temp)` for every file in the shard directories; `temp` is
/// the parsed name of a temp file, `None` for an entry. Visits the whole tree: for
/// commands (`stats`, `verify`, `clear`) and recounts, never for reads or writes.
pub(super) fn for_each_file(dir: &Path, mut f: impl FnMut(&Path, &fs::Metadata, Option<TempName>)) {
    for shard in 0..=u8::MAX {
        for_each_in_shard(&shard_dir(dir, shard), &mut f);
    }
}

fn for_each_in_shard(shard: &Path, f: &mut impl FnMut(&Path, &fs::Metadata, Option<TempName>)) {
    for (name, temp) in list_shard(shard) {
        let path = shard.join(&name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            f(&path, &meta, temp);
        }
    }
}

/// Calls `f(path, temp, metadata)` for every temp file in one shard.
pub(super) fn for_each_temp(
    dir: &Path,
    shard: u8,
    mut f: impl FnMut(&Path, &TempName, &fs::Metadata),
) {
    let dir = shard_dir(dir, shard);
    for (name, temp) in list_shard(&dir) {
        if let Some(t) = temp {
            let path = dir.join(name);
            if let Ok(meta) = fs::symlink_metadata(&path) {
                f(&path, &t, &meta);
            }
        }
    }
}

/// The entry and temp file names of one shard directory, without a `stat` each.
fn list_shard(shard: &Path) -> Vec<(String, Option<TempName>)> {
    // A shard that is a link (planted by another user of a shared directory) is not ours:
    // nothing in it is counted, evicted or removed.
    if !crate::localfs::is_real_dir(shard) {
        return Vec::new();
    }
    let Ok(files) = fs::read_dir(shard) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for file in files.flatten() {
        let Ok(name) = file.file_name().into_string() else {
            continue; // not ours
        };
        if name.starts_with(TEMP_PREFIX) {
            if let Some(t) = parse_temp(&name) {
                found.push((name, Some(t)));
            }
        } else if is_entry_name(&name) {
            found.push((name, None));
        }
    }
    found
}

/// The directory of shard `shard`: its two lowercase hex digits.
pub(super) fn shard_dir(dir: &Path, shard: u8) -> PathBuf {
    dir.join(format!("{shard:02x}"))
}

/// The shard of an entry or temp file path, from its directory's name.
pub(super) fn shard_of(path: &Path) -> u8 {
    path.parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(|n| u8::from_str_radix(n, 16).ok())
        .unwrap_or(0)
}

impl Store {
    /// Scans the directory and reports its usage.
    pub fn usage(&self) -> DiskUsage {
        let mut usage = DiskUsage {
            capacity: self.inner.capacity,
            accounted: self.accounted(),
            ..DiskUsage::default()
        };
        for_each_file(&self.inner.dir, |_, meta, temp| {
            if temp.is_some() {
                usage.temp_files += 1;
            } else {
                usage.entries += 1;
                usage.bytes += meta.len();
            }
        });
        usage
    }

    /// Every entry file with its size.
    pub(crate) fn scan(&self) -> Vec<Scanned> {
        let mut found = Vec::new();
        for_each_file(&self.inner.dir, |path, meta, temp| {
            if temp.is_none() {
                found.push(Scanned {
                    path: path.to_path_buf(),
                    len: meta.len(),
                });
            }
        });
        found
    }

    /// The low and high watermarks and the hard limit (the capacity, or less when the
    /// filesystem cannot spare it: see `space.rs`), in bytes.
    pub(super) fn watermarks(&self) -> (u64, u64, u64) {
        let cap = self.limit();
        (
            cap / 100 * LOW_WATER_PERCENT,
            cap / 100 * HIGH_WATER_PERCENT,
            cap,
        )
    }

    /// Takes the exclusive lock, recounts the whole directory into the ledger and removes
    /// dead writers' temp files; then, if over the capacity, evicts down to the low
    /// watermark. Scans every shard: for tests and tools, and for a ledger never counted.
    pub fn recount(&self) -> Recount {
        let mut report = Recount::default();
        {
            let _exclusive = self.lock(true);
            for shard in 0..=u8::MAX {
                let r = self.recount_shard_locked(shard);
                report.entries += r.entries;
                report.temp_files_removed += r.temp_files_removed;
            }
            self.inner.ledger.set(word::LAYOUT, super::ledger::LAYOUT);
        }
        let (low, _, cap) = self.watermarks();
        if self.accounted() > cap {
            let round = self.evict_to(low, u64::MAX, false);
            report.evicted = round.removed;
            report.entries = report.entries.saturating_sub(round.removed);
        }
        report.bytes = self.accounted();
        report
    }

    /// Recounts one shard under the exclusive lock (held only for that shard's scan).
    pub(super) fn recount_shard(&self, shard: u8) -> Recount {
        let _exclusive = self.lock(true);
        self.recount_shard_locked(shard)
    }

    /// Sets a shard's counter from its files: entries plus the reservations of live
    /// writers (by the length in their temp file's name); removes dead writers' temp files.
    /// The caller holds the exclusive lock, so no counter changes meanwhile.
    fn recount_shard_locked(&self, shard: u8) -> Recount {
        let mut report = Recount::default();
        let mut used = 0;
        for_each_in_shard(
            &shard_dir(&self.inner.dir, shard),
            &mut |path, meta, temp| match temp {
                None => {
                    report.entries += 1;
                    used += meta.len();
                }
                // Writers link and remove their temp files under the shared lock, so a linked
                // temp file seen here is a dead writer's leftover, like an old unlinked one.
                Some(t) if links(meta) > 1 || self.is_dead(path, &t, meta) => {
                    if fs::remove_file(path).is_ok() {
                        report.temp_files_removed += 1;
                    }
                }
                Some(t) => used += t.len,
            },
        );
        self.inner.ledger.set_shard(shard, used);
        report.bytes = used;
        report
    }

    /// One visit of the hand to `shard`, under the shared lock: every entry used since the
    /// last visit loses its mark and stays (unless `force`); the others are removed, until
    /// `enough()` says to stop (checked after each removal). Reads names only, no metadata.
    pub(super) fn evict_shard(&self, shard: u8, enough: &dyn Fn() -> bool, force: bool) -> Pass {
        let mut pass = Pass::default();
        let dir = shard_dir(&self.inner.dir, shard);
        let _shared = self.lock(false);
        for (name, temp) in list_shard(&dir) {
            if let Some(t) = temp {
                // Only a temp file whose lock can be taken is a dead writer's: a second link
                // is no sign here, since a live writer links and then removes its temp file
                // under the shared lock this visit holds too, and a false alarm would cost an
                // exclusive recount that every writer waits for.
                let path = dir.join(&name);
                pass.dead_temps |=
                    fs::symlink_metadata(&path).is_ok_and(|meta| self.is_dead(&path, &t, &meta));
                continue;
            }
            pass.examined += 1;
            if self.inner.clock.take(&name) && !force {
                continue;
            }
            if let Ok(Some(len)) = self.release(&dir.join(&name)) {
                pass.removed += 1;
                pass.freed += len;
                TierCounters::bump(&self.counters().evictions);
                if enough() {
                    break;
                }
            }
        }
        pass
    }

    /// Moves the hand from shard to shard, evicting, until usage is at most `target` or
    /// `budget` entries were looked at; at most two turns (the first may only take marks).
    /// A shard holding a dead writer's leftovers is recounted on the way. The evictor
    /// (`evictor`) marks the shard it works in, for its successor should it die there,
    /// and pauses between shards. Anyone else is making room in a hurry: its second turn
    /// ignores the marks (other processes moving the hand meanwhile may have kept it from
    /// seeing a shard twice), so that a batch always frees something while entries exist.
    pub(super) fn evict_to(&self, target: u64, budget: u64, evictor: bool) -> Pass {
        let ledger = &self.inner.ledger;
        let mut total = Pass::default();
        let enough = || ledger.used() <= target;
        let (_, high, cap) = self.watermarks();
        for step in 0..2 * SHARDS {
            if enough() {
                total.reached = true;
                break;
            }
            if total.examined >= budget {
                break;
            }
            let shard = (ledger.word(word::HAND).fetch_add(1, Ordering::AcqRel) % 256) as u8;
            if ledger.shard_used(shard) == 0 {
                continue;
            }
            if evictor {
                ledger.set(word::BUSY_SHARD, u64::from(shard) + 1);
            }
            let visit = Instant::now();
            let pass = self.evict_shard(shard, &enough, !evictor && step >= SHARDS);
            if pass.dead_temps && self.recount_shard(shard).temp_files_removed > 0 {
                ledger.bump(word::REPAIRED_SHARDS);
            }
            if evictor {
                ledger.set(word::BUSY_SHARD, 0);
                ledger.set(word::HEARTBEAT_MS, super::ledger::now_ms());
                std::thread::sleep(pace(visit.elapsed(), ledger.used(), high, cap));
            }
            total.examined += pass.examined;
            total.removed += pass.removed;
            total.freed += pass.freed;
        }
        total.reached |= enough();
        total
    }

    /// Makes room for the reservation of `len` bytes (temp file `tmp`) that took usage over
    /// the limit (the capacity, or what the filesystem spares): evicts one bounded batch (see [`WRITER_BATCH_ENTRIES`]).
    ///
    /// Returns `false` when usage is still over the capacity, which happens when the writes
    /// in progress alone exceed it, or when the evictor has fallen far behind: the
    /// reservation is then withdrawn (its temp file removed, its bytes released), so the
    /// entries and the writes that go ahead never exceed the capacity together.
    pub(super) fn make_room(&self, tmp: &Path, len: u64) -> bool {
        let cap = self.limit();
        self.inner.ledger.bump(word::WRITER_BATCHES);
        // Usage seen at or under the capacity once is enough: a writer whose reservation
        // took it over again since makes room itself.
        if self.evict_to(cap, WRITER_BATCH_ENTRIES, false).reached {
            return true;
        }
        let _shared = self.lock(false);
        // Released first, then removed: a crash in between leaves a dead writer's temp
        // file, which gets its shard recounted.
        self.inner.ledger.sub(shard_of(tmp), len);
        let _ = fs::remove_file(tmp);
        false
    }
}

/// The evictor's pause after a shard visit that took `busy`: as long again (the evictor
/// then keeps at most half of one core, and the directories' locks and the journal free
/// half the time for writers), shortening to [`MIN_PACE`] as usage climbs from the high
/// watermark to halfway to the hard limit, past which a writer would soon have to make
/// room itself.
pub(super) fn pace(busy: Duration, used: u64, high: u64, cap: u64) -> Duration {
    let room = cap.saturating_sub(high) / 2;
    let over = used.saturating_sub(high);
    if room == 0 || over >= room {
        return MIN_PACE;
    }
    let left = (room - over) as f64 / room as f64;
    busy.mul_f64(left).clamp(MIN_PACE, MAX_PACE)
}

/// `{64 hex}` (a key's entry) or `{64 hex}.{16 hex}` (a key at a version).
pub(super) fn is_entry_name(name: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.split_once('.') {
        None => name.len() == 64 && hex(name),
        Some((key, version)) => key.len() == 64 && version.len() == 16 && hex(key) && hex(version),
    }
}
