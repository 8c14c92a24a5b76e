//! Free space, as arithmetic and as the filesystem reports it: what to leave free
//! ([`MinFree`]), a tier's share of what the filesystem spares beside the other tiers on it
//! ([`limit`]), `statvfs`, and capacities that follow the filesystem's size. No state: the
//! store's use of it (sampling, siblings) is in `space.rs`.

use crate::metrics::LimitedBy;
use std::io;
use std::path::Path;

/// The default of [`MinFree`]: this percentage of the filesystem's size...
pub const DEFAULT_MIN_FREE_PERCENT: f64 = 5.0;
/// ...or this many bytes, whichever is smaller (4 GiB).
pub const DEFAULT_MIN_FREE_BYTES: u64 = 4 << 30;

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
        crate::size::parse_size(t)
            .map(MinFree::Bytes)
            .map_err(|rule| format!("{rule}, a percentage (5%) or auto"))
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

/// Whether two existing paths are on the same filesystem.
#[cfg(unix)]
pub(super) fn same_fs(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
pub(super) fn same_fs(_a: &Path, _b: &Path) -> bool {
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
