//! The origin tier: blob storage through an OpenDAL `Operator` (S3, filesystem, memory).

mod build;

pub use build::build_operator;
pub use build::build_origin;
#[cfg(feature = "test-hooks")]
pub use build::build_origin_with_read_faults;

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

/// The most keys one listing request returns (S3's `max-keys` ceiling).
pub const LIST_PAGE: usize = 1000;

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

    /// [`crate::OriginConfig::max_object_size`].
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

/// One page of a listing of the objects directly under a folder, in key order, from
/// [`Origin::list_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects directly under the folder (full keys), in key order. Sub-folders are
    /// not objects and are left out, though they count towards the page's `limit`.
    pub objects: Vec<ObjectInfo>,
    /// The last name (relative to the folder; a sub-folder's ends with `/`) this page
    /// covers when the listing may go on after it; `None` when the listing ended here, so
    /// that the page says what there is from its start to the folder's end.
    pub end: Option<String>,
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
    /// One page of the objects directly under `prefix` (a folder, ending with `/`; not
    /// recursive) whose names sort after `after` (everything when `None`), in key order:
    /// up to `limit` names (objects and sub-folders) in one request where the backend can
    /// start a listing after a key (S3 `start-after`). The default reads a whole listing
    /// and cuts the page out of it.
    fn list_page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ListPage>> {
        async move {
            let listed = self.list(prefix).await?;
            Ok(page_of_listing(prefix, listed, after, limit))
        }
        .boxed()
    }

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

/// The page of `names` (sorted, each with its object, `None` for a sub-folder) after
/// `after`, at most `limit` of them.
fn cut_page(
    names: Vec<(String, Option<ObjectInfo>)>,
    after: Option<&str>,
    limit: usize,
) -> ListPage {
    let start = after.map_or(0, |a| names.partition_point(|(n, _)| n.as_str() <= a));
    let rest = names.len() - start;
    let taken: Vec<_> = names.into_iter().skip(start).take(limit).collect();
    let end = (rest > limit)
        .then(|| taken.last().map(|(n, _)| n.clone()))
        .flatten();
    ListPage {
        objects: taken.into_iter().filter_map(|(_, o)| o).collect(),
        end,
    }
}

/// Blob storage through OpenDAL. `NotFound` is a miss; every other error fails the call.
#[derive(Clone)]
pub struct BlobTier {
    op: Operator,
    description: String,
    metrics: Arc<Metrics>,
    signing: Option<Arc<crate::credentials::SigningRecord>>,
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
    async fn fs_allows(&self, key: &str, object: bool) -> Result<bool> {
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
    fn request(&self) {
        crate::metrics::TierCounters::bump(&self.metrics.origin_requests);
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
    /// request of it carries `If-Match`, so a read never mixes two versions. Refused past
    /// `limit`: from the length the response declares (S3), else once more than `limit`
    /// bytes came (the filesystem reads in chunks of at most 2 MiB), so it never holds more
    /// than `limit` and one chunk.
    async fn read(&self, key: &str, etag: Option<&str>, limit: Limit) -> Result<Option<Bytes>> {
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

impl BlobTier {
    /// A page through the service's own `start-after` (S3 `ListObjectsV2`): one request,
    /// unless the service hands back a page shorter than `limit` that it says goes on.
    async fn page_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let start = after.map(|a| format!("{prefix}{a}"));
        let mut listing = self.op.lister_with(prefix).limit(limit);
        if let Some(start) = &start {
            listing = listing.start_after(start);
        }
        let mut lister = match listing.await {
            Ok(lister) => lister,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ListPage::default()),
            Err(e) => return Err(self.failed("list", prefix, e)),
        };
        let mut names: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        while names.len() < limit {
            let Some(entry) = lister
                .try_next()
                .await
                .map_err(|e| self.failed("list", prefix, e))?
            else {
                break;
            };
            let Some(name) = entry.path().strip_prefix(prefix).filter(|n| !n.is_empty()) else {
                continue;
            };
            let object = (entry.metadata().mode() == EntryMode::FILE).then(|| ObjectInfo {
                size: entry.metadata().content_length(),
                version: Version::of(entry.metadata()),
                key: entry.path().to_owned(),
            });
            names.push((name.to_owned(), object));
        }
        let full = names.len() >= limit;
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let end = if full {
            names.last().map(|(n, _)| n.clone())
        } else {
            None
        };
        Ok(ListPage {
            objects: names.into_iter().filter_map(|(_, o)| o).collect(),
            end,
        })
    }
}

/// A page of a whole listing (recursive) of `prefix`: names directly under it, sub-folders
/// as `name/`.
fn page_of_listing(
    prefix: &str,
    listed: Vec<ObjectInfo>,
    after: Option<&str>,
    limit: usize,
) -> ListPage {
    let mut names: Vec<(String, Option<ObjectInfo>)> = listed
        .into_iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(prefix)?.to_owned();
            Some(match name.split_once('/') {
                Some((dir, _)) => (format!("{dir}/"), None),
                None => (name, Some(o)),
            })
        })
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names.dedup_by(|a, b| a.0 == b.0);
    cut_page(names, after, limit)
}

/// A page of a local folder: its names (one `readdir`, no stat), the page's cut out of
/// them, and a stat of each object on the page only, for its version, exactly as the fs
/// service reports it.
fn fs_page(
    dir: &std::path::Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> std::result::Result<ListPage, opendal::Error> {
    let io = |e: std::io::Error| opendal::Error::new(ErrorKind::Unexpected, e.to_string());
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ListPage::default()),
        Err(e) => return Err(io(e)),
    };
    let mut names: Vec<(String, bool)> = Vec::new();
    for entry in read {
        let entry = entry.map_err(io)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let name = if is_dir { format!("{name}/") } else { name };
        if after.is_none_or(|a| name.as_str() > a) {
            names.push((name, is_dir));
        }
    }
    let more = names.len() > limit;
    if more {
        names.select_nth_unstable_by(limit - 1, |a, b| a.0.cmp(&b.0));
        names.truncate(limit);
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let end = if more {
        names.last().map(|(n, _)| n.clone())
    } else {
        None
    };
    let mut objects = Vec::with_capacity(names.len());
    for (name, is_dir) in names {
        if is_dir {
            continue;
        }
        let meta = match std::fs::metadata(dir.join(&name)) {
            Ok(meta) if meta.is_file() => meta,
            // Removed since the readdir, or not a file: not on the page.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let mut built = opendal::MetadataBuilder::file(meta.len());
        built.last_modified(opendal::raw::Timestamp::try_from(
            meta.modified().map_err(io)?,
        )?);
        let built = built.build();
        objects.push(ObjectInfo {
            key: format!("{prefix}{name}"),
            size: meta.len(),
            version: Version::of(&built),
        });
    }
    Ok(ListPage { objects, end })
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
            self.request();
            if !self.fs_allows(key, true).await? {
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
            self.request();
            if !self.fs_allows(key, false).await? {
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
            self.request();
            if !self.fs_allows(key, false).await? {
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
            if !self.fs_allows(prefix, false).await? {
                return Ok(Vec::new());
            }
            let entries = match self.op.list_with(prefix).recursive(true).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    self.request();
                    return Err(self.failed("list", prefix, e));
                }
            };
            // One request per page of 1,000 objects, as S3 pages a listing.
            for _ in 0..entries.len().div_ceil(LIST_PAGE).max(1) {
                self.request();
            }
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

    fn list_page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ListPage>> {
        async move {
            self.request();
            let info = self.op.info();
            if info.capability().list_with_start_after {
                self.page_after(prefix, after, limit).await
            } else if info.scheme() == "fs" {
                let dir = std::path::Path::new(&info.root()).join(prefix);
                let (owned, after) = (prefix.to_owned(), after.map(str::to_owned));
                tokio::task::spawn_blocking(move || fs_page(&dir, &owned, after.as_deref(), limit))
                    .await
                    .map_err(|e| Error::task(format!("listing {prefix}"), e))?
                    .map_err(|e| self.failed("list", prefix, e))
            } else {
                let listed = self.list(prefix).await?;
                Ok(page_of_listing(prefix, listed, after, limit))
            }
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
            self.request();
            if !self.fs_allows(key, true).await? {
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
            self.request();
            if !self.fs_allows(prefix, false).await? {
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
            self.request();
            if !self.fs_allows(prefix, false).await? {
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
