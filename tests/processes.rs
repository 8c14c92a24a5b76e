//! Real processes on one cache directory: a shared capacity, SIGKILLed writers, a frame
//! fetched by one process served from disk to the next, and a directory that is read-only
//! or full. Each child is this test binary run again with `FRAMECACHE_CHILD` naming its
//! role; it prints one `RESULT {json}` line.

mod common;

use common::child::{CHILD_ENV, result_of, run_child, spawn_child, var};
use framecache::tier::DiskTier;
use framecache::{
    Backend, CacheConfig, DecodedConfig, DiskConfig, FrameCache, Metrics, synthetic_frame,
};
use framecache::{LoadOptions, Seqs, WriteOptions};
use futures::StreamExt;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Shared helpers

/// A small xorshift generator: the tests need varied, not secure, numbers.
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The bytes every process stores under `key`: derived from the key alone, so any reader
/// can tell a right entry from a wrong, torn or mixed one.
fn payload(key: &str, min: usize, spread: usize) -> Vec<u8> {
    let seed = blake3::hash(key.as_bytes());
    let pick = u64::from_le_bytes(seed.as_bytes()[..8].try_into().unwrap());
    let mut out = vec![0u8; min + (pick % spread as u64) as usize];
    blake3::Hasher::new()
        .update(key.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Bytes of the entry files, counted while holding the directory's exclusive lock, so no
/// entry is committed, evicted or removed during the count.
fn entry_bytes_locked(dir: &Path) -> u64 {
    entry_bytes_locked_with(dir, || ()).1
}

/// [`entry_bytes_locked`], with what `also` reads under the same lock.
fn entry_bytes_locked_with<T>(dir: &Path, also: impl FnOnce() -> T) -> (T, u64) {
    let v1 = dir.join("v1");
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(v1.join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    let mut total = 0;
    for shard in fs::read_dir(&v1).unwrap().flatten() {
        if !shard.file_type().unwrap().is_dir() {
            continue;
        }
        for file in fs::read_dir(shard.path()).unwrap().flatten() {
            let name = file.file_name();
            if name.len() == 64
                && let Ok(meta) = file.metadata()
            {
                total += meta.len();
            }
        }
    }
    let also = also();
    drop(lock);
    (also, total)
}

/// Gives `path` and everything under it to `uid` (its group too), not following links.
fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for child in fs::read_dir(path).unwrap().flatten() {
            chown_tree(&child.path(), uid);
        }
    }
}

fn set_tree_mode(path: &Path, dir_mode: u32, file_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(dir_mode)).unwrap();
        for child in fs::read_dir(path).unwrap().flatten() {
            set_tree_mode(&child.path(), dir_mode, file_mode);
        }
    } else if meta.is_file() {
        fs::set_permissions(path, fs::Permissions::from_mode(file_mode)).unwrap();
    }
}

fn config(origin_root: &Path, cache_dir: &Path) -> CacheConfig {
    CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Fs {
                root: origin_root.to_path_buf(),
            },
            ..Default::default()
        },
        // No memory tier: every read shows what the disk tier did.
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: Some(DiskConfig {
            dir: cache_dir.to_path_buf(),
            capacity: 1 << 30,
            ..Default::default()
        }),
        // Nor decoded tiers: these cases are about the JPEG tiers (tests/decoded.rs covers
        // the decoded ones across processes).
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 0,
            ..Default::default()
        },
        ..CacheConfig::default()
    }
}

/// Writes a small timeline to an fs origin, leaving no disk cache behind.
fn seed_timeline(origin_root: &Path, timeline: &str, frames: u64) {
    let config = CacheConfig {
        disk: None,
        ..config(origin_root, Path::new("/nonexistent"))
    };
    let frames: Vec<_> = (0..frames).map(|s| synthetic_frame(s, 320, 240)).collect();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        FrameCache::new(&config)
            .unwrap()
            .cache_frames(timeline, &frames, WriteOptions::default())
            .await
            .unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Child roles

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    match var(CHILD_ENV).as_str() {
        "share" => child_share(),
        "write-forever" => child_write_forever(),
        "load" => child_load(),
        "replace" => child_replace(),
        "evict" => child_evict(),
        other => panic!("unknown child role {other}"),
    }
}

const SHARE_KEYS: u64 = 96;
const SHARE_MIN: usize = 16 << 10;
const SHARE_SPREAD: usize = 32 << 10;

/// Reads random keys and writes the missing ones, checking every byte it gets, and keeps
/// the last few mapped entries alive to re-check them after other processes evicted them.
fn child_share() {
    let metrics = Arc::new(Metrics::default());
    let disk = DiskTier::open(
        var("FC_DIR"),
        var("FC_CAP").parse().unwrap(),
        metrics.clone(),
    );
    let iterations: u64 = var("FC_ITER").parse().unwrap();
    let expected: HashMap<String, blake3::Hash> = (0..SHARE_KEYS)
        .map(|i| {
            let key = format!("k{i}");
            let hash = blake3::hash(&payload(&key, SHARE_MIN, SHARE_SPREAD));
            (key, hash)
        })
        .collect();
    let mut rng = Rng::seeded(u64::from(std::process::id()));
    let mut held = VecDeque::new();
    let (mut hits, mut writes, mut bad) = (0u64, 0u64, 0u64);
    for _ in 0..iterations {
        let key = format!("k{}", rng.below(SHARE_KEYS));
        match disk.read_blocking(&key).unwrap() {
            Some(bytes) => {
                hits += 1;
                held.push_back((key, bytes));
                if held.len() > 8 {
                    held.pop_front();
                }
            }
            None => {
                disk.write_blocking(&key, &payload(&key, SHARE_MIN, SHARE_SPREAD))
                    .unwrap();
                writes += 1;
            }
        }
        bad += held
            .iter()
            .filter(|(k, b)| blake3::hash(b) != expected[k])
            .count() as u64;
    }
    let corrupt = metrics.snapshot().disk.corrupt;
    println!(
        "RESULT {}",
        json!({"hits": hits, "writes": writes, "bad": bad, "corrupt": corrupt})
    );
}

const KILL_KEYS: u64 = 12;
const KILL_MIN: usize = 64 << 10;
const KILL_SPREAD: usize = 192 << 10;

/// Writes entries until killed.
fn child_write_forever() {
    let disk = DiskTier::open(var("FC_DIR"), 1 << 30, Arc::new(Metrics::default()));
    let payloads: Vec<(String, Vec<u8>)> = (0..KILL_KEYS)
        .map(|i| {
            let key = format!("k{i}");
            let bytes = payload(&key, KILL_MIN, KILL_SPREAD);
            (key, bytes)
        })
        .collect();
    println!("READY");
    let mut rng = Rng::seeded(u64::from(std::process::id()));
    loop {
        let (key, bytes) = &payloads[rng.below(KILL_KEYS) as usize];
        disk.write_blocking(key, bytes).unwrap();
    }
}

/// Replaces two keys again and again with payloads of varying lengths, removing them now
/// and then, as several processes re-caching the same frames do.
fn child_replace() {
    let disk = DiskTier::open(var("FC_DIR"), 1 << 30, Arc::new(Metrics::default()));
    let mut rng = Rng::seeded(u64::from(std::process::id()));
    for i in 0..var("FC_ITER").parse::<u64>().unwrap() {
        let key = if rng.below(2) == 0 { "k0" } else { "k1" };
        if rng.below(8) == 0 {
            disk.remove_blocking(key).unwrap();
        } else {
            let len = 100 + rng.below(20_000) as usize;
            disk.write_blocking(key, &vec![i as u8; len]).unwrap();
        }
    }
    disk.write_blocking("k0", b"last").unwrap();
    println!("RESULT {}", json!({"done": true}));
}

/// Opens the directory with `FC_CAP`, tells the parent once it is the evictor, then lets
/// its evictor work until killed.
fn child_evict() {
    let disk = DiskTier::open(
        var("FC_DIR"),
        var("FC_CAP").parse().unwrap(),
        Arc::new(Metrics::default()),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !disk.eviction_status().evictor_here {
        assert!(std::time::Instant::now() < deadline, "never elected");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    println!("READY");
    loop {
        std::thread::park();
    }
}

/// Loads a timeline twice through a fresh cache (no memory tier) and reports the sources.
fn child_load() {
    if std::env::var_os("FC_UNPRIVILEGED").is_some() {
        drop_privileges();
    }
    if let Ok(limit) = std::env::var("FC_FILE_SIZE_LIMIT") {
        limit_file_size(limit.parse().unwrap());
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let config = config(Path::new(&var("FC_ROOT")), Path::new(&var("FC_CACHE")));
    let timeline = var("FC_TIMELINE");
    let result = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let fc = FrameCache::new(&config).unwrap();
        let mut sources: HashMap<String, u64> = HashMap::new();
        let mut frames = 0;
        for _ in 0..2 {
            let mut stream =
                Box::pin(fc.stream_frames(&timeline, Seqs::All, LoadOptions::default()));
            while let Some(item) = stream.next().await {
                let (frame, source) = item.unwrap();
                assert_eq!(frame.chunk_id, synthetic_frame(frame.seq, 1, 1).chunk_id);
                *sources.entry(source.to_string()).or_default() += 1;
                frames += 1;
            }
        }
        let stats = fc.stats();
        json!({"frames": frames, "sources": sources, "disk": stats.disk})
    });
    println!("RESULT {result}");
}

/// The user an unprivileged child runs as.
const NOBODY: u32 = 65534;

fn drop_privileges() {
    // SAFETY: plain libc calls on this single-threaded child before it starts any work.
    unsafe {
        if libc::geteuid() == 0 {
            assert_eq!(libc::setgid(NOBODY), 0, "setgid");
            assert_eq!(libc::setuid(NOBODY), 0, "setuid");
        }
    }
}

fn limit_file_size(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: plain libc calls; ignoring SIGXFSZ turns the signal into an EFBIG error.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn processes_share_one_directory_within_its_capacity() {
    const CHILDREN: usize = 4;
    const CAP: u64 = 512 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    // Creates the directory, its ledger and lock file; stays out of the evictor's election,
    // so the children's evictor and writers alone keep the cap.
    let disk = DiskTier::open_inspector(&dir, CAP, Arc::new(Metrics::default()));
    disk.recount();
    let envs = [
        ("FC_DIR", dir.display().to_string()),
        ("FC_CAP", CAP.to_string()),
        ("FC_ITER", "400".to_owned()),
    ];
    let mut children: Vec<Child> = (0..CHILDREN)
        .map(|_| {
            spawn_child("share", &envs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut peak = 0;
    let mut samples = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        peak = peak.max(entry_bytes_locked(&dir));
        samples += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut hits = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let result = result_of(&stdout);
        assert_eq!(result["bad"], 0, "{result}");
        assert_eq!(result["corrupt"], 0, "{result}");
        hits += result["hits"].as_u64().unwrap();
    }
    // Each child has at most one write in flight: that is all the cap may be exceeded by.
    let largest = (SHARE_MIN + SHARE_SPREAD + 256) as u64;
    let allowance = CHILDREN as u64 * largest;
    eprintln!(
        "peak entry bytes {peak} over {samples} locked samples; cap {CAP}, allowance {allowance}"
    );
    assert!(
        peak <= CAP + allowance,
        "peak {peak} > cap {CAP} + {allowance}"
    );
    assert!(hits > 0, "the children never read each other's entries");
    let usage = disk.usage();
    assert!(usage.bytes <= CAP, "{usage:?}");
    assert_eq!(usage.temp_files, 0, "{usage:?}");
    assert_eq!(disk.recount().bytes, usage.bytes);
}

/// Entries replaced by other lengths and removed by 4 processes at once: the shared ledger
/// ends exactly equal to a recount of the directory.
#[test]
fn replacements_by_several_processes_keep_the_ledger_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let envs = [
        ("FC_DIR", dir.display().to_string()),
        ("FC_ITER", "300".to_owned()),
    ];
    // Creates the directory, its ledger and lock file before the children race for them.
    let disk = DiskTier::open_inspector(&dir, 1 << 30, Arc::new(Metrics::default()));
    let children: Vec<Child> = (0..4)
        .map(|_| {
            spawn_child("replace", &envs)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "replacing child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(result_of(&stdout)["done"], true);
    }
    let counted = disk.accounted();
    let on_disk = entry_bytes_locked(&dir);
    assert!(on_disk > 0, "the children left entries");
    assert_eq!(
        counted,
        disk.recount().bytes,
        "the ledger drifted from the directory"
    );
    assert_eq!(
        counted, on_disk,
        "the ledger counts exactly the entry files"
    );
}

#[test]
fn sigkilled_writers_never_leave_a_served_partial_entry() {
    const KILLS: u32 = 100;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let expected: HashMap<String, blake3::Hash> = (0..KILL_KEYS)
        .map(|i| {
            let key = format!("k{i}");
            let hash = blake3::hash(&payload(&key, KILL_MIN, KILL_SPREAD));
            (key, hash)
        })
        .collect();
    let mut rng = Rng::seeded(7);
    let (mut reads, mut served, mut bad, mut corrupt) = (0u64, 0u64, 0u64, 0u64);
    let mut leftovers = 0;
    for _ in 0..KILLS {
        let mut writer = spawn_child("write-forever", &[("FC_DIR", dir.display().to_string())])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.ends_with("READY"))),
            "writer never started"
        );
        std::thread::sleep(std::time::Duration::from_micros(rng.below(20_000)));
        writer.kill().unwrap();
        writer.wait().unwrap();

        let metrics = Arc::new(Metrics::default());
        let disk = DiskTier::open(&dir, 1 << 30, metrics.clone());
        for (key, hash) in &expected {
            reads += 1;
            if let Some(bytes) = disk.read_blocking(key).unwrap() {
                served += 1;
                if blake3::hash(&bytes) != *hash {
                    bad += 1;
                }
            }
        }
        corrupt += metrics.snapshot().disk.corrupt;
        leftovers = leftovers.max(disk.usage().temp_files);
    }
    let disk = DiskTier::open_inspector(&dir, 1 << 30, Arc::new(Metrics::default()));
    let recount = disk.recount();
    let usage = disk.usage();
    eprintln!(
        "{KILLS} kills, {reads} reads, {served} served, {bad} bad, {corrupt} corrupt; \
         at most {leftovers} temp files left, {} removed by the last recount",
        recount.temp_files_removed
    );
    assert_eq!(bad, 0);
    assert_eq!(corrupt, 0, "a partial entry became visible");
    assert!(served > 0, "no write ever completed");
    assert_eq!(usage.temp_files, 0, "{usage:?}");
    assert_eq!(usage.accounted, usage.bytes, "{usage:?}");
}

#[test]
fn a_frame_fetched_by_one_process_is_a_disk_hit_for_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("origin");
    seed_timeline(&root, "shared", 5);
    let envs = [
        ("FC_ROOT", root.display().to_string()),
        ("FC_CACHE", tmp.path().join("cache").display().to_string()),
        ("FC_TIMELINE", "shared".to_owned()),
    ];
    let (first, _) = run_child("load", &envs);
    assert_eq!(first["frames"], 10, "{first}");
    assert_eq!(first["sources"]["origin"], 5, "{first}");
    assert_eq!(first["sources"]["disk"], 5, "{first}");
    let (second, _) = run_child("load", &envs);
    assert_eq!(second["sources"]["disk"], 10, "{second}");
    assert_eq!(second["sources"].get("origin"), None, "{second}");
}

/// Loads pass through a cache directory the process may not write: the condition is counted
/// on every write and logged once.
#[test]
fn a_read_only_cache_directory_passes_reads_through() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("origin");
    let cache = tmp.path().join("cache");
    seed_timeline(&root, "ro", 6);
    // Half the frames are cached before the directory becomes read-only.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fc = FrameCache::new(&config(&root, &cache)).unwrap();
        for seq in 0..3 {
            fc.frame_jpeg("ro", seq).await.unwrap().unwrap();
        }
    });
    set_tree_mode(tmp.path(), 0o755, 0o644);
    set_tree_mode(&cache, 0o555, 0o444);
    // The unprivileged child's own directory (another user's is refused at open), whose
    // contents it cannot write.
    // SAFETY: a plain query of this process's effective user.
    if unsafe { libc::geteuid() } == 0 {
        chown_tree(&cache, NOBODY);
    }
    let (result, stderr) = run_child(
        "load",
        &[
            ("FC_ROOT", root.display().to_string()),
            ("FC_CACHE", cache.display().to_string()),
            ("FC_TIMELINE", "ro".to_owned()),
            ("FC_UNPRIVILEGED", "1".to_owned()),
        ],
    );
    set_tree_mode(&cache, 0o755, 0o644);
    assert_eq!(result["frames"], 12, "{result}");
    assert_eq!(result["sources"]["disk"], 6, "{result}");
    assert_eq!(result["sources"]["origin"], 6, "{result}");
    // Six frame writes failed, and so did keeping the manifest's chunk (once: this process
    // then holds it parsed) and the timeline's listing, its head and its one part, on each
    // load (the second load finds no copy on disk and tries again): 6 + 1 + 2 × 2.
    assert_eq!(result["disk"]["errors"], 11, "{result}");
    assert_eq!(stderr.matches("is failing").count(), 1, "{stderr}");
}

/// A full disk (here: a file-size limit, which fails writes the same way) never fails a load.
#[test]
fn a_full_disk_passes_reads_through() {
    const LIMIT: u64 = 8 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("origin");
    seed_timeline(&root, "full", 4);
    let smallest = fs::read_dir(root.join("cache/timelines/full/frames"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".jpg"))
        .map(|f| f.metadata().unwrap().len())
        .min()
        .unwrap();
    assert!(
        smallest > LIMIT,
        "frames of {smallest} bytes fit under the limit"
    );
    let (result, stderr) = run_child(
        "load",
        &[
            ("FC_ROOT", root.display().to_string()),
            ("FC_CACHE", tmp.path().join("cache").display().to_string()),
            ("FC_TIMELINE", "full".to_owned()),
            ("FC_FILE_SIZE_LIMIT", LIMIT.to_string()),
        ],
    );
    assert_eq!(result["frames"], 8, "{result}");
    assert_eq!(result["sources"]["origin"], 8, "{result}");
    assert_eq!(result["disk"]["errors"], 8, "{result}");
    assert_eq!(stderr.matches("is failing").count(), 1, "{stderr}");
    // Failed writes leave nothing behind; only the small entries fitted: the manifest's
    // chunk and the kept listing's head and part.
    let disk = DiskTier::open(
        tmp.path().join("cache"),
        1 << 30,
        Arc::new(Metrics::default()),
    );
    let usage = disk.usage();
    assert_eq!((usage.entries, usage.temp_files), (3, 0), "{usage:?}");
    let prefix = framecache::layout::frames_prefix("full").unwrap();
    assert!(disk.path_of(&format!("{prefix}\nlisting")).is_file());
}

/// With 100,000 entries on disk, a new process serves its first read without waiting for
/// any scan: here another process holds the directory's exclusive lock (as a long recount
/// would) the whole time, and nothing is wiped.
#[test]
fn a_restart_serves_at_once_with_100k_entries() {
    const ENTRIES: u64 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("cache");
    {
        let disk = DiskTier::open(&dir, 1 << 30, Arc::new(Metrics::default()));
        for i in 0..ENTRIES {
            disk.write_blocking(&format!("k{i}"), &i.to_le_bytes())
                .unwrap();
        }
    }
    let lock = File::options()
        .read(true)
        .write(true)
        .open(dir.join("v1/.lock"))
        .unwrap();
    lock.lock().unwrap();
    // Open and read on another thread: if either waited for the lock held above (as a scan
    // at open would), it would never finish while the lock is held.
    let (done, finished) = std::sync::mpsc::channel();
    let reader_dir = dir.clone();
    std::thread::spawn(move || {
        let disk = DiskTier::open(&reader_dir, 1 << 30, Arc::new(Metrics::default()));
        let first = disk.read_blocking("k4242").unwrap();
        let _ = done.send((disk, first));
    });
    let (disk, first) = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("open and first read waited for the directory lock held by another process");
    assert_eq!(first.as_deref(), Some(&4242u64.to_le_bytes()[..]));
    for i in (0..ENTRIES).step_by(997) {
        let bytes = disk.read_blocking(&format!("k{i}")).unwrap();
        assert_eq!(bytes.as_deref(), Some(&i.to_le_bytes()[..]));
    }
    drop(lock);
    assert_eq!(disk.usage().entries, ENTRIES);
}

/// Polls `done` until it holds; fails after two minutes (only a guard against a hang).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// An evictor SIGKILLed at a random point of its round (between moving an entry away and
/// releasing its bytes, say) is replaced by a process that opens the directory, which
/// repairs the shard it died in: the ledger then equals a recount, every time.
#[test]
fn a_killed_evictor_is_replaced_and_leaves_a_consistent_ledger() {
    const KILLS: u64 = 8;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let inspector = DiskTier::open_inspector(&dir, 1 << 30, Arc::new(Metrics::default()));
    for i in 0..6_000u64 {
        inspector
            .write_blocking(&format!("k{i}"), &payload(&format!("k{i}"), 600, 400))
            .unwrap();
    }
    inspector.recount();
    let mut rng = Rng::seeded(11);
    let mut takeovers = inspector.eviction_status().takeovers;
    for _ in 0..KILLS {
        // A capacity a fifth under the usage: a round of several hundred evictions.
        let cap = inspector.accounted() / 5 * 4;
        let envs = [
            ("FC_DIR", dir.display().to_string()),
            ("FC_CAP", cap.to_string()),
        ];
        let mut evictor = spawn_child("evict", &envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(evictor.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.ends_with("READY"))),
            "the evictor never started"
        );
        std::thread::sleep(std::time::Duration::from_micros(rng.below(30_000)));
        evictor.kill().unwrap();
        evictor.wait().unwrap();
        takeovers += 1;

        let successor = DiskTier::open(&dir, cap, Arc::new(Metrics::default()));
        wait_for("the successor's election", || {
            successor.eviction_status().evictor_here
        });
        let status = successor.eviction_status();
        assert_eq!(status.takeovers, takeovers + 1, "{status:?}");
        takeovers += 1;
        // Under the exclusive lock no eviction is half done: the ledger must equal the
        // entries, whatever the successor's own round is doing meanwhile.
        let (counted, on_disk) = entry_bytes_locked_with(&dir, || inspector.accounted());
        assert_eq!(counted, on_disk, "the ledger drifted from the directory");
        drop(successor);
    }
}
