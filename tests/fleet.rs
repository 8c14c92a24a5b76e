//! A mixed fleet on one bucket: the Python module writing as it does (objects straight to the
//! origin, no manifest), framecache reading, several processes on one cache directory. What
//! is served is what the origin holds now, and each frame is downloaded once per machine.

mod common;

use bytes::Bytes;
use common::{Env, jpeg_variant as jpeg, unique};
use framecache::tier::Origin;
use framecache::{Backend, FrameCache, TimelineStatus, layout};
use framecache::{LoadOptions, Seqs, WriteOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` at `key` as the Python module does: straight to the origin.
///
/// On the filesystem backend the version is size and mtime; a real rewrite happens at a
/// later time than the read before it, which this test makes explicit (and independent of
/// the clock's granularity) by giving every write its own mtime.
async fn python_put(env: &Env, origin: &Arc<dyn Origin>, key: &str, bytes: Bytes) {
    static CLOCK: AtomicU64 = AtomicU64::new(1_000_000);
    origin.put(key, bytes).await.unwrap();
    if let Backend::Fs { root } = &env.backend {
        let when = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(CLOCK.fetch_add(1, Ordering::SeqCst));
        std::fs::File::options()
            .write(true)
            .open(root.join(key))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

fn handle(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(name))).unwrap()
}

/// Written by the Python module, read through every path, then cleared and rewritten by it
/// with other images of the same size: every path serves the new frames.
async fn python_rewrites_are_never_served_stale(env: &Env) {
    let fc = handle(env, "py-rewrite");
    let origin = fc.chain().origin().clone();
    let tl = unique("py-rewrite");
    let key = |seq| layout::frame_key(&tl, seq).unwrap();
    for seq in 0..3 {
        python_put(env, &origin, &key(seq), jpeg(seq, 0)).await;
    }
    let overlay = layout::overlay_key(&tl, "job", "edges", 1, "mask").unwrap();
    python_put(
        env,
        &origin,
        &overlay,
        Bytes::from_static(b"\x89PNG\r\n\x1a\nold"),
    )
    .await;
    // Warm every path.
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(fc.load_jpegs(&tl, Seqs::All).await.unwrap().len(), 3);
    assert_eq!(fc.frame_jpeg(&tl, 1).await.unwrap().unwrap().0, jpeg(1, 0));
    assert!(
        fc.load_overlays(&tl, "job", "edges", 1)
            .await
            .unwrap()
            .is_some()
    );

    // The Python module clears and rebuilds the timeline with other pixels.
    origin
        .remove_prefix(&layout::timeline_prefix(&tl).unwrap())
        .await
        .unwrap();
    for seq in 0..3 {
        python_put(env, &origin, &key(seq), jpeg(seq, 200)).await;
    }
    python_put(
        env,
        &origin,
        &overlay,
        Bytes::from_static(b"\x89PNG\r\n\x1a\nnew"),
    )
    .await;

    let b64 = fc.load_frames_b64(&tl).await.unwrap();
    for f in &b64 {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&f.jpeg_b64)
            .unwrap();
        assert_eq!(bytes, jpeg(f.seq, 200), "load_frames_b64 frame {}", f.seq);
    }
    assert_eq!(
        fc.frame_jpeg(&tl, 1).await.unwrap().unwrap().0,
        jpeg(1, 200)
    );
    let fresh = handle(env, "py-rewrite-decode");
    let loaded = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    let expected = fresh
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded, expected, "load_frames serves the rewritten pixels");
    let overlays = fc
        .load_overlays(&tl, "job", "edges", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&overlays["mask"][..], b"\x89PNG\r\n\x1a\nnew");
}

/// Rewritten bytes of the same size (the case a size check alone would miss), read without
/// decoding: a single frame, and the JPEG stream `export` and `warm` use.
async fn same_size_rewrites_are_never_served_stale(env: &Env) {
    let fc = handle(env, "same-size");
    let origin = fc.chain().origin().clone();
    let tl = unique("same-size");
    let key = layout::frame_key(&tl, 0).unwrap();
    let payload = |fill: u8| {
        let mut bytes = vec![0xFF, 0xD8, 0xFF];
        bytes.resize(5000, fill);
        Bytes::from(bytes)
    };
    python_put(env, &origin, &key, payload(1)).await;
    assert_eq!(fc.frame_jpeg(&tl, 0).await.unwrap().unwrap().0, payload(1));
    python_put(env, &origin, &key, payload(2)).await;
    assert_eq!(fc.frame_jpeg(&tl, 0).await.unwrap().unwrap().0, payload(2));
    let (count, stream) = fc.stream_jpegs(&tl, Seqs::All).await.unwrap();
    assert_eq!(count, 1);
    let frames: Vec<_> = futures::StreamExt::collect::<Vec<_>>(stream).await;
    assert_eq!(frames[0].as_ref().unwrap().jpeg, payload(2));
    python_put(env, &origin, &key, payload(3)).await;
    let (_, stream) = fc.stream_jpegs(&tl, Seqs::All).await.unwrap();
    let frames: Vec<_> = futures::StreamExt::collect::<Vec<_>>(stream).await;
    assert_eq!(frames[0].as_ref().unwrap().jpeg, payload(3));
}

/// A framecache-written timeline whose frames the Python module rewrote, leaving the old
/// manifest behind: the origin's bytes win, their metadata reads as unknown, and later loads
/// serve them from the local tiers instead of fetching them again.
async fn a_manifest_left_behind_does_not_win(env: &Env) {
    let (cache, probe) = env.instrumented(&env.disk_dir("left-behind"));
    let fc = FrameCache::from_chain(cache, 8);
    let origin = fc.chain().origin().clone();
    let tl = unique("left-behind");
    let frames: Vec<_> = (0..4)
        .map(|s| framecache::synthetic_frame(s, 64, 48))
        .collect();
    fc.cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    fc.load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    for seq in 0..4 {
        python_put(
            env,
            &origin,
            &layout::frame_key(&tl, seq).unwrap(),
            jpeg(seq, 99),
        )
        .await;
    }
    let first = fc.load_frames_b64(&tl).await.unwrap();
    for f in &first {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&f.jpeg_b64)
            .unwrap();
        assert_eq!(bytes, jpeg(f.seq, 99));
        assert_eq!(f.timestamp, 0.0, "metadata of other bytes is not reported");
    }
    for f in fc.load_jpegs(&tl, Seqs::All).await.unwrap() {
        assert_eq!(f.jpeg, jpeg(f.seq, 99));
        assert_eq!((f.chunk_id, f.perceptual_hash.as_str()), (0, ""));
    }
    // Decoded frames too: the pixels are the rewritten JPEG's, not the manifest's.
    let loaded = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    let fresh = handle(env, "left-behind-decode")
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded, fresh);
    let reads = probe.reads();
    let again = fc.load_frames_b64(&tl).await.unwrap();
    assert_eq!(again, first);
    // Only the manifest is read again: no frame is refetched.
    assert_eq!(probe.reads() - reads, 1, "later loads refetch nothing");
}

/// A timeline deleted at the origin is not served from the local tiers while the origin
/// answers, on any path.
async fn a_deleted_timeline_is_never_served(env: &Env) {
    let fc = handle(env, "deleted");
    let origin = fc.chain().origin().clone();
    let tl = unique("deleted");
    for seq in 0..3 {
        python_put(
            env,
            &origin,
            &layout::frame_key(&tl, seq).unwrap(),
            jpeg(seq, 0),
        )
        .await;
    }
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
    origin
        .remove_prefix(&layout::timeline_prefix(&tl).unwrap())
        .await
        .unwrap();
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(fc.frame_jpeg(&tl, 1).await.unwrap(), None);
    assert_eq!(
        fc.load_frame(&tl, 1, LoadOptions::default()).await.unwrap(),
        None
    );
    assert_eq!(fc.status(&tl).await.unwrap(), TimelineStatus::Missing);
}

/// Invalid input is refused before anything is written: an existing complete timeline stays
/// complete and loadable.
async fn an_invalid_frame_leaves_the_timeline_untouched(env: &Env) {
    let fc = handle(env, "invalid-frame");
    let tl = unique("invalid-frame");
    let good: Vec<_> = (0..3)
        .map(|s| framecache::synthetic_frame(s, 32, 24))
        .collect();
    fc.cache_frames(&tl, &good, WriteOptions::default())
        .await
        .unwrap();
    let before = fc.status(&tl).await.unwrap();
    assert!(matches!(before, TimelineStatus::Complete { frames: 3, .. }));
    let mut bad = good.clone();
    bad[1].image = image::RgbImage::new(0, 0).into();
    let err = fc
        .cache_frames(&tl, &bad, WriteOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("seq 1"), "{err}");
    assert_eq!(fc.status(&tl).await.unwrap(), before);
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        3
    );
}

backend_tests!(
    python_rewrites_are_never_served_stale,
    same_size_rewrites_are_never_served_stale,
    a_manifest_left_behind_does_not_win,
    a_deleted_timeline_is_never_served,
    an_invalid_frame_leaves_the_timeline_untouched,
);
