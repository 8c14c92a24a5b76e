//! The disk tier: one checksummed entry file per key, shared by every process on a machine.
//!
//! Layout: `{dir}/v1/{h[0..2]}/{h}` where `h` is the hex blake3 of the key. Entries are
//! written to a temp file in the same shard directory and renamed into place, so a reader
//! sees either the old entry, the new one, or none, never a partial one; nothing is ever
//! rewritten or truncated in place, which is what makes memory-mapping them safe. Eviction
//! unlinks the least recently used entries (by modification time, refreshed on hits).

use super::Tier;
use crate::entry::{self, Corruption, FIXED_HEADER_LEN};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, TierCounters};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use memmap2::Mmap;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Sub-directory of the cache directory holding entries of the current format.
const FORMAT_DIR: &str = "v1";
/// Prefix of in-progress writes; never a valid entry name (entry names are 64 hex chars).
const TEMP_PREFIX: &str = ".tmp-";
/// A hit refreshes the entry's recency only when it is older than this, to keep reads cheap.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// Eviction frees space down to this fraction of the capacity, so it runs in batches.
const LOW_WATER_PERCENT: u64 = 90;

/// Disk usage found by a scan of the cache directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Entry files.
    pub entries: u64,
    /// Their total size in bytes, headers included.
    pub bytes: u64,
    /// Leftover temp files (from writers that died).
    pub temp_files: u64,
    /// The configured capacity in bytes.
    pub capacity: u64,
}

/// A cache directory of checksummed entries.
#[derive(Clone)]
pub struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    capacity: u64,
    /// Estimated bytes on disk: a scan's total plus this process's writes since.
    usage: AtomicU64,
    temp_seq: AtomicU64,
    evicting: Mutex<()>,
    /// Set once the directory has failed, so the condition is logged once.
    warned: AtomicBool,
    metrics: Arc<Metrics>,
}

struct Scanned {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
}

impl DiskTier {
    /// Opens (lazily creating) a cache directory bounded to `capacity` bytes.
    ///
    /// Never fails and never blocks on the directory: existing entries are served at once,
    /// and a background thread measures the usage left by earlier processes.
    pub fn open(dir: impl Into<PathBuf>, capacity: u64, metrics: Arc<Metrics>) -> Self {
        let tier = DiskTier {
            inner: Arc::new(Inner {
                dir: dir.into().join(FORMAT_DIR),
                capacity,
                usage: AtomicU64::new(0),
                temp_seq: AtomicU64::new(0),
                evicting: Mutex::new(()),
                warned: AtomicBool::new(false),
                metrics,
            }),
        };
        let background = tier.clone();
        let _ = std::thread::Builder::new()
            .name("framecache-disk-scan".into())
            .spawn(move || {
                let total: u64 = background.scan().iter().map(|e| e.len).sum();
                background.inner.usage.fetch_add(total, Relaxed);
                background.evict_if_needed();
            });
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
        if !self.inner.warned.swap(true, Relaxed) {
            tracing::warn!(
                "disk cache {} is failing, reads pass through to the origin: {err}",
                self.inner.dir.display()
            );
        }
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
        // been renamed into place (writers replace whole files by rename, eviction unlinks),
        // so the mapped bytes stay valid and unchanged for the life of the map, even if the
        // path is unlinked or replaced meanwhile. A foreign program editing the file in place
        // breaks this contract; the checksum below catches edits made before it runs.
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
        let _ = fs::remove_file(path);
    }

    /// Writes `key`'s entry on the calling thread: temp file, then rename into place.
    ///
    /// # Errors
    /// When the directory cannot be created or written (read-only, full, missing).
    pub fn write_blocking(&self, key: &str, payload: &[u8]) -> Result<()> {
        let path = self.path_of(key);
        let shard = path.parent().expect("entry paths have a shard directory");
        let n = self.inner.temp_seq.fetch_add(1, Relaxed);
        let tmp = shard.join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let header = entry::encode_header(key, payload);
        let written = write_new(&tmp, &header, payload)
            .or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    fs::create_dir_all(shard)?;
                    write_new(&tmp, &header, payload)
                } else {
                    Err(e)
                }
            })
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write cache entry", path, e));
        }
        let len = (header.len() + payload.len()) as u64;
        self.counters().wrote(payload.len());
        let usage = self.inner.usage.fetch_add(len, Relaxed) + len;
        if usage > self.inner.capacity {
            self.evict_if_needed();
        }
        Ok(())
    }

    /// Removes `key`'s entry on the calling thread.
    ///
    /// # Errors
    /// When the file exists and cannot be removed.
    pub fn remove_blocking(&self, key: &str) -> Result<()> {
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove cache entry", path, e)),
        }
    }

    /// Removes every entry whose key starts with `prefix`, reading each entry's header.
    ///
    /// Entry names are hashes, so this visits the whole directory: meant for `clear`, not
    /// for hot paths. Returns the number of entries removed.
    pub fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        let mut removed = 0;
        for found in self.scan() {
            if read_key(&found.path).is_some_and(|k| k.starts_with(prefix))
                && fs::remove_file(&found.path).is_ok()
            {
                removed += 1;
                self.inner
                    .usage
                    .fetch_sub(found.len.min(self.inner.usage.load(Relaxed)), Relaxed);
            }
        }
        removed
    }

    /// Scans the directory and reports its usage.
    pub fn usage(&self) -> DiskUsage {
        let mut usage = DiskUsage {
            capacity: self.inner.capacity,
            ..DiskUsage::default()
        };
        for_each_file(&self.inner.dir, |_, meta, is_temp| {
            if is_temp {
                usage.temp_files += 1;
            } else {
                usage.entries += 1;
                usage.bytes += meta.len();
            }
        });
        usage
    }

    /// Every entry file with its size and recency.
    fn scan(&self) -> Vec<Scanned> {
        let mut found = Vec::new();
        for_each_file(&self.inner.dir, |path, meta, is_temp| {
            if !is_temp {
                found.push(Scanned {
                    path: path.to_path_buf(),
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        });
        found
    }

    /// Unlinks least recently used entries until usage is under the low-water mark.
    ///
    /// The scan measures what every process sharing the directory has written, so the
    /// estimate is corrected each time eviction runs.
    fn evict_if_needed(&self) {
        let Ok(_guard) = self.inner.evicting.try_lock() else {
            return; // another thread is already evicting
        };
        let mut entries = self.scan();
        let mut total: u64 = entries.iter().map(|e| e.len).sum();
        if total > self.inner.capacity {
            let target = self.inner.capacity / 100 * LOW_WATER_PERCENT;
            entries.sort_by_key(|e| e.modified);
            for victim in entries {
                if total <= target {
                    break;
                }
                match fs::remove_file(&victim.path) {
                    Ok(()) => {
                        total -= victim.len;
                        TierCounters::bump(&self.counters().evictions);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => total -= victim.len,
                    Err(_) => {}
                }
            }
        }
        self.inner.usage.store(total, Relaxed);
    }
}

fn write_new(path: &Path, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
    let mut file = File::create_new(path)?;
    file.write_all(header)?;
    file.write_all(payload)
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

/// Calls `f(path, metadata, is_temp)` for every file in the shard directories.
fn for_each_file(dir: &Path, mut f: impl FnMut(&Path, &fs::Metadata, bool)) {
    let Ok(shards) = fs::read_dir(dir) else {
        return;
    };
    for shard in shards.flatten() {
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let is_temp = file.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            f(&path, &meta, is_temp);
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
}
