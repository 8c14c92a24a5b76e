//! The origin tier: blob storage through an OpenDAL `Operator` (S3, filesystem, memory).

use crate::error::{Error, Result};
use crate::localfs::{self, How, Sharing};
use crate::metrics::Metrics;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use opendal::{EntryMode, ErrorKind, Metadata, Operator};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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
    /// On the filesystem backend, its root as configured and as resolved: OpenDAL's fs
    /// service follows symbolic links, so every path is checked to resolve inside the root
    /// through none (see [`FsRoot::contains`]) before it is read, listed or written.
    fs_root: Option<Arc<FsRoot>>,
}

/// The fs origin's root, as configured and with every link resolved.
struct FsRoot {
    root: PathBuf,
    real: PathBuf,
    /// The modes of the directories and files written here.
    sharing: Sharing,
}

impl FsRoot {
    fn of(op: &Operator) -> Option<FsRoot> {
        let info = op.info();
        if info.scheme() != "fs" {
            return None;
        }
        let root = PathBuf::from(info.root());
        let real = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        Some(FsRoot {
            root,
            real,
            sharing: Sharing::Private,
        })
    }

    /// Creates `key`'s directory with the sharing's mode before OpenDAL writes the object
    /// (it would create it under the umask).
    fn before_write(&self, key: &str) {
        if let Some(parent) = Path::new(key).parent() {
            let _ = localfs::create_dir_all(&self.root.join(parent), self.sharing);
        }
    }

    /// Gives the object OpenDAL wrote the sharing's mode.
    fn after_write(&self, key: &str) {
        let _ = localfs::open(&self.root.join(key), How::ReadWriteCreate, self.sharing);
    }

    /// Whether `key` (an object or a prefix) resolves inside the root through no symbolic
    /// link: its deepest existing ancestor (itself if it exists) must resolve to the very
    /// path it names under the resolved root. So a frame that is a link (to a file outside
    /// the store, or to another frame), or under a linked directory, is not served.
    fn contains(&self, key: &str) -> std::io::Result<bool> {
        let mut rel = Path::new(key.trim_matches('/'));
        loop {
            match std::fs::canonicalize(self.root.join(rel)) {
                Ok(real) => return Ok(real == self.real.join(rel)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match rel.parent() {
                    Some(parent) => rel = parent,
                    None => return Ok(true),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether `key` is a regular file (a FIFO would block a read), not following a link.
    fn is_regular_or_missing(&self, key: &str) -> bool {
        match std::fs::symlink_metadata(self.root.join(key)) {
            Ok(meta) => meta.is_file(),
            Err(_) => true,
        }
    }
}

impl BlobTier {
    /// Wraps an operator that already carries its layers (see [`crate::build_operator`]).
    pub fn new(op: Operator, description: String, metrics: Arc<Metrics>) -> Self {
        let fs_root = FsRoot::of(&op).map(Arc::new);
        BlobTier {
            op,
            description,
            metrics,
            fs_root,
        }
    }

    /// On the fs backend, whether `key` may be touched: it resolves inside the root through
    /// no link and, for an object to read, is a regular file. `false` is logged; callers
    /// treat the key as missing (reads, listings) or fail (writes).
    async fn fs_allows(&self, key: &str, object: bool) -> bool {
        let Some(root) = self.fs_root.clone() else {
            return true;
        };
        let k = key.to_owned();
        let allowed = tokio::task::spawn_blocking(move || {
            root.contains(&k).unwrap_or(false) && (!object || root.is_regular_or_missing(&k))
        })
        .await
        .unwrap_or(false);
        if !allowed {
            crate::metrics::TierCounters::bump(&self.metrics.origin.errors);
            tracing::warn!(
                "{}: {key:?} is a symbolic link, resolves outside the store or is not a                  regular file: not served",
                self.description
            );
        }
        allowed
    }

    fn refused(&self, op: &'static str, key: &str) -> Error {
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
    /// request of it carries `If-Match`, so a read never mixes two versions.
    async fn read(&self, key: &str, etag: Option<&str>) -> Result<Option<Bytes>> {
        if !self.fs_allows(key, true).await {
            self.metrics.origin.miss();
            return Ok(None);
        }
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
            if !self.fs_allows(key, true).await {
                return Ok(None);
            }
            match self.op.stat(key).await {
                Ok(meta) if self.fs_root.is_some() && meta.mode() != EntryMode::FILE => Ok(None),
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
            if !self.fs_allows(key, false).await {
                return Err(self.refused("write", key));
            }
            if let Some(root) = self.fs_root.clone() {
                let k = key.to_owned();
                let _ = tokio::task::spawn_blocking(move || root.before_write(&k)).await;
            }
            let meta = self
                .op
                .write(key, value)
                .await
                .map_err(|e| self.failed("write", key, e))?;
            if let Some(root) = self.fs_root.clone() {
                let k = key.to_owned();
                let _ = tokio::task::spawn_blocking(move || root.after_write(&k)).await;
            }
            self.metrics.origin.wrote(len);
            Ok(Version::of(&meta))
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            if !self.fs_allows(key, false).await {
                return Err(self.refused("delete", key));
            }
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
            if !self.fs_allows(prefix, false).await {
                return Ok(Vec::new());
            }
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
            if !self.fs_allows(key, true).await {
                return Ok(false);
            }
            self.op
                .exists(key)
                .await
                .map_err(|e| self.failed("stat", key, e))
        }
        .boxed()
    }

    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<bool>> {
        async move {
            if !self.fs_allows(prefix, false).await {
                return Ok(false);
            }
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
            if !self.fs_allows(prefix, false).await {
                return Err(self.refused("delete", prefix));
            }
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
