//! `framecache demo`: the main job on a synthetic timeline, cold, warm and hot.

use anyhow::Result;
use framecache::{CacheConfig, ClearScope, Frame, FrameCache, Source};
use framecache::{LoadOptions, Seqs, WriteOptions};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Caches a synthetic timeline, then loads it cold, warm and hot, reporting each step.
pub async fn run(
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
    fc.cache_frames(timeline, &frames, WriteOptions::default())
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
            .map(|s: &BTreeMap<String, u64>| {
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
) -> Result<(&'static str, Duration, Option<BTreeMap<String, u64>>)> {
    let start = Instant::now();
    let mut served = BTreeMap::new();
    let mut stream = Box::pin(fc.stream_frames(timeline, Seqs::All, LoadOptions::default()));
    while let Some(item) = stream.next().await {
        let (_, source): (Frame, Source) = item?;
        *served.entry(source.to_string()).or_insert(0) += 1;
    }
    Ok((what, start.elapsed(), Some(served)))
}
