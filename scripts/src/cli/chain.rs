//! `kaggle_run --sessions N`: one command that runs a long training across Kaggle sessions.
//! Each session is started, followed until it ends (the notebook stops itself with a
//! checkpoint before Kaggle's 12-hour limit), its newest verified checkpoint and metrics are
//! published as the checkpoints dataset's next version, and the next session resumes from it.
//! The chain stops after N sessions, at `total_steps`, on a failed session (printing the log's
//! tail) or when the weekly GPU quota would not cover another session. Its state lives in
//! `notebooks/.kaggle-chain.json`: the same command continues after a restart, and Ctrl-C
//! stops following, never the Kaggle run.

use super::download::{self, DownloadArgs};
use super::out::{say, shout};
use super::publish::wait_reported;
use super::push::{saved_source, warn_invalid, RunArgs};
use super::status::poll;
use super::{human_bytes, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_CANCELLED, EXIT_RUN_FAILED};
use crate::kaggle::api::{Ref, RunStatus, StatusAnswer};
use crate::kaggle::chain::{chain_path_for, tail, ChainCheckpoint, ChainSession, ChainState};
use crate::kaggle::client::ApiClient;
use crate::kaggle::dataset::{UploadItem, DATASET_TITLE};
use crate::kaggle::metadata::{add_dataset_source, now_unix, KernelMetadata, DATASET_SLUG};
use crate::kaggle::progress::{describe, last_progress, log_text, parse_log_json};
use crate::kaggle::publish::publish_files;
use crate::kaggle::quota::QuotaAnswer;
use clap::Args;
use emergence_lab_core::checkpoint::{find_checkpoint_files, pick_resume, verify_info};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Exit code: the chain stopped because the weekly GPU quota would not cover another session.
pub const EXIT_QUOTA: i32 = 5;

/// Options of a chained run (only with --sessions).
#[derive(Debug, Clone, Args)]
pub struct ChainArgs {
    /// Hours of GPU quota one session may use; the chain stops when less is left this week.
    #[arg(long, value_name = "H", default_value_t = 12.0, requires = "sessions")]
    pub session_hours: f64,
    /// Seconds between status checks while following a session.
    #[arg(long, value_name = "N", default_value_t = 60.0, requires = "sessions")]
    pub interval: f64,
    /// Where each session's outputs are downloaded (one sub-folder per session).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "kaggle_output/chain",
        requires = "sessions"
    )]
    pub chain_dir: PathBuf,
    /// Checkpoints dataset OWNER/SLUG (default: the kernel owner's emergence-lab-checkpoints).
    #[arg(long, value_name = "OWNER/SLUG", requires = "sessions")]
    pub checkpoints_dataset: Option<String>,
    /// Forget a previous chain's state and start a new chain.
    #[arg(long, requires = "sessions")]
    pub new_chain: bool,
    /// Give up waiting for a published checkpoint to be READY after this many seconds.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1800.0,
        requires = "sessions"
    )]
    pub publish_timeout: f64,
}

enum Followed {
    Ended(StatusAnswer),
    Interrupted,
}

fn stopped_following(path: &Path) -> anyhow::Result<i32> {
    say!(
        "Stopped following; the Kaggle run goes on. Run the same command again to continue the chain (state in {}).",
        path.display()
    );
    Ok(EXIT_INTERRUPTED)
}

/// Run `kaggle_run --sessions N`.
pub fn run(args: RunArgs, sessions: u32) -> anyhow::Result<i32> {
    let c = &args.chain;
    let ok = c.interval.is_finite()
        && c.interval > 0.0
        && c.session_hours.is_finite()
        && c.session_hours >= 0.0
        && c.publish_timeout.is_finite()
        && c.publish_timeout >= 0.0;
    if !ok {
        anyhow::bail!(
            "--interval must be positive, --session-hours and --publish-timeout non-negative"
        );
    }
    let mut meta = args.common.metadata()?;
    let ckpt_ds = match &c.checkpoints_dataset {
        Some(d) => Ref::parse(d).ok_or_else(|| {
            anyhow::anyhow!("--checkpoints-dataset must be OWNER/SLUG, found {d:?}")
        })?,
        None => Ref {
            owner: meta.id.owner.clone(),
            slug: DATASET_SLUG.into(),
        },
    };
    let path = chain_path_for(&meta.path);
    let previous = if c.new_chain {
        None
    } else {
        ChainState::load(&path)?
    };
    if let Some(p) = &previous {
        if p.kernel != meta.id.to_string() {
            anyhow::bail!(
                "{} belongs to a chain of kernel {}, not {}; pass --new-chain to start a new chain",
                path.display(),
                p.kernel,
                meta.id
            );
        }
    }
    let resumed = previous.is_some();
    let mut state = previous
        .unwrap_or_else(|| ChainState::new(&meta.id.to_string(), &ckpt_ds.to_string(), sessions));
    state.sessions_target = sessions;
    let ckpt_ds = Ref::parse(&state.checkpoints_dataset).unwrap_or(ckpt_ds);
    state.save(&path)?;
    if resumed {
        say!(
            "Continuing the chain of {} ({} of {sessions} session(s) done{}).",
            meta.id,
            state.sessions_done,
            match &state.current {
                Some(s) => format!(", following version {}", s.version),
                None => String::new(),
            }
        );
    } else {
        say!(
            "New chain of up to {sessions} session(s) for {} (state in {}).",
            meta.id,
            path.display()
        );
    }
    // The first session may push the local notebook and source; later ones rerun what Kaggle has.
    let first_push = args.push_first && state.current.is_none() && state.sessions_done == 0;
    let local = if first_push {
        Some(super::push::local_text(&meta)?)
    } else {
        None
    };
    let source = if first_push {
        args.source.prepare(&meta)?
    } else {
        None
    };
    let client = args
        .source
        .connect_and_send(&args.common, &mut meta, &source)?;
    let mut local = local;
    let interrupted = super::interrupt_flag()?;
    let interval = Duration::from_secs_f64(c.interval);
    loop {
        if let Some(cur) = state.current.clone() {
            let n = state.sessions_done + 1;
            match follow(&client, &meta.id, &cur, n, interval, &interrupted)? {
                Followed::Interrupted => return stopped_following(&path),
                Followed::Ended(st) if st.status == RunStatus::Complete => {
                    harvest(&args, &client, &mut meta, &ckpt_ds, &mut state, &cur, n)?;
                    state.current = None;
                    state.sessions_done = n;
                    state.save(&path)?;
                }
                Followed::Ended(st) => {
                    state.current = None;
                    state.save(&path)?;
                    return Ok(report_failure(&client, &meta.id, cur.version, &st));
                }
            }
            continue;
        }
        if let Some(reason) = state.stop_reason() {
            say!("Chain finished: {reason}.");
            if let Some(cp) = &state.last_checkpoint {
                say!(
                    "Newest checkpoint: {} (step {}) in dataset {}.",
                    cp.name,
                    cp.step,
                    state.checkpoints_dataset
                );
            }
            return Ok(EXIT_OK);
        }
        if interrupted.load(Ordering::SeqCst) {
            return stopped_following(&path);
        }
        if let Some(code) = quota_stop(&client, c.session_hours)? {
            return Ok(code);
        }
        let text = match local.take() {
            Some(t) => t,
            None => saved_source(&client, &meta)?,
        };
        let req = meta.save_request(text, false, !args.new);
        let (ans, version) = client.save_kernel(&req)?;
        warn_invalid(&ans);
        state.current = Some(ChainSession {
            version,
            started_unix: now_unix(),
        });
        state.save(&path)?;
        say!(
            "Session {} of {sessions}: started {} version {version}{}.",
            state.sessions_done + 1,
            meta.id,
            match &state.last_checkpoint {
                Some(cp) => format!(", resuming from step {}", cp.step),
                None => String::new(),
            }
        );
    }
}

/// `Some(EXIT_QUOTA)` when the GPU quota left this week is below one session.
fn quota_stop(client: &ApiClient, session_hours: f64) -> anyhow::Result<Option<i32>> {
    let q: QuotaAnswer = match client.accelerator_quota() {
        Ok(q) => q,
        Err(e) => {
            shout!("warning: cannot read the GPU quota ({e}); starting the session anyway");
            return Ok(None);
        }
    };
    let resets = q
        .quota_refresh_time
        .as_deref()
        .map(|t| format!(" (resets {t})"))
        .unwrap_or_default();
    match q.gpu_quota.remaining_s() {
        None => {
            say!("GPU quota: Kaggle did not say how much is left; starting the session.");
            Ok(None)
        }
        Some(left) if left < session_hours * 3600.0 => {
            say!(
                "Chain paused: {:.1} h of GPU quota left this week{resets}, less than one session ({session_hours:.1} h). Run the same command after the reset to continue.",
                left / 3600.0
            );
            Ok(Some(EXIT_QUOTA))
        }
        Some(left) => {
            say!("GPU quota: {:.1} h left this week{resets}.", left / 3600.0);
            Ok(None)
        }
    }
}

fn follow(
    client: &ApiClient,
    k: &Ref,
    cur: &ChainSession,
    n: u32,
    interval: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<Followed> {
    say!(
        "Following session {n} (version {}) every {:.0?}; Ctrl-C stops following, not the run.",
        cur.version,
        interval
    );
    let mut last_label = String::new();
    let mut last_progress_line = String::new();
    loop {
        let st = poll(client, k, Some(cur.version), Some(cur.started_unix))?;
        let label = st
            .as_ref()
            .map(|s| s.status.to_string())
            .unwrap_or_else(|| "NOT_YET_VISIBLE".into());
        if label != last_label {
            say!("session {n} (version {}): {label}", cur.version);
            last_label = label;
        }
        if let Some(s) = st {
            if s.status.is_terminal() {
                return Ok(Followed::Ended(s));
            }
            if s.status == RunStatus::Running {
                if let Ok(Some(log)) = client.stored_log(k, Some(cur.version)) {
                    if let Some(p) = last_progress(&log_text(&parse_log_json(&log))) {
                        let line = describe(&p);
                        if line != last_progress_line {
                            say!("  {line}");
                            last_progress_line = line;
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + interval;
        while Instant::now() < deadline {
            if interrupted.load(Ordering::SeqCst) {
                return Ok(Followed::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(50).min(interval));
        }
    }
}

fn report_failure(client: &ApiClient, k: &Ref, version: i64, st: &StatusAnswer) -> i32 {
    shout!(
        "error: session version {version} ended in {}; the chain stops",
        st.status
    );
    if let Some(m) = &st.failure_message {
        shout!("Failure message: {m}");
    }
    match client.stored_log(k, Some(version)) {
        Ok(Some(log)) => {
            shout!("Last lines of the log:");
            for l in tail(&log_text(&parse_log_json(&log)), 30).lines() {
                shout!("  | {l}");
            }
        }
        Ok(None) => shout!("(Kaggle returned no log for this version)"),
        Err(e) => shout!("(cannot fetch the log: {e})"),
    }
    shout!("hint: fix the cause, then run the same command again: the chain resumes from its last published checkpoint");
    match st.status {
        RunStatus::CancelAcknowledged | RunStatus::CancelRequested => EXIT_RUN_CANCELLED,
        _ => EXIT_RUN_FAILED,
    }
}

fn files_ending(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_ending(&p, suffix, out);
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
}

/// Download a completed session's outputs, then publish its newest verified checkpoint and
/// the metrics as the checkpoints dataset's next version.
fn harvest(
    args: &RunArgs,
    client: &ApiClient,
    meta: &mut KernelMetadata,
    ds: &Ref,
    state: &mut ChainState,
    cur: &ChainSession,
    n: u32,
) -> anyhow::Result<()> {
    let dir = args
        .chain
        .chain_dir
        .join(format!("session-{n}-v{}", cur.version));
    let code = download::run(DownloadArgs {
        common: args.common.clone(),
        output_dir: dir.clone(),
        version: Some(cur.version),
        page_size: 50,
    })?;
    if code != EXIT_OK {
        shout!("note: some outputs of version {} could not be downloaded or verified; using the newest checkpoint that verifies", cur.version);
    }
    let log =
        std::fs::read_to_string(dir.join(format!("{}.log", meta.id.slug))).unwrap_or_default();
    if let Some(total) = last_progress(&log).and_then(|p| p.total) {
        state.total_steps = Some(total);
    }
    let good: Vec<_> = find_checkpoint_files(&dir)
        .iter()
        .filter_map(|p| verify_info(p).ok())
        .collect();
    let Some(best) = pick_resume(&good) else {
        shout!("Last lines of the log:");
        for l in tail(&log, 30).lines() {
            shout!("  | {l}");
        }
        anyhow::bail!(
            "session version {} completed but left no verified checkpoint in {}; the chain cannot continue",
            cur.version,
            dir.display()
        );
    };
    if state
        .last_checkpoint
        .as_ref()
        .map(|c| best.step <= c.step)
        .unwrap_or(false)
    {
        shout!(
            "warning: session {n} made no progress (newest checkpoint step {})",
            best.step
        );
    }
    let name = best
        .path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "checkpoint.safetensors".into());
    let mut items = vec![UploadItem {
        name: name.clone(),
        path: best.path.clone(),
    }];
    let mut metrics = vec![];
    files_ending(&dir, ".jsonl", &mut metrics);
    for m in metrics {
        let mname = m
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        if !items.iter().any(|i| i.name == mname) {
            items.push(UploadItem {
                name: mname,
                path: m,
            });
        }
    }
    let notes = format!(
        "chain session {n} (kernel version {}): step {}",
        cur.version, best.step
    );
    let p = publish_files(
        client,
        ds,
        DATASET_TITLE,
        &items,
        &notes,
        false,
        &mut |item, size| say!("uploading {} ({})", item.name, human_bytes(size)),
    )?;
    say!(
        "{} checkpoints dataset {ds}: {name} (step {}).",
        if p.created {
            "Created the private"
        } else {
            "New version of the"
        },
        best.step
    );
    wait_reported(
        client,
        ds,
        super::source::poll_interval(),
        Duration::from_secs_f64(args.chain.publish_timeout),
    )?;
    let dsn = ds.to_string();
    if add_dataset_source(&meta.path, &dsn)? {
        say!("Added {dsn} to dataset_sources in {}.", meta.path.display());
    }
    if !meta
        .dataset_sources
        .iter()
        .any(|s| s == &dsn || s.starts_with(&format!("{dsn}/")))
    {
        meta.dataset_sources.push(dsn);
    }
    state.checkpoint_versions += 1;
    state.last_checkpoint = Some(ChainCheckpoint {
        name,
        step: best.step,
        from_version: cur.version,
    });
    Ok(())
}
