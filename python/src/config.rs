//! Keyword arguments of `FrameCache(...)` on top of the configuration the environment
//! describes ([`CacheConfig::from_env`], as the command line reads it).

use crate::errors::{invalid, to_py};
use framecache::{Backend, CacheConfig};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

/// `share_group=`: a group name or a gid.
#[derive(FromPyObject)]
pub enum GroupArg {
    Id(u32),
    Name(String),
}

/// Every keyword of `FrameCache(...)`; `None` keeps the environment's (or default) value.
#[derive(Default)]
pub struct Overrides {
    pub backend: Option<String>,
    pub root: Option<PathBuf>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub anonymous: Option<bool>,
    pub addressing: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub memory_capacity: Option<u64>,
    pub disk_capacity: Option<u64>,
    pub disk: Option<bool>,
    pub decoded_memory_capacity: Option<u64>,
    pub decoded_disk_capacity: Option<u64>,
    pub concurrency: Option<usize>,
    pub origin_timeout: Option<f64>,
    pub origin_io_timeout: Option<f64>,
    pub retries: Option<usize>,
    pub max_frame_pixels: Option<u64>,
    pub max_object_size: Option<u64>,
    pub lock_wait: Option<f64>,
    pub min_free: Option<MinFreeArg>,
    pub revalidate_after: Option<f64>,
    pub share_group: Option<GroupArg>,
    pub allow_network_fs: Option<bool>,
}

/// `min_free=`: bytes as an `int`, or `"auto"`, `"5%"`, `"2GiB"`.
#[derive(FromPyObject)]
pub enum MinFreeArg {
    Bytes(u64),
    Text(String),
}

impl Overrides {
    /// The environment's configuration with these overrides applied.
    ///
    /// # Errors
    /// `InvalidInputError` naming the keyword or variable whose value cannot be used.
    pub fn apply(self) -> PyResult<CacheConfig> {
        let s3_keywords = self.bucket.is_some()
            || self.endpoint.is_some()
            || self.region.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || self.session_token.is_some()
            || self.anonymous.is_some()
            || self.addressing.is_some();
        // The environment is read in one place, `CacheConfig::from_env`; keywords go over it.
        let mut config = match self.backend.as_deref() {
            None => CacheConfig::from_env(),
            Some(name @ ("fs" | "s3")) => CacheConfig::from_env_with_backend(Some(name)),
            Some(other) => return Err(invalid("backend", other, "must be \"fs\" or \"s3\"")),
        }
        .map_err(to_py)?;
        match &mut config.origin.backend {
            Backend::Fs { root } => {
                if s3_keywords {
                    return Err(invalid(
                        "keyword for the fs backend",
                        "bucket/endpoint/region/keys/anonymous/addressing",
                        "S3 settings need backend=\"s3\" (or FRAMECACHE_BACKEND=s3)",
                    ));
                }
                set(root, self.root);
            }
            Backend::S3(s3) => {
                if self.root.is_some() {
                    return Err(invalid(
                        "keyword for the s3 backend",
                        "root",
                        "root is the fs backend's directory",
                    ));
                }
                set(&mut s3.bucket, self.bucket);
                set(&mut s3.endpoint, self.endpoint.map(Some));
                set(&mut s3.region, self.region);
                let keys_given = self.access_key_id.is_some();
                if keys_given {
                    s3.access_key_id = self.access_key_id;
                }
                if self.secret_access_key.is_some() {
                    s3.secret_access_key = self.secret_access_key;
                }
                if self.session_token.is_some() || keys_given {
                    // Keys given as keywords never borrow the environment's token (as boto3).
                    s3.session_token = self.session_token;
                }
                set(&mut s3.anonymous, self.anonymous);
                if let Some(addressing) = self.addressing {
                    s3.addressing = addressing
                        .parse()
                        .map_err(|rule: String| invalid("addressing", &addressing, &rule))?;
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
        if let Some(n) = self.max_object_size {
            if n == 0 {
                return Err(invalid("max_object_size", n, "must be at least 1 byte"));
            }
            config.origin.max_object_size = n;
        }
        if let Some(secs) = self.origin_timeout {
            config.origin.timeout = seconds("origin_timeout", secs)?;
        }
        if let Some(secs) = self.origin_io_timeout {
            config.origin.io_timeout = seconds("origin_io_timeout", secs)?;
        }
        set(&mut config.origin.retries, self.retries);
        set(&mut config.memory.capacity, self.memory_capacity);
        let min_free = match self.min_free {
            None => None,
            Some(MinFreeArg::Bytes(n)) => Some(framecache::MinFree::Bytes(n)),
            Some(MinFreeArg::Text(text)) => Some(
                framecache::MinFree::parse(&text)
                    .map_err(|rule| invalid("min_free", &text, rule))?,
            ),
        };
        if self.disk == Some(false) {
            config.disk = None;
        } else if let Some(disk) = config.disk.as_mut() {
            set(&mut disk.dir, self.cache_dir);
            set(&mut disk.capacity, self.disk_capacity);
            set(&mut disk.min_free, min_free);
            set(&mut disk.allow_network_fs, self.allow_network_fs);
        }
        set(
            &mut config.decoded.memory_capacity,
            self.decoded_memory_capacity,
        );
        set(
            &mut config.decoded.disk_capacity,
            self.decoded_disk_capacity,
        );
        if let Some(n) = self.max_frame_pixels {
            if n == 0 {
                return Err(invalid("max_frame_pixels", n, "must be at least 1"));
            }
            config.decoded.max_frame_pixels = n;
        }
        if let Some(n) = self.concurrency {
            if n == 0 {
                return Err(invalid("concurrency", n, "must be at least 1"));
            }
            config.concurrency = n;
        }
        if let Some(secs) = self.lock_wait {
            config.lock_wait = Duration::try_from_secs_f64(secs).map_err(|_| {
                invalid("lock_wait", secs, "must be a number of seconds, 0 or more")
            })?;
        }
        if let Some(secs) = self.revalidate_after {
            config.revalidate_after = Duration::try_from_secs_f64(secs).map_err(|_| {
                invalid(
                    "revalidate_after",
                    secs,
                    "must be a number of seconds, 0 or more",
                )
            })?;
        }
        match self.share_group {
            Some(GroupArg::Id(gid)) => config.sharing = framecache::Sharing::Group(gid),
            Some(GroupArg::Name(name)) => {
                config.sharing = framecache::Sharing::parse_group(&name)
                    .map_err(|rule| invalid("share_group", name.clone(), rule))?;
            }
            None => {}
        }
        Ok(config)
    }
}

/// A keyword given replaces the setting.
fn set<T>(setting: &mut T, keyword: Option<T>) {
    if let Some(value) = keyword {
        *setting = value;
    }
}

fn seconds(what: &'static str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(what, secs, "must be a positive number of seconds"))
}

/// Where a configuration's origin is, without credentials.
pub fn describe(config: &CacheConfig) -> String {
    let origin = &config.origin.backend;
    match &config.disk {
        Some(disk) => format!("{origin}, disk cache {}", disk.dir.display()),
        None => format!("{origin}, no disk cache"),
    }
}
