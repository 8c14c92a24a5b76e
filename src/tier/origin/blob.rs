//! [`BlobTier`], the origin through an OpenDAL `Operator`: built over an operator that
//! carries its layers, its errors counted and named (access denied names the signing key),
//! and the bounded read (`If-Match` at a version, restarted when a resumed stream
//! overshot, refused past its [`Limit`]).

use super::fs::FsRoot;
use super::limit::Limit;
use crate::error::{Error, Result};
use crate::localfs::Sharing;
use crate::metrics::Metrics;
use bytes::Bytes;
use futures::TryStreamExt;
use opendal::{ErrorKind, Operator};
use std::sync::Arc;

/// Times a whole read starts again after a resumed stream overshot the object's end.
const READ_RESTARTS: u32 = 3;

/// Blob storage through OpenDAL. `NotFound` is a miss; every other error fails the call.
#[derive(Clone)]
pub struct BlobTier {
    pub(super) op: Operator,
    pub(super) description: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) signing: Option<Arc<crate::credentials::SigningRecord>>,
    /// On the filesystem backend, its root as configured and as resolved: OpenDAL's fs
    /// service follows symbolic links, so every path is checked to resolve inside the root
    /// through none (see [`FsRoot::contains`]) before it is read, listed or written.
    pub(super) fs_root: Option<Arc<FsRoot>>,
}

impl BlobTier {
    /// Wraps an operator that already carries its layers (see [`crate::build_operator`]).
    pub fn new(op: Operator, description: String, metrics: Arc<Metrics>) -> Self {
        let fs_root = FsRoot::of(&op).map(Arc::new);
        BlobTier {
            op,
            description,
            metrics,
            signing: None,
            fs_root,
        }
    }

    /// On the fs backend, whether `key` may be touched: it resolves inside the root through
    /// no link and, for an object to read, is a regular file. `false` is logged; callers
    /// treat the key as missing (reads, listings) or fail (writes).
    ///
    /// # Errors
    /// The check itself failed (the root is gone, or is not a directory): an origin failure
    /// like any other, so loads fall back to what this machine kept.
    pub(super) async fn fs_allows(&self, key: &str, object: bool) -> Result<bool> {
        let Some(root) = self.fs_root.clone() else {
            return Ok(true);
        };
        let k = key.to_owned();
        let checked = tokio::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>(
                root.contains(&k)? && (!object || root.is_regular_or_missing(&k)),
            )
        })
        .await
        .map_err(|e| Error::task(format!("checking {key}"), e))?;
        let allowed = match checked {
            Ok(allowed) => allowed,
            Err(e) => {
                return Err(self.failed(
                    "stat",
                    key,
                    opendal::Error::new(ErrorKind::Unexpected, e.to_string()),
                ));
            }
        };
        if !allowed {
            crate::metrics::TierCounters::bump(&self.metrics.origin.errors);
            tracing::warn!(
                "{}: {key:?} is a symbolic link, resolves outside the store or is not a \
                 regular file: not served",
                self.description
            );
        }
        Ok(allowed)
    }

    pub(super) fn refused(&self, op: &'static str, key: &str) -> Error {
        Error::storage(
            op,
            key,
            opendal::Error::new(
                ErrorKind::PermissionDenied,
                "the path goes through a symbolic link or outside the fs origin's root",
            ),
        )
    }

    /// On the fs backend, creates directories and objects as `sharing` says (the
    /// default: this user only); elsewhere, nothing.
    pub fn with_sharing(mut self, sharing: Sharing) -> Self {
        if let Some(root) = self.fs_root.take() {
            self.fs_root = Some(Arc::new(FsRoot {
                root: root.root.clone(),
                real: root.real.clone(),
                sharing,
            }));
        }
        self
    }

    /// Names the credentials that signed the latest request in access-denied errors.
    pub fn with_signing_record(mut self, record: Arc<crate::credentials::SigningRecord>) -> Self {
        self.signing = Some(record);
        self
    }

    /// The underlying operator.
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    /// Counts one request to the origin ([`crate::Stats::origin_requests`]).
    pub(super) fn request(&self) {
        crate::metrics::TierCounters::bump(&self.metrics.origin_requests);
    }

    pub(super) fn failed(&self, op: &'static str, key: &str, e: opendal::Error) -> Error {
        crate::metrics::TierCounters::bump(&self.metrics.origin.errors);
        let miss = self.signing.as_ref().and_then(|r| r.take_miss());
        let e = if let Some(message) = miss.filter(|_| e.kind() == ErrorKind::Unexpected) {
            // Signing found no credentials: say which sources were tried and the fix.
            opendal::Error::new(ErrorKind::ConfigInvalid, message)
        } else if e.kind() == ErrorKind::PermissionDenied {
            let signed = self
                .signing
                .as_ref()
                .and_then(|r| r.describe())
                .unwrap_or_else(|| "no credentials (unsigned)".to_owned());
            // Which bucket and credentials: what the fix depends on (never the secret).
            opendal::Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "access denied to {} for {op}, signed with {signed}: the key's policy \
                     must allow this operation on the bucket",
                    self.description
                ),
            )
            .set_source(e)
        } else {
            e
        };
        Error::storage(op, key, e)
    }
}

impl BlobTier {
    /// One whole read, restarted when a resumed stream overshot the end; with `etag`, every
    /// request of it carries `If-Match`, so a read never mixes two versions. Refused past
    /// `limit`: from the length the response declares (S3), else once more than `limit`
    /// bytes came (the filesystem reads in chunks of at most 2 MiB), so it never holds more
    /// than `limit` and one chunk.
    pub(super) async fn read(
        &self,
        key: &str,
        etag: Option<&str>,
        limit: Limit,
    ) -> Result<Option<Bytes>> {
        if !self.fs_allows(key, true).await? {
            self.metrics.origin.miss();
            return Ok(None);
        }
        let mut restarts = 0;
        loop {
            self.request();
            match self.read_within(key, etag, limit).await {
                Ok(Bounded::Read(bytes)) => {
                    self.metrics.origin.hit(bytes.len());
                    return Ok(Some(bytes));
                }
                Ok(Bounded::Over(declared)) => {
                    // The error names the object's size: the declared length, else a stat
                    // (one small request, on this path only); at least what came.
                    let size = match declared {
                        Some(size) => size,
                        None => match self.op.stat(key).await {
                            Ok(meta) => meta.content_length().max(limit.bytes + 1),
                            Err(_) => limit.bytes + 1,
                        },
                    };
                    return Err(limit.refuse(key, size));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    self.metrics.origin.miss();
                    return Ok(None);
                }
                // OpenDAL's retry resumes a broken stream at the offset it reached; a
                // break right at the end resumes past it, which S3 answers with 416.
                // The whole object was not read: start again.
                Err(e) if e.kind() == ErrorKind::RangeNotSatisfied && restarts < READ_RESTARTS => {
                    restarts += 1;
                    crate::metrics::TierCounters::bump(&self.metrics.origin.retries);
                    tracing::debug!("{key}: read resumed past its end, restarting: {e}");
                }
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => {
                    return Err(Error::storage("read", key, e));
                }
                Err(e) => return Err(self.failed("read", key, e)),
            }
        }
    }

    /// One streamed read of `key`, stopped as soon as it is known to be over `limit`.
    pub(super) async fn read_within(
        &self,
        key: &str,
        etag: Option<&str>,
        limit: Limit,
    ) -> opendal::Result<Bounded> {
        let reader = match etag {
            Some(etag) => self.op.reader_with(key).if_match(etag).await?,
            None => self.op.reader(key).await?,
        };
        let mut stream = reader.into_stream(..).await?;
        // Opens the request: S3 answers with the object's length before any of its bytes.
        // The filesystem service declares nothing (its file is opened at the first read).
        let declared = match stream.metadata().await {
            Ok(meta) => Some(meta.content_length()),
            Err(e) if e.kind() == ErrorKind::Unsupported => None,
            Err(e) => return Err(e),
        };
        if let Some(size) = declared
            && size > limit.bytes
        {
            return Ok(Bounded::Over(Some(size)));
        }
        // A compact buffer of its own: the reader's chunks can be far larger than the
        // object (the fs service reads into 2 MiB buffers), and a slice of one would pin
        // all of it for as long as the frame is held.
        let capacity = declared.unwrap_or(0).min(limit.bytes);
        let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = stream.try_next().await? {
            if (buf.len() + chunk.len()) as u64 > limit.bytes {
                return Ok(Bounded::Over(None));
            }
            for part in chunk {
                buf.extend_from_slice(&part);
            }
        }
        Ok(Bounded::Read(Bytes::from(buf)))
    }
}

/// What a bounded read found.
pub(super) enum Bounded {
    /// The whole object, within the limit.
    Read(Bytes),
    /// Over the limit; its declared length when the backend sent one.
    Over(Option<u64>),
}
