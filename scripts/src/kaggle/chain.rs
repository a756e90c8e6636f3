//! State of a run chained across Kaggle sessions (`kaggle_run --sessions N`), kept in a small
//! JSON file next to the kernel metadata so that running the same command again continues
//! where the chain stopped (following the session in flight, or starting the next one).

use super::error::KaggleError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the chain state file next to the kernel metadata.
pub const CHAIN_FILE: &str = ".kaggle-chain.json";

/// The session the chain started and has not finished handling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainSession {
    /// Kernel version of the session.
    pub version: i64,
    /// When it was started (Unix seconds).
    pub started_unix: u64,
}

/// The newest verified checkpoint the chain published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainCheckpoint {
    /// File name in the checkpoints dataset.
    pub name: String,
    /// Training step it holds.
    pub step: u64,
    /// Kernel version that wrote it.
    pub from_version: i64,
}

/// Everything the chain needs to continue after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainState {
    /// Kernel `owner/slug`.
    pub kernel: String,
    /// Checkpoints dataset `owner/slug`.
    pub checkpoints_dataset: String,
    /// Sessions to run in all.
    pub sessions_target: u32,
    /// Sessions finished (completed and their checkpoint published).
    pub sessions_done: u32,
    /// The session in flight, if any.
    pub current: Option<ChainSession>,
    /// Versions of the checkpoints dataset the chain published.
    pub checkpoint_versions: u32,
    /// Newest verified checkpoint published.
    pub last_checkpoint: Option<ChainCheckpoint>,
    /// `total_steps` of the run, as the training log reported it.
    pub total_steps: Option<u64>,
}

impl ChainState {
    /// A fresh chain.
    pub fn new(kernel: &str, checkpoints_dataset: &str, sessions: u32) -> Self {
        ChainState {
            kernel: kernel.into(),
            checkpoints_dataset: checkpoints_dataset.into(),
            sessions_target: sessions,
            sessions_done: 0,
            current: None,
            checkpoint_versions: 0,
            last_checkpoint: None,
            total_steps: None,
        }
    }

    /// Why the chain should not start another session, if it should not.
    pub fn stop_reason(&self) -> Option<String> {
        if let (Some(total), Some(c)) = (self.total_steps, &self.last_checkpoint) {
            if c.step >= total {
                return Some(format!(
                    "training reached total_steps ({} of {total})",
                    c.step
                ));
            }
        }
        if self.sessions_done >= self.sessions_target {
            return Some(format!("{} session(s) done", self.sessions_done));
        }
        None
    }

    /// Read the state; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, KaggleError> {
        super::metadata::load_state(
            path,
            "chain state is damaged",
            "fix it or start over with --new-chain",
        )
    }

    /// Write the state atomically.
    pub fn save(&self, path: &Path) -> Result<(), KaggleError> {
        super::metadata::save_state(path, self)
    }
}

/// The chain state path for a metadata file.
pub fn chain_path_for(metadata: &Path) -> PathBuf {
    metadata.parent().unwrap_or(Path::new(".")).join(CHAIN_FILE)
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons() {
        let mut s = ChainState::new("u/k", "u/d", 2);
        assert_eq!(s.stop_reason(), None);
        s.sessions_done = 2;
        assert!(s.stop_reason().unwrap().contains("2 session(s)"));
        s.sessions_done = 1;
        s.total_steps = Some(100);
        s.last_checkpoint = Some(ChainCheckpoint {
            name: "a".into(),
            step: 100,
            from_version: 3,
        });
        assert!(s.stop_reason().unwrap().contains("total_steps"));
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
    }
}
