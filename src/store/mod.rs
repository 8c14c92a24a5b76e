//! The store engine under both disk tiers: one checksummed entry file per key, shared by
//! every process on a machine. A tier is a format on it (`src/tier/disk.rs` for JPEGs,
//! `src/decoded/disk.rs` for raw frames): the engine reads, checks the length of, discards,
//! writes, locks, counts and evicts entries; the format says what an entry holds.
//!
//! Layout under `{dir}/v1/`:
//! - `{h[0..2]}/{h}`: the entry of the key whose hex blake3 is `h` (see
//!   [`crate::layout::disk_entry_path`]);
//! - `{h[0..2]}/.tmp-{pid}-{nonce}-{n}-{len}`: a write in progress, `len` bytes when done;
//! - `.usage`: the ledger, a page every process maps: bytes in use per shard directory,
//!   the eviction hand and the evictor's state;
//! - `.recent`: the referenced bits (CLOCK), a mapped bitmap set by hits and writes, sized
//!   by the capacity;
//! - `.lock`: `flock`ed shared to reserve, commit, remove or evict, exclusively to recount;
//!   opened once per process (see `lock.rs`);
//! - `.evictor`: `flock`ed (tried, never waited for) by the one evictor of the machine.
//!
//! A write goes to a temp file that is hard-linked into place (renamed where links are not
//! supported), so a reader sees the old entry, the new one or none, never a partial one.
//! Nothing is rewritten or truncated in place, which is what makes memory-mapping safe.
//! A writer reserves its bytes in the ledger before writing. The limit is the capacity less
//! the ledger and the bitmap (the tier's own files count in its capacity), or less when the
//! filesystem cannot spare it beside `min_free` (see `space.rs`). The evictor
//! (one process per machine, in the background) keeps usage between the low and the high
//! watermark of that limit, visiting one shard directory at a time with a CLOCK hand; a
//! writer whose reservation crosses the limit evicts one bounded batch itself, and a write
//! that still does not fit (the writes in progress alone fill the limit) is refused, so
//! entries and writes in progress never exceed it together; a write that finds the
//! filesystem full anyway is skipped and makes room. Nothing scans the whole directory on open,
//! read or write; see `docs/design.md` for the design and its trade-offs.

mod clock;
mod engine;
mod evict;
mod evictor;
mod format;
mod ledger;
mod lock;
mod locking;
mod rw;
mod share;
mod space;
mod temp;
#[cfg(test)]
mod tests;
mod verify;

pub use crate::metrics::{EvictionStatus, LimitedBy};
pub use engine::Store;
pub use evict::{DiskUsage, Recount};
pub(crate) use format::Format;
pub(crate) use lock::Stripes;
pub use locking::FetchLock;
pub use share::{DEFAULT_MIN_FREE_BYTES, DEFAULT_MIN_FREE_PERCENT, MinFree, auto_capacity};
pub use verify::{BadEntry, VerifyReport};
