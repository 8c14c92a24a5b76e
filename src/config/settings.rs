//! The settings themselves: [`CacheConfig`] and its groups (origin, memory, disk, decoded),
//! their defaults and the constants they are stated in. Plain data: nothing here reads the
//! environment (but the default directories) or builds a tier.

use super::dirs::{default_cache_dir, default_fs_root};
use super::s3::S3Config;
use crate::localfs::Sharing;
use crate::store::MinFree;
use std::path::PathBuf;
use std::time::Duration;

/// Default of [`OriginConfig::max_object_size`]: 64 MiB.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 64 << 20;

/// A disk tier capacity that follows the filesystem under the cache directory (the default
/// of both disk tiers), resolved when the tier opens: the JPEG disk tier takes
/// [`AUTO_DISK_PERCENT`] of the filesystem's size, at most [`AUTO_DISK_MAX`]; the decoded
/// disk tier [`AUTO_DECODED_PERCENT`], at most [`AUTO_DECODED_MAX`]. `auto` in the
/// environment and on the command line.
pub const AUTO_CAPACITY: u64 = u64::MAX;
/// The JPEG disk tier's automatic capacity, in percent of its filesystem's size...
pub const AUTO_DISK_PERCENT: u64 = 5;
/// ...at most 10 GiB (reached on a filesystem of 200 GiB).
pub const AUTO_DISK_MAX: u64 = 10 << 30;
/// The decoded disk tier's automatic capacity, in percent of its filesystem's size...
pub const AUTO_DECODED_PERCENT: u64 = 10;
/// ...at most 64 GiB (reached on a filesystem of 640 GiB).
pub const AUTO_DECODED_MAX: u64 = 64 << 30;

/// Everything needed to build a cache, grouped by tier. Every field has a working default.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The origin and how requests to it behave.
    pub origin: OriginConfig,
    /// The in-process memory tier of JPEGs.
    pub memory: MemoryConfig,
    /// The cache directory and the JPEG disk tier; `None` disables both disk tiers.
    pub disk: Option<DiskConfig>,
    /// The decoded-frame tiers.
    pub decoded: DecodedConfig,
    /// Most origin requests (and codec jobs) in flight for one bulk call.
    pub concurrency: usize,
    /// Longest wait for one of the disk cache's locks: a frame's decode lock, a key's fetch
    /// lock, the directory's lock. Past it the waiter goes on alone (decodes, downloads or
    /// writes itself; entries are linked into place whole, so that stays safe) and counts
    /// it in [`crate::Stats`]. Processes take these locks to spare each other duplicate
    /// work, so a wait this long means the holder is stuck. Default 60 s; 0 never waits.
    pub lock_wait: Duration,
    /// How long a process may reuse a timeline's listing pages (and manifest head) it
    /// confirmed at the origin, for reads of selections, without asking the origin again:
    /// warm batches within it make no request, and may serve a frame rewritten at the
    /// origin meanwhile for that long. Default 0: every read revalidates (see
    /// `docs/operations.md`).
    pub revalidate_after: Duration,
    /// Who may use the files the disk tiers and the fs origin create: this user only
    /// (directories `0700`, files `0600`, the default) or a group
    /// (`FRAMECACHE_SHARE_GROUP`; see `docs/operations.md`, "Shared machines").
    pub sharing: Sharing,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            origin: OriginConfig::default(),
            memory: MemoryConfig::default(),
            disk: Some(DiskConfig::default()),
            decoded: DecodedConfig::default(),
            concurrency: 32,
            lock_wait: crate::flock::DEFAULT_LOCK_WAIT,
            revalidate_after: Duration::ZERO,
            sharing: Sharing::Private,
        }
    }
}

/// Where the origin lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A local directory: the zero-configuration default for development.
    Fs {
        /// Root directory of the object tree.
        root: PathBuf,
    },
    /// S3 or an S3-compatible server (MinIO, Garage).
    S3(S3Config),
    /// OpenDAL's in-process memory service, for tests (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    Memory,
}

impl Default for Backend {
    fn default() -> Self {
        Backend::Fs {
            root: default_fs_root(),
        }
    }
}

impl std::fmt::Display for Backend {
    /// Where the origin is, as the user described it, without credentials:
    /// `fs:/path` or `s3://bucket at endpoint`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Fs { root } => write!(f, "fs:{}", root.display()),
            Backend::S3(s3) => write!(
                f,
                "s3://{} at {}",
                s3.bucket,
                s3.endpoint.as_deref().unwrap_or("AWS")
            ),
            #[cfg(feature = "test-hooks")]
            Backend::Memory => f.write_str("memory"),
        }
    }
}

/// The origin and the policy of its requests.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Where objects live.
    pub backend: Backend,
    /// Deadline of one origin call, per attempt.
    pub timeout: Duration,
    /// Deadline of one origin I/O step (a chunk of a read or write), per attempt.
    pub io_timeout: Duration,
    /// Retries of a failed origin call (temporary errors only).
    pub retries: usize,
    /// First retry delay; doubles each time, with jitter.
    pub retry_min_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// Largest origin object read, in bytes; larger ones are refused with
    /// [`crate::Error::ObjectTooLarge`] from the size a listing or stat reported, before the
    /// download. Default 64 MiB (a 4K frame at q100 is under 10 MiB).
    pub max_object_size: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            backend: Backend::default(),
            timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(10),
            retries: 4,
            retry_min_delay: Duration::from_millis(20),
            retry_max_delay: Duration::from_secs(2),
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
        }
    }
}

/// The memory tier of JPEGs, per process.
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Capacity in bytes; 0 disables the memory tier. Default 512 MiB.
    pub capacity: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacity: 512 << 20,
        }
    }
}

/// The cache directory, shared by every process of the machine, and the JPEG disk tier in
/// it (the decoded disk tier lives in it too, with a budget of its own).
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Cache directory, shared by every process of the machine that uses it.
    pub dir: PathBuf,
    /// Capacity in bytes; [`AUTO_CAPACITY`] (the default) follows the filesystem's size.
    pub capacity: u64,
    /// Free space the disk tiers leave on their filesystem: each keeps its usage under its
    /// capacity and under its share of what the filesystem spares beyond this. Default
    /// [`MinFree::Auto`]: 5 % of the filesystem, at most 4 GiB. See `docs/operations.md`.
    pub min_free: MinFree,
    /// Use a cache directory on a network or FUSE filesystem (NFS, SMB, Lustre, GPFS, ...),
    /// which is refused by default: `flock` there can succeed without locking anything.
    pub allow_network_fs: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            dir: default_cache_dir(),
            capacity: AUTO_CAPACITY,
            min_free: MinFree::Auto,
            allow_network_fs: false,
        }
    }
}

/// The decoded-frame tiers (see [`crate::decoded`]).
///
/// The defaults are for a GPU box running several workers over the same timelines: 2 GiB of
/// decoded frames per process in memory (about 770 frames of 1280x720; when the disk tier is
/// on these are views of the shared page cache, not private heap), and on disk 10 % of the
/// filesystem, at most 64 GiB of raw frames (about 23,000 frames, 78 timelines of 300).
#[derive(Debug, Clone)]
pub struct DecodedConfig {
    /// Memory tier capacity in pixel bytes; 0 disables it.
    pub memory_capacity: u64,
    /// Disk tier capacity in bytes, under `{disk.dir}/decoded`; 0 disables it (so does
    /// having no disk tier); [`AUTO_CAPACITY`] (the default) follows the filesystem's size.
    pub disk_capacity: u64,
    /// Largest frame a load decodes, in pixels (width x height of the JPEG's header, at full
    /// size); larger ones are refused with [`crate::Error::FrameTooLarge`] before anything is
    /// allocated. Default: Pillow's decompression-bomb limit, 178,956,970.
    pub max_frame_pixels: u64,
}

impl Default for DecodedConfig {
    fn default() -> Self {
        DecodedConfig {
            memory_capacity: 2 << 30,
            disk_capacity: AUTO_CAPACITY,
            max_frame_pixels: crate::codec::DEFAULT_MAX_FRAME_PIXELS,
        }
    }
}
