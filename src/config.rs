//! Configuration as plain data with defaults, and the builder that assembles the tiers.

use crate::chain::TieredCache;
use crate::error::{Error, Result};
use crate::localfs::{self, Sharing};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{BlobTier, DiskTier, MemoryTier, Origin};
use opendal::Operator;
use opendal::layers::{ChaosLayer, RetryLayer, TimeoutLayer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default bucket, as in the Python module.
pub const DEFAULT_BUCKET: &str = "mpr";
/// Default S3 region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Default of [`CacheConfig::max_object_size`]: 64 MiB.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 64 << 20;

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
    /// OpenDAL's in-process memory service; for unit tests only.
    Memory,
}

impl Default for Backend {
    fn default() -> Self {
        Backend::Fs {
            root: default_fs_root(),
        }
    }
}

/// Connection settings for an S3-compatible origin.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL; `None` means AWS.
    pub endpoint: Option<String>,
    /// Region (S3 servers check it as part of the signature).
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key; never printed.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Config {
    /// Reads `S3_BUCKET` (default `mpr`), `AWS_ENDPOINT_URL` (or `S3_ENDPOINT_URL`),
    /// `AWS_REGION` (default `us-east-1`), `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        S3Config {
            bucket: var("S3_BUCKET").unwrap_or_else(|| DEFAULT_BUCKET.to_owned()),
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("S3_ENDPOINT_URL")),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        }
    }
}

/// The disk tier's settings.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Cache directory, shared by every process of the machine that uses it.
    pub dir: PathBuf,
    /// Capacity in bytes.
    pub capacity: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            dir: default_cache_dir(),
            capacity: 10 << 30,
        }
    }
}

/// Budgets of the decoded-frame tiers (see [`crate::decoded`]).
///
/// The defaults are for a GPU box running several workers over the same timelines: 2 GiB of
/// decoded frames per process in memory (about 770 frames of 1280x720; when the disk tier is
/// on these are views of the shared page cache, not private heap), and 64 GiB of raw frames
/// on disk (about 23,000 frames, 78 timelines of 300), 24x the JPEGs' size.
#[derive(Debug, Clone)]
pub struct DecodedConfig {
    /// Memory tier capacity in pixel bytes; 0 disables it.
    pub memory_capacity: u64,
    /// Disk tier capacity in bytes, under `{disk.dir}/decoded`; 0 disables it (so does
    /// having no disk tier).
    pub disk_capacity: u64,
}

impl Default for DecodedConfig {
    fn default() -> Self {
        DecodedConfig {
            memory_capacity: 2 << 30,
            disk_capacity: 64 << 30,
        }
    }
}

/// Everything needed to build a cache. Every field has a working default.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The origin.
    pub backend: Backend,
    /// Memory tier capacity in bytes; 0 disables the memory tier.
    pub memory_capacity: u64,
    /// The disk tier; `None` disables it.
    pub disk: Option<DiskConfig>,
    /// The decoded-frame tiers' budgets.
    pub decoded: DecodedConfig,
    /// Most origin requests (and codec jobs) in flight for one bulk call.
    pub concurrency: usize,
    /// Deadline of one origin call, per attempt.
    pub origin_timeout: Duration,
    /// Deadline of one origin I/O step (a chunk of a read or write), per attempt.
    pub origin_io_timeout: Duration,
    /// Retries of a failed origin call (temporary errors only).
    pub retries: usize,
    /// First retry delay; doubles each time, with jitter.
    pub retry_min_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// Largest frame a load decodes, in pixels (width x height of the JPEG's header, at full
    /// size); larger ones are refused with [`Error::FrameTooLarge`] before anything is
    /// allocated. Default: Pillow's decompression-bomb limit, 178,956,970.
    pub max_frame_pixels: u64,
    /// Largest origin object read, in bytes; larger ones are refused with
    /// [`Error::ObjectTooLarge`] from the size a listing or stat reported, before the
    /// download. Default 64 MiB (a 4K frame at q100 is under 10 MiB).
    pub max_object_size: u64,
    /// Fraction (0.0 to 1.0) of origin reads that fail with a transient error before
    /// reaching the origin: fault injection to exercise retries. 0 outside tests.
    pub injected_read_faults: f64,
    /// Longest wait for one of the disk cache's locks: a frame's decode lock, a key's fetch
    /// lock, the directory's lock. Past it the waiter goes on alone (decodes, downloads or
    /// writes itself; entries are linked into place whole, so that stays safe) and counts
    /// it in [`crate::Stats`]. Processes take these locks to spare each other duplicate
    /// work, so a wait this long means the holder is stuck. Default 60 s; 0 never waits.
    pub lock_wait: Duration,
    /// Who may use the files the disk tiers and the fs origin create: this user only
    /// (directories `0700`, files `0600`, the default) or a group
    /// (`FRAMECACHE_SHARE_GROUP`; see `docs/operations.md`, "Shared machines").
    pub sharing: Sharing,
    /// Use a cache directory on a network or FUSE filesystem (NFS, SMB, Lustre, GPFS, ...),
    /// which is refused by default: `flock` there can succeed without locking anything.
    pub allow_network_fs: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: Backend::default(),
            memory_capacity: 512 << 20,
            decoded: DecodedConfig::default(),
            disk: Some(DiskConfig::default()),
            concurrency: 32,
            origin_timeout: Duration::from_secs(30),
            origin_io_timeout: Duration::from_secs(10),
            retries: 4,
            retry_min_delay: Duration::from_millis(20),
            retry_max_delay: Duration::from_secs(2),
            max_frame_pixels: crate::codec::DEFAULT_MAX_FRAME_PIXELS,
            max_object_size: DEFAULT_MAX_OBJECT_SIZE,
            injected_read_faults: 0.0,
            lock_wait: crate::flock::DEFAULT_LOCK_WAIT,
            sharing: Sharing::Private,
            allow_network_fs: false,
        }
    }
}

impl CacheConfig {
    /// The configuration the environment describes, as the command line reads it:
    /// `FRAMECACHE_BACKEND` (`fs`, the default, or `s3`), `FRAMECACHE_ROOT` (fs root),
    /// [`S3Config::from_env`]'s variables, `FRAMECACHE_CACHE_DIR`,
    /// `FRAMECACHE_MEMORY_CAPACITY`, `FRAMECACHE_DISK_CAPACITY`,
    /// `FRAMECACHE_DECODED_MEMORY_CAPACITY`, `FRAMECACHE_DECODED_DISK_CAPACITY` and
    /// `FRAMECACHE_MAX_OBJECT_SIZE` (sizes such as `512MiB`), `FRAMECACHE_MAX_FRAME_PIXELS`
    /// (a count of pixels); anything unset or empty keeps its default.
    /// `FRAMECACHE_DECODED_MEMORY_CAPACITY` and `FRAMECACHE_DECODED_DISK_CAPACITY` (sizes such
    /// as `512MiB`), `FRAMECACHE_LOCK_WAIT` (seconds, see [`CacheConfig::lock_wait`]),
    /// `FRAMECACHE_SHARE_GROUP` (a group name or gid, see [`CacheConfig::sharing`]),
    /// `FRAMECACHE_ALLOW_NETWORK_FS` (`1`, see [`CacheConfig::allow_network_fs`]);
    /// anything unset or empty keeps its default.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the variable when a value cannot be used.
    pub fn from_env() -> Result<CacheConfig> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let backend = match var("FRAMECACHE_BACKEND").as_deref().map(str::trim) {
            None | Some("fs") => Backend::Fs {
                root: var("FRAMECACHE_ROOT")
                    .map(PathBuf::from)
                    .unwrap_or_else(default_fs_root),
            },
            Some("s3") => Backend::S3(S3Config::from_env()),
            Some(other) => {
                return Err(Error::Invalid {
                    what: "FRAMECACHE_BACKEND",
                    value: other.to_owned(),
                    rule: "must be fs or s3".into(),
                });
            }
        };
        let size = |name: &'static str| -> Result<Option<u64>> {
            var(name)
                .map(|v| {
                    parse_size(&v).map_err(|rule| Error::Invalid {
                        what: name,
                        value: v.clone(),
                        rule,
                    })
                })
                .transpose()
        };
        let defaults = CacheConfig::default();
        let memory_capacity =
            size("FRAMECACHE_MEMORY_CAPACITY")?.unwrap_or(defaults.memory_capacity);
        let mut disk = DiskConfig::default();
        if let Some(dir) = var("FRAMECACHE_CACHE_DIR") {
            disk.dir = PathBuf::from(dir);
        }
        if let Some(bytes) = size("FRAMECACHE_DISK_CAPACITY")? {
            disk.capacity = bytes;
        }
        let decoded = DecodedConfig {
            memory_capacity: size("FRAMECACHE_DECODED_MEMORY_CAPACITY")?
                .unwrap_or(defaults.decoded.memory_capacity),
            disk_capacity: size("FRAMECACHE_DECODED_DISK_CAPACITY")?
                .unwrap_or(defaults.decoded.disk_capacity),
        };
        let max_frame_pixels = match var("FRAMECACHE_MAX_FRAME_PIXELS") {
            Some(v) => parse_pixels(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_MAX_FRAME_PIXELS",
                value: v.clone(),
                rule,
            })?,
            None => defaults.max_frame_pixels,
        };
        let max_object_size =
            size("FRAMECACHE_MAX_OBJECT_SIZE")?.unwrap_or(defaults.max_object_size);
        let lock_wait = match var("FRAMECACHE_LOCK_WAIT") {
            Some(v) => parse_seconds(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_LOCK_WAIT",
                value: v.clone(),
                rule,
            })?,
            None => defaults.lock_wait,
        };
        let sharing = match var("FRAMECACHE_SHARE_GROUP") {
            Some(v) => Sharing::parse_group(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_SHARE_GROUP",
                value: v.clone(),
                rule,
            })?,
            None => defaults.sharing,
        };
        let allow_network_fs = match var("FRAMECACHE_ALLOW_NETWORK_FS") {
            Some(v) => parse_flag(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_ALLOW_NETWORK_FS",
                value: v.clone(),
                rule,
            })?,
            None => defaults.allow_network_fs,
        };
        Ok(CacheConfig {
            backend,
            memory_capacity,
            disk: Some(disk),
            decoded,
            max_frame_pixels,
            max_object_size,
            lock_wait,
            sharing,
            allow_network_fs,
            ..defaults
        })
    }
}

/// Parses a byte size: `4096`, `512MiB`, `10GiB`, `1.5GB` (decimal and binary units).
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a number with an optional unit (512MiB, 10GiB)".to_owned())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}")),
    };
    Ok((value * mult as f64) as u64)
}

/// Parses a pixel count: `178956970`, `178_956_970` or `8192x8192`; at least 1.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_pixels(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim().replace('_', "");
    let n = match t.split_once(['x', 'X']) {
        Some((w, h)) => w
            .trim()
            .parse::<u64>()
            .ok()
            .zip(h.trim().parse::<u64>().ok())
            .and_then(|(w, h)| w.checked_mul(h)),
        None => t.parse::<u64>().ok(),
    };
    match n {
        Some(n) if n > 0 => Ok(n),
        _ => Err("expected a positive pixel count (178956970) or WIDTHxHEIGHT (8192x8192)".into()),
    }
}

/// Parses a yes/no setting: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_flag(text: &str) -> std::result::Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0 (true/false, yes/no, on/off)".into()),
    }
}

/// Parses a duration in seconds, `0` or more: `60`, `2.5`, `0`.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_seconds(text: &str) -> std::result::Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more (60, 2.5)".to_owned())
}

/// `$XDG_CACHE_HOME/framecache`, else `~/.cache/framecache`, else
/// `{tmp}/framecache-{uid}/.cache/framecache`: a per-user directory, checked at open to be
/// this user's own with mode `0700` (never a directory every user shares).
pub fn default_cache_dir() -> PathBuf {
    base_dir("XDG_CACHE_HOME", ".cache").join("framecache")
}

/// `$XDG_DATA_HOME/framecache/store`, else `~/.local/share/framecache/store`, else under
/// the per-user directory of [`default_cache_dir`].
pub fn default_fs_root() -> PathBuf {
    base_dir("XDG_DATA_HOME", ".local/share")
        .join("framecache")
        .join("store")
}

fn base_dir(xdg: &str, home_relative: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(xdg).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(home_relative),
        None => localfs::fallback_base().join(home_relative),
    }
}

/// Builds the origin operator with its layers: a timeout per attempt inside bounded,
/// jittered retries (OpenDAL's defaults wait seconds between attempts, too slow for a cache).
pub fn build_operator(config: &CacheConfig, metrics: &Arc<Metrics>) -> Result<(Operator, String)> {
    let (op, description) = match &config.backend {
        Backend::Fs { root } => {
            localfs::prepare_fs_root(root, config.sharing)?;
            // OpenDAL's temp files go here: created with the sharing's mode beforehand.
            localfs::create_dir_all(&root.join(".framecache-tmp"), config.sharing)
                .map_err(|e| Error::io("create", root, e))?;
            let root_str = root
                .to_str()
                .ok_or_else(|| Error::Config(format!("fs root {} is not UTF-8", root.display())))?;
            let builder = opendal::services::Fs::default()
                .root(root_str)
                .atomic_write_dir(&format!("{root_str}/.framecache-tmp"));
            (Operator::new(builder), format!("fs:{}", root.display()))
        }
        Backend::S3(s3) => {
            if s3.bucket.is_empty() {
                return Err(Error::Config("S3 bucket name is empty".into()));
            }
            let mut builder = opendal::services::S3::default()
                .bucket(&s3.bucket)
                .region(&s3.region)
                .disable_ec2_metadata();
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                builder = builder
                    .access_key_id(id)
                    .secret_access_key(secret)
                    .disable_config_load();
            }
            let endpoint = s3.endpoint.as_deref().unwrap_or("aws");
            (
                Operator::new(builder),
                format!("s3://{} ({endpoint})", s3.bucket),
            )
        }
        Backend::Memory => (
            Operator::new(opendal::services::Memory::default()),
            "memory".to_owned(),
        ),
    };
    let mut op =
        op.map_err(|e| Error::Config(format!("cannot build origin {description}: {e}")))?;
    if !(0.0..=1.0).contains(&config.injected_read_faults) {
        return Err(Error::Invalid {
            what: "injected read fault ratio",
            value: config.injected_read_faults.to_string(),
            rule: "must be between 0 and 1".into(),
        });
    }
    if config.injected_read_faults > 0.0 {
        // Innermost, so every injected fault goes through the timeout and retry layers.
        op = op.layer(ChaosLayer::new(config.injected_read_faults));
    }
    let retry_metrics = metrics.clone();
    let op = op
        .layer(
            TimeoutLayer::new()
                .with_timeout(config.origin_timeout)
                .with_io_timeout(config.origin_io_timeout),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(config.retries)
                .with_min_delay(config.retry_min_delay)
                .with_max_delay(config.retry_max_delay)
                .with_jitter()
                .with_notify(move |_event: opendal::layers::RetryEvent<'_>| {
                    TierCounters::bump(&retry_metrics.origin.retries);
                }),
        );
    Ok((op, description))
}

impl CacheConfig {
    /// Assembles the tiers described by this configuration.
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Io`] when the origin cannot be set up.
    pub fn build(&self) -> Result<TieredCache> {
        self.prepare_cache_dir()?;
        let metrics = Arc::new(Metrics::default());
        let (op, description) = build_operator(self, &metrics)?;
        let origin: Arc<dyn Origin> =
            Arc::new(BlobTier::new(op, description, metrics.clone()).with_sharing(self.sharing));
        Ok(self.build_with_origin(origin, metrics))
    }

    /// Creates the disk cache directory (if any) and checks it before use: owned by this
    /// user (or shared as [`CacheConfig::sharing`] says), not on a network filesystem unless
    /// [`CacheConfig::allow_network_fs`]. [`CacheConfig::build`] calls it; a builder that
    /// starts from [`CacheConfig::build_with_origin`] calls it first.
    ///
    /// # Errors
    /// [`Error::Config`] naming the directory, what is wrong and the setting that changes
    /// it; [`Error::Io`] when it cannot be created.
    pub fn prepare_cache_dir(&self) -> Result<()> {
        match &self.disk {
            Some(disk) => {
                localfs::prepare_cache_dir(&disk.dir, self.sharing, self.allow_network_fs)
            }
            None => Ok(()),
        }
    }

    /// Assembles the decoded-frame tiers, counting into `metrics`; `None` when both are off.
    pub(crate) fn build_decoded(
        &self,
        metrics: Arc<Metrics>,
    ) -> Option<crate::decoded::DecodedTiers> {
        let disk = self
            .disk
            .as_ref()
            .map(|d| (d.dir.as_path(), self.decoded.disk_capacity));
        crate::decoded::DecodedTiers::new(
            self.decoded.memory_capacity,
            disk,
            self.lock_wait,
            self.sharing,
            metrics,
        )
    }

    /// Assembles the local tiers in front of a given origin (a wrapped or instrumented one).
    pub fn build_with_origin(&self, origin: Arc<dyn Origin>, metrics: Arc<Metrics>) -> TieredCache {
        let memory = (self.memory_capacity > 0)
            .then(|| MemoryTier::new(self.memory_capacity, metrics.clone()));
        let disk = self.disk.as_ref().map(|d| {
            DiskTier::open_with(&d.dir, d.capacity, self.sharing, metrics.clone())
                .with_lock_wait(self.lock_wait)
        });
        TieredCache::new(memory, disk, origin, metrics).with_max_object_size(self.max_object_size)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size(" 10GiB "), Ok(10 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn pixel_counts_parse_as_numbers_or_dimensions() {
        use super::parse_pixels;
        assert_eq!(parse_pixels("178956970"), Ok(178_956_970));
        assert_eq!(parse_pixels(" 178_956_970 "), Ok(178_956_970));
        assert_eq!(parse_pixels("8192x8192"), Ok(1 << 26));
        assert!(parse_pixels("0").is_err());
        assert!(parse_pixels("-5").is_err());
        assert!(parse_pixels("lots").is_err());
        assert!(parse_pixels("4294967296x4294967296").is_err());
    }

    #[test]
    fn seconds_parse_as_non_negative_durations() {
        use super::parse_seconds;
        use std::time::Duration;
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds(" 0.25 "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "soon", "NaN", "inf", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
