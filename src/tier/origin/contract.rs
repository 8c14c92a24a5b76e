//! The [`Origin`] trait: what the chain asks of any origin (the OpenDAL one, or a test's
//! wrapper around it). A miss is `Ok(None)`, every other failure an error.

use super::limit::Limit;
use super::list::{DirPage, page_of_listing};
use super::object::{ListPage, ObjectInfo, PutCondition, PutOutcome, Version};
use crate::error::Result;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

/// The origin: the tier that holds the truth and the only one whose errors fail a read.
///
/// A trait so tests can wrap the real origin (counting or holding reads) and the chain can
/// take any implementation; a miss is `Ok(None)`, every other failure is an error.
pub trait Origin: Send + Sync {
    /// Reads `key`, at most `limit` bytes of it: a larger object is refused with
    /// [`Error::ObjectTooLarge`](crate::Error::ObjectTooLarge) once its size is known (from the response's length where
    /// the backend sends one, else as soon as more than `limit` bytes have come), never
    /// read whole.
    fn get<'a>(&'a self, key: &'a str, limit: Limit) -> BoxFuture<'a, Result<Option<Bytes>>>;
    /// Reads `key` only if it is still at `version`; an object that changed since fails with
    /// a storage error for which [`Error::is_stale_version`](crate::Error::is_stale_version) holds. Backends without ETags
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
