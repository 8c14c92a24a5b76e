//! The on-disk entry format: a self-validating header followed by the payload.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"FRMCACHE"
//! 8       4     format version (u32 LE) = ENTRY_VERSION
//! 12      4     key length in bytes (u32 LE)
//! 16      8     payload length in bytes (u64 LE)
//! 24      32    blake3 of the payload: its content id, computed from the bytes when written
//! 56      8     checksum (u64 LE): xxh3-64 of the payload, seeded with the xxh3-64 of the
//!               header (these fields and the key) with the checksum field zeroed
//! 64      k     the key (UTF-8), echoed back so a misplaced file is caught
//! 64+k    n     the payload
//! ```
//! The file length must be exactly `64 + k + n`. Every field is checked on every read; the
//! checksum covers the blake3, so a read hands it out without hashing the payload again.
//!
//! xxh3 and not blake3 for the check, as for raw frames (`src/decoded/format.rs`): a verified read
//! of a 1280x720 JPEG was 4.6x a plain `std::fs::read` of it with blake3, most of it the
//! hash. The checksum guards against torn or damaged files, not adversaries (whoever can
//! write the cache directory can write anything, a matching blake3 included). Version 1
//! had no checksum field and verified the blake3 itself: its entries are misses, removed.

use std::ops::Range;
use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_seed};

/// First bytes of every entry file.
pub const MAGIC: [u8; 8] = *b"FRMCACHE";
/// Bumped whenever the layout above changes; entries of another version are misses.
pub const ENTRY_VERSION: u32 = 2;
/// Size of the fixed part of the header.
pub const FIXED_HEADER_LEN: usize = 64;
/// Where the checksum field is.
const CHECKSUM: Range<usize> = 56..64;

/// Why an entry file was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Shorter than its header says.
    Truncated,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// Written by another format version.
    Version(u32),
    /// Holds another key's data (hash collision of names, swapped or misplaced file).
    WrongKey,
    /// Longer than its header says.
    TrailingBytes,
    /// The checksum does not match the header and payload.
    Checksum,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Truncated => f.write_str("truncated"),
            Corruption::BadMagic => f.write_str("bad magic"),
            Corruption::Version(v) => write!(f, "format version {v}, expected {ENTRY_VERSION}"),
            Corruption::WrongKey => f.write_str("holds another key"),
            Corruption::TrailingBytes => f.write_str("trailing bytes"),
            Corruption::Checksum => f.write_str("checksum mismatch"),
        }
    }
}

/// Builds the header for `key` and `payload`; the entry is the header followed by the payload.
pub fn encode_header(key: &str, payload: &[u8]) -> Vec<u8> {
    encode_header_hashed(key, payload, &blake3::hash(payload))
}

/// As [`encode_header`], for a payload whose blake3 the caller already has (and vouches
/// for: reads hand it out as the payload's).
pub fn encode_header_hashed(key: &str, payload: &[u8], blake3: &blake3::Hash) -> Vec<u8> {
    let mut header = Vec::with_capacity(FIXED_HEADER_LEN + key.len());
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&ENTRY_VERSION.to_le_bytes());
    header.extend_from_slice(&(key.len() as u32).to_le_bytes());
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(blake3.as_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(key.as_bytes());
    let sum = checksum(&header, payload);
    header[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
    header
}

/// The checksum of an entry whose header (fixed fields and key) is `header`.
fn checksum(header: &[u8], payload: &[u8]) -> u64 {
    let mut seed = Xxh3::new();
    seed.update(&header[..CHECKSUM.start]);
    seed.update(&[0; 8]);
    seed.update(&header[CHECKSUM.end..]);
    xxh3_64_with_seed(payload, seed.digest())
}

/// Where the key starts in an entry of format `version`, this one or the one before it
/// (whose entries `clear` and `verify` still find by their key); `None` for others.
pub fn key_offset(version: u32) -> Option<usize> {
    match version {
        ENTRY_VERSION => Some(FIXED_HEADER_LEN),
        1 => Some(56),
        _ => None,
    }
}

/// Validates a whole entry read back for `key` and returns the payload's byte range.
///
/// # Errors
/// The first [`Corruption`] found; the checksum is computed last, only when every cheap
/// check has passed.
pub fn validate(key: &str, entry: &[u8]) -> Result<Range<usize>, Corruption> {
    let fixed = entry.get(..FIXED_HEADER_LEN).ok_or(Corruption::Truncated)?;
    if fixed[..8] != MAGIC {
        return Err(Corruption::BadMagic);
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
    if version != ENTRY_VERSION {
        return Err(Corruption::Version(version));
    }
    let key_len = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes")) as usize;
    let payload_len = u64::from_le_bytes(fixed[16..24].try_into().expect("8 bytes"));
    if key_len != key.len() {
        return Err(Corruption::WrongKey);
    }
    // Checked arithmetic throughout: every length here comes from the file.
    let start = FIXED_HEADER_LEN
        .checked_add(key_len)
        .ok_or(Corruption::WrongKey)?;
    let stored_key = entry
        .get(FIXED_HEADER_LEN..start)
        .ok_or(Corruption::Truncated)?;
    if stored_key != key.as_bytes() {
        return Err(Corruption::WrongKey);
    }
    let available = entry
        .len()
        .checked_sub(start)
        .ok_or(Corruption::Truncated)? as u64;
    if available < payload_len {
        return Err(Corruption::Truncated);
    }
    if available > payload_len {
        return Err(Corruption::TrailingBytes);
    }
    let stored = u64::from_le_bytes(fixed[CHECKSUM].try_into().expect("8 bytes"));
    if checksum(&entry[..start], &entry[start..]) != stored {
        return Err(Corruption::Checksum);
    }
    Ok(start..entry.len())
}

/// The payload's blake3 an entry's header records, read from its first bytes (at least
/// [`FIXED_HEADER_LEN`] plus the key) without the payload: magic, version and the key echo
/// are checked, the checksum is not (it needs the payload). `None` when any check fails.
///
/// Unverified: for looking up what is keyed by that hash, where a damaged field names
/// nothing and costs a miss (see `FrameCache::fetch_decoded`).
pub fn peek_blake3(key: &str, head: &[u8]) -> Option<blake3::Hash> {
    let fixed = head.get(..FIXED_HEADER_LEN)?;
    let version = u32::from_le_bytes(fixed[8..12].try_into().ok()?);
    let key_len = u32::from_le_bytes(fixed[12..16].try_into().ok()?) as usize;
    let echoed = head.get(FIXED_HEADER_LEN..FIXED_HEADER_LEN.checked_add(key_len)?)?;
    (fixed[..8] == MAGIC && version == ENTRY_VERSION && echoed == key.as_bytes())
        .then(|| blake3_of(head))
}

/// The payload's blake3 recorded in a validated entry's header.
pub fn blake3_of(entry: &[u8]) -> blake3::Hash {
    blake3::Hash::from_bytes(entry[24..56].try_into().expect("32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, payload: &[u8]) -> Vec<u8> {
        let mut e = encode_header(key, payload);
        e.extend_from_slice(payload);
        e
    }

    /// Fails when the on-disk format changes: bump ENTRY_VERSION and update these bytes.
    #[test]
    fn golden_bytes() {
        let e = entry("k/1.jpg", b"abc");
        let mut expected = Vec::new();
        expected.extend_from_slice(b"FRMCACHE");
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(&[7, 0, 0, 0]);
        expected.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
        // blake3("abc")
        expected.extend_from_slice(&[
            0x64, 0x37, 0xb3, 0xac, 0x38, 0x46, 0x51, 0x33, 0xff, 0xb6, 0x3b, 0x75, 0x27, 0x3a,
            0x8d, 0xb5, 0x48, 0xc5, 0x58, 0x46, 0x5d, 0x79, 0xdb, 0x03, 0xfd, 0x35, 0x9c, 0x6c,
            0xd5, 0xbd, 0x9d, 0x85,
        ]);
        expected.extend_from_slice(&GOLDEN_CHECKSUM.to_le_bytes());
        expected.extend_from_slice(b"k/1.jpg");
        expected.extend_from_slice(b"abc");
        assert_eq!(e, expected);
        assert_eq!(validate("k/1.jpg", &e), Ok(71..74));
        assert_eq!(blake3_of(&e), blake3::hash(b"abc"));
        // The checksum as the layout states it, from the whole header with the field zeroed.
        let mut zeroed = expected[..71].to_vec();
        zeroed[56..64].fill(0);
        let seed = xxhash_rust::xxh3::xxh3_64(&zeroed);
        assert_eq!(xxh3_64_with_seed(b"abc", seed), GOLDEN_CHECKSUM);
    }

    const GOLDEN_CHECKSUM: u64 = 0x4e4e_6c5a_6836_6e09;

    #[test]
    fn every_corruption_is_caught() {
        let good = entry("a/1.jpg", b"payload bytes");
        assert!(validate("a/1.jpg", &good).is_ok());
        assert_eq!(validate("a/2.jpg", &good), Err(Corruption::WrongKey));
        assert_eq!(validate("a/10.jpg", &good), Err(Corruption::WrongKey));
        assert_eq!(validate("a/1.jpg", &[]), Err(Corruption::Truncated));
        assert_eq!(
            validate("a/1.jpg", &good[..good.len() - 1]),
            Err(Corruption::Truncated)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(validate("a/1.jpg", &longer), Err(Corruption::TrailingBytes));
        let mut magic = good.clone();
        magic[0] ^= 1;
        assert_eq!(validate("a/1.jpg", &magic), Err(Corruption::BadMagic));
        let mut version = good.clone();
        version[8] = 1;
        assert_eq!(validate("a/1.jpg", &version), Err(Corruption::Version(1)));
        // The payload, the blake3 and the checksum itself are all covered.
        for i in (FIXED_HEADER_LEN + 7..good.len()).chain(24..64) {
            let mut flipped = good.clone();
            flipped[i] ^= 0x40;
            assert_eq!(
                validate("a/1.jpg", &flipped),
                Err(Corruption::Checksum),
                "byte {i}"
            );
        }
    }

    /// An entry of the previous format, whose header had no checksum: a miss, and its key
    /// is still found where that format put it.
    #[test]
    fn entries_of_the_previous_format_are_rejected() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"FRMCACHE");
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&7u32.to_le_bytes());
        v1.extend_from_slice(&3u64.to_le_bytes());
        v1.extend_from_slice(blake3::hash(b"abc").as_bytes());
        v1.extend_from_slice(b"k/1.jpg");
        v1.extend_from_slice(b"abc");
        assert_eq!(validate("k/1.jpg", &v1), Err(Corruption::Version(1)));
        assert_eq!(&v1[key_offset(1).unwrap()..][..7], b"k/1.jpg");
        assert_eq!(key_offset(3), None);
    }
}
