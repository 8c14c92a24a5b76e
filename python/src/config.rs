//! Keyword arguments of `FrameCache(...)` on top of the configuration the environment
//! describes ([`CacheConfig::from_env`], as the command line reads it).

use crate::errors::{invalid, to_py};
use framecache::{Backend, CacheConfig, S3Config};
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
    pub share_group: Option<GroupArg>,
    pub allow_network_fs: Option<bool>,
}

impl Overrides {
    /// The environment's configuration with these overrides applied.
    ///
    /// # Errors
    /// `InvalidInputError` naming the keyword or variable whose value cannot be used.
    pub fn apply(self) -> PyResult<CacheConfig> {
        let mut config = CacheConfig::from_env().map_err(to_py)?;
        let s3_keywords = self.bucket.is_some()
            || self.endpoint.is_some()
            || self.region.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some();
        match self.backend.as_deref() {
            None => {}
            Some("fs") if !matches!(config.backend, Backend::Fs { .. }) => {
                config.backend = Backend::Fs {
                    root: framecache::default_fs_root(),
                };
            }
            Some("s3") if !matches!(config.backend, Backend::S3(_)) => {
                config.backend = Backend::S3(S3Config::from_env());
            }
            Some("memory") => config.backend = Backend::Memory,
            Some("fs" | "s3") => {}
            Some(other) => {
                return Err(invalid(
                    "backend",
                    other,
                    "must be \"fs\", \"s3\" or \"memory\"",
                ));
            }
        }
        match &mut config.backend {
            Backend::Fs { root } => {
                if s3_keywords {
                    return Err(invalid(
                        "keyword for the fs backend",
                        "bucket/endpoint/region/keys",
                        "S3 settings need backend=\"s3\" (or FRAMECACHE_BACKEND=s3)",
                    ));
                }
                if let Some(given) = self.root {
                    *root = given;
                }
            }
            Backend::S3(s3) => {
                if self.root.is_some() {
                    return Err(invalid(
                        "keyword for the s3 backend",
                        "root",
                        "root is the fs backend's directory",
                    ));
                }
                s3.bucket = self.bucket.unwrap_or(std::mem::take(&mut s3.bucket));
                if self.endpoint.is_some() {
                    s3.endpoint = self.endpoint;
                }
                if let Some(region) = self.region {
                    s3.region = region;
                }
                if self.access_key_id.is_some() {
                    s3.access_key_id = self.access_key_id;
                }
                if self.secret_access_key.is_some() {
                    s3.secret_access_key = self.secret_access_key;
                }
            }
            Backend::Memory => {}
        }
        if let Some(bytes) = self.memory_capacity {
            config.memory_capacity = bytes;
        }
        if self.disk == Some(false) {
            config.disk = None;
        } else if let Some(disk) = config.disk.as_mut() {
            if let Some(dir) = self.cache_dir {
                disk.dir = dir;
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
        if let Some(n) = self.concurrency {
            if n == 0 {
                return Err(invalid("concurrency", n, "must be at least 1"));
            }
            config.concurrency = n;
        }
        if let Some(secs) = self.origin_timeout {
            config.origin_timeout = seconds("origin_timeout", secs)?;
        }
        if let Some(secs) = self.origin_io_timeout {
            config.origin_io_timeout = seconds("origin_io_timeout", secs)?;
        }
        if let Some(n) = self.retries {
            config.retries = n;
        }
        if let Some(n) = self.max_frame_pixels {
            if n == 0 {
                return Err(invalid("max_frame_pixels", n, "must be at least 1"));
            }
            config.max_frame_pixels = n;
        }
        if let Some(n) = self.max_object_size {
            if n == 0 {
                return Err(invalid("max_object_size", n, "must be at least 1 byte"));
            }
            config.max_object_size = n;
        }
        if let Some(secs) = self.lock_wait {
            config.lock_wait = Duration::try_from_secs_f64(secs).map_err(|_| {
                invalid("lock_wait", secs, "must be a number of seconds, 0 or more")
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
        if let Some(allow) = self.allow_network_fs {
            config.allow_network_fs = allow;
        }
        Ok(config)
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
    let origin = match &config.backend {
        Backend::Fs { root } => format!("fs:{}", root.display()),
        Backend::S3(s3) => format!(
            "s3://{} at {}",
            s3.bucket,
            s3.endpoint.as_deref().unwrap_or("AWS")
        ),
        Backend::Memory => "memory".to_owned(),
    };
    match &config.disk {
        Some(disk) => format!("{origin}, disk cache {}", disk.dir.display()),
        None => format!("{origin}, no disk cache"),
    }
}
