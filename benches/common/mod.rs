//! What the benches share: the origins they run on and the timeline length.
#![allow(dead_code)] // each bench uses its own part

use framecache::{Backend, S3Config};

/// Runs `bench` on a temporary fs origin, and on S3 when `AWS_ENDPOINT_URL` names a server
/// (`source DIR/env` after `scripts/garage.sh start DIR`).
pub fn for_each_backend(mut bench: impl FnMut(&str, Backend)) {
    let root = tempfile::tempdir().unwrap();
    bench(
        "fs",
        Backend::Fs {
            root: root.path().to_path_buf(),
        },
    );
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        bench("s3", Backend::S3(S3Config::from_env()));
    }
}

/// 300 frames under `cargo bench`; a few under `cargo test`, which runs each bench once,
/// unoptimised, only to check that it works.
pub fn timeline_frames() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        300
    } else {
        6
    }
}
