//! The pure-Rust decoder, zune-jpeg, set up strictly: the fallback for files libjpeg-turbo
//! rejects and the decoder of builds without it.

use super::limits::{DEFAULT_MAX_FRAME_PIXELS, DecodeError, MAX_SCANS, check_pixels};
use super::{MAX_DIMENSION, Scale};
use crate::pixels::Pixels;
use image::RgbImage;
use zune_core::bytestream::ZCursor;

/// The frame header's dimensions as zune-jpeg reads them.
pub(super) fn zune_header_dimensions(bytes: &[u8]) -> Result<(u32, u32), String> {
    let mut decoder = zune_decoder(bytes);
    decoder.decode_headers().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions().ok_or("no frame header")?;
    Ok((w as u32, h as u32))
}

/// zune-jpeg set up strictly: damaged data is an error (the `image` crate's wrapper is
/// lenient and fills what is missing with grey), scans and dimensions bounded.
fn zune_decoder(bytes: &[u8]) -> zune_jpeg::JpegDecoder<ZCursor<&[u8]>> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_DIMENSION as usize)
        .set_max_height(MAX_DIMENSION as usize)
        .jpeg_set_max_scans(MAX_SCANS as usize)
        .set_strict_mode(true);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
}

/// zune-jpeg into `out` at `scale`: a full decode, resized when scaled (it has no DCT
/// scaling). The full size is checked against `out` first, so a header claiming more than
/// the caller sized for allocates nothing.
pub(super) fn decode_zune_scaled(
    bytes: &[u8],
    scale: Scale,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let damaged = |e: String| DecodeError::Damaged(e);
    let mut decoder = zune_decoder(bytes);
    decoder
        .decode_headers()
        .map_err(|e| damaged(e.to_string()))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| damaged("no frame header".into()))?;
    let (w, h) = (w as u32, h as u32);
    let (sw, sh) = scale.apply((w, h));
    let fits = sw as usize * sh as usize * 3 == out.len()
        && decoder.output_buffer_size() == Some(w as usize * h as usize * 3);
    if !fits {
        return Err(damaged(format!(
            "decoded {w}x{h} at 1/{} does not fit a buffer of {} bytes",
            scale.denominator(),
            out.len()
        )));
    }
    if scale == Scale::Full {
        return decoder.decode_into(out).map_err(|e| damaged(e.to_string()));
    }
    let mut full = vec![0u8; w as usize * h as usize * 3];
    decoder
        .decode_into(&mut full)
        .map_err(|e| damaged(e.to_string()))?;
    let full = RgbImage::from_raw(w, h, full).expect("sized from the dimensions");
    let small = image::imageops::resize(&full, sw, sh, image::imageops::FilterType::Triangle);
    out.copy_from_slice(small.as_raw());
    Ok(())
}

/// Decodes a full-size frame with zune-jpeg (strict) straight into `out`, which must hold
/// exactly its RGB8 pixels.
///
/// # Errors
/// As [`decode_jpeg`](super::decode_jpeg), or when `out` has the wrong length.
pub fn decode_into_zune(bytes: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    decode_zune_scaled(bytes, Scale::Full, out)
}

/// Decodes with zune-jpeg (strict) whatever the build, refusing frames over
/// [`DEFAULT_MAX_FRAME_PIXELS`]: for comparing decoders, and the fallback's own tests.
///
/// # Errors
/// As [`decode_jpeg`](super::decode_jpeg).
pub fn decode_jpeg_zune(bytes: &[u8]) -> Result<Pixels, DecodeError> {
    let mut decoder = zune_decoder(bytes);
    decoder
        .decode_headers()
        .map_err(|e| DecodeError::Damaged(e.to_string()))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| DecodeError::Damaged("no frame header".into()))?;
    let (w, h) = (w as u32, h as u32);
    check_pixels((w, h), DEFAULT_MAX_FRAME_PIXELS)?;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    decode_zune_scaled(bytes, Scale::Full, &mut rgb)?;
    Ok(Pixels::from_vec(w, h, rgb).expect("sized from the dimensions"))
}
