//! Compiles the libjpeg-turbo encoder and decoder shims when the system has libjpeg headers;
//! otherwise framecache falls back to pure-Rust codecs (slower) so the build never needs them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(framecache_libjpeg)");
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
