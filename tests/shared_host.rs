//! A cache on a machine other users share: what it creates is private (or shared with one
//! group), a directory of another user is refused, and nothing is opened through a link
//! (the cache's own metadata files, the fs origin's frames).

mod common;

use bytes::Bytes;
use common::{Env, jpeg_variant, unique};
use framecache::{Backend, CacheConfig, EncodedFrame, FrameCache, Sharing, layout};
use framecache::{LoadOptions, Seqs, WriteOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn encoded(seq: u64, variant: u8) -> EncodedFrame {
    EncodedFrame {
        seq,
        jpeg: jpeg_variant(seq, variant),
        timestamp: seq as f64,
        chunk_id: 1,
        perceptual_hash: String::new(),
    }
}

/// Writes a timeline of three frames and loads it twice (JPEG and decoded tiers, locks,
/// kept listing), so that every kind of file the cache makes exists.
async fn exercise(config: &CacheConfig, tl: &str) {
    let fc = FrameCache::new(config).unwrap();
    let frames = (0..3).map(|s| encoded(s, 1)).collect();
    fc.cache_jpegs(tl, frames, WriteOptions::default())
        .await
        .unwrap();
    let reader = FrameCache::new(&CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        ..config.clone()
    })
    .unwrap();
    assert_eq!(
        reader
            .load_frames(tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(reader.flush_raw_writes(Duration::from_secs(30)));
    assert_eq!(
        reader
            .load_frames(tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

/// Every directory and file under `dir` (not following links), with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::symlink_metadata(&d).unwrap();
        found.push((d.clone(), true, meta.mode() & 0o7777));
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                found.push((entry.path(), false, meta.mode() & 0o7777));
            }
        }
    }
    found
}

fn assert_modes(dir: &Path, dir_mode: u32, file_mode: u32) {
    let found = modes(dir);
    assert!(found.iter().filter(|(_, d, _)| !d).count() > 3, "{found:?}");
    for (path, is_dir, mode) in found {
        let want = if is_dir { dir_mode } else { file_mode };
        assert_eq!(mode, want, "{} has mode {mode:04o}", path.display());
    }
}

/// A new cache directory, its entries, metadata, locks and decoded frames, and what the fs
/// origin stores: directories 0700, files 0600, whatever the umask lets through.
async fn new_files_and_directories_are_private(env: &Env) {
    let dir = env.disk_dir("private");
    exercise(&env.config(&dir), &unique("private")).await;
    assert_modes(&dir, 0o700, 0o600);
    if let Backend::Fs { root } = &env.backend {
        assert_modes(root, 0o700, 0o600);
    }
}

/// Shared with a group: directories 2770 with the group, files 0660.
async fn a_cache_shared_with_a_group_is_setgid_and_group_writable(env: &Env) {
    let dir = env.disk_dir("group");
    let gid = std::fs::metadata(env.scratch.path()).unwrap().gid();
    let config = CacheConfig {
        sharing: Sharing::Group(gid),
        ..env.config(&dir)
    };
    exercise(&config, &unique("group")).await;
    assert_modes(&dir, 0o2770, 0o660);
    for (path, _, _) in modes(&dir) {
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().gid(), gid);
    }
}

/// `.recent` and `.usage` (and the lock files) linked to another file: that file is neither
/// grown nor written into; the cache still serves (the metadata then counts privately).
async fn metadata_files_linked_elsewhere_are_never_written(env: &Env) {
    let dir = env.disk_dir("links");
    let outside = env.scratch.path().join("victims");
    std::fs::create_dir_all(&outside).unwrap();
    let mut victims = Vec::new();
    for sub in ["v1", "decoded/v1"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for name in [".recent", ".usage", ".lock", ".evictor"] {
            let victim = outside.join(format!("{}{name}", sub.replace('/', "-")));
            std::fs::write(&victim, b"precious").unwrap();
            std::os::unix::fs::symlink(&victim, dir.join(sub).join(name)).unwrap();
            victims.push(victim);
        }
    }
    exercise(&env.config(&dir), &unique("links")).await;
    for victim in victims {
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"precious",
            "{} was written through a link",
            victim.display()
        );
    }
}

/// Every entry of the JPEG tier replaced by a FIFO, as another user of a shared cache could
/// plant them: a new handle (which knows no frame yet, so it reads the hash in each
/// entry's header to find the decoded frame) opens none of them, since opening a FIFO with
/// no writer would block it for ever, and loads every frame from the origin.
async fn entries_replaced_by_fifos_are_never_opened(env: &Env) {
    let dir = env.disk_dir("fifos");
    let tl = unique("fifos");
    let config = env.config(&dir);
    let written: Vec<EncodedFrame> = (0..3).map(|s| encoded(s, 2)).collect();
    FrameCache::new(&config)
        .unwrap()
        .cache_jpegs(&tl, written.clone(), WriteOptions::default())
        .await
        .unwrap();
    let mut planted = Vec::new();
    for shard in std::fs::read_dir(dir.join("v1")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).unwrap() {
            let path = entry.unwrap().path();
            std::fs::remove_file(&path).unwrap();
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path and a mode.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            planted.push(path);
        }
    }
    assert!(planted.len() >= 3, "{planted:?}");
    let fc = FrameCache::new(&config).unwrap();
    let load = fc.load_frames(&tl, Seqs::All, LoadOptions::default());
    // Not a measure of speed: a reader blocked on a FIFO never returns.
    let Ok(loaded) = tokio::time::timeout(Duration::from_secs(60), load).await else {
        // Lets the blocked reader go before failing.
        for path in &planted {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
        }
        panic!("a load opened a FIFO planted in the cache");
    };
    let loaded = loaded.unwrap();
    assert_eq!(loaded.len(), 3);
    for (frame, jpeg) in loaded.iter().zip(&written) {
        let expected = framecache::codec::decode_jpeg(&jpeg.jpeg).unwrap();
        assert_eq!(frame.image, expected, "frame {}", frame.seq);
    }
}

/// A cache directory owned by another user is refused at open, naming the path, the owner
/// and the settings (as ssh refuses a key file others could write).
async fn a_cache_directory_of_another_user_is_refused(env: &Env) {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to give a directory to another user; skipped");
        return;
    }
    let dir = env.disk_dir("theirs");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(54321), Some(54321)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = FrameCache::new(&env.config(&dir))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("uid 54321"), "{err}");
    assert!(err.contains("FRAMECACHE_SHARE_GROUP"), "{err}");
    assert!(err.contains("FRAMECACHE_CACHE_DIR"), "{err}");
    // Nothing was created in it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// An fs-origin frame that is a link to a file outside the store (a credentials file, or
/// another JPEG) is never served: it reads as missing; a timeline directory linked outside
/// the store lists nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_origin_links_are_never_served() {
    let env = Env::fs();
    let Backend::Fs { root } = &env.backend else {
        unreachable!()
    };
    let tl = unique("linked");
    let config = CacheConfig {
        disk: None,
        memory: framecache::MemoryConfig { capacity: 0 },
        ..env.config(&env.disk_dir("unused"))
    };
    let fc = FrameCache::new(&config).unwrap();
    let frames = (0..3).map(|s| encoded(s, 1)).collect();
    fc.cache_jpegs(&tl, frames, WriteOptions::default())
        .await
        .unwrap();

    // Frame 1 becomes a link to a "secret" outside the store (a valid JPEG, so that it
    // would be served if followed).
    let secret = env.scratch.path().join("secret.jpg");
    let secret_bytes: Bytes = jpeg_variant(1, 200);
    std::fs::write(&secret, &secret_bytes).unwrap();
    let frame1 = root.join(layout::frame_key(&tl, 1).unwrap());
    std::fs::remove_file(&frame1).unwrap();
    std::os::unix::fs::symlink(&secret, &frame1).unwrap();

    let fresh = FrameCache::new(&config).unwrap();
    if let Ok(Some((jpeg, _))) = fresh.frame_jpeg(&tl, 1).await {
        panic!("served {} bytes through a link", jpeg.len());
    }
    if let Ok(Some(_)) = fresh.load_frame(&tl, 1, LoadOptions::default()).await {
        panic!("decoded a frame read through a link");
    }
    if let Ok(all) = fresh.load_jpegs(&tl, Seqs::All).await {
        assert!(
            all.iter().all(|f| f.jpeg != secret_bytes),
            "served the secret"
        );
    }
    assert!(fresh.frame_jpeg(&tl, 0).await.unwrap().is_some());

    // A whole timeline directory linked to one outside the store.
    let outside = env.scratch.path().join("outside-store");
    let other = unique("other");
    let writer = FrameCache::new(&CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::Fs {
                root: outside.clone(),
            },
            ..Default::default()
        },
        ..config.clone()
    })
    .unwrap();
    let frames = (0..2).map(|s| encoded(s, 2)).collect();
    writer
        .cache_jpegs(&other, frames, WriteOptions::default())
        .await
        .unwrap();
    let linked = root.join(
        layout::timeline_prefix(&other)
            .unwrap()
            .trim_end_matches('/'),
    );
    std::fs::create_dir_all(linked.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(
        outside.join(
            layout::timeline_prefix(&other)
                .unwrap()
                .trim_end_matches('/'),
        ),
        &linked,
    )
    .unwrap();
    assert!(fresh.frame_jpeg(&other, 0).await.unwrap_or(None).is_none());
    if let Ok(all) = fresh.load_jpegs(&other, Seqs::All).await {
        assert!(all.is_empty(), "listed {} frames through a link", all.len());
    }
}

backend_tests!(
    new_files_and_directories_are_private,
    a_cache_shared_with_a_group_is_setgid_and_group_writable,
    metadata_files_linked_elsewhere_are_never_written,
    a_cache_directory_of_another_user_is_refused,
    entries_replaced_by_fifos_are_never_opened,
);

/// Without `HOME` and the XDG variables (systemd units, cron, some containers) the cache
/// and the fs origin go to a per-user directory made `0700`, never to one every user
/// shares; that directory with another mode, another owner or as a link is refused.
#[test]
fn without_home_a_per_user_directory_is_used_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_framecache"));
        for var in [
            "HOME",
            "XDG_CACHE_HOME",
            "XDG_DATA_HOME",
            "FRAMECACHE_CACHE_DIR",
            "FRAMECACHE_ROOT",
            "FRAMECACHE_BACKEND",
            "FRAMECACHE_SHARE_GROUP",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("TMPDIR", tmp.path()).arg("stats").output().unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: no arguments.
    let base = tmp
        .path()
        .join(format!("framecache-{}", unsafe { libc::geteuid() }));
    let meta = std::fs::symlink_metadata(&base).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert!(!tmp.path().join("framecache").exists());
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let refused = |why: &str| {
        let out = run();
        assert_eq!(out.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&base.display().to_string()), "{why}: {err}");
        assert!(err.contains("FRAMECACHE_CACHE_DIR"), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
    };
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("mode 0777");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&base, Some(54321), None).unwrap();
        refused("uid 54321");
        std::os::unix::fs::chown(&base, Some(0), None).unwrap();
    }
    // Another user's link to a directory this user owns (a home directory, say).
    let mine = tmp.path().join("mine");
    std::fs::rename(&base, &mine).unwrap();
    std::os::unix::fs::symlink(&mine, &base).unwrap();
    refused("symbolic link");
}
