//! Embeds an rpath to libtorch's libraries so binaries and tests find them at run time:
//! `$LIBTORCH/lib` for the CPU folder of `scripts/setup_libtorch.py`, or the `lib` folder of
//! the Python torch package when building with `LIBTORCH_USE_PYTORCH=1` (CUDA users).
use std::process::Command;

fn main() {
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
    if let Some(dir) = lib_dir {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
