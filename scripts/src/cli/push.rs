//! `kaggle_push` (save without running) and `kaggle_run` (save and run, remembering the
//! version): both validate the metadata and notebook before anything is sent.

use super::out::{say, shout};
use super::source::SourceArgs;
use super::{Common, AFTER_HELP, EXIT_OK};
use crate::kaggle::api::SaveKernelAnswer;
use crate::kaggle::client::ApiClient;
use crate::kaggle::metadata::{now_unix, KernelMetadata, RunState};
use crate::kaggle::notebook_bridge::kaggle_notebook_text;
use crate::kaggle::source::Snapshot;
use crate::kaggle::KaggleError;
use clap::Parser;

/// Push the notebook to Kaggle without running it (QUICK_SAVE).
///
/// Prerequisites: kaggle_setup has written notebooks/kernel-metadata.json and the notebook it
/// names exists. The metadata and notebook are validated first, and the source (the files git
/// tracks at HEAD) is collected; nothing is sent if either is invalid or tracked files differ
/// from HEAD (unless --allow-dirty). The source goes up as the private dataset
/// USER/emergence-lab-src (only when its content changed), then the notebook is saved.
/// Prints the new version number and the kernel's URL.
#[derive(Debug, Parser)]
#[command(name = "kaggle_push", version, after_help = AFTER_HELP)]
pub struct PushArgs {
    #[command(flatten)]
    pub common: Common,
    /// First push of a new kernel: ignore `id_no` from the metadata (the kernel is created by
    /// its slug) and forget any remembered run.
    #[arg(long)]
    pub new: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only write the source dataset's files (emergence-lab-src.zip and
    /// emergence-lab-source.json) of the repository in the current folder into DIR, e.g. to
    /// attach them by hand; nothing is sent and no metadata or credentials are needed.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["new", "no_source"])]
    pub write_source: Option<std::path::PathBuf>,
}

/// Start the notebook on Kaggle (save and run) and remember the version for status/download.
///
/// Without --push-first, the version already pushed to Kaggle (kaggle_push) is run again with
/// the settings of the local metadata; with --push-first the source is sent (as kaggle_push
/// does) and the local notebook is validated, pushed and run in one step. With --sessions N the
/// run continues across sessions (see --sessions).
#[derive(Debug, Parser)]
#[command(name = "kaggle_run", version, after_help = AFTER_HELP)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Push the local notebook first (validate, convert, save and run it).
    #[arg(long)]
    pub push_first: bool,
    /// With --push-first: the kernel is new (ignore `id_no`).
    #[arg(long)]
    pub new: bool,
    /// Source options (used with --push-first).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Run a long training across N sessions: start a session, follow it, publish its newest
    /// verified checkpoint and metrics as the checkpoints dataset's next version, start the
    /// next session (which resumes from it); stops after N sessions, at total_steps, on a
    /// failed session, or when the weekly GPU quota would not cover another session. Running
    /// the same command again continues the chain; Ctrl-C stops following, not the run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sessions: Option<u32>,
    #[command(flatten)]
    pub chain: super::chain::ChainArgs,
    /// Smoke test for a real account: push the notebook shrunk to a few iterations as the
    /// kernel USER/emergence-lab-smoke (GPU on, source sent), follow it, then check the log for
    /// the CUDA device line and the outputs for a verified checkpoint; prints one verdict line
    /// (SMOKE PASS / SMOKE FAIL) with the phase times.
    #[arg(long, conflicts_with_all = ["sessions", "push_first"])]
    pub smoke: bool,
    #[command(flatten)]
    pub smoke_args: super::smoke::SmokeArgs,
    /// Make the toolchain cache once: push a CPU-only kernel USER/emergence-lab-toolchain
    /// (internet on) that installs Rust, evcxr_jupyter and libtorch and compiles the library,
    /// leaving them as its output; follow it, then list it in the metadata's kernel_sources so
    /// that every training session restores it (in minutes, internet off) instead of building.
    #[arg(long, conflicts_with_all = ["sessions", "push_first", "smoke"])]
    pub toolchain: bool,
    #[command(flatten)]
    pub toolchain_args: super::toolchain::ToolchainArgs,
}

pub(crate) fn local_text(meta: &KernelMetadata) -> Result<String, KaggleError> {
    kaggle_notebook_text(&meta.code_file)
}

pub(crate) fn warn_invalid(ans: &SaveKernelAnswer) {
    let lists = [
        ("tags", &ans.invalid_tags),
        ("dataset sources", &ans.invalid_dataset_sources),
        ("kernel sources", &ans.invalid_kernel_sources),
        ("competition sources", &ans.invalid_competition_sources),
        ("model sources", &ans.invalid_model_sources),
    ];
    for (what, l) in lists {
        if !l.is_empty() {
            shout!("warning: Kaggle ignored these {what}: {}", l.join(", "));
        }
    }
    if !ans.invalid_dataset_sources.is_empty() || !ans.invalid_kernel_sources.is_empty() {
        shout!("note: a checkpoint dataset exists only after the first kaggle_publish, and the kernel's own output only after its first run; until then Kaggle drops those sources and the notebook starts fresh");
    }
}

fn url_of(ans: &SaveKernelAnswer, meta: &KernelMetadata) -> String {
    ans.url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("https://www.kaggle.com/code/{}", meta.id))
}

/// Run `kaggle_push`.
pub fn push(args: PushArgs) -> anyhow::Result<i32> {
    if let Some(dir) = &args.write_source {
        let snap = Snapshot::collect(std::path::Path::new("."), args.source.allow_dirty)?;
        let (archive, manifest) = snap.write(dir)?;
        say!(
            "Wrote {} and {} (commit {}{}); nothing was sent.",
            archive.display(),
            manifest.display(),
            snap.manifest.commit,
            if snap.manifest.dirty { ", dirty" } else { "" }
        );
        return Ok(EXIT_OK);
    }
    let mut meta = args.common.metadata()?;
    let text = local_text(&meta)?;
    let source = args.source.prepare(&meta)?;
    let client = args
        .source
        .connect_and_send(&args.common, &mut meta, &source)?;
    let req = meta.save_request(text, true, !args.new);
    let (ans, version) = client.save_kernel(&req)?;
    warn_invalid(&ans);
    if args.new {
        let _ = std::fs::remove_file(meta.state_path());
    }
    say!(
        "Pushed {} version {version} (saved without running).",
        meta.id
    );
    say!("URL: {}", url_of(&ans, &meta));
    say!("Start it with: cargo run --release -p emergence_lab_scripts --bin kaggle_run");
    Ok(EXIT_OK)
}

pub(crate) fn saved_source(client: &ApiClient, meta: &KernelMetadata) -> anyhow::Result<String> {
    let k = client.get_kernel(&meta.id)?;
    if k.blob.source.trim().is_empty() {
        anyhow::bail!(KaggleError::NotFound {
            what: format!("saved notebook of kernel {}", meta.id),
            call: "GetKernel".into(),
            detail: ": the kernel has no saved source; push it with kaggle_push --new or use kaggle_run --push-first".into(),
        });
    }
    Ok(k.blob.source)
}

/// Run `kaggle_run`.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    if args.smoke {
        return super::smoke::run(args);
    }
    if args.toolchain {
        return super::toolchain::run(args);
    }
    if let Some(n) = args.sessions {
        return super::chain::run(args, n);
    }
    let mut meta = args.common.metadata()?;
    let local = if args.push_first {
        Some(local_text(&meta)?)
    } else {
        None
    };
    let source = if args.push_first {
        args.source.prepare(&meta)?
    } else {
        None
    };
    let client = args
        .source
        .connect_and_send(&args.common, &mut meta, &source)?;
    let text = match local {
        Some(t) => t,
        None => saved_source(&client, &meta)?,
    };
    let req = meta.save_request(text, false, !args.new);
    let (ans, version) = client.save_kernel(&req)?;
    warn_invalid(&ans);
    let url = url_of(&ans, &meta);
    let state = RunState {
        kernel: meta.id.to_string(),
        version,
        url: url.clone(),
        started_unix: now_unix(),
    };
    state.save(&meta.state_path())?;
    say!("Started {} version {version} on Kaggle.", meta.id);
    say!("URL: {url}");
    say!(
        "Remembered in {} so kaggle_status and kaggle_download follow this run.",
        meta.state_path().display()
    );
    say!("Watch it with: cargo run --release -p emergence_lab_scripts --bin kaggle_status -- --watch");
    Ok(EXIT_OK)
}
