//! The project's source as it travels with a push: the files git tracks (at HEAD, or the
//! working-tree versions with `allow_dirty`), packed into one zip plus a small manifest
//! (commit, content hash, dirty flag) that the notebook's source cell reads.
//! Untracked files (such as the kernel metadata `kaggle_setup` writes) never count nor travel.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Slug of the source dataset (`USER/emergence-lab-src`).
pub const SOURCE_SLUG: &str = "emergence-lab-src";
/// Title of the source dataset (6-50 characters; slugifies to [`SOURCE_SLUG`]).
pub const SOURCE_TITLE: &str = "Emergence Lab Src";
/// Name of the archive inside the dataset.
pub const ARCHIVE_NAME: &str = "emergence-lab-src.zip";
/// Name of the manifest inside the dataset (and inside the archive).
pub const MANIFEST_NAME: &str = "emergence-lab-source.json";
/// Value of the manifest's `project` field.
pub const PROJECT: &str = "emergence-lab";

/// Why the source could not be collected.
#[derive(Debug, Error)]
pub enum SourceError {
    /// git is missing or could not be started.
    #[error("cannot run git ({cause}); install git: the source sent to Kaggle is what git tracks")]
    GitMissing {
        /// The OS error.
        cause: String,
    },
    /// A git command failed (e.g. not a repository, no commit yet).
    #[error("`git {args}` failed in {dir}: {stderr}", dir = dir.display())]
    Git {
        /// The arguments.
        args: String,
        /// Where it ran.
        dir: PathBuf,
        /// What git said (one line).
        stderr: String,
    },
    /// Tracked files differ from HEAD and `allow_dirty` is off.
    #[error("the working tree differs from HEAD in {} tracked file(s): {}", files.len(), files.join(", "))]
    Dirty {
        /// The changed files.
        files: Vec<String>,
    },
    /// The repository root is not emergence-lab.
    #[error("{} is not emergence-lab's repository (its Cargo.toml does not define the emergence_lab package)", root.display())]
    NotEmergenceLab {
        /// The repository root.
        root: PathBuf,
    },
    /// A local file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest stored next to the archive (and inside it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceManifest {
    /// Always [`PROJECT`].
    pub project: String,
    /// Manifest format version (1).
    pub format: u32,
    /// The commit at HEAD (40 hex digits).
    pub commit: String,
    /// SHA-256 over every file's path, executable bit and content, in path order.
    pub content_sha256: String,
    /// True when tracked files differed from HEAD (sent with `--allow-dirty`).
    pub dirty: bool,
    /// The tracked files that differed from HEAD.
    pub changed_files: Vec<String>,
    /// Number of files in the archive.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// The tracked files of a repository, ready to be packed.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Repository root.
    pub root: PathBuf,
    /// Files (relative, `/`-separated, sorted) with their executable bit.
    pub files: Vec<(String, bool)>,
    /// The manifest describing them.
    pub manifest: SourceManifest,
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, SourceError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .map_err(|e| SourceError::GitMissing {
            cause: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SourceError::Git {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: stderr.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    Ok(out.stdout)
}

fn trimmed(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Paths of tracked files whose index or working-tree version differs from HEAD, from
/// `git status --porcelain -z --untracked-files=no` (renames count both names).
pub fn parse_porcelain(out: &[u8]) -> Vec<String> {
    let mut files = vec![];
    let mut parts = out.split(|b| *b == 0).filter(|p| !p.is_empty());
    while let Some(p) = parts.next() {
        if p.len() < 4 {
            continue;
        }
        let xy = &p[..2];
        files.push(String::from_utf8_lossy(&p[3..]).to_string());
        if xy.contains(&b'R') || xy.contains(&b'C') {
            if let Some(orig) = parts.next() {
                files.push(String::from_utf8_lossy(orig).to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// True when `dir/Cargo.toml` defines the `emergence_lab` package.
pub fn is_emergence_lab(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .map(|t| t.contains("name = \"emergence_lab\""))
        .unwrap_or(false)
}

impl Snapshot {
    /// Collect the tracked files of the repository containing `dir`. A working tree whose
    /// tracked files differ from HEAD is refused unless `allow_dirty` (then the working-tree
    /// versions are taken, deleted files are left out, and the manifest says so).
    pub fn collect(dir: &Path, allow_dirty: bool) -> Result<Snapshot, SourceError> {
        let root = PathBuf::from(trimmed(git(dir, &["rev-parse", "--show-toplevel"])?));
        if !is_emergence_lab(&root) {
            return Err(SourceError::NotEmergenceLab { root });
        }
        let commit = trimmed(git(&root, &["rev-parse", "--verify", "HEAD"])?);
        let changed = parse_porcelain(&git(
            &root,
            &["status", "--porcelain", "-z", "--untracked-files=no"],
        )?);
        if !changed.is_empty() && !allow_dirty {
            return Err(SourceError::Dirty { files: changed });
        }
        let listed = git(&root, &["ls-files", "-z", "--cached"])?;
        let mut names: Vec<String> = listed
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).to_string())
            .collect();
        names.sort();
        names.dedup();
        let mut hasher = Sha256::new();
        let mut files = vec![];
        let mut bytes = 0u64;
        for name in names {
            let path = root.join(&name);
            // Deleted files (allowed dirty) and submodules are not regular files: skipped.
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let data = std::fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
            let exec = is_executable(&meta);
            hasher.update(name.as_bytes());
            hasher.update([0, exec as u8]);
            hasher.update((data.len() as u64).to_le_bytes());
            hasher.update(&data);
            bytes += data.len() as u64;
            files.push((name, exec));
        }
        let manifest = SourceManifest {
            project: PROJECT.into(),
            format: 1,
            commit,
            content_sha256: format!("{:x}", hasher.finalize()),
            dirty: !changed.is_empty(),
            changed_files: changed,
            files: files.len(),
            bytes,
        };
        Ok(Snapshot {
            root,
            files,
            manifest,
        })
    }

    /// Write `out_dir/`[`ARCHIVE_NAME`] (the files plus the manifest, deflated, fixed
    /// timestamps) and `out_dir/`[`MANIFEST_NAME`]; returns both paths.
    pub fn write(&self, out_dir: &Path) -> Result<(PathBuf, PathBuf), SourceError> {
        std::fs::create_dir_all(out_dir).map_err(|e| io("cannot create", out_dir, e))?;
        let manifest_text =
            serde_json::to_string_pretty(&self.manifest).expect("serialisable") + "\n";
        let manifest_path = out_dir.join(MANIFEST_NAME);
        std::fs::write(&manifest_path, &manifest_text)
            .map_err(|e| io("cannot write", &manifest_path, e))?;
        let archive = out_dir.join(ARCHIVE_NAME);
        let zerr =
            |e: zip::result::ZipError| io("cannot write", &archive, std::io::Error::other(e));
        let f = std::fs::File::create(&archive).map_err(|e| io("cannot create", &archive, e))?;
        let mut z = zip::ZipWriter::new(f);
        let base =
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, exec) in &self.files {
            let path = self.root.join(name);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            // Zip64 only where needed: plain entries are what every unpacker reads.
            let opts = base
                .unix_permissions(if *exec { 0o755 } else { 0o644 })
                .large_file(len >= u64::from(u32::MAX));
            z.start_file(name.as_str(), opts).map_err(zerr)?;
            let mut r = std::fs::File::open(&path).map_err(|e| io("cannot read", &path, e))?;
            std::io::copy(&mut r, &mut z).map_err(|e| io("cannot write", &archive, e))?;
        }
        z.start_file(MANIFEST_NAME, base.unix_permissions(0o644))
            .map_err(zerr)?;
        z.write_all(manifest_text.as_bytes())
            .map_err(|e| io("cannot write", &archive, e))?;
        z.finish()
            .map_err(zerr)?
            .flush()
            .map_err(|e| io("cannot write", &archive, e))?;
        Ok((archive, manifest_path))
    }
}

/// What was uploaded last, kept next to the kernel metadata so an unchanged source is not
/// uploaded again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceRecord {
    /// The dataset `owner/slug`.
    pub dataset: String,
    /// Content hash of the uploaded source.
    pub content_sha256: String,
    /// Its commit.
    pub commit: String,
}

/// Name of the record file next to the kernel metadata.
pub const RECORD_FILE: &str = ".kaggle-source.json";

impl SourceRecord {
    /// Read the record; `None` when absent or unreadable (then the source is uploaded).
    pub fn load(path: &Path) -> Option<SourceRecord> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Write the record.
    pub fn save(&self, path: &Path) -> Result<(), SourceError> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).expect("serialisable") + "\n",
        )
        .map_err(|e| io("cannot write", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lists_modified_and_renamed() {
        let out = b" M src/a.rs\0R  new.rs\0old.rs\0D  gone.txt\0";
        assert_eq!(
            parse_porcelain(out),
            vec!["gone.txt", "new.rs", "old.rs", "src/a.rs"]
        );
        assert!(parse_porcelain(b"").is_empty());
    }
}
