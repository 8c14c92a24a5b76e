//! Temp files of writes in progress: their names, and whether their writer is gone.

use super::Store;
use crate::flock::gate::LockKind;
use crate::flock::{LockFile, Mode};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// Prefix of in-progress writes; never a valid entry name (entry names are 64 hex chars).
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// A temp file this old belongs to a dead writer whatever its pid says (pids are reused).
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The parts of a temp file's name.
pub(super) struct TempName {
    pid: u32,
    nonce: u32,
    pub(super) len: u64,
}

pub(super) fn parse_temp(name: &str) -> Option<TempName> {
    let mut parts = name.strip_prefix(TEMP_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let nonce = parts.next()?.parse().ok()?;
    let _seq: u64 = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    Some(TempName { pid, nonce, len })
}

pub(super) fn process_nonce() -> u32 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{:?}",
        std::process::id(),
        now.as_nanos(),
        std::thread::current().id()
    );
    let hash = blake3::hash(seed.as_bytes());
    u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"))
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true // only the age rule applies
}

/// Hard links to a file: a temp file still linked after its entry was committed is a
/// dead writer's leftover.
#[cfg(unix)]
pub(super) fn links(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
pub(super) fn links(_meta: &fs::Metadata) -> u64 {
    1
}

impl Store {
    /// A fresh temp file name for a write of `len` bytes (0 for a file being removed).
    pub(super) fn temp_name(&self, len: u64) -> String {
        let n = self.inner.temp_seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{TEMP_PREFIX}{}-{}-{n}-{len}",
            std::process::id(),
            self.inner.nonce
        )
    }

    /// Whether a temp file was left by a writer that is gone.
    ///
    /// A writer holds a `flock` on its temp file until it is done, so a temp file whose
    /// lock can be taken has no writer. This holds across PID namespaces (containers sharing
    /// one cache volume, where every main process may be PID 1), unlike a PID check, which
    /// remains only for filesystems where locks do not work.
    pub(super) fn is_dead(&self, path: &Path, temp: &TempName, meta: &fs::Metadata) -> bool {
        // A lock file for the moment of the probe: a fork meanwhile must not leave a child
        // holding the writer's lock (the writer waits for it, see `reserve`).
        let open = || crate::localfs::open(path, crate::localfs::How::Read, self.inner.sharing);
        if let Ok(file) = LockFile::open(LockKind::Temp, open) {
            match file.try_lock(Mode::Exclusive) {
                Ok(true) => return true,
                Ok(false) => return false,
                Err(_) => {}
            }
        }
        if temp.pid == std::process::id() {
            return temp.nonce != self.inner.nonce;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        old || !process_alive(temp.pid)
    }
}
