//! The one error type of the crate: every variant names the key, path or value it is about.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout framecache.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in framecache.
///
/// A miss is never an error (`Ok(None)`); a failing local tier is counted and degrades to a
/// miss, so the errors callers see come from the origin, from bad input, or from codecs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id, name or value broke a rule; nothing was read or written.
    #[error("invalid {what} {value:?}: {rule}")]
    Invalid {
        /// What kind of value it was (timeline id, job id, stage, overlay name, ...).
        what: &'static str,
        /// The offending value, as given.
        value: String,
        /// The rule it broke.
        rule: String,
    },
    /// Blob storage (the origin) failed for a key or prefix.
    #[error("storage {op} of {key:?} failed: {}", summarize(source))]
    Storage {
        /// The operation (read, write, delete, list, stat).
        op: &'static str,
        /// The key or prefix.
        key: String,
        /// OpenDAL's error, which carries its own retry verdict (boxed: it is large).
        #[source]
        source: Box<opendal::Error>,
    },
    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes are not a decodable image.
    #[error("cannot decode {key:?}: {reason}")]
    Decode {
        /// The object key of the frame or overlay.
        key: String,
        /// What the decoder said.
        reason: String,
    },
    /// A frame's JPEG header claims more pixels than `max_frame_pixels` allows (a
    /// decompression bomb, or a frame far larger than a video's); refused from the header,
    /// before anything was allocated for its pixels.
    #[error(
        "frame {key:?} is {width}x{height} ({} pixels), over max_frame_pixels = {limit}",
        u64::from(*width) * u64::from(*height)
    )]
    FrameTooLarge {
        /// The object key of the frame.
        key: String,
        /// Width its header claims.
        width: u32,
        /// Height its header claims.
        height: u32,
        /// The limit in pixels.
        limit: u64,
    },
    /// An origin object is larger than its limit (`max_object_size` for frames and
    /// overlays, a fixed bound for manifest heads and chunks); refused from the size its
    /// listing or stat reported, before downloading it (or, for an object read without one,
    /// as soon as the read shows it: never read whole), and kept in no tier.
    #[error("object {key:?} is {size} bytes, over {what} = {limit}")]
    ObjectTooLarge {
        /// The object key.
        key: String,
        /// Its size in bytes (at least `limit + 1` when the origin did not say).
        size: u64,
        /// The limit in bytes.
        limit: u64,
        /// The limit's name: `max_object_size`, or the manifest's own bound.
        what: &'static str,
    },
    /// An image could not be encoded.
    #[error("cannot encode frame {seq}: {reason}")]
    Encode {
        /// The frame's sequence number.
        seq: u64,
        /// What the encoder said.
        reason: String,
    },
    /// A timeline's writer has not finished (or died): its manifest lists frames that are
    /// missing or is marked incomplete.
    #[error("timeline {timeline:?} is incomplete: {present} of {expected} frames present")]
    Incomplete {
        /// The timeline id.
        timeline: String,
        /// Frames its manifest lists.
        expected: usize,
        /// Frames found.
        present: usize,
    },
    /// Another writer started re-caching the timeline after this one and had not finished
    /// when this one did; this write removed none of its frames. Writing again replaces it.
    #[error(
        "timeline {timeline:?} was not replaced: another writer (generation {other}) started \
         re-caching it after this one and had not finished when this one did; this write \
         removed none of its frames (write again to replace them)"
    )]
    Superseded {
        /// The timeline id.
        timeline: String,
        /// The generation of the manifest the other writer stored.
        other: String,
    },
    /// Other writers kept changing the timeline while this write was finishing. A rebuild
    /// marks its manifest incomplete again (best effort) rather than leave it complete over
    /// frames that are not its own; an append's frames are stored but their manifest
    /// entries may be missing (they load with the defaults). Writing again completes either.
    #[error(
        "timeline {timeline:?} kept changing while this write finished ({rounds} rounds): \
         other writers are at work on it (write again once they are done)"
    )]
    Contended {
        /// The timeline id.
        timeline: String,
        /// Rounds of checks the write made.
        rounds: usize,
    },
    /// A read asked for a frame the timeline does not have (every range and selection read
    /// fails this way; the single-frame lookups return `None` instead).
    #[error("timeline {timeline:?} has no frame {seq}")]
    NoFrame {
        /// The timeline id.
        timeline: String,
        /// The seq asked for.
        seq: u64,
    },
    /// An object that was listed a moment ago is gone (deleted concurrently).
    #[error("{key:?} vanished while being read")]
    Vanished {
        /// The object key.
        key: String,
    },
    /// A background task did not finish: it panicked, or its runtime is shutting down.
    #[error("{what} did not finish: {reason}")]
    Task {
        /// What the task was doing.
        what: String,
        /// Why it stopped.
        reason: String,
    },
    /// The configuration cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The same error, shared by every caller of a coalesced fetch.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// True when repeating the operation may succeed (a timeout, a throttled or unavailable
    /// origin). Delegates to OpenDAL's verdict for storage errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Storage { source, .. } => source.is_temporary(),
            Error::Shared(inner) => inner.is_retryable(),
            _ => false,
        }
    }

    /// True when blob storage (the origin) failed, as opposed to bad input or bad data:
    /// what lets a read fall back on what this machine kept.
    pub fn is_origin_failure(&self) -> bool {
        match self {
            Error::Storage { .. } => true,
            Error::Shared(inner) => inner.is_origin_failure(),
            _ => false,
        }
    }

    /// True when a read conditioned on a version found the object changed since.
    pub fn is_stale_version(&self) -> bool {
        match self {
            Error::Storage { source, .. } => source.kind() == opendal::ErrorKind::ConditionNotMatch,
            Error::Shared(inner) => inner.is_stale_version(),
            _ => false,
        }
    }

    /// True when the error is about bad input rather than a failing system.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Invalid { .. } | Error::Config(_) => true,
            Error::Shared(inner) => inner.is_invalid_input(),
            _ => false,
        }
    }

    /// The error for `key`'s JPEG that did not decode.
    pub(crate) fn decode(key: &str, err: crate::codec::DecodeError) -> Self {
        match err {
            crate::codec::DecodeError::TooManyPixels {
                width,
                height,
                limit,
            } => Error::FrameTooLarge {
                key: key.to_owned(),
                width,
                height,
                limit,
            },
            other => Error::Decode {
                key: key.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn storage(op: &'static str, key: &str, source: opendal::Error) -> Self {
        Error::Storage {
            op,
            key: key.to_owned(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The error of a task that panicked or was cancelled, for every `spawn`/`spawn_blocking`.
    pub(crate) fn task(what: impl Into<String>, join: tokio::task::JoinError) -> Self {
        let reason = match join.try_into_panic() {
            Ok(panic) => match panic.downcast::<String>() {
                Ok(msg) => format!("panicked: {msg}"),
                Err(panic) => match panic.downcast::<&str>() {
                    Ok(msg) => format!("panicked: {msg}"),
                    Err(_) => "panicked".to_owned(),
                },
            },
            Err(join) => join.to_string(),
        };
        Error::Task {
            what: what.into(),
            reason,
        }
    }

    /// Unwraps a shared error when this caller holds the last reference.
    pub(crate) fn from_shared(shared: Arc<Error>) -> Self {
        Arc::try_unwrap(shared).unwrap_or_else(Error::Shared)
    }
}

/// OpenDAL's kind and message and the root cause, without its request context (which
/// repeats the key and can run to several lines of headers).
fn summarize(err: &opendal::Error) -> String {
    let mut root: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(next) = root.and_then(|e| e.source()) {
        root = Some(next);
    }
    let mut out = format!("{} ({})", err.kind(), err.message());
    if let Some(root) = root {
        out.push_str(&format!(": {root}"));
    }
    out
}
