//! The error type of the Kaggle helpers: one variant per failure a user must tell apart.
//! Every message is a single line naming the cause; [`KaggleError::hint`] says how to fix it.

use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong talking to Kaggle or preparing a request.
#[derive(Debug, Error)]
pub enum KaggleError {
    /// No credentials were found in any of the supported places.
    #[error("no Kaggle credentials found (looked at {looked})")]
    NoCredentials {
        /// The places that were searched, in order.
        looked: String,
    },
    /// A credentials file exists but cannot be used.
    #[error("unusable Kaggle credentials in {source_name}: {detail}")]
    BadCredentialsFile {
        /// Which file or variable.
        source_name: String,
        /// What is wrong (never the secret itself).
        detail: String,
    },
    /// 401 or 403 from the API.
    #[error("Kaggle refused the request {call} (HTTP {status}){detail}")]
    Auth {
        /// The RPC or URL that failed.
        call: String,
        /// 401 or 403.
        status: u16,
        /// Server message, prefixed with ": " when present.
        detail: String,
    },
    /// 404 from the API.
    #[error("not found on Kaggle: {what} ({call}, HTTP 404){detail}")]
    NotFound {
        /// The kernel, dataset or version asked for.
        what: String,
        /// The RPC.
        call: String,
        /// Server message.
        detail: String,
    },
    /// 409 from the API.
    #[error("conflict on Kaggle ({call}, HTTP 409){detail}")]
    Conflict {
        /// The RPC.
        call: String,
        /// Server message.
        detail: String,
    },
    /// HTTP 200 whose body carries an `error` field (push or dataset rejected).
    #[error("Kaggle rejected {call}: {message}")]
    Rejected {
        /// The RPC.
        call: String,
        /// The `error` text from the answer.
        message: String,
    },
    /// 429 after all retries.
    #[error("Kaggle rate limit hit on {call} (HTTP 429, gave up after {attempts} attempts)")]
    RateLimited {
        /// The RPC.
        call: String,
        /// How many requests were sent.
        attempts: u32,
    },
    /// 5xx after all retries (or at once for calls that must not be repeated).
    #[error(
        "Kaggle server error on {call} (HTTP {status}, gave up after {attempts} attempts){detail}"
    )]
    Server {
        /// The RPC.
        call: String,
        /// The last status.
        status: u16,
        /// How many requests were sent.
        attempts: u32,
        /// Server message.
        detail: String,
    },
    /// Any other unexpected HTTP status.
    #[error("unexpected HTTP {status} from {call}{detail}")]
    Http {
        /// The RPC or URL.
        call: String,
        /// The status.
        status: u16,
        /// Server message.
        detail: String,
    },
    /// Connection failure or timeout after all retries.
    #[error("network error on {call} after {attempts} attempts: {cause}")]
    Network {
        /// The RPC or URL.
        call: String,
        /// How many requests were sent.
        attempts: u32,
        /// The transport error (without URL query strings).
        cause: String,
        /// True when the request timed out.
        timed_out: bool,
    },
    /// The answer was not the JSON we expected.
    #[error("unexpected answer from {call}: {detail}")]
    BadAnswer {
        /// The RPC.
        call: String,
        /// What did not parse.
        detail: String,
    },
    /// A signed storage URL answered 403/400/410 (expired link).
    #[error("download link for {file} was refused (HTTP {status}); it has probably expired")]
    SignedUrlExpired {
        /// The output file.
        file: String,
        /// The storage status.
        status: u16,
    },
    /// A download ended before `Content-Length` bytes arrived (after retries).
    #[error("download of {file} was cut short: got {got} of {expected} bytes")]
    Truncated {
        /// The output file.
        file: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The `--endpoint` is not acceptable.
    #[error("invalid endpoint {endpoint:?}: {detail}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// Why it was refused.
        detail: String,
    },
    /// `kernel-metadata.json` is missing or wrong.
    #[error("invalid kernel metadata {path}: {detail}", path = path.display())]
    InvalidMetadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The notebook file is missing or not a valid notebook.
    #[error("invalid notebook {path}: {detail}", path = path.display())]
    InvalidNotebook {
        /// The notebook file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A local file operation failed.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("cannot write", ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl KaggleError {
    /// A one-line suggestion of what to do about this error.
    pub fn hint(&self) -> Option<String> {
        use KaggleError::*;
        let h = match self {
            NoCredentials { .. } => "create an API token at https://www.kaggle.com/settings (API section) and save it as ~/.kaggle/kaggle.json (chmod 600) or ~/.kaggle/access_token, or set KAGGLE_API_TOKEN; then run kaggle_setup".to_string(),
            BadCredentialsFile { .. } => "kaggle.json must be {\"username\": \"...\", \"key\": \"...\"}; a token file holds only the token; download a fresh one at https://www.kaggle.com/settings".to_string(),
            Auth { status: 401, .. } => "the credentials were not accepted: check ~/.kaggle/kaggle.json, ~/.kaggle/access_token and KAGGLE_API_TOKEN (a stale token wins over a good kaggle.json), or create a new token at https://www.kaggle.com/settings".to_string(),
            Auth { .. } => "access denied: the kernel or dataset must belong to the account of your credentials (check the owner part of `id` in notebooks/kernel-metadata.json, or rerun kaggle_setup --username YOU)".to_string(),
            NotFound { .. } => "check `id` in notebooks/kernel-metadata.json; a new kernel is created by its first push (kaggle_push --new), and a run must have been started (kaggle_run) before its status or output exist".to_string(),
            Conflict { .. } => "the title must slugify to the id's slug (title \"Emergence Lab Training\" for id USER/emergence-lab-training), and no other kernel of yours may use that title; fix `title`/`id` in notebooks/kernel-metadata.json".to_string(),
            Rejected { message, .. } => {
                let m = message.to_ascii_lowercase();
                if m.contains("quota") {
                    "the weekly GPU quota is used up: wait for the weekly reset (see https://www.kaggle.com/settings) or run locally".to_string()
                } else if m.contains("session count") || m.contains("maximum batch") {
                    "too many GPU sessions are running: wait for one to finish (kaggle_status --watch) and try again".to_string()
                } else if m.contains("not found") {
                    "the kernel does not exist yet or is not yours: push it first with kaggle_push --new, and check `id` in notebooks/kernel-metadata.json".to_string()
                } else {
                    "read Kaggle's message above; fix the metadata or notebook and push again".to_string()
                }
            }
            RateLimited { .. } => "Kaggle is rate limiting this account: wait a few minutes and poll less often (kaggle_status --watch --interval 120)".to_string(),
            Server { .. } => "this is a problem on Kaggle's side: try again in a few minutes (status: https://www.kaggle.com/)".to_string(),
            Http { .. } => "unexpected answer from Kaggle; try again, and check --endpoint / KAGGLE_HELPERS_ENDPOINT if set".to_string(),
            Network { timed_out: true, .. } => "the request timed out: check the connection, or raise KAGGLE_HELPERS_TIMEOUT_S".to_string(),
            Network { .. } => "check the internet connection (and --endpoint / KAGGLE_HELPERS_ENDPOINT if set), then run the command again".to_string(),
            BadAnswer { .. } => "Kaggle answered something this helper does not understand; try again, and check --endpoint if set".to_string(),
            SignedUrlExpired { .. } => "download links expire after a while: run kaggle_download again (it fetches fresh links and skips files already complete)".to_string(),
            Truncated { .. } => "the connection dropped during the download: run kaggle_download again (complete files are skipped)".to_string(),
            InvalidEndpoint { .. } => "use an https:// URL (plain http:// only for 127.0.0.1, ::1 or localhost), e.g. --endpoint https://api.kaggle.com".to_string(),
            InvalidMetadata { .. } => "fix the file or recreate it with kaggle_setup --username YOUR_KAGGLE_USERNAME".to_string(),
            InvalidNotebook { .. } => "the notebook must be valid Jupyter JSON (nbformat 4) with a `cells` list; restore it from git if it was damaged".to_string(),
            Io { .. } => return None,
        };
        Some(h)
    }
}

pub use super::redact::one_line;

/// Server text made safe for a terminal: control characters other than newlines (ANSI escape
/// sequences start with one) become spaces, and at most `max` characters are kept (a note
/// says how much was cut).
pub fn terminal_text(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let n = clean.chars().count();
    if n > max {
        let cut: String = clean.chars().take(max).collect();
        format!("{cut}... ({} more characters not shown)", n - max)
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_strips_escapes_and_bounds_size() {
        let t = terminal_text("red \u{1b}[31mALERT\u{1b}[0m\nnext\r", 100);
        assert_eq!(t, "red  [31mALERT [0m\nnext ");
        let long = terminal_text(&"x".repeat(5000), 100);
        assert!(
            long.starts_with(&"x".repeat(100))
                && long.ends_with("(4900 more characters not shown)")
        );
    }

    #[test]
    fn one_line_flattens_and_truncates() {
        assert_eq!(one_line("a\nb\r\n  c"), "a b c");
        let long = "x".repeat(400);
        assert_eq!(one_line(&long).len(), 303);
    }

    #[test]
    fn every_remote_error_has_a_hint() {
        let e = KaggleError::Rejected {
            call: "SaveKernel".into(),
            message: "Maximum weekly GPU quota of 30.00 hours reached.".into(),
        };
        assert!(e.hint().unwrap().contains("quota"));
        let e = KaggleError::Auth {
            call: "x".into(),
            status: 401,
            detail: String::new(),
        };
        assert!(e.hint().unwrap().contains("kaggle.json"));
        assert!(!e.to_string().contains('\n'));
    }
}
