//! The origin tier: blob storage through an OpenDAL `Operator` (S3 or a local directory).
//! `contract.rs` states what any origin does ([`Origin`]) in the terms of `object.rs` and
//! `limit.rs`; `blob.rs` is the OpenDAL origin, `calls.rs` its calls, `list.rs` its
//! listings, `fs.rs` the fs root's checks; `build.rs` builds it from a configuration.

mod blob;
mod build;
mod calls;
mod contract;
mod fs;
mod limit;
mod list;
mod object;

pub use blob::BlobTier;
#[cfg(feature = "test-hooks")]
pub use build::build_origin_with_read_faults;
pub use build::{build_operator, build_origin};
pub use contract::Origin;
pub use limit::Limit;
pub use object::{LIST_PAGE, ListPage, ObjectInfo, PutCondition, PutOutcome, Version};
