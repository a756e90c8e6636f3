//! Publishing files as a private dataset and waiting for Kaggle to process it: shared by the
//! checkpoint publisher, the source upload and the session chain.

use super::api::Ref;
use super::client::{ApiClient, StorageClient};
use super::dataset::{normalise_status, DatasetAnswer, UploadItem};
use super::error::KaggleError;
use std::time::{Duration, Instant};

/// What a publication did.
#[derive(Debug)]
pub struct Published {
    /// Kaggle's answer.
    pub answer: DatasetAnswer,
    /// True when the dataset was created (first publication), false for a new version.
    pub created: bool,
}

/// Upload `items` and create the dataset `d` (when it does not exist yet) or add a version
/// holding exactly these files. `on_upload` is called before each file with its size.
pub fn publish_files(
    client: &ApiClient,
    d: &Ref,
    title: &str,
    items: &[UploadItem],
    notes: &str,
    delete_old: bool,
    on_upload: &mut dyn FnMut(&UploadItem, u64),
) -> Result<Published, KaggleError> {
    let storage = StorageClient::new(
        client.settings(),
        Duration::from_secs(300).max(client.settings().timeout),
    )?;
    let exists = client.dataset_status(d)?.is_some();
    let mut tokens = vec![];
    for item in items {
        let size = std::fs::metadata(&item.path).map(|m| m.len()).unwrap_or(0);
        on_upload(item, size);
        tokens.push(client.upload_blob(&storage, item)?);
    }
    if exists {
        let answer = client.create_dataset_version(d, notes, delete_old, &tokens)?;
        Ok(Published {
            answer,
            created: false,
        })
    } else {
        let answer = client.create_dataset(d, title, &tokens)?;
        Ok(Published {
            answer,
            created: true,
        })
    }
}

/// How waiting for a dataset ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `READY` after this many seconds.
    Ready(u64),
    /// Kaggle reported `FAILED` or `DELETED`.
    Failed(String),
    /// Still in this state when the time ran out.
    TimedOut(String),
}

/// Poll `GetDatasetStatus` every `interval` until `READY`, `FAILED`/`DELETED`, or `timeout`;
/// `on_change` is called with each new status (`NOT_YET_VISIBLE` while Kaggle answers 404).
pub fn wait_until_ready(
    client: &ApiClient,
    d: &Ref,
    interval: Duration,
    timeout: Duration,
    on_change: &mut dyn FnMut(&str),
) -> Result<Readiness, KaggleError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let s = client
            .dataset_status(d)?
            .map(|s| normalise_status(&s))
            .unwrap_or_else(|| "NOT_YET_VISIBLE".into());
        if s != last {
            on_change(&s);
            last = s.clone();
        }
        match s.as_str() {
            "READY" => return Ok(Readiness::Ready(start.elapsed().as_secs())),
            "FAILED" | "DELETED" => return Ok(Readiness::Failed(s)),
            _ => {}
        }
        if start.elapsed() >= timeout {
            return Ok(Readiness::TimedOut(s));
        }
        std::thread::sleep(
            interval
                .min(timeout.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(10)),
        );
    }
}
