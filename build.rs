//! Link settings for libtorch, for every binary, test, bench and example of this package:
//! - an rpath to libtorch's libraries, so they are found at run time: `$LIBTORCH/lib` (the
//!   folders of `scripts/setup_libtorch.py`), or the `lib` folder of the Python torch package
//!   when building with `LIBTORCH_USE_PYTORCH=1`;
//! - with a CUDA libtorch (`libtorch_cuda.so` in that folder), `libtorch_cuda.so` kept as a
//!   needed library: rustc links with `--as-needed`, and since no symbol of it is referenced
//!   directly the linker would drop it, leaving torch without its CUDA backend (training on the
//!   CPU without a word). CPU builds are unchanged.
use std::path::PathBuf;
use std::process::Command;

/// The libtorch version, declared once in the root `Cargo.toml` (`[workspace.metadata.libtorch]`),
/// passed to the library as `EMERGENCE_LAB_LIBTORCH_VERSION`.
fn declared_libtorch_version() -> String {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let mut in_table = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[workspace.metadata.libtorch]";
        } else if let Some(v) = line.strip_prefix("version").filter(|_| in_table) {
            let v = v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            return v.to_string();
        }
    }
    panic!(
        "{} has no [workspace.metadata.libtorch] version = \"...\" (the libtorch release tch binds)",
        manifest.display()
    );
}

fn main() {
    println!(
        "cargo:rustc-env=EMERGENCE_LAB_LIBTORCH_VERSION={}",
        declared_libtorch_version()
    );
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let lib_dir = if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let code = "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))";
        Command::new("python3")
            .args(["-c", code])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        std::env::var("LIBTORCH")
            .ok()
            .map(|dir| format!("{dir}/lib"))
    };
    let Some(dir) = lib_dir else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    let cuda = PathBuf::from(&dir).join("libtorch_cuda.so");
    println!("cargo:rerun-if-changed={}", cuda.display());
    if cuda.is_file() {
        // Order matters: the flag must come before the library it keeps.
        println!("cargo:rustc-link-arg=-Wl,-L{dir}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
