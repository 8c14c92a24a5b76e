//! What an origin speaks: objects found by a listing ([`ObjectInfo`]), pages of them
//! ([`ListPage`]), versions ([`Version`]) and conditional writes.

use opendal::Metadata;
use serde::{Deserialize, Serialize};

/// The most keys one listing request returns (S3's `max-keys` ceiling).
pub const LIST_PAGE: usize = 1000;

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
/// [`Origin::list_page`](crate::tier::Origin::list_page).
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

/// What a conditional write ([`Origin::put_if`](crate::tier::Origin::put_if)) requires of the object it replaces.
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
