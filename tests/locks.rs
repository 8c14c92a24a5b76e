//! The disk cache's locks under fork and past their bounds.
//!
//! Forking while another thread holds a lock: the child (a `libc::fork`, as a Python
//! DataLoader or gunicorn worker is made) loads the whole timeline on the same disk cache
//! and exits, and the parent's load completes. A test gate stops the parent's loading
//! thread while it holds the lock, so the fork lands exactly there; a hang fails the test
//! within a bound (the child is killed), it never hangs the suite.
//!
//! A lock held past `lock_wait`: the waiter goes on alone, gets the right bytes, and
//! counts it.
#![cfg(unix)]

mod common;

use common::Env;
use common::child::{exit_forked, wait_forked};
use framecache::flock::{LockKind, gate};
use framecache::{CacheConfig, Frame, FrameCache, Pixels, Scale, codec, synthetic_frame};
use framecache::{LoadOptions, Seqs, WriteOptions};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const W: u32 = 160;
const H: u32 = 96;
const FRAMES: u64 = 24;

/// How long a child or the parent's load may take before the test calls it a hang. A
/// child that waited out a lock bound (never reached here: the bound is set far above)
/// or an inherited lock would be killed at this point.
const HANG: Duration = Duration::from_secs(45);

/// The gate is process-wide and a fork copies every thread's state: one scenario at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Far above [`HANG`]: a fork test passes only if no process waited for a lock the
/// child inherited, never because a wait gave up.
const LOCK_WAIT: Duration = Duration::from_secs(600);

fn config(env: &Env, dir: &Path) -> CacheConfig {
    CacheConfig {
        lock_wait: LOCK_WAIT,
        ..env.config(dir)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes a timeline and returns the pixels a fresh decode of each stored JPEG gives.
fn timeline(env: &Env, rt: &tokio::runtime::Runtime) -> (String, Vec<Pixels>) {
    let name = common::unique("fork");
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq * 7 + 3, W, H)
        })
        .collect();
    let writer = FrameCache::new(&config(env, &env.disk_dir("writer"))).unwrap();
    rt.block_on(async {
        writer
            .cache_frames(&name, &frames, WriteOptions::default())
            .await
            .unwrap();
        let mut want = Vec::new();
        for seq in 0..FRAMES {
            let (jpeg, _) = writer.frame_jpeg(&name, seq).await.unwrap().unwrap();
            want.push(codec::decode_jpeg_scaled(&jpeg, Scale::Full).unwrap());
        }
        (name, want)
    })
}

fn same(frames: &[Frame], want: &[Pixels]) -> bool {
    frames.len() == want.len() && frames.iter().zip(want).all(|(f, w)| &f.image == w)
}

/// Takes (then releases) an exclusive lock on `path` from a descriptor of our own, trying
/// until `bound`: the lock a parent's thread held at the fork must come free once the
/// parent lets go, whatever this process inherited.
fn lock_comes_free(path: &Path, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let file = std::fs::File::open(path).unwrap();
    loop {
        match file.try_lock() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
}

/// One round: a parent thread starts a cold load and stops holding a lock of `kind`; the
/// process forks; the parent lets its thread go on. The child takes that very lock (the
/// parent's thread released it), then loads the whole timeline with a cache of its own on
/// the same disk cache directory (and, for the directory lock, recounts it, which takes the
/// lock exclusively). Both must finish.
fn fork_while_held(kind: LockKind, rounds: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for round in 0..rounds {
        let env = Env::fs();
        let rt = runtime();
        let (name, want) = timeline(&env, &rt);
        let box_dir = env.disk_dir("box");
        let parent = FrameCache::new(&config(&env, &box_dir)).unwrap();
        // Only this load's directory: other threads of this process (tests beside this one,
        // evictors of caches dropped a moment ago) take locks of the same kinds.
        gate::arm_under(kind, &box_dir);
        let (tx, rx) = mpsc::channel();
        let loader = {
            let name = name.clone();
            std::thread::spawn(move || {
                let frames =
                    rt.block_on(parent.load_frames(&name, Seqs::All, LoadOptions::default()));
                let _ = tx.send(
                    frames
                        .map_err(|e| e.to_string())
                        .map(|f| (f, parent.stats())),
                );
            })
        };
        assert!(
            gate::wait_held(Duration::from_secs(30)),
            "round {round}: no {kind:?} lock was taken by the cold load"
        );
        let held = gate::held_path().expect("the lock file's path");
        // SAFETY: the child only runs `child`, which ends it with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            exit_forked(|| {
                if !lock_comes_free(&held, HANG) {
                    eprintln!("child: {} stayed locked", held.display());
                    return false;
                }
                let rt = runtime();
                let fc = FrameCache::new(&config(&env, &box_dir)).unwrap();
                let frames = rt
                    .block_on(fc.load_frames(&name, Seqs::All, LoadOptions::default()))
                    .unwrap();
                if kind == LockKind::Directory {
                    fc.chain().disk().unwrap().recount();
                }
                let stats = fc.stats();
                same(&frames, &want) && no_timeouts(&stats) && stats.inherited_locks_closed >= 1
            });
        }
        gate::release();
        let parent_frames = rx.recv_timeout(HANG);
        match wait_forked(pid, HANG) {
            Some(0) => {}
            None => panic!(
                "round {round}: the child forked while a {kind:?} lock was held did not finish \
                 within {HANG:?} (killed; its stacks are printed above)"
            ),
            Some(code) => panic!(
                "round {round}: the child forked while a {kind:?} lock was held failed (exit \
                 {code}; its output is above)"
            ),
        }
        let (frames, stats) = parent_frames
            .unwrap_or_else(|_| panic!("round {round}: the parent's load hung"))
            .unwrap();
        assert!(same(&frames, &want), "round {round}: parent's frames");
        assert!(no_timeouts(&stats), "round {round}: {stats:?}");
        loader.join().unwrap();
    }
}

#[test]
fn fork_while_a_decode_lock_is_held() {
    fork_while_held(LockKind::Decode, 3);
}

#[test]
fn fork_while_a_fetch_lock_is_held() {
    fork_while_held(LockKind::Fetch, 3);
}

#[test]
fn fork_while_the_directory_lock_is_held() {
    fork_while_held(LockKind::Directory, 3);
}

/// Stats of a fork test's process must show no lock wait given up.
fn no_timeouts(stats: &framecache::Stats) -> bool {
    stats.decode_lock_timeouts == 0
        && stats.fetch_lock_timeouts == 0
        && stats.dir_lock_timeouts == 0
}

#[test]
fn a_decode_lock_held_past_the_bound_is_decoded_around() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let env = Env::fs();
    let rt = runtime();
    let (name, want) = timeline(&env, &rt);
    let dir = env.disk_dir("box");
    // The first handle's load stops while it holds a decode lock, and stays stopped.
    let holder = FrameCache::new(&config(&env, &dir)).unwrap();
    gate::arm(LockKind::Decode);
    let stopped = {
        let name = name.clone();
        let rt = runtime();
        std::thread::spawn(move || {
            rt.block_on(holder.load_frames(&name, Seqs::All, LoadOptions::default()))
                .map(|f| f.len())
        })
    };
    assert!(gate::wait_held(Duration::from_secs(30)));
    // A second handle (another process, as far as flock knows) waits 50 ms for it, then
    // decodes that frame itself.
    let waiter = FrameCache::new(&CacheConfig {
        lock_wait: Duration::from_millis(50),
        ..env.config(&dir)
    })
    .unwrap();
    let frames = rt
        .block_on(waiter.load_frames(&name, Seqs::All, LoadOptions::default()))
        .unwrap();
    gate::release();
    assert!(same(&frames, &want));
    // At least the stuck frame was decoded around; a slow machine may also outwait the
    // holder's other decodes in flight (each held for a decode's length), never fewer.
    let stats = waiter.stats();
    assert!(stats.decode_lock_timeouts >= 1, "{stats:?}");
    assert_eq!(stopped.join().unwrap().unwrap(), FRAMES as usize);
}

#[test]
fn a_fetch_lock_held_past_the_bound_is_fetched_around() {
    let env = Env::fs();
    let rt = runtime();
    let (name, _) = timeline(&env, &rt);
    let key = framecache::layout::frame_key(&name, 3).unwrap();
    let metrics = std::sync::Arc::new(framecache::Metrics::default());
    let chain = CacheConfig {
        lock_wait: Duration::from_millis(50),
        ..env.config(&env.disk_dir("box"))
    }
    .build_with_origin(env.origin(&metrics), metrics);
    let disk = chain.disk().unwrap();
    let framecache::tier::FetchLock::Held(held) = disk.try_fetch_lock(&key) else {
        panic!("the fetch lock of a fresh directory is free");
    };
    let hit = rt.block_on(chain.get_hit(&key)).unwrap().unwrap();
    assert_eq!(hit.source, framecache::Source::Origin);
    assert_eq!(chain.metrics().snapshot().fetch_lock_timeouts, 1);
    // The entry is stored all the same, and the lock is still the holder's.
    assert!(disk.path_of(&key).is_file());
    assert!(matches!(
        disk.try_fetch_lock(&key),
        framecache::tier::FetchLock::Busy
    ));
    drop(held);
}

#[test]
fn the_directory_lock_held_past_the_bound_is_written_around() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::sync::Arc::new(framecache::Metrics::default());
    let disk = framecache::tier::DiskTier::open(dir.path(), 1 << 20, metrics.clone())
        .with_lock_wait(Duration::from_millis(30));
    // Another process holds the directory exclusively (as a recount does) and is stuck.
    let lock_path = disk.dir().join(".lock");
    std::fs::create_dir_all(disk.dir()).unwrap();
    let stuck = std::fs::File::create(&lock_path).unwrap();
    stuck.lock().unwrap();
    disk.write_blocking("k", b"payload").unwrap();
    assert_eq!(
        disk.read_blocking("k").unwrap().unwrap().as_ref(),
        b"payload"
    );
    // Reserving and linking each gave up on the lock (the background evictor's rounds on
    // this directory may have given up too, so more is fine, fewer is not).
    let timeouts = metrics.snapshot().dir_lock_timeouts;
    assert!(timeouts >= 2, "{timeouts}");
    drop(stuck);
}
