//! The one reader of the environment: every variable a setting comes from is read here
//! (the S3 settings with the AWS config file's profile, the cache's own `FRAMECACHE_*`, the
//! XDG base directories), turned into a [`CacheConfig`]. The command line and the Python
//! package start from [`CacheConfig::from_env`] and put their flags and keywords over it.

use super::dirs::default_fs_root;
use super::parse::{parse_capacity, parse_flag, parse_pixels, parse_seconds, parse_size};
use super::profile::profile_settings;
use super::s3::{Addressing, DEFAULT_BUCKET, DEFAULT_REGION, S3Config};
use super::settings::{Backend, CacheConfig};
use crate::error::{Error, Result};
use crate::localfs::Sharing;
use crate::store::MinFree;
use std::path::PathBuf;

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
        Self::read(&env_var, false).unwrap_or_default()
    }

    /// [`S3Config::from_env`], failing on a value that cannot be used.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the variable.
    pub fn from_env_checked() -> Result<Self> {
        Self::read(&env_var, true)
    }

    /// Reads the settings through `var` (the environment, or a map in tests).
    pub(crate) fn read(var: &impl Fn(&str) -> Option<String>, strict: bool) -> Result<Self> {
        let profile = var("AWS_PROFILE");
        let config_file = var("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".aws").join("config")));
        let from_profile = config_file
            .map(|file| profile_settings(&file, profile.as_deref().unwrap_or("default")))
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
}

/// A variable of the environment; unset, empty and blank are the same.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl CacheConfig {
    /// The configuration the environment describes; anything unset or empty keeps its
    /// default:
    ///
    /// | setting | variable |
    /// |---|---|
    /// | `origin.backend` | `FRAMECACHE_BACKEND` (`fs`, the default, or `s3`); `FRAMECACHE_ROOT` (the fs root); [`S3Config::from_env`]'s variables |
    /// | `origin.max_object_size` | `FRAMECACHE_MAX_OBJECT_SIZE` (a size such as `64MiB`) |
    /// | `memory.capacity` | `FRAMECACHE_MEMORY_CAPACITY` (a size) |
    /// | `disk.dir` | `FRAMECACHE_CACHE_DIR` |
    /// | `disk.capacity` | `FRAMECACHE_DISK_CAPACITY` (a size or `auto`, [`crate::AUTO_CAPACITY`]) |
    /// | `disk.min_free` | `FRAMECACHE_MIN_FREE` (`auto`, a size or a percentage such as `5%`) |
    /// | `disk.allow_network_fs` | `FRAMECACHE_ALLOW_NETWORK_FS` (`1`) |
    /// | `decoded.memory_capacity` | `FRAMECACHE_DECODED_MEMORY_CAPACITY` (a size) |
    /// | `decoded.disk_capacity` | `FRAMECACHE_DECODED_DISK_CAPACITY` (a size or `auto`) |
    /// | `decoded.max_frame_pixels` | `FRAMECACHE_MAX_FRAME_PIXELS` (a count or `WxH`) |
    /// | `lock_wait` | `FRAMECACHE_LOCK_WAIT` (seconds) |
    /// | `revalidate_after` | `FRAMECACHE_REVALIDATE_AFTER` (seconds) |
    /// | `sharing` | `FRAMECACHE_SHARE_GROUP` (a group name or gid) |
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
        Self::read(env_var, backend)
    }

    /// Reads the configuration through `var` (the environment, or a map in tests).
    pub(super) fn read(
        var: impl Fn(&str) -> Option<String>,
        backend: Option<&str>,
    ) -> Result<CacheConfig> {
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
            Some("s3") => Backend::S3(S3Config::read(&var, true)?),
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
        // A variable parsed by `parse`, `None` when unset; a value it refuses is an error
        // naming the variable.
        fn parsed<T>(
            var: &impl Fn(&str) -> Option<String>,
            name: &'static str,
            parse: impl Fn(&str) -> std::result::Result<T, String>,
        ) -> Result<Option<T>> {
            var(name)
                .map(|value| {
                    parse(&value).map_err(|rule| Error::Invalid {
                        what: name,
                        value,
                        rule,
                    })
                })
                .transpose()
        }
        let mut config = CacheConfig::default();
        config.origin.backend = backend;
        if let Some(n) = parsed(&var, "FRAMECACHE_MAX_OBJECT_SIZE", parse_size)? {
            config.origin.max_object_size = n;
        }
        if let Some(n) = parsed(&var, "FRAMECACHE_MEMORY_CAPACITY", parse_size)? {
            config.memory.capacity = n;
        }
        if let Some(disk) = config.disk.as_mut() {
            if let Some(dir) = var("FRAMECACHE_CACHE_DIR") {
                disk.dir = PathBuf::from(dir);
            }
            if let Some(n) = parsed(&var, "FRAMECACHE_DISK_CAPACITY", parse_capacity)? {
                disk.capacity = n;
            }
            if let Some(m) = parsed(&var, "FRAMECACHE_MIN_FREE", MinFree::parse)? {
                disk.min_free = m;
            }
            if let Some(allow) = parsed(&var, "FRAMECACHE_ALLOW_NETWORK_FS", parse_flag)? {
                disk.allow_network_fs = allow;
            }
        }
        let decoded = &mut config.decoded;
        if let Some(n) = parsed(&var, "FRAMECACHE_DECODED_MEMORY_CAPACITY", parse_size)? {
            decoded.memory_capacity = n;
        }
        if let Some(n) = parsed(&var, "FRAMECACHE_DECODED_DISK_CAPACITY", parse_capacity)? {
            decoded.disk_capacity = n;
        }
        if let Some(n) = parsed(&var, "FRAMECACHE_MAX_FRAME_PIXELS", parse_pixels)? {
            decoded.max_frame_pixels = n;
        }
        if let Some(wait) = parsed(&var, "FRAMECACHE_LOCK_WAIT", parse_seconds)? {
            config.lock_wait = wait;
        }
        if let Some(after) = parsed(&var, "FRAMECACHE_REVALIDATE_AFTER", parse_seconds)? {
            config.revalidate_after = after;
        }
        if let Some(sharing) = parsed(&var, "FRAMECACHE_SHARE_GROUP", Sharing::parse_group)? {
            config.sharing = sharing;
        }
        Ok(config)
    }
}
