//! Fuzzes JPEG decoding by strict zune-jpeg alone.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::jpeg_zune(data));
