//! The raw decoded-frame entry: a one-page self-validating header, then the pixels.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"FCDECODE"
//! 8       4     format version (u32 LE) = RAW_VERSION
//! 12      4     pixel format (u32 LE): 1 = RGB8, packed rows
//! 16      4     width (u32 LE)
//! 20      4     height (u32 LE)
//! 24      8     pixel bytes (u64 LE) = width * height * 3
//! 32      8     checksum (u64 LE): xxh3-64 of the pixels, seeded with the xxh3-64 of this
//!               header page with the checksum field zeroed
//! 40      4     name length k (u32 LE)
//! 44      k     the entry's name (frame key, JPEG blake3, scale), echoed back
//! 44+k    ..    zeros up to HEADER_LEN
//! 4096    n     the pixels
//! ```
//! The pixels start on a page boundary so that the entry maps with the pixels page-aligned
//! and shares pages with nothing else. The file length must be exactly `4096 + n`.
//!
//! xxh3 and not blake3: verifying 2.76 MB costs about 0.16 ms with xxh3 against 0.6 ms with
//! blake3 on these machines (`benches/decode.rs`), and the checksum guards against torn or
//! damaged files, not adversaries (whoever can write the cache directory can write anything).

use std::fmt;

/// First bytes of every raw entry.
pub const RAW_MAGIC: [u8; 8] = *b"FCDECODE";
/// Bumped whenever the layout above changes; entries of another version are misses.
pub const RAW_VERSION: u32 = 1;
/// Pixel format code of packed RGB8.
pub const PIXEL_RGB8: u32 = 1;
/// The header's size: one page, so the pixels are page-aligned.
pub const HEADER_LEN: usize = 4096;
/// Fixed fields before the name.
const FIXED_LEN: usize = 44;

/// Why a raw entry was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCorruption {
    /// Shorter than its header says.
    Truncated,
    /// Does not start with [`RAW_MAGIC`].
    BadMagic,
    /// Written by another format version.
    Version(u32),
    /// A pixel format this build does not know.
    PixelFormat(u32),
    /// Holds another entry's pixels.
    WrongName,
    /// Dimensions and lengths disagree, or bytes trail the pixels.
    BadLength,
    /// A width or height of 0 or over the JPEG limit ([`crate::codec::MAX_DIMENSION`]): no
    /// decode writes one.
    BadDimensions,
    /// The checksum does not match.
    Checksum,
}

impl fmt::Display for RawCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawCorruption::Truncated => f.write_str("truncated"),
            RawCorruption::BadMagic => f.write_str("bad magic"),
            RawCorruption::Version(v) => write!(f, "format version {v}, expected {RAW_VERSION}"),
            RawCorruption::PixelFormat(p) => write!(f, "unknown pixel format {p}"),
            RawCorruption::WrongName => f.write_str("holds another entry"),
            RawCorruption::BadLength => f.write_str("lengths disagree"),
            RawCorruption::BadDimensions => f.write_str("dimensions out of range"),
            RawCorruption::Checksum => f.write_str("checksum mismatch"),
        }
    }
}

/// Total file length of an entry of `width x height` RGB8 pixels.
#[cfg(test)]
pub fn entry_len(width: u32, height: u32) -> usize {
    HEADER_LEN + width as usize * height as usize * 3
}

/// Writes the header for `name` into `page` (which must be [`HEADER_LEN`] bytes), with the
/// checksum field left zero: [`seal`] fills it once the pixels are in place.
///
/// # Panics
/// When `name` does not fit in the header page.
pub fn write_header(page: &mut [u8], name: &str, width: u32, height: u32) {
    assert_eq!(page.len(), HEADER_LEN);
    assert!(FIXED_LEN + name.len() <= HEADER_LEN, "entry name too long");
    page.fill(0);
    page[..8].copy_from_slice(&RAW_MAGIC);
    page[8..12].copy_from_slice(&RAW_VERSION.to_le_bytes());
    page[12..16].copy_from_slice(&PIXEL_RGB8.to_le_bytes());
    page[16..20].copy_from_slice(&width.to_le_bytes());
    page[20..24].copy_from_slice(&height.to_le_bytes());
    let n = width as u64 * height as u64 * 3;
    page[24..32].copy_from_slice(&n.to_le_bytes());
    page[40..44].copy_from_slice(&(name.len() as u32).to_le_bytes());
    page[FIXED_LEN..FIXED_LEN + name.len()].copy_from_slice(name.as_bytes());
}

fn checksum(header: &[u8], pixels: &[u8]) -> u64 {
    let mut zeroed = [0u8; HEADER_LEN];
    zeroed.copy_from_slice(header);
    zeroed[32..40].fill(0);
    let seed = xxhash_rust::xxh3::xxh3_64(&zeroed);
    xxhash_rust::xxh3::xxh3_64_with_seed(pixels, seed)
}

/// Fills the checksum of a whole entry (header then pixels) written by [`write_header`].
#[cfg(test)]
pub fn seal(entry: &mut [u8]) {
    let (header, pixels) = entry.split_at_mut(HEADER_LEN);
    seal_header(header, pixels);
}

/// Fills the checksum in a header page written by [`write_header`] for `pixels` kept
/// elsewhere (the writer behind loads writes the header page, then the pixels as they are).
pub fn seal_header(header: &mut [u8], pixels: &[u8]) {
    let sum = checksum(header, pixels);
    header[32..40].copy_from_slice(&sum.to_le_bytes());
}

/// Checks every cheap field of a header page read back for `name`; returns the dimensions.
///
/// # Errors
/// The first [`RawCorruption`] found; `file_len` is the entry file's length.
pub fn check_header(name: &str, header: &[u8], file_len: u64) -> Result<(u32, u32), RawCorruption> {
    let header = header.get(..HEADER_LEN).ok_or(RawCorruption::Truncated)?;
    if header[..8] != RAW_MAGIC {
        return Err(RawCorruption::BadMagic);
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if word(8) != RAW_VERSION {
        return Err(RawCorruption::Version(word(8)));
    }
    if word(12) != PIXEL_RGB8 {
        return Err(RawCorruption::PixelFormat(word(12)));
    }
    let name_len = word(40) as usize;
    let name_end = FIXED_LEN.checked_add(name_len);
    if name_len != name.len()
        || name_end.and_then(|end| header.get(FIXED_LEN..end)) != Some(name.as_bytes())
    {
        return Err(RawCorruption::WrongName);
    }
    let (width, height) = (word(16), word(20));
    let limit = 1..=crate::codec::MAX_DIMENSION;
    if !limit.contains(&width) || !limit.contains(&height) {
        return Err(RawCorruption::BadDimensions);
    }
    // Checked, though in range the product cannot overflow: a header is hostile input.
    let n = u64::from_le_bytes(header[24..32].try_into().expect("8 bytes"));
    let expected = u64::from(width)
        .checked_mul(u64::from(height))
        .and_then(|p| p.checked_mul(3));
    if Some(n) != expected {
        return Err(RawCorruption::BadLength);
    }
    let total = n
        .checked_add(HEADER_LEN as u64)
        .ok_or(RawCorruption::BadLength)?;
    match file_len.cmp(&total) {
        std::cmp::Ordering::Less => Err(RawCorruption::Truncated),
        std::cmp::Ordering::Greater => Err(RawCorruption::BadLength),
        std::cmp::Ordering::Equal => Ok((width, height)),
    }
}

/// Validates a whole mapped entry for `name`: the header, then the checksum over every byte.
///
/// # Errors
/// The first [`RawCorruption`] found; the checksum is computed last.
pub fn validate(name: &str, entry: &[u8]) -> Result<(u32, u32), RawCorruption> {
    let dims = check_header(name, entry, entry.len() as u64)?;
    let (header, pixels) = entry.split_at(HEADER_LEN);
    let stored = u64::from_le_bytes(header[32..40].try_into().expect("8 bytes"));
    if checksum(header, pixels) != stored {
        return Err(RawCorruption::Checksum);
    }
    Ok(dims)
}

/// The name echoed in a header page, if it is one of ours.
pub fn read_name(header: &[u8]) -> Option<String> {
    if header.get(..8)? != RAW_MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header.get(40..44)?.try_into().ok()?) as usize;
    String::from_utf8(header.get(FIXED_LEN..FIXED_LEN.checked_add(len)?)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, w: u32, h: u32) -> Vec<u8> {
        let mut e = vec![0u8; entry_len(w, h)];
        write_header(&mut e[..HEADER_LEN], name, w, h);
        for (i, b) in e[HEADER_LEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        seal(&mut e);
        e
    }

    /// Fails when the on-disk format changes: bump RAW_VERSION and update these bytes.
    #[test]
    fn golden_bytes() {
        let e = entry("k#1", 2, 1);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"FCDECODE");
        expected.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        expected.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&e[32..40]); // checksum, pinned below
        expected.extend_from_slice(&[3, 0, 0, 0]);
        expected.extend_from_slice(b"k#1");
        expected.resize(HEADER_LEN, 0);
        expected.extend_from_slice(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(e, expected);
        assert_eq!(
            u64::from_le_bytes(e[32..40].try_into().unwrap()),
            GOLDEN_CHECKSUM
        );
        assert_eq!(validate("k#1", &e), Ok((2, 1)));
        assert_eq!(read_name(&e).as_deref(), Some("k#1"));
    }

    const GOLDEN_CHECKSUM: u64 = 6_536_025_641_337_313_372;

    /// A sealed entry whose width x height x 3 wraps around u64 to a small pixel length:
    /// 4294760058 x 1431724848 x 3 = 2^64 + 11936, so 16 KB of file once passed every
    /// check, and loading it then sized a 2^64-byte frame over 11936 bytes of pixels.
    #[test]
    fn a_header_whose_size_overflows_is_rejected() {
        let name = "t/1.jpg#ab@1";
        let (w, h) = (4_294_760_058u32, 1_431_724_848u32);
        let mut e = vec![0u8; HEADER_LEN + 11_936];
        write_header(&mut e[..HEADER_LEN], name, 1, 1);
        e[16..20].copy_from_slice(&w.to_le_bytes());
        e[20..24].copy_from_slice(&h.to_le_bytes());
        e[24..32].copy_from_slice(&11_936u64.to_le_bytes());
        seal(&mut e);
        assert_eq!(validate(name, &e), Err(RawCorruption::BadDimensions));
        // A zero width passed too, with no pixels at all.
        let mut e = vec![0u8; HEADER_LEN];
        write_header(&mut e, name, 0, 5);
        seal(&mut e);
        assert_eq!(validate(name, &e), Err(RawCorruption::BadDimensions));
    }

    #[test]
    fn every_corruption_is_caught() {
        let good = entry("t/1.jpg#ab@1", 5, 3);
        assert!(validate("t/1.jpg#ab@1", &good).is_ok());
        assert_eq!(
            validate("t/1.jpg#ab@2", &good),
            Err(RawCorruption::WrongName)
        );
        assert_eq!(
            validate("t/1.jpg#ab@1", &good[..100]),
            Err(RawCorruption::Truncated)
        );
        assert_eq!(
            validate("t/1.jpg#ab@1", &good[..good.len() - 1]),
            Err(RawCorruption::Truncated)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(
            validate("t/1.jpg#ab@1", &longer),
            Err(RawCorruption::BadLength)
        );
        let mut version = good.clone();
        version[8] = 9;
        assert_eq!(
            validate("t/1.jpg#ab@1", &version),
            Err(RawCorruption::Version(9))
        );
        let mut format = good.clone();
        format[12] = 2;
        assert_eq!(
            validate("t/1.jpg#ab@1", &format),
            Err(RawCorruption::PixelFormat(2))
        );
        let mut dims = good.clone();
        dims[16] = 3;
        assert_eq!(
            validate("t/1.jpg#ab@1", &dims),
            Err(RawCorruption::BadLength)
        );
        for (w, h) in [(0, 3), (5, 0), (65_501, 1), (1, u32::MAX)] {
            let mut dims = good.clone();
            dims[16..20].copy_from_slice(&u32::to_le_bytes(w));
            dims[20..24].copy_from_slice(&u32::to_le_bytes(h));
            assert_eq!(
                validate("t/1.jpg#ab@1", &dims),
                Err(RawCorruption::BadDimensions),
                "{w}x{h}"
            );
        }
        for i in (HEADER_LEN..good.len()).chain([32, 39, 100, HEADER_LEN - 1]) {
            let mut flipped = good.clone();
            flipped[i] ^= 0x10;
            assert_eq!(
                validate("t/1.jpg#ab@1", &flipped),
                Err(RawCorruption::Checksum),
                "byte {i}"
            );
        }
    }
}
