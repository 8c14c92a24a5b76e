//! Origin faults: an origin that is down or hangs, transient read failures injected into
//! one read in ten, and cache directories that are missing or vanish.

mod common;

use common::{Env, Proxy, ProxyMode, unique};
use framecache::{Backend, CacheConfig, Error, Frame, FrameCache, Source, synthetic_frame};
use framecache::{LoadOptions, Seqs, WriteOptions};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn frames(n: u64, width: u32, height: u32) -> Vec<Frame> {
    (0..n).map(|s| synthetic_frame(s, width, height)).collect()
}

/// Each frame's JPEG as the origin holds it, read without any cache.
async fn origin_jpegs(env: &Env, timeline: &str, n: u64) -> HashMap<u64, bytes::Bytes> {
    let reader = FrameCache::new(&CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        disk: None,
        ..env.config(&env.disk_dir("unused"))
    })
    .unwrap();
    let mut out = HashMap::new();
    for seq in 0..n {
        let (jpeg, source) = reader.frame_jpeg(timeline, seq).await.unwrap().unwrap();
        assert_eq!(source, Source::Origin);
        out.insert(seq, jpeg);
    }
    out
}

/// One read in ten fails transiently; retries make every load succeed, and every byte
/// served is the origin's.
async fn injected_read_faults_never_serve_a_wrong_byte(env: &Env) {
    const FRAMES: u64 = 24;
    const ROUNDS: usize = 4;
    let tl = unique("chaos");
    let writer = FrameCache::new(&env.config(&env.disk_dir("chaos-writer"))).unwrap();
    writer
        .cache_frames(&tl, &frames(FRAMES, 320, 240), WriteOptions::default())
        .await
        .unwrap();
    let expected = origin_jpegs(env, &tl, FRAMES).await;
    let base = env.config(&env.disk_dir("chaos-reader"));
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        origin: framecache::OriginConfig {
            retries: 10,
            retry_min_delay: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(10),
            ..base.origin.clone()
        },
        ..base
    };
    // FrameCache::new with an origin whose reads fail one time in ten (a test hook).
    config.prepare_cache_dir().unwrap();
    let metrics = std::sync::Arc::new(framecache::Metrics::default());
    let origin = framecache::build_origin_with_read_faults(&config, &metrics, 0.1).unwrap();
    let flaky = FrameCache::from_chain(
        config.build_with_origin(std::sync::Arc::new(origin), metrics),
        config.concurrency,
    )
    .with_decoded_tiers(&config)
    .with_revalidate_after(config.revalidate_after);
    let (mut served, mut bad) = (0u64, 0u64);
    for _ in 0..ROUNDS {
        flaky
            .clear_local(&tl, framecache::ClearScope::All)
            .await
            .unwrap();
        for seq in 0..FRAMES {
            let (jpeg, _) = flaky.frame_jpeg(&tl, seq).await.unwrap().unwrap();
            served += 1;
            bad += u64::from(jpeg != expected[&seq]);
        }
        flaky
            .clear_local(&tl, framecache::ClearScope::All)
            .await
            .unwrap();
        let loaded = flaky.load_frames_b64(&tl).await.unwrap();
        assert_eq!(loaded.len() as u64, FRAMES);
        for frame in loaded {
            use base64::Engine;
            let jpeg = base64::engine::general_purpose::STANDARD
                .decode(&frame.jpeg_b64)
                .unwrap();
            served += 1;
            bad += u64::from(jpeg != expected[&frame.seq]);
        }
    }
    let stats = flaky.stats();
    eprintln!(
        "{}: {served} frames served through injected faults, {} retries, {bad} wrong",
        env.name, stats.origin.retries
    );
    assert_eq!(bad, 0);
    assert!(stats.origin.retries > 0, "no fault was injected: {stats:?}");
    assert!(flaky.status(&tl).await.is_ok());
}

/// The cache directory cannot exist (its parent is a file): every load still succeeds.
async fn an_impossible_cache_directory_passes_reads_through(env: &Env) {
    let tl = unique("nodir");
    let blocker = env.scratch.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let fc = FrameCache::new(&CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        ..env.config(&blocker.join("cache"))
    })
    .unwrap();
    fc.cache_frames(&tl, &frames(3, 64, 48), WriteOptions::default())
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            fc.load_frames(&tl, Seqs::All, LoadOptions::default())
                .await
                .unwrap()
                .len(),
            3
        );
    }
    let stats = fc.stats();
    assert!(stats.disk.errors >= 6, "{stats:?}");
    assert_eq!(stats.disk.hits, 0, "{stats:?}");
}

/// The cache directory is deleted under a running process: reads pass through and the
/// directory is rebuilt by the next writes.
async fn a_deleted_cache_directory_is_rebuilt(env: &Env) {
    let tl = unique("rmdir");
    let dir = env.disk_dir("rmdir");
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        ..env.config(&dir)
    };
    let fc = FrameCache::new(&config).unwrap();
    fc.cache_frames(&tl, &frames(3, 64, 48), WriteOptions::default())
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
    let again = FrameCache::new(&config).unwrap();
    let mut stream = Box::pin(again.stream_frames(&tl, Seqs::All, LoadOptions::default()));
    use futures::StreamExt;
    while let Some(item) = stream.next().await {
        assert_eq!(item.unwrap().1, Source::Disk);
    }
}

backend_tests!(
    injected_read_faults_never_serve_a_wrong_byte,
    an_impossible_cache_directory_passes_reads_through,
    a_deleted_cache_directory_is_rebuilt,
);

/// The origin goes down, then hangs, then comes back. Meanwhile memory and disk hits are
/// served, misses fail with an error naming the key, an origin error is never taken for a
/// missing timeline or frame, and nothing local is dropped; then the cache recovers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(framecache_test_s3),
    ignore = "needs the Garage server: run scripts/test.sh"
)]
async fn origin_down_serves_local_hits_and_recovers() {
    let env = Env::s3();
    let Backend::S3(s3) = &env.backend else {
        unreachable!()
    };
    let proxy = Proxy::start(s3.endpoint.as_deref().unwrap()).await;
    let mut proxied = s3.clone();
    proxied.endpoint = Some(proxy.endpoint.clone());
    let dir = env.disk_dir("down");
    let base = env.config(&dir);
    let config = CacheConfig {
        origin: framecache::OriginConfig {
            backend: Backend::S3(proxied),
            timeout: Duration::from_millis(500),
            io_timeout: Duration::from_millis(500),
            retries: 2,
            retry_min_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(50),
            ..base.origin.clone()
        },
        ..base
    };
    let (cached, uncached) = (unique("down-cached"), unique("down-uncached"));
    let writer = FrameCache::new(&env.config(&env.disk_dir("down-writer"))).unwrap();
    writer
        .cache_frames(&cached, &frames(4, 64, 48), WriteOptions::default())
        .await
        .unwrap();
    writer
        .cache_frames(&uncached, &frames(4, 64, 48), WriteOptions::default())
        .await
        .unwrap();
    let gpu_box = FrameCache::new(&config).unwrap();
    assert_eq!(
        gpu_box
            .load_frames(&cached, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        4
    );
    let version_of_2 = gpu_box.list_frames(&cached).await.unwrap()[2]
        .version
        .clone();

    for mode in [ProxyMode::Refuse, ProxyMode::BlackHole] {
        proxy.set(mode);
        // Hits: the memory tier of this handle, the disk tier for a new one.
        assert_eq!(
            gpu_box
                .load_frames(&cached, Seqs::All, LoadOptions::default())
                .await
                .unwrap()
                .len(),
            4
        );
        let restarted = FrameCache::new(&config).unwrap();
        let loaded = restarted.load_frames_b64(&cached).await.unwrap();
        assert_eq!(loaded.len(), 4, "{mode:?}");
        assert!(restarted.stats().disk.hits >= 4, "{mode:?}");
        // Misses fail, within the configured deadlines, with an error naming the key.
        let start = Instant::now();
        let err = gpu_box.frame_jpeg(&uncached, 0).await.unwrap_err();
        eprintln!("{mode:?}: a miss failed after {:?}: {err}", start.elapsed());
        assert!(matches!(err, Error::Storage { .. }), "{err}");
        assert!(err.to_string().contains(&uncached), "{err}");
        if mode == ProxyMode::BlackHole {
            continue; // each call below would wait out its deadlines again
        }
        // Errors, never "missing".
        assert!(
            gpu_box
                .load_frames(&uncached, Seqs::All, LoadOptions::default())
                .await
                .is_err()
        );
        assert!(gpu_box.exists(&uncached).await.is_err());
        assert!(gpu_box.status(&uncached).await.is_err());
        assert!(
            gpu_box
                .load_frame(&uncached, 0, LoadOptions::default())
                .await
                .is_err()
        );
        assert!(gpu_box.timelines().await.is_err());
        // Nothing local was dropped.
        let key = framecache::layout::frame_key(&cached, 2).unwrap();
        let v = version_of_2.as_ref();
        assert_eq!(gpu_box.chain().local_source(&key, v), Some(Source::Memory));
        let local = framecache::TieredCache::local_key(&key, v);
        assert!(gpu_box.chain().disk().unwrap().path_of(&local).is_file());
    }
    assert!(gpu_box.stats().offline_loads >= 2);
    let key = framecache::layout::frame_key(&cached, 2).unwrap();
    let local = framecache::TieredCache::local_key(&key, version_of_2.as_ref());
    assert!(gpu_box.chain().disk().unwrap().path_of(&local).is_file());

    proxy.set(ProxyMode::Up);
    let recovered = gpu_box
        .load_frames(&uncached, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(recovered.len(), 4);
    let offline = gpu_box.stats().offline_loads;
    assert_eq!(
        gpu_box
            .load_frames(&cached, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(gpu_box.stats().offline_loads, offline, "back online");
}
