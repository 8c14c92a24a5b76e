//! Reads bounded before they allocate: an origin object over its limit (frames and overlays
//! over `max_object_size`, the manifest's head and chunks over their own bounds) is refused
//! with an error naming the key, its size and the limit, without being read whole; listings
//! of the store's timelines come a page at a time. On the filesystem backend the big objects
//! are sparse 2 GiB files (instant to make); on Garage, 32 MiB uploads.
//!
//! "Not read whole" is checked by the bytes this process read (`rchar` in `/proc/self/io`:
//! files and sockets alike), which a whole read of the object would push past its size.

mod common;

use bytes::Bytes;
use common::{Env, unique};
use framecache::WriteOptions;
use framecache::tier::Origin;
use framecache::{Error, FrameCache, TimelineStatus, layout, synthetic_frame};
use std::sync::Arc;

/// Bytes this process has read so far, from files and sockets.
/// What refusing an object may read in all: a few reads stopped past their limits (8 MiB at
/// most, and a chunk), never the object (2 GiB on the filesystem).
const READ_BOUND: u64 = 32 << 20;

/// Held for each whole test: `bytes_read` counts the whole process, so no other test may
/// read while one measures.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The size of the big objects: sparse on the filesystem, uploaded to S3.
fn big_size(env: &Env) -> u64 {
    match env.name {
        "fs" => 2 << 30,
        _ => 32 << 20,
    }
}

/// Stores a `size`-byte object at `key`: a sparse file on the filesystem backend (no byte
/// written), an upload of zeros on S3.
async fn store_big(env: &Env, origin: &Arc<dyn Origin>, key: &str, size: u64) {
    match &env.backend {
        framecache::Backend::Fs { root } => {
            let path = root.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        }
        _ => {
            let zeros = Bytes::from(vec![0u8; usize::try_from(size).unwrap()]);
            origin.put(key, zeros).await.unwrap();
        }
    }
}

/// Asserts `err` refuses `key` of `size` bytes over `limit`, named `what`.
fn assert_refused(err: &Error, key: &str, size: u64, limit: u64, what: &str) {
    match err {
        Error::ObjectTooLarge {
            key: k,
            size: s,
            limit: l,
            what: w,
        } => {
            assert_eq!((k.as_str(), *s, *l, *w), (key, size, limit, what));
        }
        other => panic!("expected ObjectTooLarge for {key}, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(key) && text.contains(&limit.to_string()) && text.contains(what),
        "{text}"
    );
}

async fn a_manifest_head_over_its_limit_is_refused_unread(env: &Env) {
    let _serial = serial().await;
    let tl = unique("big-head");
    let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
    let frames: Vec<_> = (0..2).map(|s| synthetic_frame(s, 32, 16)).collect();
    fc.cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    let key = layout::manifest_key(&tl).unwrap();
    let size = big_size(env);
    store_big(env, fc.chain().origin(), &key, size).await;
    let before = bytes_read();
    let err = fc.list_frames(&tl).await.unwrap_err();
    let read = bytes_read() - before;
    assert_refused(&err, &key, size, 8 << 20, "the manifest head limit");
    assert!(
        read < READ_BOUND,
        "{read} bytes read to refuse a {size}-byte head"
    );
}

async fn a_manifest_chunk_over_its_limit_is_refused_unread(env: &Env) {
    let _serial = serial().await;
    let tl = unique("big-chunk");
    let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
    let frames: Vec<_> = (0..2).map(|s| synthetic_frame(s, 32, 16)).collect();
    fc.cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Complete { .. }
    ));
    // The one chunk the write stored, wherever its head says it is.
    let prefix = layout::frames_prefix(&tl).unwrap();
    let chunks: Vec<String> = fc
        .chain()
        .origin()
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains("/manifest.d/"))
        .collect();
    let [key] = &chunks[..] else {
        panic!("one manifest chunk expected: {chunks:?}");
    };
    let key = key.clone();
    let size = big_size(env);
    store_big(env, fc.chain().origin(), &key, size).await;
    // A fresh cache: the chunk is not parsed in this process yet, nor on its disk.
    let fresh = FrameCache::new(&env.config(&env.disk_dir("b"))).unwrap();
    let before = bytes_read();
    let err = fresh.list_frames(&tl).await.unwrap_err();
    let read = bytes_read() - before;
    assert_refused(&err, &key, size, 4 << 20, "the manifest chunk limit");
    assert!(
        read < READ_BOUND,
        "{read} bytes read to refuse a {size}-byte chunk"
    );
}

async fn a_frame_over_max_object_size_is_refused_unread(env: &Env) {
    let _serial = serial().await;
    let tl = unique("big-frame");
    let mut config = env.config(&env.disk_dir("a"));
    config.origin.max_object_size = 1 << 20;
    let fc = FrameCache::new(&config).unwrap();
    let key = layout::frame_key(&tl, 0).unwrap();
    let size = big_size(env);
    store_big(env, fc.chain().origin(), &key, size).await;
    // Read without a listed size: the origin read itself stops at the limit.
    let before = bytes_read();
    let err = fc.chain().get_hit(&key).await.unwrap_err();
    let read = bytes_read() - before;
    assert_refused(&err, &key, size, 1 << 20, "max_object_size");
    assert!(
        read < READ_BOUND,
        "{read} bytes read to refuse a {size}-byte frame"
    );
    assert_eq!(fc.chain().local_source(&key, None), None, "kept somewhere");
    // Within the limit, the same read returns the object whole.
    let small = Bytes::from_static(b"not a jpeg, but an object");
    fc.chain().origin().put(&key, small.clone()).await.unwrap();
    let hit = fc.chain().get_hit(&key).await.unwrap().unwrap();
    assert_eq!(hit.bytes, small);
}

async fn an_overlay_over_max_object_size_is_refused_from_its_listing(env: &Env) {
    let _serial = serial().await;
    let tl = unique("big-overlay");
    let mut config = env.config(&env.disk_dir("a"));
    config.origin.max_object_size = 1 << 20;
    let fc = FrameCache::new(&config).unwrap();
    let key = layout::overlay_key(&tl, "job", "stage", 3, "mask").unwrap();
    let size = big_size(env);
    store_big(env, fc.chain().origin(), &key, size).await;
    let before = bytes_read();
    let err = fc.load_overlays(&tl, "job", "stage", 3).await.unwrap_err();
    let read = bytes_read() - before;
    assert_refused(&err, &key, size, 1 << 20, "max_object_size");
    assert!(
        read < 1 << 20,
        "{read} bytes read to refuse an overlay by its listed size"
    );
}

async fn timelines_are_listed_a_page_at_a_time(env: &Env) {
    let _serial = serial().await;
    let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
    let origin = fc.chain().origin().clone();
    let base = unique("page");
    // In key order (`{id}/`): `-` and `.` sort before `/`, `0` and `_` after it.
    let ids: Vec<String> = ["-1", ".1", "", "0", "_1"]
        .iter()
        .map(|suffix| format!("{base}{suffix}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        // Several objects each, at several depths: a page counts timelines, not objects.
        for key in [
            layout::frame_key(id, 0).unwrap(),
            layout::frame_key(id, 1).unwrap(),
            layout::overlay_key(id, "j", "s", 0, "o").unwrap(),
        ] {
            origin
                .put(&key, Bytes::from(vec![i as u8; 10]))
                .await
                .unwrap();
        }
    }
    // Pages of 2 from just before ours: on S3 the bucket holds other tests' timelines too.
    let mut seen = Vec::new();
    let mut after = Some(format!("{base}-0"));
    loop {
        let page = fc.timelines_page(after.as_deref(), 2).await.unwrap();
        assert!(page.timelines.len() <= 2, "{page:?}");
        seen.extend(
            page.timelines
                .iter()
                .filter(|t| t.starts_with(&base))
                .cloned(),
        );
        if seen.len() == ids.len() || page.next.is_none() {
            break;
        }
        after = page.next;
    }
    assert_eq!(seen, ids);
    let all = fc.timelines().await.unwrap();
    let ours: Vec<&String> = all.iter().filter(|t| t.starts_with(&base)).collect();
    assert_eq!(ours, ids.iter().collect::<Vec<_>>());
    // The last page says so.
    let last = fc
        .timelines_page(Some(&all[all.len() - 1]), 2)
        .await
        .unwrap();
    assert_eq!((last.timelines.len(), last.next), (0, None));
}

backend_tests!(
    a_manifest_head_over_its_limit_is_refused_unread,
    a_manifest_chunk_over_its_limit_is_refused_unread,
    a_frame_over_max_object_size_is_refused_unread,
    an_overlay_over_max_object_size_is_refused_from_its_listing,
    timelines_are_listed_a_page_at_a_time,
);

#[cfg(feature = "server")]
mod server {
    use super::common::{self, Env, unique};
    use super::{big_size, bytes_read, serial, store_big};
    use framecache::{FrameCache, WriteOptions, layout, synthetic_frame};

    /// One index request for a timeline whose `manifest.json` is huge: an error naming the
    /// limit, after reading no more than the limit.
    async fn the_server_refuses_a_huge_manifest_without_reading_it(env: &Env) {
        let _serial = serial().await;
        use framecache::server::{ServeOptions, Server};
        let tl = unique("srv-big-head");
        let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
        let frames: Vec<_> = (0..2).map(|s| synthetic_frame(s, 32, 16)).collect();
        fc.cache_frames(&tl, &frames, WriteOptions::default())
            .await
            .unwrap();
        let key = layout::manifest_key(&tl).unwrap();
        store_big(env, fc.chain().origin(), &key, big_size(env)).await;
        let opts = ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServeOptions::default()
        };
        let server = Server::bind(fc, &opts).await.unwrap();
        let url = format!("http://{}/v1/timelines/{tl}", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let before = bytes_read();
        let response = reqwest::get(&url).await.unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let read = bytes_read() - before;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["status"], 502);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the manifest head limit")
                && message.contains(&(8u64 << 20).to_string()),
            "{message}"
        );
        assert!(read < super::READ_BOUND, "{read} bytes read to answer");
        let _ = stop.send(());
        running.await.unwrap().unwrap();
    }

    crate::backend_tests!(the_server_refuses_a_huge_manifest_without_reading_it);
}
