//! `framecache put` (part of the command line): image files become a timeline's frames,
//! added to it (the other frames stay) or, with `--replace`, rebuilding it.
//!
//! JPEG files are stored byte for byte (after checking that they decode); PNG files are
//! encoded to JPEG. Each frame's seq is the last number in its file name, or its place in
//! file-name order with `--sequential`; timestamps come from an optional CSV.

use anyhow::{Context, Result};
use bytes::Bytes;
use framecache::WriteOptions;
use framecache::{EncodedFrame, Error, FrameCache, WriteMode, codec};
use futures::{StreamExt, TryStreamExt, stream};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Extensions imported from a directory (files named explicitly are imported whatever
/// their name).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

pub struct Options {
    pub quality: u8,
    pub sequential: bool,
    pub timestamps: Option<PathBuf>,
    /// Rebuild the timeline instead of adding to it.
    pub replace: bool,
    pub concurrency: usize,
}

fn invalid(what: &'static str, value: impl std::fmt::Display, rule: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        value: value.to_string(),
        rule: rule.into(),
    }
}

pub async fn run(
    fc: &FrameCache,
    timeline: &str,
    paths: &[PathBuf],
    options: &Options,
    json: bool,
) -> Result<()> {
    framecache::layout::validate_id("timeline id", timeline)?;
    let files = collect(paths)?;
    let seqs = assign_seqs(&files, options.sequential)?;
    let timestamps = match &options.timestamps {
        Some(csv) => read_timestamps(csv)?,
        None => HashMap::new(),
    };
    let start = std::time::Instant::now();
    let bar = crate::output::progress(files.len() as u64, "read", json);
    let quality = options.quality;
    let mut frames: Vec<EncodedFrame> = stream::iter(files.iter().zip(&seqs))
        .map(|(path, &seq)| {
            let path = path.clone();
            async move {
                let jpeg = tokio::task::spawn_blocking(move || to_jpeg(&path, quality)).await??;
                Ok::<_, anyhow::Error>((seq, jpeg))
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .inspect(|_| bar.inc(1))
        .map_ok(|(seq, jpeg)| EncodedFrame {
            seq,
            chunk_id: 0,
            timestamp: timestamps.get(&seq).copied().unwrap_or(0.0),
            perceptual_hash: String::new(),
            jpeg,
        })
        .try_collect()
        .await?;
    bar.finish_and_clear();
    frames.sort_by_key(|f| f.seq);
    let bytes: usize = frames.iter().map(|f| f.jpeg.len()).sum();
    let bar = crate::output::progress(frames.len() as u64, "write", json);
    let mode = if options.replace {
        WriteMode::Replace
    } else {
        WriteMode::Merge
    };
    let written = fc
        .cache_jpegs(
            timeline,
            frames,
            WriteOptions::default()
                .mode(mode)
                .progress(&|n| bar.set_position(n)),
        )
        .await?;
    bar.finish_and_clear();
    crate::output::report(
        json,
        serde_json::json!({"timeline": timeline, "frames": written, "bytes": bytes,
            "seconds": start.elapsed().as_secs_f64()}),
        || {
            format!(
                "put {written} frames ({bytes} bytes) into {timeline} in {:.2?}",
                start.elapsed()
            )
        },
    )
}

/// The files to import: files as given, and the image files of directories, in name order.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| invalid("input path", path.display(), format!("cannot be read: {e}")))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && has_image_extension(p))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Err(invalid(
            "input paths",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            "hold no .jpg, .jpeg or .png files",
        )
        .into());
    }
    Ok(files)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn assign_seqs(files: &[PathBuf], sequential: bool) -> Result<Vec<u64>> {
    if sequential {
        return Ok((0..files.len() as u64).collect());
    }
    let mut owner: HashMap<u64, &Path> = HashMap::new();
    let mut seqs = Vec::with_capacity(files.len());
    for file in files {
        let seq = seq_from_name(file).ok_or_else(|| {
            invalid(
                "frame file name",
                file.display(),
                "has no number to use as the seq (or pass --sequential)",
            )
        })?;
        if let Some(first) = owner.insert(seq, file) {
            return Err(invalid(
                "frame file name",
                file.display(),
                format!("gives seq {seq}, as {} does", first.display()),
            )
            .into());
        }
        seqs.push(seq);
    }
    Ok(seqs)
}

/// The last run of digits in the file stem: `frame_0012.png` is 12.
pub fn seq_from_name(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let end = stem.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = stem[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    stem[start..end].parse().ok()
}

/// `seq,timestamp` per line; blank lines, `#` comments and a header line are skipped.
fn read_timestamps(csv: &Path) -> Result<HashMap<u64, f64>> {
    let text = std::fs::read_to_string(csv).map_err(|e| {
        invalid(
            "timestamps file",
            csv.display(),
            format!("cannot be read: {e}"),
        )
    })?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed = match fields.as_slice() {
            [seq, ts] => seq.parse::<u64>().ok().zip(ts.parse::<f64>().ok()),
            _ => None,
        };
        match parsed {
            Some((seq, ts)) if ts.is_finite() => {
                out.insert(seq, ts);
            }
            None if n == 0 => {} // header
            _ => {
                return Err(invalid(
                    "timestamps line",
                    format!("{}:{}: {line:?}", csv.display(), n + 1),
                    "expected `seq,timestamp` (an integer and a finite number)",
                )
                .into());
            }
        }
    }
    Ok(out)
}

/// The JPEG to store for `path`: its own bytes if it is a JPEG, else an encoding of it.
fn to_jpeg(path: &Path, quality: u8) -> Result<Bytes> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        // At 1/8 through the DCT: every block's data is still read and checked (a truncated
        // or corrupt file fails alike), for about half the cost of a full decode.
        codec::decode_jpeg_scaled(&bytes, codec::Scale::Eighth).map_err(|e| {
            invalid(
                "image file",
                path.display(),
                format!("is not a readable JPEG: {e}"),
            )
        })?;
        return Ok(Bytes::from(bytes));
    }
    let image = image::load_from_memory(&bytes)
        .map_err(|e| {
            invalid(
                "image file",
                path.display(),
                format!("cannot be decoded: {e}"),
            )
        })?
        .into_rgb8();
    let jpeg = codec::encode_jpeg(&image.into(), quality).map_err(|e| {
        invalid(
            "image file",
            path.display(),
            format!("cannot be encoded: {e}"),
        )
    })?;
    Ok(Bytes::from(jpeg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_the_last_number_of_the_stem() {
        for (name, seq) in [
            ("7.jpg", Some(7)),
            ("frame_0012.png", Some(12)),
            ("cam2_frame10.jpeg", Some(10)),
            ("dir9/frame.png", None),
            ("no-number.png", None),
            ("99999999999999999999999.jpg", None),
        ] {
            assert_eq!(seq_from_name(Path::new(name)), seq, "{name}");
        }
    }

    #[test]
    fn timestamps_csv_accepts_a_header_and_rejects_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "seq,timestamp\n0, 0.5\n\n# note\n3,1.25\n").unwrap();
        let map = read_timestamps(&good).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&3], 1.25);
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "0,0.5\n1,soon\n").unwrap();
        let err = read_timestamps(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.csv:2"), "{err}");
    }
}
