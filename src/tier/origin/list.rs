//! Listing pages: cut out of a whole listing, through the service's `start-after`, or read
//! from a local folder (the fs origin); pages of "directories" held a page at a time.

use super::blob::BlobTier;
use super::object::{ListPage, ObjectInfo, Version};
use crate::error::Result;
use futures::TryStreamExt;
use opendal::{EntryMode, ErrorKind};

/// The page of `names` (sorted, each with its object, `None` for a sub-folder) after
/// `after`, at most `limit` of them.
pub(super) fn cut_page(
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

/// The first `limit` names after a cursor, in key order (`{name}/`), from names offered in
/// any order and any number: never more than `limit` held.
pub(super) struct DirPage {
    after: Option<String>,
    limit: usize,
    names: std::collections::BTreeSet<String>,
}

impl DirPage {
    pub(super) fn new(after: Option<&str>, limit: usize) -> Self {
        DirPage {
            after: after.map(|a| format!("{a}/")),
            limit,
            names: std::collections::BTreeSet::new(),
        }
    }

    /// Takes `name` if it belongs to the page (kept as `{name}/`, the order keys sort in).
    pub(super) fn offer(&mut self, name: &str) {
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

    pub(super) fn is_full(&self) -> bool {
        self.names.len() >= self.limit
    }

    pub(super) fn into_names(self) -> Vec<String> {
        self.names
            .into_iter()
            .map(|mut key| {
                key.pop();
                key
            })
            .collect()
    }
}

impl BlobTier {
    /// A page through the service's own `start-after` (S3 `ListObjectsV2`): one request,
    /// unless the service hands back a page shorter than `limit` that it says goes on.
    pub(super) async fn page_after(
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
pub(super) fn page_of_listing(
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
pub(super) fn fs_page(
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
