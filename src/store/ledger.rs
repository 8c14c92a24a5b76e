//! The ledger: bytes in use per shard directory and the evictor's state, one mapped page
//! every process shares.

use crate::localfs::{self, How, Sharing};
use memmap2::{MmapOptions, MmapRaw};
#[cfg(test)]
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared ledger file.
pub(super) const LEDGER_FILE: &str = ".usage";

/// The ledger's mapped size: one page.
pub(super) const LEDGER_LEN: u64 = 4096;

/// Shard directories (`00` to `ff`), each with its own byte counter.
pub(super) const SHARDS: usize = 256;

/// The page's layout, in 8-byte words; every layout change happens here.
///
/// Words 0 and 1 held the total and a "counted" flag in the first layout: they are left
/// unused, so that a process of that version still running on the box cannot scribble over
/// this one's state (it would only make this one rebuild the counters again).
pub(super) mod word {
    /// [`super::LAYOUT`] once a full recount has set every shard's counter; anything else
    /// means the counters are not to be trusted and the evictor rebuilds them.
    pub const LAYOUT: usize = 2;
    /// The shard the CLOCK hand visits next (taken with `fetch_add`, modulo the shards).
    pub const HAND: usize = 3;
    /// `shard + 1` while the evictor evicts or recounts that shard, 0 otherwise: an evictor
    /// taking over finds the shard its predecessor died in and recounts it first.
    pub const BUSY_SHARD: usize = 4;
    /// The evictor's pid (0 when none has run yet).
    pub const EVICTOR_PID: usize = 5;
    /// When the evictor last looked at the ledger, in milliseconds since the Unix epoch.
    pub const HEARTBEAT_MS: usize = 6;
    /// Eviction rounds completed (a round takes usage from above the high watermark to
    /// below the low one).
    pub const ROUNDS: usize = 7;
    /// The last round's duration in microseconds.
    pub const LAST_ROUND_US: usize = 8;
    /// Entries the last round removed.
    pub const LAST_ROUND_ENTRIES: usize = 9;
    /// Bytes the last round freed.
    pub const LAST_ROUND_BYTES: usize = 10;
    /// Writes that found usage above the hard limit and evicted one batch themselves.
    pub const WRITER_BATCHES: usize = 11;
    /// Shards recounted because a process died in the middle of changing them.
    pub const REPAIRED_SHARDS: usize = 12;
    /// Full rebuilds of the counters (a new or foreign ledger).
    pub const REBUILDS: usize = 13;
    /// Evictor takeovers (the lock changed hands).
    pub const TAKEOVERS: usize = 14;
    /// The duration of the last full rebuild in microseconds.
    pub const LAST_REBUILD_US: usize = 15;
    /// The effective limit the last sample of the filesystem found (see `space.rs`):
    /// the capacity, or less when the filesystem cannot spare it.
    pub const LIMIT: usize = 16;
    /// Why: 1 the capacity, 2 the free space (0 before the first sample).
    pub const LIMITED_BY: usize = 17;
    /// The filesystem's size, its bytes available and the bytes kept free, as sampled.
    pub const FS_SIZE: usize = 18;
    pub const FS_FREE: usize = 19;
    pub const MIN_FREE: usize = 20;
    /// When the filesystem was last sampled, in milliseconds since the Unix epoch.
    pub const SAMPLED_MS: usize = 21;
    /// Writes that found the filesystem full: skipped, a batch evicted.
    pub const FULL_WRITES: usize = 22;
    /// Shard `s`'s bytes (entries plus reserved writes) are at `SHARD_BYTES + s`.
    pub const SHARD_BYTES: usize = 64;
}

/// Now, in milliseconds since the Unix epoch, as the ledger's times are kept.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The value of [`word::LAYOUT`] for this layout ("fcledgr" and the version 2).
pub(super) const LAYOUT: u64 = 0x6663_6c65_6467_7202;

const WORDS: usize = word::SHARD_BYTES + SHARDS;
const _: () = assert!(WORDS * 8 <= LEDGER_LEN as usize);

/// Bytes in use, shared by every process through a mapped page; private counters when
/// the page cannot be mapped (read-only or missing directory).
pub(super) enum Ledger {
    Shared(MmapRaw),
    Private(Box<[AtomicU64]>),
}

impl Ledger {
    /// The directory's shared ledger, or a private one (logged) when the page cannot be
    /// created, allocated or mapped there.
    pub(super) fn open(dir: &Path, sharing: Sharing) -> Ledger {
        match Self::map(dir, sharing) {
            Ok(map) => Ledger::Shared(map),
            Err(e) => {
                tracing::warn!(
                    "disk cache {}: cannot allocate its shared ledger ({e}); this process \
                     counts its usage alone, so the capacity holds per process",
                    dir.display()
                );
                Ledger::Private((0..WORDS).map(|_| AtomicU64::new(0)).collect())
            }
        }
    }

    /// Whether this process counts alone.
    pub(super) fn is_private(&self) -> bool {
        matches!(self, Ledger::Private(_))
    }

    pub(super) fn map(dir: &Path, sharing: Sharing) -> io::Result<MmapRaw> {
        localfs::create_dir_all(dir, sharing)?;
        // Never through a link: a `.usage` linked to another file must not be grown and
        // written into.
        let file = localfs::open(&dir.join(LEDGER_FILE), How::ReadWriteCreate, sharing)?;
        // Blocks allocated for real before the page is mapped: a page over a sparse hole is
        // allocated at its first store, and on a full filesystem that store is a SIGBUS
        // (the process dies) where this is an error (the tier counts privately). Only ever
        // grows, so processes racing here agree; new bytes read as zero.
        allocate(&file, LEDGER_LEN)?;
        MmapOptions::new().len(LEDGER_LEN as usize).map_raw(&file)
    }

    /// Whether the counters live in a page other processes share.
    pub(super) fn is_shared(&self) -> bool {
        matches!(self, Ledger::Shared(_))
    }

    pub(super) fn word(&self, index: usize) -> &AtomicU64 {
        match self {
            Ledger::Shared(map) => {
                assert!(index < WORDS);
                // SAFETY: the mapping is page-aligned and LEDGER_LEN bytes long, so the word
                // is aligned and in bounds (checked above); it lives as long as `self`; the
                // file is never truncated; every process touches these bytes only through
                // atomics.
                unsafe { &*map.as_mut_ptr().cast::<AtomicU64>().add(index) }
            }
            Ledger::Private(words) => &words[index],
        }
    }

    pub(super) fn get(&self, index: usize) -> u64 {
        self.word(index).load(Ordering::Acquire)
    }

    pub(super) fn set(&self, index: usize, value: u64) {
        self.word(index).store(value, Ordering::Release);
    }

    pub(super) fn bump(&self, index: usize) {
        self.word(index).fetch_add(1, Ordering::AcqRel);
    }

    fn shard(&self, shard: u8) -> &AtomicU64 {
        self.word(word::SHARD_BYTES + usize::from(shard))
    }

    /// Bytes in use: entries plus reserved writes, the sum of the shards' counters (so the
    /// total can never disagree with them, whatever a killed process left half done).
    pub(super) fn used(&self) -> u64 {
        (0..=u8::MAX).map(|s| self.shard_used(s)).sum()
    }

    pub(super) fn shard_used(&self, shard: u8) -> u64 {
        self.shard(shard).load(Ordering::Acquire)
    }

    /// Sets a shard's counter after recounting it (under the directory's exclusive lock).
    pub(super) fn set_shard(&self, shard: u8, bytes: u64) {
        self.shard(shard).store(bytes, Ordering::Release);
    }

    /// Adds `n` bytes to `shard`; returns the new total.
    pub(super) fn add(&self, shard: u8, n: u64) -> u64 {
        self.shard(shard).fetch_add(n, Ordering::AcqRel);
        self.used()
    }

    pub(super) fn sub(&self, shard: u8, n: u64) {
        let _ = self
            .shard(shard)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// Whether every shard's counter has been set by a recount.
    pub(super) fn counted(&self) -> bool {
        self.get(word::LAYOUT) == LAYOUT
    }
}

/// Makes the first `len` bytes of `file` real blocks (zeros where they were a hole).
#[cfg(unix)]
fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor `file` keeps open for its duration.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // glibc emulates it where the filesystem lacks it; others may refuse outright.
        libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL => write_zeros(file, len),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(not(unix))]
fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    write_zeros(file, len)
}

/// Allocates by writing: zeros into whatever part of the first `len` bytes is past the end.
fn write_zeros(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let have = file.metadata()?.len();
    if have >= len {
        // Without fallocate a hole cannot be told from zeros here; files this code creates
        // are written, not extended, so only an older version's sparse page remains one.
        return Ok(());
    }
    let mut file = file;
    file.seek(SeekFrom::Start(have))?;
    file.write_all(&vec![0u8; (len - have) as usize])?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page has blocks behind it once mapped: storing into it can never fault on a
    /// full filesystem.
    #[cfg(unix)]
    #[test]
    fn the_ledger_page_is_allocated_before_it_is_mapped() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path(), Sharing::Private);
        assert!(!ledger.is_private());
        let meta = fs::metadata(dir.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(meta.len(), LEDGER_LEN);
        assert!(
            meta.blocks() * 512 >= LEDGER_LEN,
            "{} bytes allocated: the page is a sparse hole",
            meta.blocks() * 512
        );
        ledger.add(0, 5);
        assert_eq!(ledger.used(), 5);
    }

    /// A sparse ledger left by an older version gets its blocks too.
    #[cfg(unix)]
    #[test]
    fn a_sparse_ledger_is_filled_in() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        fs::File::create(&path)
            .unwrap()
            .set_len(LEDGER_LEN)
            .unwrap();
        let _ledger = Ledger::open(dir.path(), Sharing::Private);
        assert!(fs::metadata(&path).unwrap().blocks() * 512 >= LEDGER_LEN);
    }

    #[test]
    fn a_directory_that_cannot_hold_it_gets_a_private_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"not a directory").unwrap();
        let ledger = Ledger::open(&blocker.join("cache"), Sharing::Private);
        assert!(ledger.is_private());
        ledger.add(3, 7);
        assert_eq!(ledger.used(), 7);
    }
}
