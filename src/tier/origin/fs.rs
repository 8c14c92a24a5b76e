//! The fs origin's root: every path checked to resolve inside it through no symbolic link,
//! only regular files read, directories and objects created with the sharing's modes.

use crate::localfs::{self, How, Sharing};
use opendal::Operator;
use std::path::{Path, PathBuf};

/// The fs origin's root, as configured and with every link resolved.
pub(super) struct FsRoot {
    pub(super) root: PathBuf,
    pub(super) real: PathBuf,
    /// The modes of the directories and files written here.
    pub(super) sharing: Sharing,
}

impl FsRoot {
    pub(super) fn of(op: &Operator) -> Option<FsRoot> {
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
    pub(super) fn before_write(&self, key: &str) {
        if let Some(parent) = Path::new(key).parent() {
            let _ = localfs::create_dir_all(&self.root.join(parent), self.sharing);
        }
    }

    /// Gives the object OpenDAL wrote the sharing's mode.
    pub(super) fn after_write(&self, key: &str) {
        let _ = localfs::open(&self.root.join(key), How::ReadWriteCreate, self.sharing);
    }

    /// Whether `key` (an object or a prefix) resolves inside the root through no symbolic
    /// link: its deepest existing ancestor (itself if it exists) must resolve to the very
    /// path it names under the resolved root. So a frame that is a link (to a file outside
    /// the store, or to another frame), or under a linked directory, is not served.
    pub(super) fn contains(&self, key: &str) -> std::io::Result<bool> {
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
    pub(super) fn is_regular_or_missing(&self, key: &str) -> bool {
        match std::fs::symlink_metadata(self.root.join(key)) {
            Ok(meta) => meta.is_file(),
            Err(_) => true,
        }
    }
}
