//! Global flags: each read from the environment too, turned into a [`CacheConfig`].

use clap::{Args, ValueEnum};
use framecache::{
    Backend, CacheConfig, DecodedConfig, DiskConfig, S3Config, default_cache_dir, default_fs_root,
};
use std::path::PathBuf;

#[derive(Args)]
pub struct Global {
    /// Origin backend: a local directory (default) or S3.
    #[arg(long, env = "FRAMECACHE_BACKEND", value_enum, default_value_t = BackendKind::Fs, global = true)]
    backend: BackendKind,
    /// Root directory of the fs backend [default: ~/.local/share/framecache/store].
    #[arg(long, env = "FRAMECACHE_ROOT", global = true)]
    root: Option<PathBuf>,
    /// S3 bucket.
    #[arg(long, env = "S3_BUCKET", default_value = "mpr", global = true)]
    bucket: String,
    /// S3 endpoint URL (keys come only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// Disk cache directory [default: ~/.cache/framecache].
    #[arg(long, env = "FRAMECACHE_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Memory tier capacity (e.g. 512MiB).
    #[arg(long, env = "FRAMECACHE_MEMORY_CAPACITY", default_value = "512MiB", value_parser = parse_size, global = true)]
    memory_capacity: u64,
    /// Disk tier capacity (e.g. 10GiB).
    #[arg(long, env = "FRAMECACHE_DISK_CAPACITY", default_value = "10GiB", value_parser = parse_size, global = true)]
    disk_capacity: u64,
    /// Decoded-frame memory tier capacity, per process (e.g. 2GiB; 0 turns it off).
    #[arg(long, env = "FRAMECACHE_DECODED_MEMORY_CAPACITY", default_value = "2GiB", value_parser = parse_size, global = true)]
    decoded_memory_capacity: u64,
    /// Decoded-frame disk tier capacity, shared by the machine's processes (e.g. 64GiB; 0
    /// turns it off).
    #[arg(long, env = "FRAMECACHE_DECODED_DISK_CAPACITY", default_value = "64GiB", value_parser = parse_size, global = true)]
    decoded_disk_capacity: u64,
    /// Largest frame a load decodes, in pixels (a count, or WIDTHxHEIGHT); a JPEG whose
    /// header claims more is refused before decoding (the default is Pillow's limit).
    #[arg(long, env = "FRAMECACHE_MAX_FRAME_PIXELS", default_value = "178956970", value_parser = parse_pixels, global = true)]
    max_frame_pixels: u64,
    /// Largest origin object read (e.g. 64MiB); larger ones are refused from their listed
    /// size, before the download.
    #[arg(long, env = "FRAMECACHE_MAX_OBJECT_SIZE", default_value = "64MiB", value_parser = parse_size, global = true)]
    max_object_size: u64,
    /// Longest wait, in seconds, for one of the disk cache's locks (a frame's decode, a
    /// key's fetch, the directory); past it a process goes on alone, counted in `stats`.
    #[arg(long, env = "FRAMECACHE_LOCK_WAIT", default_value = "60", value_parser = parse_seconds, global = true)]
    lock_wait: std::time::Duration,
    /// Share the disk cache (and what the fs origin creates) with a group: a group name or
    /// gid; directories 2770 with that group, files 0660 [default: this user only, 0700/0600].
    #[arg(long, env = "FRAMECACHE_SHARE_GROUP", value_parser = parse_group, global = true)]
    share_group: Option<framecache::Sharing>,
    /// Use a cache directory on a network or FUSE filesystem (NFS, SMB, Lustre, GPFS, ...),
    /// refused by default: file locks there may not lock anything.
    #[arg(long, env = "FRAMECACHE_ALLOW_NETWORK_FS", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
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

/// Parses `178956970` or `8192x8192`, naming the value when it cannot.
fn parse_pixels(s: &str) -> std::result::Result<u64, String> {
    framecache::parse_pixels(s).map_err(|rule| format!("invalid pixel count {s:?}: {rule}"))
}

/// Parses `60`, `2.5` or `0` seconds, naming the value when it cannot.
fn parse_seconds(s: &str) -> std::result::Result<std::time::Duration, String> {
    framecache::parse_seconds(s).map_err(|rule| format!("invalid duration {s:?}: {rule}"))
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
    /// The origin as the user configured it, without credentials.
    pub fn origin_description(&self) -> String {
        match self.backend {
            BackendKind::Fs => format!(
                "fs:{}",
                self.root.clone().unwrap_or_else(default_fs_root).display()
            ),
            BackendKind::S3 => format!(
                "s3://{} at {}",
                self.bucket,
                self.endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }

    /// The cache configuration these flags describe.
    pub fn config(&self) -> CacheConfig {
        let backend = match self.backend {
            BackendKind::Fs => Backend::Fs {
                root: self.root.clone().unwrap_or_else(default_fs_root),
            },
            BackendKind::S3 => Backend::S3(S3Config {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                ..S3Config::from_env()
            }),
        };
        CacheConfig {
            backend,
            memory_capacity: self.memory_capacity,
            disk: Some(DiskConfig {
                dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
                capacity: self.disk_capacity,
            }),
            decoded: DecodedConfig {
                memory_capacity: self.decoded_memory_capacity,
                disk_capacity: self.decoded_disk_capacity,
            },
            max_frame_pixels: self.max_frame_pixels,
            max_object_size: self.max_object_size,
            lock_wait: self.lock_wait,
            sharing: self.share_group.unwrap_or_default(),
            allow_network_fs: self.allow_network_fs,
            ..CacheConfig::default()
        }
    }
}
