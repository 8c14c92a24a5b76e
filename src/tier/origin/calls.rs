//! Each call of the [`Origin`] trait on [`BlobTier`]: reads, stats, writes (conditional
//! where the service can), removals and listings, with the fs origin's path checks.

use super::blob::BlobTier;
use super::contract::Origin;
use super::limit::Limit;
use super::list::{DirPage, fs_page, page_of_listing};
use super::object::{LIST_PAGE, ListPage, ObjectInfo, PutCondition, PutOutcome, Version};
use crate::error::{Error, Result};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use opendal::{EntryMode, ErrorKind};

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
