//! Checking every entry's checksum on demand (`framecache verify`).

use super::engine::Store;
use super::format::{Format, key_of};
use crate::metrics::TierCounters;
use serde::Serialize;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// One entry that failed a verification (`framecache verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadEntry {
    /// The entry file (already removed).
    pub path: PathBuf,
    /// The key its header names, when readable.
    pub key: Option<String>,
    /// What was wrong.
    pub reason: String,
}

/// The result of checking every entry's checksum.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub checked: u64,
    /// Bytes checked.
    pub bytes: u64,
    /// Entries that failed and were removed.
    pub bad: Vec<BadEntry>,
}

/// Reads `path` and checks it as `key`'s entry: `Ok(false)` if it vanished.
fn check_file<F: Format>(path: &Path, key: &str) -> std::result::Result<bool, String> {
    match crate::localfs::read(path) {
        Ok(bytes) => F::check(key, &bytes).map(|()| true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

impl Store {
    /// Checks every entry's header and checksum as format `F`'s, removes the bad ones and
    /// reports them. `progress(done, total)` is called after each entry.
    pub(crate) fn verify_entries<F: Format>(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> VerifyReport {
        let entries = self.scan();
        let total = entries.len() as u64;
        let mut report = VerifyReport::default();
        let mut touched = std::collections::BTreeSet::new();
        for (i, found) in entries.iter().enumerate() {
            let key = key_of::<F>(&found.path);
            let verdict = match &key {
                None => Err("unreadable header".to_owned()),
                Some(k) if self.path_of(k) != found.path => Err(format!("misplaced: holds {k:?}")),
                Some(_) if found.len > self.entry_limit() => {
                    Err(format!("{} bytes, over the entry limit", found.len))
                }
                Some(k) => check_file::<F>(&found.path, k),
            };
            match verdict {
                Ok(true) => {
                    report.checked += 1;
                    report.bytes += found.len;
                }
                Ok(false) => {} // removed meanwhile
                Err(reason) => {
                    report.checked += 1;
                    // A misplaced file was moved between shards behind the ledger's back:
                    // both shards' counters are recounted below.
                    touched.insert(super::evict::shard_of(&found.path));
                    if let Some(k) = &key {
                        touched.insert(super::evict::shard_of(&self.path_of(k)));
                    }
                    if self.unlink_entry(&found.path).is_ok() {
                        TierCounters::bump(&self.counters().corrupt);
                    }
                    report.bad.push(BadEntry {
                        path: found.path.clone(),
                        key,
                        reason,
                    });
                }
            }
            progress(i as u64 + 1, total);
        }
        for shard in touched {
            self.recount_shard(shard);
        }
        report
    }
}
