//! `framecache serve`'s connection layer over real sockets on loopback: clients trickling
//! partial requests, one address opening every connection, a foreign `Host` (DNS
//! rebinding), server errors that must not leak local paths or the origin's error text,
//! wrong `?v=` values that must not reach the origin, and held frames sent whole through
//! the hot path (`sendfile`) to clients that read slowly.
#![cfg(feature = "server")]

mod common;

use bytes::Bytes;
use common::{Env, unique};
use framecache::WriteOptions;
use framecache::server::{ServeOptions, Server};
use framecache::tier::{Limit, ObjectInfo, Origin, Version};
use framecache::{Error, FrameCache, Metrics, Result, synthetic_frame};
use futures::future::BoxFuture;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Far beyond any healthy run: only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// A server on a free loopback port until dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Raises this process's open-file limit to its hard limit: the trickling tests hold
/// over 2,200 sockets (both ends in this process), above the usual soft limit of 1,024.
fn raise_fd_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max.min(1 << 16);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

impl Running {
    async fn start(cache: FrameCache, opts: ServeOptions) -> Running {
        raise_fd_limit();
        let opts = ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..opts
        };
        let server = Server::bind(cache, &opts).await.unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
        }
    }
}

/// A connection to `to` from the loopback address `from` (all of 127.0.0.0/8 is local).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A whole response: status, head and body (the connection closes after it).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends `request` (with `Connection: close` added) from 127.0.0.1 and reads the answer
/// to the end, within the hang guard.
async fn send(addr: SocketAddr, request: &str) -> Answer {
    let exchange = async {
        let mut stream = connect_from(Ipv4Addr::LOCALHOST, addr).await;
        let request = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {raw:?}"));
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    };
    tokio::time::timeout(HANG_GUARD, exchange)
        .await
        .expect("no answer within the hang guard")
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
    .await
}

/// Clients that each open a connection, send the start of a request and then one byte
/// now and then, never finishing it, until the server closes the connection or `stop`.
struct Tricklers {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Tricklers {
    /// `n` clients spread over the addresses `from` (round robin).
    async fn start(to: SocketAddr, from: &[Ipv4Addr], n: usize) -> Tricklers {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            // Connected here, one after the other, so every one of them is in the server's
            // accept queue or accepted before the test goes on.
            let mut stream = connect_from(from[i % from.len()], to).await;
            connected.fetch_add(1, SeqCst);
            let (stop, closed) = (stop.clone(), closed.clone());
            tasks.push(tokio::spawn(async move {
                if stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
                    .await
                    .is_err()
                {
                    closed.fetch_add(1, SeqCst);
                    return;
                }
                let mut buf = [0u8; 64];
                while !stop.load(SeqCst) {
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            // The server answered or closed: either way it let go.
                            if matches!(read, Ok(0) | Err(_)) {
                                closed.fetch_add(1, SeqCst);
                                return;
                            }
                        }
                        () = tokio::time::sleep(Duration::from_millis(50)) => {
                            if stream.write_all(b"a").await.is_err() {
                                closed.fetch_add(1, SeqCst);
                                return;
                            }
                        }
                    }
                }
            }));
        }
        Tricklers {
            stop,
            connected,
            closed,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.store(true, SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn cache(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(name))).unwrap()
}

fn addresses(first: u8, count: u8) -> Vec<Ipv4Addr> {
    (first..first + count)
        .map(|i| Ipv4Addr::new(127, 0, 0, i))
        .collect()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// 1,100 clients from eleven addresses (each within the per-client cap) trickle partial
/// request heads: more than the connection cap. The header-read timeout frees their slots
/// whatever they send, so a health check from another client is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_clients_do_not_starve_a_health_check() {
    let env = Env::fs();
    let server = Running::start(
        cache(&env, "trickle"),
        ServeOptions {
            max_connections: 1024,
            max_connections_per_client: 128,
            header_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        },
    )
    .await;
    let tricklers = Tricklers::start(server.addr, &addresses(2, 11), 1100).await;
    assert_eq!(tricklers.connected.load(SeqCst), 1100);
    let health = get(server.addr, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body, r#"{"status":"ok"}"#);
    // Every one of them is let go by the server, not by the test.
    let closed = tricklers.closed.clone();
    tokio::time::timeout(HANG_GUARD, async {
        while closed.load(SeqCst) < 1100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} closed", closed.load(SeqCst)));
    tricklers.stop().await;
    let metrics = get(server.addr, "/metrics").await.body;
    assert_eq!(
        metric(&metrics, "framecache_http_connections_timed_out_total"),
        1100
    );
}

/// 1,100 connections from one address: past its share they are closed at once, so the
/// other clients still get connections, with no timeout involved (the header-read timeout
/// is far beyond the hang guard here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_every_connection() {
    let env = Env::fs();
    let server = Running::start(
        cache(&env, "per-client"),
        ServeOptions {
            max_connections: 1024,
            max_connections_per_client: 100,
            header_timeout: Duration::from_secs(3600),
            request_deadline: Duration::from_secs(3600),
            ..ServeOptions::default()
        },
    )
    .await;
    let tricklers = Tricklers::start(server.addr, &addresses(2, 1), 1100).await;
    let health = get(server.addr, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let metrics = get(server.addr, "/metrics").await.body;
    tricklers.stop().await;
    assert!(metric(&metrics, "framecache_http_connections_refused_total") >= 1000);
    // The address's 100, the /metrics request itself, the health check's connection if the
    // server has not yet seen it close, and the slot the accept loop holds while it waits.
    assert!(metric(&metrics, "framecache_http_connections") <= 103);
}

/// A request trickled a byte at a time is closed at its deadline, counted from its first
/// byte, though every byte resets the idle timer and the header timeout is far away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickled_request_ends_at_its_deadline() {
    let env = Env::fs();
    let server = Running::start(
        cache(&env, "deadline"),
        ServeOptions {
            header_timeout: Duration::from_secs(3600),
            request_deadline: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(3600),
            ..ServeOptions::default()
        },
    )
    .await;
    // A head trickled forever, and a body trickled after a complete head.
    let heads = Tricklers::start(server.addr, &addresses(2, 1), 1).await;
    let mut body = connect_from(Ipv4Addr::new(127, 0, 0, 3), server.addr).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000000\r\n\r\n",
        server.addr
    );
    body.write_all(head.as_bytes()).await.unwrap();
    let body_closed = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = body.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return seen,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if body.write_all(b"x").await.is_err() {
                        return seen;
                    }
                }
            }
        }
    };
    let seen = tokio::time::timeout(HANG_GUARD, body_closed)
        .await
        .expect("a trickled body kept its connection past the hang guard");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let closed = heads.closed.clone();
    tokio::time::timeout(HANG_GUARD, async {
        while closed.load(SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a trickled head kept its connection past the hang guard");
    heads.stop().await;
}

/// Without a token only loopback names are answered, so a page whose name was re-pointed
/// at 127.0.0.1 reads nothing; with a token, any name unless names are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_host_is_refused_without_a_token() {
    let env = Env::fs();
    let fc = cache(&env, "host");
    let tl = unique("srv-host");
    fc.cache_frames(&tl, &[synthetic_frame(0, 64, 48)], WriteOptions::default())
        .await
        .unwrap();
    let server = Running::start(fc.clone(), ServeOptions::default()).await;
    let port = server.addr.port();
    for host in ["attacker.example", &format!("attacker.example:{port}")] {
        for path in ["/v1/timelines", "/healthz", "/"] {
            let answer = send(
                server.addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            )
            .await;
            assert_eq!(answer.status, 421, "{host} {path}: {}", answer.body);
            assert!(!answer.body.contains(&tl), "{}", answer.body);
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_owned(),
    ] {
        let answer = send(
            server.addr,
            &format!("GET /v1/timelines HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        )
        .await;
        assert_eq!(answer.status, 200, "{host}");
        assert!(answer.body.contains(&tl));
    }

    let token = "tok-3c9e1a77b2d4f6";
    let guarded = Running::start(
        fc.clone(),
        ServeOptions {
            token: Some(token.into()),
            ..ServeOptions::default()
        },
    )
    .await;
    let with_token = format!(
        "GET /v1/timelines HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    assert_eq!(send(guarded.addr, &with_token).await.status, 200);
    let listed = Running::start(
        fc,
        ServeOptions {
            token: Some(token.into()),
            allowed_hosts: vec!["frames.internal".into()],
            ..ServeOptions::default()
        },
    )
    .await;
    assert_eq!(send(listed.addr, &with_token).await.status, 421);
    let named = with_token.replace("attacker.example", "Frames.Internal:8080");
    assert_eq!(send(listed.addr, &named).await.status, 200);
}

/// An origin whose object reads fail in a way that names a local path (`Io`) or with the
/// origin's own error text (`Storage`); listings and stats work.
struct Broken {
    inner: Arc<dyn Origin>,
    local_failure: AtomicBool,
}

const SECRET_PATH: &str = "/srv/private/framecache/secret-dir/entry";
const ORIGIN_TEXT: &str = "upstream 10.1.2.3:9000 said AccessDenied";

impl Origin for Broken {
    fn get<'a>(&'a self, key: &'a str, _limit: Limit) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            if self.local_failure.load(SeqCst) {
                return Err(Error::Io {
                    op: "read",
                    path: SECRET_PATH.into(),
                    source: std::io::Error::other("disk on fire"),
                });
            }
            Err(Error::Storage {
                op: "read",
                key: key.to_owned(),
                source: Box::new(opendal::Error::new(
                    opendal::ErrorKind::PermissionDenied,
                    ORIGIN_TEXT,
                )),
            })
        })
    }
    fn put<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<Option<Version>>> {
        self.inner.put(key, value)
    }
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.inner.remove(key)
    }
    fn stat<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectInfo>>> {
        self.inner.stat(key)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectInfo>>> {
        self.inner.list(prefix)
    }
    fn list_dirs<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
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

/// `5xx` answers say what kind of failure it was and give a request id; neither the local
/// path nor the origin's error text reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_errors_carry_a_request_id_and_no_detail() {
    let env = Env::fs();
    let tl = unique("srv-5xx");
    cache(&env, "5xx-writer")
        .cache_frames(&tl, &[synthetic_frame(0, 64, 48)], WriteOptions::default())
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let broken = Arc::new(Broken {
        inner: env.origin(&metrics),
        local_failure: AtomicBool::new(true),
    });
    let config = env.config(&env.disk_dir("5xx"));
    let fc = FrameCache::from_chain(config.build_with_origin(broken.clone(), metrics), 4);
    let server = Running::start(fc, ServeOptions::default()).await;
    let frame = format!("/v1/timelines/{tl}/frames/0.jpg");

    let mut ids = Vec::new();
    for (status, local) in [(500, true), (503, false)] {
        broken.local_failure.store(local, SeqCst);
        let answer = get(server.addr, &frame).await;
        assert_eq!(answer.status, status, "{}", answer.body);
        for leak in [
            SECRET_PATH,
            "secret-dir",
            "disk on fire",
            ORIGIN_TEXT,
            "10.1.2.3",
        ] {
            assert!(!answer.body.contains(leak), "{leak} in {}", answer.body);
            assert!(!answer.head.contains(leak), "{leak} in {}", answer.head);
        }
        let body = answer.json();
        assert_eq!(body["error"]["status"], status);
        let id = body["error"]["request_id"].as_str().unwrap().to_owned();
        assert_eq!(answer.header("x-request-id"), Some(id.as_str()));
        assert_eq!(id.len(), 16, "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each failed request has its own id");
}

/// A `?v=` the frame does not have (stale, or made up) is redirected to the current
/// version's URL without reading the origin: counted at the origin, zero reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_version_reads_nothing_from_the_origin() {
    let env = Env::fs();
    let tl = unique("srv-wrong-v");
    let (chain, origin) = env.instrumented(&env.disk_dir("wrong-v"));
    let fc = FrameCache::from_chain(chain, 4);
    fc.cache_frames(&tl, &[synthetic_frame(0, 64, 48)], WriteOptions::default())
        .await
        .unwrap();
    let (jpeg, _) = fc.frame_jpeg(&tl, 0).await.unwrap().unwrap();
    let current = blake3::hash(&jpeg).to_hex()[..32].to_owned();
    let server = Running::start(fc, ServeOptions::default()).await;
    let plain = format!("/v1/timelines/{tl}/frames/0.jpg");
    let before = origin.reads();
    for i in 0..20u32 {
        let wrong = format!("{:032x}", u128::from(i) * 0x9e37_79b9);
        let answer = get(server.addr, &format!("{plain}?v={wrong}")).await;
        assert_eq!(answer.status, 307, "{}", answer.head);
        assert_eq!(
            answer.header("location"),
            Some(format!("{plain}?v={current}").as_str())
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"));
    }
    assert_eq!(origin.reads(), before, "a wrong version read the origin");
    // The URL redirected to serves the bytes, for good.
    let answer = get(server.addr, &format!("{plain}?v={current}")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(origin.reads(), before);
}

/// Full-size frames held in memory go out through the hot path (`sendfile` on Linux): on one
/// keep-alive connection, frames in turn, each byte for byte the stored JPEG, also to a
/// client whose small receive buffer makes the server's writes partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_frames_are_sent_whole() {
    let env = Env::fs();
    let tl = unique("srv-send");
    let fc = cache(&env, "send");
    let frames: Vec<_> = (0..3).map(|s| synthetic_frame(s, 1280, 720)).collect();
    fc.cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    let mut jpegs = Vec::new();
    for seq in 0..3 {
        let (jpeg, _) = fc.frame_jpeg(&tl, seq).await.unwrap().unwrap();
        assert!(jpeg.len() > 64 << 10, "{}", jpeg.len());
        jpegs.push(jpeg);
    }
    let server = Running::start(fc, ServeOptions::default()).await;
    let url = |seq: usize| {
        let v = blake3::hash(&jpegs[seq]).to_hex()[..32].to_owned();
        format!("/v1/timelines/{tl}/frames/{seq}.jpg?v={v}")
    };
    let http = reqwest::Client::new();
    for round in 0..4 {
        for seq in [0, 2, 1, 1] {
            let response = http
                .get(format!("http://{}{}", server.addr, url(seq)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.bytes().await.unwrap(), jpegs[seq], "{round} {seq}");
        }
    }
    // A reader with a 4 KB receive buffer: the server's writes come out in pieces.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", url(2), server.addr);
    stream
        .write_all(request.repeat(2).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    let expected = 2 * jpegs[2].len();
    let read_all = async {
        while raw.len() < expected + 200 {
            match stream.read(&mut chunk).await.unwrap() {
                0 => break,
                n => raw.extend_from_slice(&chunk[..n]),
            }
            let bodies = split_responses(&raw);
            if bodies.len() == 2 {
                return bodies;
            }
        }
        split_responses(&raw)
    };
    let bodies = tokio::time::timeout(HANG_GUARD, read_all)
        .await
        .expect("the answers did not arrive within the hang guard");
    assert_eq!(bodies.len(), 2);
    for body in bodies {
        assert!(body == jpegs[2], "a body differs from the stored JPEG");
    }
    let metrics = get(server.addr, "/metrics").await.body;
    assert!(metric(&metrics, "framecache_tier_hits_total{tier=\"memory\"}") >= 16);
}

/// The bodies of the complete `200` answers at the start of `raw` (by `content-length`).
fn split_responses(mut raw: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a content-length");
        let body = &raw[end + 4..];
        if body.len() < len {
            break;
        }
        bodies.push(body[..len].to_vec());
        raw = &body[len..];
    }
    bodies
}
