//! The one way the helpers write text to the terminal: every line goes through
//! [`crate::kaggle::redact::for_terminal`], so registered credentials never appear (in clear or
//! encoded), control characters and ANSI escapes from server text are stripped, and each line
//! is bounded. Use [`say!`] for stdout and [`shout!`] for stderr; progress-bar messages go
//! through [`line`]. A test checks that no other module prints directly.

use crate::kaggle::redact;
use crate::kaggle::secret::Secret;
use std::io::Write;

/// Longest line written (server text inside it is bounded more tightly where it is made).
pub const MAX_LINE_CHARS: usize = 4000;

/// Register a credential: it is scrubbed from everything printed from now on.
pub fn protect(secret: &Secret) {
    redact::protect(secret.expose());
}

/// `text` made safe for the terminal (one line, secrets removed, bounded).
pub fn line(text: &str) -> String {
    redact::for_terminal(text, MAX_LINE_CHARS)
}

/// Write one safe line to stdout (write errors such as a closed pipe are ignored).
pub fn stdout_line(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{}", line(text));
}

/// Write one safe line to stderr.
pub fn stderr_line(text: &str) {
    let mut o = std::io::stderr().lock();
    let _ = writeln!(o, "{}", line(text));
}

/// `say!("...", args)`: one scrubbed, cleaned line on stdout.
macro_rules! say {
    () => {
        $crate::cli::out::stdout_line("")
    };
    ($($t:tt)*) => {
        $crate::cli::out::stdout_line(&format!($($t)*))
    };
}

/// `shout!("...", args)`: one scrubbed, cleaned line on stderr.
macro_rules! shout {
    ($($t:tt)*) => {
        $crate::cli::out::stderr_line(&format!($($t)*))
    };
}

pub(crate) use say;
pub(crate) use shout;

/// Replace the panic message printer with one that scrubs (a panic is a bug; its message
/// must not leak a credential either).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        stderr_line(&format!(
            "error: internal error (a bug; please report it): {msg}{at}"
        ));
    }));
}
