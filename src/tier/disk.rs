//! The JPEG disk tier: the store engine ([`crate::store`]) holding entries of the format in
//! [`crate::entry`] (a key's bytes as the origin has them, with their blake3), shared by
//! every process on a machine under `{cache dir}/v1/`.

use crate::entry::{self, FIXED_HEADER_LEN};
use crate::error::{Error, Result};
use crate::localfs::Sharing;
use crate::metrics::Metrics;
use crate::store::{Format, Store};
use bytes::Bytes;
use std::io::{Read, Write};
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::store::{
    BadEntry, DiskUsage, EvictionStatus, FetchLock, LimitedBy, MinFree, Recount, VerifyReport,
    auto_capacity,
};

/// What a JPEG disk entry holds: see [`crate::entry`].
pub(crate) struct Jpeg;

impl Format for Jpeg {
    const NAME: &'static str = "disk cache entry";
    const MIN_LEN: u64 = FIXED_HEADER_LEN as u64;
    // The fixed header and the longest key `key_in` reads.
    const HEAD_LEN: usize = FIXED_HEADER_LEN + MAX_KEY_LEN;

    fn key_in(head: &[u8]) -> Option<String> {
        if head.get(..8)? != entry::MAGIC {
            return None;
        }
        let word = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
        let offset = entry::key_offset(word(8)?)?;
        let key_len = (word(12)? as usize).min(MAX_KEY_LEN);
        String::from_utf8(head.get(offset..offset + key_len)?.to_vec()).ok()
    }

    fn check(key: &str, bytes: &[u8]) -> std::result::Result<(), String> {
        entry::validate(key, bytes)
            .map(|_| ())
            .map_err(|c| c.to_string())
    }
}

/// Longest key read back from a header for `clear` and `verify`.
const MAX_KEY_LEN: usize = 4096;

/// A cache directory of checksummed JPEG (and listing, overlay) entries: the store engine
/// with the [`crate::entry`] format. Derefs to the [`Store`] for what every tier shares
/// (usage, eviction, locks, removal).
#[derive(Clone)]
pub struct DiskTier {
    store: Store,
}

impl Deref for DiskTier {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// Runs a blocking disk operation off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(Error::task("disk cache operation", join)))
}

impl DiskTier {
    /// Opens (lazily creating) a cache directory bounded to `capacity` bytes.
    ///
    /// Never fails, never blocks on the directory and never scans it: existing entries are
    /// served at once. A background thread stands for election as the machine's evictor
    /// for this directory (see [`Store`]).
    pub fn open(dir: impl Into<std::path::PathBuf>, capacity: u64, metrics: Arc<Metrics>) -> Self {
        Self::open_with(dir, capacity, Sharing::Private, metrics)
    }

    /// As [`DiskTier::open`], creating files and directories as `sharing` says (a cache
    /// shared by the users of a group).
    pub fn open_with(
        dir: impl Into<std::path::PathBuf>,
        capacity: u64,
        sharing: Sharing,
        metrics: Arc<Metrics>,
    ) -> Self {
        let store = Store::open(dir, capacity, sharing, metrics, |m| &m.disk).stand_for_evictor();
        DiskTier { store }
    }

    /// As [`DiskTier::open`], without standing for election as the evictor: for tools and
    /// tests that look at a directory while other processes use it. Its writers still
    /// evict a batch when usage crosses the capacity, so the cap holds.
    pub fn open_inspector(
        dir: impl Into<std::path::PathBuf>,
        capacity: u64,
        metrics: Arc<Metrics>,
    ) -> Self {
        let store = Store::open(dir, capacity, Sharing::Private, metrics, |m| &m.disk);
        DiskTier { store }
    }

    /// See [`Store::with_lock_wait`].
    pub fn with_lock_wait(self, wait: Duration) -> Self {
        DiskTier {
            store: self.store.with_lock_wait(wait),
        }
    }

    /// See [`Store::with_min_free`].
    pub fn with_min_free(self, min_free: MinFree) -> Self {
        DiskTier {
            store: self.store.with_min_free(min_free),
        }
    }

    /// Refuses entries whose payload is over `max_object_size` bytes (with their header
    /// and a key of up to 4 KiB) as broken, before reading them (see
    /// the `max_object_size` setting).
    pub fn with_max_object_size(self, max_object_size: u64) -> Self {
        let limit = max_object_size.saturating_add((FIXED_HEADER_LEN + MAX_KEY_LEN) as u64);
        DiskTier {
            store: self.store.with_entry_limit(limit),
        }
    }

    /// See [`Store::with_sibling`].
    pub(crate) fn with_sibling(self, root: &Path, weight: u64) -> Self {
        DiskTier {
            store: self.store.with_sibling(root, weight),
        }
    }

    /// Reads and verifies `key`'s entry on the calling thread.
    ///
    /// A corrupt entry is removed, counted and reported as a miss.
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or read.
    pub fn read_blocking(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.read_verified_blocking(key)?.map(|(bytes, _)| bytes))
    }

    /// As [`DiskTier::read_blocking`], with the payload's blake3 as the entry records it
    /// (covered by the checksum the read verified), so that callers comparing it with a
    /// manifest need not hash the payload.
    ///
    /// # Errors
    /// As [`DiskTier::read_blocking`].
    pub fn read_verified_blocking(&self, key: &str) -> Result<Option<(Bytes, blake3::Hash)>> {
        let Some(opened) = self.open_entry::<Jpeg>(key)? else {
            self.counters().miss();
            return Ok(None);
        };
        // Read, not mapped: for entries of this tier's size (JPEGs, PNGs, listings: KBs to a
        // few MBs) a read into one buffer costs less than mapping and unmapping (see the
        // README's disk-hit profile), and the buffer is owned, so the memory tier can keep
        // it as it is. Writers replace whole files, so this descriptor's bytes never change.
        // The store checked the length against its entry limit before this allocation.
        let buf = crate::localfs::read_all(&opened.file, opened.meta.len())
            .map_err(|e| Error::io("read cache entry", &opened.path, e))?;
        match entry::validate(key, &buf) {
            Ok(range) => {
                self.mark_used(&opened.path);
                self.counters().hit(range.len());
                let hash = entry::blake3_of(&buf);
                Ok(Some((Bytes::from(buf).slice(range), hash)))
            }
            Err(corruption) => {
                self.discard::<Jpeg>(&opened.path, key, &corruption);
                self.counters().miss();
                Ok(None)
            }
        }
    }

    /// The payload's blake3 that `key`'s entry header records, read without the payload
    /// and not verified (see [`entry::peek_blake3`]); `None` when there is no such entry or
    /// its header does not check. Counts nothing.
    pub fn peek_blake3_blocking(&self, key: &str) -> Option<blake3::Hash> {
        let mut head = vec![0u8; FIXED_HEADER_LEN + key.len()];
        // Opened as every entry is: never through a link, never a FIFO that would block.
        let opened = self.open_entry::<Jpeg>(key).ok()??;
        (&opened.file).read_exact(&mut head).ok()?;
        entry::peek_blake3(key, &head)
    }

    /// Writes `key`'s entry on the calling thread: reserve, write a temp file, link it in.
    ///
    /// # Errors
    /// When the directory cannot be created or written (read-only, full, missing).
    pub fn write_blocking(&self, key: &str, payload: &[u8]) -> Result<()> {
        self.write_hashed_blocking(key, payload, &blake3::hash(payload))
    }

    /// As [`DiskTier::write_blocking`], for a payload whose blake3 the caller already has
    /// (computed from these bytes: reads hand it out as the payload's without hashing it).
    ///
    /// # Errors
    /// As [`DiskTier::write_blocking`].
    pub fn write_hashed_blocking(
        &self,
        key: &str,
        payload: &[u8],
        blake3: &blake3::Hash,
    ) -> Result<()> {
        let header = entry::encode_header_hashed(key, payload, blake3);
        let len = (header.len() + payload.len()) as u64;
        self.write_file_blocking(key, len, |mut file| {
            file.write_all(&header)?;
            file.write_all(payload)
        })?;
        self.counters().wrote(payload.len());
        Ok(())
    }

    /// Checks every entry's header and checksum, removes the bad ones and reports them.
    /// `progress(done, total)` is called after each entry.
    pub fn verify_blocking(&self, progress: impl FnMut(u64, u64)) -> VerifyReport {
        self.verify_entries::<Jpeg>(progress)
    }

    /// Removes every entry whose key starts with `prefix`, reading each entry's header.
    ///
    /// Entry names are hashes, so this visits the whole directory: meant for `clear`, not
    /// for hot paths. Returns the number of entries removed.
    pub fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        self.remove_keys_with_prefix::<Jpeg>(prefix)
    }

    /// Reads and verifies `key`'s entry off the async workers; see [`DiskTier::read_blocking`].
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or read.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.read_blocking(&key)).await
    }

    /// As [`DiskTier::get`], with the blake3 the read verified.
    ///
    /// # Errors
    /// As [`DiskTier::get`].
    pub async fn get_verified(&self, key: &str) -> Result<Option<(Bytes, blake3::Hash)>> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.read_verified_blocking(&key)).await
    }

    /// As [`DiskTier::put`], for a payload whose blake3 the caller already has.
    ///
    /// # Errors
    /// As [`DiskTier::put`].
    pub async fn put_hashed(&self, key: &str, value: Bytes, blake3: blake3::Hash) -> Result<()> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.write_hashed_blocking(&key, &value, &blake3)).await
    }

    /// Writes `key`'s entry off the async workers; see [`DiskTier::write_blocking`].
    ///
    /// # Errors
    /// When the directory cannot be created or written (read-only, full, missing).
    pub async fn put(&self, key: &str, value: Bytes) -> Result<()> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.write_blocking(&key, &value)).await
    }

    /// Removes `key`'s entry off the async workers.
    ///
    /// # Errors
    /// When the file exists and cannot be removed.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let tier = self.clone();
        let key = key.to_owned();
        blocking(move || tier.remove_blocking(&key)).await
    }
}
