//! The real `framecache` binary against the filesystem backend and Garage: every subcommand,
//! exit codes, one-line errors, and no credentials in any output.

mod common;

use assert_cmd::Command;
use common::{Env, unique};
use framecache::Backend;
use framecache::WriteOptions;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The binary configured for one backend, with its own disk cache.
struct Cli {
    args: Vec<String>,
    cache: PathBuf,
}

impl Cli {
    fn new(env: &Env, name: &str) -> Cli {
        let cache = env.disk_dir(name);
        let mut args = vec!["--cache-dir".to_owned(), cache.display().to_string()];
        match &env.backend {
            Backend::Fs { root } => {
                args.extend(["--root".to_owned(), root.display().to_string()]);
            }
            Backend::S3(_) => args.extend(["--backend".to_owned(), "s3".to_owned()]),
            Backend::Memory => unreachable!("the binary has no memory backend"),
        }
        Cli { args, cache }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_framecache"));
        cmd.env_remove("FRAMECACHE_BACKEND")
            .env_remove("FRAMECACHE_LOG")
            .args(&self.args)
            .args(args);
        cmd
    }

    /// Runs a command that must succeed quietly and returns its stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // No progress bar or log when stderr is not a terminal.
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&self.ok(&all)).unwrap()
    }

    /// Runs a command that must fail with `code` and one line on stderr; returns the line.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}

fn jpeg_of(seq: u64) -> Vec<u8> {
    let frame = framecache::synthetic_frame(seq, 96, 64);
    framecache::codec::encode_jpeg(&frame.image, 85).unwrap()
}

/// Input files: two JPEGs and a PNG, named with their seqs, and a timestamps CSV.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("frame_0001.jpg"), jpeg_of(1)).unwrap();
    std::fs::write(images.join("frame_0002.jpg"), jpeg_of(2)).unwrap();
    framecache::synthetic_frame(4, 96, 64)
        .image
        .to_rgb_image()
        .save(images.join("frame_0004.png"))
        .unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let csv = dir.join("timestamps.csv");
    std::fs::write(&csv, "seq,timestamp\n1,0.04\n2,0.08\n4,0.16\n").unwrap();
    (images, csv)
}

fn seqs(rows: &Value) -> Vec<u64> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

async fn every_subcommand_works(env: &Env) {
    let cli = Cli::new(env, "cli-all");
    let tl = unique("cli");
    let (images, csv) = inputs(env.scratch.path());
    let (images, csv) = (images.to_str().unwrap(), csv.to_str().unwrap());

    let put = cli.json(&["put", &tl, images, "--timestamps", csv]);
    assert_eq!(put["frames"], 3, "{put}");

    let listed = cli.json(&["ls"]);
    assert!(listed.as_array().unwrap().iter().any(|t| t == tl.as_str()));
    let frames = cli.json(&["ls", &tl]);
    assert_eq!(seqs(&frames), [1, 2, 4]);
    assert_eq!(frames[2]["timestamp"], 0.16);
    assert_eq!(frames[0]["cached"], "disk");
    let text = String::from_utf8(cli.ok(&["ls", &tl])).unwrap();
    assert!(text.contains("0.080"), "{text}");

    // JPEGs are stored byte for byte; the PNG became a JPEG.
    assert_eq!(cli.ok(&["get", &tl, "1"]), jpeg_of(1));
    let out = env.scratch.path().join("four.jpg");
    let got = cli.json(&["get", &tl, "4", "-o", out.to_str().unwrap()]);
    assert_eq!(got["seq"], 4);
    assert!(
        std::fs::read(&out)
            .unwrap()
            .starts_with(&[0xFF, 0xD8, 0xFF])
    );

    let export = env.scratch.path().join("export");
    let exported = cli.json(&["export", &tl, export.to_str().unwrap()]);
    assert_eq!(exported["frames"], 3);
    assert_eq!(std::fs::read(export.join("2.jpg")).unwrap(), jpeg_of(2));
    assert!(export.join("4.jpg").is_file());

    let dropped = cli.json(&["clear", &tl, "--local-only"]);
    assert!(dropped["local_entries_removed"].as_u64().unwrap() >= 3);
    let cold = cli.json(&["warm", &tl]);
    assert_eq!(cold["served_by"]["origin"], 3, "{cold}");
    let warm = cli.json(&["warm", &tl]);
    assert_eq!(warm["served_by"]["disk"], 3, "{warm}");
    // A one-shot command keeps no memory tier: the second pass over the same timeline in
    // one process is served by the disk again, not from memory.
    let twice = cli.ok(&["--json", "warm", &tl, &tl]);
    let passes: Vec<Value> = String::from_utf8(twice)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(passes.len(), 2, "{passes:?}");
    for pass in &passes {
        assert_eq!(pass["served_by"]["disk"], 3, "{pass}");
        assert!(pass["served_by"].get("memory").is_none(), "{pass}");
    }

    let stats = cli.json(&["stats"]);
    assert!(
        stats["disk_usage"]["entries"].as_u64().unwrap() >= 3,
        "{stats}"
    );

    let clean = cli.json(&["verify"]);
    assert_eq!(clean["bad"], Value::Array(vec![]), "{clean}");
    // Frame copies are kept at their version (`{h}.{v}` beside the key's own name `{h}`).
    let unversioned = framecache::tier::DiskTier::open(&cli.cache, 1 << 30, Default::default())
        .path_of(&framecache::layout::frame_key(&tl, 2).unwrap());
    let name = unversioned
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let victim = std::fs::read_dir(unversioned.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .expect("frame 2 has a disk entry");
    let mut bytes = std::fs::read(&victim).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let dirty = cli.json(&["verify"]);
    assert_eq!(dirty["bad"].as_array().unwrap().len(), 1, "{dirty}");
    assert!(!victim.exists());
    assert_eq!(cli.ok(&["get", &tl, "2"]), jpeg_of(2), "refetched");

    let demo_tl = unique("cli-demo");
    let demo = cli.json(&[
        "demo",
        "--timeline",
        &demo_tl,
        "--frames",
        "3",
        "--width",
        "64",
        "--height",
        "48",
    ]);
    assert_eq!(demo["steps"].as_array().unwrap().len(), 4, "{demo}");
    assert_eq!(demo["steps"][1]["served_by"]["origin"], 3, "{demo}");
    assert_eq!(demo["steps"][2]["served_by"]["disk"], 3, "{demo}");
    assert_eq!(demo["steps"][3]["served_by"]["memory"], 3, "{demo}");

    cli.json(&["clear", &tl]);
    assert_eq!(cli.json(&["ls", &tl]), Value::Array(vec![]));
    let sequential = cli.json(&["put", &tl, images, "--sequential"]);
    assert_eq!(sequential["frames"], 3);
    assert_eq!(seqs(&cli.json(&["ls", &tl])), [0, 1, 2]);

    // `put` adds to a timeline (the other frames stay); `--replace` rebuilds it.
    let more = env.scratch.path().join("frame_0009.jpg");
    std::fs::write(&more, jpeg_of(9)).unwrap();
    let more = more.to_str().unwrap();
    cli.json(&["put", &tl, more]);
    assert_eq!(seqs(&cli.json(&["ls", &tl])), [0, 1, 2, 9]);
    let rebuilt = cli.json(&["put", &tl, images, "--replace"]);
    assert_eq!(rebuilt["frames"], 3);
    assert_eq!(seqs(&cli.json(&["ls", &tl])), [1, 2, 4]);
}

async fn bad_input_exits_2_naming_the_value(env: &Env) {
    let cli = Cli::new(env, "cli-bad");
    let (images, csv) = inputs(env.scratch.path());
    let images = images.to_str().unwrap();
    for args in [
        vec!["ls", "a/b"],
        vec!["get", "a/b", "1"],
        vec!["export", "a/b", "out"],
        vec!["warm", "ok", "a/b"],
        vec!["clear", "a/b"],
        vec!["put", "a/b", images],
    ] {
        let line = cli.fails(2, &args);
        assert!(line.contains("\"a/b\""), "{line}");
    }
    let missing = env.scratch.path().join("missing.jpg");
    let line = cli.fails(2, &["put", "tl", missing.to_str().unwrap()]);
    assert!(line.contains("missing.jpg"), "{line}");
    let unnumbered = csv.to_str().unwrap();
    let line = cli.fails(2, &["put", "tl", unnumbered]);
    assert!(
        line.contains("timestamps.csv") && line.contains("--sequential"),
        "{line}"
    );
    let bad_csv = env.scratch.path().join("bad.csv");
    std::fs::write(&bad_csv, "1,0.5\n2,later\n").unwrap();
    let line = cli.fails(
        2,
        &[
            "put",
            "tl",
            images,
            "--timestamps",
            bad_csv.to_str().unwrap(),
        ],
    );
    assert!(line.contains("bad.csv:2"), "{line}");
    let broken = env.scratch.path().join("broken_7.jpg");
    std::fs::write(&broken, [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
    let line = cli.fails(2, &["put", "tl", broken.to_str().unwrap()]);
    assert!(line.contains("broken_7.jpg"), "{line}");
    // Whole headers, the entropy-coded data cut short: refused too, though `put` checks
    // a JPEG at 1/8 of its size.
    let whole = jpeg_of(9);
    let cut = env.scratch.path().join("cut_9.jpg");
    std::fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
    let line = cli.fails(2, &["put", "tl", cut.to_str().unwrap()]);
    assert!(line.contains("cut_9.jpg"), "{line}");
    // Usage errors come from clap, with its own multi-line help: only the code is checked.
    for args in [
        vec!["--disk-capacity", "12XB", "stats"],
        vec!["--lock-wait", "-1", "stats"],
        vec!["put", "tl", images, "--quality", "0"],
        vec!["get", "tl", "minus-one"],
        vec!["frobnicate"],
    ] {
        let out = cli.cmd(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let line = cli.fails(1, &["get", &unique("absent"), "3"]);
    assert!(line.contains("not found"), "{line}");
}

/// Four processes warming one timeline at once on one cache directory download each frame
/// once between them: the others wait for its disk entry.
async fn four_processes_download_each_frame_once(env: &Env) {
    const FRAMES: u64 = 40;
    let tl = unique("four");
    let writer = framecache::FrameCache::new(&env.config(&env.disk_dir("four-writer"))).unwrap();
    let frames: Vec<_> = (0..FRAMES)
        .map(|s| framecache::synthetic_frame(s, 160, 90))
        .collect();
    writer
        .cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    let cli = Cli::new(env, "four");
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_framecache"))
                .env_remove("FRAMECACHE_BACKEND")
                .env_remove("FRAMECACHE_LOG")
                .args(&cli.args)
                .args(["--json", "warm", &tl])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut from_origin = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["frames"], FRAMES, "{report}");
        from_origin += report["served_by"]["origin"].as_u64().unwrap_or(0);
    }
    assert_eq!(
        from_origin, FRAMES,
        "each frame downloaded once for the machine"
    );
}

backend_tests!(
    every_subcommand_works,
    bad_input_exits_2_naming_the_value,
    four_processes_download_each_frame_once,
);

#[test]
fn an_uncreatable_fs_root_is_an_operational_error() {
    let env = Env::fs();
    let file = env.scratch.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let root = file.join("store");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_framecache"));
    let out = cmd
        .env_remove("FRAMECACHE_BACKEND")
        .args(["--root", root.to_str().unwrap(), "ls"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a-file/store"), "{stderr}");
}

#[test]
#[cfg_attr(
    not(framecache_test_s3),
    ignore = "needs the Garage server: run scripts/test.sh"
)]
fn an_unreachable_endpoint_fails_with_one_line() {
    let env = Env::s3();
    let cli = Cli::new(&env, "cli-unreachable");
    let line = cli.fails(
        1,
        &["--endpoint", "http://127.0.0.1:1", "ls", &unique("nowhere")],
    );
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(line.contains("cache/timelines/nowhere"), "{line}");
}

#[test]
#[cfg_attr(
    not(framecache_test_s3),
    ignore = "needs the Garage server: run scripts/test.sh"
)]
fn wrong_credentials_fail_without_printing_them() {
    let env = Env::s3();
    let cli = Cli::new(&env, "cli-creds");
    const KEY_ID: &str = "GK00112233445566778899aabb";
    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for log in ["warn", "trace"] {
        let out = cli
            .cmd(&["ls", &unique("creds")])
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("FRAMECACHE_LOG", log)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("PermissionDenied"), "{all}");
        assert!(
            !all.contains(KEY_ID) && !all.contains(SECRET),
            "{log}: {all}"
        );
    }
}
