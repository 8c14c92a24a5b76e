//! The default directories: the cache directory and the fs origin's root, under the XDG
//! base directories (`XDG_CACHE_HOME`, `XDG_DATA_HOME`, else `HOME`), read here.

use crate::localfs;
use std::path::PathBuf;

/// `$XDG_CACHE_HOME/framecache`, else `~/.cache/framecache`, else
/// `{tmp}/framecache-{uid}/.cache/framecache`: a per-user directory, checked at open to be
/// this user's own with mode `0700` (never a directory every user shares).
pub fn default_cache_dir() -> PathBuf {
    base_dir("XDG_CACHE_HOME", ".cache").join("framecache")
}

/// `$XDG_DATA_HOME/framecache/store`, else `~/.local/share/framecache/store`, else under
/// the per-user directory of [`default_cache_dir`].
pub fn default_fs_root() -> PathBuf {
    base_dir("XDG_DATA_HOME", ".local/share")
        .join("framecache")
        .join("store")
}

fn base_dir(xdg: &str, home_relative: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(xdg).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(home_relative),
        None => localfs::fallback_base().join(home_relative),
    }
}
