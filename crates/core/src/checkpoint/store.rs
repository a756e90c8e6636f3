//! A checkpoint folder: atomic durable saves, `latest.safetensors`, rotation by step.
//!
//! A save writes `.{name}.tmp.safetensors`, fsyncs it, renames it into place, fsyncs the
//! folder, then swaps `latest` (a relative symlink, or a copy) the same way, so `latest`
//! never points at a partial file. A store assumes it is the only writer of its folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::{CheckpointError, Result};
use super::format::{Checkpoint, CheckpointKind, CheckpointMeta};
use super::writer::{first_nonfinite_array, write_with_meta};

/// File name of the `latest` link.
pub const LATEST_NAME: &str = "latest.safetensors";

/// The file name of a checkpoint of `kind` at `step` (`step_{N}.safetensors`, ...).
pub fn checkpoint_file_name(kind: CheckpointKind, step: u64) -> String {
    match kind {
        CheckpointKind::Periodic => format!("step_{step}.safetensors"),
        CheckpointKind::Emergency => format!("emergency_step_{step}.safetensors"),
        CheckpointKind::Final => format!("final_step_{step}.safetensors"),
        CheckpointKind::Nonfinite => format!("nonfinite_step_{step}.safetensors"),
    }
}

/// Kind and step of a checkpoint file name, `None` for other names (incl. `latest`).
pub fn parse_checkpoint_file_name(name: &str) -> Option<(CheckpointKind, u64)> {
    let stem = name.strip_suffix(".safetensors")?;
    let (kind, num) = if let Some(n) = stem.strip_prefix("emergency_step_") {
        (CheckpointKind::Emergency, n)
    } else if let Some(n) = stem.strip_prefix("final_step_") {
        (CheckpointKind::Final, n)
    } else if let Some(n) = stem.strip_prefix("nonfinite_step_") {
        (CheckpointKind::Nonfinite, n)
    } else {
        (CheckpointKind::Periodic, stem.strip_prefix("step_")?)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, num.parse().ok()?))
}

/// Whether `name` is one of our temporary files (`.{name}.tmp.safetensors`).
pub(crate) fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp.safetensors")
}

/// How `latest.safetensors` is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestMode {
    /// A relative symlink, falling back to a copy where symlinks fail.
    Auto,
    /// Always a copy (hard link when possible), e.g. for folders uploaded as datasets.
    Copy,
}

/// What one save did.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveReport {
    /// The final checkpoint path.
    pub path: PathBuf,
    /// File size in bytes.
    pub bytes: u64,
    /// Whether `latest` now points at it (false for `nonfinite`).
    pub updated_latest: bool,
    /// Periodic files deleted by rotation.
    pub rotated: Vec<PathBuf>,
    /// Wall time of the whole save (write, fsyncs, renames, rotation), in seconds.
    pub seconds: f64,
}

/// A checkpoint folder with rotation of periodic files.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
    latest_mode: LatestMode,
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories can be opened read-only and fsynced on Unix; elsewhere this is best effort.
    match fs::File::open(dir) {
        Ok(f) => match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) if cfg!(unix) => Err(CheckpointError::io(dir, "fsync folder", e)),
            Err(_) => Ok(()),
        },
        Err(e) if cfg!(unix) => Err(CheckpointError::io(dir, "open folder", e)),
        Err(_) => Ok(()),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CheckpointError::io(path, "remove", e)),
    }
}

#[cfg(unix)]
fn try_symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn try_symlink(_target: &str, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symlinks not used on this platform",
    ))
}

impl CheckpointStore {
    /// A store in `dir` (created if missing) keeping the newest `keep` periodic files
    /// (`keep = 0` keeps all). Leftover temporary files of crashed saves are removed.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, "create folder", e))?;
        let store = Self {
            dir,
            keep,
            latest_mode: LatestMode::Auto,
        };
        store.remove_temp_files()?;
        Ok(store)
    }

    /// Chooses how `latest` is made (default [`LatestMode::Auto`]).
    pub fn with_latest_mode(mut self, mode: LatestMode) -> Self {
        self.latest_mode = mode;
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Periodic files kept by rotation (0 = all).
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Path of `latest.safetensors`.
    pub fn latest_path(&self) -> PathBuf {
        self.dir.join(LATEST_NAME)
    }

    fn remove_temp_files(&self) -> Result<usize> {
        let mut n = 0;
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| CheckpointError::io(&self.dir, "list folder", e))?;
        for entry in rd.flatten() {
            if entry.file_name().to_str().is_some_and(is_temp_file_name) {
                remove_if_exists(&entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Saves atomically and durably; see [`CheckpointStore::save_with_report`].
    pub fn save(&self, ckpt: &Checkpoint) -> Result<PathBuf> {
        self.save_with_report(ckpt).map(|r| r.path)
    }

    /// Writes `.{name}.tmp.safetensors`, fsyncs, renames to `{name}`, fsyncs the folder,
    /// points `latest` at it (not for `nonfinite`), and rotates after periodic and final
    /// saves (emergency and nonfinite saves never trigger rotation).
    ///
    /// A state holding NaN/Inf in any float array is never trusted: it is written as
    /// `nonfinite_step_{N}` (for debugging), `latest` is left alone, and the result is
    /// [`CheckpointError::NonFiniteState`].
    pub fn save_with_report(&self, ckpt: &Checkpoint) -> Result<SaveReport> {
        if ckpt.meta.kind != CheckpointKind::Nonfinite {
            if let Some(array) = first_nonfinite_array(ckpt) {
                let mut meta = ckpt.meta.clone();
                meta.kind = CheckpointKind::Nonfinite;
                let report = self.save_parts(&meta, ckpt)?;
                return Err(CheckpointError::NonFiniteState {
                    path: report.path,
                    array: array.to_string(),
                    step: meta.step,
                });
            }
        }
        self.save_parts(&ckpt.meta, ckpt)
    }

    fn save_parts(&self, meta: &CheckpointMeta, ckpt: &Checkpoint) -> Result<SaveReport> {
        let t0 = Instant::now();
        let name = checkpoint_file_name(meta.kind, meta.step);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp.safetensors"));
        let bytes = match write_with_meta(&tmp, meta, ckpt, true) {
            Ok(b) => b,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fs::rename(&tmp, &path)
            .map_err(|e| CheckpointError::io(&path, "rename temporary file", e))?;
        sync_dir(&self.dir)?;
        let updated_latest = meta.kind != CheckpointKind::Nonfinite;
        if updated_latest {
            self.point_latest_at(&name)?;
        }
        let rotated = match meta.kind {
            CheckpointKind::Periodic | CheckpointKind::Final => self.rotate()?,
            CheckpointKind::Emergency => self.rotate_kind(CheckpointKind::Emergency)?,
            CheckpointKind::Nonfinite => Vec::new(),
        };
        Ok(SaveReport {
            path,
            bytes,
            updated_latest,
            rotated,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Atomically replaces `latest` with a link to (or copy of) `name` in this folder.
    pub fn point_latest_at(&self, name: &str) -> Result<()> {
        let tmp = self.dir.join(".latest.tmp.safetensors");
        remove_if_exists(&tmp)?;
        let linked = self.latest_mode == LatestMode::Auto && try_symlink(name, &tmp).is_ok();
        if !linked {
            let src = self.dir.join(name);
            if fs::hard_link(&src, &tmp).is_err() {
                remove_if_exists(&tmp)?;
                fs::copy(&src, &tmp)
                    .map_err(|e| CheckpointError::io(&tmp, "copy for latest", e))?;
                let f = fs::File::open(&tmp).map_err(|e| CheckpointError::io(&tmp, "open", e))?;
                f.sync_all()
                    .map_err(|e| CheckpointError::io(&tmp, "fsync", e))?;
            }
        }
        let latest = self.latest_path();
        fs::rename(&tmp, &latest)
            .map_err(|e| CheckpointError::io(&latest, "rename temporary latest", e))?;
        sync_dir(&self.dir)
    }

    /// File name `latest` links to, if it is a symlink.
    pub fn latest_target_name(&self) -> Option<String> {
        let t = fs::read_link(self.latest_path()).ok()?;
        t.file_name().and_then(|n| n.to_str()).map(str::to_string)
    }

    /// Deletes periodic files beyond the newest `keep` by step number, never the target of
    /// `latest` (nor any emergency, final or nonfinite file). Returns the deleted paths.
    pub fn rotate(&self) -> Result<Vec<PathBuf>> {
        self.rotate_kind(CheckpointKind::Periodic)
    }

    /// Deletes files of `kind` beyond the newest `keep` by step number, never the target of
    /// `latest`; files of other kinds are untouched (emergency files rotate among themselves,
    /// so repeated stops do not fill the disk). Returns the deleted paths.
    pub fn rotate_kind(&self, kind: CheckpointKind) -> Result<Vec<PathBuf>> {
        if self.keep == 0 {
            return Ok(Vec::new());
        }
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| CheckpointError::io(&self.dir, "list folder", e))?;
        let mut files: Vec<(u64, String)> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| match parse_checkpoint_file_name(&n) {
                Some((k, step)) if k == kind => Some((step, n)),
                _ => None,
            })
            .collect();
        files.sort_by_key(|p| std::cmp::Reverse(p.0));
        let protected = self.latest_target_name();
        let mut removed = Vec::new();
        for (_, name) in files.into_iter().skip(self.keep) {
            if protected.as_deref() == Some(name.as_str()) {
                continue;
            }
            let p = self.dir.join(&name);
            remove_if_exists(&p)?;
            removed.push(p);
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }
}
