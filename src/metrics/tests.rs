//! The counter tables against what is built from them and what names them elsewhere: the
//! snapshot's fields, the Python stubs, docs/operations.md, the Prometheus names.

use super::*;
use std::collections::BTreeSet;
use std::path::Path;

/// The fields a `TypedDict` of the Python stubs declares.
fn typed_dict(stub: &str, class: &str) -> BTreeSet<String> {
    let head = format!("class {class}(TypedDict):\n");
    let body = &stub[stub.find(&head).expect(&head) + head.len()..];
    body.lines()
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().split_once(':').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn python_stubs_name_every_counter() {
    let stub = read("python/framecache/_native.pyi");
    let tier: BTreeSet<_> = TIER_COUNTERS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(typed_dict(&stub, "TierStats"), tier);
    let stats = serde_json::to_value(Stats::default()).unwrap();
    let fields: BTreeSet<_> = stats.as_object().unwrap().keys().cloned().collect();
    assert_eq!(typed_dict(&stub, "Stats"), fields);
}

#[test]
fn the_tables_name_every_field_of_the_snapshot_once() {
    let stats = serde_json::to_value(Stats::default()).unwrap();
    let mut named: Vec<_> = TIERS.iter().map(|t| t.name).collect();
    named.extend(COUNTERS.iter().map(|c| c.name));
    named.extend(["disk_eviction", "decoded_disk_eviction"]);
    let fields: Vec<_> = stats
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(named.len(), fields.len());
    assert_eq!(
        named.iter().collect::<BTreeSet<_>>(),
        fields.iter().collect::<BTreeSet<_>>()
    );
    let tier = serde_json::to_value(TierStats::default()).unwrap();
    assert_eq!(tier.as_object().unwrap().len(), TIER_COUNTERS.len());
}

#[test]
fn metrics_sharing_a_name_share_help_and_kind_and_differ_by_label() {
    for a in COUNTERS.iter().chain(TIER_COUNTERS) {
        assert!(!a.help.is_empty(), "{}", a.name);
        if a.metric.is_empty() {
            continue;
        }
        assert!(a.metric.starts_with("framecache_"), "{}", a.metric);
        assert_eq!(a.metric.ends_with("_total"), !a.gauge, "{}", a.metric);
        for b in COUNTERS
            .iter()
            .filter(|b| b.metric == a.metric && b.name != a.name)
        {
            assert_eq!((a.help, a.gauge), (b.help, b.gauge), "{}", a.metric);
            assert!(a.label.is_some() && a.label != b.label, "{}", a.metric);
        }
    }
}

#[test]
fn the_snapshot_copies_each_counter_into_its_own_field() {
    let metrics = Metrics::default();
    for (i, counter) in [
        &metrics.coalesced,
        &metrics.decodes,
        &metrics.origin_requests,
    ]
    .into_iter()
    .enumerate()
    {
        counter.fetch_add(i as u64 + 1, Relaxed);
    }
    metrics.decoded_disk.hit(10);
    let stats = metrics.snapshot();
    assert_eq!(
        (stats.coalesced, stats.decodes, stats.origin_requests),
        (1, 2, 3)
    );
    assert_eq!(
        (stats.decoded_disk.hits, stats.decoded_disk.bytes_read),
        (1, 10)
    );
    let values: Vec<_> = stats.values().map(|(c, v)| (c.name, v)).collect();
    assert!(values.contains(&("decodes", 2)));
    let tiers: Vec<_> = stats.tiers().map(|(t, s)| (t.name, s.hits)).collect();
    assert_eq!(tiers[4], ("decoded_disk", 1));
}

/// A file of the repository.
fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_operations_guide_lists_every_counter_and_metric() {
    let guide = read("docs/operations.md");
    let names = TIERS.iter().map(|t| t.name);
    let names = names.chain(TIER_COUNTERS.iter().chain(COUNTERS).map(|c| c.name));
    for name in names {
        assert!(
            guide.contains(&format!("`{name}`")),
            "`{name}` in docs/operations.md"
        );
    }
    // Tier metrics are documented as one pattern.
    assert!(guide.contains("framecache_tier_{counter}_total"));
    for c in COUNTERS.iter().filter(|c| !c.metric.is_empty()) {
        assert!(
            guide.contains(c.metric),
            "{} in docs/operations.md",
            c.metric
        );
    }
}
