//! Temp files of writes in progress: their names, and the signs that their writer is gone
//! (its process, the file's links); the lock probe is `Store::is_dead`.

use std::fs;
use std::io;
use std::time::{Duration, SystemTime};

/// Prefix of in-progress writes; never a valid entry name (entry names are 64 hex chars).
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// A temp file this old belongs to a dead writer whatever its pid says (pids are reused).
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The parts of a temp file's name.
pub(super) struct TempName {
    pub(super) pid: u32,
    pub(super) nonce: u32,
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
pub(super) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
pub(super) fn process_alive(_pid: u32) -> bool {
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
