//! Downloading a run's output files from their signed URLs: safe target paths, streaming to a
//! temporary file that is renamed only when complete, retries, and a manifest of finished files
//! so a rerun skips them.

use super::client::{check_url_scheme, display_url, error_chain, StorageClient};
use super::error::KaggleError;
use reqwest::header::{CONTENT_LENGTH, ETAG};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Manifest file name inside the output folder.
pub const MANIFEST: &str = ".kaggle-download.json";

/// Resolve an output file name inside `dir`, refusing anything that could land outside it:
/// absolute paths, `..`, drive prefixes, backslashes, empty or control characters.
pub fn safe_join(dir: &Path, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name.contains('\\') || name.chars().any(|c| c.is_control()) {
        return Err(format!(
            "file name {name:?} contains a backslash or control character"
        ));
    }
    if cfg!(windows) && name.contains(':') {
        return Err(format!(
            "file name {name:?} contains a drive or stream separator"
        ));
    }
    let rel = Path::new(name);
    let mut out = dir.to_path_buf();
    let mut depth = 0;
    for c in rel.components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                depth += 1;
            }
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "file name {name:?} would land outside the output folder"
                ))
            }
        }
    }
    if depth == 0 {
        return Err(format!("file name {name:?} names no file"));
    }
    Ok(out)
}

/// What a completed download recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Run version the file came from (`None` = latest, unknown).
    pub version: Option<i64>,
    /// Size in bytes.
    pub bytes: u64,
    /// Storage ETag, when given.
    pub etag: Option<String>,
}

/// Files already downloaded into a folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Kernel `owner/slug` the files belong to.
    pub kernel: String,
    /// Entries by output file name.
    pub files: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Load `dir/.kaggle-download.json` (empty when missing or unreadable).
    pub fn load(dir: &Path) -> Self {
        std::fs::read_to_string(dir.join(MANIFEST))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Save it.
    pub fn save(&self, dir: &Path) -> Result<(), KaggleError> {
        let p = dir.join(MANIFEST);
        std::fs::write(
            &p,
            serde_json::to_string_pretty(self).expect("serialisable"),
        )
        .map_err(|e| KaggleError::Io {
            action: "cannot write",
            path: p,
            source: e,
        })
    }

    /// True when `name` from `version` is recorded and the local file still has its size.
    pub fn is_complete(
        &self,
        kernel: &str,
        name: &str,
        version: Option<i64>,
        local: &Path,
    ) -> bool {
        let Some(e) = self.files.get(name) else {
            return false;
        };
        self.kernel == kernel
            && version.is_some()
            && e.version == version
            && std::fs::metadata(local)
                .map(|m| m.len() == e.bytes)
                .unwrap_or(false)
    }
}

/// Progress events of one file download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlEvent {
    /// A (new) attempt started; total size when known.
    Start(Option<u64>),
    /// Bytes received so far in this attempt.
    Bytes(u64),
}

/// Result of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Written, with its size and ETag.
    Written {
        /// Bytes.
        bytes: u64,
        /// ETag.
        etag: Option<String>,
    },
    /// Remote size and ETag match the local complete copy; nothing written.
    AlreadyComplete,
}

enum Try {
    Ok(Fetched),
    Transient(KaggleError),
    Fatal(KaggleError),
}

/// Download `url` to `dest` (via a temporary file in the same folder). `known` is the local
/// manifest entry, used to skip an unchanged file after reading only the response headers.
pub fn fetch_file(
    storage: &StorageClient,
    name: &str,
    url: &str,
    dest: &Path,
    known: Option<&ManifestEntry>,
    on: &mut dyn FnMut(DlEvent),
) -> Result<Fetched, KaggleError> {
    let parsed = Url::parse(url).map_err(|e| KaggleError::BadAnswer {
        call: "ListKernelSessionOutput".into(),
        detail: format!("file {name:?} has an invalid URL ({e})"),
    })?;
    check_url_scheme(&parsed).map_err(|d| KaggleError::BadAnswer {
        call: "ListKernelSessionOutput".into(),
        detail: format!("file {name:?}: {d} ({})", display_url(&parsed)),
    })?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| KaggleError::Io {
        action: "cannot create folder",
        path: parent.to_path_buf(),
        source: e,
    })?;
    let fname = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{fname}.part-{}", std::process::id()));
    let policy = &storage.retry;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = try_once(storage, name, &parsed, dest, &tmp, known, on);
        match r {
            Try::Ok(f) => return Ok(f),
            Try::Fatal(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            Try::Transient(e) => {
                let _ = std::fs::remove_file(&tmp);
                if attempt >= policy.max_attempts {
                    return Err(e);
                }
                std::thread::sleep(policy.backoff(attempt));
            }
        }
    }
}

fn try_once(
    storage: &StorageClient,
    name: &str,
    url: &Url,
    dest: &Path,
    tmp: &Path,
    known: Option<&ManifestEntry>,
    on: &mut dyn FnMut(DlEvent),
) -> Try {
    let call = format!("GET {}", display_url(url));
    let resp = match storage.http().get(url.clone()).send() {
        Ok(r) => r,
        Err(e) => {
            return Try::Transient(KaggleError::Network {
                call,
                attempts: 1,
                cause: error_chain(&e),
                timed_out: e.is_timeout(),
            })
        }
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => {}
        400 | 401 | 403 | 410 => {
            return Try::Fatal(KaggleError::SignedUrlExpired {
                file: name.to_string(),
                status,
            })
        }
        429 | 500..=599 => {
            return Try::Transient(KaggleError::Http {
                call,
                status,
                detail: String::new(),
            })
        }
        _ => {
            return Try::Fatal(KaggleError::Http {
                call,
                status,
                detail: format!(" (file {name})"),
            })
        }
    }
    let total = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let (Some(k), Some(t)) = (known, total) {
        let local_len = std::fs::metadata(dest).map(|m| m.len()).ok();
        if k.bytes == t && local_len == Some(t) && k.etag.is_some() && k.etag == etag {
            return Try::Ok(Fetched::AlreadyComplete);
        }
    }
    on(DlEvent::Start(total));
    let mut file = match std::fs::File::create(tmp) {
        Ok(f) => f,
        Err(e) => {
            return Try::Fatal(KaggleError::Io {
                action: "cannot create",
                path: tmp.to_path_buf(),
                source: e,
            })
        }
    };
    let mut resp = resp;
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    return Try::Fatal(KaggleError::Io {
                        action: "cannot write",
                        path: tmp.to_path_buf(),
                        source: e,
                    });
                }
                got += n as u64;
                on(DlEvent::Bytes(got));
            }
            Err(_) => {
                return Try::Transient(KaggleError::Truncated {
                    file: name.to_string(),
                    got,
                    expected: total.unwrap_or(got),
                })
            }
        }
    }
    if let Some(t) = total {
        if got != t {
            return Try::Transient(KaggleError::Truncated {
                file: name.to_string(),
                got,
                expected: t,
            });
        }
    }
    if let Err(e) = file.sync_all().and_then(|_| std::fs::rename(tmp, dest)) {
        return Try::Fatal(KaggleError::Io {
            action: "cannot finish",
            path: dest.to_path_buf(),
            source: e,
        });
    }
    Try::Ok(Fetched::Written { bytes: got, etag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_join_refuses_escapes() {
        let d = Path::new("/out");
        assert_eq!(
            safe_join(d, "checkpoints/a.safetensors").unwrap(),
            PathBuf::from("/out/checkpoints/a.safetensors")
        );
        assert_eq!(safe_join(d, "./x").unwrap(), PathBuf::from("/out/x"));
        assert_eq!(safe_join(d, "run 12:00.log").is_ok(), !cfg!(windows));
        for bad in [
            "../x",
            "a/../../x",
            "a/..",
            "/etc/passwd",
            "",
            ".",
            "a\\..\\b",
            "a\nb",
        ] {
            assert!(safe_join(d, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn manifest_completeness() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a");
        std::fs::write(&f, b"1234").unwrap();
        let mut m = Manifest {
            kernel: "u/k".into(),
            ..Default::default()
        };
        m.files.insert(
            "a".into(),
            ManifestEntry {
                version: Some(3),
                bytes: 4,
                etag: None,
            },
        );
        assert!(m.is_complete("u/k", "a", Some(3), &f));
        assert!(!m.is_complete("u/k", "a", Some(4), &f));
        assert!(!m.is_complete("u/k", "a", None, &f));
        assert!(!m.is_complete("u/other", "a", Some(3), &f));
        std::fs::write(&f, b"12").unwrap();
        assert!(!m.is_complete("u/k", "a", Some(3), &f));
        m.save(d.path()).unwrap();
        assert_eq!(Manifest::load(d.path()).files.len(), 1);
    }
}
