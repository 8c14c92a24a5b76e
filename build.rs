//! Compiles the libjpeg-turbo encoder and decoder shims when the system has libjpeg headers;
//! otherwise framecache falls back to pure-Rust codecs (slower) so the build never needs them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(framecache_libjpeg)");
    // S3 integration tests run when a server is configured (scripts/test.sh) or in CI, where
    // a missing server must fail them; otherwise they are reported as ignored.
    println!("cargo::rustc-check-cfg=cfg(framecache_test_s3)");
    println!("cargo::rerun-if-env-changed=FRAMECACHE_TEST_S3");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if ci || std::env::var_os("FRAMECACHE_TEST_S3").is_some() {
        println!("cargo::rustc-cfg=framecache_test_s3");
    }
    println!("cargo::rerun-if-changed=csrc/jpeg_encode.c");
    println!("cargo::rerun-if-changed=csrc/jpeg_decode.c");
    println!("cargo::rerun-if-env-changed=FRAMECACHE_NO_LIBJPEG");
    if std::env::var_os("FRAMECACHE_NO_LIBJPEG").is_some() {
        return;
    }
    let built = cc::Build::new()
        .file("csrc/jpeg_encode.c")
        .file("csrc/jpeg_decode.c")
        .opt_level(2)
        .cargo_warnings(false)
        .try_compile("framecache_jpeg");
    match built {
        Ok(()) => {
            println!("cargo::rustc-link-lib=jpeg");
            println!("cargo::rustc-cfg=framecache_libjpeg");
        }
        Err(_) => println!(
            "cargo::warning=libjpeg headers not found: using the pure-Rust JPEG encoder \
             (about 3x slower) and decoder; scripts/setup.sh installs libjpeg62-turbo-dev"
        ),
    }
}
