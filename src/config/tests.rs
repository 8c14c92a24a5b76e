//! Tests of the environment reader (`env.rs`), over maps of variables instead of the
//! process's environment.

use super::s3::{Addressing, S3Config};
use super::settings::{Backend, CacheConfig};

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
    use crate::config::AUTO_CAPACITY;
    use crate::store::MinFree;
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
