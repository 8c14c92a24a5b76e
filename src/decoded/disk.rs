//! The decoded-frame disk tier: raw frames shared by the machine's processes through the
//! page cache, on the disk tier's machinery (ledger, lock, temp-and-link, LRU eviction) in a
//! directory and budget of its own.
//!
//! Layout under `{cache dir}/decoded/`: `v1/` holds the entries exactly as the JPEG disk
//! tier holds its own (named by the blake3 of the entry's name, see [`super::format`] for
//! the file), and `locks/` the lock files with which processes decode a frame
//! once per machine: the first takes the lock and decodes, its writer behind loads writes
//! the entry and then lets the lock go, and the others, waiting on the lock, map the entry.

use super::Decoded;
use super::behind::{self, Claim};
use super::format::{self, HEADER_LEN, RawCorruption};
use crate::codec::{DecodeError, Scale};
use crate::error::{Error, Result};
use crate::flock::LockFile;
use crate::flock::LockKind;
use crate::localfs::{self, How, Sharing};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{DiskTier, DiskUsage, VerifyReport};
use memmap2::MmapOptions;

use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Sub-directory of the cache directory holding decoded frames.
pub const DECODED_DIR: &str = "decoded";
const LOCKS_DIR: &str = "locks";

/// The decoded disk tier's free-space settings: what to leave free on the filesystem, and
/// the capacity of the JPEG disk tier beside it (its weight in sharing the spare space).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Space {
    /// See [`crate::DiskConfig::min_free`].
    pub(crate) min_free: crate::tier::MinFree,
    /// The JPEG disk tier's capacity.
    pub(crate) jpeg_capacity: u64,
}

/// Raw decoded frames in a cache directory.
#[derive(Clone)]
pub(crate) struct DecodedDisk {
    tier: DiskTier,
    locks: PathBuf,
}

/// Lock files that frames share by the hash of their name: a fixed set, created once and
/// never removed, so taking a decode lock creates no file (on a filesystem churned by
/// deletes, creating and unlinking a lock file per frame showed in cold-load profiles as
/// inode allocation). Two frames of one stripe decode one after the other; with a few
/// dozen decodes in flight on a machine, that is rare and costs one decode's wait.
const LOCK_STRIPES: u64 = 1024;

/// What [`DecodedDisk::decode_once`] did.
pub(crate) enum Outcome {
    /// Decoded here; its raw entry is written behind.
    Decoded(Arc<Decoded>),
    /// Already decoded: its entry was on disk (a plain hit), or another thread of this
    /// process had it in memory, its write queued.
    Found(Arc<Decoded>),
    /// Another process was decoding it: this one waited on its decode lock, then mapped
    /// the entry it wrote.
    Waited(Arc<Decoded>),
}

impl DecodedDisk {
    /// Opens (lazily creating) `{cache_dir}/decoded` bounded to `capacity` bytes and to its
    /// share of what the filesystem spares (`space`), waiting at most `lock_wait` for any of
    /// its locks.
    pub(crate) fn open(
        cache_dir: &Path,
        capacity: u64,
        space: Space,
        lock_wait: Duration,
        sharing: Sharing,
        metrics: Arc<Metrics>,
    ) -> Self {
        let root = cache_dir.join(DECODED_DIR);
        DecodedDisk {
            tier: DiskTier::open_counted(&root, capacity, sharing, metrics, |m| &m.decoded_disk)
                .with_lock_wait(lock_wait)
                .with_min_free(space.min_free)
                // The JPEG tier of the same cache directory: the spare space is shared.
                .with_sibling(cache_dir, space.jpeg_capacity),
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
        let file = match localfs::open(&path, How::Read, self.tier.sharing()) {
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
        // Populated: the checksum below reads every page, so the kernel maps them all in
        // this one call rather than in a page fault per few pages.
        let map = unsafe { MmapOptions::new().populate().map(&file) }
            .map_err(|e| Error::io("map decoded entry", &path, e))?;
        match format::validate(name, &map) {
            Ok((width, height)) => {
                self.tier.mark_used(&path);
                // The descriptor closes here: the map stands on its own.
                let entry = super::EntryFile::new(path, &meta);
                Ok(Some(Decoded::mapped(width, height, entry, map)))
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

    /// `name`'s decode stripe lock file (not locked).
    fn stripe(&self, name: &str) -> PathBuf {
        let hash = blake3::hash(name.as_bytes());
        let stripe = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        self.locks.join(format!("{:03x}", stripe % LOCK_STRIPES))
    }

    fn open_stripe(&self, path: &Path) -> io::Result<LockFile> {
        let open = || {
            LockFile::open(LockKind::Decode, || {
                localfs::open(path, How::ReadWriteCreate, self.tier.sharing())
            })
        };
        match open() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                localfs::create_dir_all(&self.locks, self.tier.sharing())?;
                open()
            }
            other => other,
        }
    }

    /// Returns `name`'s entry, decoding `jpeg` unless some process on this machine did:
    /// one decode per frame per machine. A frame decoded here is handed back at once, from
    /// memory, and its raw entry written behind the load (see [`super::behind`]): the
    /// frame's stripe lock stays held until the entry is in place, so that processes
    /// waiting on it map the entry instead of decoding again.
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
            return Ok(Ok(Outcome::Found(Arc::new(found))));
        }
        let stripe = self.stripe(name);
        let claim = behind::current()
            .claim(
                &stripe,
                name,
                || self.open_stripe(&stripe),
                self.tier.lock_wait(),
            )
            .map_err(|e| Error::io("lock decoded entry", &stripe, e))?;
        let (claimed, waited) = match claim {
            Claim::Queued(found) => return Ok(Ok(Outcome::Found(found))),
            Claim::Held(claimed) => {
                let waited = claimed.waited();
                (Some(claimed), waited)
            }
            // Past the lock's bound this decodes alone: the entry is written to a temp
            // file and linked into place, so a concurrent decoder of the same frame costs
            // CPU, never a torn entry.
            Claim::TimedOut => {
                TierCounters::bump(&self.tier.metrics().decode_lock_timeouts);
                tracing::warn!(
                    "decode lock of {name:?} stayed busy for {:?}; decoding without it",
                    self.tier.lock_wait()
                );
                (None, true)
            }
        };
        if let Some(found) = self.read_quiet(name)? {
            // Linked since the first look: by the process this one waited for, or (without a
            // wait) by one that finished just before.
            let found = Arc::new(found);
            if waited {
                return Ok(Ok(Outcome::Waited(found)));
            }
            // A hit after all (its first look counted a miss).
            self.counters().hit(found.pixel_bytes());
            return Ok(Ok(Outcome::Found(found)));
        }
        let decoded = match super::decode_in_memory(jpeg, scale, max_pixels) {
            Ok(decoded) => Arc::new(decoded),
            Err(reason) => return Ok(Err(reason)),
        };
        match claimed {
            Some(claimed) => claimed.queue(self.clone(), decoded.clone()),
            None => behind::queue_unlocked(self.clone(), name, decoded.clone()),
        }
        Ok(Ok(Outcome::Decoded(decoded)))
    }

    /// Writes `decoded` as `name`'s entry (on the writer behind loads): the header page,
    /// sealed over the pixels, then the pixels as they are; the temp file is linked into
    /// place whole. An entry already there (another process decoded alone past the lock's
    /// bound) is left as it is. A failure is counted; the frame stays in memory. Whether
    /// the entry is in place.
    pub(crate) fn store(&self, name: &str, decoded: &Decoded) -> bool {
        if self.tier.path_of(name).exists() {
            return true;
        }
        let (width, height) = decoded.dimensions();
        let pixels = decoded.raw();
        let mut header = vec![0u8; HEADER_LEN];
        format::write_header(&mut header, name, width, height);
        format::seal_header(&mut header, pixels);
        let len = (HEADER_LEN + pixels.len()) as u64;
        let stored = self.tier.write_file_blocking(name, len, |mut file| {
            file.write_all(&header)?;
            file.write_all(pixels)
        });
        match stored {
            Ok(_) => {
                self.counters().wrote(pixels.len());
                true
            }
            Err(e) => {
                // Full or read-only: the frame is not lost, the memory tier keeps it.
                TierCounters::bump(&self.counters().errors);
                self.tier.warn_once(&e);
                false
            }
        }
    }

    /// Checks every entry's header and checksum, removes the bad ones and reports them.
    pub(crate) fn verify_blocking(&self, progress: impl FnMut(u64, u64)) -> VerifyReport {
        let check = |path: &Path, name: &str| match localfs::read(path) {
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
    localfs::open(path, How::Read, Sharing::Private)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    format::read_name(&header)
}
