//! Fuzzes JPEG decoding as loads run it (libjpeg-turbo shim, then strict zune-jpeg).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| framecache::fuzzing::jpeg(data));
