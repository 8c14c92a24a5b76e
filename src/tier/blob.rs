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

/// The most bytes a read of one object may hold, and the setting that says so (named in
/// the [`Error::ObjectTooLarge`] that refuses a larger object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// The setting or rule, e.g. `max_object_size`.
    pub what: &'static str,
}

impl Limit {
    /// A limit of `bytes` named `what`.
    pub const fn new(bytes: u64, what: &'static str) -> Self {
        Limit { bytes, what }
    }

    /// [`crate::CacheConfig::max_object_size`].
    pub const fn object(bytes: u64) -> Self {
        Limit::new(bytes, "max_object_size")
    }

    /// The error refusing `key` of `size` bytes.
    pub fn refuse(&self, key: &str, size: u64) -> Error {
        Error::ObjectTooLarge {
            key: key.to_owned(),
            size,
            limit: self.bytes,
            what: self.what,
        }
    }

    /// `Ok` when `size` (a listed or stat'ed size) is within the limit.
    ///
    /// # Errors
    /// [`Error::ObjectTooLarge`] naming `key`, `size` and this limit.
    pub fn check(&self, key: &str, size: u64) -> Result<()> {
        if size > self.bytes {
            return Err(self.refuse(key, size));
        }
        Ok(())
    }
}

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

/// The origin: the tier that holds the truth and the only one whose errors fail a read.
///
/// A trait so tests can wrap the real origin (counting or holding reads) and the chain can
/// take any implementation; a miss is `Ok(None)`, every other failure is an error.
pub trait Origin: Send + Sync {
    /// Reads `key`, at most `limit` bytes of it: a larger object is refused with
    /// [`Error::ObjectTooLarge`] once its size is known (from the response's length where
    /// the backend sends one, else as soon as more than `limit` bytes have come), never
    /// read whole.
    fn get<'a>(&'a self, key: &'a str, limit: Limit) -> BoxFuture<'a, Result<Option<Bytes>>>;
    /// Reads `key` only if it is still at `version`; an object that changed since fails with
    /// a storage error for which [`Error::is_stale_version`] holds. Backends without ETags
    /// read unconditionally. Bounded as [`Origin::get`].
    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let _ = version;
        self.get(key, limit)
    }
    /// What `key` is now (size and version, without reading it); `None` when absent.
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>>;
    /// Stores `value` under `key`, replacing what was there; returns the version written.
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<Option<Version>>>;
    /// Removes `key`; removing a missing key succeeds.
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Every object under `prefix`, recursively.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>>;
    /// One page of the "directories" directly under `prefix` (a child's name is the part of
    /// a key after `prefix` up to the next `/`), in key order (`{name}/`), those after
    /// `after` only, at most `limit`: held in memory a page at a time, whatever the number
    /// of objects under `prefix`. The default lists recursively and keeps the page; the
    /// OpenDAL origin asks for a delimiter listing.
    fn list_dirs<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            let mut page = DirPage::new(after, limit);
            for object in self.list(prefix).await? {
                if let Some((name, _)) = object
                    .key
                    .get(prefix.len()..)
                    .and_then(|r| r.split_once('/'))
                {
                    page.offer(name);
                }
            }
            Ok(page.into_names())
        }
        .boxed()
    }
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
}

impl BlobTier {
    /// Wraps an operator that already carries its layers (see [`crate::build_operator`]).
    pub fn new(op: Operator, description: String, metrics: Arc<Metrics>) -> Self {
        BlobTier {
            op,
            description,
            metrics,
        }
    }

    /// The underlying operator.
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    fn failed(&self, op: &'static str, key: &str, e: opendal::Error) -> Error {
        crate::metrics::TierCounters::bump(&self.metrics.origin.errors);
        Error::storage(op, key, e)
    }
}

impl BlobTier {
    /// One whole read, restarted when a resumed stream overshot the end; with `etag`, every
    /// request of it carries `If-Match`, so a read never mixes two versions. Refused past
    /// `limit`: from the length the response declares (S3), else once more than `limit`
    /// bytes came (the filesystem reads in chunks of at most 2 MiB), so it never holds more
    /// than `limit` and one chunk.
    async fn read(&self, key: &str, etag: Option<&str>, limit: Limit) -> Result<Option<Bytes>> {
        let mut restarts = 0;
        loop {
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
    async fn read_within(
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

/// The first `limit` names after a cursor, in key order (`{name}/`), from names offered in
/// any order and any number: never more than `limit` held.
struct DirPage {
    after: Option<String>,
    limit: usize,
    names: std::collections::BTreeSet<String>,
}

impl DirPage {
    fn new(after: Option<&str>, limit: usize) -> Self {
        DirPage {
            after: after.map(|a| format!("{a}/")),
            limit,
            names: std::collections::BTreeSet::new(),
        }
    }

    /// Takes `name` if it belongs to the page (kept as `{name}/`, the order keys sort in).
    fn offer(&mut self, name: &str) {
        let key = format!("{name}/");
        if self.after.as_ref().is_some_and(|after| &key <= after)
            || self.limit == 0
            || self.names.contains(&key)
        {
            return;
        }
        if self.names.len() == self.limit {
            match self.names.last() {
                Some(last) if &key < last => {
                    self.names.pop_last();
                }
                _ => return,
            }
        }
        self.names.insert(key);
    }

    fn is_full(&self) -> bool {
        self.names.len() >= self.limit
    }

    fn into_names(self) -> Vec<String> {
        self.names
            .into_iter()
            .map(|mut key| {
                key.pop();
                key
            })
            .collect()
    }
}

/// What a bounded read found.
enum Bounded {
    /// The whole object, within the limit.
    Read(Bytes),
    /// Over the limit; its declared length when the backend sent one.
    Over(Option<u64>),
}

impl Origin for BlobTier {
    fn get<'a>(&'a self, key: &'a str, limit: Limit) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.read(key, None, limit).boxed()
    }

    fn get_at<'a>(
        &'a self,
        key: &'a str,
        version: &'a Version,
        limit: Limit,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.read(key, version.etag.as_deref(), limit).boxed()
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

    fn list_dirs<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        async move {
            let mut list = self.op.lister_with(prefix).recursive(false);
            // S3 starts the listing past the cursor's whole subtree: `{after}0` sorts after
            // every `{after}/...` (`0` follows `/`). The filesystem lists a directory in no
            // order: its entries are read and only the page is kept.
            let start = after.map(|a| format!("{prefix}{a}0"));
            if let Some(start) = &start
                && self.op.info().capability().list_with_start_after
            {
                list = list.start_after(start);
            }
            let mut lister = match list.await {
                Ok(lister) => lister,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.failed("list", prefix, e)),
            };
            let mut page = DirPage::new(after, limit);
            // Backends that can start after a key list in key order.
            let sorted = self.op.info().capability().list_with_start_after;
            while let Some(entry) = lister
                .try_next()
                .await
                .map_err(|e| self.failed("list", prefix, e))?
            {
                if entry.metadata().mode() != EntryMode::DIR {
                    continue;
                }
                let name = entry
                    .path()
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix('/'))
                    .filter(|name| !name.is_empty() && !name.contains('/'));
                if let Some(name) = name {
                    page.offer(name);
                    // In key order, a full page ends the listing.
                    if sorted && page.is_full() {
                        break;
                    }
                }
            }
            Ok(page.into_names())
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
