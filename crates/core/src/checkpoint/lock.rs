//! One run per checkpoint folder: an exclusive OS file lock on `DIR/.emergence-lab.lock`.
//!
//! The lock is an advisory `flock`-style lock held through an open file
//! ([`std::fs::File::try_lock`]), so the operating system releases it when the holder exits
//! in any way, `kill -9` included: it never goes stale like a PID file. The holder's PID and
//! host are written into the file only for the message a second run gets. The file itself
//! stays in the folder (deleting it would race with a run taking it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::{CheckpointError, Result};

/// File name of the lock inside a checkpoint folder.
pub const LOCK_FILE_NAME: &str = ".emergence-lab.lock";

/// An exclusive lock on a checkpoint folder, released when dropped.
#[derive(Debug)]
pub struct FolderLock {
    dir: PathBuf,
    _file: File,
}

impl FolderLock {
    /// Creates `dir` if needed and takes its lock without waiting: an error naming the
    /// holder's PID when another run (in this or another process) holds it.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CheckpointError::io(dir, "create checkpoint folder", e))?;
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CheckpointError::io(&path, "open lock file", e))?;
        // A lock just released can stay held for a moment by a child process being spawned
        // (it holds a copy of every descriptor until it starts its program): retry briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let mut attempt = file.try_lock();
        while matches!(attempt, Err(TryLockError::WouldBlock))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
            attempt = file.try_lock();
        }
        match attempt {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CheckpointError::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "another process (PID not yet written)".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(CheckpointError::io(&path, "lock", e));
            }
        }
        let who = format!(
            "process {} on {}",
            std::process::id(),
            hostname().unwrap_or_else(|| "this machine".into())
        );
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{who}\n").as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| CheckpointError::io(&path, "write lock file", e))?;
        Ok(FolderLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_fails_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(dir.path()).unwrap();
        let err = FolderLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("already in use"), "{err}");
        drop(first);
        FolderLock::acquire(dir.path()).expect("released on drop");
    }
}
