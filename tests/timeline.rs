//! The timeline API against real backends: everything the Python module does, and the
//! faults it has, fixed.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::{Env, unique};
use framecache::{
    ClearScope, Error, Frame, FrameCache, Pixels, Scale, Source, TimelineStatus, WriteMode, codec,
    frames_to_b64, layout,
};
use framecache::{LoadOptions, Seqs, WriteOptions};
use futures::StreamExt;
use image::RgbImage;
use std::collections::BTreeMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn frame(seq: u64, w: u32, h: u32) -> Frame {
    let image = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 3 + seq as u32 * 7) % 256) as u8,
            ((y * 5 + seq as u32) % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    Frame {
        seq,
        chunk_id: seq / 10,
        timestamp: seq as f64 / 30.0 + 0.000_123,
        image: image.into(),
        perceptual_hash: format!("{seq:016x}"),
    }
}

fn frames(n: u64) -> Vec<Frame> {
    (0..n).map(|s| frame(s, 64, 48)).collect()
}

fn mean_abs_error(a: &Pixels, b: &Pixels) -> f64 {
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum();
    sum / a.as_raw().len() as f64
}

fn cache(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(name))).unwrap()
}

fn png(tag: u8) -> Bytes {
    let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * y) as u8 ^ tag]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    Bytes::from(out.into_inner())
}

async fn round_trip_keeps_metadata_and_order(env: &Env) {
    let fc = cache(env, "round-trip");
    let tl = unique("round-trip");
    assert!(!fc.exists(&tl).await.unwrap());
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap(),
        vec![]
    );
    let mut input = frames(12);
    input.reverse();
    assert_eq!(
        fc.cache_frames(&tl, &input, WriteOptions::default())
            .await
            .unwrap(),
        12
    );
    assert!(fc.exists(&tl).await.unwrap());
    assert!(matches!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Complete { frames: 12, .. }
    ));

    // A fresh handle on a fresh disk: everything comes from the origin.
    let loaded = cache(env, "round-trip-reader")
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded.len(), 12);
    for (i, f) in loaded.iter().enumerate() {
        let original = frame(i as u64, 64, 48);
        assert_eq!(f.seq, i as u64);
        assert_eq!(f.chunk_id, original.chunk_id);
        assert_eq!(f.timestamp, original.timestamp);
        assert_eq!(f.perceptual_hash, original.perceptual_hash);
        assert_eq!(f.image.dimensions(), (64, 48));
        assert!(mean_abs_error(&f.image, &original.image) < 6.0);
    }
    // The JPEGs as stored carry the same metadata.
    let jpegs = cache(env, "round-trip-jpegs")
        .load_jpegs(&tl, Seqs::All)
        .await
        .unwrap();
    for (f, decoded) in jpegs.iter().zip(&loaded) {
        assert_eq!(
            (f.seq, f.chunk_id, f.timestamp, &f.perceptual_hash),
            (
                decoded.seq,
                decoded.chunk_id,
                decoded.timestamp,
                &decoded.perceptual_hash
            )
        );
    }
    let one = fc
        .load_frame(&tl, 5, LoadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one.seq, one.timestamp), (5, loaded[5].timestamp));
    assert_eq!(
        fc.load_frame(&tl, 99, LoadOptions::default())
            .await
            .unwrap(),
        None
    );

    // The streaming form yields in seq order, and the second load is served locally.
    let mut stream = Box::pin(fc.stream_frames(&tl, Seqs::All, LoadOptions::default()));
    let mut seqs = Vec::new();
    while let Some(item) = stream.next().await {
        let (frame, source) = item.unwrap();
        assert_ne!(
            source,
            Source::Origin,
            "frame {} was written through",
            frame.seq
        );
        seqs.push(frame.seq);
    }
    assert_eq!(seqs, (0..12).collect::<Vec<_>>());
}

async fn b64_is_the_stored_jpeg(env: &Env) {
    let fc = cache(env, "b64");
    let tl = unique("b64");
    fc.cache_frames(&tl, &frames(4), WriteOptions::default())
        .await
        .unwrap();
    let b64 = fc.load_frames_b64(&tl).await.unwrap();
    assert_eq!(
        b64.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    for f in &b64 {
        let stored = fc
            .chain()
            .origin()
            .get(
                &layout::frame_key(&tl, f.seq).unwrap(),
                framecache::tier::Limit::object(1 << 30),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(B64.decode(&f.jpeg_b64).unwrap(), stored.to_vec());
        assert_eq!(f.timestamp, frame(f.seq, 1, 1).timestamp);
    }
}

async fn seed_written_timelines_load_with_defaults(env: &Env) {
    let fc = cache(env, "seed");
    let tl = unique("seed");
    let origin = fc.chain().origin();
    for seq in [2u64, 0, 1] {
        let jpeg = codec::encode_jpeg(&frame(seq, 32, 16).image, 85).unwrap();
        origin
            .put(&layout::frame_key(&tl, seq).unwrap(), Bytes::from(jpeg))
            .await
            .unwrap();
    }
    assert!(fc.exists(&tl).await.unwrap());
    assert_eq!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Unmanaged { frames: 3 }
    );
    let loaded = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        loaded.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(loaded.iter().all(|f| f.timestamp == 0.0 && f.chunk_id == 0));
    assert!(loaded.iter().all(|f| f.perceptual_hash.is_empty()));
}

async fn stray_objects_are_skipped_and_bad_jpegs_named(env: &Env) {
    let fc = cache(env, "stray");
    let tl = unique("stray");
    fc.cache_frames(&tl, &frames(3), WriteOptions::default())
        .await
        .unwrap();
    let origin = fc.chain().origin();
    let prefix = layout::frames_prefix(&tl).unwrap();
    for stray in ["thumb.jpg", "01.jpg", "sub/5.jpg", "notes.txt"] {
        origin
            .put(&format!("{prefix}{stray}"), Bytes::from_static(b"junk"))
            .await
            .unwrap();
    }
    let before = fc.stats().skipped_names;
    let loaded = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(fc.stats().skipped_names - before, 4);

    // A truncated JPEG at a canonical name is an error that names its key.
    let bad_key = layout::frame_key(&tl, 7).unwrap();
    let jpeg = codec::encode_jpeg(&frame(7, 64, 48).image, 85).unwrap();
    origin
        .put(&bad_key, Bytes::copy_from_slice(&jpeg[..jpeg.len() / 4]))
        .await
        .unwrap();
    let err = cache(env, "stray-2")
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains(&bad_key), "{err}");
    // An empty one too.
    origin.put(&bad_key, Bytes::new()).await.unwrap();
    let err = cache(env, "stray-3")
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&bad_key), "{err}");
}

async fn rebuilding_with_fewer_frames_removes_the_extras(env: &Env) {
    let fc = cache(env, "shrink");
    let tl = unique("shrink");
    fc.cache_frames(&tl, &frames(10), WriteOptions::default())
        .await
        .unwrap();
    fc.load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    fc.cache_frames(
        &tl,
        &frames(4),
        WriteOptions::default().mode(WriteMode::Replace),
    )
    .await
    .unwrap();
    let loaded = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(
        loaded.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let listed = fc.list_frames(&tl).await.unwrap();
    assert_eq!(listed.len(), 4);
    let gone = layout::frame_key(&tl, 7).unwrap();
    assert_eq!(fc.chain().local_source(&gone, None), None);
    assert_eq!(
        fc.load_frame(&tl, 7, LoadOptions::default()).await.unwrap(),
        None
    );
}

async fn partial_timelines_are_distinguishable(env: &Env) {
    let fc = cache(env, "partial");
    let tl = unique("partial");
    fc.cache_frames(&tl, &frames(5), WriteOptions::default())
        .await
        .unwrap();
    let origin = fc.chain().origin();
    // Frame 3 removed under a complete manifest: simply not there.
    origin
        .remove(&layout::frame_key(&tl, 3).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Complete { frames: 4, .. }
    ));
    // A rebuild that died (its manifest still incomplete): the timeline is partial.
    let key = layout::manifest_key(&tl).unwrap();
    let head = origin
        .get(&key, framecache::tier::Limit::object(u64::MAX))
        .await
        .unwrap()
        .unwrap();
    let mut head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    head["complete"] = false.into();
    origin
        .put(&key, serde_json::to_vec(&head).unwrap().into())
        .await
        .unwrap();
    assert_eq!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Partial {
            expected: 5,
            present: 4
        }
    );
    let err = fc
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Incomplete {
                expected: 5,
                present: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&tl));
    // Rebuilding the timeline completes it.
    fc.cache_frames(
        &tl,
        &frames(5),
        WriteOptions::default().mode(WriteMode::Replace),
    )
    .await
    .unwrap();
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn overlays_round_trip_per_frame(env: &Env) {
    let fc = cache(env, "overlays");
    let tl = unique("overlays");
    let (job, stage) = ("job-1", "edges");
    assert_eq!(fc.load_overlays(&tl, job, stage, 0).await.unwrap(), None);
    for seq in [3u64, 1, 30] {
        let mut ov = BTreeMap::new();
        ov.insert("edge_overlay_b64".to_owned(), png(seq as u8));
        ov.insert("lines_overlay_b64".to_owned(), png(seq as u8 + 1));
        fc.save_overlays(&tl, job, stage, seq, &ov).await.unwrap();
    }
    let mut b64 = BTreeMap::new();
    b64.insert("mask".to_owned(), B64.encode(png(9)));
    fc.save_overlays_b64(&tl, job, "other-stage", 3, &b64)
        .await
        .unwrap();

    assert_eq!(
        fc.list_overlay_frames(&tl, job, stage).await.unwrap(),
        vec![1, 3, 30]
    );
    let three = fc.load_overlays(&tl, job, stage, 3).await.unwrap().unwrap();
    assert_eq!(
        three.len(),
        2,
        "frame 30's overlays must not leak into frame 3"
    );
    assert_eq!(three["edge_overlay_b64"], png(3));
    let other = fc
        .load_overlays_b64(&tl, job, "other-stage", 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other["mask"], B64.encode(png(9)));
    assert_eq!(fc.load_overlays(&tl, job, stage, 2).await.unwrap(), None);

    // A name with a separator is rejected and nothing of the batch is written.
    let mut bad = BTreeMap::new();
    bad.insert("a_ok".to_owned(), png(1));
    bad.insert("../other-stage/x".to_owned(), png(2));
    let err = fc
        .save_overlays(&tl, job, stage, 5, &bad)
        .await
        .unwrap_err();
    assert!(
        err.is_invalid_input() && err.to_string().contains("overlay name"),
        "{err}"
    );
    let err = fc
        .save_overlays(&tl, job, "a/b", 5, &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"a/b\""), "{err}");
    let mut not_png = BTreeMap::new();
    not_png.insert("x".to_owned(), Bytes::from_static(b"GIF89a"));
    assert!(
        fc.save_overlays(&tl, job, stage, 5, &not_png)
            .await
            .is_err()
    );
    assert_eq!(fc.load_overlays(&tl, job, stage, 5).await.unwrap(), None);
}

async fn clear_removes_every_tier(env: &Env) {
    let fc = cache(env, "clear");
    let tl = unique("clear");
    fc.cache_frames(&tl, &frames(3), WriteOptions::default())
        .await
        .unwrap();
    let mut ov = BTreeMap::new();
    ov.insert("edges".to_owned(), png(1));
    fc.save_overlays(&tl, "j", "s", 1, &ov).await.unwrap();
    fc.load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    let frame_key = layout::frame_key(&tl, 1).unwrap();
    let overlay_key = layout::overlay_key(&tl, "j", "s", 1, "edges").unwrap();
    let version = fc.list_frames(&tl).await.unwrap()[1].version.clone();
    let overlay_version = fc.chain().origin().stat(&overlay_key).await.unwrap();
    let overlay_version = overlay_version.and_then(|o| o.version);
    let v = version.as_ref();
    assert_eq!(fc.chain().local_source(&frame_key, v), Some(Source::Memory));

    fc.clear(&tl, ClearScope::Frames).await.unwrap();
    assert!(!fc.exists(&tl).await.unwrap());
    assert_eq!(fc.chain().local_source(&frame_key, v), None);
    let local = framecache::TieredCache::local_key(&frame_key, v);
    assert!(!fc.chain().disk().unwrap().path_of(&local).exists());
    assert!(fc.load_overlays(&tl, "j", "s", 1).await.unwrap().is_some());

    fc.clear(&tl, ClearScope::All).await.unwrap();
    assert_eq!(fc.load_overlays(&tl, "j", "s", 1).await.unwrap(), None);
    assert_eq!(
        fc.chain()
            .local_source(&overlay_key, overlay_version.as_ref()),
        None
    );
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap(),
        vec![]
    );
}

async fn rebuilt_timelines_are_not_served_stale(env: &Env) {
    let tl = unique("stale");
    let gpu_box = cache(env, "stale-box");
    let builder = cache(env, "stale-builder");
    builder
        .cache_frames(&tl, &frames(4), WriteOptions::default())
        .await
        .unwrap();
    let warm = gpu_box
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(warm.len(), 4);

    // Another machine rebuilds the timeline with different pixels and metadata.
    let rebuilt: Vec<Frame> = (0..4)
        .map(|s| Frame {
            timestamp: 100.0 + s as f64,
            ..frame(s + 50, 64, 48)
        })
        .enumerate()
        .map(|(i, f)| Frame { seq: i as u64, ..f })
        .collect();
    builder
        .cache_frames(&tl, &rebuilt, WriteOptions::default())
        .await
        .unwrap();

    let fresh = gpu_box
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    for (got, want) in fresh.iter().zip(&rebuilt) {
        assert_eq!(got.timestamp, want.timestamp);
        assert!(
            mean_abs_error(&got.image, &want.image) < 6.0,
            "frame {} is stale",
            got.seq
        );
    }
}

async fn invalid_timeline_ids_touch_nothing(env: &Env) {
    let fc = cache(env, "invalid-tl");
    for bad in ["", "..", "a/b", "tl\n"] {
        let err = fc
            .cache_frames(bad, &frames(1), WriteOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            fc.load_frames(bad, Seqs::All, LoadOptions::default())
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(fc.exists(bad).await.unwrap_err().is_invalid_input());
    }
    let tl = unique("invalid-q");
    assert!(
        fc.cache_frames(&tl, &frames(1), WriteOptions::default().quality(0))
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    let dup = vec![frame(1, 8, 8), frame(1, 8, 8)];
    assert!(
        fc.cache_frames(&tl, &dup, WriteOptions::default())
            .await
            .unwrap_err()
            .is_invalid_input()
    );
    assert!(!fc.exists(&tl).await.unwrap());
    assert_eq!(fc.stats().origin.writes, 0);
}

async fn thumbnails_are_scaled_kept_apart_and_follow_their_frame(env: &Env) {
    let tl = unique("thumbs");
    let writer = cache(env, "thumbs-writer");
    let sized = |seq, like| Frame {
        seq,
        ..frame(like, 161, 97)
    };
    writer
        .cache_frames(
            &tl,
            &[sized(0, 0), sized(1, 1)],
            WriteOptions::default().quality(90),
        )
        .await
        .unwrap();
    let fc = cache(env, "thumbs");
    let err = fc.frame_thumbnail(&tl, 1, Scale::Full).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(
        fc.frame_thumbnail(&tl, 7, Scale::Quarter).await.unwrap(),
        None
    );

    // Made once: decoded at a quarter through the DCT (sizes round up), encoded again.
    let made = fc
        .frame_thumbnail(&tl, 1, Scale::Quarter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(made.source, None);
    assert_eq!(fc.stats().thumbnails, 1);
    let (jpeg, _) = fc.frame_jpeg(&tl, 1).await.unwrap().unwrap();
    assert_eq!(made.frame_blake3, blake3::hash(&jpeg));
    let small = codec::decode_jpeg(&made.jpeg).unwrap();
    assert_eq!(small.dimensions(), (41, 25));
    let resized = image::imageops::resize(
        &codec::decode_jpeg(&jpeg).unwrap().into_rgb_image(),
        41,
        25,
        image::imageops::FilterType::Triangle,
    );
    assert!(mean_abs_error(&small, &resized.into()) < 12.0);
    // The full frame is never confused with it.
    assert_eq!(codec::decode_jpeg(&jpeg).unwrap().dimensions(), (161, 97));

    // Asked again: from memory, not made again; another scale is another entry.
    let again = fc
        .frame_thumbnail(&tl, 1, Scale::Quarter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.source, Some(Source::Memory));
    assert_eq!(again.jpeg, made.jpeg);
    let eighth = fc
        .frame_thumbnail(&tl, 1, Scale::Eighth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        codec::decode_jpeg(&eighth.jpeg).unwrap().dimensions(),
        (21, 13)
    );
    assert_eq!(fc.stats().thumbnails, 2);
    // Another process on this machine finds it on disk.
    let neighbour = cache(env, "thumbs");
    let shared = neighbour
        .frame_thumbnail(&tl, 1, Scale::Quarter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.source, Some(Source::Disk));
    assert_eq!(shared.jpeg, made.jpeg);
    assert_eq!(neighbour.stats().thumbnails, 0);

    // Dropping the frame's local copies drops its thumbnails.
    let frame_key = layout::frame_key(&tl, 1).unwrap();
    fc.chain().invalidate_local(&frame_key).await;
    let remade = fc
        .frame_thumbnail(&tl, 1, Scale::Quarter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(remade.source, None);
    assert_eq!(
        remade.jpeg, made.jpeg,
        "the same bytes make the same thumbnail"
    );

    // The frame rebuilt elsewhere: the thumbnail follows the new bytes.
    writer
        .cache_frames(
            &tl,
            &[sized(0, 0), sized(1, 60)],
            WriteOptions::default().quality(90),
        )
        .await
        .unwrap();
    let fresh = fc
        .frame_thumbnail(&tl, 1, Scale::Quarter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.source, None);
    assert_ne!(fresh.frame_blake3, made.frame_blake3);
    assert_ne!(fresh.jpeg, made.jpeg);
}

backend_tests!(
    thumbnails_are_scaled_kept_apart_and_follow_their_frame,
    round_trip_keeps_metadata_and_order,
    b64_is_the_stored_jpeg,
    seed_written_timelines_load_with_defaults,
    stray_objects_are_skipped_and_bad_jpegs_named,
    rebuilding_with_fewer_frames_removes_the_extras,
    partial_timelines_are_distinguishable,
    overlays_round_trip_per_frame,
    clear_removes_every_tier,
    rebuilt_timelines_are_not_served_stale,
    invalid_timeline_ids_touch_nothing,
);

#[test]
fn frames_to_b64_encodes_in_order_with_timestamps() {
    let mut input = frames(6);
    input.swap(0, 5);
    let out = frames_to_b64(&input, 75).unwrap();
    assert_eq!(
        out.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    for f in &out {
        let jpeg = B64.decode(&f.jpeg_b64).unwrap();
        let img = codec::decode_jpeg(&jpeg).unwrap();
        assert_eq!(img.dimensions(), (64, 48));
        assert_eq!(f.timestamp, frame(f.seq, 1, 1).timestamp);
    }
}
