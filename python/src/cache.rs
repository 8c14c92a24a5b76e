//! `framecache.FrameCache`: the timeline API with keyword configuration, blocking methods
//! that release the interpreter, and `_async` twins for asyncio (its methods are in
//! `methods.rs`).
//!
//! Fork safety: the core cache (tiers, connections, runtime tasks) is built per process, in
//! the core's lock-free [`framecache::PerProcess`] slot. A call from a forked child builds
//! fresh handles from the same configuration and leaves the parent's alone: their threads
//! and connections do not exist in the child.

use crate::config::Overrides;
use crate::errors::to_py;
use crate::runtime;
use framecache::{CacheConfig, PerProcess};
use pyo3::prelude::*;
use std::sync::Arc;

/// A tiered read-through cache of timelines' frames and overlays: memory, then a disk
/// cache shared by the machine's processes, then blob storage (S3 or a local directory).
///
/// Every keyword defaults to the environment, as the ``framecache`` command reads it
/// (``FRAMECACHE_BACKEND``, ``FRAMECACHE_ROOT``, ``S3_BUCKET``, ``AWS_ENDPOINT_URL``,
/// ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
/// ``FRAMECACHE_CACHE_DIR``, ``FRAMECACHE_MEMORY_CAPACITY``, ``FRAMECACHE_DISK_CAPACITY``,
/// ``FRAMECACHE_DECODED_MEMORY_CAPACITY``, ``FRAMECACHE_DECODED_DISK_CAPACITY``,
/// ``FRAMECACHE_LOCK_WAIT``: seconds a process waits for a disk-cache lock another one
/// holds before it goes on alone, default 60; ``FRAMECACHE_REVALIDATE_AFTER``: seconds
/// a process may reuse the listing pages it confirmed for reads of selections, default 0,
/// every read revalidates). Decoded
/// frames are kept too: in this process's memory, and as raw frames under the disk cache
/// that the machine's processes share (decoded once per machine); 0 turns either off.
/// Methods release the GIL while they work; each has an ``_async`` twin returning an
/// awaitable. Safe to share between threads and to use again after ``os.fork()``.
#[pyclass(module = "framecache", name = "FrameCache", frozen)]
pub struct PyFrameCache {
    config: CacheConfig,
    handles: PerProcess<framecache::FrameCache>,
}

impl PyFrameCache {
    /// A cache configured by keywords over the environment, built now, so that a
    /// configuration that cannot work fails here.
    pub fn configured(overrides: Overrides) -> PyResult<Self> {
        let cache = PyFrameCache {
            config: overrides.apply()?,
            handles: PerProcess::new(),
        };
        cache.core()?;
        Ok(cache)
    }

    /// The configuration the cache was built from.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The process the core cache was built in, if it has been built.
    pub fn pid(&self) -> Option<u32> {
        self.handles.built_in()
    }

    /// The core cache of the calling process, built on first use and after a fork.
    pub fn core(&self) -> PyResult<framecache::FrameCache> {
        let cache = self.handles.get_or_try_init(|| {
            let runtime = runtime::handle()?;
            let _inside = runtime.enter();
            build(&self.config).map_err(to_py)
        })?;
        Ok(cache.clone())
    }
}

/// The core cache `config` describes, as `framecache::FrameCache::new` builds it. Built once
/// per process: its S3 origin gets an HTTP client of its own (see `framecache::build_origin`),
/// so a forked child never uses connections pooled by its parent's runtime.
fn build(config: &CacheConfig) -> framecache::Result<framecache::FrameCache> {
    config.prepare_cache_dir()?;
    let metrics = Arc::new(framecache::Metrics::default());
    let origin = Arc::new(framecache::build_origin(config, &metrics)?);
    let chain = config.build_with_origin(origin, metrics);
    Ok(
        framecache::FrameCache::from_chain(chain, config.concurrency)
            .with_decoded_tiers(config)
            .with_revalidate_after(config.revalidate_after),
    )
}
