//! Fuzzes the timeline manifest's parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::manifest(data));
