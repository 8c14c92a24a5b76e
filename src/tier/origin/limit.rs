//! [`Limit`]: the most bytes a read of one object may hold, and the setting that says so.

use crate::error::{Error, Result};

/// The most bytes a read of one object may hold, and the setting that says so (named in
/// the [`Error::ObjectTooLarge`] that refuses a larger object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// The setting or rule, e.g. `max_object_size`.
    pub what: &'static str,
}

impl Limit {
    /// A limit of `bytes` named `what`.
    pub const fn new(bytes: u64, what: &'static str) -> Self {
        Limit { bytes, what }
    }

    /// [`crate::OriginConfig::max_object_size`].
    pub const fn object(bytes: u64) -> Self {
        Limit::new(bytes, "max_object_size")
    }

    /// The error refusing `key` of `size` bytes.
    pub fn refuse(&self, key: &str, size: u64) -> Error {
        Error::ObjectTooLarge {
            key: key.to_owned(),
            size,
            limit: self.bytes,
            what: self.what,
        }
    }

    /// `Ok` when `size` (a listed or stat'ed size) is within the limit.
    ///
    /// # Errors
    /// [`Error::ObjectTooLarge`] naming `key`, `size` and this limit.
    pub fn check(&self, key: &str, size: u64) -> Result<()> {
        if size > self.bytes {
            return Err(self.refuse(key, size));
        }
        Ok(())
    }
}
