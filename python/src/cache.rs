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
/// holds before it goes on alone, default 60). Decoded
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

/// The core cache `config` describes, as `framecache::FrameCache::new` builds it, except that
/// its origin gets an HTTP client of its own. OpenDAL's default is one client per process,
/// whose pooled connections a forked child inherits: they belong to the parent's runtime,
/// whose threads the child does not have, so a request on one waits until it times out.
fn build(config: &CacheConfig) -> framecache::Result<framecache::FrameCache> {
    config.prepare_cache_dir()?;
    let metrics = Arc::new(framecache::Metrics::default());
    let (op, description) = framecache::build_operator(config, &metrics)?;
    let client = opendal_http_transport_reqwest::ReqwestTransport::new(reqwest::Client::new());
    let op = op.with_context(
        opendal::OperationContext::new().with_http_transport(opendal::HttpTransporter::new(client)),
    );
    let origin = Arc::new(
        framecache::tier::BlobTier::new(op, description, metrics.clone())
            .with_sharing(config.sharing),
    );
    let chain = config.build_with_origin(origin, metrics);
    Ok(framecache::FrameCache::from_chain(chain, config.concurrency).with_decoded_tiers(config))
}
