//! Reading, writing and removing one entry: map and verify, reserve, temp file, link.

use super::DiskTier;
use super::temp::TEMP_PREFIX;
use crate::entry::{self, Corruption, FIXED_HEADER_LEN};
use crate::error::{Error, Result};
use crate::metrics::TierCounters;
use bytes::Bytes;
use memmap2::Mmap;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// A hit refreshes the entry's recency only when it is older than this, to keep reads cheap.
pub(super) const TOUCH_AFTER: Duration = Duration::from_secs(60);

/// Reads the key echoed in an entry's header, if the header is well formed.
pub(super) fn read_key(path: &Path) -> Option<String> {
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

/// Refreshes a hit entry's recency when it is older than [`TOUCH_AFTER`] (best effort:
/// recency only steers eviction).
pub(crate) fn touch(file: &File, meta: &fs::Metadata) {
    if meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > TOUCH_AFTER)
    {
        let _ = file.set_modified(SystemTime::now());
    }
}

impl DiskTier {
    /// Reads and verifies `key`'s entry on the calling thread.
    ///
    /// A corrupt entry is removed, counted and reported as a miss.
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or mapped.
    pub fn read_blocking(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.read_verified_blocking(key)?.map(|(bytes, _)| bytes))
    }

    /// As [`DiskTier::read_blocking`], with the payload's blake3 that the read verified, so
    /// that callers comparing it with a manifest need not hash the payload again.
    ///
    /// # Errors
    /// As [`DiskTier::read_blocking`].
    pub fn read_verified_blocking(&self, key: &str) -> Result<Option<(Bytes, blake3::Hash)>> {
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
                touch(&file, &meta);
                self.counters().hit(range.len());
                let hash: [u8; 32] = map[24..56].try_into().expect("32 bytes");
                Ok(Some((
                    Bytes::from_owner(map).slice(range),
                    blake3::Hash::from_bytes(hash),
                )))
            }
            Err(corruption) => {
                self.discard(&path, key, corruption);
                Ok(None)
            }
        }
    }

    pub(super) fn discard(&self, path: &Path, key: &str, corruption: Corruption) {
        tracing::warn!(
            "disk cache entry {} for {key:?} is corrupt ({corruption}); removed",
            path.display()
        );
        TierCounters::bump(&self.counters().corrupt);
        self.counters().miss();
        let _ = self.unlink_entry(path);
    }

    /// Unlinks an entry and releases its bytes; `Ok(false)` when it was already gone.
    pub(crate) fn unlink_entry(&self, path: &Path) -> io::Result<bool> {
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
        self.write_hashed_blocking(key, payload, &blake3::hash(payload))
    }

    /// As [`DiskTier::write_blocking`], for a payload whose blake3 the caller already has.
    ///
    /// # Errors
    /// As [`DiskTier::write_blocking`].
    pub fn write_hashed_blocking(
        &self,
        key: &str,
        payload: &[u8],
        blake3: &blake3::Hash,
    ) -> Result<()> {
        let header = entry::encode_header_hashed(key, payload.len(), blake3);
        let len = (header.len() + payload.len()) as u64;
        self.write_file_blocking(key, len, |mut file| {
            file.write_all(&header)?;
            file.write_all(payload)
        })?;
        self.counters().wrote(payload.len());
        Ok(())
    }

    /// Writes a file of exactly `len` bytes as `key`'s entry: reserves the bytes (evicting
    /// first if that crosses the capacity), lets `fill` write the temp file, links it into
    /// place. Returns the file, now the entry. `fill` defines the format; readers validate it.
    /// The caller counts the write.
    ///
    /// # Errors
    /// When the directory cannot be written, or `fill` fails (nothing is left behind).
    pub(crate) fn write_file_blocking(
        &self,
        key: &str,
        len: u64,
        fill: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<File> {
        let path = self.path_of(key);
        let shard = path.parent().expect("entry paths have a shard directory");
        let (tmp, file, used) = self
            .reserve(shard, len)
            .map_err(|e| Error::io("write cache entry", &path, e))?;
        if used > self.inner.capacity {
            self.make_room();
        }
        let written = fill(&file).and_then(|()| self.commit(&tmp, &path));
        if let Err(e) = written {
            let _shared = self.lock(false);
            if fs::remove_file(&tmp).is_ok() {
                self.inner.ledger.sub(len);
            }
            return Err(Error::io("write cache entry", path, e));
        }
        Ok(file)
    }

    /// Creates the temp file and reserves `len` bytes in the ledger, under the shared lock
    /// so that a recount sees either both or neither. Returns the ledger's new total.
    pub(super) fn reserve(&self, shard: &Path, len: u64) -> io::Result<(PathBuf, File, u64)> {
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
}
