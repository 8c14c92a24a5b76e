//! Long timelines against short ones, each figure in a new process: the time to the first
//! frame of a whole-timeline stream, one frame from the middle, and a 300-frame range from
//! the middle (cold: an empty disk cache; warm: a second process on the disk the cold one
//! filled). Prints each figure and its ratio, long over short, measured side by side.
//!
//! `cargo bench --bench long_timeline` (100,000 against 1,000 frames, fs origin, and Garage
//! when `AWS_ENDPOINT_URL` is set). `FC_LONG_FRAMES` overrides the long length. The setup
//! writes tiny JPEGs straight through to the origin (no disk tier), and reuses a timeline
//! left complete by an earlier run on the same origin.

mod common;

use framecache::WriteOptions;
use framecache::{
    Backend, CacheConfig, DiskConfig, EncodedFrame, FrameCache, LoadOptions, S3Config, Seqs,
    TimelineStatus,
};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RANGE: u64 = 300;
const RUNS: usize = 3;

fn config(backend: Backend, disk: Option<&Path>) -> CacheConfig {
    CacheConfig {
        origin: framecache::OriginConfig {
            backend,
            ..Default::default()
        },
        disk: disk.map(|dir| DiskConfig {
            dir: dir.to_path_buf(),
            capacity: 4 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `n` tiny frames unless the origin already holds them complete.
fn ensure(backend: &Backend, tl: &str, n: u64) {
    let rt = runtime();
    let writer = FrameCache::new(&CacheConfig {
        memory: framecache::MemoryConfig { capacity: 1 << 20 },
        concurrency: 64,
        ..config(backend.clone(), None)
    })
    .unwrap();
    rt.block_on(async {
        if let Ok(TimelineStatus::Complete { frames, .. }) = writer.status(tl).await
            && frames as u64 == n
        {
            return;
        }
        let start = Instant::now();
        let jpegs: Vec<bytes::Bytes> = (0..16)
            .map(|v| {
                let image = framecache::synthetic_frame(v, 16, 16).image;
                framecache::codec::encode_jpeg(&image, 80).unwrap().into()
            })
            .collect();
        let frames = (0..n)
            .map(|seq| EncodedFrame {
                seq,
                chunk_id: seq / 30,
                timestamp: seq as f64 / 30.0,
                perceptual_hash: String::new(),
                jpeg: jpegs[(seq % 16) as usize].clone(),
            })
            .collect();
        writer
            .cache_jpegs(tl, frames, WriteOptions::default())
            .await
            .unwrap();
        eprintln!("  wrote {tl} ({n} frames) in {:.1?}", start.elapsed());
    });
}

/// One figure, in this (child) process: seconds from the handle's creation.
fn measure(what: &str, backend: Backend, tl: &str, n: u64, disk: &Path) -> f64 {
    let rt = runtime();
    rt.block_on(async {
        let start = Instant::now();
        let fc = FrameCache::new(&config(backend, Some(disk))).unwrap();
        let mid = n / 2;
        match what {
            "first" => {
                let mut stream = Box::pin(fc.stream_frames(tl, Seqs::All, LoadOptions::default()));
                let (frame, _) = stream.next().await.unwrap().unwrap();
                assert_eq!(frame.seq, 0);
            }
            "middle" => {
                assert!(
                    fc.load_frame(tl, mid, LoadOptions::default())
                        .await
                        .unwrap()
                        .is_some()
                );
            }
            "range" => {
                let from = mid - RANGE / 2;
                let seqs = Seqs::Range(from..from + RANGE);
                let frames = fc
                    .load_frames(tl, seqs, LoadOptions::default())
                    .await
                    .unwrap();
                assert_eq!(frames.len() as u64, RANGE);
            }
            other => panic!("unknown figure {other}"),
        }
        start.elapsed().as_secs_f64()
    })
}

fn backend_args(backend: &Backend) -> Vec<String> {
    match backend {
        Backend::Fs { root } => vec!["fs".into(), root.display().to_string()],
        _ => vec!["s3".into(), String::new()],
    }
}

fn backend_from(kind: &str, root: &str) -> Backend {
    match kind {
        "fs" => Backend::Fs {
            root: PathBuf::from(root),
        },
        _ => Backend::S3(S3Config::from_env()),
    }
}

/// Runs one figure in a new process.
fn in_child(what: &str, backend: &Backend, tl: &str, n: u64, disk: &Path) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .args([what, tl, &n.to_string(), &disk.display().to_string()])
        .args(backend_args(backend))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let a = &args[i + 1..];
        let backend = backend_from(&a[4], &a[5]);
        let secs = measure(
            &a[0],
            backend,
            &a[1],
            a[2].parse().unwrap(),
            Path::new(&a[3]),
        );
        println!("{secs}");
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    let (short, long, runs) = if bench {
        let long = std::env::var("FC_LONG_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        (1_000u64, long, RUNS)
    } else {
        (400, 1_200, 1) // `cargo test`: only that it works
    };
    common::for_each_backend(|name, backend| {
        // A named fs origin survives between runs only under FC_BENCH_ROOT.
        let backend = match (&backend, std::env::var_os("FC_BENCH_ROOT")) {
            (Backend::Fs { .. }, Some(root)) => Backend::Fs { root: root.into() },
            _ => backend,
        };
        let (tl_short, tl_long) = (format!("bench-long-{short}"), format!("bench-long-{long}"));
        ensure(&backend, &tl_short, short);
        ensure(&backend, &tl_long, long);
        let scratch = tempfile::tempdir().unwrap();
        let mut k = 0;
        let mut fresh = || {
            k += 1;
            scratch.path().join(format!("disk-{k}"))
        };
        println!("{name}: {long} frames against {short}, new process each, median of {runs}");
        for what in ["first", "middle", "range cold", "range warm"] {
            let mut figures = [Vec::new(), Vec::new()];
            for _ in 0..runs {
                for (i, (tl, n)) in [(&tl_short, short), (&tl_long, long)].iter().enumerate() {
                    let disk = fresh();
                    let secs = match what {
                        "range warm" => {
                            in_child("range", &backend, tl, *n, &disk);
                            in_child("range", &backend, tl, *n, &disk)
                        }
                        "range cold" => in_child("range", &backend, tl, *n, &disk),
                        other => in_child(other, &backend, tl, *n, &disk),
                    };
                    figures[i].push(secs);
                }
            }
            let [s, l] = figures.map(median);
            println!(
                "  {what:<11} {short:>7}: {:>8.1} ms  {long:>7}: {:>8.1} ms  ratio {:.2}x",
                s * 1e3,
                l * 1e3,
                l / s
            );
        }
    });
}
