//! The decoded-frame disk tier: raw frames shared by the machine's processes through the
//! page cache, on the disk tier's machinery (ledger, lock, temp-and-link, LRU eviction) in a
//! directory and budget of its own.
//!
//! Layout under `{cache dir}/decoded/`: `v1/` holds the entries exactly as the JPEG disk
//! tier holds its own (named by the blake3 of the entry's name, see [`super::format`] for
//! the file), and `locks/` the lock files with which processes decode a frame
//! once per machine: the first takes the lock, decodes and writes the entry, the others wait
//! on the lock and then map the entry it wrote.

use super::Decoded;
use super::format::{self, HEADER_LEN, RawCorruption};
use crate::codec::{self, DecodeError, Scale};
use crate::error::{Error, Result};
use crate::flock::gate::LockKind;
use crate::flock::{LockFile, Mode, Waited};
use crate::metrics::{Metrics, TierCounters};
use crate::pixels::Pixels;
use crate::tier::{DiskTier, DiskUsage, VerifyReport};
use memmap2::Mmap;
use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Sub-directory of the cache directory holding decoded frames.
pub const DECODED_DIR: &str = "decoded";
const LOCKS_DIR: &str = "locks";

/// Raw decoded frames in a cache directory.
#[derive(Clone)]
pub(crate) struct DecodedDisk {
    tier: DiskTier,
    locks: PathBuf,
}

thread_local! {
    /// Each decoding thread's entry buffer, reused from frame to frame.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Lock files that frames share by the hash of their name: a fixed set, created once and
/// never removed, so taking a decode lock creates no file (on a filesystem churned by
/// deletes, creating and unlinking a lock file per frame showed in cold-load profiles as
/// inode allocation). Two frames of one stripe decode one after the other; with a few
/// dozen decodes in flight on a machine, that is rare and costs one decode's wait.
const LOCK_STRIPES: u64 = 1024;

/// What [`DecodedDisk::decode_once`] did.
pub(crate) enum Outcome {
    /// Decoded here and stored.
    Decoded(Decoded),
    /// Another process decoded it while this one waited.
    Waited(Decoded),
}

impl DecodedDisk {
    /// Opens (lazily creating) `{cache_dir}/decoded` bounded to `capacity` bytes, waiting at
    /// most `lock_wait` for any of its locks.
    pub(crate) fn open(
        cache_dir: &Path,
        capacity: u64,
        lock_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let root = cache_dir.join(DECODED_DIR);
        DecodedDisk {
            tier: DiskTier::open_counted(&root, capacity, metrics, |m| &m.decoded_disk)
                .with_lock_wait(lock_wait),
            locks: root.join(LOCKS_DIR),
        }
    }

    fn counters(&self) -> &TierCounters {
        self.tier.counters()
    }

    /// The JPEG disk tier's machinery underneath (usage, recount).
    pub(crate) fn tier(&self) -> &DiskTier {
        &self.tier
    }

    /// Maps and verifies `name`'s entry. A corrupt entry is removed, counted and a miss.
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or mapped.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Decoded>> {
        let found = self.read_quiet(name)?;
        match &found {
            Some(d) => self.counters().hit(d.pixel_bytes()),
            None => self.counters().miss(),
        }
        Ok(found)
    }

    fn read_quiet(&self, name: &str) -> Result<Option<Decoded>> {
        let path = self.tier.path_of(name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open decoded entry", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat decoded entry", &path, e))?;
        if meta.len() < HEADER_LEN as u64 {
            self.discard(&path, name, RawCorruption::Truncated);
            return Ok(None);
        }
        // SAFETY: entry files are never written, truncated or extended after being linked
        // into place (writers link whole new files, eviction unlinks), so the mapped bytes
        // stay as they are for the life of the map even if the path is unlinked meanwhile.
        // A foreign program editing the file in place breaks this; the checksum below
        // catches edits made before it runs.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map decoded entry", &path, e))?;
        match format::validate(name, &map) {
            Ok((width, height)) => {
                self.tier.mark_used(&path);
                Ok(Some(Decoded::mapped(width, height, file, map)))
            }
            Err(corruption) => {
                self.discard(&path, name, corruption);
                Ok(None)
            }
        }
    }

    fn discard(&self, path: &Path, name: &str, corruption: RawCorruption) {
        tracing::warn!(
            "decoded entry {} for {name:?} is corrupt ({corruption}); removed",
            path.display()
        );
        TierCounters::bump(&self.counters().corrupt);
        let _ = self.tier.unlink_entry(path);
    }

    /// Takes `name`'s decode lock, waiting for another process (or thread) holding it for
    /// at most the tier's lock bound; the lock is released when the returned file is
    /// closed. `None` when the bound passed: the caller decodes without the lock (counted).
    fn lock(&self, name: &str) -> io::Result<Option<LockFile>> {
        let hash = blake3::hash(name.as_bytes());
        let stripe = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        let path = self.locks.join(format!("{:03x}", stripe % LOCK_STRIPES));
        let open = || {
            LockFile::open(LockKind::Decode, || {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            })
        };
        let file = match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(&self.locks)?;
                open()?
            }
            other => other?,
        };
        // flock locks belong to the open file, so threads of this process exclude each
        // other as processes do.
        match file.lock_within(Mode::Exclusive, self.tier.lock_wait())? {
            Waited::Locked => Ok(Some(file)),
            Waited::TimedOut => {
                TierCounters::bump(&self.tier.metrics().decode_lock_timeouts);
                tracing::warn!(
                    "decode lock of {name:?} stayed busy for {:?}; decoding without it",
                    self.tier.lock_wait()
                );
                Ok(None)
            }
        }
    }

    /// Returns `name`'s entry, decoding `jpeg` into it unless some process on this machine
    /// did: one decode per frame per machine.
    ///
    /// # Errors
    /// `Ok(Err(reason))` when the JPEG does not decode or is over `max_pixels` (nothing is
    /// stored then); `Err` when the directory fails (the caller then decodes into memory).
    pub(crate) fn decode_once(
        &self,
        name: &str,
        jpeg: &[u8],
        scale: Scale,
        max_pixels: u64,
    ) -> Result<std::result::Result<Outcome, DecodeError>> {
        if let Some(found) = self.read(name)? {
            return Ok(Ok(Outcome::Waited(found)));
        }
        // Past the lock's bound this decodes alone: the entry is written to a temp file and
        // linked into place, so a concurrent decoder of the same frame costs CPU, never a
        // torn entry.
        let lock = self
            .lock(name)
            .map_err(|e| Error::io("lock decoded entry", &self.locks, e))?;
        if let Some(found) = self.read_quiet(name)? {
            return Ok(Ok(Outcome::Waited(found)));
        }
        let decoded = self.write(name, jpeg, scale, max_pixels);
        drop(lock);
        Ok(decoded?.map(Outcome::Decoded))
    }

    /// Decodes `jpeg` into this thread's scratch buffer, writes it out as a temp file and
    /// links that in as `name`'s entry, then maps the entry for the memory tier.
    ///
    /// Not decoded straight into a mapped file: on ext4 every first write to a page of a
    /// shared file mapping goes through the filesystem's page-fault path, which made storing
    /// a 1280x720 frame cost 10 ms against 4.5 ms for a decode to memory and a `write`
    /// (`benches/decode.rs`, `raw_entry_1280x720`). The scratch buffer is reused, so its
    /// pages are faulted in once per thread, not once per frame.
    fn write(
        &self,
        name: &str,
        jpeg: &[u8],
        scale: Scale,
        max_pixels: u64,
    ) -> Result<std::result::Result<Decoded, DecodeError>> {
        let (width, height) = match codec::checked_dimensions(jpeg, scale, max_pixels) {
            Ok(dims) => dims,
            Err(reason) => return Ok(Err(reason)),
        };
        let len = format::entry_len(width, height);
        let written = SCRATCH.with_borrow_mut(|entry| {
            entry.resize(len, 0);
            format::write_header(&mut entry[..HEADER_LEN], name, width, height);
            codec::decode_into(jpeg, scale, &mut entry[HEADER_LEN..])?;
            format::seal(entry);
            let entry: &[u8] = entry;
            let stored = self
                .tier
                .write_file_blocking(name, len as u64, |mut file| file.write_all(entry));
            Ok(stored.map_err(|e| {
                // Full or read-only: the decode is not lost, the caller keeps it in memory.
                TierCounters::bump(&self.counters().errors);
                self.tier.warn_once(&e);
                let pixels = entry[HEADER_LEN..].to_vec();
                Decoded::heap(Pixels::from_vec(width, height, pixels).expect("sized above"))
            }))
        });
        let file = match written {
            Ok(Ok(file)) => file,
            Ok(Err(in_memory)) => return Ok(Ok(in_memory)),
            Err(reason) => return Ok(Err(reason)),
        };
        self.counters().wrote(len - HEADER_LEN);
        // SAFETY: as in `read_quiet`: the entry is never modified after being linked, and
        // this process wrote and sealed these very bytes.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io("map decoded entry", self.tier.path_of(name), e))?;
        Ok(Ok(Decoded::mapped(width, height, file, map)))
    }

    /// Checks every entry's header and checksum, removes the bad ones and reports them.
    pub(crate) fn verify_blocking(&self, progress: impl FnMut(u64, u64)) -> VerifyReport {
        let check = |path: &Path, name: &str| match fs::read(path) {
            Ok(bytes) => format::validate(name, &bytes)
                .map(|_| true)
                .map_err(|c| c.to_string()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("unreadable: {e}")),
        };
        self.tier.verify_with(read_name, check, progress)
    }

    /// Removes every entry whose frame key starts with `prefix`; returns how many.
    pub(crate) fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        let mut removed = 0;
        for found in self.tier.scan() {
            if read_name(&found.path).is_some_and(|n| n.starts_with(prefix))
                && self.tier.unlink_entry(&found.path).unwrap_or(false)
            {
                removed += 1;
            }
        }
        removed
    }

    /// Scans the directory and reports its usage.
    pub(crate) fn usage(&self) -> DiskUsage {
        self.tier.usage()
    }
}

/// The name in an entry's header page.
fn read_name(path: &Path) -> Option<String> {
    let mut header = vec![0u8; HEADER_LEN];
    File::open(path).ok()?.read_exact(&mut header).ok()?;
    format::read_name(&header)
}
