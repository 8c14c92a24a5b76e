//! Two processes re-caching one timeline at once, on both backends. The rule: the writer
//! that finishes last wins and the timeline is then exactly its frames; a writer that finds
//! a later one still writing fails with `Error::Superseded` and removes nothing.
//!
//! Each writer is this test binary run again (`FRAMECACHE_CHILD=write`). Its origin holds
//! the writer just before it finishes (its first read of the manifest, after every frame is
//! stored) until the parent releases it, so each interleaving is produced exactly, whatever
//! the machine's speed.

mod common;

use common::child::{CHILD_ENV, result_of, spawn_child, var};
use common::{Env, Instrumented, jpeg_variant as jpeg, unique};
use framecache::{EncodedFrame, Error, FrameCache, Metrics, TimelineStatus, layout};
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
    fn start(env: &Env, timeline: &str, frames: u64, variant: u8, gate: Option<&Path>) -> Writer {
        let mut vars = env.child_vars();
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
        if let Some(gate) = gate {
            std::fs::create_dir_all(gate).unwrap();
            vars.push(("FC_GATE", gate.display().to_string()));
        }
        let child = spawn_child("write", &vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Writer {
            child,
            gate: gate.map(Path::to_path_buf),
        }
    }

    /// Waits until the writer has stored every frame and is held before finishing.
    async fn held(&self) {
        let ready = self.gate.as_ref().expect("a gated writer").join("ready");
        common::wait_until("the writer to store its frames", || ready.exists()).await;
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
    let loaded = reader.load_jpegs(timeline).await.unwrap();
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

/// A starts, stores 6 frames and is held; B starts, stores 3 and is held; A finishes first,
/// so a later writer is still writing: A fails clearly and removes nothing; B then finishes
/// and the timeline is B's 3 frames (A's extra frames are gone).
async fn a_writer_overtaken_by_a_later_one_fails_clearly(env: &Env) {
    let tl = unique("overtaken");
    let gates = env.scratch.path().join(&tl);
    let a = Writer::start(env, &tl, 6, 1, Some(&gates.join("a")));
    a.held().await;
    let b = Writer::start(env, &tl, 3, 2, Some(&gates.join("b")));
    b.held().await;

    a.release();
    let lost = a.result();
    assert_eq!(lost["superseded"], true, "{lost}");
    let message = lost["error"].as_str().unwrap();
    assert!(
        message.contains(&tl) && message.contains("another writer"),
        "the error names the timeline and why: {message}"
    );

    b.release();
    let won = b.result();
    assert_eq!(won["written"], 3, "{won}");
    assert_timeline_is(env, &tl, 3, 2).await;
}

/// A starts, stores 3 frames and is held; B writes 6 frames and completes; A then finishes
/// last and wins: the frames B replaced are written again and B's extra ones removed.
async fn the_writer_that_finishes_last_wins(env: &Env) {
    let tl = unique("last-wins");
    let gates = env.scratch.path().join(&tl);
    let a = Writer::start(env, &tl, 3, 1, Some(&gates.join("a")));
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

backend_tests!(
    a_writer_overtaken_by_a_later_one_fails_clearly,
    the_writer_that_finishes_last_wins,
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

/// Writes `FC_FRAMES` frames of `FC_VARIANT` to `FC_TIMELINE` with `cache_jpegs`, held before
/// finishing when `FC_GATE` names a gate directory.
fn child_write() {
    let env = Env::in_child();
    let timeline = var("FC_TIMELINE");
    let frames: u64 = var("FC_FRAMES").parse().unwrap();
    let variant: u8 = var("FC_VARIANT").parse().unwrap();
    let metrics = Arc::new(Metrics::default());
    let mut origin = env.origin(&metrics);
    if let Ok(gate) = std::env::var("FC_GATE") {
        // A writer reads the manifest only to finish, after storing every frame.
        let manifest = layout::manifest_key(&timeline).unwrap();
        origin = Arc::new(Instrumented::new(origin).hold_first_read_of(&manifest, gate.into()));
    }
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
        .block_on(fc.cache_jpegs(&timeline, encoded, &|_| {}));
    let line = match result {
        Ok(written) => json!({"written": written}),
        Err(e) => json!({
            "superseded": matches!(e, Error::Superseded { .. }),
            "error": e.to_string(),
        }),
    };
    println!("RESULT {line}");
}
