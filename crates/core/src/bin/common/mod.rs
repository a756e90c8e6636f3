//! What every binary's `main` shares: errors are printed as their message and causes only.
//!
//! `fn main() -> anyhow::Result<()>` prints the error with `{:?}`, which appends a stack
//! backtrace whenever `RUST_BACKTRACE=1` is set (common on developer machines): for a user
//! error (a misspelled config key) that buries the message and its hint. Binaries call
//! [`exit`] instead.

use std::process::{ExitCode, Termination};

/// The message of `e` followed by its causes, one per line, without a backtrace.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut s = format!("Error: {e}");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        s.push_str("\n\nCaused by:");
        for c in causes {
            s.push_str(&format!("\n    {c}"));
        }
    }
    s
}

/// Exit status of a binary's result: its own code when it succeeded, 1 after printing the
/// error (message and causes, never a backtrace) to stderr.
pub fn exit<T: Termination>(result: anyhow::Result<T>) -> ExitCode {
    match result {
        Ok(code) => code.report(),
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The command-line arguments after the program name, each as text: an argument that is not
/// valid UTF-8 is an error naming it (not a panic).
#[allow(dead_code)] // binaries parsing with clap alone do not need it
pub fn text_args() -> anyhow::Result<Vec<String>> {
    std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow::anyhow!("command-line argument {a:?} is not valid UTF-8 text"))
        })
        .collect()
}
