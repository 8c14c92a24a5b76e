//! The read-through chain against real backends: promotion, coalescing, cancellation,
//! corruption and failed writes.

mod common;

use bytes::Bytes;
use common::{Env, unique};
use framecache::WriteOptions;
use framecache::{Source, TieredCache, layout};
use std::fs;
use std::time::Duration;

fn payload(tag: &str, len: usize) -> Bytes {
    let mut v: Vec<u8> = tag.bytes().cycle().take(len).collect();
    v[len / 2] = (len % 251) as u8;
    Bytes::from(v)
}

async fn promotion_through_every_tier(env: &Env) {
    let disk_dir = env.disk_dir("promo");
    let cache = env.config(&disk_dir).build().unwrap();
    let key = layout::frame_key(&unique("promo"), 3).unwrap();
    let value = payload("promotion", 50_000);
    cache.origin().put(&key, value.clone()).await.unwrap();

    let first = cache.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(
        (first.bytes.clone(), first.source),
        (value.clone(), Source::Origin)
    );
    let second = cache.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(
        (second.bytes, second.source),
        (value.clone(), Source::Memory)
    );

    // A new handle on the same directory: empty memory, warm disk.
    let fresh = env.config(&disk_dir).build().unwrap();
    let third = fresh.get_hit(&key).await.unwrap().unwrap();
    assert_eq!((third.bytes, third.source), (value.clone(), Source::Disk));
    let fourth = fresh.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(fourth.source, Source::Memory);
    assert_eq!(fresh.metrics().snapshot().origin.hits, 0);

    let missing = layout::frame_key(&unique("promo"), 4).unwrap();
    assert_eq!(cache.get_hit(&missing).await.unwrap(), None);
}

async fn concurrent_misses_make_one_origin_read(env: &Env) {
    let (cache, probe) = env.instrumented(&env.disk_dir("coalesce"));
    let key = layout::frame_key(&unique("coalesce"), 0).unwrap();
    let value = payload("coalesce", 80_000);
    cache.origin().put(&key, value.clone()).await.unwrap();

    // Hold the origin read so all 64 gets are certainly concurrent.
    probe.close_gate();
    let gets: Vec<_> = (0..64)
        .map(|_| {
            let cache = cache.clone();
            let key = key.clone();
            tokio::spawn(async move { cache.get_hit(&key).await })
        })
        .collect();
    common::wait_until("63 gets joining the first one's fetch", || {
        cache.metrics().snapshot().coalesced >= 63
    })
    .await;
    probe.open_gate();
    for get in gets {
        let hit = get.await.unwrap().unwrap().unwrap();
        assert_eq!(hit.bytes, value);
    }
    assert_eq!(
        probe.reads(),
        1,
        "64 concurrent gets must share one origin read"
    );
    assert_eq!(cache.fetches_in_flight(), 0);
}

async fn cancelled_waiters_do_not_stall_others(env: &Env) {
    let (cache, probe) = env.instrumented(&env.disk_dir("cancel"));
    let key = layout::frame_key(&unique("cancel"), 1).unwrap();
    let value = payload("cancel", 30_000);
    cache.origin().put(&key, value.clone()).await.unwrap();

    probe.close_gate();
    // The first caller starts the fetch and is then aborted while it waits at the gate.
    let leader = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move { cache.get_hit(&key).await })
    };
    common::wait_until("the fetch to reach the origin's gate", || {
        probe.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // A second caller gives up through a timeout while the origin is still held.
    let timed_out = tokio::time::timeout(Duration::from_millis(20), cache.get_hit(&key)).await;
    assert!(timed_out.is_err());

    let followers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.get_hit(&key).await })
        })
        .collect();
    probe.open_gate();
    for follower in followers {
        assert_eq!(follower.await.unwrap().unwrap().unwrap().bytes, value);
    }
    assert_eq!(
        probe.reads(),
        1,
        "cancelled callers must not restart the fetch"
    );
}

async fn corrupt_disk_entries_are_never_served(env: &Env) {
    let disk_dir = env.disk_dir("corrupt");
    let writer = env.config(&disk_dir).build().unwrap();
    let tl = unique("corrupt");
    let keys: Vec<String> = (0..5).map(|i| layout::frame_key(&tl, i).unwrap()).collect();
    let values: Vec<Bytes> = (0..5)
        .map(|i| payload(&format!("v{i}"), 20_000 + i))
        .collect();
    let mut versions = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        versions.push(writer.put_version(k, v.clone()).await.unwrap());
    }
    assert!(
        versions.iter().all(Option::is_some),
        "both backends report the version a write stored: {versions:?}"
    );
    let disk = writer.disk().unwrap();
    let local = |i: usize| TieredCache::local_key(&keys[i], versions[i].as_ref());
    let path = |i: usize| disk.path_of(&local(i));

    // 0: one flipped payload byte; 1: truncated; 2: zero length; 3 and 4: files swapped.
    let mut flipped = fs::read(path(0)).unwrap();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x01;
    fs::write(path(0), flipped).unwrap();
    let full = fs::read(path(1)).unwrap();
    fs::write(path(1), &full[..full.len() / 2]).unwrap();
    fs::write(path(2), b"").unwrap();
    let (three, four) = (fs::read(path(3)).unwrap(), fs::read(path(4)).unwrap());
    fs::write(path(3), four).unwrap();
    fs::write(path(4), three).unwrap();

    let reader = env.config(&disk_dir).build().unwrap();
    for i in 0..5 {
        let hit = reader
            .get_at(&keys[i], versions[i].as_ref())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hit.bytes, values[i], "entry {i}");
        assert_eq!(
            hit.source,
            Source::Origin,
            "corrupt entry {i} must be refetched"
        );
    }
    assert_eq!(reader.metrics().snapshot().disk.corrupt, 5);
    // Refetched entries were rewritten whole: a third handle reads them from disk.
    let third = env.config(&disk_dir).build().unwrap();
    for i in 0..5 {
        let hit = third
            .get_at(&keys[i], versions[i].as_ref())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((hit.bytes, hit.source), (values[i].clone(), Source::Disk));
    }
}

async fn failed_origin_write_leaves_no_local_entry(env: &Env) {
    let disk_dir = env.disk_dir("failed-write");
    let good = env.config(&disk_dir).build().unwrap();
    let key = layout::frame_key(&unique("failed-write"), 9).unwrap();
    let version = good.put_version(&key, payload("old", 1000)).await.unwrap();
    let local = TieredCache::local_key(&key, version.as_ref());
    assert!(good.disk().unwrap().path_of(&local).exists());

    // The same disk directory in front of an origin that rejects writes.
    let mut broken = env.config(&disk_dir);
    match &mut broken.origin.backend {
        framecache::Backend::Fs { .. } => {
            return broken_fs_write(env, &disk_dir, &key, &local).await;
        }
        framecache::Backend::S3(s3) => {
            s3.secret_access_key = Some("wrong-secret-wrong-secret".into());
        }
        framecache::Backend::Memory => unreachable!(),
    }
    broken.origin.retries = 0;
    let broken = broken.build().unwrap();
    let err = broken.put(&key, payload("new", 1000)).await.unwrap_err();
    assert!(err.to_string().contains(&key), "{err}");
    assert!(!broken.disk().unwrap().path_of(&key).exists());
    assert!(!broken.disk().unwrap().path_of(&local).exists());
    assert_eq!(broken.local_source(&key, None), None);
}

/// fs variant: the origin root is replaced by a file after the cache was built.
async fn broken_fs_write(env: &Env, disk_dir: &std::path::Path, key: &str, local: &str) {
    let root = env.scratch.path().join("origin-broken");
    let mut config = env.config(disk_dir);
    config.origin.backend = framecache::Backend::Fs { root: root.clone() };
    config.origin.retries = 0;
    let cache = config.build().unwrap();
    fs::remove_dir_all(&root).unwrap();
    fs::write(&root, b"not a directory").unwrap();
    let err = cache.put(key, payload("new", 1000)).await.unwrap_err();
    assert!(err.to_string().contains(key), "{err}");
    assert!(!cache.disk().unwrap().path_of(key).exists());
    assert!(!cache.disk().unwrap().path_of(local).exists());
    assert_eq!(cache.local_source(key, None), None);
}

async fn invalid_ids_write_nothing(env: &Env) {
    let cache = env.config(&env.disk_dir("invalid")).build().unwrap();
    let fc = framecache::FrameCache::from_chain(cache.clone(), 4);
    let tl = unique("invalid");
    let frame = framecache::synthetic_frame(0, 16, 16);
    let png = Bytes::from_static(b"\x89PNG\r\n\x1a\nnot-checked-further");
    for bad in ["", "..", "a/b", "a\\b", "a\0b", "../escape"] {
        let err = fc
            .cache_frames(bad, std::slice::from_ref(&frame), WriteOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("timeline id"), "{err}");

        // One bad name among good ones: the whole call writes nothing.
        let overlays = std::collections::BTreeMap::from([
            ("good".to_owned(), png.clone()),
            (bad.to_owned(), png.clone()),
        ]);
        let err = fc
            .save_overlays(&tl, "job", "stage", 1, &overlays)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("overlay name"), "{err}");
        let one = std::collections::BTreeMap::from([("good".to_owned(), png.clone())]);
        for (job, stage) in [(bad, "stage"), ("job", bad)] {
            let err = fc
                .save_overlays(&tl, job, stage, 1, &one)
                .await
                .unwrap_err();
            assert!(err.is_invalid_input(), "{err}");
        }
    }
    let everything = cache
        .origin()
        .list(&format!("{}/", layout::CACHE_PREFIX))
        .await
        .unwrap();
    let written: Vec<&str> = everything
        .iter()
        .map(|o| o.key.as_str())
        .filter(|k| k.contains(&tl) || layout::timeline_of(k).is_none() || k.contains("/a/"))
        .collect();
    assert!(written.is_empty(), "invalid ids wrote {written:?}");
    if let framecache::Backend::Fs { root } = &env.backend {
        assert!(!root.join("escape").exists() && !root.join("cache/escape").exists());
    }
}

/// A write that lands while a fetch of the same key is in flight wins: the fetch's older
/// bytes go to its waiters but never into the local tiers.
async fn a_write_during_a_fetch_is_not_overwritten_by_it(env: &Env) {
    let disk_dir = env.disk_dir("race");
    let (cache, probe) = env.instrumented(&disk_dir);
    let key = layout::frame_key(&unique("race"), 0).unwrap();
    let (old, new) = (payload("old", 30_000), payload("new", 31_000));
    cache.origin().put(&key, old.clone()).await.unwrap();

    probe.close_gate_after_read();
    let fetch = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move { cache.get_hit(&key).await })
    };
    common::wait_until("the fetch to reach the origin's gate", || {
        probe.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    cache.put(&key, new.clone()).await.unwrap();
    probe.open_gate();
    let fetched = fetch.await.unwrap().unwrap().unwrap();
    assert!(fetched.bytes == old, "the waiter gets what it read");

    let now = cache.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(
        now.bytes.len(),
        new.len(),
        "memory or disk kept the older bytes"
    );
    assert!(now.bytes == new);
    let restarted = env.config(&disk_dir).build().unwrap();
    let on_disk = restarted.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(
        on_disk.bytes.len(),
        new.len(),
        "the disk kept the older bytes"
    );
}

/// A fetch whose task panics fails its callers with an error naming the fetch, and the
/// next read of the key starts a new fetch instead of joining the dead one.
async fn a_panicking_fetch_does_not_poison_its_key(env: &Env) {
    let (cache, probe) = env.instrumented(&env.disk_dir("panic"));
    let key = layout::frame_key(&unique("panic"), 0).unwrap();
    let value = payload("panic", 10_000);
    cache.origin().put(&key, value.clone()).await.unwrap();
    probe
        .panic_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = cache.get_hit(&key).await.unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(cache.fetches_in_flight(), 0);
    let hit = cache.get_hit(&key).await.unwrap().unwrap();
    assert_eq!(hit.bytes, value);
}

backend_tests!(
    a_panicking_fetch_does_not_poison_its_key,
    a_write_during_a_fetch_is_not_overwritten_by_it,
    promotion_through_every_tier,
    concurrent_misses_make_one_origin_read,
    cancelled_waiters_do_not_stall_others,
    corrupt_disk_entries_are_never_served,
    failed_origin_write_leaves_no_local_entry,
    invalid_ids_write_nothing,
);

#[tokio::test]
async fn origin_failure_is_an_error_not_a_miss() {
    // An unreachable S3 endpoint: the read fails with the key named, it is not "not found".
    let config = framecache::CacheConfig {
        origin: framecache::OriginConfig {
            backend: framecache::Backend::S3(framecache::S3Config {
                bucket: "mpr".into(),
                endpoint: Some("http://127.0.0.1:9".into()),
                region: "us-east-1".into(),
                access_key_id: Some("GKxxxxxxxx".into()),
                secret_access_key: Some("secretsecretsecret".into()),
                ..framecache::S3Config::default()
            }),
            retries: 1,
            retry_min_delay: Duration::from_millis(1),
            ..Default::default()
        },
        disk: None,
        ..framecache::CacheConfig::default()
    };
    let cache = config.build().unwrap();
    let err = cache
        .get_hit("cache/timelines/x/frames/1.jpg")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cache/timelines/x/frames/1.jpg"),
        "{err}"
    );
}
