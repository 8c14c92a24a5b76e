//! The origin tier: blob storage through an OpenDAL `Operator` (S3, filesystem, memory).

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use opendal::{EntryMode, ErrorKind, Metadata, Operator};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Times a whole read starts again after a resumed stream overshot the object's end.
const READ_RESTARTS: u32 = 3;

/// An object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// Full key.
    pub key: String,
    /// Size in bytes, when the listing reports it.
    pub size: u64,
    /// The version the listing saw, when the backend reports a validator.
    pub version: Option<Version>,
}

/// One version of an object at the origin, as a listing, a stat or a write reports it: the
/// ETag where the backend has one (S3), else the size and modification time (filesystem).
///
/// Local copies are stored under their version, so a copy of any other version is never
/// served for it: a rewrite by any writer changes the version the next listing reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// What local copies are keyed by.
    pub tag: String,
    /// The ETag, sent as `If-Match` so a read (and every resumed range of it) returns
    /// exactly this version or fails.
    pub etag: Option<String>,
}

impl Version {
    /// The version an OpenDAL metadata describes, if it carries a validator.
    pub fn of(meta: &Metadata) -> Option<Version> {
        if let Some(etag) = meta.etag().filter(|e| !e.is_empty()) {
            return Some(Version {
                tag: format!("e:{}", etag.trim_matches('"')),
                etag: Some(etag.to_owned()),
            });
        }
        let modified = meta.last_modified()?;
        Some(Version {
            tag: format!("m:{}:{modified}", meta.content_length()),
            etag: None,
        })
    }
}

/// What a conditional write ([`Origin::put_if`]) requires of the object it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition<'a> {
    /// The key holds nothing (`If-None-Match: *`).
    Absent,
    /// The key holds the version with this ETag (`If-Match`).
    Matches(&'a str),
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written: the condition held.
    Written(Option<Version>),
    /// Not written: the condition did not hold.
    Refused,
    /// Not written: this origin cannot write conditionally (nothing was sent).
    Unsupported,
}

/// The origin: the tier that holds the truth and the only one whose errors fail a read.
///
/// A trait so tests can wrap the real origin (counting or holding reads) and the chain can
/// take any implementation; a miss is `Ok(None)`, every other failure is an error.
pub trait Origin: Send + Sync {
    /// Reads `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;
    /// Reads `key` only if it is still at `version`; an object that changed since fails with
    /// a storage error for which [`Error::is_stale_version`] holds. Backends without ETags
    /// read unconditionally.
    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let _ = version;
        self.get(key)
    }
    /// What `key` is now (size and version, without reading it); `None` when absent.
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>>;
    /// Stores `value` under `key`, replacing what was there; returns the version written.
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<Option<Version>>>;
    /// Stores `value` under `key` only if `condition` holds, where the backend can say so.
    /// The default, and backends whose service lacks conditional writes, answer
    /// [`PutOutcome::Unsupported`] without a request. A backend may claim the capability
    /// and ignore it (Garage does): callers probe before relying on it.
    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        condition: PutCondition<'a>,
    ) -> BoxFuture<'a, Result<PutOutcome>> {
        let _ = (key, value, condition);
        futures::future::ready(Ok(PutOutcome::Unsupported)).boxed()
    }
    /// Removes `key`; removing a missing key succeeds.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Every object under `prefix`, recursively.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>>;
    /// Whether `key` exists, without reading it.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Whether any object exists under `prefix`; stops at the first one found.
    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<bool>>;
    /// Deletes every object under `prefix`.
    fn remove_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>>;
    /// A description without credentials, e.g. `s3://mpr (http://127.0.0.1:3900)`.
    fn describe(&self) -> String;
}

/// Blob storage through OpenDAL. `NotFound` is a miss; every other error fails the call.
#[derive(Clone)]
pub struct BlobTier {
    op: Operator,
    description: String,
    metrics: Arc<Metrics>,
    signing: Option<Arc<crate::credentials::SigningRecord>>,
}

impl BlobTier {
    /// Wraps an operator that already carries its layers (see [`crate::build_operator`]).
    pub fn new(op: Operator, description: String, metrics: Arc<Metrics>) -> Self {
        BlobTier {
            op,
            description,
            metrics,
            signing: None,
        }
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

    fn failed(&self, op: &'static str, key: &str, e: opendal::Error) -> Error {
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
    /// request of it carries `If-Match`, so a read never mixes two versions.
    async fn read(&self, key: &str, etag: Option<&str>) -> Result<Option<Bytes>> {
        let mut restarts = 0;
        loop {
            let read = match etag {
                Some(etag) => self.op.read_with(key).if_match(etag).await,
                None => self.op.read(key).await,
            };
            match read {
                Ok(buf) => {
                    // A compact copy: the reader's chunk can be far larger than the
                    // object (the fs service reads into 2 MiB buffers), and a slice of
                    // it would pin all of it for as long as the frame is held.
                    let bytes = Bytes::copy_from_slice(&buf.to_bytes());
                    self.metrics.origin.hit(bytes.len());
                    return Ok(Some(bytes));
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
}

impl Origin for BlobTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.read(key, None).boxed()
    }

    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.read(key, version.etag.as_deref()).boxed()
    }

    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>> {
        async move {
            match self.op.stat(key).await {
                Ok(meta) => Ok(Some(ObjectInfo {
                    key: key.to_owned(),
                    size: meta.content_length(),
                    version: Version::of(&meta),
                })),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.failed("stat", key, e)),
            }
        }
        .boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<Option<Version>>> {
        async move {
            let len = value.len();
            let meta = self
                .op
                .write(key, value)
                .await
                .map_err(|e| self.failed("write", key, e))?;
            self.metrics.origin.wrote(len);
            Ok(Version::of(&meta))
        }
        .boxed()
    }

    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        condition: PutCondition<'a>,
    ) -> BoxFuture<'a, Result<PutOutcome>> {
        async move {
            let capability = self.op.info().capability();
            let len = value.len();
            let written = match condition {
                PutCondition::Absent if capability.write_with_if_not_exists => {
                    self.op.write_with(key, value).if_not_exists(true).await
                }
                PutCondition::Matches(etag) if capability.write_with_if_match => {
                    self.op.write_with(key, value).if_match(etag).await
                }
                _ => return Ok(PutOutcome::Unsupported),
            };
            match written {
                Ok(meta) => {
                    self.metrics.origin.wrote(len);
                    Ok(PutOutcome::Written(Version::of(&meta)))
                }
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(PutOutcome::Refused),
                Err(e) => Err(self.failed("write", key, e)),
            }
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            match self.op.delete(key).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.failed("delete", key, e)),
            }
        }
        .boxed()
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>> {
        async move {
            let entries = match self.op.list_with(prefix).recursive(true).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.failed("list", prefix, e)),
            };
            Ok(entries
                .into_iter()
                .filter(|e| e.metadata().mode() == EntryMode::FILE)
                .map(|e| ObjectInfo {
                    size: e.metadata().content_length(),
                    version: Version::of(e.metadata()),
                    key: e.path().to_owned(),
                })
                .collect())
        }
        .boxed()
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        async move {
            self.op
                .exists(key)
                .await
                .map_err(|e| self.failed("stat", key, e))
        }
        .boxed()
    }

    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<bool>> {
        async move {
            let mut lister = match self.op.lister_with(prefix).recursive(true).limit(1).await {
                Ok(lister) => lister,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(self.failed("list", prefix, e)),
            };
            while let Some(entry) = lister
                .try_next()
                .await
                .map_err(|e| self.failed("list", prefix, e))?
            {
                if entry.metadata().mode() == EntryMode::FILE {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        .boxed()
    }

    fn remove_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            match self.op.delete_with(prefix).recursive(true).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.failed("delete", prefix, e)),
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
