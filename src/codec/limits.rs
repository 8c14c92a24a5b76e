//! What a decode enforces and answers: the pixel and progressive-scan limits, and
//! [`DecodeError`] for a file refused by them or damaged.

/// Default of [`crate::DecodedConfig::max_frame_pixels`]: Pillow's decompression-bomb limit
/// (twice `Image.MAX_IMAGE_PIXELS`), which the Python module's users already live with.
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 178_956_970;

/// Most scans a progressive JPEG may have: each scan passes over the whole image again, so
/// a small file of thousands of scans costs minutes of CPU. libjpeg-turbo advises about 100
/// (and zune-jpeg defaults to it); real encoders write about 10.
pub const MAX_SCANS: u32 = 100;

/// Why a JPEG was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The header claims more pixels than the limit; refused before any pixel buffer was
    /// allocated.
    TooManyPixels {
        /// Width the header claims.
        width: u32,
        /// Height the header claims.
        height: u32,
        /// The limit in pixels (`max_frame_pixels`).
        limit: u64,
    },
    /// A decoder limit refused the file (too many progressive scans, more working memory
    /// than its dimensions justify).
    Limit(String),
    /// Empty, truncated, corrupt or not a JPEG.
    Damaged(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooManyPixels {
                width,
                height,
                limit,
            } => write!(
                f,
                "{width}x{height} is {} pixels, over the limit of {limit} (max_frame_pixels)",
                u64::from(*width) * u64::from(*height)
            ),
            DecodeError::Limit(reason) | DecodeError::Damaged(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Refuses `(width, height)` over `max_pixels`.
///
/// # Errors
/// [`DecodeError::TooManyPixels`].
pub fn check_pixels((width, height): (u32, u32), max_pixels: u64) -> Result<(), DecodeError> {
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(())
}
