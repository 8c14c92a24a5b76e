//! Writes that keep the other frames (the default, as the Python module's `cache_frames`),
//! on both backends: a timeline cached chunk by chunk ends with every chunk, a chunk written
//! again replaces only its seqs, the module and framecache writing alternately keep each
//! other's frames, an explicit rebuild removes the rest; what an append costs at the origin;
//! and two appender processes at once, in several interleavings produced exactly (each
//! holds one access of the manifest until the test releases it, as `tests/writers.rs` does).

mod common;

use bytes::Bytes;
use common::child::{CHILD_ENV, result_of, spawn_child, var};
use common::{Env, Instrumented, jpeg_variant as jpeg, unique};
use framecache::tier::{Limit, ObjectInfo, Origin, PutCondition, PutOutcome, Version};
use framecache::{
    ClearScope, EncodedFrame, Error, Frame, FrameCache, Metrics, TimelineStatus, WriteMode, codec,
    layout,
};
use framecache::{LoadOptions, PageStart, Seqs, WriteOptions};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

fn cache(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(&unique(name)))).unwrap()
}

/// Frames `first..first + n` of video chunk `chunk`, in colour `variant`.
fn encoded(first: u64, n: u64, chunk: u64, variant: u8) -> Vec<EncodedFrame> {
    (first..first + n)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: chunk,
            timestamp: seq as f64 / 25.0 + f64::from(variant),
            perceptual_hash: format!("ph{seq}-{variant}"),
            jpeg: jpeg(seq, variant),
        })
        .collect()
}

/// Frame `seq` as the Python module stores it: a JPEG at its key, nothing else.
async fn module_put(env: &Env, timeline: &str, seq: u64, variant: u8) {
    let origin = env.origin(&Arc::new(Metrics::default()));
    origin
        .put(
            &layout::frame_key(timeline, seq).unwrap(),
            jpeg(seq, variant),
        )
        .await
        .unwrap();
}

/// What a fresh machine loads: every frame's seq, bytes and metadata.
async fn loaded(env: &Env, timeline: &str) -> Vec<framecache::FrameJpeg> {
    cache(env, "reader")
        .load_jpegs(timeline, Seqs::All)
        .await
        .unwrap()
}

/// Asserts frame `f` is `variant`'s bytes with the metadata `encoded` gave it.
fn assert_written(f: &framecache::FrameJpeg, chunk: u64, variant: u8) {
    assert!(f.jpeg == jpeg(f.seq, variant), "frame {} bytes", f.seq);
    assert_eq!(f.chunk_id, chunk, "frame {} chunk id", f.seq);
    assert_eq!(
        f.timestamp,
        f.seq as f64 / 25.0 + f64::from(variant),
        "frame {} timestamp",
        f.seq
    );
}

/// Asserts frame `f` is `variant`'s bytes with the module's defaults.
fn assert_module(f: &framecache::FrameJpeg, variant: u8) {
    assert!(f.jpeg == jpeg(f.seq, variant), "frame {} bytes", f.seq);
    assert_eq!(
        (f.chunk_id, f.timestamp),
        (0, 0.0),
        "frame {} defaults",
        f.seq
    );
}

async fn chunk_by_chunk_writes_keep_every_frame(env: &Env) {
    let tl = unique("chunks");
    let fc = cache(env, "chunks");
    for chunk in 0..3 {
        let n = fc
            .cache_jpegs(
                &tl,
                encoded(chunk * 10, 10, chunk, 1),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(n, 10);
    }
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 30);
    for f in &frames {
        assert_written(f, f.seq / 10, 1);
    }
    assert!(matches!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Complete { frames: 30, .. }
    ));
    // Encoded from pixels through `cache_frames` too.
    let tl = unique("chunks-pixels");
    for chunk in 0..3u64 {
        let frames: Vec<Frame> = (chunk * 10..chunk * 10 + 10)
            .map(|seq| Frame {
                chunk_id: chunk,
                ..framecache::synthetic_frame(seq, 32, 16)
            })
            .collect();
        fc.cache_frames(&tl, &frames, WriteOptions::default())
            .await
            .unwrap();
    }
    let back = cache(env, "pixels-reader")
        .load_frames(&tl, Seqs::All, LoadOptions::default())
        .await
        .unwrap();
    assert_eq!(back.len(), 30);
    assert!(back.iter().all(|f| f.chunk_id == f.seq / 10));
}

async fn a_chunk_written_again_replaces_only_its_seqs(env: &Env) {
    let tl = unique("rewrite");
    let fc = cache(env, "rewrite");
    for chunk in 0..3 {
        fc.cache_jpegs(
            &tl,
            encoded(chunk * 10, 10, chunk, 1),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    // Read once here, so this machine's copies must be revalidated.
    assert_eq!(fc.load_jpegs(&tl, Seqs::All).await.unwrap().len(), 30);
    fc.cache_jpegs(&tl, encoded(10, 10, 7, 2), WriteOptions::default())
        .await
        .unwrap();
    for frames in [
        fc.load_jpegs(&tl, Seqs::All).await.unwrap(),
        loaded(env, &tl).await,
    ] {
        assert_eq!(frames.len(), 30);
        for f in &frames {
            match f.seq {
                10..20 => assert_written(f, 7, 2),
                _ => assert_written(f, f.seq / 10, 1),
            }
        }
    }
}

async fn an_explicit_rebuild_removes_every_other_frame(env: &Env) {
    let tl = unique("rebuild");
    let fc = cache(env, "rebuild");
    for chunk in 0..3 {
        fc.cache_jpegs(
            &tl,
            encoded(chunk * 10, 10, chunk, 1),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    module_put(env, &tl, 50, 3).await;
    fc.cache_jpegs(
        &tl,
        encoded(10, 5, 4, 2),
        WriteOptions::default().mode(WriteMode::Replace),
    )
    .await
    .unwrap();
    let frames = loaded(env, &tl).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (10..15).collect::<Vec<_>>()
    );
    frames.iter().for_each(|f| assert_written(f, 4, 2));
    assert!(matches!(
        fc.status(&tl).await.unwrap(),
        TimelineStatus::Complete { frames: 5, .. }
    ));
    // Appends after a rebuild add to it.
    fc.cache_jpegs(&tl, encoded(20, 5, 5, 1), WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(loaded(env, &tl).await.len(), 10);
}

/// The module writes chunks 0 and 2, framecache chunks 1 and 3, alternately: all 40 frames
/// stay, framecache's with their metadata, the module's with its defaults.
async fn a_mixed_fleet_keeps_every_chunk(env: &Env) {
    let tl = unique("fleet");
    let fc = cache(env, "fleet");
    for chunk in 0..4u64 {
        if chunk % 2 == 0 {
            for seq in chunk * 10..chunk * 10 + 10 {
                module_put(env, &tl, seq, 3).await;
            }
        } else {
            fc.cache_jpegs(
                &tl,
                encoded(chunk * 10, 10, chunk, 1),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        }
    }
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 40);
    for f in &frames {
        if (f.seq / 10) % 2 == 0 {
            assert_module(f, 3);
        } else {
            assert_written(f, f.seq / 10, 1);
        }
    }
    // The module rewrites frames framecache wrote: they load as the module's, with its
    // defaults, never with the stale metadata: one of another size (the listing shows it),
    // one of the same size (its blake3 shows it when read).
    let origin = env.origin(&Arc::new(Metrics::default()));
    let larger = Bytes::from(
        codec::encode_jpeg(&framecache::synthetic_frame(12, 96, 72).image, 85).unwrap(),
    );
    origin
        .put(&layout::frame_key(&tl, 12).unwrap(), larger.clone())
        .await
        .unwrap();
    let mut same_size = jpeg(13, 1).to_vec();
    let at = same_size.len() - 3;
    same_size[at] ^= 1;
    origin
        .put(
            &layout::frame_key(&tl, 13).unwrap(),
            Bytes::from(same_size.clone()),
        )
        .await
        .unwrap();
    let listed = cache(env, "lister").list_frames(&tl).await.unwrap();
    assert!(listed[12].meta.is_none(), "{:?}", listed[12].meta);
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 40);
    for (f, bytes) in [(&frames[12], larger.to_vec()), (&frames[13], same_size)] {
        assert_eq!(f.jpeg.to_vec(), bytes, "frame {}", f.seq);
        assert_eq!(
            (f.chunk_id, f.timestamp),
            (0, 0.0),
            "frame {} defaults",
            f.seq
        );
    }
    assert_written(&frames[14], 1, 1);
}

/// A timeline longer than one listing page, with frames the module wrote before, between
/// and after framecache's: a whole stream, whose first frames go out before the listing is
/// in (held here until they have), still yields every frame in seq order.
async fn a_long_mixed_timeline_streams_every_frame(env: &Env) {
    use futures::StreamExt;
    let tl = unique("long-mixed");
    cache(env, "long-writer")
        .cache_jpegs(&tl, encoded(20, 1100, 1, 1), WriteOptions::default())
        .await
        .unwrap();
    for seq in (0..20).chain(1120..1130) {
        module_put(env, &tl, seq, 3).await;
    }
    let gate = env.scratch.path().join(format!("{tl}-gate"));
    std::fs::create_dir_all(&gate).unwrap();
    let metrics = Arc::new(Metrics::default());
    let probe = Instrumented::new(env.origin(&metrics)).hold_access(
        &layout::frames_prefix(&tl).unwrap(),
        1,
        gate.clone(),
    );
    let config = env.config(&env.disk_dir(&unique("long-reader")));
    let reader = FrameCache::from_chain(config.build_with_origin(Arc::new(probe), metrics), 8);
    let mut stream = Box::pin(reader.stream_frames(
        &tl,
        framecache::Seqs::All,
        framecache::LoadOptions::default(),
    ));
    let mut seqs = Vec::new();
    for _ in 0..30 {
        let (frame, _) = stream.next().await.unwrap().unwrap();
        seqs.push(frame.seq);
    }
    assert!(gate.join("ready").exists(), "the listing is held");
    std::fs::write(gate.join("go"), b"").unwrap();
    while let Some(item) = stream.next().await {
        let (frame, _) = item.unwrap();
        let framecaches = (20..1120).contains(&frame.seq);
        assert_eq!(
            frame.chunk_id,
            u64::from(framecaches),
            "frame {}",
            frame.seq
        );
        seqs.push(frame.seq);
    }
    assert_eq!(seqs, (0..1130).collect::<Vec<_>>());
}

/// An appender that stored its frames and died before its manifest write leaves them
/// visible with the defaults, and the timeline loads.
async fn an_appender_that_dies_before_its_manifest_leaves_frames_with_defaults(env: &Env) {
    let tl = unique("died");
    cache(env, "died-first")
        .cache_jpegs(&tl, encoded(0, 10, 0, 1), WriteOptions::default())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let origin: Arc<dyn Origin> = Arc::new(
        Instrumented::new(env.origin(&metrics)).fail_puts_of(&layout::manifest_key(&tl).unwrap()),
    );
    let config = env.config(&env.disk_dir(&unique("died")));
    let dying = FrameCache::from_chain(config.build_with_origin(origin, metrics), 4);
    assert!(
        dying
            .cache_jpegs(&tl, encoded(10, 10, 1, 2), WriteOptions::default())
            .await
            .is_err()
    );
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 20);
    for f in &frames {
        if f.seq < 10 {
            assert_written(f, 0, 1);
        } else {
            assert_module(f, 2);
        }
    }
}

/// Appending 100 frames onto a long timeline: 100 frame PUTs and at most 5 other requests,
/// no listing, nothing removed; twice (the second merges into the chunk the first made).
async fn an_append_costs_what_it_writes(env: &Env) {
    let tl = unique("cost");
    // Five full manifest chunks: an append reads none of them (the benchmark `append`
    // compares 100 and 20,000 frames).
    let base: u64 = 5_000;
    let mut config = env.config(&env.disk_dir(&unique("cost-fill")));
    config.disk = None;
    let filler = FrameCache::from_chain(config.build().unwrap(), 32);
    let tiny = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]);
    let fill: Vec<EncodedFrame> = (0..base)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: 0,
            timestamp: 0.0,
            perceptual_hash: String::new(),
            jpeg: tiny.clone(),
        })
        .collect();
    filler
        .cache_jpegs(&tl, fill, WriteOptions::default().mode(WriteMode::Replace))
        .await
        .unwrap();

    let metrics = Arc::new(Metrics::default());
    let probe = Arc::new(Instrumented::new(env.origin(&metrics)));
    let config = env.config(&env.disk_dir(&unique("cost")));
    let fc = FrameCache::from_chain(config.build_with_origin(probe.clone(), metrics), 8);
    // The first append of a cache handle probes the origin for conditional writes (once).
    fc.cache_jpegs(
        &unique("cost-warm"),
        encoded(0, 1, 0, 1),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    for round in 0..2u64 {
        let counts = || {
            [
                probe.reads.load(SeqCst),
                probe.stats.load(SeqCst),
                probe.lists.load(SeqCst),
                probe.puts.load(SeqCst),
                probe.removes.load(SeqCst),
            ]
        };
        let before = counts();
        let first = base + round * 100;
        fc.cache_jpegs(&tl, encoded(first, 100, 9, 1), WriteOptions::default())
            .await
            .unwrap();
        let after = counts();
        let [reads, stats, lists, puts, removes] = std::array::from_fn(|i| after[i] - before[i]);
        assert_eq!(
            (lists, removes),
            (0, 0),
            "an append lists and removes nothing"
        );
        assert!(puts >= 100, "every frame is written: {puts}");
        let extra = reads + stats + puts - 100;
        assert!(
            extra <= 5,
            "append {round}: {extra} requests beside the frames ({reads} GET, {stats} HEAD, \
             {} PUT)",
            puts - 100
        );
    }
    let status = cache(env, "cost-reader").status(&tl).await.unwrap();
    assert!(
        matches!(status, TimelineStatus::Complete { frames, .. } if frames as u64 == base + 200),
        "{status:?}"
    );
    let page = cache(env, "cost-page")
        .list_frames_page(&tl, PageStart::Seq(base + 50), 100)
        .await
        .unwrap();
    assert_eq!(page.total as u64, base + 200);
    assert_eq!(page.frames.len(), 100);
    assert!(
        page.frames
            .iter()
            .all(|f| f.meta.as_ref().unwrap().chunk_id == 9)
    );
}

// ---------------------------------------------------------------------------------------
// An origin that honours conditional writes, as AWS S3 and MinIO do (Garage and the
// filesystem backend do not): an ETag per object (its blake3), and `put_if` checked and
// written under one lock. Before the first conditional write of `hook_key`, it lets another
// appender run first, so the condition fails exactly once.

struct Conditional {
    inner: Arc<dyn Origin>,
    lock: tokio::sync::Mutex<()>,
    refused: AtomicUsize,
    /// Run before the next write (conditional or not) of its key.
    hook: std::sync::Mutex<Option<(String, BoxFuture<'static, ()>)>>,
    /// Run after the next stat of its key has looked, before it returns.
    stat_hook: std::sync::Mutex<Option<(String, BoxFuture<'static, ()>)>>,
    /// Every conditional write of this key is refused.
    refuse: Option<String>,
}

impl Conditional {
    fn new(env: &Env) -> Arc<Conditional> {
        Conditional::refusing(env, None)
    }

    fn refusing(env: &Env, refuse: Option<String>) -> Arc<Conditional> {
        Arc::new(Conditional {
            inner: env.origin(&Arc::new(Metrics::default())),
            lock: tokio::sync::Mutex::new(()),
            refused: AtomicUsize::new(0),
            hook: std::sync::Mutex::new(None),
            stat_hook: std::sync::Mutex::new(None),
            refuse,
        })
    }

    fn handle(self: &Arc<Self>, env: &Env, name: &str) -> FrameCache {
        self.handle_at(&env.disk_dir(&unique(name)), env)
    }

    fn handle_at(self: &Arc<Self>, disk: &Path, env: &Env) -> FrameCache {
        let config = env.config(disk);
        FrameCache::from_chain(
            config.build_with_origin(self.clone(), Arc::new(Metrics::default())),
            4,
        )
    }

    fn etag(bytes: &[u8]) -> String {
        format!("\"{}\"", blake3::hash(bytes).to_hex())
    }

    async fn run_hook(
        hook: &std::sync::Mutex<Option<(String, BoxFuture<'static, ()>)>>,
        key: &str,
    ) {
        let hook = {
            let mut hook = hook.lock().unwrap();
            if hook.as_ref().is_some_and(|(k, _)| k == key) {
                hook.take().map(|(_, f)| f)
            } else {
                None
            }
        };
        if let Some(other) = hook {
            other.await;
        }
    }
}

/// No bound: the test's objects are small.
const ANY: Limit = Limit::object(u64::MAX);

impl Origin for Conditional {
    fn get<'a>(
        &'a self,
        key: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, framecache::Result<Option<Bytes>>> {
        self.inner.get(key, limit)
    }
    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        limit: Limit,
    ) -> BoxFuture<'a, framecache::Result<Option<Bytes>>> {
        async move {
            let now = self.inner.get(key, limit).await?;
            if let (Some(bytes), Some(etag)) = (&now, &version.etag)
                && Conditional::etag(bytes) != *etag
            {
                return Err(framecache::Error::Storage {
                    op: "read",
                    key: key.to_owned(),
                    source: Box::new(opendal::Error::new(
                        opendal::ErrorKind::ConditionNotMatch,
                        "changed since the stat",
                    )),
                });
            }
            Ok(now)
        }
        .boxed()
    }
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<Option<ObjectInfo>>> {
        async move {
            let info = self.inner.get(key, ANY).await?.map(|bytes| ObjectInfo {
                key: key.to_owned(),
                size: bytes.len() as u64,
                version: Some(Version {
                    tag: format!("e:{}", Conditional::etag(&bytes)),
                    etag: Some(Conditional::etag(&bytes)),
                }),
            });
            Conditional::run_hook(&self.stat_hook, key).await;
            Ok(info)
        }
        .boxed()
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, framecache::Result<Option<Version>>> {
        async move {
            Conditional::run_hook(&self.hook, key).await;
            let _held = self.lock.lock().await;
            self.inner.put(key, value).await
        }
        .boxed()
    }
    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        condition: PutCondition<'a>,
    ) -> BoxFuture<'a, framecache::Result<PutOutcome>> {
        async move {
            Conditional::run_hook(&self.hook, key).await;
            let _held = self.lock.lock().await;
            let now = self.inner.get(key, ANY).await?;
            let holds = self.refuse.as_deref() != Some(key)
                && match condition {
                    PutCondition::Absent => now.is_none(),
                    PutCondition::Matches(etag) => {
                        now.is_some_and(|b| Conditional::etag(&b) == etag)
                    }
                };
            if !holds {
                self.refused.fetch_add(1, SeqCst);
                return Ok(PutOutcome::Refused);
            }
            let version = self.inner.put(key, value).await?;
            Ok(PutOutcome::Written(version))
        }
        .boxed()
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<()>> {
        self.inner.remove(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<Vec<ObjectInfo>>> {
        self.inner.list(prefix)
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<bool>> {
        self.inner.exists(key)
    }
    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<bool>> {
        self.inner.has_any(prefix)
    }
    fn remove_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<()>> {
        self.inner.remove_prefix(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// On an origin that honours conditional writes, an append whose head write is refused
/// (another appender wrote the head after it was read) merges again: both keep their
/// metadata, and the head is never read back.
async fn conditional_writes_keep_both_appends(env: &Env) {
    let tl = unique("conditional");
    cache(env, "cond-base")
        .cache_jpegs(&tl, encoded(0, 10, 0, 1), WriteOptions::default())
        .await
        .unwrap();
    let origin = Conditional::new(env);
    let (a, b) = (origin.handle(env, "cond-a"), origin.handle(env, "cond-b"));
    // Each handle probes once, before the hook is set.
    a.cache_jpegs(
        &unique("cond-warm"),
        encoded(0, 1, 0, 1),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let refused_by_probes = origin.refused.load(SeqCst);
    assert!(refused_by_probes >= 2, "the probe saw refusals");
    let tl_b = tl.clone();
    *origin.hook.lock().unwrap() = Some((
        layout::manifest_key(&tl).unwrap(),
        async move {
            b.cache_jpegs(&tl_b, encoded(20, 10, 2, 2), WriteOptions::default())
                .await
                .unwrap();
        }
        .boxed(),
    ));
    a.cache_jpegs(&tl, encoded(10, 10, 1, 1), WriteOptions::default())
        .await
        .unwrap();
    assert!(origin.hook.lock().unwrap().is_none(), "B ran in between");
    // B's probe refused twice, and A's first head write once.
    assert_eq!(origin.refused.load(SeqCst) - refused_by_probes, 3);
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 30);
    for f in &frames {
        match f.seq {
            0..10 => assert_written(f, 0, 1),
            10..20 => assert_written(f, 1, 1),
            _ => assert_written(f, 2, 2),
        }
    }
}

/// An origin that runs `hook` right after the `nth` write (`put`; with `gets`, read) of
/// `key` returns: another writer's work, placed exactly between two steps of this one.
struct AfterPut {
    inner: Arc<dyn Origin>,
    key: String,
    nth: usize,
    gets: bool,
    puts: AtomicUsize,
    hook: std::sync::Mutex<Option<BoxFuture<'static, ()>>>,
}

impl AfterPut {
    fn cache(
        env: &Env,
        key: String,
        (nth, gets): (usize, bool),
        hook: BoxFuture<'static, ()>,
    ) -> (FrameCache, Arc<AfterPut>) {
        let origin = Arc::new(AfterPut {
            inner: env.origin(&Arc::new(Metrics::default())),
            key,
            nth,
            gets,
            puts: AtomicUsize::new(0),
            hook: std::sync::Mutex::new(Some(hook)),
        });
        let config = env.config(&env.disk_dir(&unique("after-put")));
        let fc = FrameCache::from_chain(
            config.build_with_origin(origin.clone(), Arc::new(Metrics::default())),
            4,
        );
        (fc, origin)
    }

    fn ran(&self) -> bool {
        self.hook.lock().unwrap().is_none()
    }

    async fn after(&self, key: &str, get: bool) {
        if key == self.key && get == self.gets && self.puts.fetch_add(1, SeqCst) + 1 == self.nth {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook.await;
            }
        }
    }
}

impl Origin for AfterPut {
    fn get<'a>(
        &'a self,
        key: &'a str,
        limit: Limit,
    ) -> BoxFuture<'a, framecache::Result<Option<Bytes>>> {
        async move {
            let got = self.inner.get(key, limit).await?;
            self.after(key, true).await;
            Ok(got)
        }
        .boxed()
    }
    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        limit: Limit,
    ) -> BoxFuture<'a, framecache::Result<Option<Bytes>>> {
        self.inner.get_at(key, version, limit)
    }
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<Option<ObjectInfo>>> {
        self.inner.stat(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> BoxFuture<'a, framecache::Result<Option<Version>>> {
        async move {
            let version = self.inner.put(key, value).await?;
            self.after(key, false).await;
            Ok(version)
        }
        .boxed()
    }
    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        condition: PutCondition<'a>,
    ) -> BoxFuture<'a, framecache::Result<PutOutcome>> {
        self.inner.put_if(key, value, condition)
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<()>> {
        self.inner.remove(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<Vec<ObjectInfo>>> {
        self.inner.list(prefix)
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, framecache::Result<bool>> {
        self.inner.exists(key)
    }
    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<bool>> {
        self.inner.has_any(prefix)
    }
    fn remove_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, framecache::Result<()>> {
        self.inner.remove_prefix(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// An append lands right after a rebuild publishes its manifest (the append keeps the
/// rebuild's generation): the rebuild's last round sees another writer's head and leaves
/// the appended frames alone; the timeline loads with both.
async fn an_append_right_after_a_rebuild_publishes_keeps_its_frames(env: &Env) {
    let tl = base(env, "append-after-rebuild").await;
    let appender = cache(env, "after-rebuild");
    let tl_b = tl.clone();
    // The rebuild writes its manifest twice: incomplete first, then published.
    let (rebuild, origin) = AfterPut::cache(
        env,
        layout::manifest_key(&tl).unwrap(),
        (2, false),
        async move {
            appender
                .cache_jpegs(&tl_b, encoded(20, 10, 2, 3), WriteOptions::default())
                .await
                .unwrap();
        }
        .boxed(),
    );
    rebuild
        .cache_jpegs(
            &tl,
            encoded(10, 10, 1, 2),
            WriteOptions::default().mode(WriteMode::Replace),
        )
        .await
        .unwrap();
    assert!(origin.ran(), "the append ran after the rebuild published");
    let frames = loaded(env, &tl).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (10..30).collect::<Vec<_>>()
    );
    for f in &frames {
        let chunk = f.seq / 10;
        assert_written(f, chunk, chunk as u8 + 1);
    }
}

/// A `clear` between an append's head read and its head write: the head written names
/// frames and a chunk the clear removed. The timeline loads (empty), and a later append
/// loads with its metadata: entries without objects and chunks gone are left out.
async fn an_append_racing_a_clear_leaves_a_loadable_timeline(env: &Env) {
    let tl = unique("append-clear");
    // Chunk 2 first, so that the append of chunk 0 leaves its manifest chunk untouched.
    cache(env, "clear-base")
        .cache_jpegs(&tl, encoded(20, 10, 2, 1), WriteOptions::default())
        .await
        .unwrap();
    let clearer = cache(env, "clearer");
    let tl_c = tl.clone();
    let (appender, origin) = AfterPut::cache(
        env,
        layout::manifest_key(&tl).unwrap(),
        (1, true),
        async move { clearer.clear(&tl_c, ClearScope::All).await.unwrap() }.boxed(),
    );
    appender
        .cache_jpegs(&tl, encoded(0, 10, 0, 2), WriteOptions::default())
        .await
        .unwrap();
    assert!(
        origin.ran(),
        "the clear ran between the head read and write"
    );
    let reader = cache(env, "clear-reader");
    assert!(reader.load_jpegs(&tl, Seqs::All).await.unwrap().is_empty());
    assert!(matches!(
        reader.status(&tl).await.unwrap(),
        TimelineStatus::Complete { frames: 0, .. }
    ));
    cache(env, "clear-again")
        .cache_jpegs(&tl, encoded(0, 10, 0, 3), WriteOptions::default())
        .await
        .unwrap();
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 10);
    frames.iter().for_each(|f| assert_written(f, 0, 3));
}

/// Frames removed under a complete manifest (by hand, or a rebuild racing an append) are
/// simply not there; the others keep their metadata.
async fn frames_removed_under_a_complete_manifest_are_left_out(env: &Env) {
    let tl = unique("removed");
    let fc = cache(env, "removed");
    for chunk in 0..3 {
        fc.cache_jpegs(
            &tl,
            encoded(chunk * 10, 10, chunk, 1),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let origin = env.origin(&Arc::new(Metrics::default()));
    for seq in 10..20 {
        origin
            .remove(&layout::frame_key(&tl, seq).unwrap())
            .await
            .unwrap();
    }
    let frames = loaded(env, &tl).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (0..10).chain(20..30).collect::<Vec<_>>()
    );
    frames.iter().for_each(|f| assert_written(f, f.seq / 10, 1));
}

/// The head changes between A's stat and its read of that version (B appends), and again
/// before A's write (C appends): A keeps the stat's ETag, so its `If-Match` write is refused
/// and it merges again; every append keeps its metadata.
async fn a_head_changed_after_its_stat_is_written_conditionally(env: &Env) {
    let tl = base(env, "stale-etag").await;
    let origin = Conditional::new(env);
    let (a, b, c) = (
        origin.handle(env, "stale-a"),
        origin.handle(env, "stale-b"),
        origin.handle(env, "stale-c"),
    );
    // Each handle probes once, before the hooks are set.
    for fc in [&a, &b, &c] {
        fc.cache_jpegs(
            &unique("stale-warm"),
            encoded(0, 1, 0, 1),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    let key = layout::manifest_key(&tl).unwrap();
    let tl_b = tl.clone();
    *origin.stat_hook.lock().unwrap() = Some((
        key.clone(),
        async move {
            b.cache_jpegs(&tl_b, encoded(20, 10, 2, 3), WriteOptions::default())
                .await
                .unwrap();
        }
        .boxed(),
    ));
    let tl_c = tl.clone();
    let hook_origin = origin.clone();
    *origin.hook.lock().unwrap() = Some((
        key.clone(),
        async move {
            // B's own write passes first; C goes in before A's.
            *hook_origin.hook.lock().unwrap() = Some((
                layout::manifest_key(&tl_c).unwrap(),
                async move {
                    c.cache_jpegs(&tl_c, encoded(30, 10, 3, 4), WriteOptions::default())
                        .await
                        .unwrap();
                }
                .boxed(),
            ));
        }
        .boxed(),
    ));
    a.cache_jpegs(&tl, encoded(10, 10, 1, 2), WriteOptions::default())
        .await
        .unwrap();
    assert!(origin.stat_hook.lock().unwrap().is_none(), "B ran");
    assert!(origin.hook.lock().unwrap().is_none(), "C ran");
    let frames = loaded(env, &tl).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (0..40).collect::<Vec<_>>()
    );
    for f in &frames {
        let chunk = f.seq / 10;
        assert_written(f, chunk, chunk as u8 + 1);
    }
}

/// An append whose conditional head writes keep being refused fails with
/// `Error::Contended` instead of returning as if its entries were in; its frames are stored.
async fn an_append_refused_every_time_fails_contended(env: &Env) {
    let tl = base(env, "refused").await;
    let origin = Conditional::refusing(env, Some(layout::manifest_key(&tl).unwrap()));
    let fc = origin.handle(env, "refused");
    let err = fc
        .cache_jpegs(&tl, encoded(10, 10, 1, 2), WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Contended { .. }), "{err}");
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 20, "the frames are stored");
    frames[10..].iter().for_each(|f| assert_module(f, 2));
}

/// A head this build cannot read (a later format) is left as it is by an append: the
/// append's frames are stored, the other frames' metadata is not overwritten.
async fn an_append_leaves_an_unreadable_head_alone(env: &Env) {
    let tl = base(env, "unreadable").await;
    let origin = env.origin(&Arc::new(Metrics::default()));
    let key = layout::manifest_key(&tl).unwrap();
    let head = origin.get(&key, ANY).await.unwrap().unwrap();
    let mut future: Value = serde_json::from_slice(&head).unwrap();
    future["format"] = 99.into();
    let future = Bytes::from(serde_json::to_vec(&future).unwrap());
    origin.put(&key, future.clone()).await.unwrap();
    let fc = cache(env, "unreadable");
    fc.cache_jpegs(&tl, encoded(10, 10, 1, 2), WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(origin.get(&key, ANY).await.unwrap().unwrap(), future);
    assert_eq!(fc.chain().metrics().snapshot().unreadable_manifests, 1);
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 20);
}

/// The conditional-writes verdict is kept in the disk directory: a second handle on it (a
/// second `framecache put`, say) does not probe again.
async fn the_probe_verdict_is_kept_on_disk(env: &Env) {
    let origin = Conditional::new(env);
    let disk = env.disk_dir(&unique("probe-kept"));
    origin
        .handle_at(&disk, env)
        .cache_jpegs(
            &unique("probe-kept"),
            encoded(0, 1, 0, 1),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    let refused = origin.refused.load(SeqCst);
    assert_eq!(refused, 2, "the first handle probed");
    let tl = base(env, "probe-kept").await;
    let second = origin.handle_at(&disk, env);
    second
        .cache_jpegs(&tl, encoded(10, 10, 1, 2), WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(origin.refused.load(SeqCst), refused, "no second probe");
    // The verdict kept says conditional writes are honoured: the second handle used them
    // (a refusal makes it merge again, as the first handle would).
    let tl_c = tl.clone();
    let other = origin.handle(env, "probe-other");
    *origin.hook.lock().unwrap() = Some((
        layout::manifest_key(&tl).unwrap(),
        async move {
            other
                .cache_jpegs(&tl_c, encoded(30, 10, 3, 4), WriteOptions::default())
                .await
                .unwrap();
        }
        .boxed(),
    ));
    second
        .cache_jpegs(&tl, encoded(20, 10, 2, 3), WriteOptions::default())
        .await
        .unwrap();
    // The other handle probed (2 refusals), the second handle's write was refused once.
    assert_eq!(origin.refused.load(SeqCst), refused + 3);
    assert_eq!(loaded(env, &tl).await.len(), 40);
}

// ---------------------------------------------------------------------------------------
// Two appender processes

/// An appender process, held at one access of the manifest when `gate` is given.
struct Appender {
    child: Child,
    gate: Option<PathBuf>,
}

impl Appender {
    /// Appends frames `first..first + 10` (video chunk `first / 10`) in colour `variant`;
    /// with `hold`, the `nth` access (read or write) of the manifest waits at `gate`.
    fn start(
        env: &Env,
        timeline: &str,
        first: u64,
        variant: u8,
        hold: Option<(usize, &Path)>,
    ) -> Self {
        let mut vars = env.child_vars();
        vars.extend([
            ("FC_TIMELINE", timeline.to_owned()),
            ("FC_FIRST", first.to_string()),
            ("FC_VARIANT", variant.to_string()),
            (
                "FC_CACHE",
                env.disk_dir(&unique("appender")).display().to_string(),
            ),
        ]);
        if let Some((nth, gate)) = hold {
            std::fs::create_dir_all(gate).unwrap();
            vars.push(("FC_HOLD", nth.to_string()));
            vars.push(("FC_GATE", gate.display().to_string()));
        }
        let child = spawn_child("append", &vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Appender {
            child,
            gate: hold.map(|(_, gate)| gate.to_path_buf()),
        }
    }

    async fn held(&self) {
        let ready = self.gate.as_ref().expect("a gated appender").join("ready");
        common::wait_until("the appender to be held", || ready.exists()).await;
    }

    fn release(&self) {
        std::fs::write(
            self.gate.as_ref().expect("a gated appender").join("go"),
            b"",
        )
        .unwrap();
    }

    fn result(self) -> Value {
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "appender failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let result = result_of(&stdout);
        assert_eq!(result["written"], 10, "{result}");
        result
    }
}

/// Accesses of the manifest by an appender on an origin without conditional writes: the
/// read it merges into (1), its write, and the read back.
const HEAD_WRITE: usize = 2;
const READ_BACK: usize = 3;

/// A timeline of chunk 0 (frames 0..10, colour 1), and the appenders' chunks 1 (colour 2)
/// and 2 (colour 3) after it.
async fn base(env: &Env, name: &str) -> String {
    let tl = unique(name);
    cache(env, "base")
        .cache_jpegs(&tl, encoded(0, 10, 0, 1), WriteOptions::default())
        .await
        .unwrap();
    tl
}

/// Every frame of both chunks is there with its own bytes; chunk 0 and the chunks in
/// `kept` have their metadata, the other chunk the defaults (both backends here lack
/// conditional writes, so each interleaving has exactly one outcome).
async fn assert_both_appends(env: &Env, tl: &str, kept: &[u64]) {
    let frames = loaded(env, tl).await;
    assert_eq!(
        frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    for f in &frames {
        let chunk = f.seq / 10;
        let variant = chunk as u8 + 1;
        if chunk == 0 || kept.contains(&chunk) {
            assert_written(f, chunk, variant);
        } else {
            assert_module(f, variant);
        }
    }
}

/// A reads the manifest and is held before writing it; meanwhile a reader sees A's frames
/// (stored, no entries yet) with the defaults, and B appends from start to end. A then
/// writes a manifest without B's chunk and reads it back with its own: with no conditional
/// writes, B's frames keep their bytes but lose their metadata (the stated worst case).
async fn a_head_write_over_a_finished_append_keeps_its_frames(env: &Env) {
    let tl = base(env, "append-over").await;
    let gate = env.scratch.path().join(&tl);
    let a = Appender::start(env, &tl, 10, 2, Some((HEAD_WRITE, &gate)));
    a.held().await;
    let during = loaded(env, &tl).await;
    assert_eq!(
        during.len(),
        20,
        "A's frames are visible before its manifest write"
    );
    during[10..].iter().for_each(|f| assert_module(f, 2));
    Appender::start(env, &tl, 20, 3, None).result();
    a.release();
    a.result();
    assert_both_appends(env, &tl, &[1]).await;
}

/// A writes its manifest and is held before reading it back; B appends from start to end
/// (merging A's chunk into its own); A reads back B's manifest, finds its entries in B's
/// chunk and is done: both keep their metadata.
async fn an_append_between_a_write_and_its_read_back_keeps_both(env: &Env) {
    let tl = base(env, "append-between").await;
    let gate = env.scratch.path().join(&tl);
    let a = Appender::start(env, &tl, 10, 2, Some((READ_BACK, &gate)));
    a.held().await;
    Appender::start(env, &tl, 20, 3, None).result();
    a.release();
    a.result();
    assert_both_appends(env, &tl, &[1, 2]).await;
}

/// Both read the same manifest; B writes its own and is held before reading it back; A
/// writes one without B's chunk and finishes; B reads back A's manifest, finds its entries
/// gone and merges them again: both keep their metadata.
async fn a_dropped_append_merges_again(env: &Env) {
    let tl = base(env, "append-again").await;
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Appender::start(env, &tl, 10, 2, Some((HEAD_WRITE, &a_gate)));
    a.held().await;
    let b = Appender::start(env, &tl, 20, 3, Some((READ_BACK, &b_gate)));
    b.held().await;
    a.release();
    a.result();
    b.release();
    b.result();
    // B's metadata survives only because it found it gone and merged it again.
    assert_both_appends(env, &tl, &[1, 2]).await;
}

/// On a timeline without a manifest (new, or written by the module), A and B both create
/// one; B's is overwritten by A's before B reads it back: B merges again into A's.
async fn two_first_appends_keep_both(env: &Env) {
    let tl = unique("append-first");
    for seq in 0..10 {
        module_put(env, &tl, seq, 1).await;
    }
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Appender::start(env, &tl, 10, 2, Some((HEAD_WRITE, &a_gate)));
    a.held().await;
    let b = Appender::start(env, &tl, 20, 3, Some((READ_BACK, &b_gate)));
    b.held().await;
    a.release();
    a.result();
    b.release();
    b.result();
    let frames = loaded(env, &tl).await;
    assert_eq!(frames.len(), 30);
    for f in &frames {
        match f.seq / 10 {
            0 => assert_module(f, 1),
            chunk => assert_written(f, chunk, chunk as u8 + 1),
        }
    }
}

/// Both read the same manifest and are held before writing it; B writes, then A: A's read
/// back shows its own entries. With no conditional writes B's metadata is lost, never its
/// frames; with the roles swapped the same holds for A.
async fn two_appends_from_one_manifest_keep_every_frame(env: &Env) {
    let tl = base(env, "append-same").await;
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Appender::start(env, &tl, 10, 2, Some((HEAD_WRITE, &a_gate)));
    a.held().await;
    let b = Appender::start(env, &tl, 20, 3, Some((HEAD_WRITE, &b_gate)));
    b.held().await;
    b.release();
    b.result();
    a.release();
    a.result();
    assert_both_appends(env, &tl, &[1]).await;
}

backend_tests!(
    chunk_by_chunk_writes_keep_every_frame,
    a_chunk_written_again_replaces_only_its_seqs,
    an_explicit_rebuild_removes_every_other_frame,
    a_mixed_fleet_keeps_every_chunk,
    a_long_mixed_timeline_streams_every_frame,
    an_appender_that_dies_before_its_manifest_leaves_frames_with_defaults,
    an_append_costs_what_it_writes,
    conditional_writes_keep_both_appends,
    a_head_write_over_a_finished_append_keeps_its_frames,
    an_append_between_a_write_and_its_read_back_keeps_both,
    a_dropped_append_merges_again,
    two_first_appends_keep_both,
    two_appends_from_one_manifest_keep_every_frame,
    an_append_right_after_a_rebuild_publishes_keeps_its_frames,
    an_append_racing_a_clear_leaves_a_loadable_timeline,
    frames_removed_under_a_complete_manifest_are_left_out,
    a_head_changed_after_its_stat_is_written_conditionally,
    an_append_refused_every_time_fails_contended,
    an_append_leaves_an_unreadable_head_alone,
    the_probe_verdict_is_kept_on_disk,
);

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    match var(CHILD_ENV).as_str() {
        "append" => child_append(),
        other => panic!("unknown child role {other}"),
    }
}

/// Appends frames `FC_FIRST..+10` of `FC_VARIANT` to `FC_TIMELINE`; `FC_HOLD` holds that
/// access of the manifest at the gate `FC_GATE`.
fn child_append() {
    let env = Env::in_child();
    let timeline = var("FC_TIMELINE");
    let first: u64 = var("FC_FIRST").parse().unwrap();
    let variant: u8 = var("FC_VARIANT").parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut probe = Instrumented::new(env.origin(&metrics));
    if let Ok(nth) = std::env::var("FC_HOLD") {
        probe = probe.hold_access(
            &layout::manifest_key(&timeline).unwrap(),
            nth.parse().unwrap(),
            var("FC_GATE").into(),
        );
    }
    let config = env.config(Path::new(&var("FC_CACHE")));
    let fc = FrameCache::from_chain(config.build_with_origin(Arc::new(probe), metrics), 4);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let written = runtime
        .block_on(fc.cache_jpegs(
            &timeline,
            encoded(first, 10, first / 10, variant),
            WriteOptions::default(),
        ))
        .unwrap();
    println!("RESULT {}", json!({ "written": written }));
}
