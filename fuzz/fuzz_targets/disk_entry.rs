//! Fuzzes the disk entry format's validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::disk_entry(data));
