//! Global flags: each read from the environment too, turned into a [`CacheConfig`].

use clap::{Args, ValueEnum};
use framecache::{Addressing, Backend, CacheConfig};
use std::path::PathBuf;

/// Every flag is optional and overrides the same setting read from the environment by
/// [`CacheConfig::from_env`] (the one reader of variables: each flag's doc names its variable).
#[derive(Args)]
pub struct Global {
    /// Origin backend: a local directory (default) or S3 [env: FRAMECACHE_BACKEND].
    #[arg(long, value_enum, global = true)]
    backend: Option<BackendKind>,
    /// Root directory of the fs backend [env: FRAMECACHE_ROOT; default:
    /// ~/.local/share/framecache/store].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// S3 bucket [env: S3_BUCKET; default: mpr].
    #[arg(long, global = true)]
    bucket: Option<String>,
    /// S3 endpoint URL [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, S3_ENDPOINT_URL, the
    /// profile's endpoint_url; default: AWS].
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// S3 region [env: AWS_REGION, AWS_DEFAULT_REGION, the profile's region; default:
    /// us-east-1].
    #[arg(long, global = true)]
    region: Option<String>,
    /// Send S3 requests unsigned, for a public bucket [env: FRAMECACHE_S3_ANONYMOUS].
    /// Otherwise credentials come from boto3's chain (see docs/operations.md).
    #[arg(long, global = true)]
    anonymous: bool,
    /// S3 addressing: auto (virtual-hosted on AWS, path-style elsewhere), path or virtual
    /// [env: FRAMECACHE_S3_ADDRESSING].
    #[arg(long, global = true)]
    addressing: Option<Addressing>,
    /// Disk cache directory [env: FRAMECACHE_CACHE_DIR; default: ~/.cache/framecache].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Memory tier capacity, e.g. 512MiB [env: FRAMECACHE_MEMORY_CAPACITY; default: 512MiB].
    #[arg(long, value_parser = parse_size, global = true)]
    memory_capacity: Option<u64>,
    /// Disk tier capacity, e.g. 10GiB, or auto: 5 % of the cache directory's filesystem, at
    /// most 10 GiB [env: FRAMECACHE_DISK_CAPACITY; default: auto].
    #[arg(long, value_parser = parse_capacity, global = true)]
    disk_capacity: Option<u64>,
    /// Decoded-frame memory tier capacity, per process; 0 turns it off
    /// [env: FRAMECACHE_DECODED_MEMORY_CAPACITY; default: 2GiB].
    #[arg(long, value_parser = parse_size, global = true)]
    decoded_memory_capacity: Option<u64>,
    /// Decoded-frame disk tier capacity, shared by the machine's processes; 0 turns it off;
    /// auto: 10 % of the cache directory's filesystem, at most 64 GiB
    /// [env: FRAMECACHE_DECODED_DISK_CAPACITY; default: auto].
    #[arg(long, value_parser = parse_capacity, global = true)]
    decoded_disk_capacity: Option<u64>,
    /// Free space the disk tiers leave on their filesystem: a size (2GiB, 0 for none), a
    /// percentage of the filesystem (5%), or auto: 5 %, at most 4 GiB
    /// [env: FRAMECACHE_MIN_FREE; default: auto].
    #[arg(long, value_parser = parse_min_free, global = true)]
    min_free: Option<framecache::MinFree>,
    /// Largest frame a load decodes, in pixels (a count, or WIDTHxHEIGHT); a JPEG whose
    /// header claims more is refused before decoding [env: FRAMECACHE_MAX_FRAME_PIXELS;
    /// default: 178956970, Pillow's limit].
    #[arg(long, value_parser = parse_pixels, global = true)]
    max_frame_pixels: Option<u64>,
    /// Largest origin object read; larger ones are refused from their listed size, before
    /// the download [env: FRAMECACHE_MAX_OBJECT_SIZE; default: 64MiB].
    #[arg(long, value_parser = parse_size, global = true)]
    max_object_size: Option<u64>,
    /// Longest wait, in seconds, for one of the disk cache's locks (a frame's decode, a
    /// key's fetch, the directory); past it a process goes on alone, counted in `stats`
    /// [env: FRAMECACHE_LOCK_WAIT; default: 60].
    #[arg(long, value_parser = parse_seconds, global = true)]
    lock_wait: Option<std::time::Duration>,
    /// Seconds a process may reuse a timeline's listing pages it confirmed at the origin
    /// for reads of selections; a frame rewritten at the origin may be served stale for that
    /// long (see docs/operations.md) [env: FRAMECACHE_REVALIDATE_AFTER; default: 0, every
    /// read revalidates].
    #[arg(long, value_parser = parse_seconds, global = true)]
    revalidate_after: Option<std::time::Duration>,
    /// Share the disk cache (and what the fs origin creates) with a group: a group name or
    /// gid; directories 2770 with that group, files 0660 [env: FRAMECACHE_SHARE_GROUP;
    /// default: this user only, 0700/0600].
    #[arg(long, value_parser = parse_group, global = true)]
    share_group: Option<framecache::Sharing>,
    /// Use a cache directory on a network or FUSE filesystem (NFS, SMB, Lustre, GPFS, ...),
    /// refused by default: file locks there may not lock anything
    /// [env: FRAMECACHE_ALLOW_NETWORK_FS].
    #[arg(long, global = true)]
    allow_network_fs: bool,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    Fs,
    S3,
}

impl BackendKind {
    fn name(self) -> &'static str {
        match self {
            BackendKind::Fs => "fs",
            BackendKind::S3 => "s3",
        }
    }
}

/// Parses `178956970` or `8192x8192`, naming the value when it cannot.
fn parse_pixels(s: &str) -> std::result::Result<u64, String> {
    framecache::parse_pixels(s).map_err(|rule| format!("invalid pixel count {s:?}: {rule}"))
}

/// Parses `60`, `2.5` or `0` seconds, naming the value when it cannot.
fn parse_seconds(s: &str) -> std::result::Result<std::time::Duration, String> {
    framecache::parse_seconds(s).map_err(|rule| format!("invalid duration {s:?}: {rule}"))
}

/// Parses `auto` or a size, naming the value when it cannot.
fn parse_capacity(s: &str) -> std::result::Result<u64, String> {
    framecache::parse_capacity(s).map_err(|rule| format!("invalid capacity {s:?}: {rule}"))
}

/// Parses `auto`, `5%` or a size, naming the value when it cannot.
fn parse_min_free(s: &str) -> std::result::Result<framecache::MinFree, String> {
    framecache::MinFree::parse(s).map_err(|rule| format!("invalid free space {s:?}: {rule}"))
}

/// Parses a group name or gid, naming the value when it cannot.
fn parse_group(s: &str) -> std::result::Result<framecache::Sharing, String> {
    framecache::Sharing::parse_group(s).map_err(|rule| format!("invalid group {s:?}: {rule}"))
}

/// Parses `512MiB`, `10GiB`, `1.5GB`, `4096`, naming the value when it cannot.
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    framecache::parse_size(s).map_err(|rule| format!("invalid size {s:?}: {rule}"))
}

impl Global {
    /// The cache configuration of the environment with these flags over it.
    ///
    /// # Errors
    /// A variable whose value cannot be used, named.
    pub fn config(&self) -> framecache::Result<CacheConfig> {
        let mut config = CacheConfig::from_env_with_backend(self.backend.map(BackendKind::name))?;
        match &mut config.backend {
            Backend::Fs { root } => {
                if let Some(given) = &self.root {
                    *root = given.clone();
                }
            }
            Backend::S3(s3) => {
                if let Some(bucket) = &self.bucket {
                    s3.bucket = bucket.clone();
                }
                if let Some(endpoint) = &self.endpoint {
                    s3.endpoint = Some(endpoint.clone());
                }
                if let Some(region) = &self.region {
                    s3.region = region.clone();
                }
                if self.anonymous {
                    s3.anonymous = true;
                }
                if let Some(addressing) = self.addressing {
                    s3.addressing = addressing;
                }
            }
            Backend::Memory => {}
        }
        if let Some(bytes) = self.memory_capacity {
            config.memory_capacity = bytes;
        }
        if let Some(min_free) = self.min_free {
            config.min_free = min_free;
        }
        if let Some(disk) = config.disk.as_mut() {
            if let Some(dir) = &self.cache_dir {
                disk.dir = dir.clone();
            }
            if let Some(bytes) = self.disk_capacity {
                disk.capacity = bytes;
            }
        }
        if let Some(bytes) = self.decoded_memory_capacity {
            config.decoded.memory_capacity = bytes;
        }
        if let Some(bytes) = self.decoded_disk_capacity {
            config.decoded.disk_capacity = bytes;
        }
        if let Some(n) = self.max_frame_pixels {
            config.max_frame_pixels = n;
        }
        if let Some(n) = self.max_object_size {
            config.max_object_size = n;
        }
        if let Some(wait) = self.lock_wait {
            config.lock_wait = wait;
        }
        if let Some(window) = self.revalidate_after {
            config.revalidate_after = window;
        }
        if let Some(sharing) = self.share_group {
            config.sharing = sharing;
        }
        if self.allow_network_fs {
            config.allow_network_fs = true;
        }
        Ok(config)
    }
}

/// The origin of a configuration as the user described it, without credentials.
pub fn origin_description(config: &CacheConfig) -> String {
    match &config.backend {
        Backend::Fs { root } => format!("fs:{}", root.display()),
        Backend::S3(s3) => format!(
            "s3://{} at {}",
            s3.bucket,
            s3.endpoint.as_deref().unwrap_or("AWS")
        ),
        Backend::Memory => "memory".to_owned(),
    }
}
