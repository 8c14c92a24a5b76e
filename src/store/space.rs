//! Free space as a limit like the capacity: what the filesystem under a cache directory can
//! spare (`statvfs`), shared between the disk tiers that live on it, and the defaults that
//! follow the filesystem's size.
//!
//! A tier's effective limit is `min(capacity, what the filesystem spares it)`. The cache's
//! tiers on one filesystem may hold together `S = their usage + free − min_free`; each is
//! sure of its share of `S`, proportional to its capacity, and may borrow what the others
//! leave unused (`S − their usage`), which it gives back by eviction as they grow. The
//! filesystem is sampled by the evictor on each of its turns, by a writer every few MiB
//! written, and by a write that found it full; never per write.

use super::Store;
use super::FORMAT_DIR;
use super::ledger::{Ledger, word};
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The default of [`MinFree`]: this percentage of the filesystem's size...
pub const DEFAULT_MIN_FREE_PERCENT: f64 = 5.0;
/// ...or this many bytes, whichever is smaller (4 GiB).
pub const DEFAULT_MIN_FREE_BYTES: u64 = 4 << 30;

/// A writer samples the filesystem again after reserving this fraction of the last limit
/// (bounded below and above by the next two constants).
const SAMPLE_EVERY_FRACTION: u64 = 16;
const SAMPLE_EVERY_MIN: u64 = 1 << 20;
const SAMPLE_EVERY_MAX: u64 = 64 << 20;

/// How much of a filesystem the disk tiers leave free for everything else.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MinFree {
    /// The smaller of 5 % of the filesystem and 4 GiB.
    #[default]
    Auto,
    /// A number of bytes; 0 lets the tiers fill the filesystem up to their capacities.
    Bytes(u64),
    /// A percentage (0 to 100) of the filesystem's size.
    Percent(f64),
}

impl MinFree {
    /// The bytes to keep free on a filesystem of `fs_size` bytes.
    pub fn bytes(self, fs_size: u64) -> u64 {
        let percent = |p: f64| (fs_size as f64 * p.clamp(0.0, 100.0) / 100.0) as u64;
        match self {
            MinFree::Auto => percent(DEFAULT_MIN_FREE_PERCENT).min(DEFAULT_MIN_FREE_BYTES),
            MinFree::Bytes(n) => n,
            MinFree::Percent(p) => percent(p),
        }
    }

    /// Parses `auto`, a percentage (`5%`, `2.5%`) or a size (`2GiB`, `0`).
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<MinFree, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(MinFree::Auto);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MinFree::Percent(p)),
                _ => Err("expected a percentage from 0% to 100%".into()),
            };
        }
        crate::config::parse_size(t)
            .map(MinFree::Bytes)
            .map_err(|rule| format!("{rule}, a percentage (5%) or auto"))
    }
}

/// Why a tier's limit is what it is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// Not sampled yet.
    #[default]
    Unknown,
    /// The capacity (the budget): the filesystem can spare more.
    Budget,
    /// What the filesystem can spare beside `min_free` and the other tiers on it.
    FreeSpace,
}

impl LimitedBy {
    fn code(self) -> u64 {
        match self {
            LimitedBy::Unknown => 0,
            LimitedBy::Budget => 1,
            LimitedBy::FreeSpace => 2,
        }
    }
}

/// One tier on a filesystem: its usage and its weight (its capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    pub(crate) used: u64,
    pub(crate) weight: u64,
}

/// The effective limit of a tier holding `own.used` bytes with capacity `capacity`
/// (its weight is `own.weight`), beside `others` on the same filesystem, which has `free`
/// bytes available and must keep `min_free`.
///
/// The tiers may hold `S = Σ used + free − min_free` together (0 when negative); this one
/// is sure of `S × own.weight / Σ weight` and may borrow up to `S − Σ others' used`.
pub(crate) fn limit(
    capacity: u64,
    own: Share,
    others: &[Share],
    free: u64,
    min_free: u64,
) -> (u64, LimitedBy) {
    let others_used: u128 = others.iter().map(|s| u128::from(s.used)).sum();
    let spare =
        (u128::from(own.used) + others_used + u128::from(free)).saturating_sub(min_free.into());
    let weights =
        u128::from(own.weight) + others.iter().map(|s| u128::from(s.weight)).sum::<u128>();
    let share = (spare * u128::from(own.weight))
        .checked_div(weights)
        .unwrap_or(spare);
    let borrowed = spare.saturating_sub(others_used);
    let fs_limit = u64::try_from(share.max(borrowed)).unwrap_or(u64::MAX);
    if fs_limit < capacity {
        (fs_limit, LimitedBy::FreeSpace)
    } else {
        (capacity, LimitedBy::Budget)
    }
}

/// A filesystem's size and the bytes an unprivileged writer may still use on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsSpace {
    pub(crate) size: u64,
    pub(crate) free: u64,
}

/// `statvfs` of `path`, or of its nearest existing ancestor.
#[cfg(unix)]
pub(crate) fn fs_space(path: &Path) -> io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let mut at = path;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
        if at.as_os_str().is_empty() {
            at = Path::new(".");
        }
    }
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the right type, both live
    // for the call; the buffer is read only after the call reports success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    // The fields' types differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (unit, blocks, available) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(FsSpace {
        size: blocks.saturating_mul(unit),
        free: available.saturating_mul(unit),
    })
}

#[cfg(not(unix))]
pub(crate) fn fs_space(_path: &Path) -> io::Result<FsSpace> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A capacity that follows the filesystem of `dir`: `percent` of its size, at most `max`
/// (`max` when the filesystem cannot be asked).
pub fn auto_capacity(dir: &Path, percent: u64, max: u64) -> u64 {
    fs_space(dir).map_or(max, |fs| (fs.size / 100 * percent).min(max))
}

/// Whether an I/O error says the filesystem (or the user's quota on it) is full.
pub(crate) fn is_full(e: &io::Error) -> bool {
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
        return true;
    }
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) && e.raw_os_error().is_some()
}

/// Another tier on the filesystem, whose usage is read from its ledger.
pub(super) struct Sibling {
    ledger: Ledger,
    weight: u64,
}

/// A tier's free-space settings.
#[derive(Default)]
pub(super) struct SpacePolicy {
    pub(super) min_free: MinFree,
    pub(super) siblings: Vec<Sibling>,
}

/// What the last sample found, as the ledger keeps it (every process shares it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sampled {
    pub(super) limit: u64,
    pub(super) limited_by: LimitedBy,
    pub(super) fs_size: u64,
    pub(super) fs_free: u64,
    pub(super) min_free: u64,
}

impl Store {
    /// Keeps `min_free` of the directory's filesystem free (see [`MinFree`]); the default is
    /// [`MinFree::Auto`].
    pub fn with_min_free(self, min_free: MinFree) -> Self {
        if let Ok(mut policy) = self.inner.space.lock() {
            policy.min_free = min_free;
        }
        self.force_sample();
        self
    }

    /// Shares the filesystem's spare space with the tier whose directory is `root` (as
    /// given to [`Store::open`]), of capacity `weight`, if it is on the same filesystem.
    pub(crate) fn with_sibling(self, root: &Path, weight: u64) -> Self {
        let dir: PathBuf = root.join(FORMAT_DIR);
        if weight == 0 || dir == self.inner.dir || !same_fs(&self.inner.dir, &dir) {
            return self;
        }
        match Ledger::map(&dir, self.inner.sharing) {
            Ok(map) => {
                if let Ok(mut policy) = self.inner.space.lock() {
                    policy.siblings.push(Sibling {
                        ledger: Ledger::Shared(map),
                        weight,
                    });
                }
                self.force_sample();
            }
            Err(e) => tracing::debug!("disk tier {} not shared with: {e}", dir.display()),
        }
        self
    }

    /// The limit usage is kept under: the capacity, or less when the filesystem cannot
    /// spare that much. Samples the filesystem when this process has not yet, or has
    /// reserved enough since (see [`SAMPLE_EVERY_FRACTION`]).
    pub(super) fn limit(&self) -> u64 {
        let ledger = &self.inner.ledger;
        let last = ledger.get(word::LIMIT);
        let every = (last / SAMPLE_EVERY_FRACTION).clamp(SAMPLE_EVERY_MIN, SAMPLE_EVERY_MAX);
        if ledger.get(word::SAMPLED_MS) == 0
            || self.inner.since_sample.load(Ordering::Relaxed) >= every
        {
            return self.sample_space().limit;
        }
        last
    }

    /// Counts `len` reserved bytes towards the next sample.
    pub(super) fn count_towards_sample(&self, len: u64) {
        self.inner.since_sample.fetch_add(len, Ordering::Relaxed);
    }

    /// Makes the next [`Store::limit`] sample the filesystem.
    pub(super) fn force_sample(&self) {
        self.inner
            .since_sample
            .store(u64::MAX / 2, Ordering::Relaxed);
    }

    /// Asks the filesystem how much it can spare and publishes the limit in the ledger.
    pub(super) fn sample_space(&self) -> Sampled {
        self.inner.since_sample.store(0, Ordering::Relaxed);
        // The tier's own files (ledger, bitmap) count in its capacity: entries get the rest.
        let capacity = self.inner.capacity.saturating_sub(self.inner.metadata);
        let own = Share {
            used: self.inner.ledger.used(),
            weight: self.inner.capacity,
        };
        let sampled = match (fs_space(&self.inner.dir), self.inner.space.lock()) {
            (Ok(fs), Ok(policy)) => {
                let min_free = policy.min_free.bytes(fs.size);
                let others: Vec<Share> = policy
                    .siblings
                    .iter()
                    .map(|s| Share {
                        used: s.ledger.used(),
                        weight: s.weight,
                    })
                    .collect();
                let (limit, limited_by) = limit(capacity, own, &others, fs.free, min_free);
                Sampled {
                    limit,
                    limited_by,
                    fs_size: fs.size,
                    fs_free: fs.free,
                    min_free,
                }
            }
            _ => Sampled {
                limit: capacity,
                limited_by: LimitedBy::Budget,
                ..Sampled::default()
            },
        };
        let ledger = &self.inner.ledger;
        ledger.set(word::LIMIT, sampled.limit);
        ledger.set(word::LIMITED_BY, sampled.limited_by.code());
        ledger.set(word::FS_SIZE, sampled.fs_size);
        ledger.set(word::FS_FREE, sampled.fs_free);
        ledger.set(word::MIN_FREE, sampled.min_free);
        ledger.set(word::SAMPLED_MS, super::ledger::now_ms().max(1));
        sampled
    }

    /// Looks at a failed write's error: a full filesystem makes room (see
    /// [`Store::filesystem_full`]); the write is skipped either way.
    pub(super) fn on_write_error(&self, e: &io::Error) {
        if is_full(e) {
            self.filesystem_full();
        }
    }

    /// A write found the filesystem full: counts it, samples the filesystem again (which
    /// lowers the limit) and evicts one bounded batch down to the new limit, so that later
    /// writes find room. The write itself is skipped by its caller.
    pub(super) fn filesystem_full(&self) {
        self.inner.ledger.bump(word::FULL_WRITES);
        let limit = self.sample_space().limit;
        self.evict_to(limit, super::evict::WRITER_BATCH_ENTRIES, false);
    }
}

/// Whether two existing paths are on the same filesystem.
#[cfg(unix)]
fn same_fs(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_fs(_a: &Path, _b: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn share(used: u64, weight: u64) -> Share {
        Share { used, weight }
    }

    #[test]
    fn the_budget_holds_when_the_filesystem_has_room() {
        let (l, by) = limit(10 * GIB, share(GIB, 10 * GIB), &[], 100 * GIB, 4 * GIB);
        assert_eq!((l, by), (10 * GIB, LimitedBy::Budget));
    }

    #[test]
    fn alone_a_tier_may_fill_what_the_filesystem_spares() {
        // 30 MB filesystem, 20 MB free, 1.5 MB to keep, 2 MB held: 20.5 MB.
        let (l, by) = limit(
            64 * GIB,
            share(2_000_000, 64 * GIB),
            &[],
            20_000_000,
            1_500_000,
        );
        assert_eq!((l, by), (20_500_000, LimitedBy::FreeSpace));
        // Usage and free space move together: the limit stays while the tier grows.
        let (l2, _) = limit(
            64 * GIB,
            share(12_000_000, 64 * GIB),
            &[],
            10_000_000,
            1_500_000,
        );
        assert_eq!(l2, l);
    }

    #[test]
    fn below_min_free_the_limit_falls_under_usage() {
        let (l, by) = limit(GIB, share(10_000_000, GIB), &[], 1_000_000, 3_000_000);
        assert_eq!((l, by), (8_000_000, LimitedBy::FreeSpace));
        // Other programs took everything: nothing may stay.
        let (l, _) = limit(GIB, share(1_000_000, GIB), &[], 0, 3_000_000);
        assert_eq!(l, 0);
    }

    #[test]
    fn min_free_zero_lets_the_capacity_rule() {
        let (l, by) = limit(GIB, share(0, GIB), &[], 2 * GIB, 0);
        assert_eq!((l, by), (GIB, LimitedBy::Budget));
    }

    #[test]
    fn tiers_are_sure_of_shares_proportional_to_their_capacities() {
        // JPEG (10) and decoded (30) share 40 MB of spare space, both full to the brim.
        let spare = 40_000_000;
        let jpeg = share(10_000_000, 10);
        let decoded = share(30_000_000, 30);
        let (lj, _) = limit(GIB, jpeg, &[decoded], 0, 0);
        let (ld, _) = limit(GIB, decoded, &[jpeg], 0, 0);
        assert_eq!((lj, ld), (spare / 4, spare * 3 / 4));
    }

    #[test]
    fn a_tier_borrows_what_the_other_leaves_and_gives_it_back() {
        // 40 MB spare, decoded empty: the JPEG tier may take it all.
        let (lj, _) = limit(GIB, share(0, 10), &[share(0, 30)], 40_000_000, 0);
        assert_eq!(lj, 40_000_000);
        // The JPEG tier took 36 MB; the decoded tier is still sure of its 30 MB share...
        let (ld, _) = limit(GIB, share(0, 30), &[share(36_000_000, 10)], 4_000_000, 0);
        assert_eq!(ld, 30_000_000);
        // ...and as it grows past what was free, the JPEG tier gives back what it took...
        let (lj, _) = limit(
            GIB,
            share(36_000_000, 10),
            &[share(33_000_000, 30)],
            1_000_000,
            4_000_000,
        );
        assert_eq!(lj, 33_000_000);
        // ...down to its own share of the 66 MB, never less.
        let (lj, _) = limit(
            GIB,
            share(16_500_000, 10),
            &[share(60_000_000, 30)],
            0,
            10_500_000,
        );
        assert_eq!(lj, 16_500_000);
    }

    #[test]
    fn weightless_tiers_split_nothing() {
        let (l, _) = limit(GIB, share(0, 0), &[share(0, 0)], 10, 0);
        assert_eq!(l, 10);
    }

    #[test]
    fn min_free_resolves_against_the_filesystem() {
        assert_eq!(MinFree::Auto.bytes(30_000_000), 1_500_000);
        assert_eq!(MinFree::Auto.bytes(2000 * GIB), DEFAULT_MIN_FREE_BYTES);
        assert_eq!(MinFree::Percent(10.0).bytes(1000), 100);
        assert_eq!(MinFree::Bytes(7).bytes(1000), 7);
        assert_eq!(MinFree::parse("auto"), Ok(MinFree::Auto));
        assert_eq!(MinFree::parse(" 2.5% "), Ok(MinFree::Percent(2.5)));
        assert_eq!(MinFree::parse("2GiB"), Ok(MinFree::Bytes(2 * GIB)));
        assert_eq!(MinFree::parse("0"), Ok(MinFree::Bytes(0)));
        for bad in ["101%", "-1%", "lots", "%"] {
            assert!(MinFree::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_means_enospc_or_edquot() {
        assert!(is_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_full(&io::Error::from_raw_os_error(libc::EACCES)));
        // The tier's own "does not fit in the capacity" is not the filesystem being full.
        assert!(!is_full(&io::Error::new(
            io::ErrorKind::QuotaExceeded,
            "capacity"
        )));
    }
}
