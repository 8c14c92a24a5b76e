//! Seqs at the end of their range: a timeline (or a hostile manifest) holding `u64::MAX`,
//! and selections naming it, read without overflowing, looping or panicking.

mod common;

use common::{Env, jpeg_variant, unique};
use framecache::{CacheConfig, EncodedFrame, FrameCache, Seqs};
use framecache::{LoadOptions, PageStart, WriteOptions};
use futures::StreamExt;

const LAST: u64 = u64::MAX;

fn encoded(seq: u64) -> EncodedFrame {
    EncodedFrame {
        seq,
        jpeg: jpeg_variant(seq % 7, 1),
        timestamp: 0.5,
        chunk_id: 1,
        perceptual_hash: String::new(),
    }
}

/// A timeline whose manifest and listing end at `u64::MAX`: streamed (which walks the
/// manifest ahead of the listing), listed, paged, loaded whole and by selection.
async fn a_timeline_ending_at_the_largest_seq_reads_whole(env: &Env) {
    let config = CacheConfig {
        memory: framecache::MemoryConfig { capacity: 0 },
        ..env.config(&env.disk_dir("max"))
    };
    let tl = unique("maxseq");
    let fc = FrameCache::new(&config).unwrap();
    let seqs = [0, 1, LAST - 1, LAST];
    let frames = seqs.iter().map(|&s| encoded(s)).collect();
    fc.cache_jpegs(&tl, frames, WriteOptions::default())
        .await
        .unwrap();

    let fresh = FrameCache::new(&config).unwrap();
    let streamed: Vec<u64> = fresh
        .stream_frames(&tl, Seqs::All, LoadOptions::default())
        .map(|f| f.unwrap().0.seq)
        .take(10)
        .collect()
        .await;
    assert_eq!(streamed, seqs);
    let listed: Vec<u64> = fresh
        .list_frames(&tl)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(listed, seqs);
    let page = fresh
        .list_frames_page(&tl, PageStart::Seq(LAST), 10)
        .await
        .unwrap();
    assert_eq!(
        page.frames.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [LAST]
    );
    assert_eq!(page.next, None);
    let loaded: Vec<u64> = fresh
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|f| f.seq)
        .collect();
    assert_eq!(loaded, seqs);
    assert_eq!(
        fresh
            .load_frame(&tl, LAST, LoadOptions::default())
            .await
            .unwrap()
            .unwrap()
            .seq,
        LAST
    );

    // Selections that name it, as `--seqs` and Python pass them.
    for (text, want) in [
        ("18446744073709551615", vec![LAST]),
        (
            "18446744073709551614..=18446744073709551615",
            vec![LAST - 1, LAST],
        ),
        ("18446744073709551614..18446744073709551615", vec![LAST - 1]),
    ] {
        let sel = Seqs::parse(text).unwrap();
        let (n, stream) = fresh.stream_jpegs(&tl, sel).await.unwrap();
        let got: Vec<u64> = stream.map(|j| j.unwrap().seq).collect().await;
        assert_eq!(n, want.len(), "{text}");
        assert_eq!(got, want, "{text}");
    }
    assert!(Seqs::parse("0..=18446744073709551615").is_err());
    assert!(Seqs::parse("18446744073709551616").is_err());
}

/// The whole-timeline stream over a timeline whose last seq is `u64::MAX` (long enough for
/// the stream to run ahead of its listing) ends after that seq instead of wrapping around to
/// seq 0 (which served the timeline again, endlessly) or overflowing.
async fn a_stream_ahead_of_the_listing_stops_after_the_largest_seq(env: &Env) {
    let tl = unique("maxseq-ahead");
    let writer = FrameCache::new(&CacheConfig {
        disk: None,
        ..env.config(&env.disk_dir("unused"))
    })
    .unwrap();
    // Over 1,000 frames: the stream reads the manifest ahead of the listing.
    let seqs: Vec<u64> = (0..1001).chain([LAST]).collect();
    let frames = seqs.iter().map(|&s| encoded(s)).collect();
    writer
        .cache_jpegs(&tl, frames, WriteOptions::default())
        .await
        .unwrap();

    let fc = FrameCache::new(&env.config(&env.disk_dir("ahead"))).unwrap();
    let mut stream = Box::pin(fc.stream_frames(&tl, Seqs::All, LoadOptions::default()));
    let mut seen = Vec::new();
    while let Some(item) = tokio::time::timeout(std::time::Duration::from_secs(60), stream.next())
        .await
        .expect("a frame or the end within the bound")
    {
        seen.push(item.unwrap().0.seq);
        assert!(
            seen.len() <= seqs.len(),
            "the stream wrapped around to seq {}",
            seen[seqs.len()]
        );
    }
    assert_eq!(seen, seqs);
}

backend_tests!(
    a_timeline_ending_at_the_largest_seq_reads_whole,
    a_stream_ahead_of_the_listing_stops_after_the_largest_seq,
);
