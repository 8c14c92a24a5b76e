//! The server's own counters (requests per route and status with a latency histogram per
//! route, thumbnails, connections) and `/metrics` in the Prometheus text format, the
//! cache's counters written by `prometheus.rs`.

use super::caps::{ConnectionGauge, InFlight};
use super::prometheus::{self, counter, escape, gauge};
use crate::Scale;
use crate::Stats;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Route label of requests no route matched.
pub(super) const UNMATCHED: &str = "unmatched";

/// Counters of one route: lock-free, one slot per possible status code.
struct RouteStats {
    statuses: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        RouteStats {
            statuses: (0..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, status: u16, seconds: f64, nanos: u64) {
        if let Some(slot) = self.statuses.get(usize::from(status)) {
            slot.fetch_add(1, Relaxed);
        }
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

/// Thumbnail scales, in the order of [`HttpMetrics::thumbnails`].
const THUMBNAIL_SCALES: [Scale; 3] = [Scale::Half, Scale::Quarter, Scale::Eighth];

/// The server's own counters.
pub(super) struct HttpMetrics {
    routes: HashMap<&'static str, RouteStats>,
    /// Requests for thumbnails by scale: they share the frame route (and its label).
    thumbnails: [AtomicU64; THUMBNAIL_SCALES.len()],
    connections: Option<ConnectionGauge>,
    in_flight: OnceLock<InFlight>,
    started: Instant,
}

/// The server's side of `/v1/stats`: requests answered, thumbnails asked for, connections.
#[derive(Debug, serde::Serialize)]
pub(super) struct HttpTotals {
    /// Seconds since the server started.
    pub uptime_seconds: f64,
    /// Requests answered, every route and status.
    pub requests: u64,
    /// Thumbnail requests by scale (`"2"`, `"4"`, `"8"`); counted in `requests` too.
    pub thumbnails: std::collections::BTreeMap<String, u64>,
    /// Connections open, when the server owns its listener.
    pub connections: Option<usize>,
    /// Requests being handled.
    pub in_flight: Option<usize>,
}

impl HttpMetrics {
    pub fn new(routes: &[&'static str], connections: Option<ConnectionGauge>) -> Self {
        let routes = routes
            .iter()
            .chain(std::iter::once(&UNMATCHED))
            .map(|r| (*r, RouteStats::new()))
            .collect();
        HttpMetrics {
            routes,
            thumbnails: std::array::from_fn(|_| AtomicU64::new(0)),
            connections,
            in_flight: OnceLock::new(),
            started: Instant::now(),
        }
    }

    /// Counts a thumbnail request at `scale`.
    pub fn thumbnail_requested(&self, scale: Scale) {
        if let Some(i) = THUMBNAIL_SCALES.iter().position(|s| *s == scale) {
            self.thumbnails[i].fetch_add(1, Relaxed);
        }
    }

    /// The totals `/v1/stats` reports.
    pub fn totals(&self) -> HttpTotals {
        HttpTotals {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            requests: self.routes.values().map(|r| r.count.load(Relaxed)).sum(),
            thumbnails: THUMBNAIL_SCALES
                .iter()
                .zip(&self.thumbnails)
                .map(|(s, n)| (s.denominator().to_string(), n.load(Relaxed)))
                .collect(),
            connections: self.connections.as_ref().map(ConnectionGauge::open),
            in_flight: self.in_flight.get().map(InFlight::busy),
        }
    }

    pub fn set_in_flight(&self, in_flight: InFlight) {
        let _ = self.in_flight.set(in_flight);
    }

    /// Counts a request answered with `status` by `route`, timed from `started`.
    pub fn observe(&self, route: &str, status: u16, started: Instant) {
        let elapsed = started.elapsed();
        let stats = self
            .routes
            .get(route)
            .unwrap_or_else(|| &self.routes[UNMATCHED]);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        stats.observe(status, elapsed.as_secs_f64(), nanos);
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, stats: &Stats, memory_bytes: Option<u64>) -> String {
        let mut out = String::with_capacity(8 << 10);
        prometheus::cache(&mut out, stats);
        if let Some(bytes) = memory_bytes {
            gauge(
                &mut out,
                "framecache_memory_bytes",
                "Bytes held by the memory tier.",
            );
            let _ = writeln!(out, "framecache_memory_bytes {bytes}");
        }
        if let Some(c) = &self.connections {
            gauge(
                &mut out,
                "framecache_http_connections",
                "HTTP connections open.",
            );
            let _ = writeln!(out, "framecache_http_connections {}", c.open());
            let counters = c.counters();
            for (name, help, n) in [
                (
                    "framecache_http_connections_refused_total",
                    "Connections closed at once: their client address held its share of connections.",
                    &counters.refused_per_client,
                ),
                (
                    "framecache_http_connections_timed_out_total",
                    "Connections closed because a request head or a whole request took too long.",
                    &counters.timed_out,
                ),
            ] {
                counter(&mut out, name, help);
                let _ = writeln!(out, "{name} {}", n.load(Relaxed));
            }
        }
        if let Some(f) = self.in_flight.get() {
            gauge(
                &mut out,
                "framecache_http_in_flight",
                "HTTP requests being handled.",
            );
            let _ = writeln!(out, "framecache_http_in_flight {}", f.busy());
        }
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_by_key(|(r, _)| *r);

        counter(
            &mut out,
            "framecache_http_requests_total",
            "HTTP requests answered, by route and status.",
        );
        for (route, s) in &routes {
            for (status, n) in s.statuses.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "framecache_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }

        counter(
            &mut out,
            "framecache_http_thumbnail_requests_total",
            "Thumbnail requests (frame route with ?scale=), by scale.",
        );
        for (scale, n) in THUMBNAIL_SCALES.iter().zip(&self.thumbnails) {
            let _ = writeln!(
                out,
                "framecache_http_thumbnail_requests_total{{scale=\"{}\"}} {}",
                scale.denominator(),
                n.load(Relaxed)
            );
        }

        let name = "framecache_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request to response head, by route.\n# TYPE {name} histogram"
        );
        for (route, s) in &routes {
            let route = escape(route);
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += n.load(Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Relaxed);
            let sum = s.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::EvictionStatus;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = HttpMetrics::new(&["/a"], None);
        m.observe("/a", 200, Instant::now());
        m.observe("/a", 404, Instant::now());
        m.observe("/nowhere", 200, Instant::now());
        let stats = Stats {
            disk_eviction: Some(EvictionStatus {
                evictor_running: true,
                last_round_us: 1_500,
                limited_by: crate::LimitedBy::FreeSpace,
                full_writes: 3,
                ..EvictionStatus::default()
            }),
            ..Stats::default()
        };
        let text = m.render(&stats, Some(7));
        assert!(text.contains("framecache_http_requests_total{route=\"/a\",status=\"200\"} 1"));
        assert!(text.contains("framecache_http_requests_total{route=\"/a\",status=\"404\"} 1"));
        assert!(
            text.contains("framecache_http_requests_total{route=\"unmatched\",status=\"200\"} 1")
        );
        assert!(text.contains(
            "framecache_http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("framecache_http_request_duration_seconds_count{route=\"/a\"} 2"));
        assert!(text.contains("framecache_tier_hits_total{tier=\"memory\"} 0"));
        assert!(text.contains("framecache_memory_bytes 7"));
        assert!(text.contains("framecache_disk_evictor_running{tier=\"disk\"} 1"));
        assert!(text.contains("framecache_disk_last_eviction_seconds{tier=\"disk\"} 0.0015"));
        assert!(text.contains("framecache_disk_limited_by_free_space{tier=\"disk\"} 1"));
        assert!(text.contains("framecache_disk_full_writes_total{tier=\"disk\"} 3"));
        assert!(!text.contains("tier=\"decoded_disk\""));
        let stats = Stats {
            decode_lock_timeouts: 3,
            dir_lock_timeouts: 2,
            raw_writes_dropped: 4,
            raw_writes_pending: 5,
            ..Stats::default()
        };
        let text = m.render(&stats, None);
        assert!(text.contains("framecache_raw_writes_dropped_total 4"));
        assert!(text.contains("framecache_raw_writes_pending 5"));
        assert!(text.contains("framecache_lock_timeouts_total{lock=\"decode\"} 3"));
        assert!(text.contains("framecache_lock_timeouts_total{lock=\"directory\"} 2"));
        assert!(text.contains("framecache_lock_timeouts_total{lock=\"fetch\"} 0"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
