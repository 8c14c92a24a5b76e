//! Disk-tier eviction at scale, one JSON line per size: a cache directory filled with
//! `--entries` small entries, then another process replacing entries in a loop (its write
//! latencies and rate before and while eviction runs, over three rounds), the write that
//! crosses the high watermark against writes with room, the write that finds usage above
//! the hard limit with no evictor running, an evictor SIGKILLed mid-round (the next
//! process's takeover and the ledger against the files), the CPU a new process spends in
//! its first seconds after opening, and the time to recount the whole directory and to
//! rebuild a lost ledger.
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
/// Eviction rounds measured per size.
const ROUNDS: usize = 3;

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
    let picked: Vec<(u64, u64)> = samples
        .iter()
        .copied()
        .filter(|(s, _)| *s >= from && *s < to)
        .collect();
    summary(&picked, to - from)
}

/// Latency percentiles (ms) and rate (writes/s) of `samples`, taken over `span_ns`.
fn summary(samples: &[(u64, u64)], span_ns: u64) -> serde_json::Value {
    let (from, to) = (0, span_ns.max(1));
    let mut lat: Vec<u64> = samples.iter().map(|(_, l)| *l).collect();
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
        "p999_ms": pct(0.999),
        "max_ms": *lat.last().unwrap() as f64 / 1e6,
    })
}

/// The directory's lock taken exclusively (no eviction or write is half done meanwhile):
/// the ledger's count against the bytes of the entry files.
fn ledger_against_directory(dir: &Path, disk: &DiskTier) -> (u64, u64) {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::open(dir.join("v1/.lock")).unwrap();
    // SAFETY: flock on a descriptor `lock` keeps open; released when it is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let usage = disk.usage();
    (disk.accounted(), usage.bytes)
}

/// Starts an evictor with a capacity that puts usage at the hard limit, SIGKILLs it once
/// its round has freed a little, and times a new process's takeover (election, the repair
/// of the shard it died in); then checks the ledger against the directory.
fn crash_mid_round(dir: &Path, inspector: &DiskTier) -> serde_json::Value {
    let used = inspector.accounted();
    let cap = used;
    let arg = dir.display().to_string();
    let mut evictor = child("evictor", &[arg, cap.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut evictor, "the evictor");
    // A round to the low watermark frees a tenth of the capacity: kill it a fifth of the way.
    let deadline = Instant::now() + Duration::from_secs(600);
    while inspector.accounted() > used - cap / 50 {
        assert!(Instant::now() < deadline, "the round never started");
        std::thread::sleep(Duration::from_micros(200));
    }
    // SAFETY: a signal to our own child, still running (not yet waited for).
    unsafe { libc::kill(evictor.id() as libc::pid_t, libc::SIGKILL) };
    let killed = Instant::now();
    evictor.wait().unwrap();
    let freed_before_kill = used - inspector.accounted();
    let repaired = inspector.eviction_status().repaired_shards;
    // The next process to open the cache: its candidate thread tries the lock at once.
    let successor = tier(dir, cap);
    while !successor.eviction_status().evictor_here {
        assert!(Instant::now() < deadline, "no successor");
        std::thread::sleep(Duration::from_micros(200));
    }
    let takeover_ms = killed.elapsed().as_secs_f64() * 1e3;
    let status = successor.eviction_status();
    drop(successor);
    let (ledger, files) = ledger_against_directory(dir, inspector);
    json!({
        "freed_before_kill": freed_before_kill,
        "takeover_and_repair_ms": takeover_ms,
        "shards_repaired": status.repaired_shards - repaired,
        "ledger_equals_directory": ledger == files,
        "ledger": ledger,
        "directory": files,
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

    // Several rounds, each: this process writes new entries until one crosses the high
    // watermark (against its writes with room), the evictor's round runs, then a pause so
    // that the next round's "before" window is the other writer alone again.
    let high = parent.eviction_status().high_watermark;
    let payload = vec![2u8; PAYLOAD];
    let mut with_room = Vec::new();
    let mut crossings = Vec::new();
    let mut windows = Vec::new();
    let mut statuses = Vec::new();
    let mut before_from = writer_started + 200_000_000;
    let mut i = 0u64;
    for _ in 0..ROUNDS {
        let rounds = parent.eviction_status().rounds;
        let trigger_start = loop {
            let before = parent.accounted();
            let started = mono_ns();
            parent.write_blocking(&format!("n{i}"), &payload).unwrap();
            let took = mono_ns() - started;
            i += 1;
            if before <= high && parent.accounted() > high {
                crossings.push(took);
                break started;
            }
            with_room.push(took);
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        while parent.eviction_status().rounds == rounds {
            assert!(Instant::now() < deadline, "the round never ended");
            std::thread::sleep(Duration::from_millis(2));
        }
        let round_end = mono_ns();
        statuses.push(parent.eviction_status());
        windows.push((before_from, trigger_start, round_end.max(trigger_start + 1)));
        std::thread::sleep(Duration::from_millis(1500));
        before_from = round_end + 300_000_000;
    }
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
    with_room.sort_unstable();
    let room_p50_ms = with_room[with_room.len() / 2] as f64 / 1e6;
    let crossing_ms = *crossings.iter().max().unwrap() as f64 / 1e6;
    // Every round's windows apart, and all "before" against all "during" samples together.
    let rounds: Vec<serde_json::Value> = windows
        .iter()
        .zip(&statuses)
        .map(|(&(from, trigger, end), status)| {
            json!({
                "before": window(&samples, from, trigger),
                "during": window(&samples, trigger, end),
                "entries_removed": status.last_round_entries,
                "ms": status.last_round_us as f64 / 1e3,
            })
        })
        .collect();
    let pick = |during: bool| -> Vec<(u64, u64)> {
        windows
            .iter()
            .flat_map(|&(from, trigger, end)| {
                let (a, b) = if during {
                    (trigger, end)
                } else {
                    (from, trigger)
                };
                samples
                    .iter()
                    .copied()
                    .filter(move |(s, _)| *s >= a && *s < b)
            })
            .collect()
    };
    let span = |during: bool| -> u64 {
        windows
            .iter()
            .map(|&(from, trigger, end)| {
                if during {
                    end - trigger
                } else {
                    trigger - from
                }
            })
            .sum()
    };
    let before = summary(&pick(false), span(false));
    let during = summary(&pick(true), span(true));
    let status = *statuses.last().unwrap();

    // With no evictor: usage over the hard limit, one write evicts a batch itself.
    evictor.kill().unwrap();
    evictor.wait().unwrap();
    let lone = inspector(&dir, parent.accounted().saturating_sub(1));
    let started = Instant::now();
    lone.write_blocking("over-the-limit", &payload).unwrap();
    let hard_ms = started.elapsed().as_secs_f64() * 1e3;

    // An evictor killed (SIGKILL) in the middle of a round: a process opening the cache
    // takes over, repairs the shard it died in, and the ledger then equals the directory.
    let crash = crash_mid_round(&dir, &parent);

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
        "rate_during_vs_before": during["writes_per_s"].as_f64().unwrap_or(0.0)
            / before["writes_per_s"].as_f64().unwrap_or(1.0),
        "rounds": rounds,
        "writer_batches": status.writer_batches,
        "crossing_high_watermark_max_ms": crossing_ms,
        "write_with_room_p50_ms": room_p50_ms,
        "write_over_hard_limit_no_evictor_ms": hard_ms,
        "open_cpu_s": open["cpu_s"],
        "full_recount_s": recount_s,
        "full_recount_entries": recount.entries,
        "ledger_rebuild_ms": rebuild_ms,
        "crash_mid_round": crash,
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
