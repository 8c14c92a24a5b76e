//! What warm reads of selections ask the origin, counted: a selection is revalidated by the
//! listing pages covering its keys (not a request per frame), concurrent reads share a
//! page, a revalidation window lets warm batches make no request at all, and in the strict
//! default a frame rewritten at the origin is never served stale.

mod common;

use bytes::Bytes;
use common::{Env, Instrumented, jpeg_variant, unique};
use framecache::WriteOptions;
use framecache::{EncodedFrame, FrameCache, LoadOptions, Metrics, Seqs, layout};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

const FRAMES: u64 = 240;

async fn write(env: &Env, tl: &str, n: u64) {
    let writer = FrameCache::new(&env.config(&env.disk_dir(&format!("writer-{tl}")))).unwrap();
    let frames = (0..n)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: seq / 10,
            timestamp: seq as f64 / 30.0,
            perceptual_hash: format!("ph{seq}"),
            jpeg: jpeg_variant(seq, 0),
        })
        .collect();
    writer
        .cache_jpegs(tl, frames, WriteOptions::default())
        .await
        .unwrap();
}

/// A timeline of [`FRAMES`] frames, loaded once through a cache on disk directory `disk`
/// so that every frame is on that machine's disk.
async fn warm_timeline(env: &Env, disk: &str) -> String {
    let tl = unique("pages");
    write(env, &tl, FRAMES).await;
    let warmer = FrameCache::new(&env.config(&env.disk_dir(disk))).unwrap();
    assert_eq!(
        warmer.load_jpegs(&tl, Seqs::All).await.unwrap().len(),
        FRAMES as usize
    );
    tl
}

/// A new handle (a new process, as far as caches go) on the warm disk directory `disk`,
/// with its origin requests counted.
fn counted(env: &Env, disk: &str, window: Duration) -> (FrameCache, Arc<Instrumented>) {
    let config = env.config(&env.disk_dir(disk));
    let (chain, probe) = env.instrumented(&env.disk_dir(disk));
    let fc = FrameCache::from_chain(chain, config.concurrency)
        .with_decoded_tiers(&config)
        .with_revalidate_after(window);
    (fc, probe)
}

/// Batches of 8 seqs in a shuffled order, as a `DataLoader` with `shuffle=True` asks.
fn batches() -> Vec<Vec<u64>> {
    let mut order: Vec<u64> = (0..FRAMES).map(|i| (i * 97 + 13) % FRAMES).collect();
    order.dedup();
    assert_eq!(
        order
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        FRAMES as usize
    );
    order.chunks(8).map(<[u64]>::to_vec).collect()
}

async fn a_warm_range_of_240_costs_at_most_three_requests(env: &Env) {
    let tl = warm_timeline(env, "range").await;
    let (fc, probe) = counted(env, "range", Duration::ZERO);
    let frames = fc
        .load_frames(&tl, Seqs::Range(0..FRAMES), LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(frames.len(), FRAMES as usize);
    assert_eq!(frames[123].chunk_id, 12, "with the manifest's metadata");
    assert!(
        probe.requests() <= 3,
        "{} requests: {} reads, {} stats, {} listings, {} pages",
        probe.requests(),
        probe.reads(),
        probe.stats.load(SeqCst),
        probe.lists.load(SeqCst),
        probe.pages.load(SeqCst)
    );
    assert_eq!(probe.stats.load(SeqCst), 0, "no stat per frame");
    // Again in the same process: the page alone (it lists the manifest's version, which
    // this process has read).
    let before = probe.requests();
    let again = fc.load_jpegs(&tl, Seqs::Range(0..FRAMES)).await.unwrap();
    assert_eq!(again.len(), FRAMES as usize);
    assert_eq!(probe.requests() - before, 1);
}

async fn thirty_warm_batches_of_eight_cost_a_request_each_or_none_in_the_window(env: &Env) {
    let tl = warm_timeline(env, "batches").await;
    let batches = batches();
    assert_eq!(batches.len(), 30);
    // Strict: each batch confirms its page (which lists the manifest's version).
    let (fc, probe) = counted(env, "batches", Duration::ZERO);
    for batch in &batches {
        let frames = fc
            .load_frames(&tl, Seqs::List(batch.clone()), LoadOptions::default())
            .await
            .unwrap();
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        assert_eq!(&seqs, batch);
    }
    assert!(probe.requests() <= 35, "{} requests", probe.requests());
    assert_eq!(probe.stats.load(SeqCst), 0);
    // Within a window: the first batch confirms the page, the other 29 ask nothing.
    let (fc, probe) = counted(env, "batches", Duration::from_secs(3600));
    fc.load_frames(&tl, Seqs::List(batches[0].clone()), LoadOptions::default())
        .await
        .unwrap();
    let first = probe.requests();
    assert!(first <= 3, "{first} requests");
    for batch in &batches[1..] {
        fc.load_frames(&tl, Seqs::List(batch.clone()), LoadOptions::default())
            .await
            .unwrap();
    }
    // Single frames too, as a dataset's `__getitem__` reads them.
    let one = fc
        .load_frame(&tl, 17, LoadOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((one.seq, one.chunk_id), (17, 1));
    assert_eq!(probe.requests(), first, "no request after the first batch");
}

/// Eight reads begun while the first one's page request is in flight share it (its
/// request is held until all have begun: the last future of the join releases it).
async fn concurrent_reads_share_one_page(env: &Env) {
    let tl = warm_timeline(env, "shared").await;
    let gate = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let probe = Arc::new(Instrumented::new(env.origin(&metrics)).hold_access(
        &layout::frames_prefix(&tl).unwrap(),
        1,
        gate.path().to_path_buf(),
    ));
    let config = env.config(&env.disk_dir("shared"));
    let fc = FrameCache::from_chain(config.build_with_origin(probe.clone(), metrics), 8);
    let mut reads: Vec<BoxFuture<'_, usize>> = batches()
        .into_iter()
        .take(8)
        .map(|batch| {
            let fc = &fc;
            let tl = &tl;
            async move { fc.load_jpegs(tl, Seqs::List(batch)).await.unwrap().len() }.boxed()
        })
        .collect();
    // Polled after the eight, which have begun (and the first holds its page) by then.
    let go = gate.path().join("go");
    reads.push(
        async move {
            std::fs::write(go, b"").unwrap();
            8
        }
        .boxed(),
    );
    let lens = futures::future::join_all(reads).await;
    assert_eq!(lens, vec![8; 9]);
    assert_eq!(probe.pages.load(SeqCst), 1, "one listing page for 8 reads");
    assert_eq!(probe.stats.load(SeqCst), 0);
}

async fn a_rewritten_frame_is_not_served_stale_unless_in_the_window(env: &Env) {
    let tl = warm_timeline(env, "rewrite").await;
    let (strict, _) = counted(env, "rewrite", Duration::ZERO);
    let (windowed, _) = counted(env, "rewrite", Duration::from_secs(3600));
    let batch = Seqs::List(vec![3, 150, 42]);
    for fc in [&strict, &windowed] {
        let before = fc.load_jpegs(&tl, batch.clone()).await.unwrap();
        assert_eq!(before[1].jpeg, jpeg_variant(150, 0));
    }
    let rewritten: Bytes = jpeg_variant(150, 9);
    let origin = env.origin(&Arc::new(Metrics::default()));
    origin
        .put(&layout::frame_key(&tl, 150).unwrap(), rewritten.clone())
        .await
        .unwrap();
    let after = strict.load_jpegs(&tl, batch.clone()).await.unwrap();
    assert_eq!(after[1].jpeg, rewritten, "strict: the origin's bytes");
    assert_eq!(
        after[1].chunk_id, 0,
        "the manifest no longer describes them"
    );
    assert_eq!(after[0].jpeg, jpeg_variant(3, 0));
    let frames = strict
        .load_frames(&tl, Seqs::List(vec![150]), LoadOptions::default())
        .await
        .unwrap();
    let fresh = framecache::codec::decode_jpeg(&rewritten).unwrap();
    assert_eq!(frames[0].image.as_raw(), fresh.as_raw());
    // Within its window a handle serves what it confirmed: what the window is for.
    let stale = windowed.load_jpegs(&tl, batch.clone()).await.unwrap();
    assert_eq!(stale[1].jpeg, jpeg_variant(150, 0), "the window's copy");
    // A new handle confirms the page afresh.
    let (renewed, _) = counted(env, "rewrite", Duration::from_secs(3600));
    let renewed = renewed.load_jpegs(&tl, batch).await.unwrap();
    assert_eq!(renewed[1].jpeg, rewritten);
}

/// Keys the planned pages miss (a stray object, a timeline longer than the manifest says)
/// are listed from just before them: never a frame missed or invented.
async fn pages_that_miss_a_key_are_listed_again_from_it(env: &Env) {
    let tl = unique("pages-stray");
    write(env, &tl, 1500).await;
    let origin = env.origin(&Arc::new(Metrics::default()));
    // Strays sorting among the frames shift every page after them.
    for name in ["1.jpg.bak", "10a", "100.png", "2x"] {
        let key = format!("{}{name}", layout::frames_prefix(&tl).unwrap());
        origin
            .put(&key, Bytes::from_static(b"stray"))
            .await
            .unwrap();
    }
    let (fc, probe) = counted(env, "stray", Duration::ZERO);
    let asked: Vec<u64> = vec![999, 0, 1499, 5, 1000, 731, 99, 1234];
    let seqs: Vec<u64> = fc
        .load_jpegs(&tl, Seqs::List(asked.clone()))
        .await
        .unwrap()
        .iter()
        .map(|j| j.seq)
        .collect();
    assert_eq!(seqs, asked);
    let err = fc
        .load_jpegs(&tl, Seqs::List(vec![4, 1500]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, framecache::Error::NoFrame { seq: 1500, .. }),
        "{err}"
    );
    assert_eq!(probe.stats.load(SeqCst), 0);
}

backend_tests!(
    a_warm_range_of_240_costs_at_most_three_requests,
    thirty_warm_batches_of_eight_cost_a_request_each_or_none_in_the_window,
    concurrent_reads_share_one_page,
    a_rewritten_frame_is_not_served_stale_unless_in_the_window,
    pages_that_miss_a_key_are_listed_again_from_it,
);
