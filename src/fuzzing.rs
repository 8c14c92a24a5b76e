//! Entry points of the fuzz targets in `fuzz/`, one per parser of untrusted bytes; the test
//! suite replays the committed corpora through these same functions (`tests/fuzz_corpora.rs`).
//!
//! Each function takes arbitrary bytes, must never panic, abort or allocate without bound,
//! and asserts the parser's own invariants (a round trip, a canonical form) where it has
//! any. Not a public API: hidden from the docs and free to change.

use crate::codec::{self, Scale};
use crate::{decoded, entry, layout};

/// Largest frame the JPEG targets decode: keeps each run's memory small while still
/// reaching every code path (the pixel limit itself is exercised by refusals above it).
const FUZZ_MAX_PIXELS: u64 = 1 << 22;

/// The disk entry format: validation against a key taken from the input's own header and
/// against a fixed one; a valid entry's payload range must lie inside it.
pub fn disk_entry(data: &[u8]) {
    for key in [header_key(data).unwrap_or_default(), "k/1.jpg".to_owned()] {
        if let Ok(range) = entry::validate(&key, data) {
            assert!(range.start <= range.end && range.end == data.len());
            let _ = entry::blake3_of(data);
        }
    }
}

/// The key an entry's header echoes (as far as the bytes hold one), so the fuzzer reaches
/// the checks after the key comparison.
fn header_key(data: &[u8]) -> Option<String> {
    let len = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?) as usize;
    let key = data.get(entry::FIXED_HEADER_LEN..entry::FIXED_HEADER_LEN.checked_add(len)?)?;
    String::from_utf8(key.to_vec()).ok()
}

/// The raw decoded-frame header and entry: a validated entry's dimensions must account for
/// exactly its pixels.
pub fn raw_frame(data: &[u8]) {
    let name = decoded::raw_name(data).unwrap_or_default();
    for name in [name.as_str(), "k#00@1"] {
        let _ = decoded::raw_check_header(name, data, data.len() as u64);
        if let Ok((w, h)) = decoded::raw_validate(name, data) {
            let pixels = w as usize * h as usize * 3;
            assert_eq!(data.len(), decoded::RAW_HEADER_LEN + pixels);
        }
    }
}

/// The timeline manifest: a manifest that parses must come back equal from its own JSON.
pub fn manifest(data: &[u8]) {
    crate::timeline::fuzz_manifest(data);
}

/// The kept listing (a timeline's last listing, kept in the local tiers for offline loads).
pub fn kept_listing(data: &[u8]) {
    crate::timeline::fuzz_kept_listing(data);
}

/// Listed object names: whatever parses as a frame or overlay is the canonical name of
/// what it parsed to, so no two names alias one frame.
pub fn listed_name(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(seq) = layout::parse_frame_name(name) {
        assert_eq!(format!("{seq}.jpg"), name);
    }
    if let Some((seq, overlay)) = layout::parse_overlay_name(name) {
        assert_eq!(format!("{seq}_{overlay}.png"), name);
    }
    let prefix = "cache/timelines/t/frames/";
    let key = format!("{prefix}{name}");
    assert_eq!(
        layout::frame_seq_under(prefix, &key),
        layout::parse_frame_name(name)
    );
    if let Some(id) = layout::timeline_of(name) {
        assert!(layout::validate_id("timeline id", id).is_ok());
    }
}

/// The JPEG decoder as loads run it (libjpeg-turbo first when built with it, strict
/// zune-jpeg for what it rejects), at every scale.
pub fn jpeg(data: &[u8]) {
    for scale in [Scale::Full, Scale::Eighth] {
        if let Ok(pixels) = codec::decode_jpeg_limited(data, scale, FUZZ_MAX_PIXELS) {
            let (w, h) = pixels.dimensions();
            assert_eq!(pixels.as_raw().len(), w as usize * h as usize * 3);
        }
    }
}

/// zune-jpeg alone (strict), whatever the build: the fallback decoder.
pub fn jpeg_zune(data: &[u8]) {
    let Ok(dims) = codec::frame_dimensions(data) else {
        return;
    };
    if codec::check_pixels(dims, FUZZ_MAX_PIXELS).is_err() {
        return;
    }
    let mut out = vec![0u8; dims.0 as usize * dims.1 as usize * 3];
    let _ = codec::decode_into_zune(data, &mut out);
}

#[cfg(test)]
mod seeds {
    //! The seed corpora: `cargo test --lib fuzzing::seeds -- --ignored` writes them into
    //! `fuzz/corpus/` (small, committed); crash inputs are added beside them by hand.

    use super::*;
    use std::path::{Path, PathBuf};

    fn write(target: &str, name: &str, bytes: &[u8]) {
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn small_jpeg(w: u32, h: u32) -> Vec<u8> {
        codec::encode_jpeg(&crate::synthetic_frame(1, w, h).image, 75).unwrap()
    }

    #[test]
    #[ignore = "writes the seed corpora into fuzz/corpus"]
    fn write_seed_corpora() {
        // Disk entries: a valid one, truncated, trailing bytes.
        let mut e = entry::encode_header("k/1.jpg", b"payload");
        e.extend_from_slice(b"payload");
        write("disk_entry", "valid", &e);
        write("disk_entry", "truncated", &e[..e.len() - 3]);
        let mut long = e.clone();
        long.push(0);
        write("disk_entry", "trailing", &long);

        // Raw decoded frames: a valid 2x2 entry (name echoed), its header alone.
        let name = "k#00@1";
        let mut raw = vec![0u8; decoded::RAW_HEADER_LEN + 12];
        crate::decoded::write_raw_header(&mut raw[..decoded::RAW_HEADER_LEN], name, 2, 2);
        crate::decoded::seal_raw(&mut raw);
        write("raw_frame", "valid", &raw);
        write("raw_frame", "header_only", &raw[..decoded::RAW_HEADER_LEN]);

        // Manifests: one as written, one with a `null` timestamp.
        let manifest = r#"{"format":1,"generation":"0123456789abcdef","complete":true,"frames":[{"seq":0,"chunk_id":3,"timestamp":0.5,"perceptual_hash":"ff00","size":1234,"blake3":"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"}]}"#;
        write("manifest", "complete", manifest.as_bytes());
        write(
            "manifest",
            "null_timestamp",
            manifest.replace("0.5", "null").as_bytes(),
        );
        write(
            "manifest",
            "abandoned",
            manifest
                .replace("\"complete\":true", "\"complete\":false,\"abandoned\":true")
                .as_bytes(),
        );

        // Kept listings, as `keep_listing` writes them.
        let listing = r#"{"entries":[{"seq":0,"key":"cache/timelines/t/frames/0.jpg","size":1234,"version":{"tag":"m:1234:2026-12-01","etag":null},"meta":null}],"status":{"state":"complete","frames":1,"generation":"0123456789abcdef"}}"#;
        write("kept_listing", "complete", listing.as_bytes());
        write(
            "kept_listing",
            "unmanaged",
            br#"{"entries":[],"status":{"state":"unmanaged","frames":0}}"#,
        );

        // Listed names: frames, strays, overlays, keys.
        for (i, n) in [
            "17.jpg",
            "0.jpg",
            "01.jpg",
            "5.JPG",
            "sub/5.jpg",
            "manifest.json",
            "3_edges.png",
            "03_edges.png",
            "cache/timelines/tl-1/frames/3.jpg",
            "18446744073709551615.jpg",
            "18446744073709551616.jpg",
        ]
        .iter()
        .enumerate()
        {
            write("listed_name", &format!("name{i:02}"), n.as_bytes());
        }

        // JPEGs for both decoder targets: baseline, progressive, truncated, 190 scans, and
        // the headers of a 65500x65500 bomb.
        let base = small_jpeg(24, 16);
        let mut bomb = small_jpeg(16, 16);
        let sof = bomb.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        let sos = bomb.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        bomb.truncate(sos + 32);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        for target in ["jpeg", "jpeg_zune"] {
            write(target, "baseline", &base);
            write(target, "truncated", &base[..base.len() / 2]);
            write(target, "bomb_65500", &bomb);
            for fixture in ["progressive.jpg", "many_scans.jpg"] {
                write(
                    target,
                    fixture,
                    &std::fs::read(fixtures.join(fixture)).unwrap(),
                );
            }
        }
    }
}
