//! Local housekeeping and visibility: `clear`, `stats`, `verify`.

use crate::output::{progress, report};
use anyhow::{Result, bail};
use framecache::{ClearScope, EvictionStatus, FrameCache, LimitedBy};

/// `clear`: a timeline at the origin and locally, or only locally.
pub async fn clear(fc: &FrameCache, timeline: &str, local_only: bool, json: bool) -> Result<()> {
    if local_only {
        let n = fc.clear_local(timeline, ClearScope::All).await?;
        report(
            json,
            serde_json::json!({"timeline": timeline, "local_entries_removed": n}),
            || format!("dropped {n} local entries of {timeline}"),
        )
    } else {
        fc.clear(timeline, ClearScope::All).await?;
        report(
            json,
            serde_json::json!({"timeline": timeline, "cleared": true}),
            || format!("cleared {timeline}"),
        )
    }
}

/// `stats`: disk usage against the cap, and the counters.
pub fn stats(fc: &FrameCache, json: bool) -> Result<()> {
    let usage = fc.chain().disk().map(|d| d.usage());
    let decoded = fc.decoded_usage();
    let stats = fc.stats();
    if json {
        println!(
            "{}",
            serde_json::json!({"disk_usage": usage, "decoded_usage": decoded, "counters": stats})
        );
    } else {
        if let Some(u) = usage {
            println!(
                "disk: {} entries, {} bytes of {} ({} temp files)",
                u.entries, u.bytes, u.capacity, u.temp_files
            );
        }
        if let Some(e) = &stats.disk_eviction {
            println!("  {}", limit_line(e));
        }
        if let Some(u) = decoded.disk {
            println!(
                "decoded frames on disk: {} entries, {} bytes of {} ({} temp files)",
                u.entries, u.bytes, u.capacity, u.temp_files
            );
        }
        if let Some(e) = &stats.decoded_disk_eviction {
            println!("  {}", limit_line(e));
        }
        println!("origin: {}", fc.chain().origin().describe());
    }
    Ok(())
}

/// A disk tier's effective limit and why: its capacity, or what the filesystem spares.
fn limit_line(e: &EvictionStatus) -> String {
    let why = match e.limited_by {
        LimitedBy::FreeSpace => format!(
            "free space: the filesystem has {} bytes free of {}, keeps {} free, and the tiers on it share the rest",
            e.fs_free, e.fs_size, e.min_free
        ),
        LimitedBy::Budget | LimitedBy::Unknown => format!(
            "the capacity less the tier's own files; the filesystem has {} bytes free of {}, keeps {} free",
            e.fs_free, e.fs_size, e.min_free
        ),
    };
    format!("limit {} bytes ({why})", e.hard_limit)
}

/// `verify`: every disk entry's checksum, JPEGs and decoded frames; bad entries are removed
/// and listed.
pub async fn verify(fc: &FrameCache, json: bool) -> Result<()> {
    let Some(disk) = fc.chain().disk().cloned() else {
        bail!("no disk cache configured");
    };
    let bar = progress(0, "verify", json);
    let task_bar = bar.clone();
    let task_fc = fc.clone();
    let (mut report, decoded) = tokio::task::spawn_blocking(move || {
        let mut show = |done, total| {
            task_bar.set_length(total);
            task_bar.set_position(done);
        };
        let jpegs = disk.verify_blocking(&mut show);
        (jpegs, task_fc.verify_decoded_blocking(&mut show))
    })
    .await?;
    bar.finish_and_clear();
    let decoded_checked = decoded.as_ref().map_or(0, |d| d.checked);
    if let Some(decoded) = decoded {
        report.checked += decoded.checked;
        report.bytes += decoded.bytes;
        report.bad.extend(decoded.bad);
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "checked {} entries ({} bytes, {decoded_checked} of them decoded frames), {} bad and removed",
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
