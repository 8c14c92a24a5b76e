//! `framecache serve` facing a browser: without a token, cross-site requests (what a page of
//! another site makes, `Sec-Fetch-Site: cross-site`) read nothing; every answer, from the
//! router or the hot path, may be embedded by same-origin pages only; answers behind a token
//! are never for shared caches; the token comes from a file or the environment and has a
//! minimum length.
#![cfg(feature = "server")]

mod common;

use common::{Env, unique};
use framecache::WriteOptions;
use framecache::server::{MIN_TOKEN_LEN, ServeOptions, Server};
use framecache::{FrameCache, synthetic_frame};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::Value;

const CORP: &str = "cross-origin-resource-policy";

/// A server on a free loopback port; stops when dropped.
struct Running {
    base: String,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
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
            _stop: stop,
        }
    }

    /// GET `path` with `headers` (name, value).
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }
}

fn corp(headers: &HeaderMap) -> Option<&str> {
    headers.get(CORP).and_then(|v| v.to_str().ok())
}

async fn timeline_with_frames(env: &Env, name: &str) -> (FrameCache, String) {
    let tl = unique(name);
    let fc = FrameCache::new(&env.config(&env.disk_dir(name))).unwrap();
    let frames: Vec<_> = (0..2).map(|s| synthetic_frame(s, 32, 16)).collect();
    fc.cache_frames(&tl, &frames, WriteOptions::default())
        .await
        .unwrap();
    (fc, tl)
}

async fn without_a_token_cross_site_requests_read_nothing(env: &Env) {
    let (fc, tl) = timeline_with_frames(env, "xsite").await;
    let server = Running::start(fc, ServeOptions::default()).await;
    let index: Value = server
        .get(
            &format!("/v1/timelines/{tl}"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let url = index["frames"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.contains("?v="), "{url}");
    // Twice: the second is answered by the hot path, from the bytes the first held.
    for _ in 0..2 {
        let same = server.get(&url, &[("sec-fetch-site", "same-origin")]).await;
        assert_eq!(same.status(), StatusCode::OK);
        assert_eq!(corp(same.headers()), Some("same-origin"));
        let plain = server.get(&url, &[]).await;
        assert_eq!(
            plain.status(),
            StatusCode::OK,
            "clients that are not browsers"
        );
    }
    let data_routes = [
        "/v1/timelines".to_owned(),
        format!("/v1/timelines/{tl}"),
        url.clone(),
        format!("/v1/timelines/{tl}/frames/1.jpg"),
        format!("/v1/timelines/{tl}/overlays"),
        "/v1/stats".to_owned(),
        "/metrics".to_owned(),
    ];
    for path in &data_routes {
        for site in ["cross-site", "Cross-Site"] {
            let response = server.get(path, &[("sec-fetch-site", site)]).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
            assert_eq!(corp(response.headers()), Some("same-origin"), "{path}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/json",
                "{path}"
            );
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            assert_eq!(body["error"]["status"], 403);
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("cross-site"),
                "{body}"
            );
        }
        for site in ["same-origin", "none"] {
            let response = server.get(path, &[("sec-fetch-site", site)]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path} {site}");
            assert_eq!(corp(response.headers()), Some("same-origin"), "{path}");
        }
    }
    // The pages hold no data: a link from another site opens them.
    for path in ["/", "/viewer.js", "/stats", "/healthz"] {
        let response = server.get(path, &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(corp(response.headers()), Some("same-origin"), "{path}");
    }
    // Errors too.
    let missing = server.get("/nowhere", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(corp(missing.headers()), Some("same-origin"));
}

async fn answers_behind_a_token_are_private(env: &Env) {
    let (fc, tl) = timeline_with_frames(env, "private").await;
    let token = "tok-0123456789abcdef";
    let server = Running::start(
        fc,
        ServeOptions {
            token: Some(token.into()),
            ..ServeOptions::default()
        },
    )
    .await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let index: Value = server
        .get(&format!("/v1/timelines/{tl}"), &auth)
        .await
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let url = index["frames"][0]["url"].as_str().unwrap().to_owned();
    // The router's answer, then the hot path's.
    for _ in 0..2 {
        let response = server.get(&url, &auth).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, max-age=31536000, immutable"
        );
        assert_eq!(corp(response.headers()), Some("same-origin"));
    }
    for path in [
        "/v1/timelines".to_owned(),
        format!("/v1/timelines/{tl}"),
        format!("/v1/timelines/{tl}/frames/0.jpg?scale=2"),
        "/".to_owned(),
        "/healthz".to_owned(),
    ] {
        let response = server.get(&path, &auth).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let cache_control = response
            .headers()
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(!cache_control.contains("public"), "{path}: {cache_control}");
    }
    // The token guards the data: a cross-site request that carries it is the client's.
    let response = server
        .get(&url, &[auth[0], ("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server.get(&url, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

backend_tests!(
    without_a_token_cross_site_requests_read_nothing,
    answers_behind_a_token_are_private,
);

#[tokio::test]
async fn a_short_token_is_refused_with_its_minimum() {
    let env = Env::fs();
    let fc = FrameCache::new(&env.config(&env.disk_dir("a"))).unwrap();
    let short = ServeOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: Some("x".repeat(MIN_TOKEN_LEN - 1)),
        ..ServeOptions::default()
    };
    let err = Server::bind(fc.clone(), &short).await.err().unwrap();
    assert!(err.is_invalid_input(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("at least {MIN_TOKEN_LEN}")),
        "{text}"
    );
    assert!(
        !text.contains(&"x".repeat(MIN_TOKEN_LEN - 1)),
        "the token echoed: {text}"
    );
    let enough = ServeOptions {
        token: Some("x".repeat(MIN_TOKEN_LEN)),
        ..short
    };
    assert!(Server::bind(fc, &enough).await.is_ok());
}

/// The command line takes the token from a file or the environment, so it never shows in
/// `/proc/PID/cmdline`; a short one stops it with exit code 2.
#[cfg(unix)]
#[test]
fn the_command_reads_its_token_from_a_file_or_the_environment() {
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
    let file = scratch.path().join("token");
    std::fs::write(&file, "short\n").unwrap();
    let refused = command()
        .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("at least 16"), "{stderr}");
    assert!(!stderr.contains("short"), "the token echoed: {stderr}");

    let from_file = "file-token-0123456789";
    let from_env = "env-token-0123456789";
    std::fs::write(&file, format!("{from_file}\n")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (args, env_token, token) in [
        (
            vec!["--token-file", file.to_str().unwrap()],
            None,
            from_file,
        ),
        (vec![], Some(from_env), from_env),
    ] {
        let mut cmd = command();
        cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(&args);
        if let Some(t) = env_token {
            cmd.env("FRAMECACHE_TOKEN", t);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(token),
            "the token is on the command line"
        );
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().strip_prefix("serving on ").unwrap().to_owned();
        let (without, with) = runtime.block_on(async {
            let http = reqwest::Client::new();
            let url = format!("{base}/v1/timelines");
            let without = http.get(&url).send().await.unwrap().status();
            let with = http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            (without, with)
        });
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(without, StatusCode::UNAUTHORIZED);
        assert_eq!(with, StatusCode::OK);
    }
}
