//! Content versions: the first 128 bits of a payload's blake3, as ETag and `?v=` value.
//!
//! Hashing a 120 KB frame costs about 25 µs, a hundred times a memory-tier hit, so the
//! version of a memory-tier payload is remembered together with a handle on its buffer.
//! A remembered version is reused only for the very same buffer (same address and length,
//! and the memo's handle keeps that buffer alive, so the address cannot be reused by other
//! bytes meanwhile): the version always belongs to the bytes sent.

use crate::tier::Source;
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

/// Versions of recently served memory-tier payloads, bounded in the bytes it keeps alive.
pub(super) struct Versions {
    memo: Option<moka::future::Cache<String, (Bytes, Arc<str>)>>,
}

impl Versions {
    pub fn new(capacity: u64) -> Self {
        let memo = (capacity > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(|key: &String, (bytes, _): &(Bytes, Arc<str>)| {
                    u32::try_from(key.len() + bytes.len() + 64).unwrap_or(u32::MAX)
                })
                .build()
        });
        Versions { memo }
    }

    /// The bytes of `key` at `version`, when a memory-tier read of it is remembered: a URL
    /// that names its version can be answered from them without reading through the tiers
    /// or asking the origin, since the bytes are the version the URL names.
    pub async fn held(&self, key: &str, version: &str) -> Option<(Bytes, Arc<str>)> {
        let (bytes, held) = self.memo.as_ref()?.get(key).await?;
        (*held == *version).then_some((bytes, held))
    }

    /// The version of `bytes`, read under `key` from tier `source`.
    pub async fn of(&self, key: &str, bytes: &Bytes, source: Source) -> Arc<str> {
        let Some(memo) = &self.memo else {
            return version_of(bytes);
        };
        if let Some((held, version)) = memo.get(key).await
            && held.as_ptr() == bytes.as_ptr()
            && held.len() == bytes.len()
        {
            return version;
        }
        let version = version_of(bytes);
        // Disk and origin reads hand out a fresh buffer each time (a memory map or a
        // download), which no later read shares: remembering those would only pin them.
        if source == Source::Memory {
            memo.insert(key.to_owned(), (bytes.clone(), version.clone()))
                .await;
        }
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_version_is_reused_only_for_the_same_buffer() {
        let versions = Versions::new(1 << 20);
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
