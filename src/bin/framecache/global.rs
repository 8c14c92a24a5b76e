//! Global flags: each read from the environment too, turned into a [`CacheConfig`].

use clap::{Args, ValueEnum};
use framecache::{Addressing, Backend, CacheConfig};
use std::path::PathBuf;

/// Every flag is optional and overrides the same setting read from the environment by
/// [`CacheConfig::from_env`] (the one reader of variables: each flag's doc names its
/// variable). Defaults are not written here: [`with_defaults`] shows the library's.
#[derive(Args)]
pub struct Global {
    /// Origin backend: a local directory (default) or S3 [env: FRAMECACHE_BACKEND].
    #[arg(long, value_enum, global = true)]
    backend: Option<BackendKind>,
    /// Root directory of the fs backend [env: FRAMECACHE_ROOT].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// S3 bucket [env: S3_BUCKET].
    #[arg(long, global = true)]
    bucket: Option<String>,
    /// S3 endpoint URL [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, S3_ENDPOINT_URL, the
    /// profile's endpoint_url].
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// S3 region [env: AWS_REGION, AWS_DEFAULT_REGION, the profile's region].
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
    /// Disk cache directory [env: FRAMECACHE_CACHE_DIR].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Memory tier capacity, e.g. 512MiB [env: FRAMECACHE_MEMORY_CAPACITY].
    #[arg(long, value_parser = parse_size, global = true)]
    memory_capacity: Option<u64>,
    /// Disk tier capacity, e.g. 10GiB, or auto: a share of the cache directory's
    /// filesystem [env: FRAMECACHE_DISK_CAPACITY].
    #[arg(long, value_parser = parse_capacity, global = true)]
    disk_capacity: Option<u64>,
    /// Decoded-frame memory tier capacity, per process; 0 turns it off
    /// [env: FRAMECACHE_DECODED_MEMORY_CAPACITY].
    #[arg(long, value_parser = parse_size, global = true)]
    decoded_memory_capacity: Option<u64>,
    /// Decoded-frame disk tier capacity, shared by the machine's processes; 0 turns it off;
    /// auto: a share of the cache directory's filesystem
    /// [env: FRAMECACHE_DECODED_DISK_CAPACITY].
    #[arg(long, value_parser = parse_capacity, global = true)]
    decoded_disk_capacity: Option<u64>,
    /// Free space the disk tiers leave on their filesystem: a size (2GiB, 0 for none), a
    /// percentage of the filesystem (5%), or auto: a share of the filesystem
    /// [env: FRAMECACHE_MIN_FREE].
    #[arg(long, value_parser = parse_min_free, global = true)]
    min_free: Option<framecache::MinFree>,
    /// Largest frame a load decodes, in pixels (a count, or WIDTHxHEIGHT); a JPEG whose
    /// header claims more is refused before decoding [env: FRAMECACHE_MAX_FRAME_PIXELS].
    #[arg(long, value_parser = parse_pixels, global = true)]
    max_frame_pixels: Option<u64>,
    /// Largest origin object read; larger ones are refused from their listed size, before
    /// the download [env: FRAMECACHE_MAX_OBJECT_SIZE].
    #[arg(long, value_parser = parse_size, global = true)]
    max_object_size: Option<u64>,
    /// Longest wait, in seconds, for one of the disk cache's locks (a frame's decode, a
    /// key's fetch, the directory); past it a process goes on alone, counted in `stats`
    /// [env: FRAMECACHE_LOCK_WAIT].
    #[arg(long, value_parser = parse_seconds, global = true)]
    lock_wait: Option<std::time::Duration>,
    /// Seconds a process may reuse a timeline's listing pages it confirmed at the origin
    /// for reads of selections; a frame rewritten at the origin may be served stale for that
    /// long (see docs/operations.md) [env: FRAMECACHE_REVALIDATE_AFTER].
    #[arg(long, value_parser = parse_seconds, global = true)]
    revalidate_after: Option<std::time::Duration>,
    /// Share the disk cache (and what the fs origin creates) with a group: a group name or
    /// gid; directories 2770 with that group, files 0660 [env: FRAMECACHE_SHARE_GROUP].
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
        match &mut config.origin.backend {
            Backend::Fs { root } => set(root, self.root.clone()),
            Backend::S3(s3) => {
                set(&mut s3.bucket, self.bucket.clone());
                set(&mut s3.endpoint, self.endpoint.clone().map(Some));
                set(&mut s3.region, self.region.clone());
                set(&mut s3.anonymous, self.anonymous.then_some(true));
                set(&mut s3.addressing, self.addressing);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        set(&mut config.origin.max_object_size, self.max_object_size);
        set(&mut config.memory.capacity, self.memory_capacity);
        if let Some(disk) = config.disk.as_mut() {
            set(&mut disk.dir, self.cache_dir.clone());
            set(&mut disk.capacity, self.disk_capacity);
            set(&mut disk.min_free, self.min_free);
            set(
                &mut disk.allow_network_fs,
                self.allow_network_fs.then_some(true),
            );
        }
        set(
            &mut config.decoded.memory_capacity,
            self.decoded_memory_capacity,
        );
        set(
            &mut config.decoded.disk_capacity,
            self.decoded_disk_capacity,
        );
        set(&mut config.decoded.max_frame_pixels, self.max_frame_pixels);
        set(&mut config.lock_wait, self.lock_wait);
        set(&mut config.revalidate_after, self.revalidate_after);
        set(&mut config.sharing, self.share_group);
        Ok(config)
    }
}

/// A flag given replaces the setting.
fn set<T>(setting: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *setting = value;
    }
}

/// The command with each global flag's default in its help, as the library has it
/// ([`CacheConfig::default`]): written once, there.
pub fn with_defaults(command: clap::Command) -> clap::Command {
    let defaults = CacheConfig::default();
    let disk = defaults.disk.clone().unwrap_or_default();
    let auto = |percent: u64, max: u64| {
        format!("auto, {percent} % of the filesystem, at most {}", size(max))
    };
    let capacity = |bytes: u64, percent: u64, max: u64| {
        if bytes == framecache::AUTO_CAPACITY {
            auto(percent, max)
        } else {
            size(bytes)
        }
    };
    let min_free = match disk.min_free {
        framecache::MinFree::Auto => format!(
            "auto, {} % of the filesystem, at most {}",
            framecache::store::DEFAULT_MIN_FREE_PERCENT,
            size(framecache::store::DEFAULT_MIN_FREE_BYTES)
        ),
        other => format!("{other:?}"),
    };
    let shown: [(&str, String); 14] = [
        ("backend", "fs".to_owned()),
        ("root", framecache::default_fs_root().display().to_string()),
        ("bucket", framecache::DEFAULT_BUCKET.to_owned()),
        ("region", framecache::DEFAULT_REGION.to_owned()),
        ("cache_dir", disk.dir.display().to_string()),
        ("memory_capacity", size(defaults.memory.capacity)),
        (
            "disk_capacity",
            capacity(
                disk.capacity,
                framecache::AUTO_DISK_PERCENT,
                framecache::AUTO_DISK_MAX,
            ),
        ),
        (
            "decoded_memory_capacity",
            size(defaults.decoded.memory_capacity),
        ),
        (
            "decoded_disk_capacity",
            capacity(
                defaults.decoded.disk_capacity,
                framecache::AUTO_DECODED_PERCENT,
                framecache::AUTO_DECODED_MAX,
            ),
        ),
        (
            "max_frame_pixels",
            defaults.decoded.max_frame_pixels.to_string(),
        ),
        ("max_object_size", size(defaults.origin.max_object_size)),
        ("min_free", min_free),
        (
            "lock_wait",
            format!("{} s", defaults.lock_wait.as_secs_f64()),
        ),
        (
            "revalidate_after",
            format!("{} s", defaults.revalidate_after.as_secs_f64()),
        ),
    ];
    shown.into_iter().fold(command, |command, (id, default)| {
        command.mut_arg(id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        })
    })
}

/// `512MiB`, `10GiB`: bytes in the largest binary unit that divides them.
fn size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The origin of a configuration as the user described it, without credentials.
pub fn origin_description(config: &CacheConfig) -> String {
    config.origin.backend.to_string()
}
