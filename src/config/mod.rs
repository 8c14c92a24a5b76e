//! Settings as plain data, grouped by what they set (the origin, each tier), with working
//! defaults (`settings.rs`); nothing here builds a tier. `env.rs` is the one reader of the
//! environment; the command line and the Python package layer their flags and keywords over
//! what it reads. `parse.rs` reads the values settings take as text, `s3.rs` holds the S3
//! origin's settings, `profile.rs` the AWS config file's profiles, `dirs.rs` the default
//! directories. The chain builds itself from a [`CacheConfig`] (`src/chain/build.rs`), the
//! origin its operator (`src/tier/origin/build.rs`).

mod dirs;
mod env;
mod parse;
mod profile;
mod s3;
mod settings;
#[cfg(test)]
mod tests;

pub use dirs::{default_cache_dir, default_fs_root};
pub use parse::{parse_capacity, parse_flag, parse_pixels, parse_seconds, parse_size};
pub use s3::{Addressing, DEFAULT_BUCKET, DEFAULT_REGION, S3Config, abbreviate_key_id};
pub use settings::{
    AUTO_CAPACITY, AUTO_DECODED_MAX, AUTO_DECODED_PERCENT, AUTO_DISK_MAX, AUTO_DISK_PERCENT,
    Backend, CacheConfig, DEFAULT_MAX_OBJECT_SIZE, DecodedConfig, DiskConfig, MemoryConfig,
    OriginConfig,
};
