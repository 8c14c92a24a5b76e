//! Fuzzes the raw decoded-frame entry's header and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::raw_frame(data));
