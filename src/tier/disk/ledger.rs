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
    pub(super) fn open(dir: &Path) -> Ledger {
        Self::map(dir).map_or_else(
            |_| Ledger::Private([AtomicU64::new(0), AtomicU64::new(0)]),
            Ledger::Shared,
        )
    }

    pub(super) fn map(dir: &Path) -> io::Result<MmapRaw> {
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LEDGER_FILE))?;
        if file.metadata()?.len() < LEDGER_LEN {
            // Only ever grows, so processes racing here agree; new bytes read as zero.
            file.set_len(LEDGER_LEN)?;
        }
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
