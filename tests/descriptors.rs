//! Descriptors within budget: decoded frames mapped from disk keep no descriptor open, so a
//! process under a low `RLIMIT_NOFILE` maps far more frames than it may open files and
//! still reaches the origin. Alone in its binary: the limit is the whole process's.

mod common;

use common::{Env, jpeg_variant, unique};
use framecache::WriteOptions;
use framecache::{CacheConfig, EncodedFrame, FrameCache, LoadOptions, Seqs};
use std::time::Duration;

/// Open files this process may have: well under the frames mapped below.
const NOFILE: u64 = 512;
const FRAMES: u64 = 1500;

fn lower_nofile() {
    let limit = libc::rlimit {
        rlim_cur: NOFILE as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to plain structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let limit = libc::rlimit {
            rlim_max: old.rlim_max,
            ..limit
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

async fn thousands_of_mapped_frames_hold_no_descriptors(env: &Env) {
    lower_nofile();
    let tl = unique("nofile");
    let dir = env.disk_dir("nofile");
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        ..env.config(&dir)
    };
    let writer = FrameCache::new(&CacheConfig {
        disk: None,
        ..config.clone()
    })
    .unwrap();
    let frames = (0..FRAMES)
        .map(|seq| EncodedFrame {
            seq,
            jpeg: jpeg_variant(seq % 5, (seq / 5) as u8),
            timestamp: 0.0,
            chunk_id: 1,
            perceptual_hash: String::new(),
        })
        .collect();
    writer
        .cache_jpegs(&tl, frames, WriteOptions::default())
        .await
        .unwrap();
    // Decoded once, a window at a time, each window's raw entries written before the next
    // (the writer behind loads drops what does not fit its queue).
    let decoder = FrameCache::new(&CacheConfig {
        decoded: framecache::DecodedConfig {
            memory_capacity: 0,
            ..config.decoded.clone()
        },
        ..config.clone()
    })
    .unwrap();
    for start in (0..FRAMES).step_by(50) {
        let range = Seqs::Range(start..(start + 50).min(FRAMES));
        decoder
            .load_frames(&tl, range, LoadOptions::default())
            .await
            .unwrap();
        assert!(decoder.flush_raw_writes(Duration::from_secs(60)));
    }
    drop(decoder);

    // A fresh handle maps every frame from the decoded disk tier and keeps them all.
    let reader = FrameCache::new(&config).unwrap();
    let mut frames = reader
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(frames.len() as u64, FRAMES);
    let stats = reader.stats();
    assert_eq!(stats.decoded_disk.hits, FRAMES, "{stats:?}");
    assert_eq!(stats.decoded_disk.errors, 0, "{stats:?}");
    // Writable frames are private maps made from the entry opened again, then closed.
    frames[0].image.make_mut()[0] ^= 0xFF;
    // And the origin is still reachable: a listing and a read.
    let other = FrameCache::new(&CacheConfig {
        disk: None,
        ..config.clone()
    })
    .unwrap();
    assert_eq!(other.list_frames(&tl).await.unwrap().len() as u64, FRAMES);
    assert!(other.frame_jpeg(&tl, FRAMES - 1).await.unwrap().is_some());
    drop(frames);
}

backend_tests!(thousands_of_mapped_frames_hold_no_descriptors);
