//! The cache's counters in the Prometheus text format, as the tables of `metrics.rs` name
//! them, and the disk tiers' eviction state; the HELP/TYPE lines and label escaping.

use crate::metrics::{Counter, Stats, TIER_COUNTERS};
use crate::tier::EvictionStatus;
use std::fmt::Write;

/// The cache's counters, as their tables in `metrics.rs` name them: one metric per tier
/// counter labelled by tier, then the others, labelled where several share a metric.
pub(super) fn cache(out: &mut String, stats: &Stats) {
    let tiers: Vec<(&str, Vec<u64>)> = stats
        .tiers()
        .filter(|(t, _)| t.exported)
        .map(|(t, s)| (t.name, s.values().map(|(_, v)| v).collect()))
        .collect();
    for (i, counter) in TIER_COUNTERS.iter().enumerate() {
        declare(out, counter);
        for (tier, values) in &tiers {
            let _ = writeln!(out, "{}{{tier=\"{tier}\"}} {}", counter.metric, values[i]);
        }
    }
    let values: Vec<_> = stats
        .values()
        .filter(|(c, _)| !c.metric.is_empty())
        .collect();
    let mut declared = Vec::new();
    for (counter, _) in &values {
        if declared.contains(&counter.metric) {
            continue;
        }
        declared.push(counter.metric);
        declare(out, counter);
        // Every sample of this metric together, under its one HELP.
        for (sample, value) in values.iter().filter(|(c, _)| c.metric == counter.metric) {
            match sample.label {
                Some((key, label)) => {
                    let _ = writeln!(out, "{}{{{key}=\"{label}\"}} {value}", sample.metric);
                }
                None => {
                    let _ = writeln!(out, "{} {value}", sample.metric);
                }
            }
        }
    }
    render_eviction(out, stats);
}

/// The HELP and TYPE lines of a counter's metric.
fn declare(out: &mut String, counter: &Counter) {
    if counter.gauge {
        gauge(out, counter.metric, counter.help);
    } else {
        self::counter(out, counter.metric, counter.help);
    }
}

/// The disk tiers' eviction state, labelled `tier="disk"` and `tier="decoded_disk"`.
fn render_eviction(out: &mut String, stats: &Stats) {
    type Field = (&'static str, &'static str, bool, fn(&EvictionStatus) -> f64);
    const FIELDS: [Field; 18] = [
        (
            "used_bytes",
            "Bytes in use: entries plus writes in progress.",
            false,
            |e| e.used_bytes as f64,
        ),
        (
            "low_watermark_bytes",
            "Eviction stops at this usage.",
            false,
            |e| e.low_watermark as f64,
        ),
        (
            "high_watermark_bytes",
            "Eviction starts above this usage.",
            false,
            |e| e.high_watermark as f64,
        ),
        (
            "hard_limit_bytes",
            "Above this usage a writer evicts a batch: the capacity or what the filesystem spares.",
            false,
            |e| e.hard_limit as f64,
        ),
        (
            "capacity_bytes",
            "The capacity (budget), configured or following the filesystem's size.",
            false,
            |e| e.capacity as f64,
        ),
        (
            "limited_by_free_space",
            "1 when the hard limit is what the filesystem spares, under the capacity.",
            false,
            |e| f64::from(u8::from(e.limited_by == crate::tier::LimitedBy::FreeSpace)),
        ),
        (
            "filesystem_size_bytes",
            "Size of the filesystem under the directory, as last sampled.",
            false,
            |e| e.fs_size as f64,
        ),
        (
            "filesystem_free_bytes",
            "Bytes available on that filesystem, as last sampled.",
            false,
            |e| e.fs_free as f64,
        ),
        (
            "min_free_bytes",
            "Bytes the disk tiers leave free on that filesystem.",
            false,
            |e| e.min_free as f64,
        ),
        (
            "full_writes_total",
            "Writes that found the filesystem full: skipped, a batch evicted.",
            true,
            |e| e.full_writes as f64,
        ),
        (
            "evictor_running",
            "1 when an evictor is running on this machine.",
            false,
            |e| f64::from(u8::from(e.evictor_running)),
        ),
        (
            "evictor_here",
            "1 when this process is the evictor.",
            false,
            |e| f64::from(u8::from(e.evictor_here)),
        ),
        (
            "last_eviction_seconds",
            "Duration of the last eviction round.",
            false,
            |e| e.last_round_us as f64 / 1e6,
        ),
        (
            "last_eviction_entries",
            "Entries the last eviction round removed.",
            false,
            |e| e.last_round_entries as f64,
        ),
        (
            "eviction_rounds_total",
            "Eviction rounds completed on the directory.",
            true,
            |e| e.rounds as f64,
        ),
        (
            "writer_batches_total",
            "Writes that found usage above the hard limit and evicted a batch.",
            true,
            |e| e.writer_batches as f64,
        ),
        (
            "repaired_shards_total",
            "Shards recounted after a process died while changing them.",
            true,
            |e| e.repaired_shards as f64,
        ),
        (
            "evictor_takeovers_total",
            "Times the evictor's lock changed hands.",
            true,
            |e| e.takeovers as f64,
        ),
    ];
    let tiers = [
        ("disk", stats.disk_eviction),
        ("decoded_disk", stats.decoded_disk_eviction),
    ];
    if tiers.iter().all(|(_, e)| e.is_none()) {
        return;
    }
    for (field, help, is_counter, get) in FIELDS {
        let name = format!("framecache_disk_{field}");
        if is_counter {
            counter(out, &name, help);
        } else {
            gauge(out, &name, help);
        }
        for (tier, e) in &tiers {
            if let Some(e) = e {
                let _ = writeln!(out, "{name}{{tier=\"{tier}\"}} {}", get(e));
            }
        }
    }
}

pub(super) fn counter(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

pub(super) fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Escapes a label value (`\`, `"` and newlines).
pub(super) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
