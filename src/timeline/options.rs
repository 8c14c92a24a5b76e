//! What a call asks for, one type each: which frames ([`Seqs`]), how they load
//! ([`LoadOptions`]), how a write treats the rest of the timeline ([`WriteOptions`]) and
//! where a page of the index starts ([`PageStart`]). Every `FrameCache` read, write and
//! listing takes these instead of one method per variant; `Default` is the common call.

use crate::codec::Scale;
use crate::decoded::Access;
use crate::error::{Error, Result};
use std::ops::Range;

/// The most seqs one selection may name (a range is checked before anything is allocated).
pub const MAX_SELECTION: u64 = 1 << 24;

/// Which of a timeline's frames a read asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seqs {
    /// Every frame the timeline has, in seq order.
    #[default]
    All,
    /// The frames `start..end`, in order; each must exist.
    Range(Range<u64>),
    /// These frames in this order, duplicates repeated; each must exist.
    List(Vec<u64>),
}

impl From<Range<u64>> for Seqs {
    fn from(range: Range<u64>) -> Self {
        Seqs::Range(range)
    }
}

impl From<Vec<u64>> for Seqs {
    fn from(seqs: Vec<u64>) -> Self {
        Seqs::List(seqs)
    }
}

impl Seqs {
    /// The number of frames asked for; `None` for [`Seqs::All`].
    pub fn len(&self) -> Option<usize> {
        match self {
            Seqs::All => None,
            Seqs::Range(r) => Some(r.end.saturating_sub(r.start) as usize),
            Seqs::List(l) => Some(l.len()),
        }
    }

    /// Whether the selection names no frame (never true of [`Seqs::All`]).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Parses `A..B` (B excluded), `A..=B`, or one seq.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the text.
    pub fn parse(text: &str) -> Result<Seqs> {
        let invalid = || Error::Invalid {
            what: "frame seqs",
            value: text.to_owned(),
            rule: "expected `A..B` (B excluded), `A..=B` or one seq".into(),
        };
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| invalid());
        // A range ending at u64::MAX has no exclusive end: it is a list (bounded below).
        let through = |a: u64, b: u64| match b.checked_add(1) {
            Some(end) => Ok(Seqs::Range(a..end)),
            None if b - a < MAX_SELECTION => Ok(Seqs::List((a..=b).collect())),
            None => Err(Error::Invalid {
                what: "frame seqs",
                value: text.to_owned(),
                rule: format!("at most {MAX_SELECTION} frames in one read"),
            }),
        };
        let seqs = if let Some((a, b)) = text.split_once("..=") {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                Seqs::Range(a..a)
            } else {
                through(a, b)?
            }
        } else if let Some((a, b)) = text.split_once("..") {
            Seqs::Range(num(a)?..num(b)?)
        } else {
            let seq = num(text)?;
            through(seq, seq)?
        };
        seqs.check()?;
        Ok(seqs)
    }

    /// Refuses a selection too large to hold.
    pub(super) fn check(&self) -> Result<()> {
        let n = match self {
            Seqs::All => return Ok(()),
            Seqs::Range(r) => r.end.saturating_sub(r.start),
            Seqs::List(l) => l.len() as u64,
        };
        if n > MAX_SELECTION {
            return Err(Error::Invalid {
                what: "frame seqs",
                value: format!("{self:?}"),
                rule: format!("at most {MAX_SELECTION} frames in one read"),
            });
        }
        Ok(())
    }

    /// The seqs in windows of `size`, in order (`All` has none).
    pub(super) fn windows(&self, size: usize) -> Vec<Vec<u64>> {
        match self {
            Seqs::All => Vec::new(),
            Seqs::Range(r) => {
                let mut out = Vec::new();
                let mut start = r.start;
                while start < r.end {
                    let end = start.saturating_add(size as u64).min(r.end);
                    out.push((start..end).collect());
                    start = end;
                }
                out
            }
            Seqs::List(l) => l.chunks(size).map(<[u64]>::to_vec).collect(),
        }
    }
}

/// How a load decodes and hands out frames; `LoadOptions::default()` is full size,
/// writable frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Full size, or 1/2, 1/4, 1/8 through the DCT.
    pub scale: Scale,
    /// Writable or read-only frames.
    pub access: Access,
}

impl LoadOptions {
    /// These options at `scale`.
    #[must_use]
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// These options with `access`.
    #[must_use]
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }
}

/// What a write does to the frames it does not write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Writes the given frames and keeps every other frame of the timeline, whoever wrote
    /// it, as the Python module does: a seq written again is replaced (its JPEG and its
    /// metadata), the others keep theirs. Costs what it writes: one PUT per frame and a few
    /// requests for the manifest, however long the timeline (see `append.rs`).
    #[default]
    Merge,
    /// Rebuilds the timeline: it becomes exactly the given frames, whole or refused, and
    /// every other frame is removed; among concurrent rebuilds the last to finish wins (see
    /// `finish.rs`).
    Replace,
}

/// How a write encodes and where it reports; `WriteOptions::default()` merges at
/// [`DEFAULT_QUALITY`](crate::DEFAULT_QUALITY) with no progress callback.
#[derive(Clone, Copy)]
pub struct WriteOptions<'a> {
    /// JPEG quality of [`FrameCache::cache_frames`](crate::FrameCache::cache_frames)
    /// (1..=100); [`FrameCache::cache_jpegs`](crate::FrameCache::cache_jpegs) stores its
    /// bytes as given and ignores it.
    pub quality: u8,
    /// Merge into the timeline or replace it.
    pub mode: WriteMode,
    /// Called after each frame written, with the count so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        Self {
            quality: super::DEFAULT_QUALITY,
            mode: WriteMode::Merge,
            progress: None,
        }
    }
}

impl std::fmt::Debug for WriteOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("quality", &self.quality)
            .field("mode", &self.mode)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl<'a> WriteOptions<'a> {
    /// These options at JPEG `quality`.
    #[must_use]
    pub fn quality(mut self, quality: u8) -> Self {
        self.quality = quality;
        self
    }

    /// These options in `mode`.
    #[must_use]
    pub fn mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// These options calling `progress(n)` after each frame written.
    #[must_use]
    pub fn progress(mut self, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Reports `n` frames written so far.
    pub(super) fn report(&self, n: u64) {
        if let Some(progress) = self.progress {
            progress(n);
        }
    }
}

/// Where a page of a timeline's index starts, for
/// [`FrameCache::list_frames_page`](crate::FrameCache::list_frames_page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    /// At the first frame whose seq is at least this one.
    Seq(u64),
    /// At this position in seq order (the first frame is 0): what a viewer that scrubs by
    /// position asks for. With a complete manifest, the chunk counts its head lists say
    /// where the page is, so only the chunks holding it are read.
    Position(usize),
}
