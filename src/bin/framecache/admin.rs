//! Local housekeeping and visibility: `clear`, `stats`, `verify`.

use crate::output::{progress, report};
use anyhow::{Result, bail};
use framecache::{ClearScope, FrameCache};

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

/// `verify`: every disk entry's checksum; bad entries are removed and listed.
pub async fn verify(fc: &FrameCache, json: bool) -> Result<()> {
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
