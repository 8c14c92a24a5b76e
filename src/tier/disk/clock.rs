//! Recency without metadata writes: one "referenced" bit per entry (by the hash in its
//! name) in a mapped file every process shares, set by hits and writes, cleared by the
//! eviction hand as it passes (CLOCK, second chance).
//!
//! Several entries may share a bit (the bitmap has a fixed size); a shared bit only means
//! one of them survives a pass it would not have, never that a used entry is evicted.

use crate::localfs::{self, How, Sharing};
use memmap2::{MmapOptions, MmapRaw};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bitmap file.
const CLOCK_FILE: &str = ".recent";
/// Bits in the bitmap: 16 Mi (2 MiB), a bit per entry up to millions of entries.
const BITS: u64 = 1 << 24;
const WORDS: usize = (BITS / 64) as usize;

/// The referenced bits, shared through a mapped file, or private when it cannot be mapped.
pub(super) enum Clock {
    Shared(MmapRaw),
    Private(Box<[AtomicU64]>),
}

impl Clock {
    pub(super) fn open(dir: &Path, sharing: Sharing) -> Clock {
        Self::map(dir, sharing).unwrap_or_else(|_| Clock::Private(Box::default()))
    }

    fn map(dir: &Path, sharing: Sharing) -> io::Result<Clock> {
        // Never through a link: a `.recent` linked to another file must not be grown and
        // written into.
        let file = localfs::open(&dir.join(CLOCK_FILE), How::ReadWriteCreate, sharing)?;
        let len = BITS / 8;
        if file.metadata()?.len() < len {
            allocate(&file, len)?;
        }
        let map = MmapOptions::new().len(len as usize).map_raw(&file)?;
        Ok(Clock::Shared(map))
    }

    fn word(&self, bit: u64) -> Option<&AtomicU64> {
        let index = (bit / 64) as usize;
        match self {
            Clock::Shared(map) => {
                assert!(index < WORDS);
                // SAFETY: the mapping is page-aligned and BITS/8 bytes long, its blocks
                // allocated before mapping (a write cannot fault on a full disk); the index
                // is in bounds (checked above); the file is never truncated; processes touch
                // these bytes only through atomics.
                Some(unsafe { &*map.as_mut_ptr().cast::<AtomicU64>().add(index) })
            }
            // No shared map (read-only directory): recency is not recorded; eviction then
            // sweeps in directory order, which is what a read-only cache can afford.
            Clock::Private(words) => words.get(index),
        }
    }

    /// Marks the entry whose file is named `name` as used. Costs one load when the bit is
    /// already set, so hits on hot entries do not bounce the cache line between cores.
    pub(super) fn mark(&self, name: &str) {
        let bit = bit_of(name);
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
        let bit = bit_of(name);
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
fn bit_of(name: &str) -> u64 {
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
    let (key, version) = name.split_once('.').unwrap_or((name, ""));
    let mut h = hex(key.get(48..64).unwrap_or(""));
    if !version.is_empty() {
        h ^= hex(version).rotate_left(17);
    }
    h % BITS
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
        let clock = Clock::open(tmp.path(), Sharing::Private);
        assert!(matches!(clock, Clock::Shared(_)));
        let name = blake3::hash(b"k").to_hex();
        assert!(!clock.take(&name));
        clock.mark(&name);
        // Another process's map sees the mark.
        let other = Clock::open(tmp.path(), Sharing::Private);
        assert!(other.take(&name));
        assert!(!clock.take(&name));
        let versioned = format!("{name}.0123456789abcdef");
        assert_ne!(bit_of(&name), bit_of(&versioned));
    }
}
