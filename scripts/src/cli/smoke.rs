//! `kaggle_run --smoke`: a smoke test for a real account. It sends the source, pushes the
//! training notebook shrunk to a few iterations (a kernel of its own,
//! USER/emergence-lab-smoke, GPU on), follows the run, then checks the log for the CUDA device
//! line and the outputs for a verified checkpoint, and prints a one-line verdict with the
//! phase times.

use super::download::list_outputs;
use super::out::{say, shout};
use super::push::{local_text, warn_invalid, RunArgs};
use super::status::poll;
use super::{EXIT_ERROR, EXIT_OK, EXIT_RUN_FAILED};
use crate::kaggle::api::RunStatus;
use crate::kaggle::chain::tail;
use crate::kaggle::client::StorageClient;
use crate::kaggle::download::{fetch_file, safe_join};
use crate::kaggle::metadata::now_unix;
use crate::kaggle::progress::{human_duration, log_text, parse_log_json};
use crate::kaggle::smoke::{
    device_line, judge, setup_times, smoke_notebook, SMOKE_SLUG, SMOKE_TITLE,
};
use crate::kaggle::toolchain::TOOLCHAIN_SLUG;
use anyhow::Context;
use clap::Args;
use emergence_lab_core::checkpoint::{pick_resume, verify_info};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of the smoke test (only with --smoke).
#[derive(Debug, Clone, Args)]
pub struct SmokeArgs {
    /// Training steps of the smoke run (a few PPO iterations of a small config).
    #[arg(long, value_name = "N", default_value_t = 4096, requires = "smoke")]
    pub smoke_steps: u64,
    /// Give up on the run after this many seconds (queue, setup and build included).
    #[arg(long, value_name = "N", default_value_t = 3600.0, requires = "smoke")]
    pub smoke_timeout: f64,
    /// Seconds between status checks.
    #[arg(long, value_name = "N", default_value_t = 30.0, requires = "smoke")]
    pub smoke_interval: f64,
    /// Where the smoke run's checkpoints and log are downloaded.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "kaggle_output/smoke",
        requires = "smoke"
    )]
    pub smoke_dir: PathBuf,
}

fn secs(d: Duration) -> String {
    human_duration(d.as_secs_f64())
}

/// Run `kaggle_run --smoke`.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let s = &args.smoke_args;
    super::check_poll_times(
        s.smoke_interval,
        s.smoke_timeout,
        "--smoke-interval",
        "--smoke-timeout",
    )?;
    let mut meta = args.common.metadata()?;
    let text = smoke_notebook(&local_text(&meta)?, s.smoke_steps)
        .context("cannot add the smoke cell to the notebook")?;
    let source = args.source.prepare(&meta)?;
    let t_push = Instant::now();
    let client = args
        .source
        .connect_and_send(&args.common, &mut meta, &source)?;
    let mut smoke = meta.companion(SMOKE_SLUG, SMOKE_TITLE);
    let k = smoke.id.clone();
    // Only the source and the toolchain cache: the smoke run starts fresh and must write its
    // own checkpoint (no checkpoints dataset, no previous output).
    let src = source.as_ref().map(|(d, _)| d.to_string());
    smoke.dataset_sources.retain(|d| Some(d) == src.as_ref());
    let toolchain = format!("{}/{TOOLCHAIN_SLUG}", meta.id.owner);
    smoke.kernel_sources.retain(|k| *k == toolchain);
    let (ans, version) = client.save_kernel(&smoke.save_request(text, false, false))?;
    warn_invalid(&ans);
    let push_time = t_push.elapsed();
    say!(
        "Smoke run {k} version {version} started ({} steps, GPU {}).",
        s.smoke_steps,
        smoke.machine_shape.as_deref().unwrap_or("default")
    );
    let started = now_unix();
    let t_run = Instant::now();
    let interval = Duration::from_secs_f64(s.smoke_interval);
    let mut queued: Option<Duration> = None;
    let mut last = String::new();
    let st = loop {
        let st = poll(&client, &k, Some(version), Some(started))?;
        let label = st
            .as_ref()
            .map(|x| x.status.to_string())
            .unwrap_or_else(|| "NOT_YET_VISIBLE".into());
        if label != last {
            say!("smoke run: {label} ({})", secs(t_run.elapsed()));
            last = label.clone();
        }
        if let Some(x) = &st {
            if queued.is_none() && x.status != RunStatus::Queued {
                queued = Some(t_run.elapsed());
            }
            if x.status.is_terminal() {
                break x.clone();
            }
        }
        if t_run.elapsed().as_secs_f64() >= s.smoke_timeout {
            say!(
                "SMOKE FAIL: the run is still {label} after {} (see https://www.kaggle.com/code/{k}); push {}",
                secs(t_run.elapsed()),
                secs(push_time)
            );
            return Ok(EXIT_ERROR);
        }
        std::thread::sleep(interval);
    };
    let queued = queued.unwrap_or_default();
    let ran = t_run.elapsed().saturating_sub(queued);
    let t_check = Instant::now();
    let log = client
        .stored_log(&k, Some(version))?
        .map(|l| log_text(&parse_log_json(&l)))
        .unwrap_or_default();
    let times = |check: Duration| {
        let mut t = format!(
            "times: push {}, queued {}, run {}, check {}",
            secs(push_time),
            secs(queued),
            secs(ran),
            secs(check)
        );
        if let Some(st) = setup_times(&log) {
            t.push_str(&format!(" | setup cell: {st}"));
        }
        t
    };
    if st.status != RunStatus::Complete {
        let why = st
            .failure_message
            .clone()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        shout!("Last lines of the log:");
        for l in tail(&log, 30).lines() {
            shout!("  | {l}");
        }
        say!(
            "SMOKE FAIL: the run ended in {}{why}; {}",
            st.status,
            times(t_check.elapsed())
        );
        return Ok(EXIT_RUN_FAILED);
    }
    let dir = s.smoke_dir.join(format!("v{version}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join(format!("{SMOKE_SLUG}.log")), &log)
        .with_context(|| format!("cannot write the log into {}", dir.display()))?;
    let storage = StorageClient::new(
        client.settings(),
        Duration::from_secs(300).max(client.settings().timeout),
    )?;
    let (files, _) = list_outputs(&client, &k, Some(version), 50)?;
    let mut good = vec![];
    for f in files
        .iter()
        .filter(|f| f.file_name.ends_with(".safetensors"))
    {
        let dest = match safe_join(&dir, &f.file_name) {
            Ok(d) => d,
            Err(why) => {
                shout!("refused: {why}");
                continue;
            }
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match fetch_file(&storage, &f.file_name, &f.url, &dest, None, &mut |_| {}) {
            Ok(_) => match verify_info(&dest) {
                Ok(info) => good.push((f.file_name.clone(), info)),
                Err(e) => shout!("note: {e}"),
            },
            Err(e) => shout!("note: cannot download {}: {e}", f.file_name),
        }
    }
    let infos: Vec<_> = good.iter().map(|(_, i)| i.clone()).collect();
    let best = pick_resume(&infos).and_then(|b| good.iter().find(|(_, i)| i.path == b.path));
    let device = device_line(&log);
    let verdict = judge(device.as_ref(), best.map(|(n, i)| (n.as_str(), i.step)));
    match verdict {
        Ok(ok) => {
            say!("SMOKE PASS: {ok}; {}", times(t_check.elapsed()));
            Ok(EXIT_OK)
        }
        Err(why) => {
            say!("SMOKE FAIL: {why}; {}", times(t_check.elapsed()));
            Ok(EXIT_ERROR)
        }
    }
}
