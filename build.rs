//! Generates include/mailoauth.h from src/ffi with cbindgen. The header is
//! committed; CI fails when a fresh build changes it.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    // `cargo package` forbids writing outside OUT_DIR; the committed header
    // is what packages ship.
    if std::env::var_os("MAILOAUTH_SKIP_HEADER").is_some() {
        return;
    }
    let dir = match std::env::var("CARGO_MANIFEST_DIR") {
        Ok(d) => d,
        Err(_) => return,
    };
    let mut config = match cbindgen::Config::from_file(Path::new(&dir).join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            println!("cargo:warning=cbindgen.toml: {e}");
            std::process::exit(1);
        }
    };
    let version = |k: &str| std::env::var(k).unwrap_or_else(|_| "0".into());
    config.after_includes = Some(format!(
        "\n#define MAILOAUTH_VERSION \"{}\"\n#define MAILOAUTH_VERSION_MAJOR {}\n#define MAILOAUTH_VERSION_MINOR {}\n#define MAILOAUTH_VERSION_PATCH {}\n",
        version("CARGO_PKG_VERSION"),
        version("CARGO_PKG_VERSION_MAJOR"),
        version("CARGO_PKG_VERSION_MINOR"),
        version("CARGO_PKG_VERSION_PATCH"),
    ));
    // Only src/ffi (and the modules it declares) is the C surface; the core's
    // public constants stay out of the header.
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(Path::new(&dir).join("src/ffi/mod.rs"))
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(Path::new(&dir).join("include/mailoauth.h"));
        }
        Err(e) => {
            println!("cargo:warning=cbindgen failed: {e}");
            std::process::exit(1);
        }
    }
}
