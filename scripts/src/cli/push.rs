//! `kaggle_push` (save without running) and `kaggle_run` (save and run, remembering the
//! version): both validate the metadata and notebook before anything is sent.

use super::out::{say, shout};
use super::{Common, AFTER_HELP, EXIT_OK};
use crate::kaggle::api::SaveKernelAnswer;
use crate::kaggle::client::ApiClient;
use crate::kaggle::metadata::{now_unix, KernelMetadata, RunState};
use crate::kaggle::notebook_bridge::kaggle_notebook_text;
use crate::kaggle::KaggleError;
use clap::Parser;

/// Push the notebook to Kaggle without running it (QUICK_SAVE).
///
/// Prerequisites: kaggle_setup has written notebooks/kernel-metadata.json and the notebook it
/// names exists. The metadata and notebook are validated first; nothing is sent if either is
/// invalid. Prints the new version number and the kernel's URL.
#[derive(Debug, Parser)]
#[command(name = "kaggle_push", version, after_help = AFTER_HELP)]
pub struct PushArgs {
    #[command(flatten)]
    pub common: Common,
    /// First push of a new kernel: ignore `id_no` from the metadata (the kernel is created by
    /// its slug) and forget any remembered run.
    #[arg(long)]
    pub new: bool,
}

/// Start the notebook on Kaggle (save and run) and remember the version for status/download.
///
/// Without --push-first, the version already pushed to Kaggle (kaggle_push) is run again with
/// the settings of the local metadata; with --push-first the local notebook is validated,
/// pushed and run in one step.
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
}

fn local_text(meta: &KernelMetadata) -> Result<String, KaggleError> {
    kaggle_notebook_text(&meta.code_file)
}

fn warn_invalid(ans: &SaveKernelAnswer) {
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
    let meta = args.common.metadata()?;
    let text = local_text(&meta)?;
    let (client, _) = args.common.connect()?;
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

fn saved_source(client: &ApiClient, meta: &KernelMetadata) -> anyhow::Result<String> {
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
    let meta = args.common.metadata()?;
    let local = if args.push_first {
        Some(local_text(&meta)?)
    } else {
        None
    };
    let (client, _) = args.common.connect()?;
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
