//! One cold write or one cold load and nothing else, so that `strace -f -c` counts the
//! system calls per frame of each path (`docs/performance.md` has the figures).
//!
//! ```sh
//! cargo build --example syscalls
//! ex=target/debug/examples/syscalls
//! strace -f -c -o put.txt  $ex put  /tmp/sc-origin /tmp/sc-cache-put 100   # write path
//! strace -f -c -o load.txt $ex load /tmp/sc-origin /tmp/sc-cache-load 100  # cold load
//! strace -f -c -o warm.txt $ex load /tmp/sc-origin /tmp/sc-cache-load 100  # warm load
//! ```
//! `put ROOT CACHE N` writes N synthetic 320x240 frames of timeline `sc` to an fs origin at
//! `ROOT` through a cache directory `CACHE`; `load ROOT CACHE N` loads them into `CACHE`
//! and waits for the raw entries to be written: a cold load when `CACHE` is empty (origin,
//! JPEG disk tier, decode, raw entries), a warm one when a load filled it (raw entries
//! mapped, nothing decoded). The difference between runs of 300 and 100 frames, divided by
//! 200, is the cost per frame without the process's start.

use framecache::{
    Backend, CacheConfig, DiskConfig, FrameCache, LoadOptions, Seqs, WriteOptions, synthetic_frame,
};
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("put or load");
    let root = PathBuf::from(args.next().expect("origin root"));
    let cache = PathBuf::from(args.next().expect("cache dir"));
    let n: u64 = args
        .next()
        .map_or(100, |n| n.parse().expect("a frame count"));
    let config = CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Fs { root },
            ..Default::default()
        },
        disk: Some(DiskConfig {
            dir: cache,
            capacity: 1 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fc = FrameCache::new(&config).expect("cache");
    rt.block_on(async {
        match mode.as_str() {
            "put" => {
                let frames: Vec<_> = (0..n).map(|seq| synthetic_frame(seq, 320, 240)).collect();
                fc.cache_frames("sc", &frames, WriteOptions::default())
                    .await
                    .expect("write");
            }
            "load" => {
                let frames = fc
                    .load_frames("sc", Seqs::All, LoadOptions::default())
                    .await
                    .expect("load");
                assert_eq!(frames.len() as u64, n);
                assert!(fc.flush_raw_writes(Duration::from_secs(60)));
            }
            other => panic!("unknown mode {other}"),
        }
    });
}
