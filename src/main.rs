//! The `framecache` command line: flags and environment become a [`CacheConfig`], each
//! subcommand calls the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use framecache::{
    Backend, CacheConfig, ClearScope, DiskConfig, Frame, FrameCache, S3Config, Source,
    default_cache_dir, default_fs_root,
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

mod put;

#[derive(Parser)]
#[command(
    name = "framecache",
    version,
    about = "Tiered cache for video-frame JPEGs in blob storage"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Origin backend: a local directory (default) or S3.
    #[arg(long, env = "FRAMECACHE_BACKEND", value_enum, default_value_t = BackendKind::Fs, global = true)]
    backend: BackendKind,
    /// Root directory of the fs backend [default: ~/.local/share/framecache/store].
    #[arg(long, env = "FRAMECACHE_ROOT", global = true)]
    root: Option<PathBuf>,
    /// S3 bucket.
    #[arg(long, env = "S3_BUCKET", default_value = "mpr", global = true)]
    bucket: String,
    /// S3 endpoint URL (keys come only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// Disk cache directory [default: ~/.cache/framecache].
    #[arg(long, env = "FRAMECACHE_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Memory tier capacity (e.g. 512MiB).
    #[arg(long, env = "FRAMECACHE_MEMORY_CAPACITY", default_value = "512MiB", value_parser = parse_size, global = true)]
    memory_capacity: u64,
    /// Disk tier capacity (e.g. 10GiB).
    #[arg(long, env = "FRAMECACHE_DISK_CAPACITY", default_value = "10GiB", value_parser = parse_size, global = true)]
    disk_capacity: u64,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    Fs,
    S3,
}

#[derive(Subcommand)]
enum Command {
    /// Synthesize a timeline, cache it, and load it cold, warm and hot: what each tier served.
    Demo {
        /// Timeline id to use.
        #[arg(long, default_value = "demo")]
        timeline: String,
        /// Frames to synthesize.
        #[arg(long, default_value_t = 120)]
        frames: u64,
        /// Frame width.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Frame height.
        #[arg(long, default_value_t = 720)]
        height: u32,
    },
    /// Import images as a timeline's frames: JPEGs stored as they are, other formats (PNG)
    /// encoded to JPEG. Replaces the timeline.
    Put {
        /// Timeline id.
        timeline: String,
        /// Image files, or directories whose .jpg/.jpeg/.png files are imported.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// JPEG quality for images that are not JPEG already.
        #[arg(long, default_value_t = framecache::DEFAULT_QUALITY, value_parser = clap::value_parser!(u8).range(1..=100))]
        quality: u8,
        /// Number frames 0, 1, 2... in file-name order instead of taking the seq from the
        /// last number in each file name.
        #[arg(long)]
        sequential: bool,
        /// CSV of `seq,timestamp` lines (a header line is allowed); other frames get 0.0.
        #[arg(long)]
        timestamps: Option<PathBuf>,
    },
    /// List timelines, or one timeline's frames with size and where each is cached now.
    Ls {
        /// Timeline id; all timelines when omitted.
        timeline: Option<String>,
    },
    /// Write one frame's JPEG bytes to a file or stdout.
    Get {
        /// Timeline id.
        timeline: String,
        /// Frame sequence number.
        seq: u64,
        /// Output file (stdout when omitted).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Write every frame of a timeline as `<seq>.jpg` into a directory.
    Export {
        /// Timeline id.
        timeline: String,
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Prefetch whole timelines into the disk tier.
    Warm {
        /// Timeline ids.
        #[arg(required = true)]
        timelines: Vec<String>,
    },
    /// Delete a timeline's frames and overlays.
    Clear {
        /// Timeline id.
        timeline: String,
        /// Drop only this machine's cached copies; keep the origin.
        #[arg(long)]
        local_only: bool,
    },
    /// Disk tier usage and this process's counters.
    Stats,
    /// Check every disk-cache entry's checksum; remove and report the bad ones.
    Verify,
    /// Serve frames, overlays and counters over HTTP, with a scrubbing viewer at `/`.
    #[cfg(feature = "server")]
    Serve {
        /// Address to listen on; anything but loopback requires a token.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Bearer token required on every route but /healthz and the viewer's page.
        #[arg(long, env = framecache::server::TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
        /// Connections open at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Requests handled at once; more are answered 503 at once.
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Seconds a request may take before it is answered 503.
        #[arg(long, default_value_t = 30)]
        request_timeout: u64,
    },
}

/// Parses `512MiB`, `10GiB`, `1.5GB`, `4096`.
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
    };
    Ok((value * mult as f64) as u64)
}

impl Global {
    /// The origin as the user configured it, without credentials.
    fn origin_description(&self) -> String {
        match self.backend {
            BackendKind::Fs => format!(
                "fs:{}",
                self.root.clone().unwrap_or_else(default_fs_root).display()
            ),
            BackendKind::S3 => format!(
                "s3://{} at {}",
                self.bucket,
                self.endpoint.as_deref().unwrap_or("AWS")
            ),
        }
    }

    fn config(&self) -> CacheConfig {
        let backend = match self.backend {
            BackendKind::Fs => Backend::Fs {
                root: self.root.clone().unwrap_or_else(default_fs_root),
            },
            BackendKind::S3 => Backend::S3(S3Config {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
                region: self.region.clone(),
                ..S3Config::from_env()
            }),
        };
        CacheConfig {
            backend,
            memory_capacity: self.memory_capacity,
            disk: Some(DiskConfig {
                dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
                capacity: self.disk_capacity,
            }),
            ..CacheConfig::default()
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FRAMECACHE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(|| Redacting(std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let origin = cli.global.origin_description();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        let ours = err.downcast_ref::<framecache::Error>();
        let invalid = ours.is_some_and(|e| e.is_invalid_input());
        // framecache's errors already carry their cause; others get their context chain.
        let mut line = match ours {
            Some(e) if e.to_string() == err.to_string() => format!("error: {e}"),
            _ => format!("error: {err:#}"),
        };
        if matches!(ours, Some(framecache::Error::Storage { .. })) {
            line.push_str(&format!(" [origin {origin}]"));
        }
        let line = line.replace('\n', " ");
        eprintln!("{}", redact(&line));
        std::process::exit(if invalid { 2 } else { 1 });
    }
}

/// Replaces the S3 credentials of the environment wherever they would be printed.
fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for name in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "FRAMECACHE_TOKEN",
    ] {
        if let Ok(secret) = std::env::var(name)
            && secret.len() >= 4
        {
            out = out.replace(&secret, "<redacted>");
        }
    }
    out
}

/// A log writer that redacts credentials; each log event arrives in one write.
struct Redacting<W>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A progress bar on a terminal; hidden for pipes, files and `--json`.
fn progress(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:32}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.global.config();
    let json = cli.global.json;
    let fc = FrameCache::new(&config)?;
    match cli.command {
        Command::Demo {
            timeline,
            frames,
            width,
            height,
        } => demo(&config, &fc, &timeline, frames, width, height, json).await,
        Command::Ls { timeline: None } => {
            let ids = fc.timelines().await?;
            if json {
                println!("{}", serde_json::to_string(&ids)?);
            } else {
                ids.iter().for_each(|id| println!("{id}"));
            }
            Ok(())
        }
        Command::Ls { timeline: Some(tl) } => {
            let entries = fc.list_frames(&tl).await?;
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let cached = fc.chain().local_source(&e.key);
                    serde_json::json!({
                        "seq": e.seq,
                        "size": e.size,
                        "cached": cached.map_or("origin".to_owned(), |s| s.to_string()),
                        "timestamp": e.meta.as_ref().map(|m| m.timestamp),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!("{:>8} {:>10} {:>12}  cached", "seq", "bytes", "timestamp");
                for (e, r) in entries.iter().zip(&rows) {
                    let ts = e
                        .meta
                        .as_ref()
                        .map_or("-".to_owned(), |m| format!("{:.3}", m.timestamp));
                    println!(
                        "{:>8} {:>10} {ts:>12}  {}",
                        e.seq,
                        e.size,
                        r["cached"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        Command::Get {
            timeline,
            seq,
            output,
        } => {
            let Some((jpeg, source)) = fc.frame_jpeg(&timeline, seq).await? else {
                bail!("frame {seq} of timeline {timeline:?} not found");
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, &jpeg)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"seq": seq, "bytes": jpeg.len(), "source": source, "path": path})
                        );
                    }
                }
                None => std::io::stdout().write_all(&jpeg)?,
            }
            Ok(())
        }
        Command::Export { timeline, dir } => {
            framecache::layout::validate_id("timeline id", &timeline)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let (count, stream) = fc.count_and_stream_jpegs(&timeline).await?;
            let bar = progress(count as u64, "export", json);
            let mut written = 0u64;
            let mut stream = Box::pin(stream);
            while let Some(frame) = stream.next().await {
                let frame = frame?;
                let path = dir.join(format!("{}.jpg", frame.seq));
                std::fs::write(&path, &frame.jpeg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written += 1;
                bar.inc(1);
            }
            bar.finish_and_clear();
            report(
                json,
                serde_json::json!({"timeline": timeline, "frames": written, "dir": dir}),
                || format!("exported {written} frames to {}", dir.display()),
            )
        }
        Command::Warm { timelines } => {
            for tl in &timelines {
                framecache::layout::validate_id("timeline id", tl)?;
            }
            for tl in &timelines {
                let start = Instant::now();
                let (count, stream) = fc.count_and_stream_jpegs(tl).await?;
                let bar = progress(count as u64, "warm", json);
                let mut served = std::collections::BTreeMap::<String, u64>::new();
                let mut stream = Box::pin(stream);
                while let Some(frame) = stream.next().await {
                    *served.entry(frame?.source.to_string()).or_default() += 1;
                    bar.inc(1);
                }
                bar.finish_and_clear();
                let frames: u64 = served.values().sum();
                report(
                    json,
                    serde_json::json!({"timeline": tl, "frames": frames, "served_by": served,
                        "seconds": start.elapsed().as_secs_f64()}),
                    || {
                        format!(
                            "warmed {tl}: {frames} frames in {:.2?} ({served:?})",
                            start.elapsed()
                        )
                    },
                )?;
            }
            Ok(())
        }
        Command::Put {
            timeline,
            paths,
            quality,
            sequential,
            timestamps,
        } => {
            let options = put::Options {
                quality,
                sequential,
                timestamps,
                concurrency: config.concurrency,
            };
            put::run(&fc, &timeline, &paths, &options, json).await
        }
        Command::Verify => {
            let Some(disk) = fc.chain().disk().cloned() else {
                bail!("no disk cache configured");
            };
            let bar = progress(0, "verify", json);
            let task_bar = bar.clone();
            let report = tokio::task::spawn_blocking(move || {
                disk.verify_blocking(|done, total| {
                    task_bar.set_length(total);
                    task_bar.set_position(done);
                })
            })
            .await?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "checked {} entries ({} bytes), {} bad and removed",
                    report.checked,
                    report.bytes,
                    report.bad.len()
                );
                for bad in &report.bad {
                    println!(
                        "  {} ({}): {}",
                        bad.path.display(),
                        bad.key.as_deref().unwrap_or("unknown key"),
                        bad.reason
                    );
                }
            }
            Ok(())
        }
        Command::Clear {
            timeline,
            local_only,
        } => {
            if local_only {
                let n = fc.clear_local(&timeline, ClearScope::All).await?;
                report(
                    json,
                    serde_json::json!({"timeline": timeline, "local_entries_removed": n}),
                    || format!("dropped {n} local entries of {timeline}"),
                )
            } else {
                fc.clear(&timeline, ClearScope::All).await?;
                report(
                    json,
                    serde_json::json!({"timeline": timeline, "cleared": true}),
                    || format!("cleared {timeline}"),
                )
            }
        }
        #[cfg(feature = "server")]
        Command::Serve {
            bind,
            token,
            max_connections,
            max_in_flight,
            request_timeout,
        } => {
            let opts = framecache::server::ServeOptions {
                bind,
                token,
                max_connections,
                max_in_flight,
                request_timeout: std::time::Duration::from_secs(request_timeout),
                ..Default::default()
            };
            let server = framecache::server::Server::bind(fc, &opts).await?;
            println!("serving on http://{}", server.local_addr());
            server.run(framecache::server::shutdown_signal()).await?;
            Ok(())
        }
        Command::Stats => {
            let usage = fc.chain().disk().map(|d| d.usage());
            let stats = fc.stats();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"disk_usage": usage, "counters": stats})
                );
            } else {
                if let Some(u) = usage {
                    println!(
                        "disk: {} entries, {} bytes of {} ({} temp files)",
                        u.entries, u.bytes, u.capacity, u.temp_files
                    );
                }
                println!("origin: {}", fc.chain().origin().describe());
            }
            Ok(())
        }
    }
}

fn report(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
    Ok(())
}

async fn demo(
    config: &CacheConfig,
    fc: &FrameCache,
    timeline: &str,
    n: u64,
    width: u32,
    height: u32,
    json: bool,
) -> Result<()> {
    framecache::layout::validate_id("timeline id", timeline)?;
    let frames: Vec<Frame> = (0..n)
        .map(|s| framecache::synthetic_frame(s, width, height))
        .collect();
    let mut rows = Vec::new();

    let start = Instant::now();
    fc.cache_frames(timeline, &frames, framecache::DEFAULT_QUALITY)
        .await?;
    rows.push((
        "cache_frames (encode + write through)",
        start.elapsed(),
        None,
    ));
    drop(frames);

    // Cold: nothing local, every frame from the origin.
    fc.clear_local(timeline, ClearScope::All).await?;
    let cold = FrameCache::new(config)?;
    rows.push(load_row("load_frames cold", &cold, timeline).await?);
    // Warm: a new handle (empty memory) on the same disk cache, as a second process would.
    let warm = FrameCache::new(config)?;
    rows.push(load_row("load_frames warm (disk)", &warm, timeline).await?);
    rows.push(load_row("load_frames hot (memory)", &warm, timeline).await?);

    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(what, took, sources)| {
                serde_json::json!({"step": what, "seconds": took.as_secs_f64(), "served_by": sources})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"timeline": timeline, "frames": n, "width": width, "height": height,
                "origin": fc.chain().origin().describe(), "encoder": framecache::codec::encoder_name(), "steps": out})
        );
        return Ok(());
    }
    println!(
        "framecache demo: {n} frames {width}x{height}, timeline {timeline:?}, origin {}",
        fc.chain().origin().describe()
    );
    println!(
        "{:<40} {:>10} {:>10}  served by",
        "step", "time", "per frame"
    );
    for (what, took, sources) in &rows {
        let per = took.as_secs_f64() * 1000.0 / n.max(1) as f64;
        let served = sources
            .as_ref()
            .map(|s: &std::collections::BTreeMap<String, u64>| {
                s.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "{what:<40} {:>9.1}ms {per:>8.2}ms  {served}",
            took.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

async fn load_row(
    what: &'static str,
    fc: &FrameCache,
    timeline: &str,
) -> Result<(
    &'static str,
    std::time::Duration,
    Option<std::collections::BTreeMap<String, u64>>,
)> {
    let start = Instant::now();
    let mut served = std::collections::BTreeMap::new();
    let mut stream = Box::pin(fc.stream_frames(timeline));
    while let Some(item) = stream.next().await {
        let (_, source): (Frame, Source) = item?;
        *served.entry(source.to_string()).or_insert(0) += 1;
    }
    Ok((what, start.elapsed(), Some(served)))
}
