//! The viewer and the cache dashboard in a real browser: Debian's headless Chromium, driven
//! over the DevTools protocol. It opens the viewer, scrubs with the arrow keys and the
//! slider, turns an overlay stage on, checks the frame shown changes and the overlay is
//! drawn, checks that scrubbing back over frames already seen sends no request; loads the
//! filmstrip's thumbnails and seeks with them; shows two stages side by side and blended;
//! restores a copied link after a reload and in a new tab; and watches the dashboard's plots
//! follow loads. It saves the screenshots of the docs (viewer and dashboard).
//!
//! Chromium comes from `scripts/setup.sh` (`/usr/bin/chromium`, or `FRAMECACHE_CHROMIUM`).
//! Without it the test is skipped, and with `CI=true` it fails. Every wait is on a condition
//! in the page, bounded, and fails naming what it waited for.
#![cfg(feature = "server")]

use bytes::Bytes;
use framecache::WriteOptions;
use framecache::server::{ServeOptions, Server};
use framecache::{CacheConfig, DiskConfig, Frame, FrameCache};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for any one condition.
const WAIT_MS: u64 = 20_000;
const FRAMES: u64 = 120;
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("FRAMECACHE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!(
            "CI is set but {} is missing: run scripts/setup.sh",
            path.display()
        );
    }
    eprintln!(
        "{} not found (scripts/setup.sh installs it); skipping",
        path.display()
    );
    None
}

/// Headless Chromium with a fresh profile, killed when dropped.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: String,
}

impl Browser {
    fn launch(binary: &std::path::Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID`.
        let stderr = child.stderr.take().unwrap();
        let (found, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = listening
            .recv_timeout(Duration::from_millis(WAIT_MS * 3))
            .expect("Chromium did not print its DevTools address");
        let devtools = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
            .to_owned();
        Browser {
            child,
            _profile: profile,
            devtools,
        }
    }

    /// Opens a page target and connects to it.
    async fn page(&self) -> Page {
        let http = reqwest::Client::new();
        let created: Value = serde_json::from_slice(
            &http
                .put(format!("http://{}/json/new?about:blank", self.devtools))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        let ws = created["webSocketDebuggerUrl"].as_str().unwrap();
        Page::connect(ws).await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Replies = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A DevTools protocol connection to one page: commands and their replies (events are
/// not needed: every wait is a condition evaluated in the page).
struct Page {
    send: tokio::sync::mpsc::UnboundedSender<String>,
    replies: Replies,
    next: std::sync::atomic::AtomicU64,
}

impl Page {
    async fn connect(url: &str) -> Page {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (mut sink, mut stream) = socket.split();
        let replies: Replies = Arc::default();
        let (send, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending = replies.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = value["id"].as_u64()
                    && let Some(reply) = pending.lock().unwrap().remove(&id)
                {
                    let _ = reply.send(value);
                }
            }
        });
        Page {
            send,
            replies,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (reply, answer) = oneshot::channel();
        self.replies.lock().unwrap().insert(id, reply);
        let command = json!({"id": id, "method": method, "params": params});
        self.send.send(command.to_string()).unwrap();
        let answer = tokio::time::timeout(Duration::from_millis(WAIT_MS * 2), answer)
            .await
            .unwrap_or_else(|_| panic!("no reply to {method}"))
            .unwrap();
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value.
    async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (a JavaScript expression) is truthy in the page, checking
    /// after every change of the DOM and at least every 50 ms; fails after `WAIT_MS`,
    /// naming `what`.
    async fn wait_for(&self, condition: &str, what: &str) -> Value {
        let script = format!(
            r#"new Promise((resolve, reject) => {{
                const check = () => {{ try {{ return ({condition}); }} catch (_) {{ return false; }} }};
                const done = (value) => {{ observer.disconnect(); clearInterval(timer); clearTimeout(limit); resolve(value); }};
                const observer = new MutationObserver(() => {{ const v = check(); if (v) done(v); }});
                observer.observe(document, {{ subtree: true, attributes: true, childList: true }});
                const timer = setInterval(() => {{ const v = check(); if (v) done(v); }}, 50);
                const limit = setTimeout(() => {{ observer.disconnect(); clearInterval(timer);
                    reject(new Error("timed out after {WAIT_MS} ms waiting for {what}")); }}, {WAIT_MS});
                const v = check(); if (v) done(v);
            }})"#
        );
        self.eval(&script).await
    }

    async fn key(&self, key: &str, code: u32) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code}),
            )
            .await;
        }
    }

    async fn mouse(&self, kind: &str, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
        )
        .await;
    }

    /// Drags the slider's thumb from fraction `from` to `to` of its width in `steps` moves,
    /// as a user would, waiting after each move until the frame under the thumb is shown.
    async fn drag_slider(&self, from: f64, to: f64, steps: u32) {
        let rect = self
            .eval("(() => { const r = document.getElementById('slider').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
            .await;
        let r: Vec<f64> = rect
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // The thumb's centre travels between about half a thumb from each end; the last
        // move overshoots the end so that the drag ends exactly on the first or last frame.
        let x = |f: f64| r[0] + 8.0 + f * (r[2] - 16.0);
        let y = r[1] + r[3] / 2.0;
        self.mouse("mousePressed", x(from), y).await;
        for i in 1..=steps {
            let f = from + (to - from) * f64::from(i) / f64::from(steps);
            let at = match (i == steps, to) {
                (true, 0.0) => r[0] - 20.0,
                (true, 1.0) => r[0] + r[2] + 20.0,
                _ => x(f),
            };
            self.mouse("mouseMoved", at, y).await;
            self.wait_for(
                "document.getElementById('frame').dataset.seq === document.getElementById('slider').value",
                "the frame under the slider's thumb to be shown",
            )
            .await;
        }
        self.mouse("mouseReleased", x(to), y).await;
    }

    /// Picks `value` in the `<select>` with id `id`, as a user would.
    async fn select(&self, id: &str, value: &str) {
        self.eval(&format!(
            "(() => {{ const s = document.getElementById('{id}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); return s.value; }})()"
        ))
        .await;
    }

    /// `[left, top, width, height]` of the first element matching `selector`.
    async fn rect(&self, selector: &str) -> Vec<f64> {
        let rect = self
            .eval(&format!(
                "(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }})()"
            ))
            .await;
        rect.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    }

    /// Clicks the middle of the first element matching `selector` with the mouse.
    async fn click(&self, selector: &str) {
        let r = self.rect(selector).await;
        let (x, y) = (r[0] + r[2] / 2.0, r[1] + r[3] / 2.0);
        self.mouse("mousePressed", x, y).await;
        self.mouse("mouseReleased", x, y).await;
    }

    /// Saves a screenshot under the test's scratch directory, and as `docs/{name}` with
    /// `FRAMECACHE_UPDATE_SCREENSHOT` set.
    async fn screenshot(&self, name: &str) {
        // Down to the end of the page's content, not the empty window below it.
        let height = self
            .eval("Math.min(innerHeight, Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) + 12)")
            .await;
        let clip = json!({"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1});
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "clip": clip}),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().unwrap());
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&out, &png).unwrap();
        if std::env::var_os("FRAMECACHE_UPDATE_SCREENSHOT").is_some() {
            let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(name);
            std::fs::write(docs, &png).unwrap();
        }
        eprintln!("screenshot: {}", out.display());
    }

    async fn shown_seq(&self) -> u64 {
        self.eval("Number(document.getElementById('frame').dataset.seq)")
            .await
            .as_u64()
            .unwrap()
    }
}

/// A frame that looks like a frame: a gradient that pans, with a bar at the frame's number.
fn frame(seq: u64) -> Frame {
    let image = image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let bar = (x / 8) as u64 == seq % 80;
        let xs = (x + 3 * seq as u32) % WIDTH;
        image::Rgb(if bar {
            [250, 250, 250]
        } else {
            [
                (40 + xs * 120 / WIDTH) as u8,
                (60 + y * 100 / HEIGHT) as u8,
                (120 + ((xs / 40 + y / 40) % 2) * 60) as u8,
            ]
        })
    });
    Frame {
        seq,
        chunk_id: seq / 50,
        timestamp: seq as f64 / 25.0,
        image: image.into(),
        perceptual_hash: format!("{seq:016x}"),
    }
}

/// A detection-style overlay: a transparent PNG with a box outline.
fn overlay_png() -> Bytes {
    box_png((200, 90, 420, 260), [255, 64, 64, 255])
}

/// A transparent PNG with the outline of box `(x0, y0, x1, y1)` in `color`.
fn box_png((x0, y0, x1, y1): (u32, u32, u32, u32), color: [u8; 4]) -> Bytes {
    let img = image::RgbaImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let inside = x >= x0 && x <= x1 && y >= y0 && y <= y1;
        let edge = inside && (x < x0 + 4 || x > x1 - 4 || y < y0 + 4 || y > y1 - 4);
        image::Rgba(if edge { color } else { [0, 0, 0, 0] })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    Bytes::from(out.into_inner())
}

/// The sum of the samples of `/metrics` whose line starts with `prefix`.
async fn metric(base: &str, token: Option<&str>, prefix: &str) -> u64 {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Thumbnail requests at `scale`, from the server's own counters.
async fn thumbnail_requests(base: &str, scale: u32) -> u64 {
    let prefix = format!("framecache_http_thumbnail_requests_total{{scale=\"{scale}\"}}");
    metric(base, None, &prefix).await
}

/// Requests for full frames that reached the server, from its own counters: the frame
/// route's, less the thumbnails (which share it).
async fn frame_requests(base: &str, token: Option<&str>) -> u64 {
    let route = metric(
        base,
        token,
        "framecache_http_requests_total{route=\"/v1/timelines/{id}/frames/{file}\"",
    )
    .await;
    route - metric(base, token, "framecache_http_thumbnail_requests_total").await
}

/// A server on a free loopback port over two timelines (`street-cam`, 120 frames with
/// overlays on frames 3 to 5 in job-7's stages `detect` (`boxes`) and `track` (`boxes` and
/// `trail`); `lobby`, 10 frames), stopped through the returned sender.
async fn serve_timelines(
    scratch: &std::path::Path,
    token: Option<&str>,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<framecache::Result<()>>,
) {
    let fc = FrameCache::new(&CacheConfig {
        origin: framecache::OriginConfig {
            backend: framecache::Backend::Fs {
                root: scratch.join("origin"),
            },
            ..Default::default()
        },
        memory: framecache::MemoryConfig { capacity: 64 << 20 },
        disk: Some(DiskConfig {
            dir: scratch.join("disk"),
            capacity: 1 << 30,
            ..Default::default()
        }),
        ..CacheConfig::default()
    })
    .unwrap();
    let frames: Vec<Frame> = (0..FRAMES).map(frame).collect();
    fc.cache_frames("street-cam", &frames, WriteOptions::default())
        .await
        .unwrap();
    fc.cache_frames("lobby", &frames[..10], WriteOptions::default())
        .await
        .unwrap();
    let boxes = BTreeMap::from([("boxes".to_owned(), overlay_png())]);
    let tracks = BTreeMap::from([
        (
            "boxes".to_owned(),
            box_png((230, 110, 450, 280), [80, 200, 255, 255]),
        ),
        (
            "trail".to_owned(),
            box_png((120, 250, 200, 330), [255, 210, 60, 255]),
        ),
    ]);
    for seq in [3, 4, 5] {
        fc.save_overlays("street-cam", "job-7", "detect", seq, &boxes)
            .await
            .unwrap();
        fc.save_overlays("street-cam", "job-7", "track", seq, &tracks)
            .await
            .unwrap();
    }
    let server = Server::bind(
        fc,
        &ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: token.map(str::to_owned),
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (base, stop, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_scrubs_plays_and_draws_overlays_in_chromium() {
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (base, stop, serving) = serve_timelines(scratch.path(), None).await;

    let browser = Browser::launch(&binary);
    let page = browser.page().await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call(
        "Page.navigate",
        json!({"url": format!("{base}/#tl=street-cam")}),
    )
    .await;

    // The page lists both timelines and shows the first frame with its metadata.
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '0'",
        "frame 0",
    )
    .await;
    let listed = page
        .eval("[...document.querySelectorAll('#timeline option')].map(o => o.value)")
        .await;
    assert_eq!(listed, json!(["lobby", "street-cam"]));
    assert_eq!(
        page.eval("document.getElementById('chunk').textContent")
            .await,
        "0"
    );

    // Arrow keys move one frame at a time; the metadata follows.
    for expected in 1..=3u64 {
        page.key("ArrowRight", 39).await;
        page.wait_for(
            &format!("document.getElementById('frame').dataset.seq === '{expected}'"),
            &format!("frame {expected} after ArrowRight"),
        )
        .await;
    }
    assert_eq!(
        page.eval("document.getElementById('time').textContent")
            .await,
        "0.120"
    );

    // Turning the stage on draws its overlay on frames that have one, and only there.
    page.select("stage-a", "detect").await;
    page.wait_for(
        "document.getElementById('stage').dataset.overlays === '1' && document.querySelector('#stage img.overlay').complete",
        "the overlay of frame 3",
    )
    .await;
    let overlay = page
        .eval("(() => { const o = document.querySelector('#stage img.overlay'); return [o.dataset.stage, o.dataset.name, o.naturalWidth]; })()")
        .await;
    assert_eq!(overlay, json!(["job-7/detect", "boxes", WIDTH]));
    page.key("ArrowRight", 39).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '4' && document.getElementById('stage').dataset.overlays === '1'",
        "frame 4 with its overlay",
    )
    .await;
    page.key("ArrowRight", 39).await;
    page.key("ArrowRight", 39).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '6' && document.getElementById('stage').dataset.overlays === '0'",
        "frame 6, which has no overlay",
    )
    .await;

    // Scrub with the slider to the end: frames are fetched once each.
    page.drag_slider(6.0 / (FRAMES - 1) as f64, 1.0, 40).await;
    assert_eq!(page.shown_seq().await, FRAMES - 1);
    page.wait_for(
        "document.body.dataset.pending === '0' && document.body.dataset.thumbPending === '0'",
        "prefetches to finish",
    )
    .await;
    let requests_before = frame_requests(&base, None).await;
    assert_eq!(requests_before, FRAMES, "each frame fetched exactly once");

    // Back to the start over frames already seen: the browser cache answers, the server
    // sees no request, although the page fetched them again (they had left its memory).
    let fetches_before: u64 = page
        .eval("Number(document.body.dataset.requests)")
        .await
        .as_u64()
        .unwrap();
    page.drag_slider(1.0, 0.0, 40).await;
    assert_eq!(page.shown_seq().await, 0);
    page.wait_for(
        "document.body.dataset.pending === '0' && document.body.dataset.thumbPending === '0'",
        "prefetches to finish",
    )
    .await;
    let fetches_after: u64 = page
        .eval("Number(document.body.dataset.requests)")
        .await
        .as_u64()
        .unwrap();
    assert!(
        fetches_after > fetches_before,
        "the page fetched frames again"
    );
    assert_eq!(frame_requests(&base, None).await, requests_before);

    // Play runs through the frames at their timestamps (25 per second) to the end.
    page.key("End", 35).await;
    page.key("ArrowLeft", 37).await;
    page.key("ArrowLeft", 37).await;
    page.key("ArrowLeft", 37).await;
    page.wait_for(
        &format!(
            "document.getElementById('frame').dataset.seq === '{}'",
            FRAMES - 4
        ),
        "the fourth frame from the end",
    )
    .await;
    page.eval("document.getElementById('play').click()").await;
    page.wait_for(
        &format!(
            "document.getElementById('frame').dataset.seq === '{}' && document.getElementById('play').textContent === 'play'",
            FRAMES - 1
        ),
        "playback to reach the last frame and stop",
    )
    .await;

    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Off loopback the server wants a token: the page asks for it, sends it with every call,
/// and the browser still caches the frames it fetched with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_signs_in_with_a_token_in_chromium() {
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let token = "viewer-tok-3f9d1c";
    let (base, stop, serving) = serve_timelines(scratch.path(), Some(token)).await;
    let browser = Browser::launch(&binary);
    let page = browser.page().await;
    page.call("Page.navigate", json!({"url": format!("{base}/#tl=lobby")}))
        .await;
    page.wait_for("!document.getElementById('login').hidden", "the token form")
        .await;
    assert_eq!(
        page.eval("document.getElementById('frame').dataset.seq ?? null")
            .await,
        Value::Null
    );
    page.eval(&format!(
        "document.getElementById('token').value = '{token}'; document.getElementById('login').requestSubmit()"
    ))
    .await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '0'",
        "frame 0 after signing in",
    )
    .await;
    page.wait_for(
        "document.body.dataset.pending === '0' && document.body.dataset.thumbPending === '0'",
        "prefetches to finish",
    )
    .await;
    // All ten frames were fetched once (the window covers them); a reload starts with an
    // empty page but the same browser cache, and the token from the session.
    assert_eq!(frame_requests(&base, Some(token)).await, 10);
    page.call("Page.reload", json!({})).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '0'",
        "frame 0 after reloading",
    )
    .await;
    page.key("End", 35).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '9'",
        "frame 9",
    )
    .await;
    page.wait_for(
        "document.body.dataset.pending === '0' && document.body.dataset.thumbPending === '0'",
        "prefetches to finish",
    )
    .await;
    assert_eq!(frame_requests(&base, Some(token)).await, 10);

    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// Launches Chromium on a 1280×`height` page showing `path` of `base`.
async fn open(binary: &std::path::Path, base: &str, path: &str, height: u32) -> (Browser, Page) {
    let browser = Browser::launch(binary);
    let page = browser.page().await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    page.call("Page.navigate", json!({"url": format!("{base}{path}")}))
        .await;
    (browser, page)
}

/// Every thumbnail of the coarse strip drawn.
const COARSE_LOADED: &str = "(() => { const t = [...document.querySelectorAll('#coarse img.thumb')]; return t.length >= 4 && t.every((i) => i.dataset.loaded === '1'); })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filmstrip_shows_thumbnails_and_seeks_in_chromium() {
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (base, stop, serving) = serve_timelines(scratch.path(), None).await;
    let (browser, page) = open(&binary, &base, "/#tl=street-cam", 800).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '0'",
        "frame 0",
    )
    .await;

    // The coarse strip samples the whole timeline, first to last frame, at 1/8 of the size.
    page.wait_for(COARSE_LOADED, "the coarse strip's thumbnails")
        .await;
    let coarse = page
        .eval("[...document.querySelectorAll('#coarse img.thumb')].map((i) => [Number(i.dataset.seq), i.dataset.scale, i.naturalWidth, i.naturalHeight])")
        .await;
    let coarse = coarse.as_array().unwrap();
    assert!(coarse.len() >= 8, "{coarse:?}");
    assert_eq!(coarse[0][0], 0);
    assert_eq!(coarse[coarse.len() - 1][0], FRAMES - 1);
    for thumb in coarse {
        assert_eq!(thumb[1], "8");
        assert_eq!((thumb[2].as_u64(), thumb[3].as_u64()), (Some(80), Some(45)));
    }
    // Around the playhead: the frame shown and those after it (none before frame 0).
    page.wait_for(
        "(() => { const c = document.querySelector('#near img.current'); return c.dataset.seq === '0' && c.dataset.loaded === '1'; })()",
        "the near strip's thumbnail of frame 0",
    )
    .await;
    let near = page
        .eval("[...document.querySelectorAll('#near img.thumb')].map((i) => i.dataset.seq ?? null)")
        .await;
    assert_eq!(
        near,
        json!([null, null, null, null, "0", "1", "2", "3", "4"])
    );
    // Requested at scale 8 only, each thumbnail once: one request per frame in either strip.
    page.wait_for(
        "document.body.dataset.thumbPending === '0'",
        "thumbnail fetches to finish",
    )
    .await;
    let shown: std::collections::BTreeSet<u64> = coarse
        .iter()
        .map(|t| t[0].as_u64().unwrap())
        .chain(0..5)
        .collect();
    assert_eq!(thumbnail_requests(&base, 8).await, shown.len() as u64);
    assert_eq!(thumbnail_requests(&base, 2).await, 0);
    assert_eq!(thumbnail_requests(&base, 4).await, 0);

    // A click on a thumbnail of the coarse strip seeks there; the near strip follows.
    let target = coarse[coarse.len() / 2][0].as_u64().unwrap();
    let selector = format!("#coarse img.thumb[data-seq=\"{target}\"]");
    page.click(&selector).await;
    page.wait_for(
        &format!(
            "document.getElementById('frame').dataset.seq === '{target}' && document.querySelector('#near img.current').dataset.seq === '{target}' && document.getElementById('slider').value === '{target}'"
        ),
        "the frame clicked in the coarse strip",
    )
    .await;
    // And one in the near strip: two frames further.
    page.wait_for(
        "[...document.querySelectorAll('#near img.thumb')].every((i) => !i.dataset.seq || i.dataset.loaded === '1')",
        "the near strip's thumbnails",
    )
    .await;
    page.click("#near img.thumb:nth-child(7)").await;
    page.wait_for(
        &format!(
            "document.getElementById('frame').dataset.seq === '{}'",
            target + 2
        ),
        "the frame clicked in the near strip",
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('stats-link').getAttribute('href')")
            .await,
        "/stats"
    );

    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// The index requests the page made (its own record of resources fetched), as URLs.
async fn index_requests(page: &Page, timeline: &str) -> Vec<String> {
    let urls = page
        .eval(&format!(
            "performance.getEntriesByType('resource').map((e) => e.name).filter((u) => new URL(u).pathname === '/v1/timelines/{timeline}')"
        ))
        .await;
    urls.as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect()
}

/// The `limit` of an index request; `None` for the whole index.
fn limit_of(url: &str) -> Option<u64> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
}

/// A long timeline opens from pages of its index, never the whole of it: opening 5,000
/// frames fetches the first page and one entry per coarse slot, each with a limit; a jump
/// to the end and a deep link into the middle fetch the pages there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_timeline_opens_from_pages_of_its_index_in_chromium() {
    const LONG: u64 = 5_000;
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let fc = FrameCache::new(&CacheConfig {
        origin: framecache::OriginConfig {
            backend: framecache::Backend::Fs {
                root: scratch.path().join("origin"),
            },
            ..Default::default()
        },
        memory: framecache::MemoryConfig { capacity: 64 << 20 },
        disk: None,
        ..CacheConfig::default()
    })
    .unwrap();
    let jpegs: Vec<Bytes> = (0..8)
        .map(|v| {
            let image = framecache::synthetic_frame(v, 64, 36).image;
            framecache::codec::encode_jpeg(&image, 80).unwrap().into()
        })
        .collect();
    let frames = (0..LONG)
        .map(|seq| framecache::EncodedFrame {
            seq,
            chunk_id: seq / 30,
            timestamp: seq as f64 / 30.0,
            perceptual_hash: String::new(),
            jpeg: jpegs[(seq % 8) as usize].clone(),
        })
        .collect();
    fc.cache_jpegs("long", frames, WriteOptions::default())
        .await
        .unwrap();
    let server = Server::bind(
        fc,
        &ServeOptions {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let paged = |urls: &[String]| {
        for url in urls {
            let limit = limit_of(url).unwrap_or_else(|| panic!("{url}: the whole index"));
            assert!(limit <= 256, "{url}: a page of {limit}");
        }
    };

    let (browser, page) = open(&binary, &base, "/", 800).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '0'",
        "frame 0",
    )
    .await;
    page.wait_for(COARSE_LOADED, "the coarse strip's thumbnails")
        .await;
    assert_eq!(
        page.eval("document.getElementById('position').textContent")
            .await,
        format!("1 / {LONG}")
    );
    let opened = index_requests(&page, "long").await;
    paged(&opened);
    // The first page, and one entry per coarse slot (about 15 at this width).
    assert!(opened.len() <= 24, "{opened:?}");
    let last = page
        .eval("[...document.querySelectorAll('#coarse img.thumb')].map((i) => Number(i.dataset.seq)).pop()")
        .await;
    assert_eq!(last, LONG - 1);

    // The end of the timeline: its page comes, and the near strip around it.
    page.key("End", 35).await;
    page.wait_for(
        &format!(
            "document.getElementById('frame').dataset.seq === '{}' && document.querySelector('#near img.current').dataset.loaded === '1' && document.querySelector('#near img[data-index=\"{}\"]')?.dataset.loaded === '1'",
            LONG - 1,
            LONG - 2
        ),
        // The frame before the last comes only with its page: the page request is done.
        "the last frame, its thumbnail and the one before it",
    )
    .await;
    let after = index_requests(&page, "long").await;
    paged(&after);
    assert!(
        after.len() > opened.len() && after.len() <= opened.len() + 3,
        "{after:?}"
    );
    drop(page);
    drop(browser);

    // A deep link into the middle opens there: the first page, then the page holding it.
    let (browser, page) = open(&binary, &base, "/#tl=long&seq=3210", 800).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '3210'",
        "frame 3210 from the link",
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('position').textContent")
            .await,
        format!("3211 / {LONG}")
    );
    let linked = index_requests(&page, "long").await;
    paged(&linked);
    assert!(linked.iter().any(|u| u.contains("from=3210")), "{linked:?}");
    page.key("ArrowRight", 39).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '3211'",
        "the next frame",
    )
    .await;

    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_side_by_side_blended_and_deep_linked_in_chromium() {
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (base, stop, serving) = serve_timelines(scratch.path(), None).await;
    let (browser, page) = open(&binary, &base, "/#tl=street-cam&seq=4", 800).await;
    page.wait_for(
        "document.getElementById('frame').dataset.seq === '4'",
        "frame 4 from the link",
    )
    .await;

    // Two stages side by side: each pane draws its own stage's overlays.
    page.select("job", "job-7").await;
    page.select("stage-a", "detect").await;
    page.select("stage-b-pick", "track").await;
    page.click("#layouts button[data-layout=\"side\"]").await;
    let both_panes = "(() => { const a = document.getElementById('stage'), b = document.getElementById('stage-b'); return a.dataset.stage === 'job-7/detect' && a.dataset.seq === '4' && a.dataset.overlays === '1' && b.dataset.stage === 'job-7/track' && b.dataset.seq === '4' && b.dataset.overlays === '2'; })()";
    page.wait_for(both_panes, "detect and track side by side on frame 4")
        .await;
    let (a, b) = (page.rect("#stage").await, page.rect("#stage-b").await);
    assert!(b[0] >= a[0] + a[2] - 1.0, "side by side: {a:?} {b:?}");
    assert_eq!((a[1], a[2], a[3]), (b[1], b[2], b[3]));
    let names = page
        .eval("[...document.querySelectorAll('#names input')].map((i) => [i.dataset.name, i.checked])")
        .await;
    assert_eq!(names, json!([["boxes", true], ["trail", true]]));
    page.wait_for(COARSE_LOADED, "the coarse strip's thumbnails")
        .await;
    page.screenshot("viewer.png").await;

    // A stage against the bare frame.
    page.select("stage-b-pick", "").await;
    page.wait_for(
        "document.getElementById('stage-b').dataset.stage === '' && document.getElementById('stage-b').dataset.overlays === '0'",
        "the bare frame beside the stage",
    )
    .await;
    page.select("stage-b-pick", "track").await;

    // Overlay names toggle in every pane.
    page.eval("document.querySelector('#names input[data-name=\"trail\"]').click()")
        .await;
    page.wait_for(
        "document.getElementById('stage-b').dataset.overlays === '1' && document.querySelector('#stage-b img.overlay').dataset.name === 'boxes'",
        "track without its trail",
    )
    .await;

    // Blended: the second pane over the first, at the opacity chosen.
    page.click("#layouts button[data-layout=\"blend\"]").await;
    page.wait_for(
        "document.getElementById('view').dataset.layout === 'blend' && getComputedStyle(document.getElementById('stage-b')).opacity === '0.5'",
        "the blend at half opacity",
    )
    .await;
    assert_eq!(page.rect("#stage").await, page.rect("#stage-b").await);
    page.eval("(() => { const o = document.getElementById('opacity'); o.value = '0.8'; o.dispatchEvent(new Event('input')); })()")
        .await;
    page.wait_for(
        "getComputedStyle(document.getElementById('stage-b')).opacity === '0.8'",
        "the blend at 0.8",
    )
    .await;

    // The link holds the whole view; L copies it.
    page.key("l", 76).await;
    let link = page
        .wait_for("document.body.dataset.copied", "the link to be copied")
        .await;
    let link = link.as_str().unwrap().to_owned();
    for part in [
        "tl=street-cam",
        "seq=4",
        "job=job-7",
        "a=detect",
        "b=track",
        "layout=blend",
        "opacity=0.8",
        "hide=trail",
    ] {
        assert!(link.contains(part), "{part} in {link}");
    }
    let restored = "(() => { const $ = (id) => document.getElementById(id); return $('frame').dataset.seq === '4' && $('view').dataset.layout === 'blend' && $('stage-a').value === 'detect' && $('stage-b-pick').value === 'track' && $('opacity').value === '0.8' && $('stage-b').dataset.overlays === '1' && $('stage').dataset.overlays === '1' && getComputedStyle($('stage-b')).opacity === '0.8' && !document.querySelector('#names input[data-name=\"trail\"]').checked; })()";

    // Restored after a reload, and in a new tab opened on the link.
    page.call("Page.reload", json!({})).await;
    page.wait_for(restored, "the view restored after a reload")
        .await;
    let fresh = browser.page().await;
    fresh.call("Page.navigate", json!({"url": link})).await;
    fresh
        .wait_for(restored, "the view restored from the link in a new tab")
        .await;

    drop(fresh);
    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_plots_the_server_counters_in_chromium() {
    let Some(binary) = chromium() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (base, stop, serving) = serve_timelines(scratch.path(), None).await;
    let (browser, page) = open(&binary, &base, "/stats", 960).await;
    page.wait_for(
        "Number(document.body.dataset.polls) >= 2",
        "two polls of /v1/stats",
    )
    .await;
    let hits =
        "Number(document.querySelector('#numbers-hits [data-series=\"memory\"]').dataset.total)";
    let before = page.eval(hits).await.as_u64().unwrap();
    let quiet = page
        .eval("document.getElementById('plot-hits').toDataURL()")
        .await;
    let last = page
        .eval("JSON.parse(document.getElementById('plot-hits').dataset.last)[0]")
        .await;
    assert_eq!(last.as_f64(), Some(0.0), "no hits yet: {last}");

    // Loads between polls: a few more each round, and some thumbnails.
    let http = reqwest::Client::new();
    let mut loaded = 0;
    for round in 1..=6u64 {
        let polls = page
            .eval("Number(document.body.dataset.polls)")
            .await
            .as_u64()
            .unwrap();
        for seq in 0..round * 8 {
            let url = format!("{base}/v1/timelines/street-cam/frames/{seq}.jpg");
            let response = http.get(&url).send().await.unwrap();
            assert!(response.status().is_success());
            loaded += 1;
        }
        for seq in 0..round * 2 {
            let url = format!("{base}/v1/timelines/street-cam/frames/{seq}.jpg?scale=4");
            assert!(http.get(&url).send().await.unwrap().status().is_success());
        }
        page.wait_for(
            &format!("Number(document.body.dataset.polls) > {polls}"),
            "the next poll",
        )
        .await;
    }
    // The figures count every load, and the plot has moved off zero.
    page.wait_for(
        &format!("{hits} >= {}", before + loaded),
        "the memory hits to count the loads",
    )
    .await;
    page.wait_for(
        "JSON.parse(document.getElementById('plot-hits').dataset.peak) > 0",
        "a plotted hit rate above zero",
    )
    .await;
    let drawn = page
        .eval("document.getElementById('plot-hits').toDataURL()")
        .await;
    assert_ne!(drawn, quiet, "the plot changed");
    let thumbs = page
        .eval("Number(document.querySelector('#numbers-decodes [data-series=\"of them thumbnails\"]').dataset.total)")
        .await;
    assert!(thumbs.as_u64().unwrap() >= 1, "{thumbs}");
    let memory_held = page
        .eval("Number(document.querySelector('#numbers-usage [data-series=\"memory\"]').dataset.total)")
        .await;
    assert!(memory_held.as_u64().unwrap() > 0, "{memory_held}");
    page.screenshot("dashboard.png").await;

    drop(page);
    drop(browser);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
