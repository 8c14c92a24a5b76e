//! Replays the fuzz targets' committed corpora (`fuzz/corpus/NAME/`: seeds and every input
//! that once crashed a target) through the same entry points the targets call: a cheap
//! regression suite on stable Rust. Fuzzing itself is `scripts/fuzz.sh`.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("disk_entry", framecache::fuzzing::disk_entry),
    ("raw_frame", framecache::fuzzing::raw_frame),
    ("manifest", framecache::fuzzing::manifest),
    ("kept_listing", framecache::fuzzing::kept_listing),
    ("listed_name", framecache::fuzzing::listed_name),
    ("jpeg", framecache::fuzzing::jpeg),
    ("jpeg_zune", framecache::fuzzing::jpeg_zune),
];

#[test]
fn every_corpus_input_runs_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            eprintln!("{name}: {}", input.display());
            target(&bytes);
        }
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, _) in TARGETS {
        assert!(
            root.join("corpus").join(name).is_dir(),
            "no corpus for {name}"
        );
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz target for {name}"
        );
    }
}
