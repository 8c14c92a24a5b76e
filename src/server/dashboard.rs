//! What the dashboard at `/stats` plots, served to it as `/ui/plots.js`: its plots, each
//! series gathered from the counter tables of `metrics.rs` (the counters' `shown`) or, for
//! usage and HTTP requests, named here; `ui/stats.js` only draws them.

use crate::metrics::{COUNTERS, TIER_COUNTERS, TIERS};
use serde::Serialize;
use std::sync::LazyLock;

/// One plot, as `stats.js` reads it.
#[derive(Debug, Serialize)]
struct Plot {
    /// Its element ids: `plot-{id}`, `numbers-{id}`.
    id: &'static str,
    title: &'static str,
    /// `"rate"`: counters plotted per second; `"usage"`: bytes held against capacity, in %.
    kind: &'static str,
    /// Values are bytes.
    bytes: bool,
    series: Vec<Series>,
}

/// One line of a plot: the sum of the values at `paths` in the `/v1/stats` answer (dotted;
/// an object there counts as the sum of its values, or for `usage` is `{bytes, capacity}`).
#[derive(Debug, Serialize)]
struct Series {
    name: String,
    paths: Vec<String>,
}

/// The plots in page order: `(id, title, kind, bytes, series not from a counter)`.
type PlotSpec = (
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
);

const PLOTS: [PlotSpec; 7] = [
    (
        "hits",
        "hits per second, by tier (origin: reads the tiers above missed)",
        "rate",
        false,
        &[],
    ),
    ("origin", "origin requests per second", "rate", false, &[]),
    ("origin-bytes", "origin bytes per second", "rate", true, &[]),
    ("decodes", "JPEG decodes per second", "rate", false, &[]),
    ("evictions", "evictions per second", "rate", false, &[]),
    (
        "usage",
        "usage, % of capacity",
        "usage",
        false,
        &[
            ("memory", "usage.memory"),
            ("disk", "usage.disk"),
            ("decoded memory", "usage.decoded_memory"),
            ("decoded disk", "usage.decoded_disk"),
        ],
    ),
    (
        "requests",
        "HTTP requests per second",
        "rate",
        false,
        &[("all", "http.requests"), ("thumbnails", "http.thumbnails")],
    ),
];

/// Every plot with its series: tier counters first (each counter's tiers in table order),
/// then the other counters, then the series named in [`PLOTS`].
fn plots() -> Vec<Plot> {
    let mut plots: Vec<Plot> = PLOTS
        .iter()
        .map(|&(id, title, kind, bytes, _)| Plot {
            id,
            title,
            kind,
            bytes,
            series: Vec::new(),
        })
        .collect();
    let mut add = |plot: &str, name: String, path: String| {
        let plot = plots
            .iter_mut()
            .find(|p| p.id == plot)
            .unwrap_or_else(|| panic!("a counter is shown in plot {plot:?}, which is not listed"));
        match plot.series.iter_mut().find(|s| s.name == name) {
            Some(series) => series.paths.push(path),
            None => plot.series.push(Series {
                name,
                paths: vec![path],
            }),
        }
    };
    for counter in TIER_COUNTERS {
        for shown in counter.shown {
            for tier in TIERS {
                if shown.tiers.is_empty() || shown.tiers.contains(&tier.name) {
                    let name = match shown.series {
                        "" => tier.name.replace('_', " "),
                        series => series.to_owned(),
                    };
                    add(
                        shown.plot,
                        name,
                        format!("cache.{}.{}", tier.name, counter.name),
                    );
                }
            }
        }
    }
    for counter in COUNTERS {
        for shown in counter.shown {
            add(
                shown.plot,
                shown.series.to_owned(),
                format!("cache.{}", counter.name),
            );
        }
    }
    for &(id, _, _, _, series) in &PLOTS {
        for &(name, path) in series {
            add(id, name.to_owned(), path.to_owned());
        }
    }
    plots
}

/// `/ui/plots.js`: `export const PLOTS = [...]`, built once.
pub(super) static PLOTS_JS: LazyLock<String> = LazyLock::new(|| {
    let json = serde_json::to_string(&plots()).expect("plots serialize");
    format!(
        "// What the dashboard plots: made by src/server/dashboard.rs.\nexport const PLOTS = {json};\n"
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    fn series(plots: &[Plot], id: &str) -> Vec<(String, Vec<String>)> {
        let plot = plots.iter().find(|p| p.id == id).unwrap();
        plot.series
            .iter()
            .map(|s| (s.name.clone(), s.paths.clone()))
            .collect()
    }

    #[test]
    fn plots_gather_their_series_from_the_counter_tables() {
        let plots = plots();
        assert!(plots.iter().all(|p| !p.series.is_empty()));
        let hits: Vec<_> = series(&plots, "hits").into_iter().map(|s| s.0).collect();
        assert_eq!(
            hits,
            ["memory", "disk", "origin", "decoded memory", "decoded disk"]
        );
        let origin = series(&plots, "origin");
        assert_eq!(
            origin[0],
            (
                "reads".to_owned(),
                vec![
                    "cache.origin.hits".to_owned(),
                    "cache.origin.misses".to_owned()
                ]
            )
        );
        let decodes: Vec<_> = series(&plots, "decodes").into_iter().map(|s| s.0).collect();
        assert_eq!(
            decodes,
            ["decodes", "of them thumbnails", "waited for another"]
        );
        let evictions = series(&plots, "evictions");
        assert!(evictions.iter().all(|s| s.0 != "origin"));
        assert!(PLOTS_JS.starts_with("// What"));
    }

    #[test]
    fn every_plotted_path_is_in_the_stats_answer() {
        let stats = serde_json::json!({
            "cache": crate::Stats::default(),
            "usage": crate::CacheUsage::default(),
            "http": super::super::metrics::HttpMetrics::new(&[], None).totals(),
        });
        for plot in plots() {
            for s in &plot.series {
                for path in &s.paths {
                    let found = path.split('.').try_fold(&stats, |v, key| v.get(key));
                    assert!(found.is_some(), "{}: {path}", plot.id);
                }
            }
        }
    }
}
