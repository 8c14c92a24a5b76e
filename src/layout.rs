//! The object key layout, byte-identical to the Python frame cache it replaces.
//!
//! ```text
//! cache/timelines/{timeline}/frames/{seq}.jpg
//! cache/timelines/{timeline}/frames/manifest.json          (framecache metadata; ignored by the seed)
//! cache/timelines/{timeline}/frames/manifest.d/{generation}/{n}.json  (its frame entries, in chunks)
//! cache/timelines/{timeline}/overlays/{job}/{stage}/{seq}_{name}.png
//! ```
//!
//! About 260 lines of code; the rest are the tests that pin every key byte for byte.

use crate::error::{Error, Result};

/// Prefix under which every timeline lives.
pub const CACHE_PREFIX: &str = "cache/timelines";

/// Longest accepted id or overlay name, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Name of the per-timeline metadata object. It sits beside the frames and does not end in
/// `.jpg`, so the seed module skips it while listing.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Folder beside the frames holding each manifest generation's chunks of frame entries.
pub const MANIFEST_CHUNKS_DIR: &str = "manifest.d/";

/// The local key of `key` at the version whose tag is `tag` (`{key}\n{tag}`): what the local
/// tiers keep a copy of one version under. A newline never occurs in an object key, so the
/// two parts split again unambiguously ([`split_local_key`]).
pub fn local_key(key: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) => format!("{key}\n{tag}"),
        None => key.to_owned(),
    }
}

/// A local key's object key and version tag (see [`local_key`]).
pub fn split_local_key(local: &str) -> (&str, Option<&str>) {
    match local.split_once('\n') {
        Some((key, tag)) => (key, Some(tag)),
        None => (local, None),
    }
}

/// Where a local key's disk entry lives, relative to its tier's directory:
/// `{h[0..2]}/{h}` with `h` the hex blake3 of the object key, or `{h[0..2]}/{h}.{v}` for a
/// copy at a version, `v` the first 16 hex digits of the tag's blake3, so that every copy of
/// a key is in one shard directory. Both disk tiers name their entries this way.
pub fn disk_entry_path(local: &str) -> std::path::PathBuf {
    let (key, tag) = split_local_key(local);
    let hex = blake3::hash(key.as_bytes()).to_hex();
    let shard = std::path::Path::new(&hex[..2]);
    match tag {
        None => shard.join(hex.as_str()),
        Some(tag) => {
            let v = blake3::hash(tag.as_bytes()).to_hex();
            shard.join(format!("{hex}.{}", &v[..16]))
        }
    }
}

/// The decoded disk tier's name for the pixels of `key`'s JPEG of blake3 `jpeg` decoded at
/// 1/`denominator`: `{key}#{jpeg hex}@{denominator}`, echoed in the raw entry's header. It
/// starts with the frame key, so a clear by prefix finds it.
pub fn decoded_entry_name(key: &str, jpeg: &blake3::Hash, denominator: u32) -> String {
    format!("{key}#{}@{denominator}", jpeg.to_hex())
}

/// Checks a timeline id, job id, stage or overlay name.
///
/// # Errors
/// [`Error::Invalid`] naming the value and the rule when it is empty, longer than
/// [`MAX_ID_LEN`] bytes, `.` or `..`, or contains `/`, `\`, NUL or a control character.
pub fn validate_id(what: &'static str, value: &str) -> Result<()> {
    let rule = if value.is_empty() {
        Some("must not be empty".to_owned())
    } else if value.len() > MAX_ID_LEN {
        Some(format!(
            "must be at most {MAX_ID_LEN} bytes (is {})",
            value.len()
        ))
    } else if value == "." || value == ".." {
        Some("must not be `.` or `..`".to_owned())
    } else {
        value
            .chars()
            .find(|c| matches!(c, '/' | '\\') || c.is_control())
            .map(|c| format!("must not contain {c:?} (no `/`, `\\`, NUL or control characters)"))
    };
    match rule {
        None => Ok(()),
        Some(rule) => Err(Error::Invalid {
            what,
            value: value.to_owned(),
            rule,
        }),
    }
}

/// `cache/timelines/{timeline}/`: everything a timeline owns.
pub fn timeline_prefix(timeline: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!("{CACHE_PREFIX}/{timeline}/"))
}

/// `cache/timelines/{timeline}/frames/`.
pub fn frames_prefix(timeline: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!("{CACHE_PREFIX}/{timeline}/frames/"))
}

/// `cache/timelines/{timeline}/frames/{seq}.jpg`.
pub fn frame_key(timeline: &str, seq: u64) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!(
        "{CACHE_PREFIX}/{timeline}/frames/{}",
        frame_name(seq)
    ))
}

/// `cache/timelines/{timeline}/frames/manifest.json`.
pub fn manifest_key(timeline: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!("{CACHE_PREFIX}/{timeline}/frames/{MANIFEST_NAME}"))
}

/// `cache/timelines/{timeline}/frames/manifest.d/`: every generation's manifest chunks.
pub fn manifest_chunks_prefix(timeline: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!(
        "{CACHE_PREFIX}/{timeline}/frames/{MANIFEST_CHUNKS_DIR}"
    ))
}

/// `cache/timelines/{timeline}/frames/manifest.d/{generation}/{n}.json`: chunk `n` of the
/// frame entries of the manifest of `generation`.
pub fn manifest_chunk_key(timeline: &str, generation: &str, n: usize) -> Result<String> {
    let prefix = manifest_chunks_prefix(timeline)?;
    validate_id("manifest generation", generation)?;
    Ok(format!("{prefix}{generation}/{n}.json"))
}

/// The generation a key under [`manifest_chunks_prefix`] belongs to.
pub fn chunk_generation<'k>(chunks_prefix: &str, key: &'k str) -> Option<&'k str> {
    name_under(chunks_prefix, key)?
        .split_once('/')
        .map(|(g, _)| g)
}

/// Whether a listed name under a frames prefix is framecache's own metadata (the manifest
/// or one of its chunks), not a stray object.
pub fn is_metadata_name(name: &str) -> bool {
    name == MANIFEST_NAME || name.starts_with(MANIFEST_CHUNKS_DIR)
}

/// `cache/timelines/{timeline}/overlays/`.
pub fn overlays_prefix(timeline: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    Ok(format!("{CACHE_PREFIX}/{timeline}/overlays/"))
}

/// `cache/timelines/{timeline}/overlays/{job}/{stage}/`.
pub fn overlay_stage_prefix(timeline: &str, job: &str, stage: &str) -> Result<String> {
    validate_id("timeline id", timeline)?;
    validate_id("job id", job)?;
    validate_id("stage", stage)?;
    Ok(format!("{CACHE_PREFIX}/{timeline}/overlays/{job}/{stage}/"))
}

/// `cache/timelines/{timeline}/overlays/{job}/{stage}/{seq}_{name}.png`.
pub fn overlay_key(timeline: &str, job: &str, stage: &str, seq: u64, name: &str) -> Result<String> {
    let prefix = overlay_stage_prefix(timeline, job, stage)?;
    validate_id("overlay name", name)?;
    Ok(format!("{prefix}{seq}_{name}.png"))
}

/// Parses a canonical decimal sequence number: `0`, or digits without a leading zero.
fn parse_seq(digits: &str) -> Option<u64> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

/// Parses a frame's file name (`17.jpg`), relative to the frames prefix.
///
/// Only canonical names are frames: `01.jpg`, `thumb.jpg`, `5.JPG` and anything in a
/// sub-folder (`sub/5.jpg`) are not, so a stray object can never alias a real frame.
pub fn parse_frame_name(name: &str) -> Option<u64> {
    parse_seq(name.strip_suffix(".jpg")?)
}

/// Parses an overlay's file name (`17_edges.png`), relative to its stage prefix, into
/// `(seq, name)`. The name must itself be a valid id.
pub fn parse_overlay_name(file: &str) -> Option<(u64, &str)> {
    let stem = file.strip_suffix(".png")?;
    let (digits, name) = stem.split_once('_')?;
    let seq = parse_seq(digits)?;
    validate_id("overlay name", name).ok()?;
    Some((seq, name))
}

/// The name of `key` relative to `prefix` (a listing's prefix), `None` when the key is not
/// under it.
pub fn name_under<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)
}

/// The seq of a listed frame key under a frames prefix; `None` for the manifest and for
/// stray names.
pub fn frame_seq_under(prefix: &str, key: &str) -> Option<u64> {
    name_under(prefix, key).and_then(parse_frame_name)
}

/// `(seq, name)` of a listed overlay key under a stage prefix; `None` for stray names.
pub fn overlay_under<'k>(prefix: &str, key: &'k str) -> Option<(u64, &'k str)> {
    name_under(prefix, key).and_then(parse_overlay_name)
}

/// The timeline id a key under [`CACHE_PREFIX`] belongs to, if any.
pub fn timeline_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(CACHE_PREFIX)?.strip_prefix('/')?;
    let (id, _) = rest.split_once('/')?;
    validate_id("timeline id", id).ok()?;
    Some(id)
}

// Local keys: what this machine's tiers keep beside the objects, never sent to the origin.
// Each holds a newline, which no object key may, so none can collide with an object's.

/// The prefix of every versioned local key of `key` (see [`local_key`]).
pub(crate) fn versions_prefix(key: &str) -> String {
    format!("{key}\n")
}

/// The local key of the last listing of `timeline` kept on this machine (its head).
pub(crate) fn kept_listing_key(timeline: &str) -> Result<String> {
    Ok(format!("{}\nlisting", frames_prefix(timeline)?))
}

/// The local key of part `part` of the kept listing of `timeline`.
pub(crate) fn kept_listing_part_key(timeline: &str, part: u64) -> Result<String> {
    Ok(format!("{}\nlisting.{part}", frames_prefix(timeline)?))
}

/// The local key of whether the origin `origin` (its description) honours conditional writes.
pub(crate) fn conditional_writes_key(origin: &str) -> String {
    format!("{CACHE_PREFIX}/\nconditional-writes\n{origin}")
}

/// The local key of the thumbnail at 1/`denominator` of the frame `frame_key`, made from
/// the JPEG hashing to `jpeg`.
pub(crate) fn thumbnail_key(frame_key: &str, denominator: u32, jpeg: &blake3::Hash) -> String {
    format!("{frame_key}\nt:{denominator}:{}", jpeg.to_hex())
}

/// The name of frame `seq`'s object in its timeline's frames folder: `{seq}.jpg`.
pub fn frame_name(seq: u64) -> String {
    format!("{seq}.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn local_keys_keep_their_formats_and_never_name_an_object() {
        let frame = frame_key("tl", 7).unwrap();
        let jpeg = blake3::hash(b"jpeg");
        let keys = [
            (local_key(&frame, Some("e1")), format!("{frame}\ne1")),
            (
                kept_listing_key("tl").unwrap(),
                "cache/timelines/tl/frames/\nlisting".to_owned(),
            ),
            (
                kept_listing_part_key("tl", 3).unwrap(),
                "cache/timelines/tl/frames/\nlisting.3".to_owned(),
            ),
            (
                conditional_writes_key("s3://b"),
                "cache/timelines/\nconditional-writes\ns3://b".to_owned(),
            ),
            (
                thumbnail_key(&frame, 4, &jpeg),
                format!("{frame}\nt:4:{}", jpeg.to_hex()),
            ),
        ];
        for (key, expected) in keys {
            assert_eq!(key, expected);
            // Object keys are made of valid ids, which hold no control character.
            assert!(key.contains('\n'), "{key:?}");
        }
        assert!(local_key(&frame, Some("e1")).starts_with(&versions_prefix(&frame)));
        assert_eq!(frame_name(17), "17.jpg");
    }

    #[test]
    fn keys_match_the_seed_layout() {
        assert_eq!(
            frame_key("tl-1", 17).unwrap(),
            "cache/timelines/tl-1/frames/17.jpg"
        );
        assert_eq!(frames_prefix("tl").unwrap(), "cache/timelines/tl/frames/");
        assert_eq!(
            overlay_key("tl", "job-9", "edges", 3, "edge_overlay_b64").unwrap(),
            "cache/timelines/tl/overlays/job-9/edges/3_edge_overlay_b64.png"
        );
        assert_eq!(
            overlay_stage_prefix("tl", "j", "s").unwrap(),
            "cache/timelines/tl/overlays/j/s/"
        );
    }

    #[test]
    fn bad_ids_are_rejected_with_the_value_and_rule() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", long.as_str()] {
            let err = frame_key(bad, 0).unwrap_err();
            assert!(err.is_invalid_input(), "{bad:?}");
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{err} should name {bad:?}"
            );
        }
        assert!(overlay_key("tl", "job", "st", 1, "a/b").is_err());
        assert!(overlay_key("tl", "job", "st/x", 1, "a").is_err());
        assert!(frame_key(&"x".repeat(MAX_ID_LEN), 0).is_ok());
    }

    #[test]
    fn only_canonical_frame_names_parse() {
        assert_eq!(parse_frame_name("0.jpg"), Some(0));
        assert_eq!(parse_frame_name("17.jpg"), Some(17));
        for stray in [
            "01.jpg",
            "thumb.jpg",
            "sub/5.jpg",
            ".jpg",
            "5.JPG",
            "5.jpeg",
            "-1.jpg",
            "+1.jpg",
            "1 .jpg",
            "manifest.json",
            "99999999999999999999999.jpg",
        ] {
            assert_eq!(parse_frame_name(stray), None, "{stray}");
        }
    }

    #[test]
    fn overlay_names_parse() {
        assert_eq!(
            parse_overlay_name("3_edge_overlay_b64.png"),
            Some((3, "edge_overlay_b64"))
        );
        for stray in [
            "3.png", "03_a.png", "x_a.png", "3_.png", "3_a.jpg", "_a.png",
        ] {
            assert_eq!(parse_overlay_name(stray), None, "{stray}");
        }
    }

    #[test]
    fn timeline_of_keys() {
        assert_eq!(timeline_of("cache/timelines/abc/frames/1.jpg"), Some("abc"));
        assert_eq!(timeline_of("cache/timelines/abc"), None);
        assert_eq!(timeline_of("other/abc/frames/1.jpg"), None);
    }

    fn id_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_. -]{1,40}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn frame_keys_round_trip(tl in id_strategy(), seq in any::<u64>()) {
            let key = frame_key(&tl, seq).unwrap();
            let prefix = frames_prefix(&tl).unwrap();
            let name = key.strip_prefix(&prefix).unwrap();
            prop_assert_eq!(parse_frame_name(name), Some(seq));
            prop_assert_eq!(timeline_of(&key), Some(tl.as_str()));
        }

        #[test]
        fn overlay_keys_round_trip(tl in id_strategy(), job in id_strategy(), stage in id_strategy(),
                                   name in id_strategy(), seq in any::<u64>()) {
            let key = overlay_key(&tl, &job, &stage, seq, &name).unwrap();
            let prefix = overlay_stage_prefix(&tl, &job, &stage).unwrap();
            let file = key.strip_prefix(&prefix).unwrap();
            prop_assert_eq!(parse_overlay_name(file), Some((seq, name.as_str())));
        }

        #[test]
        fn parsing_arbitrary_names_never_panics(name in "\\PC{0,64}") {
            if let Some(seq) = parse_frame_name(&name) {
                prop_assert_eq!(format!("{seq}.jpg"), name.clone());
            }
            let _ = parse_overlay_name(&name);
            let _ = timeline_of(&name);
        }

        #[test]
        fn valid_ids_never_contain_separators(s in "\\PC{0,200}") {
            if validate_id("id", &s).is_ok() {
                prop_assert!(!s.contains('/') && !s.contains('\\') && !s.is_empty());
                prop_assert!(s.len() <= MAX_ID_LEN);
            }
        }
    }
}
