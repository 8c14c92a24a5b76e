//! Shared test harness: every backend test runs against the filesystem backend and against
//! the Garage S3 server that `scripts/test.sh` starts.
#![allow(dead_code)]

pub mod child;

use bytes::Bytes;
use framecache::tier::{BlobTier, Limit, ObjectInfo, Origin, PutCondition, PutOutcome, Version};
use framecache::{Backend, CacheConfig, DiskConfig, Metrics, Result, S3Config, TieredCache};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tokio::sync::Semaphore;

/// One backend under test, with scratch space for disk caches.
pub struct Env {
    pub name: &'static str,
    pub backend: Backend,
    pub scratch: tempfile::TempDir,
}

impl Env {
    pub fn fs() -> Env {
        let scratch = tempfile::tempdir().unwrap();
        let backend = Backend::Fs {
            root: scratch.path().join("origin"),
        };
        Env {
            name: "fs",
            backend,
            scratch,
        }
    }

    /// The Garage server from the environment. S3 tests are compiled as ignored unless the
    /// build saw `FRAMECACHE_TEST_S3` or `CI` (see `build.rs`), so a plain `cargo test`
    /// reports them as ignored, never as passed; once they run, a missing server fails them.
    pub fn s3() -> Env {
        assert!(
            std::env::var_os("FRAMECACHE_TEST_S3").is_some(),
            "no S3 server is configured: run scripts/test.sh (it starts Garage and sets \
             AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, FRAMECACHE_TEST_S3)"
        );
        Env {
            name: "s3",
            backend: Backend::S3(S3Config::from_env()),
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// The variables a child process needs to rebuild this backend with [`Env::in_child`].
    pub fn child_vars(&self) -> Vec<(&'static str, String)> {
        match &self.backend {
            Backend::Fs { root } => vec![("FC_ROOT", root.display().to_string())],
            _ => vec![("FRAMECACHE_TEST_S3", "1".to_owned())],
        }
    }

    /// The backend a parent described with [`Env::child_vars`], in a child process.
    pub fn in_child() -> Env {
        match std::env::var_os("FC_ROOT") {
            Some(root) => Env {
                name: "fs",
                backend: Backend::Fs { root: root.into() },
                scratch: tempfile::tempdir().unwrap(),
            },
            None => Env::s3(),
        }
    }

    /// A fresh disk-cache directory.
    pub fn disk_dir(&self, name: &str) -> PathBuf {
        self.scratch.path().join(format!("disk-{name}"))
    }

    /// A config for this backend with its disk tier in `disk_dir`.
    pub fn config(&self, disk_dir: &std::path::Path) -> CacheConfig {
        CacheConfig {
            origin: framecache::OriginConfig {
                backend: self.backend.clone(),
                ..Default::default()
            },
            memory: framecache::MemoryConfig { capacity: 64 << 20 },
            disk: Some(DiskConfig {
                dir: disk_dir.to_path_buf(),
                capacity: 1 << 30,
                ..Default::default()
            }),
            ..CacheConfig::default()
        }
    }

    /// The raw origin of this backend.
    pub fn origin(&self, metrics: &Arc<Metrics>) -> Arc<dyn Origin> {
        let config = self.config(&self.disk_dir("unused"));
        let (op, description) = framecache::build_operator(&config, metrics).unwrap();
        Arc::new(BlobTier::new(op, description, metrics.clone()))
    }

    /// A cache whose origin reads are counted (and optionally held at a gate).
    pub fn instrumented(&self, disk_dir: &std::path::Path) -> (TieredCache, Arc<Instrumented>) {
        let metrics = Arc::new(Metrics::default());
        let probe = Arc::new(Instrumented::new(self.origin(&metrics)));
        let cache = self
            .config(disk_dir)
            .build_with_origin(probe.clone(), metrics);
        (cache, probe)
    }
}

/// A small JPEG of frame `seq` in colour `variant`: writers with different variants store
/// different bytes for the same frame.
pub fn jpeg_variant(seq: u64, variant: u8) -> Bytes {
    let mut image = framecache::synthetic_frame(seq, 64, 48)
        .image
        .into_rgb_image();
    image.pixels_mut().for_each(|p| p.0[2] = variant);
    Bytes::from(framecache::codec::encode_jpeg(&image.into(), 85).unwrap())
}

/// A unique key prefix per test run, so tests sharing a bucket never collide.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// An origin wrapper that counts reads and can hold them at a gate until released.
pub struct Instrumented {
    inner: Arc<dyn Origin>,
    pub reads: AtomicUsize,
    pub waiting: AtomicUsize,
    gate: Semaphore,
    gated: std::sync::atomic::AtomicBool,
    /// Hold reads after they have read, so they return bytes older than a later write.
    gated_after_read: std::sync::atomic::AtomicBool,
    /// The next read panics, as a bug in a backend would.
    pub panic_next: std::sync::atomic::AtomicBool,
    /// A key, the number of its reads and writes left before one is held, and the gate
    /// directory (see [`Instrumented::hold_access`]).
    held_key: std::sync::Mutex<Option<(String, usize, PathBuf)>>,
    /// A key whose writes fail, as an origin refusing them would.
    failing_put: std::sync::Mutex<Option<String>>,
    /// A key another writer rewrites (with bytes of a new length each time) before every
    /// listing, and how many times it has.
    rewritten_before_list: std::sync::Mutex<Option<String>>,
    pub rewrites: AtomicUsize,
    /// Listings, listing pages and stats that reached the origin.
    pub lists: AtomicUsize,
    pub pages: AtomicUsize,
    pub stats: AtomicUsize,
    /// Writes (conditional ones included) and removals that reached the origin.
    pub puts: AtomicUsize,
    pub removes: AtomicUsize,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Origin>) -> Self {
        Instrumented {
            inner,
            reads: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            gated: std::sync::atomic::AtomicBool::new(false),
            gated_after_read: std::sync::atomic::AtomicBool::new(false),
            panic_next: std::sync::atomic::AtomicBool::new(false),
            held_key: std::sync::Mutex::new(None),
            failing_put: std::sync::Mutex::new(None),
            rewritten_before_list: std::sync::Mutex::new(None),
            rewrites: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            pages: AtomicUsize::new(0),
            stats: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
            removes: AtomicUsize::new(0),
        }
    }

    /// Holds the `nth` access (read, write or listing, from 1) of `key` (or prefix) before it
    /// reaches the origin:
    /// it creates `{gate}/ready` and waits for `{gate}/go`, files another process (the test
    /// driving this one) can watch and create.
    pub fn hold_access(self, key: &str, nth: usize, gate: PathBuf) -> Self {
        *self.held_key.lock().unwrap() = Some((key.to_owned(), nth, gate));
        self
    }

    /// Every write of `key` fails with a storage error.
    pub fn fail_puts_of(self, key: &str) -> Self {
        *self.failing_put.lock().unwrap() = Some(key.to_owned());
        self
    }

    /// Before every listing, `key` is rewritten as another writer would, each time with a
    /// new length, so not even a filesystem clock tick can hide the change.
    pub fn rewrite_before_each_list(self, key: &str) -> Self {
        *self.rewritten_before_list.lock().unwrap() = Some(key.to_owned());
        self
    }

    /// Waits at the gate if this is the held access of `key`.
    async fn maybe_hold(&self, key: &str) {
        let gate = {
            let mut held = self.held_key.lock().unwrap();
            match held.as_mut() {
                Some((k, left, _)) if k.as_str() == key => {
                    *left -= 1;
                    if *left == 0 {
                        held.take().map(|(_, _, gate)| gate)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(gate) = gate {
            std::fs::write(gate.join("ready"), b"").unwrap();
            let go = gate.join("go");
            wait_until("the test to release the held access", || go.exists()).await;
        }
    }

    /// Holds every later read until [`Instrumented::open_gate`].
    pub fn close_gate(&self) {
        self.gated.store(true, SeqCst);
    }

    /// Holds every later read, once it has read, until [`Instrumented::open_gate`].
    pub fn close_gate_after_read(&self) {
        self.gated_after_read.store(true, SeqCst);
    }

    pub fn open_gate(&self) {
        self.gated.store(false, SeqCst);
        self.gated_after_read.store(false, SeqCst);
        self.gate.add_permits(1 << 20);
    }

    pub fn reads(&self) -> usize {
        self.reads.load(SeqCst)
    }

    /// Every request counted: reads, stats, whole listings and listing pages.
    pub fn requests(&self) -> usize {
        self.reads() + self.stats.load(SeqCst) + self.lists.load(SeqCst) + self.pages.load(SeqCst)
    }
}

impl Origin for Instrumented {
    fn get<'a>(&'a self, key: &'a str, limit: Limit) -> BoxFuture<'a, Result<Option<Bytes>>> {
        async move {
            self.reads.fetch_add(1, SeqCst);
            if self.panic_next.swap(false, SeqCst) {
                panic!("origin read of {key} panicked on purpose");
            }
            self.maybe_hold(key).await;
            if self.gated.load(SeqCst) {
                self.waiting.fetch_add(1, SeqCst);
                let _permit = self.gate.acquire().await.unwrap();
                self.waiting.fetch_sub(1, SeqCst);
            }
            let read = self.inner.get(key, limit).await;
            if self.gated_after_read.load(SeqCst) {
                self.waiting.fetch_add(1, SeqCst);
                let _permit = self.gate.acquire().await.unwrap();
                self.waiting.fetch_sub(1, SeqCst);
            }
            read
        }
        .boxed()
    }
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<Option<Version>>> {
        async move {
            self.maybe_hold(key).await;
            self.puts.fetch_add(1, SeqCst);
            if self.failing_put.lock().unwrap().as_deref() == Some(key) {
                return Err(framecache::Error::Storage {
                    op: "write",
                    key: key.to_owned(),
                    source: Box::new(opendal::Error::new(
                        opendal::ErrorKind::Unexpected,
                        "write refused on purpose",
                    )),
                });
            }
            self.inner.put(key, value).await
        }
        .boxed()
    }
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>> {
        self.stats.fetch_add(1, SeqCst);
        self.inner.stat(key)
    }
    fn put_if<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        condition: PutCondition<'a>,
    ) -> BoxFuture<'a, Result<PutOutcome>> {
        async move {
            self.maybe_hold(key).await;
            let outcome = self.inner.put_if(key, value, condition).await;
            if !matches!(outcome, Ok(PutOutcome::Unsupported)) {
                self.puts.fetch_add(1, SeqCst);
            }
            outcome
        }
        .boxed()
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.removes.fetch_add(1, SeqCst);
        self.inner.remove(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>> {
        async move {
            self.lists.fetch_add(1, SeqCst);
            self.maybe_hold(prefix).await;
            let rewritten = self.rewritten_before_list.lock().unwrap().clone();
            if let Some(key) = rewritten {
                let n = self.rewrites.fetch_add(1, SeqCst);
                self.inner
                    .put(&key, Bytes::from(vec![7u8; 1000 + n]))
                    .await?;
            }
            self.inner.list(prefix).await
        }
        .boxed()
    }
    fn list_page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<framecache::tier::ListPage>> {
        async move {
            self.pages.fetch_add(1, SeqCst);
            self.maybe_hold(prefix).await;
            self.inner.list_page(prefix, after, limit).await
        }
        .boxed()
    }
    fn list_dirs<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        self.lists.fetch_add(1, SeqCst);
        self.inner.list_dirs(prefix, after, limit)
    }
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.exists(key)
    }
    fn has_any<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner.has_any(prefix)
    }
    fn remove_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>> {
        self.inner.remove_prefix(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Generates `mod on_fs { .. }` and `mod on_s3 { .. }` with one test per backend for each named
/// `async fn name(env: &Env)` in the calling file.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod on_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::common::Env::fs()).await
                }
            )*
        }
        mod on_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(framecache_test_s3), ignore = "needs the Garage server: run scripts/test.sh")]
                async fn $name() {
                    super::$name(&super::common::Env::s3()).await
                }
            )*
        }
    };
}

/// What a [`Proxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards to the server.
    Up = 0,
    /// Closes every connection at once, as a server that is down.
    Refuse = 1,
    /// Accepts connections and never answers, as a server that hangs.
    BlackHole = 2,
}

/// A TCP proxy in front of the S3 server, to take the origin down and bring it back.
/// Changing the mode also cuts the connections already open.
pub struct Proxy {
    pub endpoint: String,
    mode: Arc<std::sync::atomic::AtomicU8>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// Starts forwarding to `upstream` (`http://host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> Proxy {
        let target = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(ProxyMode::Up as u8));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (accept_mode, accept_cut) = (mode.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = accept_cut.subscribe();
                let mode = accept_mode.load(SeqCst);
                let target = target.clone();
                tokio::spawn(async move {
                    if mode == ProxyMode::Refuse as u8 {
                        return;
                    }
                    if mode == ProxyMode::BlackHole as u8 {
                        let _ = cut.changed().await;
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            endpoint,
            mode,
            cut,
        }
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }
}

/// Waits until `done()` holds, yielding to other tasks; fails naming `what` if it has not
/// after a bound far beyond any healthy run (the bound only turns a hang into a failure).
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// An origin that can be switched off: every call fails as a refused connection would.
pub struct Switch {
    pub inner: Arc<dyn framecache::tier::Origin>,
    pub down: std::sync::atomic::AtomicBool,
}

impl Switch {
    fn check(&self, key: &str) -> framecache::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(framecache::Error::Storage {
                op: "read",
                key: key.to_owned(),
                source: Box::new(
                    opendal::Error::new(opendal::ErrorKind::Unexpected, "connection refused")
                        .set_temporary(),
                ),
            });
        }
        Ok(())
    }
}

impl framecache::tier::Origin for Switch {
    fn get<'a>(
        &'a self,
        key: &'a str,
        limit: Limit,
    ) -> futures::future::BoxFuture<'a, framecache::Result<Option<Bytes>>> {
        Box::pin(async move {
            self.check(key)?;
            self.inner.get(key, limit).await
        })
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
    ) -> futures::future::BoxFuture<'a, framecache::Result<Option<framecache::tier::Version>>> {
        Box::pin(async move {
            self.check(key)?;
            self.inner.put(key, value).await
        })
    }
    fn remove<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<()>> {
        Box::pin(async move {
            self.check(key)?;
            self.inner.remove(key).await
        })
    }
    fn stat<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<Option<framecache::tier::ObjectInfo>>>
    {
        Box::pin(async move {
            self.check(key)?;
            self.inner.stat(key).await
        })
    }
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<Vec<framecache::tier::ObjectInfo>>> {
        Box::pin(async move {
            self.check(prefix)?;
            self.inner.list(prefix).await
        })
    }
    fn list_page<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, framecache::Result<framecache::tier::ListPage>> {
        Box::pin(async move {
            self.check(prefix)?;
            self.inner.list_page(prefix, after, limit).await
        })
    }
    fn list_dirs<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, framecache::Result<Vec<String>>> {
        Box::pin(async move {
            self.check(prefix)?;
            self.inner.list_dirs(prefix, after, limit).await
        })
    }
    fn exists<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<bool>> {
        Box::pin(async move {
            self.check(key)?;
            self.inner.exists(key).await
        })
    }
    fn has_any<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<bool>> {
        Box::pin(async move {
            self.check(prefix)?;
            self.inner.has_any(prefix).await
        })
    }
    fn remove_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, framecache::Result<()>> {
        Box::pin(async move {
            self.check(prefix)?;
            self.inner.remove_prefix(prefix).await
        })
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A cache whose origin can be taken down: on S3 a proxy that refuses connections (the
/// real failure, through OpenDAL), on the filesystem a switch in front of the origin.
pub async fn cache_with_failing_origin(
    env: &Env,
    name: &str,
) -> (framecache::FrameCache, Box<dyn Fn(bool) + Send>) {
    let mut config = env.config(&env.disk_dir(name));
    config.origin.retries = 1;
    config.origin.retry_min_delay = std::time::Duration::from_millis(1);
    if let framecache::Backend::S3(s3) = &mut config.origin.backend {
        let proxy = Proxy::start(s3.endpoint.as_deref().unwrap()).await;
        s3.endpoint = Some(proxy.endpoint.clone());
        let fc = framecache::FrameCache::new(&config).unwrap();
        let set = move |down: bool| {
            proxy.set(if down {
                ProxyMode::Refuse
            } else {
                ProxyMode::Up
            })
        };
        return (fc, Box::new(set));
    }
    let metrics = Arc::new(Metrics::default());
    let switch = Arc::new(Switch {
        inner: env.origin(&metrics),
        down: Default::default(),
    });
    let chain = config.build_with_origin(switch.clone(), metrics);
    let fc = framecache::FrameCache::from_chain(chain, config.concurrency);
    let set = move |down: bool| switch.down.store(down, std::sync::atomic::Ordering::SeqCst);
    (fc, Box::new(set))
}
