//! Fuzzes listed object names (frames, overlays, timeline ids).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::listed_name(data));
