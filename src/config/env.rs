//! The one reader of the environment: every variable a setting comes from is read here
//! (the S3 settings with the AWS config file's profile, the cache's own `FRAMECACHE_*`, the
//! XDG base directories), turned into a [`CacheConfig`]. The command line and the Python
//! package start from [`CacheConfig::from_env`] and put their flags and keywords over it.

use super::dirs::default_fs_root;
use super::parse::{parse_capacity, parse_flag, parse_pixels, parse_seconds, parse_size};
use super::profile::profile_settings;
use super::s3::{Addressing, DEFAULT_BUCKET, DEFAULT_REGION, S3Config};
use super::settings::{Backend, CacheConfig, MinFree};
use crate::error::{Error, Result};
use crate::localfs::Sharing;
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
    fn read(var: impl Fn(&str) -> Option<String>, backend: Option<&str>) -> Result<CacheConfig> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`S3Config::read`] over a fixed set of variables.
    fn s3_from(vars: &[(&str, &str)]) -> crate::Result<S3Config> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        S3Config::read(
            &|name: &str| map.get(name).cloned().filter(|v| !v.is_empty()),
            true,
        )
    }

    /// [`CacheConfig::read`] over a fixed set of variables.
    fn config_from(vars: &[(&str, &str)], backend: Option<&str>) -> crate::Result<CacheConfig> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CacheConfig::read(
            |name: &str| map.get(name).cloned().filter(|v| !v.is_empty()),
            backend,
        )
    }

    #[test]
    fn each_variable_sets_its_group_and_nothing_else() {
        use crate::config::{AUTO_CAPACITY, MinFree};
        let defaults = CacheConfig::default();
        let read = config_from(&[], None).unwrap();
        assert_eq!(read.memory.capacity, defaults.memory.capacity);
        assert_eq!(read.origin.max_object_size, defaults.origin.max_object_size);
        assert_eq!(
            read.decoded.max_frame_pixels,
            defaults.decoded.max_frame_pixels
        );
        assert!(matches!(read.origin.backend, Backend::Fs { .. }));
        let read = config_from(
            &[
                ("FRAMECACHE_ROOT", "/srv/store"),
                ("FRAMECACHE_CACHE_DIR", "/mnt/cache"),
                ("FRAMECACHE_MEMORY_CAPACITY", "1MiB"),
                ("FRAMECACHE_DISK_CAPACITY", "auto"),
                ("FRAMECACHE_MIN_FREE", "5%"),
                ("FRAMECACHE_ALLOW_NETWORK_FS", "yes"),
                ("FRAMECACHE_DECODED_MEMORY_CAPACITY", "0"),
                ("FRAMECACHE_DECODED_DISK_CAPACITY", "3GiB"),
                ("FRAMECACHE_MAX_FRAME_PIXELS", "100x100"),
                ("FRAMECACHE_MAX_OBJECT_SIZE", "2MiB"),
                ("FRAMECACHE_LOCK_WAIT", "2.5"),
                ("FRAMECACHE_REVALIDATE_AFTER", "30"),
            ],
            None,
        )
        .unwrap();
        assert!(
            matches!(&read.origin.backend, Backend::Fs { root } if root.as_os_str() == "/srv/store")
        );
        assert_eq!(read.origin.max_object_size, 2 << 20);
        assert_eq!(read.memory.capacity, 1 << 20);
        let disk = read.disk.as_ref().unwrap();
        assert_eq!(disk.dir.as_os_str(), "/mnt/cache");
        assert_eq!(disk.capacity, AUTO_CAPACITY);
        assert_eq!(disk.min_free, MinFree::Percent(5.0));
        assert!(disk.allow_network_fs);
        assert_eq!(read.decoded.memory_capacity, 0);
        assert_eq!(read.decoded.disk_capacity, 3 << 30);
        assert_eq!(read.decoded.max_frame_pixels, 10_000);
        assert_eq!(read.lock_wait, std::time::Duration::from_millis(2500));
        assert_eq!(read.revalidate_after, std::time::Duration::from_secs(30));
        // Untouched by any variable: the defaults.
        assert_eq!(read.concurrency, defaults.concurrency);
        assert_eq!(read.origin.retries, defaults.origin.retries);
    }

    #[test]
    fn a_bad_value_or_backend_is_refused_by_name() {
        for (name, value) in [
            ("FRAMECACHE_MEMORY_CAPACITY", "lots"),
            ("FRAMECACHE_DISK_CAPACITY", "most"),
            ("FRAMECACHE_MIN_FREE", "150%"),
            ("FRAMECACHE_MAX_FRAME_PIXELS", "0"),
            ("FRAMECACHE_LOCK_WAIT", "soon"),
            ("FRAMECACHE_ALLOW_NETWORK_FS", "maybe"),
            ("FRAMECACHE_BACKEND", "ftp"),
        ] {
            let err = config_from(&[(name, value)], None).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err = config_from(&[("FRAMECACHE_BACKEND", "fs")], Some("ftp")).unwrap_err();
        assert!(err.to_string().contains("backend"), "{err}");
        // The backend chosen by a flag or keyword wins over the variable.
        let read = config_from(&[("FRAMECACHE_BACKEND", "fs")], Some("s3")).unwrap();
        assert!(matches!(read.origin.backend, Backend::S3(_)));
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
        let at = |endpoint: Option<&str>, addressing: Addressing| S3Config {
            endpoint: endpoint.map(str::to_owned),
            addressing,
            ..S3Config::default()
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
}
