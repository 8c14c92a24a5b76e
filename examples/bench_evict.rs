//! Disk-tier eviction at scale, one JSON line per size: a cache directory filled with
//! `--entries` small entries, then another process replacing entries in a loop (its write
//! latencies and rate before and while eviction runs), the write that crosses the high
//! watermark against writes with room, the write that finds usage above the hard limit
//! with no evictor running, the CPU a new process spends in its first seconds after
//! opening, and the time to recount the whole directory and to rebuild a lost ledger.
//!
//! ```sh
//! cargo run --release --example bench_evict -- --entries 100000 --entries 400000
//! ```
//!
//! Child roles (the same binary run again): `evictor DIR CAP` stands for election and
//! evicts until killed; `open DIR CAP SECS` opens, reads one entry and reports its CPU
//! time after SECS seconds; `writer DIR CAP OUT STOP` replaces entries until the file
//! STOP exists, writing a 16-byte sample per write (start, latency) to OUT.

use framecache::Metrics;
use framecache::tier::DiskTier;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of each entry's payload (the header adds the key and checksums).
const PAYLOAD: usize = 1000;
/// Keys the other writer replaces (replacing does not grow usage).
const WRITER_KEYS: u64 = 1000;

/// Nanoseconds on the machine's monotonic clock, comparable across processes.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's user + system CPU time in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn tier(dir: &Path, cap: u64) -> DiskTier {
    DiskTier::open(dir, cap, Arc::new(Metrics::default()))
}

fn inspector(dir: &Path, cap: u64) -> DiskTier {
    DiskTier::open_inspector(dir, cap, Arc::new(Metrics::default()))
}

fn child(role: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(role).args(args).stdin(Stdio::null());
    cmd
}

fn wait_line(child: &mut Child, what: &str) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "{what} exited");
    line
}

fn role_evictor(dir: &Path, cap: u64) {
    let disk = tier(dir, cap);
    while !disk.eviction_status().evictor_here {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("READY");
    loop {
        std::thread::park();
    }
}

fn role_open(dir: &Path, cap: u64, secs: u64) {
    let before = cpu_seconds();
    let disk = tier(dir, cap);
    let first = disk.read_blocking("k1").unwrap().is_some();
    std::thread::sleep(Duration::from_secs(secs));
    let status = disk.eviction_status();
    println!(
        "{}",
        json!({"cpu_s": cpu_seconds() - before, "hit": first, "evictor_here": status.evictor_here})
    );
}

fn role_writer(dir: &Path, cap: u64, out: &Path, stop: &Path) {
    let disk = inspector(dir, cap);
    let payload = vec![5u8; PAYLOAD];
    let mut samples = Vec::with_capacity(1 << 20);
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut i = 0u64;
    while !stop.exists() {
        let started = mono_ns();
        disk.write_blocking(&format!("w{}", i % WRITER_KEYS), &payload)
            .unwrap();
        samples.extend_from_slice(&started.to_le_bytes());
        samples.extend_from_slice(&(mono_ns() - started).to_le_bytes());
        i += 1;
    }
    std::fs::write(out, samples).unwrap();
    println!("DONE");
}

/// Latency percentiles (ms) and rate (writes/s) of the samples starting in `[from, to)`.
fn window(samples: &[(u64, u64)], from: u64, to: u64) -> serde_json::Value {
    let mut lat: Vec<u64> = samples
        .iter()
        .filter(|(s, _)| *s >= from && *s < to)
        .map(|(_, l)| *l)
        .collect();
    lat.sort_unstable();
    if lat.is_empty() {
        return json!(null);
    }
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1e6;
    json!({
        "writes": lat.len(),
        "writes_per_s": (lat.len() as f64 / ((to - from) as f64 / 1e9)).round(),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": *lat.last().unwrap() as f64 / 1e6,
    })
}

fn fill(dir: &Path, entries: u64) -> f64 {
    let started = Instant::now();
    let disk = inspector(dir, u64::MAX / 4);
    let threads = 2;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let disk = disk.clone();
            scope.spawn(move || {
                let payload = vec![1u8; PAYLOAD];
                for i in (t..entries).step_by(threads as usize) {
                    disk.write_blocking(&format!("k{i}"), &payload).unwrap();
                }
            });
        }
    });
    entries as f64 / started.elapsed().as_secs_f64()
}

fn run(root: &Path, entries: u64) -> serde_json::Value {
    let dir = root.join(format!("n{entries}"));
    let fill_rate = fill(&dir, entries);
    let parent = inspector(&dir, u64::MAX / 4);
    // A full recount of the directory: what rebuilding a lost ledger costs, in one go.
    let started = Instant::now();
    let recount = parent.recount();
    let recount_s = started.elapsed().as_secs_f64();
    let used = parent.accounted();
    // Usage at 94 % of the capacity: 1 % below the high watermark.
    let cap = used * 100 / 94;
    let parent = inspector(&dir, cap);
    let arg = |p: &Path| p.display().to_string();

    let mut evictor = child("evictor", &[arg(&dir), cap.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut evictor, "the evictor");

    // A new process while the evictor runs elsewhere: its CPU in its first 3 seconds.
    let out = child("open", &[arg(&dir), cap.to_string(), "3".into()])
        .output()
        .unwrap();
    let open: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // The other writer, replacing its own keys.
    let samples_path = root.join("samples");
    let stop = root.join("stop");
    let _ = std::fs::remove_file(&stop);
    let mut writer = child(
        "writer",
        &[arg(&dir), cap.to_string(), arg(&samples_path), arg(&stop)],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    wait_line(&mut writer, "the writer");
    let writer_started = mono_ns();
    std::thread::sleep(Duration::from_secs(2));

    // This process writes new entries until one crosses the high watermark.
    let high = parent.eviction_status().high_watermark;
    let rounds = parent.eviction_status().rounds;
    let payload = vec![2u8; PAYLOAD];
    let mut with_room = Vec::new();
    let mut i = 0u64;
    let (trigger_start, crossing_ms) = loop {
        let before = parent.accounted();
        let started = mono_ns();
        parent.write_blocking(&format!("n{i}"), &payload).unwrap();
        let took = mono_ns() - started;
        i += 1;
        if before <= high && parent.accounted() > high {
            break (started, took as f64 / 1e6);
        }
        with_room.push(took);
    };
    with_room.sort_unstable();
    let room_p50_ms = with_room[with_room.len() / 2] as f64 / 1e6;
    let deadline = Instant::now() + Duration::from_secs(600);
    while parent.eviction_status().rounds == rounds {
        assert!(Instant::now() < deadline, "the round never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    let round_end = mono_ns();
    let status = parent.eviction_status();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop, b"").unwrap();
    wait_line(&mut writer, "the writer");
    writer.wait().unwrap();
    let raw = std::fs::read(&samples_path).unwrap();
    let samples: Vec<(u64, u64)> = raw
        .chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap()),
                u64::from_le_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect();
    // Before: from 200 ms after the writer started to the trigger (its first writes
    // create its keys).
    let before = window(&samples, writer_started + 200_000_000, trigger_start);
    let during = window(&samples, trigger_start, round_end.max(trigger_start + 1));

    // With no evictor: usage over the hard limit, one write evicts a batch itself.
    evictor.kill().unwrap();
    evictor.wait().unwrap();
    let lone = inspector(&dir, parent.accounted().saturating_sub(1));
    let started = Instant::now();
    lone.write_blocking("over-the-limit", &payload).unwrap();
    let hard_ms = started.elapsed().as_secs_f64() * 1e3;

    // A lost ledger: the next evictor rebuilds it shard by shard in the background.
    std::fs::remove_file(dir.join("v1/.usage")).unwrap();
    drop((parent, lone));
    let rebuilt = tier(&dir, cap);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(rebuilt.eviction_status().evictor_here && rebuilt.eviction_status().counted) {
        assert!(Instant::now() < deadline, "the rebuild never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    let rebuild_ms = rebuilt.eviction_status().last_rebuild_us as f64 / 1e3;
    drop(rebuilt);
    let _ = std::fs::remove_dir_all(&dir);

    json!({
        "entries": entries,
        "fill_entries_per_s": fill_rate.round(),
        "capacity": cap,
        "other_writer_before": before,
        "other_writer_during_eviction": during,
        "round": {
            "entries_removed": status.last_round_entries,
            "ms": status.last_round_us as f64 / 1e3,
            "writer_batches": status.writer_batches,
        },
        "crossing_high_watermark_ms": crossing_ms,
        "write_with_room_p50_ms": room_p50_ms,
        "write_over_hard_limit_no_evictor_ms": hard_ms,
        "open_cpu_s": open["cpu_s"],
        "full_recount_s": recount_s,
        "full_recount_entries": recount.entries,
        "ledger_rebuild_ms": rebuild_ms,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = |i: usize| PathBuf::from(&args[i]);
    let num = |i: usize| args[i].parse::<u64>().unwrap();
    match args.first().map(String::as_str) {
        Some("evictor") => return role_evictor(&path(1), num(2)),
        Some("open") => return role_open(&path(1), num(2), num(3)),
        Some("writer") => return role_writer(&path(1), num(2), &path(3), &path(4)),
        _ => {}
    }
    let mut sizes = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--entries" => sizes.push(it.next().unwrap().parse::<u64>().unwrap()),
            other => panic!("unknown flag {other}"),
        }
    }
    if sizes.is_empty() {
        sizes = vec![100_000, 400_000];
    }
    let root =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    for entries in sizes {
        println!("{}", run(root.path(), entries));
    }
}
