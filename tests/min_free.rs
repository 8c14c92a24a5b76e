//! Free space as a limit: a cache directory on a small filesystem (a tmpfs the test mounts,
//! else a loop-mounted ext4 file; skipped, saying why, where neither can be mounted) loaded
//! with more frames than fit keeps `min_free` free, shares the rest between its two disk
//! tiers and returns the right frames; a write that finds the filesystem full is skipped,
//! counted, and makes room.

mod common;

use common::Env;
use framecache::tier::DiskTier;
use framecache::{
    CacheConfig, DecodedConfig, DiskConfig, Frame, FrameCache, LimitedBy, Metrics, MinFree, Pixels,
    codec, synthetic_frame,
};
use framecache::{LoadOptions, Seqs, WriteOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Bound of a wait for the raw frames written behind loads.
const FLUSH: Duration = Duration::from_secs(120);
/// The small filesystem's size, in MiB.
const FS_MIB: u64 = 32;
const FRAMES: u64 = 60;

/// A small filesystem mounted for one test, unmounted (lazily if still busy) when dropped.
struct SmallFs {
    mountpoint: PathBuf,
    _holder: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `mib` MiB, else an ext4 image of that size through a loop device;
    /// `None` (with the reason printed) where this process may mount neither.
    fn mount(mib: u64) -> Option<SmallFs> {
        let holder = tempfile::tempdir().unwrap();
        let mountpoint = holder.path().join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let tmpfs = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m"))
            .arg("tmpfs")
            .arg(&mountpoint));
        let why = match tmpfs {
            Ok(()) => return Some(SmallFs::at(mountpoint, holder)),
            Err(e) => e,
        };
        let image = holder.path().join("fs.img");
        let loop_ext4 = std::fs::File::create(&image)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| e.to_string())
            .and_then(|()| run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image)))
            .and_then(|()| {
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(&mountpoint))
            });
        match loop_ext4 {
            Ok(()) => Some(SmallFs::at(mountpoint, holder)),
            Err(e) => {
                eprintln!(
                    "SKIPPED: cannot mount a small filesystem here (tmpfs: {why}; loop ext4: {e}); \
                     run as root (or with CAP_SYS_ADMIN) to test free-space limits"
                );
                None
            }
        }
    }

    fn at(mountpoint: PathBuf, holder: tempfile::TempDir) -> SmallFs {
        SmallFs {
            mountpoint,
            _holder: holder,
        }
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if run(Command::new("umount").arg(&self.mountpoint)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.mountpoint));
        }
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The filesystem's size and the bytes available on it, asked directly.
fn statvfs(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer of the right type, both live for the call.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) }, 0);
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    // The fields' types differ between platforms.
    #[allow(clippy::unnecessary_cast)]
    let (unit, blocks, available) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    (blocks * unit, available * unit)
}

fn frames() -> Vec<Frame> {
    (0..FRAMES)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq, 1280, 720)
        })
        .collect()
}

async fn a_small_filesystem_keeps_min_free_and_serves_the_right_frames(env: &Env) {
    let Some(small) = SmallFs::mount(FS_MIB) else {
        return;
    };
    let timeline = common::unique("minfree");
    let writer = FrameCache::new(&env.config(&env.disk_dir("writer"))).unwrap();
    writer
        .cache_frames(&timeline, &frames(), WriteOptions::default())
        .await
        .unwrap();
    let mut want: Vec<Pixels> = Vec::new();
    for seq in 0..FRAMES {
        let (jpeg, _) = writer.frame_jpeg(&timeline, seq).await.unwrap().unwrap();
        want.push(codec::decode_jpeg(&jpeg).unwrap());
    }
    drop(writer);

    // Budgets far above the filesystem: only the free space can bound the tiers. No memory
    // tiers, so that the second load is served by the disk tiers (or the origin again).
    let min_free = MinFree::Percent(20.0);
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: Some(DiskConfig {
            dir: small.path().join("cache"),
            capacity: 1 << 30,
            min_free,
            ..Default::default()
        }),
        decoded: DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 1 << 30,
            ..Default::default()
        },
        ..env.config(&env.disk_dir("unused"))
    };
    let fc = FrameCache::new(&config).unwrap();
    for round in 0..2 {
        let got = fc
            .load_frames(&timeline, Seqs::All, LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(got.len(), FRAMES as usize, "round {round}");
        for (frame, want) in got.iter().zip(&want) {
            assert!(
                frame.image == *want,
                "round {round}: frame {} differs from a decode of its JPEG",
                frame.seq
            );
        }
        assert!(fc.flush_raw_writes(FLUSH), "raw writes still pending");
    }
    // Frames mapped from the decoded disk tier keep their blocks until dropped, evicted or
    // not, and the limits count them as used: a load holding many of them makes the tiers
    // evict more meanwhile. Once more frame by frame, holding one at a time, so that what
    // the tiers keep at the end is what the filesystem spares them.
    for seq in 0..FRAMES {
        let frame = fc
            .load_frame(&timeline, seq, LoadOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert!(
            frame.image == want[seq as usize],
            "frame {seq} differs from a decode of its JPEG"
        );
    }
    assert!(fc.flush_raw_writes(FLUSH), "raw writes still pending");

    let (fs_size, _) = statvfs(small.path());
    let keep = min_free.bytes(fs_size);
    // The evictor (this process: the only one on the directory) samples the filesystem and
    // evicts in the background; wait for its state, not for a time.
    let settled = || {
        let stats = fc.stats();
        let (jpeg, raw) = (
            stats.disk_eviction.unwrap(),
            stats.decoded_disk_eviction.unwrap(),
        );
        jpeg.used_bytes <= jpeg.high_watermark
            && raw.used_bytes <= raw.high_watermark
            && statvfs(small.path()).1 >= keep
    };
    common::wait_until("the evictors to keep min_free free", settled).await;

    let stats = fc.stats();
    let (jpeg, raw) = (
        stats.disk_eviction.unwrap(),
        stats.decoded_disk_eviction.unwrap(),
    );
    let (_, free) = statvfs(small.path());
    eprintln!(
        "{fs_size}-byte filesystem, {free} free (min_free {keep}); JPEG tier {} of limit {}, \
         decoded tier {} of limit {}",
        jpeg.used_bytes, jpeg.hard_limit, raw.used_bytes, raw.hard_limit
    );
    eprintln!(
        "{jpeg:?}\n{raw:?}\n{:?}\n{:?}",
        stats.disk, stats.decoded_disk
    );
    assert!(free >= keep, "{free} bytes free, under min_free {keep}");
    for (name, e) in [("jpeg", &jpeg), ("decoded", &raw)] {
        assert_eq!(e.limited_by, LimitedBy::FreeSpace, "{name}: {e:?}");
        assert_eq!(e.capacity, 1 << 30, "{name}");
        assert!(e.hard_limit < fs_size, "{name}: {e:?}");
        assert_eq!(e.min_free, keep, "{name}");
        assert_eq!(e.fs_size, fs_size, "{name}");
        // Neither tier starves the other: each holds entries.
        assert!(e.used_bytes > 0, "{name} holds nothing: {e:?}");
    }
    assert!(
        jpeg.used_bytes + raw.used_bytes <= fs_size - keep,
        "the tiers together hold {} bytes of a {fs_size}-byte filesystem",
        jpeg.used_bytes + raw.used_bytes
    );
    // 60 raw frames of 2.76 MB cannot all have stayed.
    assert!(stats.decoded_disk.evictions > 0, "{:?}", stats.decoded_disk);
    drop(fc);
}

/// A write that finds the filesystem full (filled behind the cache's back, after it last
/// looked) is skipped and counted, and makes room: the limit drops under what the tier
/// holds, a batch is evicted, and once the filler is gone writes go in again.
#[test]
fn a_write_that_finds_the_filesystem_full_is_skipped_counted_and_makes_room() {
    let Some(small) = SmallFs::mount(FS_MIB) else {
        return;
    };
    // No evictor (an inspector), so that nothing but this test's writes samples the
    // filesystem: the full filesystem is met by the write itself.
    // A budget of 8 MiB, under what the filesystem spares while it is not full.
    let tier = DiskTier::open_inspector(
        small.path().join("cache"),
        8 << 20,
        Arc::new(Metrics::default()),
    )
    .with_min_free(MinFree::Bytes(1 << 20));
    let payload = vec![7u8; 64 << 10];
    tier.write_blocking("first", &payload).unwrap();
    let before = tier.eviction_status();
    assert_eq!(before.limited_by, LimitedBy::Budget, "{before:?}");

    // Fill what is left.
    let filler_path = small.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![1u8; 256 << 10];
    while filler.write_all(&chunk).is_ok() {}
    let _ = filler.flush();
    drop(filler);

    let err = tier.write_blocking("second", &payload).unwrap_err();
    let status = tier.eviction_status();
    assert_eq!(status.full_writes, 1, "{err}: {status:?}");
    assert_eq!(status.limited_by, LimitedBy::FreeSpace, "{status:?}");
    assert_eq!(
        status.hard_limit, 0,
        "nothing fits beside min_free: {status:?}"
    );
    assert_eq!(tier.read_blocking("second").unwrap(), None);
    // Room was made: the first entry went, the ledger counts nothing.
    assert_eq!(tier.read_blocking("first").unwrap(), None);
    assert_eq!(status.used_bytes, 0, "{status:?}");

    // The filler goes: the next write samples the filesystem again and goes in.
    std::fs::remove_file(&filler_path).unwrap();
    assert_eq!(tier.eviction_status().limited_by, LimitedBy::Budget);
    tier.write_blocking("third", &payload).unwrap();
    assert_eq!(
        tier.read_blocking("third").unwrap().unwrap().len(),
        payload.len()
    );
    drop(tier);
}

/// The default capacities follow the filesystem: 5 % of it for JPEGs, 10 % for decoded
/// frames (capped at 10 GiB and 64 GiB); an explicit capacity stays as given.
#[test]
fn default_capacities_follow_the_filesystem() {
    let Some(small) = SmallFs::mount(FS_MIB) else {
        return;
    };
    let (fs_size, _) = statvfs(small.path());
    let mut config = CacheConfig {
        disk: Some(DiskConfig {
            dir: small.path().join("cache"),
            ..DiskConfig::default()
        }),
        ..CacheConfig::default()
    };
    assert_eq!(
        config.disk_capacities(),
        Some((fs_size / 100 * 5, fs_size / 100 * 10))
    );
    config.decoded.disk_capacity = 12345;
    assert_eq!(config.disk_capacities(), Some((fs_size / 100 * 5, 12345)));
    config.disk = None;
    assert_eq!(config.disk_capacities(), None);
}

backend_tests!(a_small_filesystem_keeps_min_free_and_serves_the_right_frames);
