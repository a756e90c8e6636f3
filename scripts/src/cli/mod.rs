//! The command layer behind the `kaggle_*` binaries: argument structs, terminal output
//! (plain lines or indicatif bars) and exit codes. This is the only module that prints, and
//! it prints only through [`out`] (credentials scrubbed, server text cleaned and bounded).

pub mod chain;
pub mod download;
pub mod out;
pub mod publish;
pub mod push;
pub mod setup;
pub mod smoke;
pub mod source;
pub mod status;
pub mod toolchain;

use crate::kaggle::client::{ApiClient, Settings, ENDPOINT_ENV};
use crate::kaggle::credentials::{find_credentials, CredentialEnv, CredentialFlags, Credentials};
use crate::kaggle::metadata::{KernelMetadata, RunState, DEFAULT_METADATA};
use crate::kaggle::KaggleError;
use clap::{Args, Parser};
use emergence_lab_core::checkpoint::CheckpointError;
use out::shout;
use std::path::PathBuf;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error (bad input, credentials, API or network failure).
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the run ended in `ERROR`.
pub const EXIT_RUN_FAILED: i32 = 3;
/// Exit code: the run was cancelled.
pub const EXIT_RUN_CANCELLED: i32 = 4;
/// Exit code: watching was interrupted with Ctrl-C (the run goes on).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Checks a command's polling flags: `interval` (seconds) must be positive and `timeout`
/// (seconds, 0 = none) non-negative, both finite; the error names the two flags.
pub fn check_poll_times(
    interval: f64,
    timeout: f64,
    interval_flag: &str,
    timeout_flag: &str,
) -> anyhow::Result<()> {
    if interval.is_finite() && interval > 0.0 && timeout.is_finite() && timeout >= 0.0 {
        Ok(())
    } else {
        anyhow::bail!("{interval_flag} must be positive and {timeout_flag} non-negative")
    }
}

/// A flag set by the first Ctrl-C (SIGINT) or SIGTERM, so a command can stop following a run
/// at its next check (the Kaggle run itself goes on); a second signal exits at once with
/// [`EXIT_INTERRUPTED`]. signal-hook, like the library (one signal crate in the workspace).
pub fn interrupt_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, stop.clone())
            .and_then(|_| flag::register(sig, stop.clone()))
            .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    }
    Ok(stop)
}

/// Options every helper accepts.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Kaggle API host (https; plain http only for 127.0.0.1/::1/localhost).
    #[arg(long, env = ENDPOINT_ENV, hide_env_values = true, value_name = "URL", default_value = crate::kaggle::client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Kernel metadata file (written by kaggle_setup).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_METADATA)]
    pub metadata: PathBuf,
    /// Use the API token in this file (takes precedence over every other source).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Use this kaggle.json (takes precedence over environment variables and ~/.kaggle).
    #[arg(long, value_name = "PATH", conflicts_with = "token_file")]
    pub kaggle_json: Option<PathBuf>,
}

/// Text appended to every `--help`: where credentials come from and the tunables.
pub const AFTER_HELP: &str = "\
Credentials (first found wins): --token-file / --kaggle-json, KAGGLE_API_TOKEN (token or path
to a file), ~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY, $KAGGLE_CONFIG_DIR/kaggle.json
or ~/.kaggle/kaggle.json. Create a token at https://www.kaggle.com/settings (API section).
Credentials are never printed.

Environment: KAGGLE_HELPERS_ENDPOINT (API host, like --endpoint), KAGGLE_HELPERS_RETRIES
(attempts per request, default 6), KAGGLE_HELPERS_BACKOFF_MS (first retry delay, doubled each
time, default 1000), KAGGLE_HELPERS_MAX_WAIT_S (longest wait, also caps Retry-After, default
120), KAGGLE_HELPERS_TIMEOUT_S (per request, default 60), KAGGLE_HELPERS_NOT_YET_S (how long
after kaggle_run a 404 means \"not visible yet\", default 300), KAGGLE_HELPERS_DATASET_POLL_S
(seconds between dataset readiness checks, default 10).

Exit codes: 0 success, 1 error, 2 bad arguments, 3 run ended in ERROR, 4 run cancelled,
5 chain paused for the weekly GPU quota, 130 watching interrupted by Ctrl-C.";

impl Common {
    /// Connection settings from the options and environment.
    pub fn settings(&self) -> Result<Settings, KaggleError> {
        Settings::from_env(Some(&self.endpoint))
    }

    /// Find credentials (registering them with the output scrubber, printing permission
    /// fixes), check the endpoint and build the API client.
    pub fn connect(&self) -> anyhow::Result<(ApiClient, Credentials)> {
        let flags = CredentialFlags {
            token_file: self.token_file.clone(),
            kaggle_json: self.kaggle_json.clone(),
        };
        let env = CredentialEnv::from_process();
        for s in env.api_token.iter().chain(env.key.iter()) {
            out::protect(s);
        }
        let (creds, notices) = find_credentials(&flags, &env)?;
        out::protect(creds.auth.secret());
        let settings = self.settings()?;
        for n in notices {
            shout!("note: {n}");
        }
        let client = ApiClient::new(settings, creds.auth.clone())?;
        Ok((client, creds))
    }

    /// Load and validate the kernel metadata.
    pub fn metadata(&self) -> Result<KernelMetadata, KaggleError> {
        KernelMetadata::load(&self.metadata)
    }

    /// The remembered run, if it belongs to the kernel in the metadata.
    pub fn run_state(&self, meta: &KernelMetadata) -> Result<Option<RunState>, KaggleError> {
        Ok(RunState::load(&meta.state_path())?.filter(|s| s.kernel == meta.id.to_string()))
    }
}

/// Print an error as `error: ...` (one line) plus `hint: ...`.
pub fn report_error(err: &anyhow::Error) {
    shout!("error: {err:#}");
    let hint = err.chain().find_map(|e| {
        if let Some(k) = e.downcast_ref::<KaggleError>() {
            k.hint()
        } else if e.downcast_ref::<CheckpointError>().is_some() {
            Some("download it again (kaggle_download skips only files it completed), or resume from an older checkpoint".into())
        } else {
            None
        }
    });
    if let Some(h) = hint {
        shout!("hint: {h}");
    }
}

/// Run a command body and turn its result into a process exit code.
pub fn exit_with(result: anyhow::Result<i32>) -> ! {
    let code = match result {
        Ok(c) => c,
        Err(e) => {
            report_error(&e);
            EXIT_ERROR
        }
    };
    std::process::exit(code)
}

/// The `main` of every helper: scrubbing panic messages, parse the arguments, run, exit.
pub fn main_with<A: Parser>(run: fn(A) -> anyhow::Result<i32>) -> ! {
    out::install_panic_hook();
    exit_with(run(A::parse()))
}

/// True when stdout is an interactive terminal (bars), false for pipes and files (plain lines).
pub fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("KAGGLE_HELPERS_PLAIN").is_none()
}

/// Human size: `1.5 MB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn argument_definitions_are_consistent() {
        super::setup::SetupArgs::command().debug_assert();
        super::push::PushArgs::command().debug_assert();
        super::push::RunArgs::command().debug_assert();
        super::status::StatusArgs::command().debug_assert();
        super::download::DownloadArgs::command().debug_assert();
        super::publish::PublishArgs::command().debug_assert();
    }

    /// Everything printed goes through `out` (scrubbed, cleaned, bounded): no other module of
    /// the library prints directly.
    #[test]
    fn no_direct_printing_outside_the_sink() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = vec![];
        for dir in ["cli", "kaggle"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
                let p = entry.path();
                if p.file_name().is_some_and(|n| n == "out.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    // Spelled in pieces so this test does not flag itself.
                    for bad in [
                        concat!("print", "ln!"),
                        concat!("print", "!("),
                        concat!("e", "print"),
                        concat!("dbg", "!("),
                        concat!(".print", "ln("),
                    ] {
                        if code.contains(bad) {
                            offenders.push(format!("{}:{}: {code}", p.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "print through cli::out (say!/shout!) instead:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(super::human_bytes(999), "999 B");
        assert_eq!(super::human_bytes(1_500_000), "1.5 MB");
    }
}
