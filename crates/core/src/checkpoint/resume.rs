//! Finding checkpoints: listing a folder, following `latest`, and choosing what to resume.
//!
//! `train.resume_from` is a path, `latest`, `auto` (newest verified checkpoint in
//! `log.checkpoint_dir` and the `train.resume_search` folders) or empty (fresh start).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, Result};
use super::format::CheckpointKind;
use super::header::Header;
use super::reader::{read_header, verify_checkpoint};
use super::store::{is_temp_file_name, LATEST_NAME};
use crate::config::{Config, ResumeFrom};

/// What a checkpoint file is, from its header.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub step: u64,
    pub iteration: u64,
    pub kind: CheckpointKind,
    pub size_bytes: u64,
    pub created_unix: u64,
    /// The run's full config as JSON.
    pub config_json: String,
}

impl CheckpointInfo {
    fn from_header(path: &Path, h: Header) -> Self {
        CheckpointInfo {
            path: path.to_path_buf(),
            step: h.meta.step,
            iteration: h.meta.iteration,
            kind: h.meta.kind,
            size_bytes: 8 + h.header_len + h.data_len,
            created_unix: h.meta.created_unix,
            config_json: h.meta.config_json,
        }
    }
}

/// Checkpoint files of a folder plus the files that could not be read.
#[derive(Debug, Default)]
pub struct CheckpointListing {
    /// Readable checkpoints (header checked, data not verified), sorted by step, then kind.
    pub checkpoints: Vec<CheckpointInfo>,
    /// `*.safetensors` files whose header is unreadable or not ours.
    pub skipped: Vec<(PathBuf, CheckpointError)>,
}

/// The outcome of [`find_resume`].
#[derive(Debug, Default)]
pub struct ResumeChoice {
    /// The verified checkpoint to resume from; `None` means a fresh start.
    pub checkpoint: Option<CheckpointInfo>,
    /// Files skipped on the way (corrupt, unreadable, dangling `latest`), each named.
    pub warnings: Vec<String>,
}

/// The one ordering of checkpoints for resuming: by step, then kind (a final save beats an
/// emergency save beats a periodic save of the same step), then creation time, then path.
/// The newest usable checkpoint is the greatest; nonfinite debug saves are never usable.
fn resume_rank(c: &CheckpointInfo) -> (u64, u8, u64, &Path) {
    (c.step, kind_rank(c.kind), c.created_unix, &c.path)
}

fn kind_rank(k: CheckpointKind) -> u8 {
    match k {
        CheckpointKind::Periodic => 1,
        CheckpointKind::Emergency => 2,
        CheckpointKind::Final => 3,
        CheckpointKind::Nonfinite => 0,
    }
}

fn is_candidate_name(name: &str) -> bool {
    name.ends_with(".safetensors") && !is_temp_file_name(name)
}

/// Collects `*.safetensors` files; `latest` only when it is a regular file (a copy), and
/// only with `recursive` (auto search: a downloaded folder may hold just that copy).
fn collect_files(
    dir: &Path,
    recursive: bool,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) {
    let Ok(canon) = fs::canonicalize(dir) else {
        return;
    };
    if !seen.insert(canon) || depth > 32 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if path.is_dir() {
            if recursive {
                collect_files(&path, recursive, depth + 1, seen, out);
            }
        } else if is_candidate_name(&name) {
            let latest_copy = recursive && e.file_type().is_ok_and(|t| !t.is_symlink());
            if name != LATEST_NAME || latest_copy {
                out.push(path);
            }
        }
    }
}

fn list_files(files: Vec<PathBuf>) -> CheckpointListing {
    let mut listing = CheckpointListing::default();
    for path in files {
        match read_header(&path) {
            Ok(h) => listing
                .checkpoints
                .push(CheckpointInfo::from_header(&path, h)),
            Err(e) => listing.skipped.push((path, e)),
        }
    }
    listing
        .checkpoints
        .sort_by(|a, b| resume_rank(a).cmp(&resume_rank(b)));
    listing
}

/// Lists the checkpoint files directly in `dir` (not `latest`, not temporary files).
pub fn list_checkpoints(dir: &Path) -> Result<CheckpointListing> {
    if !dir.is_dir() {
        return Err(CheckpointError::io(
            dir,
            "list folder",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let mut files = Vec::new();
    collect_files(dir, false, 0, &mut HashSet::new(), &mut files);
    Ok(list_files(files))
}

/// Follows `dir/latest.safetensors` and reads the header of the file it names (no CRC check).
pub fn latest(dir: &Path) -> Result<CheckpointInfo> {
    let link = dir.join(LATEST_NAME);
    match fs::symlink_metadata(&link) {
        Err(_) => {
            return Err(CheckpointError::NoLatest {
                dir: dir.to_path_buf(),
            })
        }
        Ok(m) if m.file_type().is_symlink() && !link.exists() => {
            let target = fs::read_link(&link).unwrap_or_default();
            return Err(CheckpointError::DanglingLatest {
                link,
                target: dir.join(target),
            });
        }
        Ok(_) => {}
    }
    let h = read_header(&link)?;
    Ok(CheckpointInfo::from_header(&link, h))
}

/// Verifies `path` completely (header, metadata, layout, both CRC-32C checks) and describes it.
/// The same check as `checkpoint inspect`, `resume_from` and the Kaggle helpers' downloads.
pub fn verify_info(path: &Path) -> Result<CheckpointInfo> {
    verify_checkpoint(path).map(|h| CheckpointInfo::from_header(path, h))
}

/// Every checkpoint file under `root`, recursively, in name order: temporary files are skipped,
/// and `latest.safetensors` is listed only when it is a regular file (a copy, as in a downloaded
/// folder), not a link to a file that is listed anyway. A missing folder lists nothing.
pub fn find_checkpoint_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect_files(root, true, 0, &mut HashSet::new(), &mut files);
    files
}

/// The checkpoint to resume from among verified ones: the greatest by the one resume order
/// (step, then kind, then creation time), never a nonfinite debug save. `auto` resume, the
/// Kaggle chain and `kaggle_download`/`kaggle_publish` all choose with this rule.
pub fn pick_resume(verified: &[CheckpointInfo]) -> Option<&CheckpointInfo> {
    verified
        .iter()
        .filter(|c| c.kind != CheckpointKind::Nonfinite)
        .max_by(|a, b| resume_rank(a).cmp(&resume_rank(b)))
}

/// Chooses the checkpoint to resume from according to `train.resume_from`.
///
/// - `""`: fresh start.
/// - a path: that file, fully verified (an error if it is missing or bad).
/// - `latest`: `log.checkpoint_dir/latest.safetensors`, verified (an error if missing,
///   dangling or bad).
/// - `auto`: the newest (by step) checkpoint that verifies, searched recursively in
///   `log.checkpoint_dir` and every `train.resume_search` folder; bad files are skipped
///   with a warning; none found means a fresh start. Nonfinite saves are never chosen.
pub fn find_resume(config: &Config) -> Result<ResumeChoice> {
    let dir = Path::new(&config.log.checkpoint_dir);
    match &config.train.resume_from {
        ResumeFrom::Fresh => Ok(ResumeChoice::default()),
        ResumeFrom::Latest => {
            let info = latest(dir)?;
            let info = verify_info(&info.path)?;
            Ok(ResumeChoice {
                checkpoint: Some(info),
                warnings: Vec::new(),
            })
        }
        ResumeFrom::Auto => {
            let mut roots = vec![dir.to_path_buf()];
            roots.extend(config.train.resume_search.iter().map(PathBuf::from));
            Ok(auto_resume(&roots))
        }
        ResumeFrom::Path(path) => {
            let p = path.as_path();
            if p.is_dir() {
                return Err(CheckpointError::BadResumePath {
                    path: p.to_path_buf(),
                    detail:
                        "is a folder; name a .safetensors file, or use resume_from = \"auto\" with \
                             train.resume_search = [that folder]"
                            .into(),
                });
            }
            if !p.exists() {
                return Err(CheckpointError::BadResumePath {
                    path: p.to_path_buf(),
                    detail:
                        "does not exist (expected a checkpoint file, \"latest\", \"auto\" or \"\")"
                            .into(),
                });
            }
            let info = verify_info(p)?;
            let mut warnings = Vec::new();
            if info.kind == CheckpointKind::Nonfinite {
                warnings.push(format!(
                    "{} is a nonfinite (NaN/Inf) debug save",
                    p.display()
                ));
            }
            Ok(ResumeChoice {
                checkpoint: Some(info),
                warnings,
            })
        }
    }
}

/// `auto` resume over `roots` (searched recursively; missing folders are skipped).
pub fn auto_resume(roots: &[PathBuf]) -> ResumeChoice {
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for root in roots {
        if !root.is_dir() {
            continue;
        }
        collect_files(root, true, 0, &mut seen, &mut files);
        if let Err(e @ CheckpointError::DanglingLatest { .. }) = latest(root) {
            warnings.push(format!("skipped: {e}"));
        }
    }
    let mut listing = list_files(files);
    for (path, e) in listing.skipped {
        warnings.push(format!("skipped {}: {e}", path.display()));
    }
    listing
        .checkpoints
        .retain(|c| c.kind != CheckpointKind::Nonfinite);
    for c in listing.checkpoints.into_iter().rev() {
        match verify_info(&c.path) {
            Ok(info) => {
                return ResumeChoice {
                    checkpoint: Some(info),
                    warnings,
                }
            }
            Err(e) => warnings.push(format!("skipped {}: {e}", c.path.display())),
        }
    }
    ResumeChoice {
        checkpoint: None,
        warnings,
    }
}
