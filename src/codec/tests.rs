//! The codec's tests: encoding round trips, the decoders against each other, and hostile
//! input (bombs, truncations, endless progressive scans, libjpeg's memory cap).

#[cfg(framecache_libjpeg)]
use super::turbo;
use super::*;
use crate::pixels::Pixels;
use image::RgbImage;

mod encoding {
    use super::*;

    fn gradient(w: u32, h: u32) -> Pixels {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        })
        .into()
    }

    #[test]
    fn round_trip_is_close_and_subsampled() {
        let img = gradient(320, 240);
        let jpeg = encode_jpeg(&img, 85).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        // SOF0 component 1 sampling factors: 0x22 means 2x2 luma, i.e. 4:2:0.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        assert_eq!(jpeg[sof + 11], 0x22, "luma sampling factor");
        let back = decode_jpeg(&jpeg).unwrap();
        assert_eq!(back.dimensions(), (320, 240));
        let mae: f64 = img
            .as_raw()
            .iter()
            .zip(back.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(mae < 3.0, "mean abs error {mae}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(encode_jpeg(&gradient(8, 8), 0).is_err());
        assert!(encode_jpeg(&gradient(8, 8), 101).is_err());
        assert!(encode_jpeg(&RgbImage::new(0, 8).into(), 85).is_err());
        assert!(decode_jpeg(b"").is_err());
        assert!(decode_jpeg(b"not a jpeg").is_err());
        let jpeg = encode_jpeg(&gradient(64, 64), 85).unwrap();
        assert!(decode_jpeg(&jpeg[..jpeg.len() / 3]).is_err());
    }
}

mod decoders {
    use super::*;

    fn photo(w: u32, h: u32) -> Vec<u8> {
        encode_jpeg(&crate::synthetic_frame(3, w, h).image, 90).unwrap()
    }

    fn mean_abs_error(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum::<f64>()
            / a.len() as f64
    }

    #[test]
    fn decoders_agree() {
        let jpeg = photo(160, 96);
        let ours = decode_jpeg(&jpeg).unwrap();
        let zune = decode_jpeg_zune(&jpeg).unwrap();
        assert_eq!(ours.dimensions(), (160, 96));
        assert!(mean_abs_error(ours.as_raw(), zune.as_raw()) < 1.5);
    }

    #[test]
    fn scaled_decodes_round_up_and_resemble_a_resize() {
        let jpeg = photo(161, 97);
        let full = decode_jpeg(&jpeg).unwrap().into_rgb_image();
        for scale in [Scale::Half, Scale::Quarter, Scale::Eighth] {
            let small = decode_jpeg_scaled(&jpeg, scale).unwrap();
            let (w, h) = scale.apply((161, 97));
            assert_eq!(small.dimensions(), (w, h), "{scale:?}");
            assert_eq!(decoded_dimensions(&jpeg, scale).unwrap(), (w, h));
            let resized =
                image::imageops::resize(&full, w, h, image::imageops::FilterType::Triangle);
            let mae = mean_abs_error(small.as_raw(), resized.as_raw());
            assert!(mae < 12.0, "{scale:?}: {mae}");
        }
    }

    #[test]
    fn zune_into_a_buffer_matches_the_image_crate() {
        let jpeg = photo(160, 96);
        let mut out = vec![0u8; 160 * 96 * 3];
        decode_into_zune(&jpeg, &mut out).unwrap();
        assert_eq!(out, decode_jpeg_zune(&jpeg).unwrap().into_vec());
        assert!(decode_into_zune(&jpeg, &mut out[1..]).is_err());
        assert!(decode_into_zune(&jpeg[..jpeg.len() / 3], &mut out).is_err());
    }

    #[test]
    fn wrong_buffer_and_damaged_input_are_errors() {
        let jpeg = photo(64, 32);
        assert!(decode_into(&jpeg, Scale::Full, &mut [0u8; 10]).is_err());
        let mut flipped = jpeg.clone();
        let mid = flipped.len() / 2;
        flipped.truncate(mid);
        assert!(decode_jpeg(&flipped).is_err());
        assert_eq!(Scale::from_denominator(4), Some(Scale::Quarter));
        assert_eq!(Scale::from_denominator(3), None);
    }
}

mod hostile {
    //! Damaged and hostile files: refused with an error, never a best-effort frame.

    use super::*;

    fn photo(w: u32, h: u32) -> Vec<u8> {
        encode_jpeg(&crate::synthetic_frame(3, w, h).image, 90).unwrap()
    }

    /// A few hundred bytes whose frame header claims 65500x65500 (12.9 GB of RGB).
    fn bomb() -> Vec<u8> {
        let mut jpeg = photo(16, 16);
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&65_500u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&65_500u16.to_be_bytes());
        // Headers through the scan header and a little data: libjpeg needs its tables.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        jpeg.truncate(sos + 32);
        jpeg
    }

    const MANY_SCANS: &[u8] = include_bytes!("../../tests/data/many_scans.jpg");
    const PROGRESSIVE: &[u8] = include_bytes!("../../tests/data/progressive.jpg");

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        let bomb = bomb();
        assert_eq!(frame_dimensions(&bomb), Ok((65_500, 65_500)));
        let error = DecodeError::TooManyPixels {
            width: 65_500,
            height: 65_500,
            limit: DEFAULT_MAX_FRAME_PIXELS,
        };
        let refused = Err(error.clone());
        assert_eq!(decode_jpeg(&bomb).map(|_| ()), refused);
        assert_eq!(
            decode_jpeg_scaled(&bomb, Scale::Eighth).map(|_| ()),
            refused
        );
        assert_eq!(decode_jpeg_zune(&bomb).map(|_| ()), refused);
        let text = error.to_string();
        assert!(text.contains("65500x65500") && text.contains("max_frame_pixels"));
    }

    #[test]
    fn the_pixel_limit_counts_full_size_pixels() {
        let jpeg = photo(64, 48);
        assert!(decode_jpeg_limited(&jpeg, Scale::Full, 64 * 48).is_ok());
        for scale in [Scale::Full, Scale::Eighth] {
            assert!(matches!(
                decode_jpeg_limited(&jpeg, scale, 64 * 48 - 1),
                Err(DecodeError::TooManyPixels {
                    width: 64,
                    height: 48,
                    ..
                })
            ));
        }
    }

    #[test]
    fn truncated_jpegs_are_errors_in_both_decoders() {
        let jpeg = photo(320, 240);
        let half = &jpeg[..jpeg.len() / 2];
        let mut out = vec![0u8; 320 * 240 * 3];
        assert!(decode_jpeg(half).is_err());
        assert!(decode_jpeg_zune(half).is_err(), "zune-jpeg filled in grey");
        assert!(decode_into_zune(half, &mut out).is_err());
        assert!(decode_into(half, Scale::Full, &mut out).is_err());
        for scale in [Scale::Half, Scale::Quarter, Scale::Eighth] {
            assert!(decode_jpeg_scaled(half, scale).is_err(), "{scale:?}");
        }
        #[cfg(framecache_libjpeg)]
        assert!(turbo::decode_into(half, 1, &mut out).is_err());
        // Cut anywhere in the entropy-coded data: always an error, never a frame.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        for cut in (sos + 20..jpeg.len() - 2).step_by(997) {
            assert!(decode_jpeg(&jpeg[..cut]).is_err(), "cut at {cut}");
            assert!(
                decode_jpeg_zune(&jpeg[..cut]).is_err(),
                "zune, cut at {cut}"
            );
        }
    }

    #[test]
    fn progressive_jpegs_of_too_many_scans_are_refused_by_both_decoders() {
        // 190 scans, each valid (one AC coefficient of one component): libjpeg decodes it
        // without complaint unless told a limit.
        let mut out = vec![0u8; 32 * 24 * 3];
        let err = decode_jpeg(MANY_SCANS).unwrap_err();
        assert!(err.to_string().contains("scans"), "{err}");
        assert!(decode_jpeg_zune(MANY_SCANS).is_err());
        assert!(decode_into_zune(MANY_SCANS, &mut out).is_err());
        #[cfg(framecache_libjpeg)]
        assert!(matches!(
            turbo::decode_into(MANY_SCANS, 1, &mut out),
            Err(turbo::Failure::Limit(_))
        ));
        // An ordinary progressive file decodes, the same in both.
        let ours = decode_jpeg(PROGRESSIVE).unwrap();
        let zune = decode_jpeg_zune(PROGRESSIVE).unwrap();
        assert_eq!(ours.dimensions(), (32, 24));
        assert_eq!(zune.dimensions(), (32, 24));
    }

    #[cfg(framecache_libjpeg)]
    #[test]
    fn libjpeg_memory_is_capped() {
        // A progressive decode keeps every coefficient of the frame in libjpeg's memory:
        // 512x512 at 4:2:0 is 768 KB of them.
        let jpeg: &[u8] = include_bytes!("../../tests/data/progressive_512.jpg");
        let mut out = vec![0u8; 512 * 512 * 3];
        assert!(turbo::decode_into(jpeg, 1, &mut out).is_ok());
        assert!(turbo::decode_into_capped(jpeg, &mut out, 2 << 20).is_ok());
        assert!(matches!(
            turbo::decode_into_capped(jpeg, &mut out, 256 << 10),
            Err(turbo::Failure::Limit(_))
        ));
    }

    /// The encoder's error path once its output buffer has grown: it used to free the
    /// first buffer a second time (libjpeg had freed it when growing) and leak the live
    /// one; glibc aborts the process on the double free.
    #[cfg(framecache_libjpeg)]
    #[test]
    fn an_encoder_error_after_its_buffer_grew_frees_once() {
        let noise: Vec<u8> = (0..512u32 * 512 * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let image = Pixels::from_vec(512, 512, noise).unwrap();
        for _ in 0..3 {
            let err = encode_jpeg_failing_at(&image, 100, 400).unwrap_err();
            assert!(!err.is_empty());
        }
        // Nothing was left behind that breaks the next encode.
        let ok = encode_jpeg(&image, 100).unwrap();
        assert!(ok.len() > 64 * 1024, "the buffer grew: {} bytes", ok.len());
        assert_eq!(decode_jpeg(&ok).unwrap().dimensions(), (512, 512));
    }
}
