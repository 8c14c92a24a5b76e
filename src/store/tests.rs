//! The store engine's unit tests, through the JPEG tier's format.

use super::temp::TEMP_PREFIX;
use super::*;
use crate::entry::FIXED_HEADER_LEN;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::tier::DiskTier;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A tier that does not stand for election as the evictor: nothing happens in the
/// background, so every count a test makes is exact.
fn tier(dir: &Path, capacity: u64) -> (DiskTier, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (
        DiskTier::open_inspector(dir, capacity, metrics.clone()),
        metrics,
    )
}

/// Polls `done` until it holds; fails after a minute (a generous bound: it only guards
/// against a hang, the conditions themselves are not about time).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn round_trip_and_shard_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("a/1.jpg", b"hello").unwrap();
    let path = disk.path_of("a/1.jpg");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(name.len(), 64);
    assert_eq!(
        path.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
        &name[..2]
    );
    assert_eq!(
        disk.read_blocking("a/1.jpg").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(disk.read_blocking("a/2.jpg").unwrap(), None);
    assert_eq!(disk.usage().temp_files, 0);
}

#[test]
fn corrupt_entries_are_removed_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("k", b"0123456789").unwrap();
    let path = disk.path_of("k");
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert_eq!(disk.read_blocking("k").unwrap(), None);
    assert!(!path.exists());
    assert_eq!(metrics.snapshot().disk.corrupt, 1);
}

/// A file in an entry's place longer than any entry the tier takes (here a sparse terabyte)
/// is refused from its length, counted as broken and removed: a read sized by the file
/// would try to allocate all of it.
#[test]
fn an_entry_over_the_entry_limit_is_refused_before_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("big", b"0123456789").unwrap();
    let path = disk.path_of("big");
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    assert_eq!(disk.read_blocking("big").unwrap(), None);
    assert!(!path.exists());
    assert_eq!(metrics.snapshot().disk.corrupt, 1);
    assert_eq!(metrics.snapshot().disk.misses, 1);
    // Under a limit of its own (the object size limit and a header): an entry of a 2 KB
    // payload is broken for a reader that takes at most 1 KB objects, whole for others.
    let small =
        DiskTier::open_inspector(tmp.path(), 1 << 30, metrics.clone()).with_max_object_size(1000);
    disk.write_blocking("k", &[7u8; 2000]).unwrap();
    assert!(disk.read_blocking("k").unwrap().is_some());
    disk.write_blocking("k", &[7u8; 6000]).unwrap();
    assert_eq!(small.read_blocking("k").unwrap(), None);
    assert_eq!(metrics.snapshot().disk.corrupt, 2);
}

/// The directory lock is one descriptor per process, shared by its threads: shared holds
/// overlap, and an exclusive hold keeps the process's other threads out (past the bound they
/// go on without it, counted) as it keeps other processes out; let go, another descriptor
/// (another process) takes it exclusively at once.
#[test]
fn threads_share_the_directory_lock_and_an_exclusive_hold_excludes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    let disk = disk.with_lock_wait(Duration::from_millis(50));
    {
        let first = disk.lock(false);
        let second = std::thread::scope(|s| s.spawn(|| disk.lock(false).is_some()).join());
        assert!(first.is_some() && second.unwrap());
    }
    let exclusive = disk.lock(true);
    assert!(exclusive.is_some());
    let shared = std::thread::scope(|s| s.spawn(|| disk.lock(false).is_some()).join());
    assert!(
        !shared.unwrap(),
        "a shared hold got in beside an exclusive one"
    );
    assert_eq!(metrics.snapshot().dir_lock_timeouts, 1);
    drop(exclusive);
    let (other, _) = tier(tmp.path(), 1 << 30);
    let other = other.with_lock_wait(Duration::ZERO);
    assert!(other.lock(true).is_some(), "the kernel lock was not let go");
    assert!(disk.lock(false).is_some());
}

#[test]
fn eviction_spares_entries_used_since_the_hand_last_passed() {
    let tmp = tempfile::tempdir().unwrap();
    let (big, _) = tier(tmp.path(), 1 << 20);
    let payload = vec![7u8; 1_000];
    for i in 0..40 {
        big.write_blocking(&format!("k{i}"), &payload).unwrap();
    }
    // As if the hand had passed every entry once: none is marked.
    for found in big.scan() {
        big.inner
            .clock
            .take(found.path.file_name().unwrap().to_str().unwrap());
    }
    for i in 0..20 {
        assert!(big.read_blocking(&format!("k{i}")).unwrap().is_some());
    }
    let entry_len = fs::metadata(big.path_of("k0")).unwrap().len();
    // The same directory with room for 30 entries: a recount finds it over capacity and
    // evicts down to the low watermark, taking only entries nobody read.
    let (small, metrics) = tier(tmp.path(), 30 * entry_len);
    let report = small.recount();
    assert!(report.evicted >= 10, "{report:?}");
    assert_eq!(metrics.snapshot().disk.evictions, report.evicted);
    for i in 0..20 {
        assert!(
            small.read_blocking(&format!("k{i}")).unwrap().is_some(),
            "k{i} was read"
        );
    }
    let usage = small.usage();
    assert!(usage.bytes <= 30 * entry_len / 100 * 90, "{usage:?}");
    assert_eq!(usage.accounted, usage.bytes);
    assert_eq!(usage.entries, 40 - report.evicted);
    // No entry was touched on disk to record those reads.
    let written = fs::metadata(small.path_of("k0"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(written <= SystemTime::now());
}

#[test]
fn the_evictor_keeps_usage_between_the_watermarks_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let disk = DiskTier::open(tmp.path(), 100_000, metrics.clone());
    wait_for("the election", || disk.eviction_status().evictor_here);
    wait_for("the first rebuild", || disk.eviction_status().counted);
    let payload = vec![3u8; 900];
    let high = disk.eviction_status().high_watermark;
    // Just over the high watermark, far under the hard limit: no write makes room itself.
    let mut i = 0;
    while disk.accounted() <= high {
        disk.write_blocking(&format!("k{i}"), &payload).unwrap();
        i += 1;
    }
    wait_for("a round", || disk.eviction_status().rounds >= 1);
    let status = disk.eviction_status();
    assert!(status.used_bytes <= status.low_watermark, "{status:?}");
    assert!(status.last_round_entries > 0, "{status:?}");
    assert_eq!(status.writer_batches, 0, "{status:?}");
    assert!(status.evictor_running && status.evictor_pid == u64::from(std::process::id()));
    assert_eq!(metrics.snapshot().disk.evictions, status.last_round_entries);
    let usage = disk.usage();
    assert_eq!(usage.accounted, usage.bytes, "{usage:?}");
}

#[test]
fn one_evictor_per_directory_and_a_successor_when_it_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DiskTier::open(tmp.path(), 1 << 20, Arc::new(Metrics::default()));
    wait_for("the first election", || {
        first.eviction_status().evictor_here
    });
    let second = DiskTier::open(tmp.path(), 1 << 20, Arc::new(Metrics::default()));
    // The first holds the lock: the second cannot be elected while it lives.
    assert!(!second.eviction_status().evictor_here);
    let takeovers = second.eviction_status().takeovers;
    drop(first);
    wait_for("the successor", || second.eviction_status().evictor_here);
    assert_eq!(second.eviction_status().takeovers, takeovers + 1);
}

#[test]
fn a_crash_in_the_middle_of_an_eviction_is_repaired_by_the_next_evictor() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 20);
    for i in 0..50 {
        disk.write_blocking(&format!("k{i}"), &[1u8; 500]).unwrap();
    }
    disk.recount();
    // What an evictor killed between moving an entry away and releasing its bytes leaves:
    // the entry renamed to a temp name of its own, still counted, and its shard marked.
    let victim = disk.path_of("k7");
    let shard = evict::shard_of(&victim);
    let len = fs::metadata(&victim).unwrap().len();
    let tomb = victim
        .parent()
        .unwrap()
        .join(format!("{TEMP_PREFIX}{}-7-1-0", i32::MAX as u32 - 3));
    fs::rename(&victim, &tomb).unwrap();
    disk.inner
        .ledger
        .set(ledger::word::BUSY_SHARD, u64::from(shard) + 1);
    let before = disk.usage();
    assert_eq!(before.accounted, before.bytes + len, "{before:?}");
    let repairs = disk.eviction_status().repaired_shards;

    let next = DiskTier::open(tmp.path(), 1 << 20, Arc::new(Metrics::default()));
    wait_for("the repair", || {
        next.eviction_status().repaired_shards > repairs
    });
    let after = next.usage();
    assert_eq!(after.accounted, after.bytes, "{after:?}");
    assert_eq!((after.entries, after.temp_files), (49, 0), "{after:?}");
    assert!(!tomb.exists());
    assert_eq!(next.inner.ledger.get(ledger::word::BUSY_SHARD), 0);
}

#[test]
fn remove_prefix_reads_keys_from_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("t/a/1", b"1").unwrap();
    disk.write_blocking("t/a/2", b"2").unwrap();
    disk.write_blocking("t/b/1", b"3").unwrap();
    assert_eq!(disk.remove_prefix_blocking("t/a/"), 2);
    assert_eq!(disk.read_blocking("t/a/1").unwrap(), None);
    assert!(disk.read_blocking("t/b/1").unwrap().is_some());
}

#[test]
fn ledger_tracks_writes_replacements_and_removals() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    disk.recount();
    for i in 0..10 {
        disk.write_blocking(&format!("k{i}"), &vec![1u8; 100 + i])
            .unwrap();
    }
    for i in 0..3 {
        disk.write_blocking(&format!("k{i}"), &vec![2u8; 5_000])
            .unwrap();
    }
    disk.remove_blocking("k8").unwrap();
    disk.remove_blocking("k9").unwrap();
    disk.remove_blocking("never-written").unwrap();
    let usage = disk.usage();
    assert_eq!(usage.entries, 8);
    assert_eq!(usage.temp_files, 0);
    assert_eq!(usage.accounted, usage.bytes);
    assert_eq!(disk.read_blocking("k1").unwrap().unwrap().len(), 5_000);
    // A second handle (as another process would) sees the same ledger.
    let (other, _) = tier(tmp.path(), 1 << 30);
    assert_eq!(other.accounted(), usage.bytes);
}

#[test]
fn recount_removes_dead_writers_temp_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("k", b"payload").unwrap();
    let shard = disk.path_of("k").parent().unwrap().to_path_buf();
    let me = std::process::id();
    // A live writer holds a lock on its temp file; PIDs say nothing (in containers sharing
    // a volume, another container's dead writer can carry a PID alive here, such as 1).
    let live = shard.join(format!("{TEMP_PREFIX}{me}-{}-1-40", disk.inner.nonce));
    let earlier_process = shard.join(format!("{TEMP_PREFIX}{me}-{}-1-50", disk.inner.nonce ^ 1));
    let no_such_pid = shard.join(format!("{TEMP_PREFIX}{}-7-1-60", i32::MAX as u32 - 3));
    let other_container = shard.join(format!("{TEMP_PREFIX}1-9-1-70"));
    let foreign = shard.join(".tmp-not-ours");
    // The live writer creates and locks its file before any recount can look (a recount
    // needs the directory's exclusive lock).
    let writer_lock = {
        let _dir = disk.lock(true);
        let file = File::create_new(&live).unwrap();
        file.lock().unwrap();
        file
    };
    for path in [&earlier_process, &no_such_pid, &other_container, &foreign] {
        fs::write(path, b"partial").unwrap();
    }
    let report = disk.recount();
    assert!(report.temp_files_removed <= 3);
    assert!(live.exists() && foreign.exists());
    assert!(!earlier_process.exists() && !no_such_pid.exists() && !other_container.exists());
    // The live write's reservation stays counted, by the length in its name.
    let entry_len = fs::metadata(disk.path_of("k")).unwrap().len();
    assert_eq!(report.bytes, entry_len + 40);
    assert_eq!(disk.accounted(), entry_len + 40);
    drop(writer_lock);
    assert_eq!(
        disk.recount().temp_files_removed,
        1,
        "its writer is gone now"
    );
}

#[test]
fn replacing_one_key_with_other_lengths_keeps_the_ledger_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let disk = disk.clone();
            scope.spawn(move || {
                for i in 0..200 {
                    let len = 100 + (t * 997 + i * 131) % 5000;
                    // A writer that loses the link to the others several times in a row
                    // gives up with an error (the key is then the others'): allowed here,
                    // where what is checked is the ledger.
                    if let Err(e) = disk.write_blocking("one-key", &vec![t as u8; len]) {
                        assert!(e.to_string().contains("kept being replaced"), "{e}");
                    }
                    if i % 7 == 0 {
                        disk.remove_blocking("one-key").unwrap();
                    }
                }
            });
        }
    });
    let counted = disk.accounted();
    let recounted = disk.recount().bytes;
    assert_eq!(counted, recounted, "the ledger drifted from the directory");
}

#[test]
fn verify_removes_and_reports_bad_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    for key in ["good", "flipped", "moved"] {
        disk.write_blocking(key, key.repeat(100).as_bytes())
            .unwrap();
    }
    let flipped = disk.path_of("flipped");
    let mut bytes = fs::read(&flipped).unwrap();
    bytes[FIXED_HEADER_LEN + 10] ^= 0x40;
    fs::write(&flipped, &bytes).unwrap();
    // An entry renamed to another key's path holds the wrong key.
    let moved_to = disk.path_of("elsewhere");
    fs::create_dir_all(moved_to.parent().unwrap()).unwrap();
    fs::rename(disk.path_of("moved"), &moved_to).unwrap();
    let mut calls = 0;
    let report = disk.verify_blocking(|done, total| {
        calls += 1;
        assert!(done <= total);
    });
    assert_eq!(calls, 3);
    assert_eq!(report.checked, 3);
    let mut bad: Vec<_> = report
        .bad
        .iter()
        .map(|b| (b.key.clone().unwrap(), b.reason.clone()))
        .collect();
    bad.sort();
    assert_eq!(bad[0].0, "flipped");
    assert!(bad[0].1.contains("checksum"), "{bad:?}");
    assert_eq!(bad[1].0, "moved");
    assert!(bad[1].1.contains("misplaced"), "{bad:?}");
    assert!(!flipped.exists() && !moved_to.exists());
    assert!(disk.read_blocking("good").unwrap().is_some());
    assert_eq!(metrics.snapshot().disk.corrupt, 2);
    assert_eq!(disk.usage().accounted, disk.usage().bytes);
}

/// Starts a write of `lens[0]` bytes whose fill, before writing, starts the write of
/// `lens[1]`, and so on: every write is in progress while the next one reserves, as when
/// that many writers of several processes are between reserving and committing at once.
/// Returns each write's result, the innermost last.
fn nested_writes(disk: &DiskTier, lens: &[u64]) -> Vec<Result<File>> {
    let Some((&len, rest)) = lens.split_first() else {
        return Vec::new();
    };
    let mut inner = Vec::new();
    let outer = disk.write_file_blocking(&format!("w{}", lens.len()), len, |mut file| {
        inner = nested_writes(disk, rest);
        file.write_all(&vec![1u8; len as usize])
    });
    let mut results = vec![outer];
    results.extend(inner);
    results
}

#[test]
fn writes_in_progress_never_take_the_directory_over_its_capacity() {
    const LEN: u64 = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    // The tier's own files (a ledger page and a one-page bitmap) count in its capacity:
    // room for exactly three entries beside them.
    let metadata = ledger::LEDGER_LEN + clock::len_for(3 * LEN);
    let (disk, _) = tier(tmp.path(), 3 * LEN + metadata);
    assert_eq!(disk.inner.metadata, metadata);
    disk.recount();
    // Four writes in progress at once where three fit: eviction cannot help (there is no
    // entry yet), so the one whose reservation crosses the cap is refused; before, all four
    // went ahead and left the directory a whole entry over its cap.
    let results = nested_writes(&disk, &[LEN; 4]);
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert!(
        refused[0].to_string().contains("do not fit"),
        "{}",
        refused[0]
    );
    assert!(results[3].is_err(), "the innermost write crossed the cap");
    let usage = disk.usage();
    assert_eq!((usage.entries, usage.bytes), (3, 3 * LEN), "{usage:?}");
    assert_eq!(usage.temp_files, 0, "{usage:?}");
    assert_eq!(
        usage.accounted, usage.bytes,
        "the refusal released its bytes"
    );

    // With entries to evict, the same writes all go ahead: each that crosses the cap
    // evicts a batch (the entries were just written, so marked: the batch's first turn of
    // the hand takes the marks, its second evicts).
    let results = nested_writes(&disk, &[LEN, LEN, LEN / 2]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let usage = disk.usage();
    assert!(usage.bytes <= 3 * LEN, "{usage:?}");
    assert_eq!(usage.accounted, usage.bytes);

    // An entry larger than the whole capacity is refused without evicting anything.
    let before = disk.usage();
    assert!(
        disk.write_blocking("huge", &vec![0u8; 4 * LEN as usize])
            .is_err()
    );
    assert_eq!(disk.read_blocking("huge").unwrap(), None);
    assert_eq!(disk.usage(), before);
}

/// An entry as format version 1 wrote it (the blake3 verified on read, no checksum).
fn write_v1_entry(disk: &DiskTier, key: &str, payload: &[u8]) -> PathBuf {
    let mut v1 = Vec::new();
    v1.extend_from_slice(&crate::entry::MAGIC);
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v1.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    v1.extend_from_slice(blake3::hash(payload).as_bytes());
    v1.extend_from_slice(key.as_bytes());
    v1.extend_from_slice(payload);
    let path = disk.path_of(key);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, v1).unwrap();
    path
}

#[test]
fn entries_of_the_previous_format_are_misses_removed_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    let read = write_v1_entry(&disk, "t/a/1", &[5u8; 300]);
    let verified = write_v1_entry(&disk, "t/a/2", &[6u8; 300]);
    let cleared = write_v1_entry(&disk, "t/b/1", &[7u8; 300]);
    disk.recount();

    assert_eq!(disk.read_blocking("t/a/1").unwrap(), None);
    assert!(!read.exists());
    assert_eq!(metrics.snapshot().disk.corrupt, 1);
    let report = disk.verify_blocking(|_, _| {});
    assert_eq!(report.bad.len(), 2, "{report:?}");
    let bad = report.bad.iter().find(|b| b.path == verified).unwrap();
    assert_eq!(bad.key.as_deref(), Some("t/a/2"));
    assert!(bad.reason.contains("version 1"), "{bad:?}");
    assert!(!verified.exists() && !cleared.exists());

    // `clear` finds them by the key where that format put it.
    let cleared = write_v1_entry(&disk, "t/b/1", &[7u8; 300]);
    disk.recount();
    assert_eq!(disk.remove_prefix_blocking("t/b/"), 1);
    assert!(!cleared.exists());
    // Rewritten in the current format, the key is served again.
    disk.write_blocking("t/a/1", &[5u8; 300]).unwrap();
    assert_eq!(
        disk.read_blocking("t/a/1").unwrap().unwrap(),
        vec![5u8; 300]
    );
    assert_eq!(disk.usage().accounted, disk.usage().bytes);
}

#[test]
fn a_hit_hands_out_the_blake3_recorded_at_write_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, metrics) = tier(tmp.path(), 1 << 30);
    let payload = vec![9u8; 5_000];
    disk.write_blocking("k", &payload).unwrap();
    let (bytes, hash) = disk.read_verified_blocking("k").unwrap().unwrap();
    assert_eq!((&bytes[..], hash), (&payload[..], blake3::hash(&payload)));
    // A damaged recorded hash fails the checksum: the entry is never served.
    let path = disk.path_of("k");
    let mut raw = fs::read(&path).unwrap();
    raw[30] ^= 1;
    fs::write(&path, raw).unwrap();
    assert_eq!(disk.read_verified_blocking("k").unwrap(), None);
    assert_eq!(metrics.snapshot().disk.corrupt, 1);
}

/// A live writer between linking its temp file into place and removing it (the file then
/// has two links) is not taken for a dead one by the eviction hand: that false alarm would
/// cost an exclusive recount of the shard, which every writer of the box waits for. A dead
/// writer's leftover (its lock free) still is.
#[test]
fn the_hand_takes_a_linked_temp_file_for_dead_only_when_its_lock_is_free() {
    let tmp = tempfile::tempdir().unwrap();
    let (disk, _) = tier(tmp.path(), 1 << 30);
    disk.write_blocking("k", b"payload").unwrap();
    let entry = disk.path_of("k");
    let shard = evict::shard_of(&entry);
    let me = std::process::id();
    let temp = entry
        .parent()
        .unwrap()
        .join(format!("{TEMP_PREFIX}{me}-{}-1-7", disk.inner.nonce));
    let writer = File::create_new(&temp).unwrap();
    writer.lock().unwrap();
    let linked = entry.parent().unwrap().join("e".repeat(64));
    fs::hard_link(&temp, &linked).unwrap();
    // Both entries marked as used before each pass: the passes only look, remove nothing.
    let mark = || {
        disk.mark_used(&entry);
        disk.mark_used(&linked);
    };
    mark();
    let pass = disk.evict_shard(shard, &|| false, false);
    assert_eq!((pass.examined, pass.removed), (2, 0));
    assert!(
        !pass.dead_temps,
        "a live writer's linked temp file taken for dead"
    );
    drop(writer);
    mark();
    let pass = disk.evict_shard(shard, &|| false, false);
    assert!(pass.dead_temps, "a dead writer's temp file went unnoticed");
}

/// The evictor's pause after a shard: as long as the visit took while usage is just over
/// the high watermark, shorter as it climbs, the shortest from halfway to the hard limit,
/// and never longer than the bound.
#[test]
fn the_evictor_pauses_less_the_nearer_usage_is_to_the_hard_limit() {
    use evict::{MAX_PACE, MIN_PACE, pace};
    let ms = Duration::from_millis;
    let (high, cap) = (950, 1000);
    assert_eq!(pace(ms(10), high, high, cap), ms(10));
    assert_eq!(pace(ms(10), high + 10, high, cap), ms(6));
    assert_eq!(pace(ms(10), high + 25, high, cap), MIN_PACE);
    assert_eq!(pace(ms(10), cap + 5, high, cap), MIN_PACE);
    assert_eq!(pace(ms(500), high, high, cap), MAX_PACE);
    assert_eq!(pace(Duration::ZERO, high, high, cap), MIN_PACE);
}
