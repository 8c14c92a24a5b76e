//! What the engine asks of a tier's entry format, and the reads every format shares: open an
//! entry with its length checked, discard a broken one, find the key a file names, remove
//! by key prefix.

use super::engine::Store;
use crate::error::{Error, Result};
use crate::localfs::{self, How, Sharing};
use crate::metrics::TierCounters;
use std::fmt::Display;
use std::fs::{File, Metadata};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// What a disk tier's entries hold: a header that names the entry's key and a checksum over
/// the whole file. The engine stores, reads, evicts and verifies files; the format says
/// whether one is good.
pub(crate) trait Format {
    /// What an entry is called in logs.
    const NAME: &'static str;
    /// The shortest well-formed entry file, in bytes: anything shorter is truncated.
    const MIN_LEN: u64;
    /// Bytes of a file's start that [`Format::key_in`] needs at most.
    const HEAD_LEN: usize;

    /// The key a file's first bytes (at most [`Format::HEAD_LEN`]) name, if they are a
    /// header of this format (or of an older version of it, so `clear` and `verify` find
    /// those by key too).
    fn key_in(head: &[u8]) -> Option<String>;

    /// Checks a whole entry file read back as `key`'s.
    ///
    /// # Errors
    /// What is wrong with it.
    fn check(key: &str, entry: &[u8]) -> std::result::Result<(), String>;
}

/// An entry file opened for reading, of a length its format and the store accept.
pub(crate) struct Opened {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) meta: Metadata,
}

/// The key an entry file's header names, read without the payload.
pub(super) fn key_of<F: Format>(path: &Path) -> Option<String> {
    let file = localfs::open(path, How::Read, Sharing::Private).ok()?;
    let mut head = Vec::with_capacity(F::HEAD_LEN);
    file.take(F::HEAD_LEN as u64).read_to_end(&mut head).ok()?;
    F::key_in(&head)
}

impl Store {
    /// Opens `key`'s entry for reading: `None` when there is none, or when its length is
    /// under the format's minimum or over the store's entry limit (see
    /// [`Store::with_entry_limit`]); such a file is discarded as broken before anything is
    /// allocated for it. Counts nothing else: the format counts the hit or the miss.
    ///
    /// # Errors
    /// Only when the file exists but cannot be opened or looked at.
    pub(crate) fn open_entry<F: Format>(&self, key: &str) -> Result<Option<Opened>> {
        let path = self.path_of(key);
        let (file, meta) = match localfs::open_with_meta(&path, How::Read, self.inner.sharing) {
            Ok(opened) => opened,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open cache entry", path, e)),
        };
        let limit = self.entry_limit();
        if meta.len() < F::MIN_LEN {
            self.discard::<F>(&path, key, &"truncated");
            return Ok(None);
        }
        if meta.len() > limit {
            let why = format!("{} bytes, over the entry limit of {limit}", meta.len());
            self.discard::<F>(&path, key, &why);
            return Ok(None);
        }
        Ok(Some(Opened { path, file, meta }))
    }

    /// The longest entry file a read accepts.
    pub(crate) fn entry_limit(&self) -> u64 {
        self.inner
            .entry_limit
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes a broken entry and counts it (`corrupt`); the caller reports a miss.
    pub(crate) fn discard<F: Format>(&self, path: &Path, key: &str, why: &dyn Display) {
        tracing::warn!(
            "{} {} for {key:?} is corrupt ({why}); removed",
            F::NAME,
            path.display()
        );
        TierCounters::bump(&self.counters().corrupt);
        let _ = self.unlink_entry(path);
    }

    /// Removes every entry whose key starts with `prefix`, reading each entry's header.
    ///
    /// Entry names are hashes, so this visits the whole directory: meant for `clear`, not
    /// for hot paths. Returns the number of entries removed.
    pub(crate) fn remove_keys_with_prefix<F: Format>(&self, prefix: &str) -> u64 {
        let mut removed = 0;
        for found in self.scan() {
            if key_of::<F>(&found.path).is_some_and(|k| k.starts_with(prefix))
                && self.unlink_entry(&found.path).unwrap_or(false)
            {
                removed += 1;
            }
        }
        removed
    }
}
