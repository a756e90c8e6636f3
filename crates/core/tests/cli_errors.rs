//! The core crate's binaries (`simulate`, `checkpoint`): user errors are one clear message with
//! exit code 1, never a panic or a backtrace, whatever the input.

use std::process::Command;

mod cli_support;

#[cfg(unix)]
#[test]
fn a_command_line_argument_that_is_not_text_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .arg("--train.total-steps")
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not valid UTF-8") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn simulate_refuses_sizes_that_cannot_fit() {
    for args in [
        vec!["--envs", "0"],
        vec!["--envs", "18446744073709551615"],
        vec!["--ticks", "18446744073709551615"],
        vec!["--evolution.max-agents", "100000000"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_simulate"))
            .args(&args)
            .env_remove("EMERGENCE_LAB_OVERRIDES")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn user_errors_print_no_backtrace_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            env!("CARGO_BIN_EXE_simulate"),
            vec!["--env.grid-sise", "5"],
            "did you mean",
        ),
        (
            env!("CARGO_BIN_EXE_checkpoint"),
            vec!["inspect", "/nonexistent/x.safetensors"],
            "/nonexistent",
        ),
    ];
    cli_support::assert_user_errors_are_clean(dir.path(), &cases);
}
