//! Output of the command line: one-line redacted errors, progress bars, text or JSON.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};

/// Replaces the S3 credentials of the environment wherever they would be printed.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for name in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "FRAMECACHE_TOKEN",
    ] {
        if let Ok(secret) = std::env::var(name)
            && secret.len() >= 4
        {
            out = out.replace(&secret, "<redacted>");
        }
    }
    out
}

/// A log writer that redacts credentials; each log event arrives in one write.
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A progress bar on a terminal; hidden for pipes, files and `--json`.
pub fn progress(len: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>10} [{bar:32}] {pos}/{len} {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Prints `value` as one JSON line with `--json`, else the text.
pub fn report(
    json: bool,
    value: serde_json::Value,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
    Ok(())
}
