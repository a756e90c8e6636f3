//! Sending the project's source with a push (`kaggle_push`, `kaggle_run --push-first`, the
//! session chain): the tracked files at HEAD become a private dataset (default
//! `USER/emergence-lab-src`), uploaded only when their content hash changed, waited for until
//! READY (bounded), and listed in the kernel metadata's `dataset_sources`.

use super::human_bytes;
use super::out::say;
use super::publish::wait_reported;
use crate::kaggle::api::Ref;
use crate::kaggle::client::ApiClient;
use crate::kaggle::dataset::{normalise_status, UploadItem};
use crate::kaggle::metadata::{add_dataset_source, KernelMetadata};
use crate::kaggle::publish::publish_files;
use crate::kaggle::source::{
    Snapshot, SourceError, SourceRecord, ARCHIVE_NAME, MANIFEST_NAME, RECORD_FILE, SOURCE_SLUG,
    SOURCE_TITLE,
};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable: seconds between dataset readiness checks (default 10).
pub const DATASET_POLL_ENV: &str = "KAGGLE_HELPERS_DATASET_POLL_S";

/// Options of the source upload.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Send the working-tree versions of tracked files even when they differ from HEAD (the
    /// manifest records the changed files). Untracked files never travel.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Source dataset OWNER/SLUG (default: the kernel owner's emergence-lab-src).
    #[arg(long, value_name = "OWNER/SLUG")]
    pub source_dataset: Option<String>,
    /// Give up waiting for the source dataset to be READY after this many seconds.
    #[arg(long, value_name = "N", default_value_t = 900.0)]
    pub source_timeout: f64,
    /// Do not send the source (the notebook then needs a copy attached another way, or
    /// `repo_url` set in its source cell).
    #[arg(long, conflicts_with_all = ["allow_dirty", "source_dataset"])]
    pub no_source: bool,
}

impl SourceArgs {
    /// The source dataset for the kernel in `meta`.
    pub fn dataset(&self, meta: &KernelMetadata) -> anyhow::Result<Ref> {
        match &self.source_dataset {
            Some(d) => Ref::parse(d)
                .ok_or_else(|| anyhow::anyhow!("--source-dataset must be OWNER/SLUG, found {d:?}")),
            None => Ok(Ref {
                owner: meta.id.owner.clone(),
                slug: SOURCE_SLUG.into(),
            }),
        }
    }

    /// Check the flags and collect the source before anything is sent (refusing a dirty tree
    /// unless --allow-dirty). `None` with --no-source.
    pub fn prepare(&self, meta: &KernelMetadata) -> anyhow::Result<Option<(Ref, Snapshot)>> {
        if self.no_source {
            return Ok(None);
        }
        if !(self.source_timeout.is_finite() && self.source_timeout >= 0.0) {
            anyhow::bail!("--source-timeout must be a non-negative number of seconds");
        }
        let dataset = self.dataset(meta)?;
        let dir = meta
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let snap = Snapshot::collect(dir, self.allow_dirty).map_err(|e| match e {
            SourceError::Dirty { .. } => anyhow::Error::new(e).context(
                "refusing to send a source that is not committed: commit the changes, or pass --allow-dirty to send the working-tree versions of tracked files",
            ),
            other => anyhow::Error::new(other).context("cannot collect the source to send"),
        })?;
        let m = &snap.manifest;
        say!(
            "Source: commit {}{}, {} tracked files ({}), content sha256 {}",
            &m.commit[..m.commit.len().min(12)],
            if m.dirty {
                format!(
                    " plus {} uncommitted change(s) (--allow-dirty)",
                    m.changed_files.len()
                )
            } else {
                String::new()
            },
            m.files,
            human_bytes(m.bytes),
            &m.content_sha256[..16]
        );
        Ok(Some((dataset, snap)))
    }
}

pub(crate) fn poll_interval() -> Duration {
    let s = std::env::var(DATASET_POLL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(10.0);
    Duration::from_secs_f64(s)
}

impl SourceArgs {
    /// Connects to Kaggle, then sends the source [`SourceArgs::prepare`] collected (if any):
    /// the one sequence every command that pushes a notebook starts with.
    pub fn connect_and_send(
        &self,
        common: &super::Common,
        meta: &mut KernelMetadata,
        source: &Option<(Ref, Snapshot)>,
    ) -> anyhow::Result<ApiClient> {
        let (client, _) = common.connect()?;
        if let Some((dataset, snap)) = source {
            send_source(&client, meta, dataset, snap, self.source_timeout)?;
        }
        Ok(client)
    }
}

/// Upload the source when its content changed since the last upload to `dataset` (or the
/// dataset is missing), wait until it is READY, and make sure the metadata file and `meta`
/// list it in `dataset_sources`.
pub fn send_source(
    client: &ApiClient,
    meta: &mut KernelMetadata,
    dataset: &Ref,
    snap: &Snapshot,
    timeout_s: f64,
) -> anyhow::Result<()> {
    let record_path = meta
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join(RECORD_FILE);
    let hash = &snap.manifest.content_sha256;
    let record = SourceRecord::load(&record_path);
    let remote = client
        .dataset_status(dataset)?
        .map(|s| normalise_status(&s));
    let unchanged = record
        .as_ref()
        .map(|r| r.dataset == dataset.to_string() && &r.content_sha256 == hash)
        .unwrap_or(false);
    let interval = poll_interval();
    let timeout = Duration::from_secs_f64(timeout_s);
    if unchanged && remote.is_some() {
        say!("Source unchanged since the last upload to {dataset}: not uploading it again.");
        if remote.as_deref() != Some("READY") {
            wait_reported(client, dataset, interval, timeout)?;
        }
    } else {
        let dir = tempdir_for_source()?;
        let result = upload(client, dataset, snap, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        result?;
        // Remember the upload before waiting: a timeout must not cause a second upload.
        SourceRecord {
            dataset: dataset.to_string(),
            content_sha256: hash.clone(),
            commit: snap.manifest.commit.clone(),
        }
        .save(&record_path)?;
        wait_reported(client, dataset, interval, timeout)?;
    }
    let name = dataset.to_string();
    if add_dataset_source(&meta.path, &name)? {
        say!(
            "Added {name} to dataset_sources in {}.",
            meta.path.display()
        );
    }
    if !meta
        .dataset_sources
        .iter()
        .any(|s| s == &name || s.starts_with(&format!("{name}/")))
    {
        meta.dataset_sources.insert(0, name);
    }
    Ok(())
}

fn tempdir_for_source() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kaggle-source-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn upload(client: &ApiClient, dataset: &Ref, snap: &Snapshot, dir: &Path) -> anyhow::Result<()> {
    let (archive, manifest) = snap.write(dir)?;
    let items = vec![
        UploadItem {
            name: MANIFEST_NAME.into(),
            path: manifest,
        },
        UploadItem {
            name: ARCHIVE_NAME.into(),
            path: archive,
        },
    ];
    let m = &snap.manifest;
    let notes = format!(
        "source {} commit {}{}",
        &m.content_sha256[..16],
        m.commit,
        if m.dirty { " (dirty)" } else { "" }
    );
    let p = publish_files(
        client,
        dataset,
        SOURCE_TITLE,
        &items,
        &notes,
        false,
        &mut |item, size| say!("uploading {} ({})", item.name, human_bytes(size)),
    )
    .context("uploading the source failed")?;
    say!(
        "{} source dataset {dataset}.",
        if p.created {
            "Created the private"
        } else {
            "New version of the"
        }
    );
    Ok(())
}
