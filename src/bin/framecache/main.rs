//! The `framecache` command line: flags and environment become a [`CacheConfig`], each
//! subcommand calls the library. One module per subcommand group; `output` holds what they
//! share (redaction, progress bars, JSON).
//!
//! [`CacheConfig`]: framecache::CacheConfig

mod admin;
mod demo;
mod global;
mod output;
mod put;
mod read;

use anyhow::Result;
use clap::{Parser, Subcommand};
use framecache::Seqs;
use global::Global;
use output::{Redacting, redact};
use std::path::PathBuf;

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
    /// encoded to JPEG. The timeline's other frames stay, unless `--replace`.
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
        /// Rebuild the timeline: it becomes exactly these frames, every other one removed.
        #[arg(long)]
        replace: bool,
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
    /// Write every frame of a timeline (or those `--seqs` names) as `<seq>.jpg` into a
    /// directory.
    Export {
        /// Timeline id.
        timeline: String,
        /// Output directory (created if missing).
        dir: PathBuf,
        /// Only these frames: `A..B` (B excluded), `A..=B` or one seq; each must exist.
        #[arg(long, value_parser = parse_seqs)]
        seqs: Option<Seqs>,
    },
    /// Prefetch whole timelines (or the frames `--seqs` names of each) into the disk tier.
    Warm {
        /// Timeline ids.
        #[arg(required = true)]
        timelines: Vec<String>,
        /// Only these frames of each timeline: `A..B` (B excluded), `A..=B` or one seq.
        #[arg(long, value_parser = parse_seqs)]
        seqs: Option<Seqs>,
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
        /// Bearer token required on every route but /healthz and the viewer's page (at
        /// least 16 characters). Prefer --token-file or the environment: the command line
        /// is visible to every local user in /proc.
        #[arg(long, env = framecache::server::TOKEN_ENV, hide_env_values = true)]
        token: Option<String>,
        /// File holding the bearer token (its first line; surrounding whitespace ignored).
        /// Takes precedence over --token and FRAMECACHE_TOKEN.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Connections open at once.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Connections open at once from one client address (raise it behind a reverse
        /// proxy on the same machine).
        #[arg(long, default_value_t = 128)]
        max_connections_per_client: usize,
        /// Host name answered besides localhost, 127.0.0.1 and [::1] (repeatable); without
        /// a token no other Host is answered.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// Seconds a request head may take to arrive (and a keep-alive connection may idle).
        #[arg(long, default_value_t = 10)]
        header_timeout: u64,
        /// Seconds a whole request may take, first byte to last, however slowly it is sent.
        #[arg(long, default_value_t = 60)]
        request_deadline: u64,
        /// Requests handled at once; more are answered 503 at once.
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Copy frames into the socket instead of sending them with sendfile.
        #[arg(long)]
        no_sendfile: bool,
        /// Seconds a request may take before it is answered 503.
        #[arg(long, default_value_t = 30)]
        request_timeout: u64,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FRAMECACHE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(|| Redacting(std::io::stderr()))
        .init();
    let cli = {
        use clap::{CommandFactory, FromArgMatches};
        let matches = global::with_defaults(Cli::command()).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    let serve = matches!(cli.command, Command::Serve { .. });
    // A one-shot command reads each frame once and exits: a JPEG memory tier would only
    // copy every frame into memory nobody reads again (a 300-frame `export` took 65 ms with
    // one, 53 ms without). `serve` and `demo` (whose hot step shows that tier) keep theirs.
    let one_shot = !serve && !matches!(cli.command, Command::Demo { .. });
    let config = cli.global.config().map(|mut config| {
        if one_shot {
            config.memory.capacity = 0;
        }
        config
    });
    let origin = config
        .as_ref()
        .map(global::origin_description)
        .unwrap_or_default();
    // A command reads local entries on the blocking threads, a few dozen microseconds each:
    // a thread per core keeps them busy, where tokio's default would start one per entry in
    // flight (dozens) and switch between them. The server keeps the default for its clients.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if !serve {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        builder.max_blocking_threads(cores * 2);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let ran = runtime.block_on(run(cli, config));
    // Raw frames a command decoded are written behind it: kept for the machine's next
    // loads unless that takes too long (returns at once when none is queued).
    framecache::flush_raw_writes(std::time::Duration::from_secs(30));
    if let Err(err) = ran {
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

/// Runs one subcommand.
async fn run(cli: Cli, config: framecache::Result<framecache::CacheConfig>) -> Result<()> {
    let config = config?;
    let json = cli.global.json;
    let fc = framecache::FrameCache::new(&config)?;
    match cli.command {
        Command::Demo {
            timeline,
            frames,
            width,
            height,
        } => demo::run(&config, &fc, &timeline, frames, width, height, json).await,
        Command::Put {
            timeline,
            paths,
            quality,
            sequential,
            timestamps,
            replace,
        } => {
            let options = put::Options {
                quality,
                sequential,
                timestamps,
                replace,
                concurrency: config.concurrency,
            };
            put::run(&fc, &timeline, &paths, &options, json).await
        }
        Command::Ls { timeline: None } => read::timelines(&fc, json).await,
        Command::Ls { timeline: Some(tl) } => read::frames(&fc, &tl, json).await,
        Command::Get {
            timeline,
            seq,
            output,
        } => read::get(&fc, &timeline, seq, output, json).await,
        Command::Export {
            timeline,
            dir,
            seqs,
        } => read::export(&fc, &timeline, &dir, seqs.unwrap_or_default(), json).await,
        Command::Warm { timelines, seqs } => {
            read::warm(&fc, &timelines, seqs.unwrap_or_default(), json).await
        }
        Command::Clear {
            timeline,
            local_only,
        } => admin::clear(&fc, &timeline, local_only, json).await,
        Command::Stats => admin::stats(&fc, json),
        Command::Verify => admin::verify(&fc, json).await,
        #[cfg(feature = "server")]
        Command::Serve {
            bind,
            token,
            token_file,
            max_connections,
            max_connections_per_client,
            allow_hosts,
            header_timeout,
            request_deadline,
            max_in_flight,
            no_sendfile,
            request_timeout,
        } => {
            let secs = std::time::Duration::from_secs;
            let token = match token_file {
                Some(path) => Some(framecache::server::read_token_file(&path)?),
                None => token,
            };
            let opts = framecache::server::ServeOptions {
                bind,
                token,
                max_connections,
                max_connections_per_client,
                allowed_hosts: allow_hosts,
                header_timeout: secs(header_timeout),
                request_deadline: secs(request_deadline),
                max_in_flight,
                request_timeout: secs(request_timeout),
                sendfile: !no_sendfile,
                ..Default::default()
            };
            let server = framecache::server::Server::bind(fc, &opts).await?;
            println!("serving on http://{}", server.local_addr());
            server.run(framecache::server::shutdown_signal()).await?;
            Ok(())
        }
    }
}

/// `--seqs A..B`: the library's parser, its message for clap.
fn parse_seqs(text: &str) -> std::result::Result<Seqs, String> {
    Seqs::parse(text).map_err(|e| e.to_string())
}
