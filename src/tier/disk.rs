//! The disk tier: one checksummed entry file per key, shared by every process on a machine.
//!
//! Layout under `{dir}/v1/`:
//! - `{h[0..2]}/{h}`: the entry of the key whose hex blake3 is `h`;
//! - `{h[0..2]}/.tmp-{pid}-{nonce}-{n}-{len}`: a write in progress, `len` bytes when done;
//! - `.usage`: the ledger, a page every process maps, holding the bytes in use;
//! - `.lock`: `flock`ed shared to reserve, commit or remove, exclusively to recount and evict.
//!
//! A write goes to a temp file that is hard-linked into place (renamed where links are not
//! supported), so a reader sees the old entry, the new one or none, never a partial one.
//! Nothing is rewritten or truncated in place, which is what makes memory-mapping safe.
//! A writer reserves its bytes in the ledger before writing and evicts first when that
//! crosses the capacity, so the directory exceeds its cap only by the entries being written.
//! Eviction unlinks the least recently used entries (by mtime, refreshed on hits) after a
//! recount, which also removes the temp files of writers that died.

use super::Tier;
use crate::entry::{self, Corruption, FIXED_HEADER_LEN};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, TierCounters};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use memmap2::{Mmap, MmapOptions, MmapRaw};
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Sub-directory of the cache directory holding entries of the current format.
const FORMAT_DIR: &str = "v1";
/// Prefix of in-progress writes; never a valid entry name (entry names are 64 hex chars).
const TEMP_PREFIX: &str = ".tmp-";
/// The shared ledger file.
const LEDGER_FILE: &str = ".usage";
/// The lock file.
const LOCK_FILE: &str = ".lock";
/// The ledger's mapped size: one page.
const LEDGER_LEN: u64 = 4096;
/// A hit refreshes the entry's recency only when it is older than this, to keep reads cheap.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// Eviction frees space down to this fraction of the capacity, so it runs in batches.
const LOW_WATER_PERCENT: u64 = 90;
/// A temp file this old belongs to a dead writer whatever its pid says (pids are reused).
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

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
    /// Entries evicted to get under the low-water mark.
    pub evicted: u64,
    /// Temp files of dead writers removed.
    pub temp_files_removed: u64,
}

/// One entry that failed [`DiskTier::verify_blocking`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// The entry file (already removed).
    pub path: PathBuf,
    /// The key its header names, when readable.
    pub key: Option<String>,
    /// What was wrong.
    pub reason: String,
}

/// The result of checking every entry's checksum.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: u64,
    /// Bytes checked.
    pub bytes: u64,
    /// Entries that failed and were removed.
    pub bad: Vec<BadEntry>,
}

/// A cache directory of checksummed entries.
#[derive(Clone)]
pub struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    capacity: u64,
    ledger: Ledger,
    /// Tells this process's temp files from those of an earlier process with the same pid.
    nonce: u32,
    temp_seq: AtomicU64,
    /// Set once the directory has failed, so the condition is logged once.
    warned: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Bytes in use, shared by every process through a mapped page; a private counter when
/// the page cannot be mapped (read-only or missing directory).
enum Ledger {
    Shared(MmapRaw),
    Private([AtomicU64; 2]),
}

impl Ledger {
    fn open(dir: &Path) -> Ledger {
        Self::map(dir).map_or_else(
            |_| Ledger::Private([AtomicU64::new(0), AtomicU64::new(0)]),
            Ledger::Shared,
        )
    }

    fn map(dir: &Path) -> io::Result<MmapRaw> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LEDGER_FILE))?;
        if file.metadata()?.len() < LEDGER_LEN {
            // Only ever grows, so processes racing here agree; new bytes read as zero.
            file.set_len(LEDGER_LEN)?;
        }
        MmapOptions::new().len(LEDGER_LEN as usize).map_raw(&file)
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        match self {
            Ledger::Shared(map) => {
                debug_assert!((index + 1) * 8 <= map.len());
                // SAFETY: the mapping is page-aligned and LEDGER_LEN bytes long, so the word
                // is aligned and in bounds; it lives as long as `self`; the file is never
                // truncated; every process touches these bytes only through atomics.
                unsafe { &*map.as_mut_ptr().cast::<AtomicU64>().add(index) }
            }
            Ledger::Private(words) => &words[index],
        }
    }

    /// Bytes in use: entries plus reserved writes.
    fn used(&self) -> &AtomicU64 {
        self.word(0)
    }

    /// Non-zero once a full recount has set [`Ledger::used`].
    fn counted(&self) -> &AtomicU64 {
        self.word(1)
    }

    fn add(&self, n: u64) -> u64 {
        self.used().fetch_add(n, Ordering::AcqRel) + n
    }

    fn sub(&self, n: u64) {
        let _ = self
            .used()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

struct Scanned {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// The parts of a temp file's name.
struct TempName {
    pid: u32,
    nonce: u32,
    len: u64,
}

impl DiskTier {
    /// Opens (lazily creating) a cache directory bounded to `capacity` bytes.
    ///
    /// Never fails and never blocks on the directory: existing entries are served at once,
    /// and a background thread recounts the directory when the ledger is new or writers
    /// have died, removing their temp files.
    pub fn open(dir: impl Into<PathBuf>, capacity: u64, metrics: Arc<Metrics>) -> Self {
        let dir = dir.into().join(FORMAT_DIR);
        let tier = DiskTier {
            inner: Arc::new(Inner {
                ledger: Ledger::open(&dir),
                dir,
                capacity,
                nonce: process_nonce(),
                temp_seq: AtomicU64::new(0),
                warned: AtomicBool::new(false),
                metrics,
            }),
        };
        let background = tier.clone();
        let _ = std::thread::Builder::new()
            .name("framecache-disk-scan".into())
            .spawn(move || background.check_on_open());
        tier
    }

    /// The directory holding this format's entries.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Bytes the shared ledger counts now: entries plus writes in progress.
    pub fn accounted(&self) -> u64 {
        self.inner.ledger.used().load(Ordering::Acquire)
    }

    /// Where `key`'s entry lives.
    pub fn path_of(&self, key: &str) -> PathBuf {
        let hex = blake3::hash(key.as_bytes()).to_hex();
        self.inner.dir.join(&hex[..2]).join(hex.as_str())
    }

    fn counters(&self) -> &TierCounters {
        &self.inner.metrics.disk
    }

    /// Logs a failing directory once; the chain counts every occurrence.
    pub(crate) fn warn_once(&self, err: &Error) {
        if !self.inner.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "disk cache {} is failing, reads pass through to the origin: {err}",
                self.inner.dir.display()
            );
        }
    }

    /// Takes the directory's lock, shared or exclusive, on a descriptor of its own (flock
    /// locks belong to the open file, so threads of one process exclude each other too).
    /// `None` when the lock file cannot be opened: the directory is failing anyway.
    fn lock(&self, exclusive: bool) -> Option<File> {
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

    /// Reads and verifies `key`'s entry on the calling thread.
    ///
    /// A corrupt entry is removed, counted and reported as a miss.
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or mapped.
    pub fn read_blocking(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path_of(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.counters().miss();
                return Ok(None);
            }
            Err(e) => return Err(Error::io("open cache entry", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat cache entry", &path, e))?;
        if meta.len() < FIXED_HEADER_LEN as u64 {
            self.discard(&path, key, Corruption::Truncated);
            return Ok(None);
        }
        // SAFETY: framecache never writes to, truncates or extends an entry file after it has
        // been linked into place (writers replace whole files, eviction unlinks), so the
        // mapped bytes stay valid and unchanged for the life of the map, even if the path is
        // unlinked or replaced meanwhile. A foreign program editing the file in place breaks
        // this contract; the checksum below catches edits made before it runs.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map cache entry", &path, e))?;
        match entry::validate(key, &map) {
            Ok(range) => {
                if meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > TOUCH_AFTER)
                {
                    // Best effort: recency only steers eviction.
                    let _ = file.set_modified(SystemTime::now());
                }
                self.counters().hit(range.len());
                Ok(Some(Bytes::from_owner(map).slice(range)))
            }
            Err(corruption) => {
                self.discard(&path, key, corruption);
                Ok(None)
            }
        }
    }

    fn discard(&self, path: &Path, key: &str, corruption: Corruption) {
        tracing::warn!(
            "disk cache entry {} for {key:?} is corrupt ({corruption}); removed",
            path.display()
        );
        TierCounters::bump(&self.counters().corrupt);
        self.counters().miss();
        let _ = self.unlink_entry(path);
    }

    /// Unlinks an entry and releases its bytes; `Ok(false)` when it was already gone.
    fn unlink_entry(&self, path: &Path) -> io::Result<bool> {
        let _shared = self.lock(false);
        let len = match fs::symlink_metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match fs::remove_file(path) {
            Ok(()) => {
                self.inner.ledger.sub(len);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `key`'s entry on the calling thread: reserve, write a temp file, link it in.
    ///
    /// # Errors
    /// When the directory cannot be created or written (read-only, full, missing).
    pub fn write_blocking(&self, key: &str, payload: &[u8]) -> Result<()> {
        let path = self.path_of(key);
        let header = entry::encode_header(key, payload);
        let len = (header.len() + payload.len()) as u64;
        let shard = path.parent().expect("entry paths have a shard directory");
        let (tmp, mut file, used) = self
            .reserve(shard, len)
            .map_err(|e| Error::io("write cache entry", &path, e))?;
        if used > self.inner.capacity {
            self.make_room();
        }
        let written = file
            .write_all(&header)
            .and_then(|()| file.write_all(payload))
            .and_then(|()| {
                drop(file);
                self.commit(&tmp, &path)
            });
        if let Err(e) = written {
            let _shared = self.lock(false);
            if fs::remove_file(&tmp).is_ok() {
                self.inner.ledger.sub(len);
            }
            return Err(Error::io("write cache entry", path, e));
        }
        self.counters().wrote(payload.len());
        Ok(())
    }

    /// Creates the temp file and reserves `len` bytes in the ledger, under the shared lock
    /// so that a recount sees either both or neither. Returns the ledger's new total.
    fn reserve(&self, shard: &Path, len: u64) -> io::Result<(PathBuf, File, u64)> {
        let n = self.inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{TEMP_PREFIX}{}-{}-{n}-{len}",
            std::process::id(),
            self.inner.nonce
        );
        let tmp = shard.join(name);
        let _shared = self.lock(false);
        let file = match File::create_new(&tmp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(shard)?;
                File::create_new(&tmp)?
            }
            other => other?,
        };
        Ok((tmp, file, self.inner.ledger.add(len)))
    }

    /// Links the finished temp file into place, replacing (and releasing) an older entry.
    fn commit(&self, tmp: &Path, path: &Path) -> io::Result<()> {
        let _shared = self.lock(false);
        for _ in 0..8 {
            match fs::hard_link(tmp, path) {
                Ok(()) => {
                    // The entry is in place; a leftover link is swept by a later recount.
                    let _ = fs::remove_file(tmp);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if let Ok(old) = fs::symlink_metadata(path)
                        && fs::remove_file(path).is_ok()
                    {
                        self.inner.ledger.sub(old.len());
                    }
                }
                Err(_) => {
                    // No hard links on this filesystem: rename over the old entry.
                    let old = fs::symlink_metadata(path).ok();
                    fs::rename(tmp, path)?;
                    if let Some(old) = old {
                        self.inner.ledger.sub(old.len());
                    }
                    return Ok(());
                }
            }
        }
        Err(io::Error::other(
            "the entry kept being replaced by other writers",
        ))
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

    /// Removes every entry whose key starts with `prefix`, reading each entry's header.
    ///
    /// Entry names are hashes, so this visits the whole directory: meant for `clear`, not
    /// for hot paths. Returns the number of entries removed.
    pub fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        let mut removed = 0;
        for found in self.scan() {
            if read_key(&found.path).is_some_and(|k| k.starts_with(prefix))
                && self.unlink_entry(&found.path).unwrap_or(false)
            {
                removed += 1;
            }
        }
        removed
    }

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

    /// Checks every entry's header and checksum, removes the bad ones and reports them.
    /// `progress(done, total)` is called after each entry.
    pub fn verify_blocking(&self, mut progress: impl FnMut(u64, u64)) -> VerifyReport {
        let entries = self.scan();
        let total = entries.len() as u64;
        let mut report = VerifyReport::default();
        for (i, found) in entries.iter().enumerate() {
            let key = read_key(&found.path);
            let verdict = match &key {
                None => Err("unreadable header".to_owned()),
                Some(k) if self.path_of(k) != found.path => Err(format!("misplaced: holds {k:?}")),
                Some(k) => check_file(&found.path, k),
            };
            match verdict {
                Ok(true) => {
                    report.checked += 1;
                    report.bytes += found.len;
                }
                Ok(false) => {} // removed meanwhile
                Err(reason) => {
                    report.checked += 1;
                    if self.unlink_entry(&found.path).is_ok() {
                        TierCounters::bump(&self.counters().corrupt);
                    }
                    report.bad.push(BadEntry {
                        path: found.path.clone(),
                        key,
                        reason,
                    });
                }
            }
            progress(i as u64 + 1, total);
        }
        report
    }

    /// Every entry file with its size and recency.
    fn scan(&self) -> Vec<Scanned> {
        let mut found = Vec::new();
        for_each_file(&self.inner.dir, |path, meta, temp| {
            if temp.is_none() {
                found.push(Scanned {
                    path: path.to_path_buf(),
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        });
        found
    }

    /// Recounts and evicts if needed; runs once in the background at open.
    fn check_on_open(&self) {
        let ledger = &self.inner.ledger;
        let mut dead_temps = false;
        if ledger.counted().load(Ordering::Acquire) != 0 {
            for_each_file(&self.inner.dir, |_, meta, temp| {
                dead_temps |= temp.is_some_and(|t| self.is_dead(&t, meta));
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

    /// Makes room for a reservation that crossed the capacity.
    fn make_room(&self) {
        let _exclusive = self.lock(true);
        // Another writer may have evicted while this one waited for the lock.
        if self.accounted() > self.inner.capacity {
            self.recount_locked();
        }
    }

    fn recount_locked(&self) -> Recount {
        let mut entries = Vec::new();
        let mut pending = 0;
        let mut report = Recount::default();
        for_each_file(&self.inner.dir, |path, meta, temp| match temp {
            None => entries.push(Scanned {
                path: path.to_path_buf(),
                len: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            }),
            // Writers link and remove their temp files under the shared lock, so a linked
            // temp file seen here is a dead writer's leftover, like an old unlinked one.
            Some(t) if links(meta) > 1 || self.is_dead(&t, meta) => {
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

    /// Whether a temp file was left by a writer that is gone.
    fn is_dead(&self, temp: &TempName, meta: &fs::Metadata) -> bool {
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

/// Reads `path` and validates it as `key`'s entry: `Ok(false)` if it vanished.
fn check_file(path: &Path, key: &str) -> std::result::Result<bool, String> {
    match fs::read(path) {
        Ok(bytes) => entry::validate(key, &bytes)
            .map(|_| true)
            .map_err(|c| c.to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

fn parse_temp(name: &str) -> Option<TempName> {
    let mut parts = name.strip_prefix(TEMP_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let nonce = parts.next()?.parse().ok()?;
    let _seq: u64 = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    Some(TempName { pid, nonce, len })
}

fn process_nonce() -> u32 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        now.as_nanos(),
        std::thread::current().id()
    );
    let hash = blake3::hash(seed.as_bytes());
    u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"))
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true // only the age rule applies
}

#[cfg(unix)]
fn links(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
fn links(_meta: &fs::Metadata) -> u64 {
    1
}

/// Reads the key echoed in an entry's header, if the header is well formed.
fn read_key(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut fixed = [0u8; FIXED_HEADER_LEN];
    file.read_exact(&mut fixed).ok()?;
    if fixed[..8] != entry::MAGIC {
        return None;
    }
    let key_len = u32::from_le_bytes(fixed[12..16].try_into().ok()?) as usize;
    let mut key = vec![0u8; key_len.min(4096)];
    file.read_exact(&mut key).ok()?;
    String::from_utf8(key).ok()
}

/// Calls `f(path, metadata, temp)` for every file in the shard directories; `temp` is
/// the parsed name of a temp file, `None` for an entry.
fn for_each_file(dir: &Path, mut f: impl FnMut(&Path, &fs::Metadata, Option<TempName>)) {
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
            } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(Error::io(
            "disk cache task",
            PathBuf::new(),
            std::io::Error::other(join),
        ))
    })
}

impl Tier for DiskTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.read_blocking(&key)).boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<()>> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.write_blocking(&key, &value)).boxed()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.remove_blocking(&key)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(dir: &Path, capacity: u64) -> (DiskTier, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (DiskTier::open(dir, capacity, metrics.clone()), metrics)
    }

    #[test]
    fn round_trip_and_shard_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _) = tier(tmp.path(), 1 << 30);
        disk.write_blocking("a/1.jpg", b"hello").unwrap();
        let path = disk.path_of("a/1.jpg");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 64);
        assert_eq!(
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            &name[..2]
        );
        assert_eq!(
            disk.read_blocking("a/1.jpg").unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(disk.read_blocking("a/2.jpg").unwrap(), None);
        assert_eq!(disk.usage().temp_files, 0);
    }

    #[test]
    fn corrupt_entries_are_removed_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, metrics) = tier(tmp.path(), 1 << 30);
        disk.write_blocking("k", b"0123456789").unwrap();
        let path = disk.path_of("k");
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(disk.read_blocking("k").unwrap(), None);
        assert!(!path.exists());
        assert_eq!(metrics.snapshot().disk.corrupt, 1);
    }

    #[test]
    fn eviction_keeps_usage_under_capacity_and_prefers_old_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, metrics) = tier(tmp.path(), 20_000);
        let payload = vec![7u8; 1_000];
        disk.write_blocking("old", &payload).unwrap();
        let old = File::options()
            .write(true)
            .open(disk.path_of("old"))
            .unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        for i in 0..40 {
            disk.write_blocking(&format!("k{i}"), &payload).unwrap();
        }
        let usage = disk.usage();
        assert!(usage.bytes <= 20_000, "{usage:?}");
        assert!(metrics.snapshot().disk.evictions > 0);
        assert_eq!(disk.read_blocking("old").unwrap(), None);
        assert!(disk.read_blocking("k39").unwrap().is_some());
    }

    #[test]
    fn remove_prefix_reads_keys_from_headers() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _) = tier(tmp.path(), 1 << 30);
        disk.write_blocking("t/a/1", b"1").unwrap();
        disk.write_blocking("t/a/2", b"2").unwrap();
        disk.write_blocking("t/b/1", b"3").unwrap();
        assert_eq!(disk.remove_prefix_blocking("t/a/"), 2);
        assert_eq!(disk.read_blocking("t/a/1").unwrap(), None);
        assert!(disk.read_blocking("t/b/1").unwrap().is_some());
    }

    #[test]
    fn ledger_tracks_writes_replacements_and_removals() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _) = tier(tmp.path(), 1 << 30);
        disk.recount();
        for i in 0..10 {
            disk.write_blocking(&format!("k{i}"), &vec![1u8; 100 + i])
                .unwrap();
        }
        for i in 0..3 {
            disk.write_blocking(&format!("k{i}"), &vec![2u8; 5_000])
                .unwrap();
        }
        disk.remove_blocking("k8").unwrap();
        disk.remove_blocking("k9").unwrap();
        disk.remove_blocking("never-written").unwrap();
        let usage = disk.usage();
        assert_eq!(usage.entries, 8);
        assert_eq!(usage.temp_files, 0);
        assert_eq!(usage.accounted, usage.bytes);
        assert_eq!(disk.read_blocking("k1").unwrap().unwrap().len(), 5_000);
        // A second handle (as another process would) sees the same ledger.
        let (other, _) = tier(tmp.path(), 1 << 30);
        assert_eq!(other.accounted(), usage.bytes);
    }

    #[test]
    fn recount_removes_dead_writers_temp_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, _) = tier(tmp.path(), 1 << 30);
        disk.write_blocking("k", b"payload").unwrap();
        let shard = disk.path_of("k").parent().unwrap().to_path_buf();
        let me = std::process::id();
        let live = shard.join(format!("{TEMP_PREFIX}{me}-{}-1-40", disk.inner.nonce));
        let earlier_process =
            shard.join(format!("{TEMP_PREFIX}{me}-{}-1-50", disk.inner.nonce ^ 1));
        let no_such_pid = shard.join(format!("{TEMP_PREFIX}{}-7-1-60", i32::MAX as u32 - 3));
        let foreign = shard.join(".tmp-not-ours");
        for path in [&live, &earlier_process, &no_such_pid, &foreign] {
            fs::write(path, b"partial").unwrap();
        }
        let report = disk.recount();
        assert_eq!(report.temp_files_removed, 2);
        assert!(live.exists() && foreign.exists());
        assert!(!earlier_process.exists() && !no_such_pid.exists());
        // The live write's reservation stays counted, by the length in its name.
        let entry_len = fs::metadata(disk.path_of("k")).unwrap().len();
        assert_eq!(report.bytes, entry_len + 40);
        assert_eq!(disk.accounted(), entry_len + 40);
    }

    #[test]
    fn verify_removes_and_reports_bad_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let (disk, metrics) = tier(tmp.path(), 1 << 30);
        for key in ["good", "flipped", "moved"] {
            disk.write_blocking(key, key.repeat(100).as_bytes())
                .unwrap();
        }
        let flipped = disk.path_of("flipped");
        let mut bytes = fs::read(&flipped).unwrap();
        bytes[FIXED_HEADER_LEN + 10] ^= 0x40;
        fs::write(&flipped, &bytes).unwrap();
        // An entry renamed to another key's path holds the wrong key.
        let moved_to = disk.path_of("elsewhere");
        fs::create_dir_all(moved_to.parent().unwrap()).unwrap();
        fs::rename(disk.path_of("moved"), &moved_to).unwrap();
        let mut calls = 0;
        let report = disk.verify_blocking(|done, total| {
            calls += 1;
            assert!(done <= total);
        });
        assert_eq!(calls, 3);
        assert_eq!(report.checked, 3);
        let mut bad: Vec<_> = report
            .bad
            .iter()
            .map(|b| (b.key.clone().unwrap(), b.reason.clone()))
            .collect();
        bad.sort();
        assert_eq!(bad[0].0, "flipped");
        assert!(bad[0].1.contains("checksum"), "{bad:?}");
        assert_eq!(bad[1].0, "moved");
        assert!(bad[1].1.contains("misplaced"), "{bad:?}");
        assert!(!flipped.exists() && !moved_to.exists());
        assert!(disk.read_blocking("good").unwrap().is_some());
        assert_eq!(metrics.snapshot().disk.corrupt, 2);
        assert_eq!(disk.usage().accounted, disk.usage().bytes);
    }
}
