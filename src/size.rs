//! Byte sizes as people write them (`512MiB`, `10GiB`, `1.5GB`): one parser for every
//! setting that takes a size, below the tiers that take them.

/// Parses a byte size: `4096`, `512MiB`, `10GiB`, `1.5GB` (decimal and binary units).
///
/// # Errors
/// A message saying what is wrong with the text.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a number with an optional unit (512MiB, 10GiB)".to_owned())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}")),
    };
    Ok((value * mult as f64) as u64)
}
