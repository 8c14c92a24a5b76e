//! framecache: a tiered read-through cache (memory, disk, blob storage) for video-frame
//! JPEGs and debug-overlay PNGs, speaking the key layout of the Python frame cache.
//!
//! Data flow: `memory => disk => origin`; a hit fills the tiers above it, writes go to the
//! origin first.
#![warn(missing_docs)]

mod chain;
pub mod codec;
mod config;
mod credentials;
pub mod decoded;
pub mod entry;
mod error;
pub mod flock;
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
mod localfs;
mod metrics;
mod per_process;
mod pixels;
#[cfg(feature = "server")]
pub mod server;
mod size;
pub mod store;
mod synth;
pub mod tier;
mod timeline;

pub use chain::{Hit, TieredCache};
pub use codec::Scale;
pub use config::{
    AUTO_CAPACITY, AUTO_DECODED_MAX, AUTO_DECODED_PERCENT, AUTO_DISK_MAX, AUTO_DISK_PERCENT,
    Addressing, Backend, CacheConfig, DEFAULT_BUCKET, DEFAULT_MAX_OBJECT_SIZE, DEFAULT_REGION,
    DecodedConfig, DiskConfig, MemoryConfig, OriginConfig, S3Config, default_cache_dir,
    default_fs_root, parse_capacity, parse_flag, parse_pixels, parse_seconds, parse_size,
};
pub use decoded::{Access, flush_raw_writes};
pub use error::{Error, Result};
pub use localfs::Sharing;
pub use metrics::{Metrics, Stats, TierCounters, TierStats};
pub use per_process::PerProcess;
pub use pixels::{Backing, Pixels};
pub use synth::synthetic_frame;
#[cfg(feature = "test-hooks")]
pub use tier::build_origin_with_read_faults;
pub use tier::{
    BadEntry, DiskUsage, EvictionStatus, LimitedBy, MinFree, Recount, Source, VerifyReport,
    build_operator, build_origin,
};
pub use timeline::{
    CacheUsage, ClearScope, DEFAULT_B64_QUALITY, DEFAULT_QUALITY, DecodedUsage, EncodedFrame,
    Frame, FrameB64, FrameCache, FrameEntry, FrameJpeg, FrameMeta, FramePage, LoadOptions,
    MAX_SELECTION, OverlayPage, OverlayRef, PageStart, Seqs, THUMBNAIL_QUALITY, Thumbnail,
    TierUsage, TimelinePage, TimelineStatus, WriteMode, WriteOptions, frames_to_b64,
};
