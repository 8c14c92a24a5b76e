//! Configuration as plain data with defaults, and the builder that assembles the tiers.

use crate::chain::TieredCache;
use crate::credentials::{Chain, SigningRecord};
use crate::error::{Error, Result};
use crate::localfs::{self, Sharing};
use crate::metrics::{Metrics, TierCounters};
use crate::tier::{BlobTier, DiskTier, MemoryTier, MinFree, Origin};
use opendal::Operator;
use opendal::layers::{ChaosLayer, RetryLayer, TimeoutLayer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default bucket, as in the Python module.
pub const DEFAULT_BUCKET: &str = "mpr";
/// Default S3 region.
pub const DEFAULT_REGION: &str = "us-east-1";

pub use crate::chain::DEFAULT_MAX_OBJECT_SIZE;

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

/// How requests name the bucket: in the path (`https://host/bucket/key`) or in the host
/// name (`https://bucket.host/key`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Addressing {
    /// Virtual-hosted on AWS (no endpoint, or an `amazonaws.com` one), path-style for any
    /// other endpoint (MinIO, Garage and most S3-compatible servers want that).
    #[default]
    Auto,
    /// `https://host/bucket/key`.
    Path,
    /// `https://bucket.host/key`.
    VirtualHosted,
}

impl std::str::FromStr for Addressing {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Addressing::Auto),
            "path" => Ok(Addressing::Path),
            "virtual" | "virtual-hosted" | "virtual_hosted" | "host" => {
                Ok(Addressing::VirtualHosted)
            }
            _ => Err("must be auto, path or virtual".into()),
        }
    }
}

/// Connection settings for an S3-compatible origin. [`S3Config::from_env`] is the one
/// place that reads them from the environment; the command line and the Python package
/// layer their flags and keywords over it.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL; `None` means AWS.
    pub endpoint: Option<String>,
    /// Region (S3 servers check it as part of the signature).
    pub region: String,
    /// Access key id (with `secret_access_key`, the first source of the credential chain).
    pub access_key_id: Option<String>,
    /// Secret access key; never printed.
    pub secret_access_key: Option<String>,
    /// Session token of temporary keys (Lambda, SSO, assumed roles); never printed.
    pub session_token: Option<String>,
    /// Profile of the shared AWS files (`AWS_PROFILE`); `None` is `default`.
    pub profile: Option<String>,
    /// Send requests unsigned, for public buckets: no credential source is consulted.
    pub anonymous: bool,
    /// Path-style or virtual-hosted requests.
    pub addressing: Addressing,
    /// Whether EC2 instance metadata is the chain's last source (`AWS_EC2_METADATA_DISABLED`
    /// turns it off).
    pub imds: bool,
    /// Instance-metadata endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT`); `None` is
    /// `http://169.254.169.254`.
    pub imds_endpoint: Option<String>,
    /// PEM file of extra root certificates for an HTTPS endpoint with a private CA
    /// (`AWS_CA_BUNDLE`, else `SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: DEFAULT_BUCKET.to_owned(),
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            profile: None,
            anonymous: false,
            addressing: Addressing::Auto,
            imds: true,
            imds_endpoint: None,
            ca_bundle: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self
                    .access_key_id
                    .as_deref()
                    .map(crate::credentials::abbreviate_key_id),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("profile", &self.profile)
            .field("anonymous", &self.anonymous)
            .field("addressing", &self.addressing)
            .field("imds", &self.imds)
            .field("imds_endpoint", &self.imds_endpoint)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

impl S3Config {
    /// The S3 settings the environment describes; unset or empty variables keep defaults.
    ///
    /// | setting | variables, first set wins |
    /// |---|---|
    /// | bucket | `S3_BUCKET` (default `mpr`) |
    /// | endpoint | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `S3_ENDPOINT_URL`, the profile's `endpoint_url` (default: AWS) |
    /// | region | `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region` (default `us-east-1`) |
    /// | keys | `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) |
    /// | profile | `AWS_PROFILE` (its file: `AWS_CONFIG_FILE`, else `~/.aws/config`) |
    /// | anonymous | `FRAMECACHE_S3_ANONYMOUS` (`1`/`true`/`yes`) |
    /// | addressing | `FRAMECACHE_S3_ADDRESSING` (`auto`, `path`, `virtual`) |
    /// | instance metadata | `AWS_EC2_METADATA_DISABLED` (`true` turns it off), `AWS_EC2_METADATA_SERVICE_ENDPOINT` |
    /// | private CA | `AWS_CA_BUNDLE`, `SSL_CERT_FILE` |
    ///
    /// Values that cannot be parsed keep their default here; [`CacheConfig::from_env`]
    /// reports them.
    pub fn from_env() -> Self {
        Self::read(env_var, false).unwrap_or_default()
    }

    /// [`S3Config::from_env`], failing on a value that cannot be used.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the variable.
    pub fn from_env_checked() -> Result<Self> {
        Self::read(env_var, true)
    }

    /// Reads the settings through `var` (the environment, or a map in tests).
    pub(crate) fn read(var: impl Fn(&str) -> Option<String>, strict: bool) -> Result<Self> {
        let profile = var("AWS_PROFILE");
        let config_file = var("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".aws").join("config")));
        let from_profile = config_file
            .map(|file| {
                crate::credentials::profile_settings(&file, profile.as_deref().unwrap_or("default"))
            })
            .unwrap_or_default();
        let flag = |name: &'static str| -> Result<Option<bool>> {
            match var(name) {
                None => Ok(None),
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(Some(true)),
                    "0" | "false" | "no" | "off" => Ok(Some(false)),
                    _ if strict => Err(Error::Invalid {
                        what: name,
                        value: v,
                        rule: "must be true or false (1/0, yes/no)".into(),
                    }),
                    _ => Ok(None),
                },
            }
        };
        let addressing = match var("FRAMECACHE_S3_ADDRESSING") {
            None => Addressing::Auto,
            Some(v) => match v.parse() {
                Ok(a) => a,
                Err(rule) if strict => {
                    return Err(Error::Invalid {
                        what: "FRAMECACHE_S3_ADDRESSING",
                        value: v,
                        rule,
                    });
                }
                Err(_) => Addressing::Auto,
            },
        };
        Ok(S3Config {
            bucket: var("S3_BUCKET").unwrap_or_else(|| DEFAULT_BUCKET.to_owned()),
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("S3_ENDPOINT_URL"))
                .or(from_profile.endpoint_url),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .or(from_profile.region)
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile,
            anonymous: flag("FRAMECACHE_S3_ANONYMOUS")?.unwrap_or(false),
            addressing,
            // boto3 turns it off for "true" in any case, and only for that.
            imds: !var("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            imds_endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
            ca_bundle: var("AWS_CA_BUNDLE")
                .or_else(|| var("SSL_CERT_FILE"))
                .map(PathBuf::from),
        })
    }

    /// Whether requests put the bucket in the host name.
    pub fn virtual_hosted(&self) -> bool {
        match self.addressing {
            Addressing::Path => false,
            Addressing::VirtualHosted => true,
            Addressing::Auto => self.endpoint.as_deref().is_none_or(is_aws_endpoint),
        }
    }
}

/// An endpoint of AWS S3 itself (`*.amazonaws.com`, `*.amazonaws.com.cn`).
fn is_aws_endpoint(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// A variable of the environment; unset, empty and blank are the same.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The disk tier's settings.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Cache directory, shared by every process of the machine that uses it.
    pub dir: PathBuf,
    /// Capacity in bytes; [`AUTO_CAPACITY`] (the default) follows the filesystem's size.
    pub capacity: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            dir: default_cache_dir(),
            capacity: AUTO_CAPACITY,
        }
    }
}

/// Budgets of the decoded-frame tiers (see [`crate::decoded`]).
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
}

impl Default for DecodedConfig {
    fn default() -> Self {
        DecodedConfig {
            memory_capacity: 2 << 30,
            disk_capacity: AUTO_CAPACITY,
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
    /// Free space the disk tiers leave on their filesystem: each keeps its usage under its
    /// capacity and under its share of what the filesystem spares beyond this. Default
    /// [`MinFree::Auto`]: 5 % of the filesystem, at most 4 GiB. See `docs/operations.md`.
    pub min_free: MinFree,
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
            min_free: MinFree::Auto,
            revalidate_after: Duration::ZERO,
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
    /// `FRAMECACHE_MIN_FREE` (`auto`, a size or a percentage such as `5%`, see
    /// [`CacheConfig::min_free`]); the disk capacities also take `auto`
    /// ([`AUTO_CAPACITY`]); `FRAMECACHE_REVALIDATE_AFTER` (seconds, see
    /// [`CacheConfig::revalidate_after`]);
    /// `FRAMECACHE_SHARE_GROUP` (a group name or gid, see [`CacheConfig::sharing`]),
    /// `FRAMECACHE_ALLOW_NETWORK_FS` (`1`, see [`CacheConfig::allow_network_fs`]);
    /// anything unset or empty keeps its default.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the variable when a value cannot be used.
    pub fn from_env() -> Result<CacheConfig> {
        Self::from_env_with_backend(None)
    }

    /// [`CacheConfig::from_env`] with the backend chosen by a flag or keyword (`fs` or `s3`)
    /// instead of `FRAMECACHE_BACKEND`; every other setting still comes from the environment.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the variable (or `backend`) when a value cannot be used.
    pub fn from_env_with_backend(backend: Option<&str>) -> Result<CacheConfig> {
        let var = |name: &str| env_var(name);
        let chosen = match backend {
            Some(name) => Some(name.to_owned()),
            None => var("FRAMECACHE_BACKEND"),
        };
        let backend = match chosen.as_deref().map(str::trim) {
            None | Some("fs") => Backend::Fs {
                root: var("FRAMECACHE_ROOT")
                    .map(PathBuf::from)
                    .unwrap_or_else(default_fs_root),
            },
            Some("s3") => Backend::S3(S3Config::from_env_checked()?),
            Some(other) => {
                return Err(Error::Invalid {
                    what: if backend.is_some() {
                        "backend"
                    } else {
                        "FRAMECACHE_BACKEND"
                    },
                    value: other.to_owned(),
                    rule: "must be fs or s3".into(),
                });
            }
        };
        let parsed = |name: &'static str, parse: fn(&str) -> std::result::Result<u64, String>| {
            var(name)
                .map(|v| {
                    parse(&v).map_err(|rule| Error::Invalid {
                        what: name,
                        value: v.clone(),
                        rule,
                    })
                })
                .transpose()
        };
        let size = |name: &'static str| -> Result<Option<u64>> { parsed(name, parse_size) };
        let capacity = |name: &'static str| -> Result<Option<u64>> { parsed(name, parse_capacity) };
        let defaults = CacheConfig::default();
        let memory_capacity =
            size("FRAMECACHE_MEMORY_CAPACITY")?.unwrap_or(defaults.memory_capacity);
        let mut disk = DiskConfig::default();
        if let Some(dir) = var("FRAMECACHE_CACHE_DIR") {
            disk.dir = PathBuf::from(dir);
        }
        if let Some(bytes) = capacity("FRAMECACHE_DISK_CAPACITY")? {
            disk.capacity = bytes;
        }
        let decoded = DecodedConfig {
            memory_capacity: size("FRAMECACHE_DECODED_MEMORY_CAPACITY")?
                .unwrap_or(defaults.decoded.memory_capacity),
            disk_capacity: capacity("FRAMECACHE_DECODED_DISK_CAPACITY")?
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
        let min_free = match var("FRAMECACHE_MIN_FREE") {
            Some(v) => MinFree::parse(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_MIN_FREE",
                value: v.clone(),
                rule,
            })?,
            None => defaults.min_free,
        };
        let revalidate_after = match var("FRAMECACHE_REVALIDATE_AFTER") {
            Some(v) => parse_seconds(&v).map_err(|rule| Error::Invalid {
                what: "FRAMECACHE_REVALIDATE_AFTER",
                value: v.clone(),
                rule,
            })?,
            None => defaults.revalidate_after,
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
            revalidate_after,
            backend,
            memory_capacity,
            disk: Some(disk),
            decoded,
            max_frame_pixels,
            max_object_size,
            lock_wait,
            min_free,
            sharing,
            allow_network_fs,
            ..defaults
        })
    }
}

pub use crate::size::parse_size;

/// Parses a disk capacity: `auto` ([`AUTO_CAPACITY`]) or a size as [`parse_size`] takes it.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_capacity(text: &str) -> std::result::Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(AUTO_CAPACITY);
    }
    parse_size(text).map_err(|rule| format!("{rule}, or auto"))
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
    build_operator_recording(config, metrics, Arc::default())
}

/// The origin as a [`BlobTier`], whose access-denied errors name the credentials used.
///
/// # Errors
/// [`Error::Config`] or [`Error::Io`] when the origin cannot be set up.
pub fn build_origin(config: &CacheConfig, metrics: &Arc<Metrics>) -> Result<BlobTier> {
    let record = Arc::new(SigningRecord::default());
    let (op, description) = build_operator_recording(config, metrics, record.clone())?;
    let tier = BlobTier::new(op, description, metrics.clone()).with_sharing(config.sharing);
    Ok(match &config.backend {
        Backend::S3(s3) if !s3.anonymous => tier.with_signing_record(record),
        _ => tier,
    })
}

fn build_operator_recording(
    config: &CacheConfig,
    metrics: &Arc<Metrics>,
    record: Arc<SigningRecord>,
) -> Result<(Operator, String)> {
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
            match (&s3.access_key_id, &s3.secret_access_key) {
                (Some(_), None) => {
                    return Err(Error::Config(
                        "an S3 access key id is set but no secret access key \
                         (AWS_SECRET_ACCESS_KEY or secret_access_key)"
                            .into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(Error::Config(
                        "an S3 secret access key is set but no access key id \
                         (AWS_ACCESS_KEY_ID or access_key_id)"
                            .into(),
                    ));
                }
                _ => {}
            }
            // Every setting comes from `s3` (read once, by `S3Config::from_env`):
            // `disable_config_load` stops OpenDAL reading endpoint variables of its own.
            let mut builder = opendal::services::S3::default()
                .bucket(&s3.bucket)
                .region(&s3.region)
                .disable_config_load();
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.endpoint(endpoint);
            }
            if s3.virtual_hosted() {
                builder = builder.enable_virtual_host_style();
            }
            builder = if s3.anonymous {
                builder.skip_signature()
            } else {
                builder.credential_provider_chain(
                    reqsign_core::ProvideCredentialChain::new().push(Chain::new(s3, record)),
                )
            };
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
    if let Backend::S3(s3) = &config.backend {
        op = op.with_context(
            opendal::OperationContext::new().with_http_transport(http_transport(s3)?),
        );
    }
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

/// A new HTTP client for one S3 origin, trusting the certificates of `ca_bundle` besides
/// the system's. Its own, not OpenDAL's process-wide default: a forked child must not use
/// connections pooled by its parent's runtime, whose threads it does not have.
fn http_transport(s3: &S3Config) -> Result<opendal::HttpTransporter> {
    let mut builder = reqwest::Client::builder();
    if let Some(bundle) = &s3.ca_bundle {
        let pem = std::fs::read(bundle).map_err(|e| Error::io("read CA bundle", bundle, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "CA bundle {} (AWS_CA_BUNDLE/SSL_CERT_FILE) holds no PEM certificate",
                    bundle.display()
                ))
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder
        .build()
        .map_err(|e| Error::Config(format!("cannot build the S3 HTTP client: {e}")))?;
    Ok(opendal::HttpTransporter::new(
        opendal_http_transport_reqwest::ReqwestTransport::new(client),
    ))
}

impl CacheConfig {
    /// Assembles the tiers described by this configuration.
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Io`] when the origin cannot be set up.
    pub fn build(&self) -> Result<TieredCache> {
        self.prepare_cache_dir()?;
        let metrics = Arc::new(Metrics::default());
        let origin: Arc<dyn Origin> = Arc::new(build_origin(self, &metrics)?);
        Ok(self.build_with_origin(origin, metrics))
    }

    /// The JPEG and decoded disk tiers' capacities, [`AUTO_CAPACITY`] resolved against the
    /// filesystem of the cache directory; `None` without a disk tier.
    pub fn disk_capacities(&self) -> Option<(u64, u64)> {
        let disk = self.disk.as_ref()?;
        let resolve = |capacity: u64, percent: u64, max: u64| {
            if capacity == AUTO_CAPACITY {
                crate::tier::auto_capacity(&disk.dir, percent, max)
            } else {
                capacity
            }
        };
        Some((
            resolve(disk.capacity, AUTO_DISK_PERCENT, AUTO_DISK_MAX),
            resolve(
                self.decoded.disk_capacity,
                AUTO_DECODED_PERCENT,
                AUTO_DECODED_MAX,
            ),
        ))
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
        let capacities = self.disk_capacities();
        let disk = self
            .disk
            .as_ref()
            .zip(capacities)
            .map(|(d, (_, decoded))| (d.dir.as_path(), decoded));
        let space = crate::decoded::DiskSpace {
            min_free: self.min_free,
            jpeg_capacity: capacities.map_or(0, |c| c.0),
        };
        crate::decoded::DecodedTiers::new(
            self.decoded.memory_capacity,
            disk,
            space,
            self.lock_wait,
            self.sharing,
            metrics,
        )
    }

    /// Assembles the local tiers in front of a given origin (a wrapped or instrumented one).
    pub fn build_with_origin(&self, origin: Arc<dyn Origin>, metrics: Arc<Metrics>) -> TieredCache {
        let memory = (self.memory_capacity > 0)
            .then(|| MemoryTier::new(self.memory_capacity, metrics.clone()));
        let disk = self
            .disk
            .as_ref()
            .zip(self.disk_capacities())
            .map(|(d, (jpeg, decoded))| {
                DiskTier::open_with(&d.dir, jpeg, self.sharing, metrics.clone())
                    .with_lock_wait(self.lock_wait)
                    .with_min_free(self.min_free)
                    .with_max_object_size(self.max_object_size)
                    // The decoded tier of the same cache directory: the spare space is shared.
                    .with_sibling(&d.dir.join(crate::decoded::DECODED_DIR), decoded)
            });
        TieredCache::new(memory, disk, origin, metrics).with_max_object_size(self.max_object_size)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    /// [`super::S3Config::read`] over a fixed set of variables.
    fn s3_from(vars: &[(&str, &str)]) -> crate::Result<super::S3Config> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        super::S3Config::read(
            |name| map.get(name).cloned().filter(|v| !v.is_empty()),
            true,
        )
    }

    #[test]
    fn endpoint_and_region_follow_one_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile lab]\nregion = ap-south-1\n\
             endpoint_url = http://profile:1\n",
        )
        .unwrap();
        let file = config.to_str().unwrap();
        let all = [
            ("AWS_ENDPOINT_URL_S3", "http://s3-specific:1"),
            ("AWS_ENDPOINT_URL", "http://generic:1"),
            ("S3_ENDPOINT_URL", "http://seed:1"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-north-1"),
            ("AWS_CONFIG_FILE", file),
            ("AWS_PROFILE", "lab"),
        ];
        let s3 = s3_from(&all).unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://s3-specific:1"));
        assert_eq!(s3.region, "us-west-2");
        assert_eq!(s3.profile.as_deref(), Some("lab"));
        let s3 = s3_from(&all[1..]).unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://generic:1"));
        let s3 = s3_from(&all[2..]).unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://seed:1"));
        assert_eq!(s3.region, "us-west-2");
        let s3 = s3_from(&all[4..]).unwrap();
        assert_eq!(s3.endpoint.as_deref(), Some("http://profile:1"));
        assert_eq!(s3.region, "eu-north-1");
        let s3 = s3_from(&all[5..]).unwrap();
        assert_eq!(s3.region, "ap-south-1");
        // Without AWS_PROFILE, the default profile's region.
        let s3 = s3_from(&all[5..6]).unwrap();
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.endpoint, None);
        let s3 = s3_from(&[]).unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str()),
            ("mpr", "us-east-1")
        );
        assert_eq!(s3.endpoint, None);
    }

    #[test]
    fn keys_token_and_switches_are_read() {
        let s3 = s3_from(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLE"),
            ("FRAMECACHE_S3_ANONYMOUS", "yes"),
            ("AWS_EC2_METADATA_DISABLED", "TRUE"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_CA_BUNDLE", "/etc/ca.pem"),
            ("SSL_CERT_FILE", "/etc/other.pem"),
        ])
        .unwrap();
        assert_eq!(s3.session_token.as_deref(), Some("FwoGZXIvYXdzEXAMPLE"));
        assert!(s3.anonymous);
        assert!(!s3.imds);
        assert_eq!(s3.imds_endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(
            s3.ca_bundle.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let printed = format!("{s3:?}");
        assert!(
            !printed.contains("wJalr") && !printed.contains("FwoGZ"),
            "{printed}"
        );
        assert!(printed.contains("AKIA…MPLE"), "{printed}");
        let s3 = s3_from(&[("AWS_EC2_METADATA_DISABLED", "false")]).unwrap();
        assert!(s3.imds && !s3.anonymous);
        let err = s3_from(&[("FRAMECACHE_S3_ANONYMOUS", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("FRAMECACHE_S3_ANONYMOUS"), "{err}");
        let err = s3_from(&[("FRAMECACHE_S3_ADDRESSING", "sideways")]).unwrap_err();
        assert!(
            err.to_string().contains("FRAMECACHE_S3_ADDRESSING"),
            "{err}"
        );
    }

    #[test]
    fn addressing_is_virtual_hosted_on_aws_and_path_style_elsewhere() {
        use super::Addressing;
        let at = |endpoint: Option<&str>, addressing: Addressing| super::S3Config {
            endpoint: endpoint.map(str::to_owned),
            addressing,
            ..super::S3Config::default()
        };
        assert!(at(None, Addressing::Auto).virtual_hosted());
        assert!(at(Some("https://s3.eu-west-1.amazonaws.com"), Addressing::Auto).virtual_hosted());
        assert!(!at(Some("http://127.0.0.1:3900"), Addressing::Auto).virtual_hosted());
        assert!(!at(Some("https://minio.lab:9000"), Addressing::Auto).virtual_hosted());
        assert!(!at(None, Addressing::Path).virtual_hosted());
        assert!(at(Some("http://127.0.0.1:3900"), Addressing::VirtualHosted).virtual_hosted());
        let s3 = s3_from(&[("FRAMECACHE_S3_ADDRESSING", "path")]).unwrap();
        assert_eq!(s3.addressing, Addressing::Path);
    }

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
    fn capacities_parse_as_sizes_or_auto() {
        use super::{AUTO_CAPACITY, parse_capacity};
        assert_eq!(parse_capacity("auto"), Ok(AUTO_CAPACITY));
        assert_eq!(parse_capacity(" AUTO "), Ok(AUTO_CAPACITY));
        assert_eq!(parse_capacity("64GiB"), Ok(64 << 30));
        assert_eq!(parse_capacity("0"), Ok(0));
        assert!(parse_capacity("most").is_err());
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
