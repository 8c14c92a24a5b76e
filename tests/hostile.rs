//! Damaged and hostile objects at the origin: each load fails with an error naming the frame
//! (the process lives), and nothing of a bad frame is kept in any tier; the size and pixel
//! limits refuse before downloading or allocating; bad metadata is refused at write or
//! counted at read.

mod common;

use bytes::Bytes;
use common::Env;
use framecache::tier::Limit;
use framecache::{
    CacheConfig, EncodedFrame, Error, Frame, FrameCache, LoadOptions, Scale, Source, codec, layout,
    synthetic_frame,
};
use framecache::{Seqs, WriteOptions};
use std::path::Path;

const TL: &str = "hostile";

/// A real frame's JPEG, large enough that half of it is well past the headers.
fn jpeg(seq: u64) -> Vec<u8> {
    codec::encode_jpeg(&synthetic_frame(seq, 320, 240).image, 90).unwrap()
}

/// A small JPEG whose frame header claims 65500x65500: 12.9 GB of pixels from a few
/// hundred bytes.
fn bomb() -> Vec<u8> {
    let mut jpeg = codec::encode_jpeg(&synthetic_frame(1, 16, 16).image, 50).unwrap();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&65_500u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65_500u16.to_be_bytes());
    // Headers through the scan header and a little data: libjpeg needs its tables.
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    jpeg.truncate(sos + 32);
    jpeg
}

fn encoded(seq: u64, jpeg: Vec<u8>) -> EncodedFrame {
    EncodedFrame {
        seq,
        jpeg: Bytes::from(jpeg),
        timestamp: seq as f64,
        chunk_id: 1,
        perceptual_hash: String::new(),
    }
}

/// Stores frames 0 and 2 whole and frame 1 as `bad`, through a cache of its own.
async fn store_with_bad_frame(config: &CacheConfig, bad: Vec<u8>) {
    let writer = FrameCache::new(&CacheConfig {
        disk: None,
        ..config.clone()
    })
    .unwrap();
    let frames = vec![encoded(0, jpeg(0)), encoded(1, bad), encoded(2, jpeg(2))];
    writer
        .cache_jpegs(TL, frames, WriteOptions::default())
        .await
        .unwrap();
}

/// The local tier holding frame `seq` at its current version, if any.
async fn kept_in(fc: &FrameCache, seq: u64) -> Option<Source> {
    let key = layout::frame_key(TL, seq).unwrap();
    let info = fc.chain().origin().stat(&key).await.unwrap().unwrap();
    fc.chain().local_source(&key, info.version.as_ref())
}

/// Names of the raw decoded entries under a cache directory.
fn decoded_names(cache_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(shards) = std::fs::read_dir(cache_dir.join("decoded/v1")) else {
        return names;
    };
    for shard in shards.flatten().filter(|s| s.path().is_dir()) {
        for file in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let bytes = std::fs::read(file.path()).unwrap();
            let header = &bytes[..bytes.len().min(4096)];
            names.push(String::from_utf8_lossy(header).into_owned());
        }
    }
    names
}

/// No tier holds frame 1, raw or decoded; frame 0, which decodes, is held (so the checks
/// can see what they look for).
async fn assert_nothing_kept(fc: &FrameCache, cache_dir: &Path) {
    assert_eq!(kept_in(fc, 1).await, None, "the bad frame's JPEG is kept");
    fc.load_frame(TL, 0, LoadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(kept_in(fc, 0).await.is_some());
    let bad = format!("{}#", layout::frame_key(TL, 1).unwrap());
    let names = decoded_names(cache_dir);
    assert!(
        !names.iter().any(|n| n.contains(&bad)),
        "a decoded entry of the bad frame"
    );
}

async fn truncated_frames_fail(decoded_tiers: bool) {
    let env = Env::fs();
    let dir = env.disk_dir("a");
    let mut config = env.config(&dir);
    if !decoded_tiers {
        config.decoded.memory_capacity = 0;
        config.decoded.disk_capacity = 0;
    }
    let whole = jpeg(1);
    store_with_bad_frame(&config, whole[..whole.len() / 2].to_vec()).await;
    let fc = FrameCache::new(&config).unwrap();
    for round in 0..2 {
        let err = fc
            .load_frames(TL, Seqs::All, LoadOptions::default())
            .await
            .unwrap_err();
        let Error::Decode { key, .. } = &err else {
            panic!("round {round}: expected a decode error, got {err:?}");
        };
        assert_eq!(key, &layout::frame_key(TL, 1).unwrap());
        let err = fc
            .load_frame(TL, 1, LoadOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        let scaled = LoadOptions {
            scale: Scale::Quarter,
            ..LoadOptions::default()
        };
        let err = fc.load_frame(TL, 1, scaled).await.unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        assert_nothing_kept(&fc, &dir).await;
    }
    // Another process on the machine finds nothing either.
    let other = FrameCache::new(&config).unwrap();
    assert!(matches!(
        other.load_frame(TL, 1, LoadOptions::default()).await,
        Err(Error::Decode { .. })
    ));
    assert!(
        other
            .load_frame(TL, 0, LoadOptions::default())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_truncated_frame_is_an_error_and_kept_nowhere() {
    truncated_frames_fail(true).await;
}

#[tokio::test]
async fn a_truncated_frame_is_an_error_without_decoded_tiers() {
    truncated_frames_fail(false).await;
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_from_its_header() {
    let env = Env::fs();
    let dir = env.disk_dir("a");
    let config = env.config(&dir);
    store_with_bad_frame(&config, bomb()).await;
    let fc = FrameCache::new(&config).unwrap();
    let err = fc
        .load_frames(TL, Seqs::All, LoadOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::FrameTooLarge {
            key,
            width,
            height,
            limit,
        } => {
            assert_eq!(key, &layout::frame_key(TL, 1).unwrap());
            assert_eq!((*width, *height), (65_500, 65_500));
            assert_eq!(*limit, codec::DEFAULT_MAX_FRAME_PIXELS);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("65500x65500") && text.contains("max_frame_pixels"),
        "{text}"
    );
    assert_nothing_kept(&fc, &dir).await;
    // Without decoded tiers too.
    let plain = FrameCache::new(&CacheConfig {
        decoded: framecache::DecodedConfig {
            memory_capacity: 0,
            disk_capacity: 0,
            ..Default::default()
        },
        ..config.clone()
    })
    .unwrap();
    assert!(matches!(
        plain.load_frame(TL, 1, LoadOptions::default()).await,
        Err(Error::FrameTooLarge { .. })
    ));
}

#[tokio::test]
async fn max_frame_pixels_is_a_setting() {
    let env = Env::fs();
    let mut config = env.config(&env.disk_dir("a"));
    let writer = FrameCache::new(&config).unwrap();
    let frames: Vec<Frame> = (0..2)
        .map(|seq| Frame {
            seq,
            ..synthetic_frame(seq, 64, 48)
        })
        .collect();
    writer
        .cache_frames(TL, &frames, WriteOptions::default())
        .await
        .unwrap();
    config.decoded.max_frame_pixels = 64 * 48 - 1;
    config.disk = Some(framecache::DiskConfig {
        dir: env.disk_dir("b"),
        capacity: 1 << 30,
        ..Default::default()
    });
    let strict = FrameCache::new(&config).unwrap();
    let err = strict
        .load_frames(TL, Seqs::All, LoadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FrameTooLarge { width: 64, height: 48, limit, .. } if limit == 64 * 48 - 1),
        "{err:?}"
    );
    config.decoded.max_frame_pixels = 64 * 48;
    let exact = FrameCache::new(&config).unwrap();
    assert_eq!(
        exact
            .load_frames(TL, Seqs::All, LoadOptions::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_progressive_jpeg_of_too_many_scans_is_refused() {
    let env = Env::fs();
    let dir = env.disk_dir("a");
    let config = env.config(&dir);
    store_with_bad_frame(&config, include_bytes!("data/many_scans.jpg").to_vec()).await;
    let fc = FrameCache::new(&config).unwrap();
    let err = fc
        .load_frame(TL, 1, LoadOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { reason, .. } if reason.contains("scans")),
        "{err:?}"
    );
    assert_nothing_kept(&fc, &dir).await;
}

#[tokio::test]
async fn an_object_over_max_object_size_is_refused_before_it_is_read() {
    let env = Env::fs();
    let disk = env.disk_dir("a");
    let mut config = env.config(&disk);
    // Frame 1 is four times the others: only it is over the limit.
    let big = codec::encode_jpeg(&synthetic_frame(1, 640, 480).image, 90).unwrap();
    let size = big.len() as u64;
    store_with_bad_frame(&config, big).await;
    config.origin.max_object_size = size - 1;
    let (chain, probe) = env.instrumented(&disk);
    let chain = chain.with_max_object_size(config.origin.max_object_size);
    let fc = FrameCache::from_chain(chain, 4).with_decoded_tiers(&config);
    let err = fc
        .load_frame(TL, 1, LoadOptions::default())
        .await
        .unwrap_err();
    match &err {
        Error::ObjectTooLarge {
            key,
            size: s,
            limit,
            what,
        } => {
            assert_eq!(*what, "max_object_size");
            assert_eq!(key, &layout::frame_key(TL, 1).unwrap());
            assert_eq!((*s, *limit), (size, size - 1));
        }
        other => panic!("expected ObjectTooLarge, got {other:?}"),
    }
    // Two reads: the manifest's head and the chunk holding frame 1's entry. The frame was
    // refused from its stat'ed size.
    assert_eq!(probe.reads(), 2);
    assert!(matches!(
        fc.load_frames(TL, Seqs::All, LoadOptions::default()).await,
        Err(Error::ObjectTooLarge { .. })
    ));
    assert_nothing_kept(&fc, &disk).await;
    // A read without a listed size is refused once read, and kept nowhere.
    let key = layout::frame_key(TL, 1).unwrap();
    let err = fc.chain().get_hit(&key).await.unwrap_err();
    assert!(matches!(err, Error::ObjectTooLarge { .. }), "{err:?}");
    assert_eq!(fc.chain().local_source(&key, None), None);
}

#[tokio::test]
async fn a_non_finite_timestamp_is_refused_before_anything_is_written() {
    let env = Env::fs();
    let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let frames = vec![
            Frame {
                seq: 0,
                ..synthetic_frame(0, 32, 16)
            },
            Frame {
                seq: 7,
                timestamp: bad,
                ..synthetic_frame(7, 32, 16)
            },
        ];
        let err = fc
            .cache_frames(TL, &frames, WriteOptions::default())
            .await
            .unwrap_err();
        match &err {
            Error::Invalid { what, value, .. } => {
                assert_eq!(*what, "frame timestamp");
                assert!(value.contains("seq 7"), "{value}");
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let jpegs = vec![encoded(0, jpeg(0)), {
            let mut f = encoded(7, jpeg(7));
            f.timestamp = bad;
            f
        }];
        let err = fc
            .cache_jpegs(TL, jpegs, WriteOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err:?}");
        assert!(!fc.exists(TL).await.unwrap(), "something was written");
    }
}

#[tokio::test]
async fn an_unreadable_manifest_is_counted_and_its_frames_still_load() {
    let env = Env::fs();
    let config = env.config(&env.disk_dir("a"));
    let fc = FrameCache::new(&config).unwrap();
    let frames: Vec<Frame> = (0..2)
        .map(|seq| Frame {
            seq,
            timestamp: 1.5,
            ..synthetic_frame(seq, 32, 16)
        })
        .collect();
    fc.cache_frames(TL, &frames, WriteOptions::default())
        .await
        .unwrap();
    // A head whose frame count is JSON's `null` (what a NaN made of a number before writes
    // refused them) does not parse.
    let key = layout::manifest_key(TL).unwrap();
    let origin = fc.chain().origin();
    let text = String::from_utf8(
        origin
            .get(&key, Limit::object(1 << 30))
            .await
            .unwrap()
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let broken = text.replacen("\"count\":2", "\"count\":null", 1);
    assert_ne!(broken, text);
    origin.put(&key, Bytes::from(broken)).await.unwrap();
    let loaded = fc
        .load_frames(TL, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].timestamp, 0.0);
    assert_eq!(fc.stats().unreadable_manifests, 1);
}

#[test]
fn a_cache_directory_that_cannot_hold_the_ledger_counts_privately() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let config = CacheConfig {
        origin: framecache::OriginConfig {
            backend: framecache::Backend::Memory,
            ..Default::default()
        },
        disk: Some(framecache::DiskConfig {
            dir: blocker.join("cache"),
            capacity: 1 << 20,
            ..Default::default()
        }),
        ..CacheConfig::default()
    };
    let fc = FrameCache::new(&config).unwrap();
    // The JPEG tier and the decoded tier each open one.
    assert_eq!(fc.stats().private_ledgers, 2);
}

#[tokio::test]
async fn frames_that_decode_still_load_from_every_tier() {
    // The limits and checks above refuse nothing ordinary: a progressive JPEG (a few
    // scans) and the usual frames load, twice (the second time from the tiers).
    let env = Env::fs();
    let config = env.config(&env.disk_dir("a"));
    store_with_bad_frame(&config, include_bytes!("data/progressive.jpg").to_vec()).await;
    let fc = FrameCache::new(&config).unwrap();
    for _ in 0..2 {
        let frames = fc
            .load_frames(TL, Seqs::All, LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].image.dimensions(), (32, 24));
    }
    assert!(kept_in(&fc, 1).await.is_some());
}
