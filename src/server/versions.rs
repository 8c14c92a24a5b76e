//! Content versions: the first 128 bits of a payload's blake3, as ETag and `?v=` value.
//!
//! Hashing a 120 KB frame costs about 25 µs, a hundred times a memory-tier hit, so the
//! version of a memory-tier payload is remembered together with a handle on its buffer.
//! A remembered version is reused only for the very same buffer (same address and length,
//! and the memo's handle keeps that buffer alive, so the address cannot be reused by other
//! bytes meanwhile): the version always belongs to the bytes sent.

use crate::Source;
use bytes::Bytes;
use std::sync::Arc;

/// Hex characters of a version (128 bits of blake3).
pub(super) const VERSION_LEN: usize = 32;

/// The version of `bytes`.
pub(super) fn version_of(bytes: &[u8]) -> Arc<str> {
    Arc::from(&blake3::hash(bytes).to_hex()[..VERSION_LEN])
}

/// The version a manifest's hex blake3 gives, if it is one.
pub(super) fn version_from_blake3(hex: &str) -> Option<&str> {
    let v = hex.get(..VERSION_LEN)?;
    v.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        .then_some(v)
}

/// A remembered payload: its bytes (shared with the memory tier), its version, and on
/// Linux a sealed in-memory file holding the same bytes, for `sendfile`.
pub(super) struct Held {
    pub bytes: Bytes,
    pub version: Arc<str>,
    pub file: Option<Arc<SendFile>>,
}

/// Versions of recently served memory-tier payloads, bounded in the bytes it keeps alive.
pub(super) struct Versions {
    memo: Option<moka::sync::Cache<String, Arc<Held>>>,
    sendfile: bool,
}

impl Versions {
    pub fn new(capacity: u64, sendfile: bool) -> Self {
        let memo = (capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .weigher(|key: &String, held: &Arc<Held>| {
                    // The send file is a second copy of the bytes.
                    let copies = 1 + usize::from(held.file.is_some());
                    u32::try_from(key.len() + copies * held.bytes.len() + 64).unwrap_or(u32::MAX)
                })
                .build()
        });
        Versions { memo, sendfile }
    }

    /// `key` at `version`, when a memory-tier read of it is remembered: a URL that names
    /// its version can be answered from it without reading through the tiers or asking
    /// the origin, since the bytes are the version the URL names.
    pub fn held(&self, key: &str, version: &str) -> Option<Arc<Held>> {
        let held = self.memo.as_ref()?.get(key)?;
        (*held.version == *version).then_some(held)
    }

    /// The version of `bytes`, read under `key` from tier `source`.
    pub async fn of(&self, key: &str, bytes: &Bytes, source: Source) -> Arc<str> {
        let Some(memo) = &self.memo else {
            return version_of(bytes);
        };
        if let Some(held) = memo.get(key)
            && held.bytes.as_ptr() == bytes.as_ptr()
            && held.bytes.len() == bytes.len()
        {
            return held.version.clone();
        }
        let version = version_of(bytes);
        // Disk and origin reads hand out a fresh buffer each time (a memory map or a
        // download), which no later read shares: remembering those would only pin them.
        if source == Source::Memory {
            let held = Held {
                bytes: bytes.clone(),
                version: version.clone(),
                file: self
                    .sendfile
                    .then(|| SendFile::of(bytes))
                    .flatten()
                    .map(Arc::new),
            };
            memo.insert(key.to_owned(), Arc::new(held));
        }
        version
    }
}

/// Payloads smaller than this are copied into the socket: `sendfile` pays off for large
/// bodies only.
const SEND_FILE_MIN: usize = 16 << 10;

/// A copy of a payload in an anonymous, sealed in-memory file (Linux `memfd`), which the
/// connection hands to the socket with `sendfile`: the kernel then sends its pages
/// without copying them from user memory first. Written once and sealed against writes,
/// so pages still referenced by a socket never change.
pub(super) struct SendFile {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl SendFile {
    #[cfg(target_os = "linux")]
    fn of(bytes: &[u8]) -> Option<SendFile> {
        use std::io::Write;
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        if bytes.len() < SEND_FILE_MIN {
            return None;
        }
        // SAFETY: the name is a NUL-terminated literal; the flags are plain integers.
        let raw = unsafe {
            libc::memfd_create(
                c"framecache-send".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a descriptor memfd_create just returned, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).ok()?;
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor this function owns, with integer arguments.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return None;
        }
        Some(SendFile { fd: file.into() })
    }

    #[cfg(not(target_os = "linux"))]
    fn of(_bytes: &[u8]) -> Option<SendFile> {
        None
    }

    /// The descriptor to `sendfile` from.
    #[cfg(target_os = "linux")]
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn held_payloads_answer_only_their_own_version() {
        let versions = Versions::new(1 << 20, true);
        let big = Bytes::from(vec![3u8; SEND_FILE_MIN + 1]);
        let v = versions.of("k", &big, Source::Memory).await;
        let held = versions.held("k", &v).unwrap();
        assert_eq!(held.bytes, big);
        assert_eq!(held.file.is_some(), cfg!(target_os = "linux"));
        assert!(versions.held("k", &"0".repeat(VERSION_LEN)).is_none());
        assert!(versions.held("other", &v).is_none());
        // Read from disk: not remembered.
        let disk = Bytes::from(vec![4u8; 10]);
        let vd = versions.of("d", &disk, Source::Disk).await;
        assert!(versions.held("d", &vd).is_none());
    }

    #[tokio::test]
    async fn a_version_is_reused_only_for_the_same_buffer() {
        let versions = Versions::new(1 << 20, true);
        let a = Bytes::from(vec![1u8; 1000]);
        let va = versions.of("k", &a, Source::Memory).await;
        assert_eq!(va, version_of(&a));
        assert_eq!(versions.of("k", &a.clone(), Source::Memory).await, va);
        // Same key, other bytes of the same length: hashed again, not taken from the memo.
        let b = Bytes::from(vec![2u8; 1000]);
        let vb = versions.of("k", &b, Source::Memory).await;
        assert_eq!(vb, version_of(&b));
        assert_ne!(va, vb);
    }

    #[test]
    fn manifest_hashes_give_versions() {
        let hex = blake3::hash(b"x").to_hex().to_string();
        assert_eq!(version_from_blake3(&hex), Some(&hex[..VERSION_LEN]));
        assert_eq!(version_from_blake3(""), None);
        assert_eq!(version_from_blake3(&"Z".repeat(64)), None);
    }
}
