//! The decoded-frame tiers against real backends: pixels equal a fresh decode at every tier
//! and scale, a changed JPEG never returns old pixels, corrupt raw entries are dropped and
//! decoded again, writes to returned frames stay with their caller, and across real
//! processes a timeline is decoded once per machine and the raw budget holds; a small cache
//! holds its entries and its own files within its capacities.

mod common;

use common::Env;
use common::child::{CHILD_ENV, result_of, spawn_child, var};
use framecache::tier::DiskTier;
use framecache::{
    Access, Backend, Backing, CacheConfig, ClearScope, DecodedConfig, DiskConfig, Frame,
    FrameCache, LoadOptions, Metrics, MinFree, Pixels, Scale, codec, layout, synthetic_frame,
};
use framecache::{Seqs, WriteOptions};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Bound of a wait for the raw frames written behind loads (they take milliseconds).
const FLUSH: Duration = Duration::from_secs(60);

const W: u32 = 160;
const H: u32 = 96;

fn frames(n: u64, salt: u64) -> Vec<Frame> {
    (0..n)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq + salt, W, H)
        })
        .collect()
}

/// What a fresh decode of the stored JPEG gives, for every frame of `timeline`.
async fn fresh(fc: &FrameCache, timeline: &str, n: u64, scale: Scale) -> Vec<Pixels> {
    let mut out = Vec::new();
    for seq in 0..n {
        let (jpeg, _) = fc.frame_jpeg(timeline, seq).await.unwrap().unwrap();
        out.push(codec::decode_jpeg_scaled(&jpeg, scale).unwrap());
    }
    out
}

fn images(frames: &[Frame]) -> Vec<&Pixels> {
    frames.iter().map(|f| &f.image).collect()
}

/// The raw decoded entry files under a cache directory.
fn raw_entries(cache_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for shard in fs::read_dir(cache_dir.join("decoded/v1"))
        .unwrap()
        .flatten()
    {
        if shard.file_type().unwrap().is_dir() {
            for file in fs::read_dir(shard.path()).unwrap().flatten() {
                if file.file_name().len() == 64 {
                    found.push(file.path());
                }
            }
        }
    }
    found
}

async fn pixels_equal_a_fresh_decode_at_every_tier(env: &Env) {
    let timeline = common::unique("dec-tiers");
    let dir = env.disk_dir("tiers");
    let writer = FrameCache::new(&env.config(&env.disk_dir("tiers-writer"))).unwrap();
    writer
        .cache_frames(&timeline, &frames(5, 0), WriteOptions::default())
        .await
        .unwrap();
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    let want = fresh(&writer, &timeline, 5, Scale::Full).await;

    let cold = fc
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&cold), want.iter().collect::<Vec<_>>());
    // The raw entries are written behind the load.
    assert!(fc.flush_raw_writes(FLUSH));
    let stats = fc.stats();
    assert_eq!(stats.decodes, 5, "{stats:?}");
    assert_eq!(stats.decoded_disk.writes, 5, "{stats:?}");

    // Hot: the memory tier's buffers, no decode, no JPEG read.
    let hot = fc
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&hot), want.iter().collect::<Vec<_>>());
    assert!(hot.iter().all(|f| f.image.backing() == Backing::Private));
    let stats = fc.stats();
    assert_eq!(
        (stats.decodes, stats.decoded_memory.hits),
        (5, 5),
        "{stats:?}"
    );
    let read_only = LoadOptions {
        access: Access::ReadOnly,
        ..LoadOptions::default()
    };
    let shared = fc
        .load_frames(&timeline, Seqs::All, read_only)
        .await
        .unwrap();
    assert!(shared.iter().all(|f| f.image.backing() == Backing::Shared));
    assert_eq!(images(&shared), want.iter().collect::<Vec<_>>());
    let one = fc.load_frame(&timeline, 3, read_only).await.unwrap();
    let one = one.unwrap().image;
    assert_eq!(one.backing(), Backing::Shared);
    assert_eq!(one.as_raw().as_ptr(), shared[3].image.as_raw().as_ptr());

    // Warm: a new handle (as a new process) maps the raw entries: no decode, and no JPEG
    // read either. The blake3 of the listed version (the manifest's may belong to bytes
    // another writer replaced) comes from the header of that version's disk entry.
    let warm = FrameCache::new(&env.config(&dir)).unwrap();
    let frames = warm
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&frames), want.iter().collect::<Vec<_>>());
    let stats = warm.stats();
    assert_eq!(
        (stats.decodes, stats.decoded_disk.hits),
        (0, 5),
        "{stats:?}"
    );
    // The origin is asked for the manifest's head only, as on every load; the disk holds
    // the manifest's chunk, and the kept listing's head and part (read to compare, so an
    // unchanged listing is not written again).
    assert_eq!((stats.disk.hits, stats.origin.hits), (3, 1), "{stats:?}");
    // Once known, the pixels are found in memory, with no disk read at all.
    warm.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(warm.stats().disk.hits + warm.stats().memory.hits, 3);
    // Metadata comes with the pixels.
    assert_eq!(frames[3].timestamp, synthetic_frame(3, 1, 1).timestamp);

    // Scaled loads decode through the DCT and are kept apart from full ones.
    for scale in [Scale::Half, Scale::Eighth] {
        let options = LoadOptions {
            scale,
            ..LoadOptions::default()
        };
        let small = warm
            .load_frames(&timeline, Seqs::All, options)
            .await
            .unwrap();
        let want_small = fresh(&writer, &timeline, 5, scale).await;
        assert_eq!(images(&small), want_small.iter().collect::<Vec<_>>());
        assert_eq!(small[0].image.dimensions(), scale.apply((W, H)));
    }
    assert_eq!(warm.stats().decodes, 10);
    writer.clear(&timeline, ClearScope::All).await.unwrap();
}

/// A new handle finds a frame's pixels by the blake3 its JPEG's disk entry records in its
/// header, unverified: a damaged field names no raw entry, so the JPEG is read (its damage
/// caught by the checksum, the origin asked again) and the right pixels come back.
async fn a_damaged_jpeg_header_costs_a_miss_never_other_pixels(env: &Env) {
    let timeline = common::unique("dec-header");
    let dir = env.disk_dir("header");
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    fc.cache_frames(&timeline, &frames(3, 0), WriteOptions::default())
        .await
        .unwrap();
    let want = fresh(&fc, &timeline, 3, Scale::Full).await;
    fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert!(fc.flush_raw_writes(FLUSH));
    // Flip a bit of the recorded blake3 (bytes 24..56) in each frame's JPEG entry.
    let mut damaged = 0;
    for shard in fs::read_dir(dir.join("v1")).unwrap().flatten() {
        if !shard.file_type().unwrap().is_dir() {
            continue;
        }
        for file in fs::read_dir(shard.path()).unwrap().flatten() {
            let mut bytes = fs::read(file.path()).unwrap();
            if bytes.len() < 64 || !bytes.starts_with(b"FRMCACHE") {
                continue;
            }
            let key_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
            let key = String::from_utf8_lossy(&bytes[64..64 + key_len]).into_owned();
            if key.contains(".jpg") && key.contains(&timeline) {
                bytes[40] ^= 1;
                fs::write(file.path(), bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 3);
    let again = FrameCache::new(&env.config(&dir)).unwrap();
    let got = again
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&got), want.iter().collect::<Vec<_>>());
    let stats = again.stats();
    // Each JPEG read after the miss, found damaged and read from the origin again; then
    // its raw entry (named by the true blake3) mapped: nothing decoded.
    assert_eq!(
        (stats.disk.corrupt, stats.decodes, stats.decoded_disk.hits),
        (3, 0, 3),
        "{stats:?}"
    );
}

async fn a_changed_jpeg_never_returns_old_pixels(env: &Env) {
    let timeline = common::unique("dec-changed");
    let dir = env.disk_dir("changed");
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    fc.cache_frames(&timeline, &frames(3, 0), WriteOptions::default())
        .await
        .unwrap();
    fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    // Rebuilt elsewhere: another machine writes other pictures under the same seqs.
    let other = FrameCache::new(&env.config(&env.disk_dir("changed-other"))).unwrap();
    other
        .cache_frames(&timeline, &frames(3, 50), WriteOptions::default())
        .await
        .unwrap();
    let want = fresh(&other, &timeline, 3, Scale::Full).await;
    for _ in 0..2 {
        let got = fc
            .load_frames(&timeline, Seqs::All, LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(images(&got), want.iter().collect::<Vec<_>>());
    }
    let again = FrameCache::new(&env.config(&dir)).unwrap();
    let got = again
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&got), want.iter().collect::<Vec<_>>());

    // A timeline without a manifest (as the Python module writes) whose JPEG is replaced
    // through this cache: the decoded entry follows the bytes, not the key.
    let bare = common::unique("dec-bare");
    let key = layout::frame_key(&bare, 0).unwrap();
    let first = codec::encode_jpeg(&synthetic_frame(1, W, H).image, 85).unwrap();
    fc.chain().put(&key, first.clone().into()).await.unwrap();
    let got = fc
        .load_frames(&bare, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(got[0].image, codec::decode_jpeg(&first).unwrap());
    let second = codec::encode_jpeg(&synthetic_frame(77, W, H).image, 85).unwrap();
    fc.chain().put(&key, second.clone().into()).await.unwrap();
    let got = fc
        .load_frames(&bare, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(got[0].image, codec::decode_jpeg(&second).unwrap());
    fc.clear(&timeline, ClearScope::All).await.unwrap();
    fc.clear(&bare, ClearScope::All).await.unwrap();
}

async fn corrupt_raw_entries_are_decoded_again(env: &Env) {
    let timeline = common::unique("dec-corrupt");
    let dir = env.disk_dir("corrupt");
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    fc.cache_frames(&timeline, &frames(4, 0), WriteOptions::default())
        .await
        .unwrap();
    let want = fresh(&fc, &timeline, 4, Scale::Full).await;
    fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert!(fc.flush_raw_writes(FLUSH));
    let entries = raw_entries(&dir);
    assert_eq!(entries.len(), 4);
    // A flipped pixel, a flipped header byte, a truncated file, an emptied file.
    type Damage<'a> = &'a dyn Fn(&mut Vec<u8>);
    let damage: [Damage; 4] = [
        &|b| *b.last_mut().unwrap() ^= 1,
        &|b| b[20] ^= 1,
        &|b| b.truncate(b.len() / 2),
        &|b| b.clear(),
    ];
    for (path, damage) in entries.iter().zip(damage) {
        let mut bytes = fs::read(path).unwrap();
        damage(&mut bytes);
        // Replaced, not edited in place: mapped readers never see a file change under them.
        let tmp = path.with_extension("damaged");
        fs::write(&tmp, &bytes).unwrap();
        fs::rename(&tmp, path).unwrap();
    }
    let fresh_handle = FrameCache::new(&env.config(&dir)).unwrap();
    let got = fresh_handle
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&got), want.iter().collect::<Vec<_>>());
    let stats = fresh_handle.stats();
    assert_eq!(stats.decoded_disk.corrupt, 4, "{stats:?}");
    assert_eq!(stats.decodes, 4, "{stats:?}");
    // The replacements are good: verify finds nothing wrong.
    assert!(fresh_handle.flush_raw_writes(FLUSH));
    let report = fresh_handle.verify_decoded_blocking(|_, _| {}).unwrap();
    assert_eq!((report.checked, report.bad.len()), (4, 0), "{report:?}");
    fc.clear(&timeline, ClearScope::All).await.unwrap();
}

async fn writes_to_returned_frames_stay_with_their_caller(env: &Env) {
    let timeline = common::unique("dec-writes");
    let dir = env.disk_dir("writes");
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    fc.cache_frames(&timeline, &frames(3, 0), WriteOptions::default())
        .await
        .unwrap();
    let want = fresh(&fc, &timeline, 3, Scale::Full).await;
    // The cold load's frames, a hot load's (private maps) and read-only views, all written.
    let mut loads = vec![
        fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
            .await
            .unwrap(),
    ];
    loads.push(
        fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
            .await
            .unwrap(),
    );
    let read_only = LoadOptions {
        access: Access::ReadOnly,
        ..LoadOptions::default()
    };
    loads.push(
        fc.load_frames(&timeline, Seqs::All, read_only)
            .await
            .unwrap(),
    );
    for frames in &mut loads {
        for f in frames.iter_mut() {
            f.image.make_mut().fill(0xEE);
        }
    }
    assert!(loads.iter().flatten().all(|f| f.image.as_raw()[0] == 0xEE));
    let hot = fc
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&hot), want.iter().collect::<Vec<_>>());
    let other_process = FrameCache::new(&env.config(&dir)).unwrap();
    let warm = other_process
        .load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(images(&warm), want.iter().collect::<Vec<_>>());
    let report = other_process.verify_decoded_blocking(|_, _| {}).unwrap();
    assert!(report.bad.is_empty(), "{report:?}");
    fc.clear(&timeline, ClearScope::All).await.unwrap();
}

async fn clear_drops_decoded_frames(env: &Env) {
    let timeline = common::unique("dec-clear");
    let dir = env.disk_dir("clear");
    let fc = FrameCache::new(&env.config(&dir)).unwrap();
    fc.cache_frames(&timeline, &frames(2, 0), WriteOptions::default())
        .await
        .unwrap();
    fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert!(fc.flush_raw_writes(FLUSH));
    assert_eq!(fc.decoded_usage().disk.unwrap().entries, 2);
    // Two JPEGs, the manifest's chunk, the kept listing (head and part) and two raw frames.
    assert_eq!(fc.clear_local(&timeline, ClearScope::All).await.unwrap(), 7);
    assert_eq!(fc.decoded_usage().disk.unwrap().entries, 0);
    fc.load_frames(&timeline, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(fc.stats().decodes, 4, "decoded again after the clear");
    fc.clear(&timeline, ClearScope::All).await.unwrap();
    assert_eq!(fc.decoded_usage().disk.unwrap().entries, 0);
}

/// A raw budget of four frames under loads of twelve: entries are evicted (by the loading
/// writers and the evictor) while the frames of earlier loads still map them, and those
/// frames keep their pixels; the budget holds.
async fn eviction_runs_while_frames_map_raw_entries(env: &Env) {
    let a = common::unique("dec-evict-a");
    let b = common::unique("dec-evict-b");
    let dir = env.disk_dir("evict");
    let one = 4096 + u64::from(W) * u64::from(H) * 3;
    let cap = 4 * one;
    let config = CacheConfig {
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: cap,
            ..Default::default()
        },
        ..env.config(&dir)
    };
    let fc = FrameCache::new(&config).unwrap();
    fc.cache_frames(&a, &frames(12, 0), WriteOptions::default())
        .await
        .unwrap();
    fc.cache_frames(&b, &frames(12, 50), WriteOptions::default())
        .await
        .unwrap();
    let want_a = fresh(&fc, &a, 12, Scale::Full).await;
    let want_b = fresh(&fc, &b, 12, Scale::Full).await;
    // The cold load's frames are in memory; a second load maps the entries written behind it.
    fc.load_frames(&a, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert!(fc.flush_raw_writes(FLUSH));
    let held = fc
        .load_frames(&a, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    let mapped = held
        .iter()
        .filter(|f| f.image.backing() == Backing::Private)
        .count();
    assert!(mapped > 0, "no frame maps a raw entry");
    for _ in 0..3 {
        let loaded = fc
            .load_frames(&b, Seqs::All, LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(images(&loaded), want_b.iter().collect::<Vec<_>>());
    }
    // A write in progress may stand over the cap until it has made room: settled first.
    assert!(fc.flush_raw_writes(FLUSH));
    let stats = fc.stats();
    assert!(stats.decoded_disk.evictions > 0, "{stats:?}");
    let eviction = stats.decoded_disk_eviction.unwrap();
    // The tier's ledger page and one-page bitmap count in its capacity.
    assert_eq!(eviction.hard_limit, cap - 2 * 4096, "{eviction:?}");
    assert!(eviction.used_bytes <= cap, "{eviction:?}");
    // The first load's frames still hold their pixels, their entries long gone.
    assert_eq!(images(&held), want_a.iter().collect::<Vec<_>>());
    assert!(raw_entries(&dir).len() <= 4);
    fc.clear(&a, ClearScope::All).await.unwrap();
    fc.clear(&b, ClearScope::All).await.unwrap();
}

/// The bytes of every file under `dir` (entries, temp files and the tier's own files),
/// leaving out the sub-directory `skip`.
fn file_bytes(dir: &Path, skip: Option<&Path>) -> u64 {
    let mut total = 0;
    for item in fs::read_dir(dir).unwrap().flatten() {
        let path = item.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            if Some(path.as_path()) != skip {
                total += file_bytes(&path, skip);
            }
        } else {
            total += meta.len();
        }
    }
    total
}

/// A cache capped at 4 MiB per disk tier, loaded with several times that, holds every file
/// of each tier (entries and the tier's own: ledger, referenced bits) within its capacity
/// once eviction settles. Before, each tier's bitmap alone was 2 MiB beyond its capacity.
async fn a_small_cache_holds_its_own_files_within_its_capacity(env: &Env) {
    const CAP: u64 = 4 << 20;
    const N: u64 = 100;
    let timeline = common::unique("metasize");
    let writer = FrameCache::new(&env.config(&env.disk_dir("writer"))).unwrap();
    let big: Vec<Frame> = (0..N)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq, 640, 480)
        })
        .collect();
    writer
        .cache_frames(&timeline, &big, WriteOptions::default().quality(95))
        .await
        .unwrap();
    let mut jpeg_bytes = 0;
    for seq in 0..N {
        jpeg_bytes += writer
            .frame_jpeg(&timeline, seq)
            .await
            .unwrap()
            .unwrap()
            .0
            .len() as u64;
    }
    drop(writer);
    assert!(jpeg_bytes > 2 * CAP, "only {jpeg_bytes} bytes of JPEG");

    let dir = env.disk_dir("capped");
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: Some(DiskConfig {
            dir: dir.clone(),
            capacity: CAP,
            min_free: MinFree::Bytes(0),
            ..Default::default()
        }),
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: CAP,
            ..Default::default()
        },
        ..env.config(&dir)
    };
    let fc = FrameCache::new(&config).unwrap();
    for seq in 0..N {
        let frame = fc
            .load_frame(&timeline, seq, LoadOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.seq, seq);
    }
    assert!(fc.flush_raw_writes(FLUSH), "raw writes still pending");
    // This process is the only one on the directory, so its evictor: wait for its state.
    let settled = || {
        let stats = fc.stats();
        let (jpeg, raw) = (
            stats.disk_eviction.unwrap(),
            stats.decoded_disk_eviction.unwrap(),
        );
        jpeg.used_bytes <= jpeg.high_watermark && raw.used_bytes <= raw.high_watermark
    };
    common::wait_until("the evictors to settle", settled).await;

    let stats = fc.stats();
    assert!(stats.disk.evictions > 0, "{:?}", stats.disk);
    assert!(stats.decoded_disk.evictions > 0, "{:?}", stats.decoded_disk);
    let decoded = dir.join("decoded");
    let jpeg_files = file_bytes(&dir, Some(&decoded));
    let raw_files = file_bytes(&decoded, None);
    eprintln!(
        "{jpeg_bytes} bytes of JPEG loaded; files: JPEG tier {jpeg_files}, decoded tier \
         {raw_files} (capacity {CAP} each)\n{:?}\n{:?}",
        stats.disk_eviction, stats.decoded_disk_eviction
    );
    assert!(
        jpeg_files <= CAP,
        "the JPEG tier's files take {jpeg_files} bytes"
    );
    assert!(
        raw_files <= CAP,
        "the decoded tier's files take {raw_files} bytes"
    );
    drop(fc);
}

backend_tests!(
    eviction_runs_while_frames_map_raw_entries,
    pixels_equal_a_fresh_decode_at_every_tier,
    a_changed_jpeg_never_returns_old_pixels,
    a_damaged_jpeg_header_costs_a_miss_never_other_pixels,
    corrupt_raw_entries_are_decoded_again,
    writes_to_returned_frames_stay_with_their_caller,
    clear_drops_decoded_frames,
    a_small_cache_holds_its_own_files_within_its_capacity,
);

#[tokio::test]
async fn without_decoded_tiers_every_load_decodes() {
    let env = Env::fs();
    let timeline = common::unique("dec-off");
    let config = CacheConfig {
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 0,
            ..Default::default()
        },
        ..env.config(&env.disk_dir("off"))
    };
    let fc = FrameCache::new(&config).unwrap();
    fc.cache_frames(&timeline, &frames(2, 0), WriteOptions::default())
        .await
        .unwrap();
    let want = fresh(&fc, &timeline, 2, Scale::Full).await;
    for _ in 0..2 {
        let got = fc
            .load_frames(&timeline, Seqs::All, LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(images(&got), want.iter().collect::<Vec<_>>());
        assert!(got.iter().all(|f| f.image.backing() == Backing::Owned));
    }
    assert_eq!(fc.stats().decodes, 4);
    assert!(!env.disk_dir("off").join("decoded").exists());
}

// ---------------------------------------------------------------------------------------
// Several processes on one machine

const PROCESS_FRAMES: u64 = 12;

fn process_config(origin: &Path, cache: &Path, decoded_disk: u64) -> CacheConfig {
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
            disk_capacity: decoded_disk,
            ..Default::default()
        },
        ..CacheConfig::default()
    }
}

fn seed(origin: &Path, timeline: &str, salt: u64) {
    let config = CacheConfig {
        disk: None,
        ..process_config(origin, Path::new("/nonexistent"), 0)
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        FrameCache::new(&config)
            .unwrap()
            .cache_frames(
                timeline,
                &frames(PROCESS_FRAMES, salt),
                WriteOptions::default(),
            )
            .await
            .unwrap();
    });
}

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    assert_eq!(var(CHILD_ENV), "load-decoded");
    let config = process_config(
        Path::new(&var("FC_ROOT")),
        Path::new(&var("FC_CACHE")),
        var("FC_DECODED_CAP").parse().unwrap(),
    );
    let scale = Scale::from_denominator(var("FC_SCALE").parse().unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let fc = FrameCache::new(&config).unwrap();
        let options = LoadOptions {
            scale,
            ..LoadOptions::default()
        };
        let frames = fc
            .load_frames(&var("FC_TIMELINE"), Seqs::All, options)
            .await
            .unwrap();
        // Written behind the load: flushed, as a process that wants them kept does.
        assert!(fc.flush_raw_writes(FLUSH));
        let mut digest = blake3::Hasher::new();
        for f in &frames {
            digest.update(f.image.as_raw());
        }
        let stats = fc.stats();
        json!({"frames": frames.len(), "pixels": digest.finalize().to_hex().to_string(),
               "decodes": stats.decodes, "waits": stats.decode_waits,
               "disk_hits": stats.decoded_disk.hits})
    });
    println!("RESULT {result}");
}

fn start_loads(
    origin: &Path,
    cache: &Path,
    loads: &[(&str, u32)],
    cap: u64,
) -> Vec<serde_json::Value> {
    let children: Vec<_> = loads
        .iter()
        .map(|(timeline, scale)| {
            spawn_child(
                "load-decoded",
                &[
                    ("FC_ROOT", origin.display().to_string()),
                    ("FC_CACHE", cache.display().to_string()),
                    ("FC_TIMELINE", (*timeline).to_owned()),
                    ("FC_SCALE", scale.to_string()),
                    ("FC_DECODED_CAP", cap.to_string()),
                ],
            )
            .stdout(std::process::Stdio::piped())
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

/// Four processes load one timeline at once on an empty machine: one decode per frame in
/// all, and the same pixels everywhere.
#[test]
fn four_processes_decode_a_timeline_once() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin");
    seed(&origin, "shared", 0);
    let results = start_loads(
        &origin,
        &tmp.path().join("cache"),
        &[("shared", 1); 4],
        1 << 30,
    );
    let decodes: u64 = results.iter().map(|r| r["decodes"].as_u64().unwrap()).sum();
    assert_eq!(decodes, PROCESS_FRAMES, "{results:?}");
    for r in &results {
        assert_eq!(r["frames"], PROCESS_FRAMES, "{r}");
        assert_eq!(r["pixels"], results[0]["pixels"], "{results:?}");
        let answered = r["decodes"].as_u64().unwrap()
            + r["waits"].as_u64().unwrap()
            + r["disk_hits"].as_u64().unwrap();
        assert!(answered >= PROCESS_FRAMES, "{r}");
    }
}

/// Processes loading different timelines and scales through a raw budget of a few frames
/// keep the directory within it, exactly: more writes can be in progress at once (each
/// process decodes on several threads) than the budget holds, and a write that does not fit
/// beside them even after eviction is refused (its frame is served from memory) rather
/// than committed over the cap.
#[test]
fn the_raw_budget_holds_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin");
    seed(&origin, "a", 0);
    seed(&origin, "b", 100);
    let cache = tmp.path().join("cache");
    let one = codec::Scale::Full.apply((W, H));
    let cap = 5 * (4096 + one.0 as u64 * one.1 as u64 * 3);
    let results = start_loads(
        &origin,
        &cache,
        &[("a", 1), ("b", 1), ("a", 2), ("b", 1)],
        cap,
    );
    for r in &results {
        assert_eq!(r["frames"], PROCESS_FRAMES, "{r}");
    }
    assert_eq!(results[1]["pixels"], results[3]["pixels"]);
    let decoded =
        DiskTier::open_inspector(cache.join("decoded"), cap, Arc::new(Metrics::default()));
    let usage = decoded.usage();
    assert!(usage.bytes <= cap, "{usage:?} over {cap}");
    assert_eq!(usage.temp_files, 0, "{usage:?}");
    assert!(usage.entries > 0, "{usage:?}");
    assert_eq!(
        usage.accounted, usage.bytes,
        "the shared ledger drifted: {usage:?}"
    );
}
