//! Recency without metadata writes: one "referenced" bit per entry (by the hash in its
//! name) in a mapped file every process shares, set by hits and writes, cleared by the
//! eviction hand as it passes (CLOCK, second chance).
//!
//! The bitmap is sized by the tier's capacity (see [`len_for`]) and counted in it. Several
//! entries may share a bit; a shared bit only means one of them survives a pass it would not
//! have, never that a used entry is evicted.
//!
//! The file's length is its format: bit `h % (8 * len)` for an entry whose name hashes to
//! `h`. A file is never truncated (another process may map it): one of another length (an
//! older version's fixed 2 MiB bitmap, or one sized for another capacity) is replaced by a
//! new file renamed over it, and processes still mapping the old one keep it, sharing no
//! recency with the new one until they reopen the tier (recency only: every entry is still
//! evicted in turn).

use crate::localfs::{self, How, Sharing};
use memmap2::{MmapOptions, MmapRaw};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bitmap file.
pub(super) const CLOCK_FILE: &str = ".recent";
/// Bytes of capacity per bit: a bit per KiB, far more bits than entries of frames.
const CAPACITY_PER_BIT: u64 = 1024;
/// The bitmap's length is a whole number of pages...
const PAGE: u64 = 4096;
/// ...at least one (32 Ki bits)...
const MIN_LEN: u64 = PAGE;
/// ...and at most 2 MiB (16 Mi bits, reached at a 16 GiB capacity; millions of entries).
const MAX_LEN: u64 = 2 << 20;

/// The bitmap's length in bytes for a tier of `capacity` bytes.
pub(super) fn len_for(capacity: u64) -> u64 {
    let bytes = (capacity / CAPACITY_PER_BIT).div_ceil(8);
    bytes
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .clamp(MIN_LEN, MAX_LEN)
}

/// The referenced bits, shared through a mapped file, or private when it cannot be mapped.
pub(super) struct Clock {
    /// Bits in the bitmap (8 per byte of the file).
    bits: u64,
    words: Words,
}

enum Words {
    Shared(MmapRaw),
    Private(Box<[AtomicU64]>),
}

impl Clock {
    /// The bitmap of a tier of `capacity` bytes in `dir`.
    pub(super) fn open(dir: &Path, capacity: u64, sharing: Sharing) -> Clock {
        let len = len_for(capacity);
        match Self::map(dir, len, sharing) {
            Ok(map) => Clock {
                bits: len * 8,
                words: Words::Shared(map),
            },
            Err(_) => Clock {
                bits: len * 8,
                words: Words::Private(Box::default()),
            },
        }
    }

    /// Whether the bits live in a file other processes share.
    #[cfg(test)]
    pub(super) fn is_shared(&self) -> bool {
        matches!(self.words, Words::Shared(_))
    }

    /// The bytes its file holds (0 when the bits are private).
    pub(super) fn file_len(&self) -> u64 {
        match self.words {
            Words::Shared(_) => self.bits / 8,
            Words::Private(_) => 0,
        }
    }

    fn map(dir: &Path, len: u64, sharing: Sharing) -> io::Result<MmapRaw> {
        let path = dir.join(CLOCK_FILE);
        // Never through a link: a `.recent` linked to another file must not be grown and
        // written into.
        let mut file = localfs::open(&path, How::ReadWriteCreate, sharing)?;
        if file.metadata()?.len() != len {
            file = install(dir, len, sharing)?;
        }
        if file.metadata()?.len() != len {
            return Err(io::Error::other("the bitmap changed length"));
        }
        MmapOptions::new().len(len as usize).map_raw(&file)
    }

    fn word(&self, bit: u64) -> Option<&AtomicU64> {
        let index = (bit / 64) as usize;
        match &self.words {
            Words::Shared(map) => {
                assert!(bit < self.bits);
                // SAFETY: the mapping is page-aligned and bits/8 bytes long, its blocks
                // allocated before mapping (a write cannot fault on a full disk); the index
                // is in bounds (checked above); the file is never truncated; processes touch
                // these bytes only through atomics.
                Some(unsafe { &*map.as_mut_ptr().cast::<AtomicU64>().add(index) })
            }
            // No shared map (read-only directory): recency is not recorded; eviction then
            // sweeps in directory order, which is what a read-only cache can afford.
            Words::Private(words) => words.get(index),
        }
    }
    /// Marks the entry whose file is named `name` as used. Costs one load when the bit is
    /// already set, so hits on hot entries do not bounce the cache line between cores.
    pub(super) fn mark(&self, name: &str) {
        let bit = bit_of(name, self.bits);
        if let Some(word) = self.word(bit) {
            let mask = 1 << (bit % 64);
            if word.load(Ordering::Relaxed) & mask == 0 {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// Clears the entry's bit; returns whether it was set (the entry was used since the
    /// hand last passed it).
    pub(super) fn take(&self, name: &str) -> bool {
        let bit = bit_of(name, self.bits);
        let Some(word) = self.word(bit) else {
            return false;
        };
        let mask = 1 << (bit % 64);
        word.load(Ordering::Relaxed) & mask != 0
            && word.fetch_and(!mask, Ordering::Relaxed) & mask != 0
    }
}

/// The bit of an entry file name (`{64 hex}` or `{64 hex}.{16 hex}`): the low bits of the
/// name's hash, so that entries of one shard (the first two hex digits) spread over it.
fn bit_of(name: &str, bits: u64) -> u64 {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
    let (key, version) = name.split_once('.').unwrap_or((name, ""));
    let mut h = hex(key.get(48..64).unwrap_or(""));
    if !version.is_empty() {
        h ^= hex(version).rotate_left(17);
    }
    h % bits
}

/// Puts a new bitmap of `len` bytes (its blocks allocated, all bits clear) in place of
/// whatever `.recent` is, by renaming over it: the old file is never truncated, so a process
/// still mapping it keeps valid memory. Returns the new file, open.
fn install(dir: &Path, len: u64, sharing: Sharing) -> io::Result<std::fs::File> {
    let temp = dir.join(format!(
        "{CLOCK_FILE}.new-{}-{}",
        std::process::id(),
        super::temp::process_nonce()
    ));
    let made = localfs::open(&temp, How::CreateNew, sharing).and_then(|file| {
        allocate(&file, len)?;
        std::fs::rename(&temp, dir.join(CLOCK_FILE))?;
        Ok(file)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    made
}

/// Gives the file `len` bytes of real blocks: a store into a hole of a shared mapping on a
/// full disk would kill the process with SIGBUS.
#[cfg(target_os = "linux")]
fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: a plain syscall on a descriptor this function borrows.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bit_is_taken_once_per_mark() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::open(tmp.path(), 1 << 30, Sharing::Private);
        assert!(clock.is_shared());
        let name = blake3::hash(b"k").to_hex();
        assert!(!clock.take(&name));
        clock.mark(&name);
        // Another process's map sees the mark.
        let other = Clock::open(tmp.path(), 1 << 30, Sharing::Private);
        assert!(other.take(&name));
        assert!(!clock.take(&name));
        let versioned = format!("{name}.0123456789abcdef");
        assert_ne!(bit_of(&name, clock.bits), bit_of(&versioned, clock.bits));
    }

    #[test]
    fn the_bitmap_is_sized_by_the_capacity() {
        assert_eq!(len_for(0), MIN_LEN);
        assert_eq!(len_for(4 << 20), PAGE);
        assert_eq!(len_for(32 << 20), PAGE);
        assert_eq!(len_for((32 << 20) + 1024), 2 * PAGE);
        assert_eq!(len_for(1 << 30), 128 << 10);
        assert_eq!(len_for(16 << 30), MAX_LEN);
        assert_eq!(len_for(u64::MAX), MAX_LEN);
        let tmp = tempfile::tempdir().unwrap();
        let clock = Clock::open(tmp.path(), 4 << 20, Sharing::Private);
        assert!(clock.is_shared());
        assert_eq!(clock.file_len(), PAGE);
        let len = std::fs::metadata(tmp.path().join(CLOCK_FILE))
            .unwrap()
            .len();
        assert_eq!(len, PAGE);
    }

    /// An older version's 2 MiB bitmap (or one sized for another capacity) is replaced, never
    /// truncated: a process mapping it keeps working on its own copy.
    #[test]
    fn a_bitmap_of_another_length_is_replaced_not_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let old = Clock::open(tmp.path(), 16 << 30, Sharing::Private);
        assert_eq!(old.file_len(), MAX_LEN);
        let name = blake3::hash(b"k").to_hex();
        old.mark(&name);
        let small = Clock::open(tmp.path(), 4 << 20, Sharing::Private);
        assert!(small.is_shared());
        let len = std::fs::metadata(tmp.path().join(CLOCK_FILE))
            .unwrap()
            .len();
        assert_eq!(len, PAGE);
        // The new bitmap starts clear; the old mapping is still there, still marked.
        assert!(!small.take(&name));
        assert!(old.take(&name));
        // Nothing left behind but the bitmap.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [CLOCK_FILE]);
        // Reopened at the same capacity, the same file is shared.
        small.mark(&name);
        assert!(Clock::open(tmp.path(), 4 << 20, Sharing::Private).take(&name));
    }
}
