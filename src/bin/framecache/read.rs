//! Reading subcommands: `ls`, `get`, `export`, `warm`.

use crate::output::{progress, report};
use anyhow::{Context, Result, bail};
use framecache::{FrameCache, Seqs};
use futures::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `ls`: every timeline id.
pub async fn timelines(fc: &FrameCache, json: bool) -> Result<()> {
    let ids = fc.timelines().await?;
    if json {
        println!("{}", serde_json::to_string(&ids)?);
    } else {
        ids.iter().for_each(|id| println!("{id}"));
    }
    Ok(())
}

/// `ls TIMELINE`: one timeline's frames, and where each is cached now.
pub async fn frames(fc: &FrameCache, tl: &str, json: bool) -> Result<()> {
    let entries = fc.list_frames(tl).await?;
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let cached = fc.chain().local_source(&e.key, e.version.as_ref());
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

/// `get`: one frame's JPEG to a file or stdout.
pub async fn get(
    fc: &FrameCache,
    timeline: &str,
    seq: u64,
    output: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let Some((jpeg, source)) = fc.frame_jpeg(timeline, seq).await? else {
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

/// `export`: every frame (or those `seqs` names) as `<seq>.jpg` into `dir`.
pub async fn export(
    fc: &FrameCache,
    timeline: &str,
    dir: &Path,
    seqs: Seqs,
    json: bool,
) -> Result<()> {
    framecache::layout::validate_id("timeline id", timeline)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (count, stream) = fc.stream_jpegs(timeline, seqs).await?;
    let bar = progress(count as u64, "export", json);
    // Files are written on the blocking threads, one per core at a time, while the next
    // frames are read: creating a file costs more than reading a cached frame.
    let writers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut writes = Box::pin(
        stream
            .map(|frame| async move {
                let frame = frame?;
                let path = dir.join(format!("{}.jpg", frame.seq));
                tokio::task::spawn_blocking(move || {
                    std::fs::write(&path, &frame.jpeg)
                        .with_context(|| format!("cannot write {}", path.display()))
                })
                .await?
            })
            .buffer_unordered(writers),
    );
    let mut written = 0u64;
    while let Some(done) = writes.next().await {
        done?;
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

/// `warm`: whole timelines (or the frames `seqs` names of each) into the local tiers,
/// reporting which tier served each frame.
pub async fn warm(fc: &FrameCache, timelines: &[String], seqs: Seqs, json: bool) -> Result<()> {
    for tl in timelines {
        framecache::layout::validate_id("timeline id", tl)?;
    }
    for tl in timelines {
        let start = Instant::now();
        let (count, stream) = fc.stream_jpegs(tl, seqs.clone()).await?;
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
