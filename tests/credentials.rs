//! Signing in the way boto3 does, each credential source against a loopback stand-in: an
//! instance-metadata server (IMDSv2), an ECS credentials endpoint, profile files in a
//! temporary home, session tokens seen on the wire. Requests go to a fake S3 that records
//! them, or, when Garage is configured (`FRAMECACHE_TEST_S3`), through a recording proxy in
//! front of Garage, so the same credentials also make a real round trip.
//!
//! An HTTPS endpoint signed by a private CA is reached through a TLS-terminating proxy whose
//! CA the test makes (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`).
//!
//! Web identity is not tested end to end: reqsign sends `AssumeRoleWithWebIdentity` to
//! `https://sts[.region].amazonaws.com` and offers no endpoint override, so no loopback STS
//! can stand in for it.
//!
//! The tests change the process's environment (the credential providers read it when they
//! sign), so each holds [`Scene`]'s lock for its whole run.

use bytes::Bytes;
use framecache::tier::{Limit, Origin};
use framecache::{CacheConfig, Metrics};

/// Reads of the test's small objects need no bound.
const ANY: Limit = Limit::object(u64::MAX);
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------
// The environment, one test at a time.

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Every variable that changes how framecache or reqsign signs in.
const VARS: &[&str] = &[
    "FRAMECACHE_BACKEND",
    "FRAMECACHE_S3_ANONYMOUS",
    "FRAMECACHE_S3_ADDRESSING",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "HOME",
];

/// Garage, as `scripts/garage.sh` describes it.
#[derive(Clone)]
struct Garage {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
}

/// A clean environment (no credentials, a temporary home, instance metadata pointed at a
/// closed loopback port), restored when dropped.
struct Scene {
    saved: Vec<(&'static str, Option<OsString>)>,
    home: tempfile::TempDir,
    garage: Option<Garage>,
    _lock: MutexGuard<'static, ()>,
}

impl Scene {
    fn new() -> Scene {
        let lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let garage = var("FRAMECACHE_TEST_S3").map(|_| Garage {
            endpoint: var("AWS_ENDPOINT_URL").expect("Garage's AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            bucket: var("S3_BUCKET").unwrap_or_else(|| "mpr".into()),
            key_id: var("AWS_ACCESS_KEY_ID").expect("Garage's AWS_ACCESS_KEY_ID"),
            secret: var("AWS_SECRET_ACCESS_KEY").expect("Garage's AWS_SECRET_ACCESS_KEY"),
        });
        let saved = VARS.iter().map(|&v| (v, std::env::var_os(v))).collect();
        let home = tempfile::tempdir().unwrap();
        for v in VARS {
            // SAFETY: every test of this binary that touches the environment holds ENV_LOCK.
            unsafe { std::env::remove_var(v) };
        }
        let scene = Scene {
            saved,
            home,
            garage,
            _lock: lock,
        };
        scene.set("HOME", scene.home.path().to_str().unwrap());
        // Port 1 refuses at once: a real instance-metadata service is never asked.
        scene.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1");
        scene
    }

    fn set(&self, name: &str, value: &str) {
        // SAFETY: the caller holds ENV_LOCK (it owns this scene).
        unsafe { std::env::set_var(name, value) };
    }

    fn remove(&self, name: &str) {
        // SAFETY: as for `set`.
        unsafe { std::env::remove_var(name) };
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// An S3 server that records what it is sent: Garage behind a recording proxy, else a
    /// fake one. Points the environment at it (endpoint, region, bucket, S3 backend).
    async fn s3(&self) -> S3Target {
        let target = match &self.garage {
            Some(g) => {
                let upstream = g.endpoint.trim_start_matches("http://").to_owned();
                let (addr, wire) = tee_proxy(upstream).await;
                S3Target {
                    endpoint: format!("http://{addr}"),
                    region: g.region.clone(),
                    bucket: g.bucket.clone(),
                    key_id: g.key_id.clone(),
                    secret: g.secret.clone(),
                    wire: Wire::Raw(wire),
                    real: true,
                }
            }
            None => {
                let (addr, log) = serve(Arc::new(|req: &Request| fake_s3(req, false))).await;
                S3Target {
                    endpoint: format!("http://{addr}"),
                    region: "ap-southeast-2".into(),
                    bucket: "mpr".into(),
                    key_id: "AKIAFAKES3KEY0000001".into(),
                    secret: "fake-secret-key-for-the-fake-s3".into(),
                    wire: Wire::Parsed(log),
                    real: false,
                }
            }
        };
        self.set("FRAMECACHE_BACKEND", "s3");
        self.set("AWS_ENDPOINT_URL", &target.endpoint);
        self.set("AWS_REGION", &target.region);
        self.set("S3_BUCKET", &target.bucket);
        target
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            // SAFETY: the lock is still held (fields drop after this).
            unsafe {
                match value {
                    Some(v) => std::env::set_var(name, v),
                    None => std::env::remove_var(name),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loopback HTTP: a tiny HTTP/1.1 server and a recording TCP proxy.

#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;
type Log = Arc<Mutex<Vec<Request>>>;

/// Serves `handler` on a loopback port (keep-alive, bodies by Content-Length) and logs
/// every request.
async fn serve(handler: Handler) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let served = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, log) = (handler.clone(), served.clone());
            tokio::spawn(async move {
                let _ = connection(stream, handler, log).await;
            });
        }
    });
    (addr, log)
}

async fn connection(mut stream: TcpStream, handler: Handler, log: Log) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_owned();
        let target = first.next().unwrap_or("").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + len);
        let request = Request {
            method,
            target,
            headers,
        };
        let response = handler(&request);
        let head_only = request.method == "HEAD";
        log.lock().unwrap().push(request);
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\netag: \"fake-etag\"\r\n\
             last-modified: Sun, 06 Dec 2026 12:00:00 GMT\r\n\r\n",
            response.status,
            response.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&response.body);
        }
        stream.write_all(&out).await?;
    }
}

/// A fake S3: empty listings, accepted writes, every object missing (or, `deny`, every
/// request refused as AWS refuses a key without permission).
fn fake_s3(req: &Request, deny: bool) -> Response {
    if deny {
        return Response::new(
            403,
            "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
             <Message>Access Denied</Message></Error>",
        );
    }
    match req.method.as_str() {
        "PUT" => Response::new(200, ""),
        "GET" if req.target.contains("list-type=2") => Response::new(
            200,
            "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>\
             </ListBucketResult>",
        ),
        _ => Response::new(
            404,
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message></Error>",
        ),
    }
}

/// A TCP proxy to `upstream` that records every byte the client sends.
async fn tee_proxy(upstream: String) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let wire: Arc<Mutex<Vec<u8>>> = Arc::default();
    let recorded = wire.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let recorded = recorded.clone();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 65536];
                while let Ok(n) = client_read.read(&mut chunk).await {
                    if n == 0 || server_write.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    recorded.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
                let _ = server_write.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    (addr, wire)
}

/// What reached the S3 server, as text: `name: value` header lines (names lower case).
enum Wire {
    Parsed(Log),
    Raw(Arc<Mutex<Vec<u8>>>),
}

struct S3Target {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
    wire: Wire,
    /// Garage: objects written can be read back.
    real: bool,
}

impl S3Target {
    fn wire(&self) -> String {
        match &self.wire {
            Wire::Parsed(log) => {
                let mut text = String::new();
                for r in log.lock().unwrap().iter() {
                    text.push_str(&format!("{} {} HTTP/1.1\r\n", r.method, r.target));
                    for (n, v) in &r.headers {
                        text.push_str(&format!("{n}: {v}\r\n"));
                    }
                    text.push_str("\r\n");
                }
                text
            }
            Wire::Raw(bytes) => String::from_utf8_lossy(&bytes.lock().unwrap()).into_owned(),
        }
    }

    /// The `x-amz-security-token` of every request, in order.
    fn tokens(&self) -> Vec<String> {
        self.header_values("x-amz-security-token")
    }

    /// The `authorization` of every request, in order.
    fn authorizations(&self) -> Vec<String> {
        self.header_values("authorization")
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.wire()
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    fn requests(&self) -> usize {
        self.wire().matches(" HTTP/1.1\r\n").count()
    }
}

/// A TLS-terminating proxy on `localhost` in front of `upstream`, its certificate signed by
/// a CA made here; returns its port and the CA's PEM.
async fn tls_proxy(upstream: String) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "framecache test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (port, ca_cert.pem())
}

// ---------------------------------------------------------------------------------------
// Credential servers.

/// RFC 3339 UTC time `secs` from now, as IMDS and ECS write `Expiration`.
fn expiration_in(secs: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let (days, rem) = ((t / 86_400) as i64, t % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A loopback IMDSv2 that hands out `key_id`/`secret` with a new session token
/// (`imds-token-N`) lasting `ttl_secs` on every credential fetch, which it counts.
async fn imds(key_id: &str, secret: &str, ttl_secs: u64) -> (String, Log, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let (key_id, secret) = (key_id.to_owned(), secret.to_owned());
    let (addr, log) = serve(Arc::new(move |req: &Request| {
        let authorized = req.header("x-aws-ec2-metadata-token") == Some("session-of-imds");
        match (req.method.as_str(), req.target.as_str()) {
            ("PUT", "/latest/api/token") => {
                assert!(
                    req.header("x-aws-ec2-metadata-token-ttl-seconds").is_some(),
                    "IMDSv2 token request without a TTL"
                );
                Response::new(200, "session-of-imds")
            }
            (_, _) if !authorized => Response::new(401, ""),
            ("GET", "/latest/meta-data/iam/security-credentials/") => {
                Response::new(200, "gpu-box-role")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/gpu-box-role") => {
                let n = counted.fetch_add(1, SeqCst) + 1;
                Response::new(
                    200,
                    serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": expiration_in(0),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": key_id,
                        "SecretAccessKey": secret,
                        "Token": format!("imds-token-{n}"),
                        "Expiration": expiration_in(ttl_secs),
                    })
                    .to_string(),
                )
            }
            _ => Response::new(404, ""),
        }
    }))
    .await;
    (format!("http://{addr}"), log, fetches)
}

// ---------------------------------------------------------------------------------------
// Requests.

static KEYS: AtomicUsize = AtomicUsize::new(0);

fn key() -> String {
    format!(
        "credentials-test/{}-{}.bin",
        std::process::id(),
        KEYS.fetch_add(1, SeqCst)
    )
}

/// The origin of the configuration the environment describes.
fn origin_from_env() -> framecache::tier::BlobTier {
    let config = CacheConfig::from_env().unwrap();
    assert!(matches!(config.origin.backend, framecache::Backend::S3(_)));
    framecache::build_origin(&config, &Arc::new(Metrics::default())).unwrap()
}

/// A write and a read of one object (the read returns it on Garage; the fake S3 has none).
async fn round_trip(target: &S3Target, origin: &framecache::tier::BlobTier) {
    let key = key();
    let value = Bytes::from(format!("bytes of {key}"));
    origin.put(&key, value.clone()).await.unwrap();
    let read = origin.get(&key, ANY).await.unwrap();
    if target.real {
        assert_eq!(read, Some(value), "Garage returns what was written");
        origin.remove_prefix(&key).await.unwrap();
    } else {
        assert_eq!(read, None);
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn a_session_token_from_the_environment_is_signed_and_sent() {
    let scene = Scene::new();
    let target = scene.s3().await;
    scene.set("AWS_ACCESS_KEY_ID", &target.key_id);
    scene.set("AWS_SECRET_ACCESS_KEY", &target.secret);
    scene.set("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEE-lambda-session-token");
    let origin = origin_from_env();
    round_trip(&target, &origin).await;
    let tokens = target.tokens();
    assert!(target.requests() >= 2, "{}", target.wire());
    assert_eq!(tokens.len(), target.requests(), "{}", target.wire());
    assert!(
        tokens
            .iter()
            .all(|t| t == "FQoGZXIvYXdzEE-lambda-session-token")
    );
    for auth in target.authorizations() {
        assert!(
            auth.contains(&format!("Credential={}/", target.key_id)),
            "{auth}"
        );
        let signed = auth.split("SignedHeaders=").nth(1).unwrap_or("");
        assert!(
            signed.contains("x-amz-security-token"),
            "token not signed: {auth}"
        );
    }
}

#[tokio::test]
async fn explicit_keys_without_a_token_send_none() {
    let scene = Scene::new();
    let target = scene.s3().await;
    scene.set("AWS_ACCESS_KEY_ID", &target.key_id);
    scene.set("AWS_SECRET_ACCESS_KEY", &target.secret);
    round_trip(&target, &origin_from_env()).await;
    assert!(target.tokens().is_empty(), "{}", target.wire());
    assert_eq!(target.authorizations().len(), target.requests());
}

#[tokio::test]
async fn instance_metadata_credentials_are_refreshed_before_they_expire() {
    let scene = Scene::new();
    let target = scene.s3().await;
    // A minute is inside reqsign's two-minute refresh margin: every request must fetch
    // fresh credentials (no clock involved), and each must carry the latest token.
    let (endpoint, log, fetches) = imds(&target.key_id, &target.secret, 60).await;
    scene.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    let origin = origin_from_env();
    for _ in 0..3 {
        round_trip(&target, &origin).await;
    }
    let requests = target.requests();
    let expected: Vec<String> = (1..=requests).map(|n| format!("imds-token-{n}")).collect();
    assert_eq!(fetches.load(SeqCst), requests, "one refresh per request");
    assert_eq!(target.tokens(), expected, "{}", target.wire());
    let log = log.lock().unwrap();
    let token_requests = log.iter().filter(|r| r.method == "PUT").count();
    assert_eq!(
        token_requests, 1,
        "the IMDSv2 session token is reused: {log:?}"
    );
}

#[tokio::test]
async fn instance_metadata_credentials_are_reused_while_fresh() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let (endpoint, _log, fetches) = imds(&target.key_id, &target.secret, 6 * 3600).await;
    scene.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    let origin = origin_from_env();
    for _ in 0..3 {
        round_trip(&target, &origin).await;
    }
    assert_eq!(fetches.load(SeqCst), 1);
    assert!(target.requests() >= 6);
    assert!(target.tokens().iter().all(|t| t == "imds-token-1"));
}

#[tokio::test]
async fn instance_metadata_is_not_asked_when_disabled() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let (endpoint, log, _) = imds(&target.key_id, &target.secret, 3600).await;
    scene.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    scene.set("AWS_EC2_METADATA_DISABLED", "true");
    let err = origin_from_env()
        .get(&key(), ANY)
        .await
        .unwrap_err()
        .to_string();
    assert!(log.lock().unwrap().is_empty(), "IMDS was asked");
    assert_eq!(target.requests(), 0, "nothing unsigned was sent");
    assert!(err.contains("no S3 credentials found"), "{err}");
    assert!(!err.contains("instance metadata"), "{err}");
}

#[tokio::test]
async fn no_credentials_is_one_error_naming_each_source_in_order_and_the_fix() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let err = origin_from_env()
        .get(&key(), ANY)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(target.requests(), 0);
    let order = [
        "web identity",
        "SSO",
        "shared credentials/config files",
        "credential_process",
        "ECS container credentials",
        "EC2 instance metadata",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|source| {
            err.find(source)
                .unwrap_or_else(|| panic!("{source} missing: {err}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{err}");
    for fix in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "FRAMECACHE_S3_ANONYMOUS",
    ] {
        assert!(err.contains(fix), "{fix} missing: {err}");
    }
    assert!(!err.contains('\n'), "one line: {err}");
}

#[tokio::test]
async fn a_missing_instance_metadata_service_costs_at_most_a_second_once() {
    let scene = Scene::new();
    let _target = scene.s3().await;
    // A listener that never accepts: its backlog is full, so connects hang like packets
    // dropped on the way to 169.254.169.254 off EC2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let mut fillers = Vec::new();
    let hangs = loop {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        match tokio::time::timeout(Duration::from_millis(200), socket.connect(silent_addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(_)) => break false,
            Err(_) => break true,
        }
        if fillers.len() > 4096 {
            break false;
        }
    };
    let endpoint = if hangs {
        format!("http://{silent_addr}")
    } else {
        // The backlog never filled: a non-routable address instead (it hangs or fails).
        "http://10.255.255.1".to_owned()
    };
    scene.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
    let mut config = CacheConfig::from_env().unwrap();
    config.origin.timeout = Duration::from_secs(60);
    let started = Instant::now();
    for _ in 0..3 {
        let origin = framecache::build_origin(&config, &Arc::new(Metrics::default())).unwrap();
        let err = origin.get(&key(), ANY).await.unwrap_err().to_string();
        assert!(err.contains(&format!("no answer from {endpoint}")), "{err}");
    }
    let took = started.elapsed();
    eprintln!("connects hang: {hangs}; three caches took {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "three caches waited {took:?} for a missing instance-metadata service"
    );
    drop(silent);
}

#[tokio::test]
async fn ecs_container_credentials_are_used() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let (key_id, secret) = (target.key_id.clone(), target.secret.clone());
    let (addr, log) = serve(Arc::new(move |req: &Request| {
        if req.target != "/v2/credentials/task" {
            return Response::new(404, "");
        }
        if req.header("authorization") != Some("ecs-auth-token") {
            return Response::new(401, "");
        }
        Response::new(
            200,
            serde_json::json!({
                "AccessKeyId": key_id,
                "SecretAccessKey": secret,
                "Token": "ecs-session-token",
                "Expiration": expiration_in(3600),
                "RoleArn": "arn:aws:iam::123456789012:role/task",
            })
            .to_string(),
        )
    }))
    .await;
    scene.set(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        &format!("http://{addr}/v2/credentials/task"),
    );
    scene.set("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token");
    round_trip(&target, &origin_from_env()).await;
    assert_eq!(log.lock().unwrap().len(), 1, "fetched once, then cached");
    assert!(target.tokens().iter().all(|t| t == "ecs-session-token"));
    assert_eq!(target.tokens().len(), target.requests());
}

#[tokio::test]
async fn a_named_profile_gives_keys_token_and_region() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let credentials = scene.file(
        "elsewhere/credentials",
        &format!(
            "[default]\naws_access_key_id = AKIADEFAULT000000000\n\
             aws_secret_access_key = not-this-one\n\n[lab]\naws_access_key_id = {}\n\
             aws_secret_access_key = {}\naws_session_token = profile-session-token\n",
            target.key_id, target.secret
        ),
    );
    let config = scene.file(
        "elsewhere/config",
        &format!(
            "[default]\nregion = eu-central-1\n\n[profile lab]\nregion = {}\n",
            target.region
        ),
    );
    scene.set("AWS_SHARED_CREDENTIALS_FILE", &credentials);
    scene.set("AWS_CONFIG_FILE", &config);
    scene.set("AWS_PROFILE", "lab");
    scene.remove("AWS_REGION");
    round_trip(&target, &origin_from_env()).await;
    let scope = format!("/{}/s3/aws4_request", target.region);
    for auth in target.authorizations() {
        assert!(
            auth.contains(&format!("Credential={}/", target.key_id)),
            "{auth}"
        );
        assert!(auth.contains(&scope), "the profile's region: {auth}");
    }
    assert!(target.tokens().iter().all(|t| t == "profile-session-token"));
    assert_eq!(target.tokens().len(), target.requests());
}

#[tokio::test]
async fn the_default_profile_in_the_home_directory_is_read() {
    let scene = Scene::new();
    let target = scene.s3().await;
    scene.file(
        ".aws/credentials",
        &format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            target.key_id, target.secret
        ),
    );
    scene.file(
        ".aws/config",
        &format!("[default]\nregion = {}\n", target.region),
    );
    scene.remove("AWS_REGION");
    round_trip(&target, &origin_from_env()).await;
    let scope = format!("/{}/s3/aws4_request", target.region);
    let auths = target.authorizations();
    assert_eq!(auths.len(), target.requests());
    assert!(auths.iter().all(|a| a.contains(&scope)), "{auths:?}");
}

#[tokio::test]
async fn anonymous_requests_carry_no_signature() {
    let scene = Scene::new();
    let target = scene.s3().await;
    // Even with keys around: anonymous is explicit.
    scene.set("AWS_ACCESS_KEY_ID", &target.key_id);
    scene.set("AWS_SECRET_ACCESS_KEY", &target.secret);
    scene.set("FRAMECACHE_S3_ANONYMOUS", "1");
    let read = origin_from_env().get(&key(), ANY).await;
    assert_eq!(target.requests(), 1);
    assert!(target.authorizations().is_empty(), "{}", target.wire());
    if target.real {
        // Garage's buckets are private: refused, and the error says nothing was signed.
        let err = read.unwrap_err().to_string();
        assert!(err.contains("unsigned"), "{err}");
    } else {
        assert_eq!(read.unwrap(), None);
    }
}

#[tokio::test]
async fn access_denied_names_the_key_id_bucket_object_and_operation() {
    let scene = Scene::new();
    let (addr, _log) = serve(Arc::new(|req: &Request| fake_s3(req, true))).await;
    scene.set("FRAMECACHE_BACKEND", "s3");
    scene.set("S3_ENDPOINT_URL", &format!("http://{addr}"));
    scene.set("S3_BUCKET", "frames-bucket");
    scene.set("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
    scene.set(
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    );
    let key = key();
    let err = origin_from_env()
        .get(&key, ANY)
        .await
        .unwrap_err()
        .to_string();
    for part in [
        "access denied",
        "s3://frames-bucket",
        &key,
        "read",
        "AKIA…MPLE",
        "explicit keys",
    ] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
    assert!(!err.contains("AKIAIOSFODNN7EXAMPLE"), "whole key id: {err}");
    assert!(!err.contains("wJalrXUtnFEMI"), "secret: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_reads_s3_endpoint_url_and_aws_default_region() {
    // A child process with its own environment: nothing here touches this process's.
    let (addr, log) = serve(Arc::new(|req: &Request| fake_s3(req, false))).await;
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let out = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::new(env!("CARGO_BIN_EXE_framecache"))
            .env_clear()
            .env("HOME", home.path())
            .env("FRAMECACHE_BACKEND", "s3")
            .env("S3_ENDPOINT_URL", format!("http://{addr}"))
            .env("AWS_DEFAULT_REGION", "eu-north-1")
            .env("AWS_ACCESS_KEY_ID", "AKIACLITEST000000001")
            .env("AWS_SECRET_ACCESS_KEY", "cli-secret")
            .env("AWS_SESSION_TOKEN", "cli-session-token")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["--cache-dir", cache.to_str().unwrap(), "--json", "ls"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let log = log.lock().unwrap();
    assert!(!log.is_empty(), "the fake S3 was not asked: {stderr}");
    for request in log.iter() {
        let auth = request.header("authorization").unwrap_or("");
        assert!(auth.contains("/eu-north-1/s3/aws4_request"), "{auth}");
        assert!(auth.contains("Credential=AKIACLITEST000000001/"), "{auth}");
        assert_eq!(
            request.header("x-amz-security-token"),
            Some("cli-session-token")
        );
        // A custom endpoint defaults to path-style: the bucket is in the path.
        assert!(request.target.starts_with("/mpr"), "{}", request.target);
    }
}

#[tokio::test]
async fn an_https_endpoint_with_a_private_ca_is_trusted_through_aws_ca_bundle() {
    let scene = Scene::new();
    let target = scene.s3().await;
    let upstream = target.endpoint.trim_start_matches("http://").to_owned();
    let (port, ca_pem) = tls_proxy(upstream).await;
    scene.set("AWS_ENDPOINT_URL", &format!("https://localhost:{port}"));
    scene.set("AWS_ACCESS_KEY_ID", &target.key_id);
    scene.set("AWS_SECRET_ACCESS_KEY", &target.secret);
    let bundle = scene.file("ca/private-ca.pem", &ca_pem);

    // Without the bundle the server's certificate is refused: nothing reaches S3.
    let mut config = CacheConfig::from_env().unwrap();
    config.origin.retries = 0;
    let origin = framecache::build_origin(&config, &Arc::new(Metrics::default())).unwrap();
    let err = origin.get(&key(), ANY).await.unwrap_err().to_string();
    assert!(err.contains("storage read"), "{err}");
    assert_eq!(target.requests(), 0, "{err}");

    for variable in ["AWS_CA_BUNDLE", "SSL_CERT_FILE"] {
        scene.set(variable, &bundle);
        round_trip(&target, &origin_from_env()).await;
        scene.remove(variable);
    }
    assert!(target.requests() >= 4);

    // A bundle that holds no certificate is a configuration error naming the file.
    let empty = scene.file("ca/empty.pem", "not a certificate\n");
    scene.set("AWS_CA_BUNDLE", &empty);
    let config = CacheConfig::from_env().unwrap();
    let err = framecache::build_origin(&config, &Arc::new(Metrics::default()))
        .err()
        .expect("an empty bundle is refused")
        .to_string();
    assert!(
        err.contains("empty.pem") && err.contains("AWS_CA_BUNDLE"),
        "{err}"
    );

    // A plain `http://` endpoint makes no TLS connection: its client reads no certificate,
    // so the same bundle is no error there.
    scene.set("AWS_ENDPOINT_URL", &target.endpoint);
    assert!(
        target.endpoint.starts_with("http://"),
        "{}",
        target.endpoint
    );
    round_trip(&target, &origin_from_env()).await;
}
