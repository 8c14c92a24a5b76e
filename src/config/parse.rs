//! Parsing the values settings take as text (sizes, capacities, pixel counts, flags,
//! seconds): shared by the environment reader, the command line and the Python keywords.

use super::settings::AUTO_CAPACITY;
pub use crate::size::parse_size;
use std::time::Duration;

/// Parses a disk capacity: `auto` ([`AUTO_CAPACITY`]) or a size as [`parse_size`] takes it.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_capacity(text: &str) -> std::result::Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(AUTO_CAPACITY);
    }
    parse_size(text).map_err(|rule| format!("{rule}, or auto"))
}

/// Parses a pixel count: `178956970`, `178_956_970` or `8192x8192`; at least 1.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_pixels(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim().replace('_', "");
    let n = match t.split_once(['x', 'X']) {
        Some((w, h)) => w
            .trim()
            .parse::<u64>()
            .ok()
            .zip(h.trim().parse::<u64>().ok())
            .and_then(|(w, h)| w.checked_mul(h)),
        None => t.parse::<u64>().ok(),
    };
    match n {
        Some(n) if n > 0 => Ok(n),
        _ => Err("expected a positive pixel count (178956970) or WIDTHxHEIGHT (8192x8192)".into()),
    }
}

/// Parses a yes/no setting: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
///
/// # Errors
/// A message saying what is expected.
pub fn parse_flag(text: &str) -> std::result::Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0 (true/false, yes/no, on/off)".into()),
    }
}

/// Parses a duration in seconds, `0` or more: `60`, `2.5`, `0`.
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_seconds(text: &str) -> std::result::Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| "expected a number of seconds, 0 or more (60, 2.5)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size(" 10GiB "), Ok(10 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn capacities_parse_as_sizes_or_auto() {
        assert_eq!(parse_capacity("auto"), Ok(AUTO_CAPACITY));
        assert_eq!(parse_capacity(" AUTO "), Ok(AUTO_CAPACITY));
        assert_eq!(parse_capacity("64GiB"), Ok(64 << 30));
        assert_eq!(parse_capacity("0"), Ok(0));
        assert!(parse_capacity("most").is_err());
    }

    #[test]
    fn pixel_counts_parse_as_numbers_or_dimensions() {
        assert_eq!(parse_pixels("178956970"), Ok(178_956_970));
        assert_eq!(parse_pixels(" 178_956_970 "), Ok(178_956_970));
        assert_eq!(parse_pixels("8192x8192"), Ok(1 << 26));
        assert!(parse_pixels("0").is_err());
        assert!(parse_pixels("-5").is_err());
        assert!(parse_pixels("lots").is_err());
        assert!(parse_pixels("4294967296x4294967296").is_err());
    }

    #[test]
    fn seconds_parse_as_non_negative_durations() {
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds(" 0.25 "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "soon", "NaN", "inf", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
