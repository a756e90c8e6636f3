//! `kaggle_publish`: upload verified checkpoints as a private dataset (created on first use,
//! a new version afterwards), wait until Kaggle says READY, and make the kernel metadata list
//! the dataset so the next session's resume cell finds it under `/kaggle/input`.

use super::out::say;
use super::{human_bytes, Common, AFTER_HELP, EXIT_OK};
use crate::kaggle::api::Ref;
use crate::kaggle::dataset::{collect_items, UploadItem, DATASET_TITLE};
use crate::kaggle::metadata::{add_dataset_source, DATASET_SLUG};
use crate::kaggle::publish::{publish_files, wait_until_ready, Readiness};
use anyhow::Context;
use clap::Parser;
use emergence_lab_core::checkpoint::{find_checkpoint_files, pick_resume, verify_info};
use std::path::PathBuf;
use std::time::Duration;

/// Publish checkpoints as a private Kaggle dataset for the next session.
///
/// Prerequisites: checkpoints downloaded with kaggle_download (default folder
/// kaggle_output/checkpoints). Every checkpoint is verified first; nothing is uploaded if one
/// is damaged. The first call creates the dataset USER/emergence-lab-checkpoints, later calls
/// add a version (which holds only the files uploaded now). Waits until the dataset is READY,
/// then makes sure notebooks/kernel-metadata.json lists it in dataset_sources.
#[derive(Debug, Parser)]
#[command(name = "kaggle_publish", version, after_help = AFTER_HELP)]
pub struct PublishArgs {
    #[command(flatten)]
    pub common: Common,
    /// Folder whose files are uploaded (sub-folders are zipped).
    #[arg(long, value_name = "DIR", default_value = "kaggle_output/checkpoints")]
    pub dir: PathBuf,
    /// Dataset OWNER/SLUG (default: the kernel owner's emergence-lab-checkpoints).
    #[arg(long, value_name = "OWNER/SLUG")]
    pub dataset: Option<String>,
    /// Version notes.
    #[arg(long, short = 'm', value_name = "TEXT")]
    pub message: Option<String>,
    /// Upload only the checkpoint to resume from (smaller, faster).
    #[arg(long)]
    pub latest_only: bool,
    /// Ask Kaggle to delete the dataset's older versions.
    #[arg(long)]
    pub delete_old_versions: bool,
    /// Return after the upload without waiting for READY.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds between readiness checks.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    pub interval: f64,
    /// Give up waiting for READY after this many seconds.
    #[arg(long, value_name = "N", default_value_t = 1800.0)]
    pub timeout: f64,
    /// Do not add the dataset to dataset_sources in the kernel metadata.
    #[arg(long)]
    pub no_update_metadata: bool,
}

/// Run `kaggle_publish`.
pub fn run(args: PublishArgs) -> anyhow::Result<i32> {
    super::check_poll_times(args.interval, args.timeout, "--interval", "--timeout")?;
    let meta = args.common.metadata()?;
    let dataset = match &args.dataset {
        Some(d) => Ref::parse(d)
            .ok_or_else(|| anyhow::anyhow!("--dataset must be OWNER/SLUG, found {d:?}"))?,
        None => Ref {
            owner: meta.id.owner.clone(),
            slug: DATASET_SLUG.into(),
        },
    };
    if !args.dir.is_dir() {
        anyhow::bail!(
            "{} is not a folder; download the run's outputs first with kaggle_download (or pass --dir)",
            args.dir.display()
        );
    }
    let paths = find_checkpoint_files(&args.dir);
    if paths.is_empty() {
        anyhow::bail!(
            "no checkpoints (*.safetensors) in {}; run kaggle_download first",
            args.dir.display()
        );
    }
    let mut good = vec![];
    for p in &paths {
        good.push(verify_info(p).context("refusing to publish a damaged checkpoint")?);
    }
    let zip_dir = std::env::temp_dir().join(format!("kaggle-publish-{}", std::process::id()));
    std::fs::create_dir_all(&zip_dir)
        .with_context(|| format!("cannot create {}", zip_dir.display()))?;
    let result = publish(&args, &dataset, &good, &zip_dir);
    let _ = std::fs::remove_dir_all(&zip_dir);
    let newest = pick_resume(&good).map(|c| c.step).unwrap_or(0);
    result?;
    if !args.no_update_metadata {
        if add_dataset_source(&args.common.metadata, &dataset.to_string())? {
            say!(
                "Added {dataset} to dataset_sources in {}.",
                args.common.metadata.display()
            );
        } else {
            say!(
                "{} already lists {dataset}.",
                args.common.metadata.display()
            );
        }
    }
    say!("Next session: cargo run --release -p emergence_lab_scripts --bin kaggle_run   (resumes from step {newest})");
    Ok(EXIT_OK)
}

fn publish(
    args: &PublishArgs,
    dataset: &Ref,
    good: &[emergence_lab_core::checkpoint::CheckpointInfo],
    zip_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let items: Vec<UploadItem> = if args.latest_only {
        let c =
            pick_resume(good).ok_or_else(|| anyhow::anyhow!("no usable checkpoint to publish"))?;
        vec![UploadItem {
            name: c
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: c.path.clone(),
        }]
    } else {
        collect_items(&args.dir, zip_dir)?
    };
    let (client, _) = args.common.connect()?;
    let notes = args.message.clone().unwrap_or_else(|| {
        let step = pick_resume(good).map(|c| c.step).unwrap_or(0);
        format!("emergence-lab checkpoints up to step {step}")
    });
    let p = publish_files(
        &client,
        dataset,
        DATASET_TITLE,
        &items,
        &notes,
        args.delete_old_versions,
        &mut |item, size| say!("uploading {} ({})", item.name, human_bytes(size)),
    )?;
    if p.created {
        say!("Private dataset {dataset} created.");
    } else {
        say!("New version of dataset {dataset} created.");
    }
    if let Some(u) = p.answer.url.filter(|u| !u.is_empty()) {
        say!("URL: {u}");
    }
    if args.no_wait {
        say!("Not waiting for Kaggle to process it; check before the next kaggle_run.");
        return Ok(());
    }
    wait_reported(
        &client,
        dataset,
        Duration::from_secs_f64(args.interval),
        Duration::from_secs_f64(args.timeout),
    )
}

/// Wait for `dataset` to be READY, printing each status; an error when it failed or the wait
/// ran out.
pub fn wait_reported(
    client: &crate::kaggle::client::ApiClient,
    dataset: &Ref,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<()> {
    let r = wait_until_ready(client, dataset, interval, timeout, &mut |s| {
        say!("dataset status: {s}")
    })?;
    match r {
        Readiness::Ready(secs) => {
            say!("dataset {dataset} is ready ({secs} s).");
            Ok(())
        }
        Readiness::Failed(s) => anyhow::bail!(
            "Kaggle could not process dataset {dataset} (status {s}); publish again"
        ),
        Readiness::TimedOut(s) => anyhow::bail!(
            "dataset {dataset} is still {s} after {:.0} s; wait and check its page (https://www.kaggle.com/datasets/{dataset}) before the next kaggle_run",
            timeout.as_secs_f64()
        ),
    }
}
