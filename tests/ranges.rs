//! Reads of ranges and selections on real backends: order and duplicates kept, a missing
//! seq named, costs by what is asked (origin requests counted), the first frame of a
//! whole-timeline stream before its listing, revalidation and offline reads per range, the
//! manifest in chunks and its paged index.

mod common;

use bytes::Bytes;
use common::{Env, cache_with_failing_origin, jpeg_variant, unique};
use framecache::{EncodedFrame, Error, FrameCache, LoadOptions, Metrics, Seqs, WriteMode, layout};
use framecache::{PageStart, WriteOptions};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

fn cache(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(name))).unwrap()
}

/// `n` frames, each its own JPEG, or (`shared`) 16 JPEGs over and over, for long timelines
/// whose bytes the test does not look at.
fn encoded(n: u64, shared: bool) -> Vec<EncodedFrame> {
    let few: Vec<Bytes> = (0..16).map(|v| jpeg_variant(v, 0)).collect();
    (0..n)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: 100 + seq / 10,
            timestamp: seq as f64 / 30.0,
            perceptual_hash: format!("ph{seq}"),
            jpeg: if shared {
                few[(seq % 16) as usize].clone()
            } else {
                jpeg_variant(seq, 0)
            },
        })
        .collect()
}

async fn write(env: &Env, tl: &str, n: u64) {
    let writer = cache(env, &format!("writer-{tl}"));
    let frames = encoded(n, n > 1000);
    writer
        .cache_jpegs(tl, frames, WriteOptions::default())
        .await
        .unwrap();
}

/// Frames stored as the Python module stores them: JPEGs only, no manifest.
async fn write_unmanaged(env: &Env, tl: &str, n: u64) {
    let origin = env.origin(&Arc::new(Metrics::default()));
    for seq in 0..n {
        let key = layout::frame_key(tl, seq).unwrap();
        origin.put(&key, jpeg_variant(seq, 0)).await.unwrap();
    }
}

async fn seqs_of(fc: &FrameCache, tl: &str, seqs: Seqs) -> Result<Vec<u64>, Error> {
    let jpegs = fc.load_jpegs(tl, seqs).await?;
    Ok(jpegs.iter().map(|j| j.seq).collect())
}

async fn ranges_keep_order_and_duplicates_with_and_without_a_manifest(env: &Env) {
    let (managed, unmanaged) = (unique("rng-managed"), unique("rng-unmanaged"));
    write(env, &managed, 40).await;
    write_unmanaged(env, &unmanaged, 40).await;
    for tl in [&managed, &unmanaged] {
        let fc = cache(env, &format!("reader-{tl}"));
        assert_eq!(
            seqs_of(&fc, tl, Seqs::Range(10..20)).await.unwrap(),
            (10..20).collect::<Vec<_>>()
        );
        assert_eq!(
            seqs_of(&fc, tl, Seqs::List(vec![7, 3, 7, 39]))
                .await
                .unwrap(),
            [7, 3, 7, 39]
        );
        let jpegs = fc.load_jpegs(tl, vec![5, 30].into()).await.unwrap();
        assert_eq!(jpegs[0].jpeg, jpeg_variant(5, 0));
        assert_eq!(jpegs[1].jpeg, jpeg_variant(30, 0));
        let frames = fc
            .load_frames(tl, Seqs::Range(30..33), LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [30, 31, 32]
        );
        // The manifest's metadata where there is one, the Python module's defaults where not.
        let expected_chunk = if tl == &managed { 103 } else { 0 };
        assert_eq!(frames[0].chunk_id, expected_chunk, "{tl}");
        assert!(
            fc.load_jpegs(tl, Seqs::Range(5..5))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

async fn a_missing_seq_is_an_error_naming_it(env: &Env) {
    let (managed, unmanaged) = (unique("rng-missing"), unique("rng-missing-raw"));
    write(env, &managed, 10).await;
    write_unmanaged(env, &unmanaged, 10).await;
    let nothing = unique("rng-nothing");
    for tl in [&managed, &unmanaged, &nothing] {
        let fc = cache(env, &format!("missing-{tl}"));
        // The first seq missing, in the order asked.
        let first_missing = |seqs: &[u64]| if tl == &nothing { seqs[0] } else { 10 };
        for seqs in [vec![8, 9, 10, 11], vec![3, 10, 2]] {
            let missing = first_missing(&seqs);
            for asked in [Seqs::Range(seqs[0]..seqs[0] + 4), Seqs::List(seqs.clone())] {
                if matches!(asked, Seqs::Range(_)) && seqs[0] == 3 {
                    continue;
                }
                let err = fc.load_jpegs(tl, asked.clone()).await.unwrap_err();
                assert!(
                    matches!(&err, Error::NoFrame { timeline, seq } if timeline == tl && *seq == missing),
                    "{tl} {asked:?}: {err}"
                );
                let err = fc
                    .load_frames(tl, asked, LoadOptions::default())
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::NoFrame { seq, .. } if seq == missing),
                    "{err}"
                );
            }
        }
        // The single-frame lookup answers None, as it always has.
        assert!(
            fc.load_frame(tl, 10, LoadOptions::default())
                .await
                .unwrap()
                .is_none()
        );
    }
}

/// A range of k frames in a long timeline: the listing pages covering its keys (one or
/// two), one manifest head, the one chunk covering it and k reads; no whole listing, no
/// stat. Warm, in the same process: the page and the head.
async fn a_range_costs_what_it_asks_not_the_timeline(env: &Env) {
    let tl = unique("rng-cost");
    write(env, &tl, 2100).await;
    let (chain, probe) = env.instrumented(&env.disk_dir("cost"));
    let fc = FrameCache::from_chain(chain, 8);
    let frames = fc
        .load_frames(&tl, Seqs::Range(1500..1510), LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].chunk_id, 250, "metadata from the second chunk");
    assert_eq!(probe.lists.load(SeqCst), 0, "no whole listing");
    assert_eq!(probe.stats.load(SeqCst), 0, "no stat");
    let pages = probe.pages.load(SeqCst);
    assert!((1..=2).contains(&pages), "{pages} pages");
    assert_eq!(probe.reads(), 1 + 1 + 10, "head, one chunk, ten frames");
    let again = fc
        .load_frames(&tl, Seqs::Range(1500..1510), LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(again, frames);
    assert_eq!(probe.reads(), 12 + 1, "only the head again");
    assert_eq!(probe.pages.load(SeqCst), pages + 1, "and one page");
    // One frame from the middle: a stat, the head, one chunk, never the whole index.
    let before = probe.reads();
    let one = fc
        .load_frame(&tl, 777, LoadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one.seq, one.chunk_id), (777, 177));
    assert_eq!(
        probe.reads() - before,
        1 + 1 + 1,
        "head, chunk 0, the frame"
    );
    assert_eq!(probe.stats.load(SeqCst), 1);
    assert_eq!(probe.lists.load(SeqCst), 0);
}

/// The whole-timeline stream of a timeline longer than one listing page yields its first
/// frames while the listing is held.
async fn the_first_frame_does_not_wait_for_the_listing(env: &Env) {
    let tl = unique("rng-first");
    write(env, &tl, 1200).await;
    let gate = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let probe = Arc::new(common::Instrumented::new(env.origin(&metrics)).hold_access(
        &layout::frames_prefix(&tl).unwrap(),
        1,
        gate.path().to_path_buf(),
    ));
    let chain = env
        .config(&env.disk_dir("first"))
        .build_with_origin(probe.clone(), metrics);
    let fc = FrameCache::from_chain(chain, 8);
    let mut stream = Box::pin(fc.stream_frames(&tl, Seqs::All, LoadOptions::default()));
    let mut seen = Vec::new();
    for _ in 0..40 {
        let (frame, _) = tokio::time::timeout(std::time::Duration::from_secs(60), stream.next())
            .await
            .expect("a frame within the bound while the listing is held")
            .unwrap()
            .unwrap();
        seen.push(frame.seq);
    }
    assert!(
        gate.path().join("ready").exists(),
        "the listing was started"
    );
    assert!(!gate.path().join("go").exists());
    std::fs::write(gate.path().join("go"), b"").unwrap();
    while let Some(item) = stream.next().await {
        seen.push(item.unwrap().0.seq);
    }
    assert_eq!(seen, (0..1200).collect::<Vec<_>>());
    assert_eq!(probe.lists.load(SeqCst), 1);
}

/// A frame the Python module rewrote inside a range is served fresh, its manifest
/// metadata dropped; its neighbours keep theirs.
async fn a_frame_rewritten_by_the_python_module_is_served_fresh(env: &Env) {
    let tl = unique("rng-rewrite");
    write(env, &tl, 20).await;
    let fc = cache(env, "rewrite-reader");
    let before = fc.load_jpegs(&tl, Seqs::Range(10..15)).await.unwrap();
    assert_eq!(before[2].jpeg, jpeg_variant(12, 0));
    let rewritten = jpeg_variant(12, 200);
    let origin = env.origin(&Arc::new(Metrics::default()));
    origin
        .put(&layout::frame_key(&tl, 12).unwrap(), rewritten.clone())
        .await
        .unwrap();
    let after = fc.load_jpegs(&tl, Seqs::Range(10..15)).await.unwrap();
    assert_eq!(after[2].jpeg, rewritten, "never the stale local copy");
    assert_eq!(after[2].chunk_id, 0, "the manifest no longer describes it");
    assert_eq!(after[1].chunk_id, 101);
    assert_eq!(after[3].jpeg, jpeg_variant(13, 0));
    let frames = fc
        .load_frames(&tl, Seqs::List(vec![12]), LoadOptions::default())
        .await
        .unwrap();
    let fresh = framecache::codec::decode_jpeg(&rewritten).unwrap();
    assert_eq!(frames[0].image.as_raw(), fresh.as_raw());
}

/// With the origin down, a range read before is served from what this machine kept (with
/// or without a manifest, and without any whole listing); one never read fails with the
/// origin's error.
async fn offline_ranges_read_what_was_kept(env: &Env) {
    let (managed, unmanaged) = (unique("rng-off"), unique("rng-off-raw"));
    write(env, &managed, 30).await;
    write_unmanaged(env, &unmanaged, 30).await;
    for tl in [&managed, &unmanaged] {
        let (fc, set_down) = cache_with_failing_origin(env, &format!("off-{tl}")).await;
        let online = fc.load_jpegs(tl, Seqs::Range(10..20)).await.unwrap();
        set_down(true);
        let offline = fc.load_jpegs(tl, Seqs::Range(12..18)).await.unwrap();
        assert_eq!(offline.len(), 6);
        assert_eq!(offline[0].jpeg, online[2].jpeg);
        assert_eq!(offline[0].chunk_id, online[2].chunk_id);
        assert!(fc.stats().offline_loads >= 1);
        let err = fc.load_jpegs(tl, Seqs::Range(18..22)).await.unwrap_err();
        assert!(err.is_origin_failure(), "{err}");
        set_down(false);
    }
}

/// A rebuild leaves one generation of manifest chunks; the paged index walks the timeline
/// from the chunks, with or without a manifest.
async fn rebuilds_drop_old_chunks_and_pages_walk_the_index(env: &Env) {
    let tl = unique("rng-pages");
    write(env, &tl, 2100).await;
    cache(env, &format!("rebuilder-{tl}"))
        .cache_jpegs(
            &tl,
            encoded(2050, true),
            WriteOptions::default().mode(WriteMode::Replace),
        )
        .await
        .unwrap();
    let origin = env.origin(&Arc::new(Metrics::default()));
    let chunks_prefix = layout::manifest_chunks_prefix(&tl).unwrap();
    let chunks = origin.list(&chunks_prefix).await.unwrap();
    assert_eq!(chunks.len(), 3, "one generation of three chunks");
    let fc = cache(env, "pages");
    let page = fc
        .list_frames_page(&tl, PageStart::Seq(1500), 100)
        .await
        .unwrap();
    assert_eq!(page.total, 2050);
    assert_eq!(page.frames.len(), 100);
    assert_eq!(page.frames[0].seq, 1500);
    assert_eq!(page.next, Some(1600));
    assert_eq!(page.frames[0].meta.as_ref().unwrap().chunk_id, 250);
    let last = fc
        .list_frames_page(&tl, PageStart::Seq(2000), 100)
        .await
        .unwrap();
    assert_eq!(last.frames.len(), 50);
    assert_eq!(last.next, None);
    // The listing skips the chunks without counting them as strays.
    assert_eq!(fc.list_frames(&tl).await.unwrap().len(), 2050);
    assert_eq!(fc.stats().skipped_names, 0);
    let raw = unique("rng-pages-raw");
    write_unmanaged(env, &raw, 12).await;
    let page = fc
        .list_frames_page(&raw, PageStart::Seq(3), 4)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.frames.iter().map(|e| e.seq).collect();
    assert_eq!(
        (seqs, page.next, page.total),
        (vec![3, 4, 5, 6], Some(7), 12)
    );
}

/// Pages start at a position as well as at a seq, and say where they start: on a timeline
/// of even seqs over three manifest chunks, position p is seq 2p, found from the chunk
/// counts; without a manifest, from the listing.
async fn pages_start_at_a_position_or_a_seq(env: &Env) {
    let tl = unique("rng-at");
    let writer = cache(env, &format!("writer-{tl}"));
    let mut frames = encoded(2 * 2500, true);
    frames.retain(|f| f.seq % 2 == 0);
    writer
        .cache_jpegs(&tl, frames, WriteOptions::default())
        .await
        .unwrap();
    let fc = cache(env, "at");
    let seqs = |p: &framecache::FramePage| p.frames.iter().map(|e| e.seq).collect::<Vec<_>>();
    // Across the first chunk's end (positions 998..1002).
    let page = fc
        .list_frames_page(&tl, PageStart::Position(998), 4)
        .await
        .unwrap();
    assert_eq!(
        (seqs(&page), page.offset, page.next, page.total),
        (vec![1996, 1998, 2000, 2002], 998, Some(2004), 2500)
    );
    assert_eq!(page.frames[0].meta.as_ref().unwrap().chunk_id, 100 + 199);
    // A seq between two frames starts at the next one, and the page says its position.
    let page = fc
        .list_frames_page(&tl, PageStart::Seq(4001), 2)
        .await
        .unwrap();
    assert_eq!((seqs(&page), page.offset), (vec![4002, 4004], 2001));
    let end = fc
        .list_frames_page(&tl, PageStart::Position(2499), 10)
        .await
        .unwrap();
    assert_eq!((seqs(&end), end.offset, end.next), (vec![4998], 2499, None));
    let beyond = fc
        .list_frames_page(&tl, PageStart::Position(9000), 10)
        .await
        .unwrap();
    assert_eq!((beyond.frames.len(), beyond.offset), (0, 2500));
    let raw = unique("rng-at-raw");
    write_unmanaged(env, &raw, 12).await;
    let page = fc
        .list_frames_page(&raw, PageStart::Position(10), 5)
        .await
        .unwrap();
    assert_eq!(
        (seqs(&page), page.offset, page.next),
        (vec![10, 11], 10, None)
    );
}

/// A timeline written by an earlier framecache (manifest format 1, every entry inline)
/// still loads with its metadata, whole or in ranges.
async fn manifests_of_the_inline_format_still_load(env: &Env) {
    let tl = unique("rng-v1");
    write_unmanaged(env, &tl, 5).await;
    let frames: Vec<serde_json::Value> = (0..5)
        .map(|seq| {
            let jpeg = jpeg_variant(seq, 0);
            serde_json::json!({"seq": seq, "chunk_id": 7, "timestamp": 1.5, "perceptual_hash": "p",
                "size": jpeg.len(), "blake3": blake3::hash(&jpeg).to_hex().to_string()})
        })
        .collect();
    let manifest = serde_json::json!({"format": 1, "generation": "old", "complete": true,
        "frames": frames});
    let origin = env.origin(&Arc::new(Metrics::default()));
    origin
        .put(
            &layout::manifest_key(&tl).unwrap(),
            Bytes::from(manifest.to_string()),
        )
        .await
        .unwrap();
    let fc = cache(env, "v1");
    let range = fc.load_jpegs(&tl, Seqs::Range(1..3)).await.unwrap();
    assert_eq!(range.iter().map(|j| j.chunk_id).collect::<Vec<_>>(), [7, 7]);
    assert_eq!(
        fc.load_frames(&tl, Seqs::All, LoadOptions::default())
            .await
            .unwrap()[4]
            .chunk_id,
        7
    );
}

backend_tests!(
    ranges_keep_order_and_duplicates_with_and_without_a_manifest,
    a_missing_seq_is_an_error_naming_it,
    a_range_costs_what_it_asks_not_the_timeline,
    the_first_frame_does_not_wait_for_the_listing,
    a_frame_rewritten_by_the_python_module_is_served_fresh,
    offline_ranges_read_what_was_kept,
    rebuilds_drop_old_chunks_and_pages_walk_the_index,
    pages_start_at_a_position_or_a_seq,
    manifests_of_the_inline_format_still_load,
);

#[test]
fn seqs_parse_as_the_cli_takes_them() {
    assert_eq!(
        Seqs::parse("50000..50300").unwrap(),
        Seqs::Range(50000..50300)
    );
    assert_eq!(Seqs::parse("3..=5").unwrap(), Seqs::Range(3..6));
    assert_eq!(Seqs::parse("7").unwrap(), Seqs::Range(7..8));
    for bad in ["", "a..b", "5..", "1..2..3", "0..=18446744073709551615"] {
        assert!(Seqs::parse(bad).unwrap_err().is_invalid_input(), "{bad}");
    }
    assert!(Seqs::parse("0..999999999999").is_err(), "too many to hold");
}
