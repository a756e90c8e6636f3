//! Publishing checkpoints as a private Kaggle dataset: blob uploads, `CreateDataset` on first
//! use, `CreateDatasetVersion` afterwards, and waiting until the dataset is `READY`.
//! Sub-folders are zipped (one archive per top-level folder) like the CLI's `--dir-mode zip`.

use super::api::{de_opt_int, Ref};
use super::client::{
    check_url_scheme, display_url, error_chain, ApiClient, Idempotency, StorageClient,
};
use super::error::{one_line, KaggleError};
use reqwest::blocking::Body;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// RPC service of the dataset calls.
pub const DATASETS: &str = "datasets.DatasetApiService";
/// Title of the checkpoint dataset (6-50 characters).
pub const DATASET_TITLE: &str = "Emergence Lab Checkpoints";

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadItem {
    /// Name in the dataset.
    pub name: String,
    /// Local file (a zip for folders).
    pub path: PathBuf,
}

fn io(action: &'static str, path: &Path, e: std::io::Error) -> KaggleError {
    KaggleError::Io {
        action,
        path: path.to_path_buf(),
        source: e,
    }
}

fn skip_name(name: &str) -> bool {
    name.starts_with('.') || name.contains(".part-") || name.ends_with(".tmp")
}

/// Files of `dir` to upload: regular top-level files, and each sub-folder zipped into
/// `zip_dir/<folder>.zip`. Hidden and partial files are skipped.
pub fn collect_items(dir: &Path, zip_dir: &Path) -> Result<Vec<UploadItem>, KaggleError> {
    let rd = std::fs::read_dir(dir).map_err(|e| io("cannot read folder", dir, e))?;
    let mut items = vec![];
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if skip_name(&name) {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            let zp = zip_dir.join(format!("{name}.zip"));
            zip_folder(&p, &zp)?;
            items.push(UploadItem {
                name: format!("{name}.zip"),
                path: zp,
            });
        } else if p.is_file() {
            items.push(UploadItem { name, path: p });
        }
    }
    Ok(items)
}

/// Zip a folder (stored, no compression: checkpoints do not compress) with relative names.
pub fn zip_folder(src: &Path, out: &Path) -> Result<(), KaggleError> {
    let f = std::fs::File::create(out).map_err(|e| io("cannot create", out, e))?;
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut stack = vec![src.to_path_buf()];
    let mut files = vec![];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(|e| io("cannot read folder", &d, e))?
            .flatten()
        {
            let p = e.path();
            if skip_name(&e.file_name().to_string_lossy()) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let rel = p
            .strip_prefix(src)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        z.start_file(rel, opts)
            .map_err(|e| io("cannot zip", &p, std::io::Error::other(e.to_string())))?;
        let mut r = std::fs::File::open(&p).map_err(|e| io("cannot read", &p, e))?;
        std::io::copy(&mut r, &mut z).map_err(|e| io("cannot zip", &p, e))?;
    }
    z.finish()
        .map_err(|e| {
            io(
                "cannot finish zip",
                out,
                std::io::Error::other(e.to_string()),
            )
        })?
        .flush()
        .map_err(|e| io("cannot write", out, e))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BlobAnswer {
    token: String,
    create_url: String,
}

/// Answer of `CreateDataset` / `CreateDatasetVersion`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DatasetAnswer {
    /// `owner/slug`.
    #[serde(rename = "ref")]
    pub dataset_ref: Option<String>,
    /// Web page.
    pub url: Option<String>,
    /// `ok` on success.
    pub status: Option<String>,
    /// Rejection text.
    pub error: Option<String>,
    /// Dataset id.
    #[serde(deserialize_with = "de_opt_int")]
    pub id: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StatusAnswer {
    status: Option<String>,
}

impl ApiClient {
    /// `GetDatasetStatus`: `Ok(None)` when the dataset does not exist (404).
    pub fn dataset_status(&self, d: &Ref) -> Result<Option<String>, KaggleError> {
        let r: Result<StatusAnswer, _> = self.rpc(
            &format!("{DATASETS}/GetDatasetStatus"),
            &json!({"ownerSlug": d.owner, "datasetSlug": d.slug}),
            &format!("dataset {d}"),
            Idempotency::Safe,
        );
        match r {
            Ok(a) => Ok(Some(a.status.unwrap_or_else(|| "NOT_YET_PERSISTED".into()))),
            Err(KaggleError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Upload one file as a dataset blob; returns its token.
    pub fn upload_blob(
        &self,
        storage: &StorageClient,
        item: &UploadItem,
    ) -> Result<String, KaggleError> {
        let meta = std::fs::metadata(&item.path).map_err(|e| io("cannot read", &item.path, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let a: BlobAnswer = self.rpc(
            "blobs.BlobApiService/StartBlobUpload",
            &json!({"type": "DATASET", "name": item.name, "contentLength": meta.len(), "lastModifiedEpochSeconds": mtime}),
            "blob upload",
            Idempotency::Safe,
        )?;
        if a.token.is_empty() || a.create_url.is_empty() {
            return Err(KaggleError::BadAnswer {
                call: "StartBlobUpload".into(),
                detail: "no token or createUrl in the answer".into(),
            });
        }
        let url = Url::parse(&a.create_url).map_err(|e| KaggleError::BadAnswer {
            call: "StartBlobUpload".into(),
            detail: format!("invalid createUrl ({e})"),
        })?;
        check_url_scheme(&url).map_err(|d| KaggleError::BadAnswer {
            call: "StartBlobUpload".into(),
            detail: d,
        })?;
        put_file(storage, &url, &item.path, meta.len())?;
        Ok(a.token)
    }

    /// Create the dataset (first publication) with the uploaded blobs.
    pub fn create_dataset(
        &self,
        d: &Ref,
        title: &str,
        tokens: &[String],
    ) -> Result<DatasetAnswer, KaggleError> {
        let files: Vec<Value> = tokens.iter().map(|t| json!({"token": t})).collect();
        let body = json!({"ownerSlug": d.owner, "slug": d.slug, "title": title,
            "licenseName": "CC0-1.0", "isPrivate": true, "files": files});
        let a: DatasetAnswer = self.rpc(
            &format!("{DATASETS}/CreateDataset"),
            &body,
            &format!("dataset {d}"),
            Idempotency::Safe,
        )?;
        check_dataset_answer("CreateDataset", a)
    }

    /// Add a version holding exactly the uploaded blobs.
    pub fn create_dataset_version(
        &self,
        d: &Ref,
        notes: &str,
        delete_old: bool,
        tokens: &[String],
    ) -> Result<DatasetAnswer, KaggleError> {
        let files: Vec<Value> = tokens.iter().map(|t| json!({"token": t})).collect();
        let mut inner = json!({"versionNotes": notes, "files": files});
        if delete_old {
            inner["deleteOldVersions"] = json!(true);
        }
        let body = json!({"ownerSlug": d.owner, "datasetSlug": d.slug, "body": inner});
        let a: DatasetAnswer = self.rpc(
            &format!("{DATASETS}/CreateDatasetVersion"),
            &body,
            &format!("dataset {d}"),
            Idempotency::Safe,
        )?;
        check_dataset_answer("CreateDatasetVersion", a)
    }
}

fn check_dataset_answer(call: &str, a: DatasetAnswer) -> Result<DatasetAnswer, KaggleError> {
    if let Some(e) = a.error.as_deref().filter(|e| !e.trim().is_empty()) {
        return Err(KaggleError::Rejected {
            call: call.into(),
            message: one_line(e),
        });
    }
    match a.status.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("ok") => Ok(a),
        other => Err(KaggleError::Rejected {
            call: call.into(),
            message: format!("status {other:?} instead of \"ok\""),
        }),
    }
}

/// PUT a file's bytes to a signed upload URL (no credentials, no content type), with retries.
fn put_file(storage: &StorageClient, url: &Url, path: &Path, len: u64) -> Result<(), KaggleError> {
    let call = format!("PUT {}", display_url(url));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let f = std::fs::File::open(path).map_err(|e| io("cannot read", path, e))?;
        // The whole upload must finish within this time: 5 minutes plus 20 s per MB (50 KB/s).
        let limit = Duration::from_secs(300 + len / 50_000);
        let req = storage
            .http()
            .put(url.clone())
            .timeout(limit)
            .body(Body::sized(f, len));
        let err = match req.send() {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let s = r.status().as_u16();
                if !(s == 429 || (500..600).contains(&s)) {
                    return Err(KaggleError::Http {
                        call,
                        status: s,
                        detail: " (upload link refused; run kaggle_publish again)".into(),
                    });
                }
                KaggleError::Server {
                    call: call.clone(),
                    status: s,
                    attempts: attempt,
                    detail: String::new(),
                }
            }
            Err(e) => KaggleError::Network {
                call: call.clone(),
                attempts: attempt,
                cause: error_chain(&e),
                timed_out: e.is_timeout(),
            },
        };
        if attempt >= storage.retry.max_attempts {
            return Err(err);
        }
        std::thread::sleep(storage.retry.backoff(attempt));
    }
}

/// Normalised dataset status (`READY`, `FAILED`, ...).
pub fn normalise_status(s: &str) -> String {
    s.rsplit('.').next().unwrap_or(s).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_files_and_zips_folders() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::write(src.join("b.safetensors"), b"bb").unwrap();
        std::fs::write(src.join("a.txt"), b"a").unwrap();
        std::fs::write(src.join(".hidden"), b"h").unwrap();
        std::fs::write(src.join("sub/deeper/x"), b"xyz").unwrap();
        let zips = d.path().join("zips");
        std::fs::create_dir_all(&zips).unwrap();
        let items = collect_items(&src, &zips).unwrap();
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec!["a.txt", "b.safetensors", "sub.zip"]);
        let mut z =
            zip::ZipArchive::new(std::fs::File::open(zips.join("sub.zip")).unwrap()).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut z.by_name("deeper/x").unwrap(), &mut s).unwrap();
        assert_eq!(s, "xyz");
    }

    #[test]
    fn answer_checks() {
        assert!(check_dataset_answer(
            "x",
            DatasetAnswer {
                status: Some("Ok".into()),
                ..Default::default()
            }
        )
        .is_ok());
        assert!(check_dataset_answer(
            "x",
            DatasetAnswer {
                status: Some("ok".into()),
                error: Some("bad".into()),
                ..Default::default()
            }
        )
        .is_err());
        assert!(check_dataset_answer("x", DatasetAnswer::default()).is_err());
        assert_eq!(normalise_status("DatasetStatus.ready"), "READY");
    }
}
