//! The decoded-frame disk tier: the store engine ([`crate::store`]) holding raw frames (the
//! format in [`super::format`]) that the machine's processes share through the page cache,
//! in a directory and budget of its own; and the striped decode locks with which they
//! decode a frame once per machine.
//!
//! Layout under `{cache dir}/decoded/`: `v1/` holds the entries as the store lays them out
//! (named by the blake3 of the entry's name, [`crate::layout::decoded_entry_name`]), and
//! `locks/` the decode stripe lock files: the first process takes the lock and decodes, its
//! raw-entry writer writes the entry and then lets the lock go, and the others, waiting on
//! the lock, map the entry.

use super::format::{self, HEADER_LEN};
use super::frame::{Decoded, EntryFile, decode_in_memory};
use super::raw_writer::{self, Claim, RawSink};
use crate::codec::{DecodeError, Scale};
use crate::error::{Error, Result};
use crate::flock::LockKind;
use crate::localfs::Sharing;
use crate::metrics::{Metrics, TierCounters};
use crate::store::{DiskUsage, Format, Store, Stripes, VerifyReport};
use memmap2::MmapOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Sub-directory of the cache directory holding decoded frames.
pub const DECODED_DIR: &str = "decoded";
const LOCKS_DIR: &str = "locks";

/// The decoded disk tier's free-space settings: what to leave free on the filesystem, and
/// the capacity of the JPEG disk tier beside it (its weight in sharing the spare space).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Space {
    /// The `min_free` setting.
    pub(crate) min_free: crate::store::MinFree,
    /// The JPEG disk tier's capacity.
    pub(crate) jpeg_capacity: u64,
}

/// What a raw entry holds: see [`super::format`].
pub(crate) struct Raw;

impl Format for Raw {
    const NAME: &'static str = "decoded entry";
    const MIN_LEN: u64 = HEADER_LEN as u64;
    const HEAD_LEN: usize = HEADER_LEN;

    fn key_in(head: &[u8]) -> Option<String> {
        format::read_name(head)
    }

    fn check(name: &str, entry: &[u8]) -> std::result::Result<(), String> {
        format::validate(name, entry)
            .map(|_| ())
            .map_err(|c| c.to_string())
    }
}

/// Raw decoded frames in a cache directory.
#[derive(Clone)]
pub(crate) struct DecodedDisk {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The decode locks.
    stripes: Stripes,
}

/// Decode lock stripes: two frames of one stripe decode one after the other; with a few
/// dozen decodes in flight on a machine, that is rare and costs one decode's wait.
const LOCK_STRIPES: u64 = 1024;

/// How [`DecodedDisk::decode_once`] got the frame.
pub(crate) enum Decode {
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
        let store = Store::open(&root, capacity, sharing, metrics, |m| &m.decoded_disk)
            .stand_for_evictor()
            .with_lock_wait(lock_wait)
            .with_min_free(space.min_free)
            // The JPEG tier of the same cache directory: the spare space is shared.
            .with_sibling(cache_dir, space.jpeg_capacity);
        let stripes = Stripes::new(
            root.join(LOCKS_DIR),
            LOCK_STRIPES,
            sharing,
            LockKind::Decode,
        );
        DecodedDisk {
            inner: Arc::new(Inner { store, stripes }),
        }
    }

    fn counters(&self) -> &TierCounters {
        self.inner.store.counters()
    }

    /// The store underneath (usage, eviction, recount).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
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
        let store = self.store();
        let Some(opened) = store.open_entry::<Raw>(name)? else {
            return Ok(None);
        };
        // SAFETY: entry files are never written, truncated or extended after being linked
        // into place (writers link whole new files, eviction unlinks), so the mapped bytes
        // stay as they are for the life of the map even if the path is unlinked meanwhile.
        // A foreign program editing the file in place breaks this; the checksum below
        // catches edits made before it runs.
        // Populated: the checksum below reads every page, so the kernel maps them all in
        // this one call rather than in a page fault per few pages.
        let map = unsafe {
            MmapOptions::new()
                .len(opened.meta.len() as usize)
                .populate()
                .map(&opened.file)
        }
        .map_err(|e| Error::io("map decoded entry", &opened.path, e))?;
        match format::validate(name, &map) {
            Ok((width, height)) => {
                store.mark_used(&opened.path);
                // The descriptor closes here: the map stands on its own.
                let entry = EntryFile::new(opened.path, &opened.meta);
                Ok(Some(Decoded::mapped(width, height, entry, map)))
            }
            Err(corruption) => {
                store.discard::<Raw>(&opened.path, name, &corruption);
                Ok(None)
            }
        }
    }

    /// Returns `name`'s entry, decoding `jpeg` unless some process on this machine did:
    /// one decode per frame per machine. A frame decoded here is handed back at once, from
    /// memory, and its raw entry written behind the load (see [`super::raw_writer`]): the
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
    ) -> Result<std::result::Result<Decode, DecodeError>> {
        if let Some(found) = self.read(name)? {
            return Ok(Ok(Decode::Found(Arc::new(found))));
        }
        let stripes = &self.inner.stripes;
        let stripe = stripes.path(name);
        let claim = raw_writer::current()
            .claim(
                &stripe,
                name,
                || stripes.open(&stripe),
                self.store().lock_wait(),
            )
            .map_err(|e| Error::io("lock decoded entry", &stripe, e))?;
        let (claimed, waited) = match claim {
            Claim::Queued(found) => return Ok(Ok(Decode::Found(found))),
            Claim::Held(claimed) => {
                let waited = claimed.waited();
                (Some(claimed), waited)
            }
            // Past the lock's bound this decodes alone: the entry is written to a temp
            // file and linked into place, so a concurrent decoder of the same frame costs
            // CPU, never a torn entry.
            Claim::TimedOut => {
                TierCounters::bump(&self.store().metrics().decode_lock_timeouts);
                tracing::warn!(
                    "decode lock of {name:?} stayed busy for {:?}; decoding without it",
                    self.store().lock_wait()
                );
                (None, true)
            }
        };
        if let Some(found) = self.read_quiet(name)? {
            // Linked since the first look: by the process this one waited for, or (without a
            // wait) by one that finished just before.
            let found = Arc::new(found);
            if waited {
                return Ok(Ok(Decode::Waited(found)));
            }
            // A hit after all (its first look counted a miss).
            self.counters().hit(found.pixel_bytes());
            return Ok(Ok(Decode::Found(found)));
        }
        let decoded = match decode_in_memory(jpeg, scale, max_pixels) {
            Ok(decoded) => Arc::new(decoded),
            Err(reason) => return Ok(Err(reason)),
        };
        match claimed {
            Some(claimed) => claimed.queue(Arc::new(self.clone()), decoded.clone()),
            None => raw_writer::queue_unlocked(Arc::new(self.clone()), name, decoded.clone()),
        }
        Ok(Ok(Decode::Decoded(decoded)))
    }

    /// Checks every entry's header and checksum, removes the bad ones and reports them.
    pub(crate) fn verify_blocking(&self, progress: impl FnMut(u64, u64)) -> VerifyReport {
        self.store().verify_entries::<Raw>(progress)
    }

    /// Removes every entry whose frame key starts with `prefix`; returns how many.
    pub(crate) fn remove_prefix_blocking(&self, prefix: &str) -> u64 {
        self.store().remove_keys_with_prefix::<Raw>(prefix)
    }

    /// Scans the directory and reports its usage.
    pub(crate) fn usage(&self) -> DiskUsage {
        self.store().usage()
    }
}

impl RawSink for DecodedDisk {
    /// Writes `decoded` as `name`'s entry (on the writer behind loads): the header page,
    /// sealed over the pixels, then the pixels as they are; the temp file is linked into
    /// place whole. An entry already there (another process decoded alone past the lock's
    /// bound) is left as it is. A failure is counted; the frame stays in memory. Whether
    /// the entry is in place.
    fn write(&self, name: &str, decoded: &Decoded) -> bool {
        if self.store().path_of(name).exists() {
            return true;
        }
        let (width, height) = decoded.dimensions();
        let pixels = decoded.raw();
        let mut header = vec![0u8; HEADER_LEN];
        format::write_header(&mut header, name, width, height);
        format::seal_header(&mut header, pixels);
        let len = (HEADER_LEN + pixels.len()) as u64;
        let stored = self.store().write_file_blocking(name, len, |mut file| {
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
                self.store().warn_once(&e);
                false
            }
        }
    }

    fn dropped(&self) {
        TierCounters::bump(&self.store().metrics().raw_writes_dropped);
    }
}
