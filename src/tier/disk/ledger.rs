//! The ledger: bytes in use by the cache directory, one mapped page every process shares.

use memmap2::{MmapOptions, MmapRaw};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared ledger file.
pub(super) const LEDGER_FILE: &str = ".usage";

/// The ledger's mapped size: one page.
pub(super) const LEDGER_LEN: u64 = 4096;

/// Bytes in use, shared by every process through a mapped page; a private counter when
/// the page cannot be mapped (read-only or missing directory).
pub(super) enum Ledger {
    Shared(MmapRaw),
    Private([AtomicU64; 2]),
}

impl Ledger {
    /// The directory's shared ledger, or a private one (logged) when the page cannot be
    /// created, allocated or mapped there.
    pub(super) fn open(dir: &Path) -> Ledger {
        match Self::map(dir) {
            Ok(map) => Ledger::Shared(map),
            Err(e) => {
                tracing::warn!(
                    "disk cache {}: cannot allocate its shared ledger ({e}); this process \
                     counts its usage alone, so the capacity holds per process",
                    dir.display()
                );
                Ledger::Private([AtomicU64::new(0), AtomicU64::new(0)])
            }
        }
    }

    /// Whether this process counts alone.
    pub(super) fn is_private(&self) -> bool {
        matches!(self, Ledger::Private(_))
    }

    pub(super) fn map(dir: &Path) -> io::Result<MmapRaw> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LEDGER_FILE))?;
        // Blocks allocated for real before the page is mapped: a page over a sparse hole is
        // allocated at its first store, and on a full filesystem that store is a SIGBUS
        // (the process dies) where this is an error (the tier counts privately). Only ever
        // grows, so processes racing here agree; new bytes read as zero.
        allocate(&file, LEDGER_LEN)?;
        MmapOptions::new().len(LEDGER_LEN as usize).map_raw(&file)
    }

    pub(super) fn word(&self, index: usize) -> &AtomicU64 {
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
    pub(super) fn used(&self) -> &AtomicU64 {
        self.word(0)
    }

    /// Non-zero once a full recount has set [`Ledger::used`].
    pub(super) fn counted(&self) -> &AtomicU64 {
        self.word(1)
    }

    pub(super) fn add(&self, n: u64) -> u64 {
        self.used().fetch_add(n, Ordering::AcqRel) + n
    }

    pub(super) fn sub(&self, n: u64) {
        let _ = self
            .used()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
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
        let ledger = Ledger::open(dir.path());
        assert!(!ledger.is_private());
        let meta = fs::metadata(dir.path().join(LEDGER_FILE)).unwrap();
        assert_eq!(meta.len(), LEDGER_LEN);
        assert!(
            meta.blocks() * 512 >= LEDGER_LEN,
            "{} bytes allocated: the page is a sparse hole",
            meta.blocks() * 512
        );
        ledger.add(5);
        assert_eq!(ledger.used().load(Ordering::Acquire), 5);
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
        let _ledger = Ledger::open(dir.path());
        assert!(fs::metadata(&path).unwrap().blocks() * 512 >= LEDGER_LEN);
    }

    #[test]
    fn a_directory_that_cannot_hold_it_gets_a_private_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"not a directory").unwrap();
        let ledger = Ledger::open(&blocker.join("cache"));
        assert!(ledger.is_private());
        assert_eq!(ledger.add(7), 7);
    }
}
