//! End-to-end timeline benchmark printing one JSON line: `cache_frames`, `load_frames` cold
//! (origin, decoded and kept), warm (new handle: raw frames decoded earlier on this machine,
//! mapped; and with the decoded tiers off, JPEGs from disk decoded again) and hot (memory),
//! decoding the same JPEGs from memory on all cores (what a cold load is compared with),
//! 4 processes loading one timeline at once on an empty machine, base64 loads, peak RSS of
//! the cold load beyond its output, and the per-frame cost of a long timeline.
//!
//! The origin is S3 when `AWS_ENDPOINT_URL` is set (see `scripts/bench.sh`), else a
//! temporary fs directory. Each figure is the median of `--runs` runs.
//!
//! ```sh
//! cargo run --release --example bench_timeline -- --frames 300 --width 1280 --height 720
//! ```

use framecache::{
    Backend, CacheConfig, ClearScope, DecodedConfig, DiskConfig, Frame, FrameCache, S3Config,
    codec, synthetic_frame,
};
use framecache::{LoadOptions, Seqs, WriteOptions};
use futures::TryStreamExt;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

struct Args {
    frames: u64,
    width: u32,
    height: u32,
    runs: usize,
    long: u64,
    memory_capacity: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        frames: 300,
        width: 1280,
        height: 720,
        runs: 3,
        long: 10_000,
        memory_capacity: 256 << 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--frames" => args.frames = value(),
            "--width" => args.width = value() as u32,
            "--height" => args.height = value() as u32,
            "--runs" => args.runs = value() as usize,
            "--long" => args.long = value(),
            "--memory-capacity" => args.memory_capacity = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

fn config(backend: &Backend, disk: &Path, memory_capacity: u64) -> CacheConfig {
    CacheConfig {
        origin: framecache::OriginConfig {
            backend: backend.clone(),
            ..Default::default()
        },
        memory: framecache::MemoryConfig {
            capacity: memory_capacity,
        },
        disk: Some(DiskConfig {
            dir: disk.to_path_buf(),
            capacity: 64 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    }
}

/// As `config`, with the decoded-frame tiers off: every load decodes the JPEGs.
fn jpeg_only(config: CacheConfig) -> CacheConfig {
    CacheConfig {
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 0,
            ..Default::default()
        },
        ..config
    }
}

fn backend() -> Backend {
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        Backend::S3(S3Config::from_env())
    } else {
        Backend::Fs {
            root: std::env::temp_dir().join(format!("bench-origin-{}", std::process::id())),
        }
    }
}

/// Child mode (`--child-load TIMELINE CACHE_DIR [ORIGIN_ROOT]`): one load in a new process,
/// printing its time and how many frames it decoded.
fn child_load(mut args: impl Iterator<Item = String>) {
    let timeline = args.next().expect("timeline");
    let cache = std::path::PathBuf::from(args.next().expect("cache dir"));
    let backend = match args.next() {
        Some(root) => Backend::Fs { root: root.into() },
        None => backend(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fc = FrameCache::new(&config(&backend, &cache, 256 << 20)).unwrap();
    let start = Instant::now();
    let frames = rt
        .block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    // The raw frames written behind the load land before the process exits.
    assert!(fc.flush_raw_writes(Duration::from_secs(120)));
    let stats = fc.stats();
    println!(
        "{}",
        json!({"frames": frames.len(), "s": took, "decodes": stats.decodes,
               "waits": stats.decode_waits, "decoded_disk_hits": stats.decoded_disk.hits})
    );
}

/// Child mode (`--child-write TIMELINE CACHE_DIR FRAMES WIDTH HEIGHT [ORIGIN_ROOT]`): one
/// `cache_frames` of synthetic frames in a new process (for `strace -c` of the write path),
/// printing its time.
fn child_write(mut args: impl Iterator<Item = String>) {
    let timeline = args.next().expect("timeline");
    let cache = std::path::PathBuf::from(args.next().expect("cache dir"));
    let mut number = || {
        args.next()
            .and_then(|v| v.parse::<u64>().ok())
            .expect("number")
    };
    let (n, width, height) = (number(), number() as u32, number() as u32);
    let backend = match args.next() {
        Some(root) => Backend::Fs { root: root.into() },
        None => backend(),
    };
    let frames: Vec<Frame> = (0..n).map(|s| synthetic_frame(s, width, height)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fc = FrameCache::new(&config(&backend, &cache, 256 << 20)).unwrap();
    let start = Instant::now();
    rt.block_on(fc.cache_frames(&timeline, &frames, WriteOptions::default()))
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    println!("{}", json!({"frames": n, "s": took}));
}

/// Decodes `jpegs` on every core, each into a fresh buffer: the cost a cold load is held to.
fn decode_all_cores(jpegs: &[bytes::Bytes]) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(jpeg) = jpegs.get(i) else { break };
                    out.push(codec::decode_jpeg(jpeg).unwrap());
                }
                out
            });
        }
    });
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64()
}

/// Resets the kernel's peak-RSS mark of this process (Linux); false where unsupported.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` (peak) and `VmRSS` (now) in bytes.
fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn main() {
    let mut raw_args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--child-load") {
        raw_args.next();
        return child_load(raw_args);
    }
    if std::env::args().nth(1).as_deref() == Some("--child-write") {
        raw_args.next();
        return child_write(raw_args);
    }
    let args = parse_args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let backend = match backend() {
        Backend::Fs { .. } => Backend::Fs {
            root: scratch.path().join("origin"),
        },
        s3 => s3,
    };
    let mem = args.memory_capacity;
    let tag = format!("bench-{}", std::process::id());
    let frames: Vec<Frame> = (0..args.frames)
        .map(|s| synthetic_frame(s, args.width, args.height))
        .collect();

    // cache_frames into a fresh timeline each run.
    let mut cache_runs = Vec::new();
    let timeline = format!("{tag}-main");
    for run in 0..args.runs {
        let fc = FrameCache::new(&config(
            &backend,
            &scratch.path().join(format!("w{run}")),
            mem,
        ))
        .unwrap();
        let start = Instant::now();
        rt.block_on(fc.cache_frames(&timeline, &frames, WriteOptions::default()))
            .unwrap();
        cache_runs.push(start.elapsed());
    }
    let jpeg_bytes: u64 = rt
        .block_on(
            FrameCache::new(&config(&backend, &scratch.path().join("probe"), 0))
                .unwrap()
                .list_frames(&timeline),
        )
        .unwrap()
        .iter()
        .map(|e| e.size)
        .sum();
    drop(frames);

    // Cold loads, each on a new empty disk cache; the first one also measures peak RSS.
    let mut cold_runs = Vec::new();
    let mut rss_report = serde_json::Value::Null;
    for run in 0..args.runs {
        let fc = FrameCache::new(&config(
            &backend,
            &scratch.path().join(format!("c{run}")),
            mem,
        ))
        .unwrap();
        let measure = run == 0 && reset_peak_rss();
        let before = rss();
        let start = Instant::now();
        let loaded = rt
            .block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
            .unwrap();
        cold_runs.push(start.elapsed());
        if let (true, Some((_, base)), Some((peak, _))) = (measure, before, rss()) {
            let output: u64 = loaded.iter().map(|f| f.image.as_raw().len() as u64).sum();
            let held = fc.chain().memory().map_or(0, |m| m.held_bytes());
            let grown = peak.saturating_sub(base);
            rss_report = json!({
                "peak_growth_bytes": grown,
                "decoded_output_bytes": output,
                "memory_tier_cap_bytes": mem,
                "memory_tier_held_bytes": held,
                "beyond_output_and_cap_bytes": grown as i64 - output as i64 - mem as i64,
                "beyond_output_and_held_bytes": grown as i64 - output as i64 - held as i64,
            });
        }
        assert_eq!(loaded.len() as u64, args.frames);
        drop(loaded);
        // Raw frames are written behind the load: let them land before the next run.
        assert!(fc.flush_raw_writes(Duration::from_secs(120)));
        if run + 1 < args.runs {
            // Raw frames take 24x the JPEGs' space: keep only the last cold run's.
            let _ = std::fs::remove_dir_all(scratch.path().join(format!("c{run}")));
        }
    }

    // Warm: new handles (empty memory) on the last cold run's disk cache; hot: one handle.
    let warm_dir = scratch.path().join(format!("c{}", args.runs - 1));
    let mut warm_runs = Vec::new();
    let mut warm_jpeg_runs = Vec::new();
    let mut warm_b64_runs = Vec::new();
    for _ in 0..args.runs {
        let fc = FrameCache::new(&config(&backend, &warm_dir, mem)).unwrap();
        let start = Instant::now();
        rt.block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
            .unwrap();
        warm_runs.push(start.elapsed());
        let stats = fc.stats();
        assert_eq!((stats.decoded_disk.hits, stats.decodes), (args.frames, 0));
        let fc = FrameCache::new(&jpeg_only(config(&backend, &warm_dir, mem))).unwrap();
        let start = Instant::now();
        rt.block_on(fc.load_frames(&timeline, Seqs::All, LoadOptions::default()))
            .unwrap();
        warm_jpeg_runs.push(start.elapsed());
        assert_eq!(fc.stats().disk.hits, args.frames);
        let fc = FrameCache::new(&config(&backend, &warm_dir, mem)).unwrap();
        let start = Instant::now();
        rt.block_on(fc.load_frames_b64(&timeline)).unwrap();
        warm_b64_runs.push(start.elapsed());
    }
    let hot = FrameCache::new(&config(&backend, &warm_dir, mem.max(1 << 30))).unwrap();
    rt.block_on(hot.load_frames(&timeline, Seqs::All, LoadOptions::default()))
        .unwrap();
    let mut hot_runs = Vec::new();
    let mut hot_read_only_runs = Vec::new();
    let read_only = framecache::LoadOptions {
        access: framecache::Access::ReadOnly,
        ..Default::default()
    };
    for _ in 0..args.runs {
        let start = Instant::now();
        let frames = rt
            .block_on(hot.load_frames(&timeline, Seqs::All, LoadOptions::default()))
            .unwrap();
        hot_runs.push(start.elapsed());
        drop(frames);
        let start = Instant::now();
        rt.block_on(hot.load_frames(&timeline, Seqs::All, read_only))
            .unwrap();
        hot_read_only_runs.push(start.elapsed());
    }
    assert_eq!(
        hot.stats().decoded_memory.hits,
        2 * args.runs as u64 * args.frames
    );

    // The same JPEGs decoded from memory on every core: what a cold load is held to.
    let jpegs: Vec<bytes::Bytes> = rt
        .block_on(async {
            let (_, stream) = hot.stream_jpegs(&timeline, Seqs::All).await?;
            futures::TryStreamExt::try_collect::<Vec<_>>(stream).await
        })
        .unwrap()
        .into_iter()
        .map(|f| f.jpeg)
        .collect();
    drop(hot);
    let decode_runs: Vec<Duration> = (0..args.runs).map(|_| decode_all_cores(&jpegs)).collect();

    // Four processes load the timeline at once on an empty machine.
    let shared_dir = scratch.path().join("four");
    let origin_root = match &backend {
        Backend::Fs { root } => Some(root.display().to_string()),
        _ => None,
    };
    let start = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.arg("--child-load").arg(&timeline).arg(&shared_dir);
            if let Some(root) = &origin_root {
                cmd.arg(root);
            }
            cmd.stdout(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let four: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let four_wall = start.elapsed().as_secs_f64();
    let four_decodes: u64 = four.iter().map(|r| r["decodes"].as_u64().unwrap()).sum();
    let _ = std::fs::remove_dir_all(&shared_dir);

    // Scaling: per-frame cost of a long timeline against a short one, small frames, cold.
    let scaling = (args.long > 0).then(|| {
        let per_frame = |n: u64, name: &str| {
            let small: Vec<Frame> = (0..n).map(|s| synthetic_frame(s, 160, 90)).collect();
            let tl = format!("{tag}-{name}");
            let writer = FrameCache::new(&config(
                &backend,
                &scratch.path().join(format!("sw-{name}")),
                0,
            ))
            .unwrap();
            rt.block_on(writer.cache_frames(&tl, &small, WriteOptions::default()))
                .unwrap();
            let reader = FrameCache::new(&config(
                &backend,
                &scratch.path().join(format!("sr-{name}")),
                0,
            ))
            .unwrap();
            let start = Instant::now();
            let count = rt
                .block_on(
                    reader
                        .stream_frames(&tl, Seqs::All, LoadOptions::default())
                        .try_fold(0u64, |n, _| async move { Ok(n + 1) }),
                )
                .unwrap();
            let took = start.elapsed().as_secs_f64();
            assert_eq!(count, n);
            rt.block_on(writer.clear(&tl, ClearScope::All)).unwrap();
            took / n as f64
        };
        let short = per_frame(args.frames, "short");
        let long = per_frame(args.long, "long");
        json!({"frames_short": args.frames, "frames_long": args.long, "width": 160, "height": 90,
            "per_frame_short_s": short, "per_frame_long_s": long, "ratio": long / short})
    });

    rt.block_on(
        FrameCache::new(&config(&backend, &scratch.path().join("cleanup"), 0))
            .unwrap()
            .clear(&timeline, ClearScope::All),
    )
    .unwrap();
    let origin = match &backend {
        Backend::S3(s3) => format!("s3 {}", s3.endpoint.as_deref().unwrap_or("aws")),
        _ => "fs".to_owned(),
    };
    println!(
        "{}",
        json!({
            "tool": "framecache",
            "origin": origin,
            "encoder": framecache::codec::encoder_name(),
            "frames": args.frames, "width": args.width, "height": args.height,
            "jpeg_bytes": jpeg_bytes, "runs": args.runs,
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "cache_frames_s": median(cache_runs),
            "load_cold_s": median(cold_runs),
            "load_warm_s": median(warm_runs),
            "load_warm_jpeg_only_s": median(warm_jpeg_runs),
            "load_hot_s": median(hot_runs),
            "load_hot_read_only_s": median(hot_read_only_runs),
            "decode_all_cores_s": median(decode_runs),
            "decoder": codec::decoder_name(),
            "four_processes": {"wall_s": four_wall, "decodes_total": four_decodes,
                               "per_process": four},
            "load_b64_warm_s": median(warm_b64_runs),
            "cold_rss": rss_report,
            "scaling": scaling,
        })
    );
}
