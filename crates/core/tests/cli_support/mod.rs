//! Shared by the binaries' tests of every crate (included with `#[path]` from the library's
//! tests): a user error is one message and exit code 1, never a panic or a backtrace.

use std::path::Path;
use std::process::Command;

/// Runs each `(binary, args, needle)` with `RUST_BACKTRACE` set to `1` and `full`, in `dir`:
/// exit code 1, the message contains `needle`, and nothing looks like a panic or a backtrace.
pub fn assert_user_errors_are_clean(dir: &Path, cases: &[(&str, Vec<&str>, &str)]) {
    for (bin, args, needle) in cases {
        for bt in ["1", "full"] {
            let out = Command::new(bin)
                .args(args)
                .env("RUST_BACKTRACE", bt)
                .env("RUST_LIB_BACKTRACE", bt)
                .env_remove("EMERGENCE_LAB_OVERRIDES")
                .current_dir(dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{bin} {args:?}: {err}");
            assert!(err.contains(needle), "{bin} {args:?}: {err}");
            assert!(
                !err.to_lowercase().contains("backtrace") && !err.contains("panicked"),
                "{bin} {args:?} printed a backtrace: {err}"
            );
        }
    }
}
