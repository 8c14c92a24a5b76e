//! Raw frames written behind loads: the entry holds the very pixels the caller got, a
//! process waiting on the frame's decode lock maps it, a full queue makes the loader write
//! (nothing is dropped), so after a cold load new processes decode nothing and wait for
//! nobody (on the filesystem backend and on Garage), a crash before the write leaves no
//! entry, and a fork with writes pending leaves both processes working. No test depends on
//! timing: the writer is stopped at a gate (`framecache::flock::gate`, kind `RawWrite`)
//! where a test needs it still, and the queue's byte bound is lowered to a few frames.

mod common;

use common::Env;
use common::child::{CHILD_ENV, exit_forked, result_of, spawn_child, var, wait_forked};
use framecache::decoded::set_raw_write_queue_bytes;
use framecache::flock::{LockKind, gate};
use framecache::{
    Backend, Backing, CacheConfig, DecodedConfig, DiskConfig, Frame, FrameCache, synthetic_frame,
};
use framecache::{LoadOptions, Seqs, WriteOptions};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Bound of every wait here: generous, and only reached when something is broken.
const BOUND: Duration = Duration::from_secs(60);

const W: u32 = 64;
const H: u32 = 48;

/// The gate and the writer are process-wide: the tests of this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn frames(n: u64, salt: u64) -> Vec<Frame> {
    (0..n)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq + salt, W, H)
        })
        .collect()
}

/// Decoded frames on disk only (no decoded memory tier), so a second load reads the disk.
fn config(origin: &Path, cache: &Path) -> CacheConfig {
    CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Fs {
                root: origin.to_path_buf(),
            },
            ..Default::default()
        },
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: Some(DiskConfig {
            dir: cache.to_path_buf(),
            capacity: 1 << 30,
            ..Default::default()
        }),
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 1 << 30,
            ..Default::default()
        },
        lock_wait: BOUND,
        ..CacheConfig::default()
    }
}

fn seed(origin: &Path, timeline: &str, n: u64, salt: u64) {
    let config = CacheConfig {
        disk: None,
        ..config(origin, Path::new("/nonexistent"))
    };
    runtime().block_on(async {
        FrameCache::new(&config)
            .unwrap()
            .cache_frames(timeline, &frames(n, salt), WriteOptions::default())
            .await
            .unwrap();
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Raw entry files and other (temp) files under a cache directory's decoded tier.
fn raw_files(cache: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut entries, mut others) = (Vec::new(), Vec::new());
    let Ok(shards) = fs::read_dir(cache.join("decoded/v1")) else {
        return (entries, others);
    };
    for shard in shards.flatten() {
        if shard.file_type().unwrap().is_dir() {
            for file in fs::read_dir(shard.path()).unwrap().flatten() {
                let name = file.file_name();
                let hex = name.len() == 64
                    && name
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit());
                if hex {
                    entries.push(file.path());
                } else {
                    others.push(file.path());
                }
            }
        }
    }
    (entries, others)
}

fn load(fc: &FrameCache, rt: &tokio::runtime::Runtime, timeline: &str) -> Vec<Frame> {
    rt.block_on(fc.load_frames(timeline, Seqs::All, LoadOptions::default()))
        .unwrap()
}

/// Lets the writer go even when an assertion fails first, so no test leaves it stopped.
struct Release;

/// The queue behind loads bounded to `frames` frames of `W`x`H` until dropped.
struct QueueBound(usize);

impl QueueBound {
    fn frames(frames: usize) -> QueueBound {
        QueueBound(set_raw_write_queue_bytes(frames * (W * H * 3) as usize))
    }
}

impl Drop for QueueBound {
    fn drop(&mut self) {
        set_raw_write_queue_bytes(self.0);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        gate::release();
    }
}

#[test]
fn the_entry_holds_the_pixels_the_caller_got() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    seed(&origin, "same", 6, 0);
    let rt = runtime();
    let fc = FrameCache::new(&config(&origin, &cache)).unwrap();
    let cold = load(&fc, &rt, "same");
    assert!(fc.flush_raw_writes(BOUND));
    assert_eq!(fc.stats().decoded_disk.writes, 6);
    // Each entry's pixels are one of the cold load's frames, byte for byte.
    let mut want: Vec<&[u8]> = cold.iter().map(|f| f.image.as_raw()).collect();
    let (entries, others) = raw_files(&cache);
    assert!(others.is_empty(), "{others:?}");
    let mut got: Vec<Vec<u8>> = entries
        .iter()
        .map(|p| fs::read(p).unwrap()[framecache::decoded::RAW_HEADER_LEN..].to_vec())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // And a new handle maps them: no decode, the same frames.
    let warm = FrameCache::new(&config(&origin, &cache)).unwrap();
    let again = load(&warm, &rt, "same");
    let stats = warm.stats();
    assert_eq!(
        (stats.decodes, stats.decoded_disk.hits),
        (0, 6),
        "{stats:?}"
    );
    assert!(again.iter().all(|f| f.image.backing() == Backing::Private));
    assert_eq!(
        again.iter().map(|f| &f.image).collect::<Vec<_>>(),
        cold.iter().map(|f| &f.image).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_queue_makes_the_loader_write() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    let (room, n) = (4, 11);
    let _bound = QueueBound::frames(room);
    seed(&origin, "first", 1, 0);
    seed(&origin, "many", n, 1000);
    let rt = runtime();
    let fc = FrameCache::new(&config(&origin, &cache)).unwrap();
    // The writer takes the first frame's write and stops before it: that frame holds one
    // frame's room of the queue.
    gate::arm(LockKind::RawWrite);
    let _release = Release;
    load(&fc, &rt, "first");
    assert!(gate::wait_held(BOUND), "the writer never took the write");
    // The queue takes what fits in its bytes; the loader writes the rest itself, at once.
    assert_eq!(load(&fc, &rt, "many").len() as u64, n);
    let queued = room as u64 - 1;
    let stats = fc.stats();
    assert_eq!(stats.raw_writes_dropped, 0, "{stats:?}");
    assert_eq!(stats.raw_writes_pending, 1 + queued, "{stats:?}");
    assert_eq!(stats.decoded_disk.writes, n - queued, "{stats:?}");
    gate::release();
    assert!(fc.flush_raw_writes(BOUND));
    let stats = fc.stats();
    assert_eq!(stats.decoded_disk.writes, 1 + n);
    assert_eq!(stats.raw_writes_pending, 0);
    assert_eq!(raw_files(&cache).0.len() as u64, 1 + n);
    // Every frame is mapped on its next miss, none decoded again.
    let before = fc.stats().decodes;
    load(&fc, &rt, "many");
    assert_eq!(fc.stats().decodes - before, 0);
}

/// A write that fails (the decoded tier's capacity is smaller than one frame) is skipped and
/// counted, and the frame is decoded again on its next miss.
#[test]
fn a_failed_write_is_counted_and_decoded_again() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    seed(&origin, "tiny", 2, 0);
    let mut config = config(&origin, &cache);
    config.decoded.disk_capacity = 1024;
    let rt = runtime();
    let fc = FrameCache::new(&config).unwrap();
    load(&fc, &rt, "tiny");
    assert!(fc.flush_raw_writes(BOUND));
    let stats = fc.stats();
    assert_eq!(
        (stats.raw_writes_dropped, stats.decoded_disk.writes),
        (2, 0),
        "{stats:?}"
    );
    load(&fc, &rt, "tiny");
    assert_eq!(fc.stats().decodes, 4);
}

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    let rt = runtime();
    // The backend is the filesystem's unless a role says otherwise (`Env::in_child`).
    let root = std::env::var("FC_ROOT").unwrap_or_default();
    let config = config(Path::new(&root), Path::new(&var("FC_CACHE")));
    match var(CHILD_ENV).as_str() {
        "load" => {
            let fc = FrameCache::new(&config).unwrap();
            println!("READY");
            let frames = load(&fc, &rt, &var("FC_TIMELINE"));
            assert!(fc.flush_raw_writes(BOUND));
            let stats = fc.stats();
            let pixels: Vec<String> = frames
                .iter()
                .map(|f| blake3::hash(f.image.as_raw()).to_hex().to_string())
                .collect();
            println!(
                "RESULT {}",
                json!({"decodes": stats.decodes, "waits": stats.decode_waits,
                       "disk_hits": stats.decoded_disk.hits, "pixels": pixels})
            );
        }
        "load-new" => {
            // A new process on the cache a cold load left: no decode, no wait, every frame
            // mapped from the decoded disk tier.
            let env = Env::in_child();
            let config = CacheConfig {
                origin: framecache::OriginConfig {
                    backend: env.backend.clone(),
                    ..Default::default()
                },
                ..config
            };
            let fc = FrameCache::new(&config).unwrap();
            let frames = load(&fc, &rt, &var("FC_TIMELINE"));
            let stats = fc.stats();
            let mut digest = blake3::Hasher::new();
            for f in &frames {
                digest.update(f.image.as_raw());
            }
            println!(
                "RESULT {}",
                json!({"frames": frames.len(), "decodes": stats.decodes,
                       "waits": stats.decode_waits, "disk_hits": stats.decoded_disk.hits,
                       "pixels": digest.finalize().to_hex().to_string()})
            );
        }
        "crash" => {
            let fc = FrameCache::new(&config).unwrap();
            gate::arm(LockKind::RawWrite);
            load(&fc, &rt, &var("FC_TIMELINE"));
            assert!(gate::wait_held(BOUND));
            // Dies with the write queued and its stripe lock held.
            // SAFETY: ends the process at once, as a crash would.
            unsafe { libc::_exit(3) }
        }
        role => panic!("unknown role {role}"),
    }
}

#[test]
fn a_process_waiting_on_the_decode_lock_maps_the_entry() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    seed(&origin, "one", 1, 0);
    let rt = runtime();
    let fc = FrameCache::new(&config(&origin, &cache)).unwrap();
    gate::arm(LockKind::RawWrite);
    let release = Release;
    let mine = load(&fc, &rt, "one");
    assert!(gate::wait_held(BOUND));
    // Decoded, handed back, not yet written: the frame's decode lock is still held here.
    assert!(raw_files(&cache).0.is_empty());
    let mut child = spawn_child(
        "load",
        &[
            ("FC_ROOT", origin.display().to_string()),
            ("FC_CACHE", cache.display().to_string()),
            ("FC_TIMELINE", "one".to_owned()),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Let go once the other process is about to load (most likely it then waits on the
    // lock). Whenever it gets to the lock, this one holds it until the entry is in place:
    // it maps the entry, never decodes.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
    }
    drop(release);
    assert!(fc.flush_raw_writes(BOUND));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = result_of(&rest);
    assert_eq!(result["decodes"], 0, "{result}");
    assert_eq!(
        result["pixels"][0],
        blake3::hash(mine[0].image.as_raw()).to_hex().to_string()
    );
}

#[test]
fn a_crash_before_the_write_leaves_no_entry() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    seed(&origin, "crash", 1, 0);
    let out = spawn_child(
        "crash",
        &[
            ("FC_ROOT", origin.display().to_string()),
            ("FC_CACHE", cache.display().to_string()),
            ("FC_TIMELINE", "crash".to_owned()),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (entries, others) = raw_files(&cache);
    assert!(
        entries.is_empty() && others.is_empty(),
        "{entries:?} {others:?}"
    );
    // Its decode lock died with it: this process decodes at once, without a timeout.
    let rt = runtime();
    let fc = FrameCache::new(&config(&origin, &cache)).unwrap();
    load(&fc, &rt, "crash");
    assert!(fc.flush_raw_writes(BOUND));
    let stats = fc.stats();
    assert_eq!(
        (stats.decodes, stats.decode_lock_timeouts),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(raw_files(&cache).0.len(), 1);
}

#[test]
fn a_fork_with_writes_pending_leaves_both_processes_working() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (origin, cache) = (tmp.path().join("origin"), tmp.path().join("cache"));
    seed(&origin, "parent", 4, 0);
    seed(&origin, "child", 4, 500);
    let rt = runtime();
    let fc = FrameCache::new(&config(&origin, &cache)).unwrap();
    gate::arm(LockKind::RawWrite);
    let release = Release;
    load(&fc, &rt, "parent");
    assert!(gate::wait_held(BOUND));
    assert_eq!(fc.stats().raw_writes_pending, 4);
    let child_config = config(&origin, &cache);
    // SAFETY: the child runs its own runtime and cache and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        exit_forked(|| {
            // Nothing of the parent's is pending here: its writer thread is not in this
            // process, and this one starts its own.
            let inherited = framecache::flush_raw_writes(Duration::ZERO);
            let rt = runtime();
            let fc = FrameCache::new(&child_config).unwrap();
            let n = rt
                .block_on(fc.load_frames("child", Seqs::All, LoadOptions::default()))
                .unwrap()
                .len();
            let flushed = fc.flush_raw_writes(BOUND);
            inherited && n == 4 && flushed && fc.stats().decoded_disk.writes == 4
        });
    }
    // The parent's writer goes on; a frame of the child's sharing a stripe with one of
    // these waits for it, then decodes.
    drop(release);
    assert!(fc.flush_raw_writes(BOUND));
    assert_eq!(
        wait_forked(pid, BOUND * 2),
        Some(0),
        "the child failed or hung"
    );
    assert_eq!(fc.stats().decoded_disk.writes, 4);
    assert_eq!(raw_files(&cache).0.len(), 8);
}

/// Frames of the cold loads below: more than the writer behind loads could ever hold queued
/// while it is stopped, so a queue that drops when full loses some of them.
const COLD_FRAMES: u64 = 300;

/// A cold load with the writer behind it stopped at its first write and the queue bounded
/// to a few frames' bytes: every write is queued or done by the loader itself, none is
/// dropped. Returns the cold load's pixels (digest) and the cache directory it filled.
fn cold_load_with_the_writer_stopped(env: &Env, timeline: &str) -> (String, PathBuf) {
    let _bound = QueueBound::frames(8);
    let cache = env.disk_dir(timeline);
    let config = CacheConfig {
        origin: framecache::OriginConfig {
            backend: env.backend.clone(),
            ..Default::default()
        },
        ..config(Path::new("/unused"), &cache)
    };
    let rt = runtime();
    rt.block_on(async {
        let writer = CacheConfig {
            disk: None,
            ..config.clone()
        };
        FrameCache::new(&writer)
            .unwrap()
            .cache_frames(timeline, &frames(COLD_FRAMES, 7), WriteOptions::default())
            .await
            .unwrap();
    });
    let fc = FrameCache::new(&config).unwrap();
    gate::arm(LockKind::RawWrite);
    let release = Release;
    let cold = load(&fc, &rt, timeline);
    assert!(gate::wait_held(BOUND), "the writer never took a write");
    let stats = fc.stats();
    assert_eq!(stats.decodes, COLD_FRAMES, "{stats:?}");
    assert_eq!(stats.raw_writes_dropped, 0, "{stats:?}");
    drop(release);
    assert!(fc.flush_raw_writes(BOUND));
    let stats = fc.stats();
    assert_eq!(stats.decoded_disk.writes, COLD_FRAMES, "{stats:?}");
    assert_eq!(raw_files(&cache).0.len() as u64, COLD_FRAMES);
    let mut digest = blake3::Hasher::new();
    for f in &cold {
        digest.update(f.image.as_raw());
    }
    (digest.finalize().to_hex().to_string(), cache)
}

/// Starts `n` new processes at once, each loading `timeline` from `cache`; their results.
fn new_processes(env: &Env, cache: &Path, timeline: &str, n: usize) -> Vec<serde_json::Value> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            let mut vars = env.child_vars();
            vars.extend([
                ("FC_CACHE", cache.display().to_string()),
                ("FC_TIMELINE", timeline.to_owned()),
            ]);
            spawn_child("load-new", &vars)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            result_of(&String::from_utf8_lossy(&out.stdout))
        })
        .collect()
}

/// After a cold load, a new process decodes nothing and waits for nobody: every frame is a
/// plain hit on the decoded disk tier.
fn after_a_cold_load_a_new_process_decodes_nothing(env: &Env) {
    let _serial = serial();
    let timeline = common::unique("cold-then-new");
    let (pixels, cache) = cold_load_with_the_writer_stopped(env, &timeline);
    let results = new_processes(env, &cache, &timeline, 1);
    let r = &results[0];
    assert_eq!(r["frames"], COLD_FRAMES, "{r}");
    assert_eq!(r["decodes"], 0, "{r}");
    assert_eq!(r["waits"], 0, "{r}");
    assert_eq!(r["disk_hits"], COLD_FRAMES, "{r}");
    assert_eq!(r["pixels"], pixels, "{r}");
}

/// After a cold load, four processes started at once decode nothing either.
fn after_a_cold_load_four_processes_at_once_decode_nothing(env: &Env) {
    let _serial = serial();
    let timeline = common::unique("cold-then-four");
    let (pixels, cache) = cold_load_with_the_writer_stopped(env, &timeline);
    for r in new_processes(env, &cache, &timeline, 4) {
        assert_eq!(r["frames"], COLD_FRAMES, "{r}");
        assert_eq!((&r["decodes"], &r["waits"]), (&json!(0), &json!(0)), "{r}");
        assert_eq!(r["pixels"], pixels, "{r}");
    }
}

mod on_fs {
    #[test]
    fn after_a_cold_load_a_new_process_decodes_nothing() {
        super::after_a_cold_load_a_new_process_decodes_nothing(&super::Env::fs());
    }

    #[test]
    fn after_a_cold_load_four_processes_at_once_decode_nothing() {
        super::after_a_cold_load_four_processes_at_once_decode_nothing(&super::Env::fs());
    }
}

mod on_s3 {
    #[test]
    #[cfg_attr(
        not(framecache_test_s3),
        ignore = "needs the Garage server: run scripts/test.sh"
    )]
    fn after_a_cold_load_a_new_process_decodes_nothing() {
        super::after_a_cold_load_a_new_process_decodes_nothing(&super::Env::s3());
    }

    #[test]
    #[cfg_attr(
        not(framecache_test_s3),
        ignore = "needs the Garage server: run scripts/test.sh"
    )]
    fn after_a_cold_load_four_processes_at_once_decode_nothing() {
        super::after_a_cold_load_four_processes_at_once_decode_nothing(&super::Env::s3());
    }
}
