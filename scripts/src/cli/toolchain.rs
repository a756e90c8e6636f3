//! `kaggle_run --toolchain`: make the toolchain cache once. It sends the source, pushes the
//! toolchain notebook as the kernel USER/emergence-lab-toolchain (CPU only, internet on),
//! follows it, checks that its output holds the cache's manifest, and lists the kernel in
//! the training metadata's `kernel_sources`, so that every training session restores the cache
//! instead of installing and building (and can run with internet off).

use super::download::list_outputs;
use super::out::{say, shout};
use super::push::{local_text, warn_invalid, RunArgs};
use super::status::poll;
use super::{EXIT_ERROR, EXIT_OK, EXIT_RUN_FAILED};
use crate::kaggle::api::RunStatus;
use crate::kaggle::chain::tail;
use crate::kaggle::metadata::{add_kernel_source, now_unix};
use crate::kaggle::progress::{human_duration, log_text, parse_log_json};
use crate::kaggle::toolchain::{
    toolchain_notebook, DEFAULT_TORCH, TOOLCHAIN_MANIFEST, TOOLCHAIN_SLUG, TOOLCHAIN_TITLE,
};
use clap::Args;
use std::time::{Duration, Instant};

/// Options of the toolchain kernel (only with --toolchain).
#[derive(Debug, Clone, Args)]
pub struct ToolchainArgs {
    /// torch build the GPU sessions will use (cu130, cu128, cu126 or cpu); a session whose
    /// GPU needs another one installs it and says so.
    #[arg(long, value_name = "BUILD", default_value = DEFAULT_TORCH, requires = "toolchain")]
    pub torch: String,
    /// Give up following the toolchain kernel after this many seconds (it runs 20-60 minutes).
    #[arg(long, value_name = "N", default_value_t = 3.0 * 3600.0, requires = "toolchain")]
    pub toolchain_timeout: f64,
    /// Seconds between status checks.
    #[arg(long, value_name = "N", default_value_t = 60.0, requires = "toolchain")]
    pub toolchain_interval: f64,
}

/// Run `kaggle_run --toolchain`.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let t = &args.toolchain_args;
    super::check_poll_times(
        t.toolchain_interval,
        t.toolchain_timeout,
        "--toolchain-interval",
        "--toolchain-timeout",
    )?;
    let mut meta = args.common.metadata()?;
    let text = toolchain_notebook(&local_text(&meta)?, &t.torch)?;
    let source = args.source.prepare(&meta)?;
    if source.is_none() {
        shout!("warning: --no-source: the toolchain kernel needs the source (its Cargo.lock and the library's dependencies); attach it another way");
    }
    let client = args
        .source
        .connect_and_send(&args.common, &mut meta, &source)?;
    let mut tk = meta.companion(TOOLCHAIN_SLUG, TOOLCHAIN_TITLE);
    let k = tk.id.clone();
    tk.enable_gpu = false;
    tk.enable_internet = true;
    tk.machine_shape = None;
    let src = source.as_ref().map(|(d, _)| d.to_string());
    tk.dataset_sources.retain(|d| Some(d) == src.as_ref());
    tk.kernel_sources.clear();
    let (ans, version) = client.save_kernel(&tk.save_request(text, false, false))?;
    warn_invalid(&ans);
    say!(
        "Toolchain kernel {k} version {version} started (CPU only, internet on, torch {}): it installs Rust, evcxr_jupyter and libtorch and compiles the library (20-60 minutes).",
        t.torch
    );
    let started = now_unix();
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(t.toolchain_interval);
    let mut last = String::new();
    let st = loop {
        let st = poll(&client, &k, Some(version), Some(started))?;
        let label = st
            .as_ref()
            .map(|x| x.status.to_string())
            .unwrap_or_else(|| "NOT_YET_VISIBLE".into());
        if label != last {
            say!(
                "toolchain kernel: {label} ({})",
                human_duration(t0.elapsed().as_secs_f64())
            );
            last = label.clone();
        }
        if let Some(x) = &st {
            if x.status.is_terminal() {
                break x.clone();
            }
        }
        if t0.elapsed().as_secs_f64() >= t.toolchain_timeout {
            shout!(
                "error: the toolchain kernel is still {label} after {}; follow it with kaggle_status or at https://www.kaggle.com/code/{k}, then run this command again",
                human_duration(t0.elapsed().as_secs_f64())
            );
            return Ok(EXIT_ERROR);
        }
        std::thread::sleep(interval);
    };
    if st.status != RunStatus::Complete {
        shout!("error: the toolchain kernel ended in {}", st.status);
        if let Some(m) = &st.failure_message {
            shout!("Failure message: {m}");
        }
        if let Ok(Some(log)) = client.stored_log(&k, Some(version)) {
            shout!("Last lines of the log:");
            for l in tail(&log_text(&parse_log_json(&log)), 30).lines() {
                shout!("  | {l}");
            }
        }
        shout!("hint: the training metadata is unchanged; training sessions still work without the cache");
        return Ok(EXIT_RUN_FAILED);
    }
    let (files, _) = list_outputs(&client, &k, Some(version), 50)?;
    if !files.iter().any(|f| f.file_name == TOOLCHAIN_MANIFEST) {
        shout!(
            "error: the toolchain kernel completed but its output has no {TOOLCHAIN_MANIFEST}: the cache was not made (see its log on https://www.kaggle.com/code/{k}); the training metadata is unchanged"
        );
        return Ok(EXIT_RUN_FAILED);
    }
    say!(
        "Toolchain cache ready: {} file(s) in the output of {k} version {version}.",
        files.len()
    );
    let name = k.to_string();
    if add_kernel_source(&meta.path, &name)? {
        say!(
            "Added {name} to kernel_sources in {}: training sessions restore the cache.",
            meta.path.display()
        );
    } else {
        say!(
            "{name} is already in kernel_sources of {}.",
            meta.path.display()
        );
    }
    say!(
        "Training sessions no longer need internet: you may set \"enable_internet\": false in {}.",
        meta.path.display()
    );
    Ok(EXIT_OK)
}
