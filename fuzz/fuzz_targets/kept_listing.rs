//! Fuzzes the kept listing's parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::kept_listing(data));
