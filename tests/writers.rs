//! Two processes rebuilding one timeline at once (`WriteMode::Replace`), on both backends.
//! (Appends, the default mode, are tested in `tests/appends.rs`.) The rule: the writer
//! that finishes last wins and the timeline is then exactly its frames; a writer that finds
//! a later one still writing fails with `Error::Superseded` and removes nothing; a writer
//! that fails marks its manifest abandoned, so the other one goes on.
//!
//! Each writer is this test binary run again (`FRAMECACHE_CHILD=write`). Its origin holds
//! one chosen access (the second access of the manifest is where a writer finishes, after
//! storing every frame) until the parent releases it, so each interleaving is produced
//! exactly, whatever the machine's speed.

mod common;

use common::child::{CHILD_ENV, result_of, spawn_child, var};
use common::{Env, Instrumented, jpeg_variant as jpeg, unique};
use framecache::tier::{Limit, Origin};
use framecache::{EncodedFrame, Error, FrameCache, Metrics, TimelineStatus, WriteMode, layout};
use framecache::{Seqs, WriteOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;

/// A writer process, held before it finishes when `gate` is given.
struct Writer {
    child: Child,
    gate: Option<PathBuf>,
}

impl Writer {
    /// Starts writer `variant` of `frames` frames; `hold` is `(object, nth, gate)`: the
    /// `nth` access of `manifest` or `frame0` waits at `gate`.
    fn start(
        env: &Env,
        timeline: &str,
        frames: u64,
        variant: u8,
        hold: Option<(&str, usize, &Path)>,
    ) -> Writer {
        Writer::start_with(env, timeline, frames, variant, hold, &[])
    }

    fn start_with(
        env: &Env,
        timeline: &str,
        frames: u64,
        variant: u8,
        hold: Option<(&str, usize, &Path)>,
        extra: &[(&'static str, String)],
    ) -> Writer {
        let mut vars = env.child_vars();
        vars.extend_from_slice(extra);
        vars.extend([
            ("FC_TIMELINE", timeline.to_owned()),
            ("FC_FRAMES", frames.to_string()),
            ("FC_VARIANT", variant.to_string()),
            (
                "FC_CACHE",
                env.disk_dir(&format!("writer-{variant}"))
                    .display()
                    .to_string(),
            ),
        ]);
        if let Some((object, nth, gate)) = hold {
            std::fs::create_dir_all(gate).unwrap();
            vars.push(("FC_HOLD", format!("{object}:{nth}")));
            vars.push(("FC_GATE", gate.display().to_string()));
        }
        let child = spawn_child("write", &vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Writer {
            child,
            gate: hold.map(|(_, _, gate)| gate.to_path_buf()),
        }
    }

    /// Waits until the writer is held.
    async fn held(&self) {
        let ready = self.gate.as_ref().expect("a gated writer").join("ready");
        common::wait_until("the writer to be held", || ready.exists()).await;
    }

    fn release(&self) {
        let gate = self.gate.as_ref().expect("a gated writer");
        std::fs::write(gate.join("go"), b"").unwrap();
    }

    fn result(self) -> Value {
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "writer failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        result_of(&stdout)
    }
}

/// What a new machine loads: the timeline must be complete and exactly `frames` frames of
/// `variant`.
async fn assert_timeline_is(env: &Env, timeline: &str, frames: u64, variant: u8) {
    let reader = FrameCache::new(&env.config(&env.disk_dir(&unique("reader")))).unwrap();
    let status = reader.status(timeline).await.unwrap();
    assert!(
        matches!(status, TimelineStatus::Complete { frames: n, .. } if n as u64 == frames),
        "{timeline}: {status:?}, expected {frames} frames, complete"
    );
    let loaded = reader.load_jpegs(timeline, Seqs::All).await.unwrap();
    let seqs: Vec<u64> = loaded.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (0..frames).collect::<Vec<_>>());
    for frame in &loaded {
        assert!(
            frame.jpeg == jpeg(frame.seq, variant),
            "{timeline}: frame {} is not writer {variant}'s",
            frame.seq
        );
    }
}

/// Frame objects at the origin, whoever wrote them.
async fn frames_at_origin(env: &Env, timeline: &str) -> usize {
    let origin = env.origin(&Arc::new(Metrics::default()));
    let prefix = layout::frames_prefix(timeline).unwrap();
    let listed = origin.list(&prefix).await.unwrap();
    listed
        .iter()
        .filter(|o| layout::frame_seq_under(&prefix, &o.key).is_some())
        .count()
}

/// Asserts the origin holds writer `variant`'s bytes for each of `seqs`.
async fn assert_frames_are(env: &Env, timeline: &str, seqs: std::ops::Range<u64>, variant: u8) {
    let origin = env.origin(&Arc::new(Metrics::default()));
    for seq in seqs {
        let key = layout::frame_key(timeline, seq).unwrap();
        let bytes = origin.get(&key, Limit::object(1 << 30)).await.unwrap();
        assert!(
            bytes.as_ref() == Some(&jpeg(seq, variant)),
            "{key} is not writer {variant}'s"
        );
    }
}

/// Where a writer finishes: the manifest's third access (the first reads the generation
/// the write replaces, the second stores the write's own, incomplete).
const FINISH: (&str, usize) = ("manifest", 3);

/// A stores 6 frames and is held before finishing; B stores 3 and is held likewise; A
/// finishes first while a later writer is still at work: it fails clearly and removes
/// nothing. B then finishes, and the timeline is B's 3 frames (A's extra ones are gone).
async fn a_writer_overtaken_by_a_later_one_fails_clearly(env: &Env) {
    let tl = unique("overtaken");
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Writer::start(env, &tl, 6, 1, Some((FINISH.0, FINISH.1, &a_gate)));
    a.held().await;
    let b = Writer::start(env, &tl, 3, 2, Some((FINISH.0, FINISH.1, &b_gate)));
    b.held().await;

    a.release();
    let lost = a.result();
    assert_eq!(lost["superseded"], true, "{lost}");
    let message = lost["error"].as_str().unwrap();
    assert!(
        message.contains(&tl) && message.contains("another writer"),
        "the error names the timeline and why: {message}"
    );
    assert_eq!(
        frames_at_origin(env, &tl).await,
        6,
        "the loser removed nothing"
    );
    assert_frames_are(env, &tl, 0..3, 2).await;

    b.release();
    let won = b.result();
    assert_eq!(won["written"], 3, "{won}");
    assert_timeline_is(env, &tl, 3, 2).await;
}

/// A stores 3 frames and is held before finishing; B writes 6 frames and completes; A then
/// finishes last and wins: the frames B replaced are written again and B's extra ones
/// removed.
async fn the_writer_that_finishes_last_wins(env: &Env) {
    let tl = unique("last-wins");
    let gate = env.scratch.path().join(&tl);
    let a = Writer::start(env, &tl, 3, 1, Some((FINISH.0, FINISH.1, &gate)));
    a.held().await;
    let b = Writer::start(env, &tl, 6, 2, None);
    let first = b.result();
    assert_eq!(first["written"], 6, "{first}");
    assert_timeline_is(env, &tl, 6, 2).await;

    a.release();
    let last = a.result();
    assert_eq!(last["written"], 3, "{last}");
    assert_timeline_is(env, &tl, 3, 1).await;
}

/// A stores its manifest and is held storing frame 0; B stores 3 frames and is held before
/// finishing; A stores frame 0 over B's, then fails as overtaken. B finishes: it finds
/// frame 0 replaced and writes it again, and removes A's frames 3..5.
async fn the_winner_repairs_frames_a_loser_replaced(env: &Env) {
    let tl = unique("repair");
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Writer::start(env, &tl, 6, 1, Some(("frame0", 1, &a_gate)));
    a.held().await;
    let b = Writer::start(env, &tl, 3, 2, Some((FINISH.0, FINISH.1, &b_gate)));
    b.held().await;

    a.release();
    let lost = a.result();
    assert_eq!(lost["superseded"], true, "{lost}");

    b.release();
    let won = b.result();
    assert_eq!(won["written"], 3, "{won}");
    assert_timeline_is(env, &tl, 3, 2).await;
}

/// A stores 3 frames and is held before finishing; B stores its manifest, then fails (the
/// origin refuses one of its frames). B marks its manifest abandoned, so A, finishing
/// after it, does not give way to a write that is over: A wins.
async fn a_failed_writer_does_not_block_the_other(env: &Env) {
    let tl = unique("abandoned");
    let gate = env.scratch.path().join(&tl);
    let a = Writer::start(env, &tl, 3, 1, Some((FINISH.0, FINISH.1, &gate)));
    a.held().await;
    let refused = layout::frame_key(&tl, 4).unwrap();
    let b = Writer::start_with(env, &tl, 6, 2, None, &[("FC_FAIL_PUT", refused.clone())]);
    let failed = b.result();
    let message = failed["error"].as_str().unwrap();
    assert!(
        message.contains(&refused),
        "B names the key it could not write: {message}"
    );
    assert_eq!(failed["superseded"], false, "{failed}");
    let reader = FrameCache::new(&env.config(&env.disk_dir(&unique("between")))).unwrap();
    assert!(
        matches!(
            reader.status(&tl).await.unwrap(),
            TimelineStatus::Partial { .. }
        ),
        "a failed write leaves the timeline incomplete"
    );

    a.release();
    let last = a.result();
    assert_eq!(last["written"], 3, "{last}");
    assert_timeline_is(env, &tl, 3, 1).await;
}

/// A publishes its 3 frames and is held before the listing that checks them; B stores 6
/// frames over them and is held before finishing. A, finding its frames changed, reads the
/// manifest first: a writer is at work after it, so A returns Ok without touching B's
/// frames. B then finishes, and the timeline is B's.
async fn a_published_writer_leaves_a_later_one_alone(env: &Env) {
    let tl = unique("published");
    let gates = env.scratch.path().join(&tl);
    let (a_gate, b_gate) = (gates.join("a"), gates.join("b"));
    let a = Writer::start(env, &tl, 3, 1, Some(("list", 2, &a_gate)));
    a.held().await;
    assert_timeline_is(env, &tl, 3, 1).await;
    let b = Writer::start(env, &tl, 6, 2, Some((FINISH.0, FINISH.1, &b_gate)));
    b.held().await;

    a.release();
    let done = a.result();
    assert_eq!(done["written"], 3, "{done}");
    assert_eq!(
        frames_at_origin(env, &tl).await,
        6,
        "A removed none of B's frames"
    );
    assert_frames_are(env, &tl, 0..6, 2).await;

    b.release();
    let won = b.result();
    assert_eq!(won["written"], 6, "{won}");
    assert_timeline_is(env, &tl, 6, 2).await;
}

/// Another writer rewrites frame 0 before each of this writer's listings: after 4 rounds the
/// write gives up with `Error::Contended` and leaves the timeline incomplete, not complete
/// over a frame that is not its own.
async fn a_write_that_keeps_being_overtaken_gives_up_incomplete(env: &Env) {
    let tl = unique("contended");
    let metrics = Arc::new(Metrics::default());
    let frame0 = layout::frame_key(&tl, 0).unwrap();
    let origin: Arc<dyn Origin> =
        Arc::new(Instrumented::new(env.origin(&metrics)).rewrite_before_each_list(&frame0));
    let config = env.config(&env.disk_dir("contended"));
    let fc = FrameCache::from_chain(config.build_with_origin(origin, metrics), 4);
    let frames = (0..3)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: 0,
            timestamp: 0.0,
            perceptual_hash: String::new(),
            jpeg: jpeg(seq, 1),
        })
        .collect();
    let err = fc
        .cache_jpegs(
            &tl,
            frames,
            WriteOptions::default().mode(WriteMode::Replace),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Contended { rounds: 4, .. }), "{err}");
    assert!(err.to_string().contains(&tl), "{err}");
    let reader = FrameCache::new(&env.config(&env.disk_dir(&unique("after")))).unwrap();
    let status = reader.status(&tl).await.unwrap();
    assert!(
        matches!(status, TimelineStatus::Partial { .. }),
        "{status:?}"
    );
}

backend_tests!(
    a_write_that_keeps_being_overtaken_gives_up_incomplete,
    a_published_writer_leaves_a_later_one_alone,
    a_writer_overtaken_by_a_later_one_fails_clearly,
    the_writer_that_finishes_last_wins,
    the_winner_repairs_frames_a_loser_replaced,
    a_failed_writer_does_not_block_the_other,
);

// ---------------------------------------------------------------------------------------
// The writer process

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child() {
    match var(CHILD_ENV).as_str() {
        "write" => child_write(),
        other => panic!("unknown child role {other}"),
    }
}

/// Rebuilds `FC_TIMELINE` as `FC_FRAMES` frames of `FC_VARIANT` with `cache_jpegs` in
/// `WriteMode::Replace`; `FC_HOLD` (`manifest:2`, `frame0:1`, `list:2`) holds one access at
/// the gate `FC_GATE`, and writes of `FC_FAIL_PUT` fail.
fn child_write() {
    let env = Env::in_child();
    let timeline = var("FC_TIMELINE");
    let frames: u64 = var("FC_FRAMES").parse().unwrap();
    let variant: u8 = var("FC_VARIANT").parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut probe = Instrumented::new(env.origin(&metrics));
    if let Ok(hold) = std::env::var("FC_HOLD") {
        let (object, nth) = hold.split_once(':').unwrap();
        let key = match object {
            "manifest" => layout::manifest_key(&timeline).unwrap(),
            "frame0" => layout::frame_key(&timeline, 0).unwrap(),
            "list" => layout::frames_prefix(&timeline).unwrap(),
            other => panic!("unknown object to hold: {other}"),
        };
        probe = probe.hold_access(&key, nth.parse().unwrap(), var("FC_GATE").into());
    }
    if let Ok(key) = std::env::var("FC_FAIL_PUT") {
        probe = probe.fail_puts_of(&key);
    }
    let origin: Arc<dyn framecache::tier::Origin> = Arc::new(probe);
    let config = env.config(Path::new(&var("FC_CACHE")));
    let fc = FrameCache::from_chain(config.build_with_origin(origin, metrics), 4);
    let encoded = (0..frames)
        .map(|seq| EncodedFrame {
            seq,
            chunk_id: 0,
            timestamp: seq as f64,
            perceptual_hash: String::new(),
            jpeg: jpeg(seq, variant),
        })
        .collect();
    let result = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fc.cache_jpegs(
            &timeline,
            encoded,
            WriteOptions::default().mode(WriteMode::Replace),
        ));
    let line = match result {
        Ok(written) => json!({"written": written}),
        Err(e) => json!({
            "superseded": matches!(e, Error::Superseded { .. }),
            "contended": matches!(e, Error::Contended { .. }),
            "error": e.to_string(),
        }),
    };
    println!("RESULT {line}");
}
