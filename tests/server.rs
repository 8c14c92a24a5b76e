//! `framecache serve` over real HTTP on loopback, against the filesystem backend and Garage:
//! status codes, ETags and 304s, caching headers, bad input, the token, an origin that is
//! down, and the command line's safety checks and shutdown.
#![cfg(feature = "server")]

mod common;

use bytes::Bytes;
use common::{Env, Instrumented, cache_with_failing_origin, unique};
use framecache::WriteOptions;
use framecache::server::{ServeOptions, Server};
use framecache::{FrameCache, Metrics, synthetic_frame};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A server running on a free loopback port until dropped.
struct Running {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Running {
    async fn start(cache: FrameCache, opts: ServeOptions) -> Running {
        let opts = ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..opts
        };
        let server = Server::bind(cache, &opts).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running {
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn get_with(
        &self,
        path: &str,
        name: header::HeaderName,
        value: &str,
    ) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header(name, value)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }
}

/// A GET written byte for byte, for paths an HTTP client would normalize; returns the
/// status and the body.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

fn header_of(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

/// Asserts a JSON error answer and returns its message.
async fn error_message(response: reqwest::Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    assert_eq!(
        header_of(response.headers(), header::CONTENT_TYPE),
        "application/json"
    );
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["status"], status.as_u16());
    body["error"]["message"].as_str().unwrap().to_owned()
}

fn version(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..32].to_owned()
}

fn png(tag: u8) -> Bytes {
    let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * y) as u8 ^ tag]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    Bytes::from(out.into_inner())
}

/// Writes a timeline of `n` small frames, with overlays `edges` on frames 1 and 3 of job
/// `job-1`, stage `detect`; returns the stored JPEGs by seq.
async fn write_timeline(cache: &FrameCache, timeline: &str, n: u64) -> BTreeMap<u64, Bytes> {
    let frames: Vec<_> = (0..n).map(|s| synthetic_frame(s, 64, 48)).collect();
    cache
        .cache_frames(timeline, &frames, WriteOptions::default())
        .await
        .unwrap();
    for seq in [1, 3] {
        let overlays = BTreeMap::from([("edges".to_owned(), png(seq as u8))]);
        cache
            .save_overlays(timeline, "job-1", "detect", seq, &overlays)
            .await
            .unwrap();
    }
    let mut jpegs = BTreeMap::new();
    for seq in 0..n {
        let (bytes, _) = cache.frame_jpeg(timeline, seq).await.unwrap().unwrap();
        jpegs.insert(seq, bytes);
    }
    jpegs
}

fn cache(env: &Env, name: &str) -> FrameCache {
    FrameCache::new(&env.config(&env.disk_dir(name))).unwrap()
}

async fn index_lists_frames_with_versions_and_overlays(env: &Env) {
    let tl = unique("srv-index");
    let fc = cache(env, "index");
    let jpegs = write_timeline(&fc, &tl, 5).await;
    let server = Running::start(fc, ServeOptions::default()).await;

    let ids = server.json("/v1/timelines").await;
    assert!(
        ids["timelines"]
            .as_array()
            .unwrap()
            .contains(&Value::from(tl.clone()))
    );

    let index = server.json(&format!("/v1/timelines/{tl}")).await;
    assert_eq!(index["timeline"], tl.as_str());
    let frames = index["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 5);
    for (f, (seq, jpeg)) in frames.iter().zip(&jpegs) {
        let v = version(jpeg);
        assert_eq!(f["seq"], *seq);
        assert_eq!(f["chunk_id"], seq / 100);
        assert_eq!(f["timestamp"], *seq as f64 / 30.0);
        assert_eq!(f["perceptual_hash"], format!("{seq:016x}"));
        assert_eq!(f["size"], jpeg.len());
        assert_eq!(f["version"], v.as_str());
        assert_eq!(
            f["url"],
            format!("/v1/timelines/{tl}/frames/{seq}.jpg?v={v}").as_str()
        );
        // The URL the index gives serves exactly the stored bytes.
        let response = server.get(f["url"].as_str().unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.bytes().await.unwrap(), *jpeg);
    }
    assert_eq!(
        index["overlays"],
        serde_json::json!([{"job": "job-1", "stage": "detect",
            "url": format!("/v1/timelines/{tl}/overlays/job-1/detect")}])
    );
    let stages = server.json(&format!("/v1/timelines/{tl}/overlays")).await;
    assert_eq!(stages["overlays"], index["overlays"]);
}

async fn frames_carry_strong_etags_and_caching_headers(env: &Env) {
    let tl = unique("srv-etag");
    let fc = cache(env, "etag");
    let jpegs = write_timeline(&fc, &tl, 3).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let jpeg = &jpegs[&2];
    let v = version(jpeg);
    let etag = format!("\"{v}\"");
    let plain = format!("/v1/timelines/{tl}/frames/2.jpg");

    // Without a version: the bytes, a strong ETag, revalidate on each use.
    let response = server.get(&plain).await;
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers().clone();
    assert_eq!(header_of(&h, header::ETAG), etag);
    assert_eq!(header_of(&h, header::CACHE_CONTROL), "no-cache");
    assert_eq!(header_of(&h, header::CONTENT_TYPE), "image/jpeg");
    assert_eq!(
        header_of(&h, header::CONTENT_LENGTH),
        jpeg.len().to_string()
    );
    assert_eq!(response.bytes().await.unwrap(), *jpeg);

    // Revalidation: 304 without a body, for the tag alone, in a list, or weak.
    for inm in [
        etag.clone(),
        format!("\"x\", {etag}"),
        format!("W/{etag}"),
        "*".into(),
    ] {
        let response = server.get_with(&plain, header::IF_NONE_MATCH, &inm).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(header_of(response.headers(), header::ETAG), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let response = server
        .get_with(&plain, header::IF_NONE_MATCH, "\"other\"")
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // With the content version: immutable, also on the 304.
    let versioned = format!("{plain}?v={v}");
    let response = server.get(&versioned).await;
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        IMMUTABLE
    );
    assert_eq!(response.bytes().await.unwrap(), *jpeg);
    let response = server
        .get_with(&versioned, header::IF_NONE_MATCH, &etag)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        IMMUTABLE
    );

    // A version these bytes do not have: redirected to the current version's URL.
    let wrong = format!("{plain}?v={}", "0".repeat(32));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(server.url(&wrong)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header_of(response.headers(), header::LOCATION), versioned);
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        "no-store"
    );
    let response = server.get(&wrong).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), *jpeg);

    // HEAD: the same headers, no body.
    let response = server
        .http
        .head(server.url(&versioned))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(response.headers(), header::ETAG), etag);
    assert_eq!(
        header_of(response.headers(), header::CONTENT_LENGTH),
        jpeg.len().to_string()
    );
    assert!(response.bytes().await.unwrap().is_empty());

    // Listings revalidate too.
    let index_path = format!("/v1/timelines/{tl}");
    let response = server.get(&index_path).await;
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        "no-cache"
    );
    let index_tag = header_of(response.headers(), header::ETAG).to_owned();
    let response = server
        .get_with(&index_path, header::IF_NONE_MATCH, &index_tag)
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

async fn a_rebuilt_timeline_is_served_fresh_under_its_new_version(env: &Env) {
    let tl = unique("srv-rebuilt");
    let fc = cache(env, "rebuilt-server");
    let old = write_timeline(&fc, &tl, 2).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    // The server holds frame 1 locally now.
    let response = server
        .get(&format!("/v1/timelines/{tl}/frames/1.jpg"))
        .await;
    assert_eq!(response.bytes().await.unwrap(), old[&1]);

    // Another machine rebuilds the timeline with other pixels.
    let writer = cache(env, "rebuilt-writer");
    let frames: Vec<_> = (0..2).map(|s| synthetic_frame(s + 50, 64, 48)).collect();
    let frames: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            f.seq = i as u64;
            f
        })
        .collect();
    writer
        .cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    let (new, _) = writer.frame_jpeg(&tl, 1).await.unwrap().unwrap();
    assert_ne!(new, old[&1]);

    let index = server.json(&format!("/v1/timelines/{tl}")).await;
    let url = index["frames"][1]["url"].as_str().unwrap().to_owned();
    assert!(url.ends_with(&version(&new)), "{url}");
    let response = server.get(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        IMMUTABLE
    );
    assert_eq!(response.bytes().await.unwrap(), new);
    // The stale local copy was replaced: the plain URL serves the new bytes too.
    let response = server
        .get(&format!("/v1/timelines/{tl}/frames/1.jpg"))
        .await;
    assert_eq!(response.bytes().await.unwrap(), new);
}

async fn overlays_list_and_serve_versioned_pngs(env: &Env) {
    let tl = unique("srv-overlays");
    let fc = cache(env, "overlays");
    write_timeline(&fc, &tl, 5).await;
    let server = Running::start(fc, ServeOptions::default()).await;

    let stage = server
        .json(&format!("/v1/timelines/{tl}/overlays/job-1/detect"))
        .await;
    let frames = stage["frames"].as_array().unwrap();
    assert_eq!(
        frames
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(stage["next"], Value::Null, "one page holds the stage");
    for f in frames {
        let seq = f["seq"].as_u64().unwrap();
        let png = png(seq as u8);
        let o = &f["overlays"][0];
        assert_eq!(o["name"], "edges");
        assert_eq!(o["size"], png.len());
        assert_eq!(o["version"], version(&png).as_str());
        let url = o["url"].as_str().unwrap();
        assert_eq!(
            url,
            format!(
                "/v1/timelines/{tl}/overlays/job-1/detect/{seq}/edges.png?v={}",
                version(&png)
            )
        );
        let response = server.get(url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(response.headers(), header::CONTENT_TYPE),
            "image/png"
        );
        assert_eq!(
            header_of(response.headers(), header::CACHE_CONTROL),
            IMMUTABLE
        );
        let etag = header_of(response.headers(), header::ETAG).to_owned();
        assert_eq!(response.bytes().await.unwrap(), png);
        let response = server.get_with(url, header::IF_NONE_MATCH, &etag).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);

        // The names of one frame's overlays.
        let names = server
            .json(&format!("/v1/timelines/{tl}/overlays/job-1/detect/{seq}"))
            .await;
        assert_eq!(names["overlays"][0]["name"], "edges");
        assert_eq!(names["overlays"][0]["url"], url);
    }
    // A frame without overlays has an empty list.
    let names = server
        .json(&format!("/v1/timelines/{tl}/overlays/job-1/detect/2"))
        .await;
    assert_eq!(names["overlays"], serde_json::json!([]));
    // Unversioned overlay URLs revalidate.
    let response = server
        .get(&format!(
            "/v1/timelines/{tl}/overlays/job-1/detect/1/edges.png"
        ))
        .await;
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        "no-cache"
    );
}

async fn bad_input_is_400_naming_the_value(env: &Env) {
    let tl = unique("srv-bad");
    let fc = cache(env, "bad");
    write_timeline(&fc, &tl, 2).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let long = "x".repeat(framecache::layout::MAX_ID_LEN + 1);
    let cases: Vec<(String, &str)> = vec![
        ("/v1/timelines/a%2Fb/frames/0.jpg".into(), "\"a/b\""),
        ("/v1/timelines/a%5Cb".into(), "\"a\\\\b\""),
        (format!("/v1/timelines/{long}"), long.as_str()),
        (format!("/v1/timelines/{tl}/frames/01.jpg"), "\"01\""),
        (format!("/v1/timelines/{tl}/frames/-1.jpg"), "\"-1\""),
        (format!("/v1/timelines/{tl}/frames/1.png"), "\"1.png\""),
        (
            format!("/v1/timelines/{tl}/frames/99999999999999999999999.jpg"),
            "99999999999999999999999",
        ),
        (
            format!("/v1/timelines/{tl}/frames/1.jpg?v=nothex"),
            "\"nothex\"",
        ),
        (
            format!("/v1/timelines/{tl}/overlays/j%0Aob/detect"),
            "\"j\\nob\"",
        ),
        (
            format!("/v1/timelines/{tl}/overlays/job-1/detect/x"),
            "\"x\"",
        ),
        (
            format!("/v1/timelines/{tl}/overlays/job-1/detect/1/a%00b.png"),
            "\"a\\0b\"",
        ),
        (
            format!("/v1/timelines/{tl}/overlays/job-1/detect/1/edges.jpg"),
            "\"edges.jpg\"",
        ),
    ];
    for (path, named) in cases {
        let response = server.get(&path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(
            message.contains(named),
            "{path}: {message:?} should name {named}"
        );
    }
    // Dot segments, sent as they are (HTTP clients resolve them before sending).
    for (path, named) in [
        ("/v1/timelines/..".to_owned(), "\"..\""),
        (format!("/v1/timelines/{tl}/overlays/../detect"), "\"..\""),
        ("/v1/timelines/./frames/0.jpg".to_owned(), "\".\""),
    ] {
        let (status, body) = raw_get(&server.base, &path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(named),
            "{path}: {message} should name {named}"
        );
    }
}

async fn missing_things_are_404_and_other_methods_405(env: &Env) {
    let tl = unique("srv-missing");
    let fc = cache(env, "missing");
    write_timeline(&fc, &tl, 2).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let cases = [
        format!("/v1/timelines/{}", unique("nope")),
        format!("/v1/timelines/{tl}/frames/2.jpg"),
        format!("/v1/timelines/{tl}/overlays/job-1/detect/0/edges.png"),
        format!("/v1/timelines/{tl}/overlays/job-1/nostage/1/edges.png"),
        "/v2/anything".to_owned(),
    ];
    for path in cases {
        error_message(server.get(&path).await, StatusCode::NOT_FOUND).await;
    }
    let response = server
        .http
        .post(server.url(&format!("/v1/timelines/{tl}/frames/0.jpg")))
        .send()
        .await
        .unwrap();
    assert!(header_of(response.headers(), header::ALLOW).contains("GET"));
    error_message(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

async fn a_token_guards_every_route_but_healthz(env: &Env) {
    let tl = unique("srv-token");
    let fc = cache(env, "token");
    write_timeline(&fc, &tl, 1).await;
    let token = "tok-5f2a9c81d3e4";
    let server = Running::start(
        fc,
        ServeOptions {
            token: Some(token.into()),
            ..ServeOptions::default()
        },
    )
    .await;
    let guarded = [
        "/v1/timelines".to_owned(),
        format!("/v1/timelines/{tl}"),
        format!("/v1/timelines/{tl}/frames/0.jpg"),
        format!("/v1/timelines/{tl}/overlays/job-1/detect"),
        format!("/v1/timelines/{tl}/frames/0.jpg?scale=4"),
        "/metrics".to_owned(),
        "/v1/stats".to_owned(),
        "/nowhere".to_owned(),
    ];
    for path in &guarded {
        for presented in [
            None,
            Some("Bearer wrong"),
            Some("Basic dG9rOnRvaw=="),
            Some(token),
        ] {
            let mut request = server.http.get(server.url(path));
            if let Some(value) = presented {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {presented:?}"
            );
            assert_eq!(
                header_of(response.headers(), header::WWW_AUTHENTICATE),
                "Bearer realm=\"framecache\""
            );
            let body = response.text().await.unwrap();
            assert!(!body.contains(token), "{body}");
        }
        let response = server
            .get_with(path, header::AUTHORIZATION, &format!("Bearer {token}"))
            .await;
        assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(response.status() != StatusCode::INTERNAL_SERVER_ERROR);
    }
    // Open: the health probe and the pages' static files, which hold no data.
    for path in [
        "/healthz",
        "/",
        "/viewer.js",
        "/stats",
        "/ui/stats.js",
        "/ui/filmstrip.js",
    ] {
        assert_eq!(server.get(path).await.status(), StatusCode::OK, "{path}");
    }
    let page = server.get("/").await.text().await.unwrap();
    assert!(!page.contains(&tl));
}

async fn origin_down_is_503_unless_the_frame_is_held_locally(env: &Env) {
    let tl = unique("srv-down");
    let writer = cache(env, "down-writer");
    let jpegs = write_timeline(&writer, &tl, 3).await;
    let (fc, set_down) = cache_with_failing_origin(env, "down").await;
    let server = Running::start(
        fc,
        ServeOptions {
            retry_after: Duration::from_secs(7),
            ..ServeOptions::default()
        },
    )
    .await;
    let index_path = format!("/v1/timelines/{tl}");
    let index = server.json(&index_path).await;
    let held = index["frames"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&held).await.bytes().await.unwrap(), jpegs[&0]);

    set_down(true);
    // Held locally: served, and still immutable (the version is the bytes' own).
    let response = server.get(&held).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        IMMUTABLE
    );
    assert_eq!(response.bytes().await.unwrap(), jpegs[&0]);
    // Not held: 503 with Retry-After and a request id; the origin's own error text goes
    // to the log only.
    let response = server
        .get(&format!("/v1/timelines/{tl}/frames/1.jpg"))
        .await;
    assert_eq!(header_of(response.headers(), header::RETRY_AFTER), "7");
    assert_eq!(
        header_of(response.headers(), "x-request-id".parse().unwrap()).len(),
        16
    );
    let message = error_message(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(message, "origin unavailable and not held locally");
    // The index comes from the local copy of the manifest; overlays cannot be listed.
    let offline = server.json(&index_path).await;
    let without_tiers = |index: &Value| -> Vec<Value> {
        let mut frames = index["frames"].as_array().unwrap().clone();
        frames.iter_mut().for_each(|f| {
            f.as_object_mut().unwrap().remove("cached");
        });
        frames
    };
    assert_eq!(without_tiers(&offline), without_tiers(&index));
    assert_eq!(offline["frames"][0]["cached"], "memory");
    assert_eq!(offline["warnings"].as_array().unwrap().len(), 1);
    let response = server.get("/v1/timelines").await;
    error_message(response, StatusCode::SERVICE_UNAVAILABLE).await;
    // Offline reads are counted (the index's, and each single-frame read's).
    let metrics = server.metrics().await;
    let offline_loads: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("framecache_offline_loads_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the offline loads counter is exported");
    assert!(offline_loads >= 1, "{metrics}");

    set_down(false);
    let response = server
        .get(&format!("/v1/timelines/{tl}/frames/1.jpg"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), jpegs[&1]);
}

async fn metrics_count_requests_per_route_and_tier_reads(env: &Env) {
    let tl = unique("srv-metrics");
    let fc = cache(env, "metrics");
    write_timeline(&fc, &tl, 2).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    for _ in 0..3 {
        server
            .get(&format!("/v1/timelines/{tl}/frames/0.jpg"))
            .await;
    }
    server
        .get(&format!("/v1/timelines/{tl}/frames/01.jpg"))
        .await;
    server.get("/nowhere").await;
    let response = server.get("/metrics").await;
    assert!(
        header_of(response.headers(), header::CONTENT_TYPE)
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let route = "/v1/timelines/{id}/frames/{file}";
    for line in [
        format!("framecache_http_requests_total{{route=\"{route}\",status=\"200\"}} 3"),
        format!("framecache_http_requests_total{{route=\"{route}\",status=\"400\"}} 1"),
        "framecache_http_requests_total{route=\"unmatched\",status=\"404\"} 1".to_owned(),
        format!("framecache_http_request_duration_seconds_count{{route=\"{route}\"}} 4"),
        format!(
            "framecache_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} 4"
        ),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    let sample = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The frame was written through, so every read was a memory hit.
    assert!(sample("framecache_tier_hits_total{tier=\"memory\"}") >= 3);
    // This request's connection at least (others may be closing).
    assert!(sample("framecache_http_connections") >= 1);
    assert_eq!(sample("framecache_http_in_flight"), 1);
}

/// `?from=&limit=` pages the index: the frames from `from`, at most `limit`, with the
/// timeline's `total`, the page's `offset` and the `next` page's `from`; `?offset=` starts
/// at a position; a limit out of range, or `from` with `offset`, is 400.
async fn the_index_pages_with_from_and_limit(env: &Env) {
    let tl = unique("srv-pages");
    let fc = cache(env, "pages");
    let jpegs = write_timeline(&fc, &tl, 5).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let page = server
        .json(&format!("/v1/timelines/{tl}?from=1&limit=2"))
        .await;
    let seqs: Vec<u64> = page["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(
        (page["total"].clone(), page["next"].clone()),
        (5.into(), 3.into())
    );
    let v = version(&jpegs[&2]);
    assert_eq!(
        page["frames"][1]["url"],
        format!("/v1/timelines/{tl}/frames/2.jpg?v={v}").as_str()
    );
    assert_eq!(page["offset"], 1);
    let last = server.json(&format!("/v1/timelines/{tl}?from=3")).await;
    assert_eq!(last["frames"].as_array().unwrap().len(), 2);
    assert_eq!(last["next"], Value::Null);
    // By position: the fourth frame on.
    let at = server
        .json(&format!("/v1/timelines/{tl}?offset=3&limit=1"))
        .await;
    assert_eq!(
        (
            at["frames"][0]["seq"].clone(),
            at["offset"].clone(),
            at["next"].clone()
        ),
        (3.into(), 3.into(), 4.into())
    );
    let whole = server.json(&format!("/v1/timelines/{tl}")).await;
    assert!(whole.get("total").is_none(), "unpaged, as before");
    for bad in [
        "limit=0",
        "limit=10001",
        "from=x",
        "offset=-1",
        "from=1&offset=1",
    ] {
        let response = server.get(&format!("/v1/timelines/{tl}?{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn thumbnails_are_versioned_cached_apart_and_refuse_other_scales(env: &Env) {
    let tl = unique("srv-thumb");
    let fc = cache(env, "thumb");
    let jpegs = write_timeline(&fc, &tl, 2).await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let v = version(&jpegs[&1]);
    let plain = format!("/v1/timelines/{tl}/frames/1.jpg");

    let mut thumbs = Vec::new();
    for (scale, size) in [(2, (32, 24)), (4, (16, 12)), (8, (8, 6))] {
        let url = format!("{plain}?scale={scale}&v={v}");
        let response = server.get(&url).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let h = response.headers().clone();
        assert_eq!(header_of(&h, header::CONTENT_TYPE), "image/jpeg");
        assert_eq!(header_of(&h, header::CACHE_CONTROL), IMMUTABLE);
        let body = response.bytes().await.unwrap();
        let etag = format!("\"{}\"", version(&body));
        assert_eq!(header_of(&h, header::ETAG), etag);
        let decoded = framecache::codec::decode_jpeg(&body).unwrap();
        assert_eq!(decoded.dimensions(), size, "scale {scale}");
        let again = server.get_with(&url, header::IF_NONE_MATCH, &etag).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(again.headers(), header::CACHE_CONTROL), IMMUTABLE);
        thumbs.push(body);
    }
    // Each scale is its own entry, and the full frame is still the stored JPEG.
    assert_ne!(thumbs[0], thumbs[1]);
    assert_eq!(server.get(&plain).await.bytes().await.unwrap(), jpegs[&1]);
    // Without the frame's version, or with another, it revalidates.
    let response = server.get(&format!("{plain}?scale=4")).await;
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        "no-cache"
    );
    assert_eq!(response.bytes().await.unwrap(), thumbs[1]);
    let other = version(b"other");
    let response = server.get(&format!("{plain}?scale=4&v={other}")).await;
    assert_eq!(
        header_of(response.headers(), header::CACHE_CONTROL),
        "no-cache"
    );

    for bad in ["1", "3", "16", "0", "", "x", "04"] {
        let response = server.get(&format!("{plain}?scale={bad}")).await;
        let message = error_message(response, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(&format!("{bad:?}")), "{message}");
    }
    let response = server
        .get(&format!("/v1/timelines/{tl}/frames/9.jpg?scale=2"))
        .await;
    error_message(response, StatusCode::NOT_FOUND).await;

    let metrics = server.metrics().await;
    for scale in [2, 4, 8] {
        let line = format!("framecache_http_thumbnail_requests_total{{scale=\"{scale}\"}} ");
        assert!(metrics.contains(&line), "{metrics}");
    }
    let stats = server.json("/v1/stats").await;
    assert_eq!(stats["cache"]["thumbnails"], 3);
    assert!(stats["http"]["thumbnails"]["4"].as_u64().unwrap() >= 3);
    assert!(stats["usage"]["memory"]["capacity"].as_u64().unwrap() > 0);
}

/// A stage with more overlays than a page: each request lists one page at the origin (no
/// whole listing of the stage) and answers the cursor of the next, until the last.
async fn a_stage_is_listed_a_page_at_a_time(env: &Env) {
    let tl = unique("srv-stage-pages");
    let metrics = Arc::new(Metrics::default());
    let probe = Arc::new(Instrumented::new(env.origin(&metrics)));
    let config = env.config(&env.disk_dir("stage-pages"));
    let fc = FrameCache::from_chain(config.build_with_origin(probe.clone(), metrics), 8);
    let mut stored = Vec::new();
    for seq in 0..5u64 {
        let overlays = BTreeMap::from([
            ("a".to_owned(), png(seq as u8)),
            ("b".to_owned(), png(seq as u8 + 100)),
        ]);
        fc.save_overlays(&tl, "job-1", "detect", seq, &overlays)
            .await
            .unwrap();
        stored.extend([(seq, "a".to_owned()), (seq, "b".to_owned())]);
    }
    let server = Running::start(fc, ServeOptions::default()).await;
    let stage = format!("/v1/timelines/{tl}/overlays/job-1/detect");
    let mut seen = Vec::new();
    let mut path = format!("{stage}?limit=4");
    let mut requests = 0;
    loop {
        let (lists, pages) = (probe.lists.load(SeqCst), probe.pages.load(SeqCst));
        let page = server.json(&path).await;
        requests += 1;
        assert_eq!(
            probe.lists.load(SeqCst),
            lists,
            "no whole listing of the stage"
        );
        assert_eq!(
            probe.pages.load(SeqCst),
            pages + 1,
            "one listing page per request"
        );
        let mut on_page = 0;
        for frame in page["frames"].as_array().unwrap() {
            let seq = frame["seq"].as_u64().unwrap();
            for o in frame["overlays"].as_array().unwrap() {
                seen.push((seq, o["name"].as_str().unwrap().to_owned()));
                on_page += 1;
            }
        }
        assert!(on_page <= 4, "{page}");
        match page["next"].as_str() {
            Some(next) => path = format!("{stage}?limit=4&after={next}"),
            None => break,
        }
        assert!(requests < 10, "the pages do not end");
    }
    assert_eq!(requests, 3, "10 overlays in pages of 4");
    seen.sort();
    assert_eq!(seen, stored);
    // A limit beyond a page, or a cursor that is not a name, is refused.
    for bad in ["limit=0", "limit=1001", "after=a/b", "after="] {
        let response = server.get(&format!("{stage}?{bad}")).await;
        error_message(response, StatusCode::BAD_REQUEST).await;
    }
}

backend_tests!(
    a_stage_is_listed_a_page_at_a_time,
    the_index_pages_with_from_and_limit,
    thumbnails_are_versioned_cached_apart_and_refuse_other_scales,
    index_lists_frames_with_versions_and_overlays,
    frames_carry_strong_etags_and_caching_headers,
    a_rebuilt_timeline_is_served_fresh_under_its_new_version,
    overlays_list_and_serve_versioned_pngs,
    bad_input_is_400_naming_the_value,
    missing_things_are_404_and_other_methods_405,
    a_token_guards_every_route_but_healthz,
    origin_down_is_503_unless_the_frame_is_held_locally,
    metrics_count_requests_per_route_and_tier_reads,
);

#[tokio::test]
async fn options_refuse_a_public_bind_without_a_token() {
    let env = Env::fs();
    let fc = cache(&env, "public");
    let public = ServeOptions {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..ServeOptions::default()
    };
    let err = Server::bind(fc.clone(), &public).await.err().unwrap();
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("requires a bearer token"), "{err}");
    let blank = ServeOptions {
        token: Some("  ".into()),
        ..ServeOptions::default()
    };
    assert!(Server::bind(fc.clone(), &blank).await.is_err());
    let with_token = ServeOptions {
        token: Some("tok-abcdef0123456".into()),
        ..public
    };
    let server = Server::bind(fc, &with_token).await.unwrap();
    assert!(!server.local_addr().ip().is_loopback());
}

/// The command line: a public bind without a token is refused (exit 2); on loopback it
/// serves, and SIGTERM stops it cleanly (exit 0).
#[cfg(unix)]
#[test]
fn the_command_refuses_public_binds_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let scratch = tempfile::tempdir().unwrap();
    let command = || {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin!("framecache"));
        c.env_remove("FRAMECACHE_TOKEN")
            .env("FRAMECACHE_BACKEND", "fs")
            .env("FRAMECACHE_ROOT", scratch.path().join("origin"))
            .env("FRAMECACHE_CACHE_DIR", scratch.path().join("cache"));
        c
    };
    let refused = command()
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("requires a bearer token"), "{stderr}");

    let mut child = command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::OK);
    // SAFETY: kill(2) takes plain integers; the pid is our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
