//! Field ablation (model.md section 9): does the shared field carry information the agents
//! use? Runs paired greedy episodes from a checkpoint under conditions that remove or
//! scramble the field and compares them with the `normal` condition.
//!
//! Use [`run`] (from a checkpoint file, e.g. in a notebook cell) or [`run_state`] (from a
//! [`TrainState`] in memory); both return [`AblationResults`] with a printable
//! [`AblationResults::table`] and JSON / CSV writers.
//!
//! # What an episode is
//! Every condition runs the same `episodes` episodes of `env.max_steps` ticks, with the
//! checkpoint's config, shared weights and per-agent offsets; agents act greedily
//! (argmax of their own effective weights' logits, ties to the lower action).
//! Episode `k` is paired across conditions: it starts from the same world state and its
//! random generator is stream `2k` of ChaCha8 seeded with `seed` (the random-field
//! noise uses stream `2k + 1`, so world draws stay aligned across conditions while the
//! agents act alike). The start state ([`Start`]):
//! - [`Start::Checkpoint`] (default): env `k mod E` of the checkpoint (its agents, food,
//!   field and its slots' offsets), with the tick counter set to 0;
//! - [`Start::Fresh`]: a fresh reset drawn from the episode generator; the initial agents
//!   take the offsets of the checkpoint's living agents (env-major order), agent `i` of
//!   episode `k` the `(k * num_agents + i)`-th one cycling, or zero offsets when none lives.
//!
//! With [`Start::Fresh`] the field starts at zero, so `frozen` sees what `zeroed` sees.
//! The field has no effect on the world's physics (only on observations), so `zeroed` and
//! `no_field` give the same episodes; they differ only in what the world's field holds.
//!
//! During an episode the training rules apply: a child gets its parent's offsets plus a
//! mutation drawn from the episode generator after the tick's world draws, floor respawns
//! get zero offsets.

mod episode;
mod results;
pub mod stats;

pub use results::{AblationResults, ConditionResults, EpisodeResult, GapResult, METRICS};

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_checkpoint, CheckpointError};
use crate::train::{TrainError, TrainState};

/// What happens to the field an agent sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The world as trained.
    Normal,
    /// The field is set to 0 before every observation (the world keeps running on it).
    Zeroed,
    /// The field is replaced by i.i.d. uniform [0, 1) values before every observation.
    Random,
    /// The field is restored to its value at the episode start before every observation.
    Frozen,
    /// The field part of the observation is zeroed; the world's field is untouched.
    NoField,
}

impl Condition {
    /// Every condition, in table order.
    pub const ALL: [Condition; 5] = [
        Condition::Normal,
        Condition::Zeroed,
        Condition::Random,
        Condition::Frozen,
        Condition::NoField,
    ];

    /// The condition's name (`normal`, `zeroed`, `random`, `frozen`, `no_field`).
    pub fn name(self) -> &'static str {
        match self {
            Condition::Normal => "normal",
            Condition::Zeroed => "zeroed",
            Condition::Random => "random",
            Condition::Frozen => "frozen",
            Condition::NoField => "no_field",
        }
    }

    /// Parses a comma-separated list (`"normal,zeroed,random"`); empty items are skipped,
    /// duplicates kept once.
    pub fn parse_list(s: &str) -> Result<Vec<Condition>, AblationError> {
        let mut out: Vec<Condition> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let c: Condition = item.parse()?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Condition {
    type Err = AblationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        Condition::ALL
            .into_iter()
            .find(|c| c.name() == key)
            .ok_or_else(|| AblationError::UnknownCondition(s.to_string()))
    }
}

/// Where episodes start (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Episode `k` starts from env `k mod E` of the checkpoint (tick reset to 0).
    #[default]
    Checkpoint,
    /// Episode `k` starts from a fresh reset drawn from its own generator.
    Fresh,
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Start::Checkpoint => "checkpoint",
            Start::Fresh => "fresh",
        })
    }
}

impl FromStr for Start {
    type Err = AblationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "checkpoint" => Ok(Start::Checkpoint),
            "fresh" => Ok(Start::Fresh),
            _ => Err(AblationError::UnknownStart(s.to_string())),
        }
    }
}

/// Settings of an ablation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationOptions {
    /// Checkpoint file (or a checkpoint folder: its `latest.safetensors`).
    pub checkpoint: PathBuf,
    /// Episodes per condition (>= 1).
    pub episodes: usize,
    /// Seed of the episode generators.
    pub seed: u64,
    /// Conditions, run in this order (`normal` is added first when missing, as the gaps
    /// are measured against it).
    pub conditions: Vec<Condition>,
    /// Where episodes start.
    pub start: Start,
    /// Compute device (`cpu`, `cuda`, `cuda:N`, `auto`), as `train.device`.
    pub device: String,
    /// Worker threads for the episodes' world work (0 = rayon's global pool). Results do
    /// not depend on it. On CPU, libtorch runs with one intra-op thread during the
    /// ablation (its previous setting is restored afterwards).
    pub threads: usize,
}

impl Default for AblationOptions {
    fn default() -> Self {
        AblationOptions {
            checkpoint: PathBuf::from("checkpoints/latest.safetensors"),
            episodes: 20,
            seed: 0,
            conditions: vec![Condition::Normal, Condition::Zeroed, Condition::Random],
            start: Start::Checkpoint,
            device: "cpu".into(),
            threads: 0,
        }
    }
}

impl AblationOptions {
    /// Options for `checkpoint` with the defaults (20 episodes, seed 0,
    /// `normal,zeroed,random`, start from the checkpoint's envs, CPU).
    pub fn new(checkpoint: impl Into<PathBuf>) -> Self {
        AblationOptions {
            checkpoint: checkpoint.into(),
            ..Default::default()
        }
    }

    /// Checks the counts and lists; returns the conditions to run (`normal` first).
    fn checked_conditions(&self) -> Result<Vec<Condition>, AblationError> {
        if self.episodes == 0 {
            return Err(AblationError::ZeroEpisodes);
        }
        let mut out = vec![Condition::Normal];
        for &c in &self.conditions {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

/// Everything that can stop an ablation.
#[derive(Debug, thiserror::Error)]
pub enum AblationError {
    /// The checkpoint file does not exist.
    #[error("checkpoint {0} does not exist; pass a checkpoint file written by `train` (e.g. checkpoints/latest.safetensors) or its folder")]
    MissingCheckpoint(PathBuf),
    /// The checkpoint cannot be read or verified.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint's contents do not make a training state.
    #[error("checkpoint {path} cannot be loaded: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: TrainError,
    },
    /// A condition name is not known.
    #[error("unknown ablation condition {0:?}; valid conditions: normal, zeroed, random, frozen, no_field")]
    UnknownCondition(String),
    /// A start mode is not known.
    #[error("unknown episode start {0:?}; valid: checkpoint, fresh")]
    UnknownStart(String),
    /// Zero episodes were asked for.
    #[error("the number of episodes must be at least 1 (got 0); e.g. --episodes 20")]
    ZeroEpisodes,
    /// The device cannot be used.
    #[error("device: {0}")]
    Device(String),
    /// The worker threads cannot be started.
    #[error("cannot start the worker threads: {0}")]
    Threads(String),
    /// Writing a result file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the checkpoint of `options` and runs the ablation on it (see the module docs).
pub fn run(options: &AblationOptions) -> Result<AblationResults, AblationError> {
    options.checked_conditions()?;
    let device =
        crate::device::select(&options.device).map_err(|e| AblationError::Device(e.to_string()))?;
    let path = resolve_checkpoint(&options.checkpoint)?;
    let ck = read_checkpoint(&path)?;
    let state =
        TrainState::from_checkpoint(&ck, device).map_err(|source| AblationError::State {
            path: path.clone(),
            source,
        })?;
    let mut results = run_state(&state, options)?;
    results.checkpoint = path.display().to_string();
    Ok(results)
}

/// Runs the ablation on a training state in memory (its config, weights, offsets and
/// envs); `options.checkpoint` and `options.device` are not used.
pub fn run_state(
    state: &TrainState,
    options: &AblationOptions,
) -> Result<AblationResults, AblationError> {
    run_state_inspect(state, options, &mut |_: &ObservedBatch| {})
}

/// One tick's network input of one condition, for [`run_state_inspect`].
#[derive(Debug)]
pub struct ObservedBatch<'a> {
    /// The condition being run.
    pub condition: Condition,
    /// Tick within the episodes (0-based).
    pub tick: u32,
    /// Observation length.
    pub obs_dim: usize,
    /// Episode of each row.
    pub episode: &'a [usize],
    /// The rows fed to the network (`[rows, obs_dim]`, living agents only).
    pub obs: &'a [f32],
    /// The greedy action chosen for each row.
    pub actions: &'a [u8],
}

/// [`run_state`] calling `inspect` with every batch of observations the network sees (for
/// tests and debugging).
pub fn run_state_inspect(
    state: &TrainState,
    options: &AblationOptions,
    inspect: &mut dyn FnMut(&ObservedBatch),
) -> Result<AblationResults, AblationError> {
    let conditions = options.checked_conditions()?;
    let pool = if options.threads > 0 {
        let p = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .build()
            .map_err(|e| AblationError::Threads(e.to_string()))?;
        Some(p)
    } else {
        None
    };
    // On CPU the batched forward passes are small: one libtorch thread is as fast, and
    // OpenMP's spin-waiting workers would otherwise starve the episode workers (measured
    // 5x slower with 2 libtorch threads on a 2-core machine). Restored on return.
    let _threads = (state.policy.device() == tch::Device::Cpu).then(TorchThreads::one);
    let mut per_condition = Vec::with_capacity(conditions.len());
    for &c in &conditions {
        let episodes = episode::run_condition(state, options, c, pool.as_ref(), inspect);
        per_condition.push(ConditionResults::new(c, episodes));
    }
    Ok(AblationResults::new(state, options, per_condition))
}

/// Sets libtorch's intra-op threads to 1 until dropped, then restores the previous count.
struct TorchThreads(i32);

impl TorchThreads {
    fn one() -> Self {
        let saved = tch::get_num_threads();
        tch::set_num_threads(1);
        TorchThreads(saved)
    }
}

impl Drop for TorchThreads {
    fn drop(&mut self) {
        tch::set_num_threads(self.0);
    }
}

/// A checkpoint file, or `latest.safetensors` of a folder; a clear error when missing.
fn resolve_checkpoint(p: &Path) -> Result<PathBuf, AblationError> {
    if p.is_dir() {
        return match crate::checkpoint::latest(p) {
            Ok(info) => Ok(info.path),
            Err(CheckpointError::NoLatest { .. }) => Err(AblationError::MissingCheckpoint(
                p.join(crate::checkpoint::LATEST_NAME),
            )),
            Err(e) => Err(e.into()),
        };
    }
    if !p.exists() {
        return Err(AblationError::MissingCheckpoint(p.to_path_buf()));
    }
    Ok(p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_names_round_trip_and_unknown_lists_valid() {
        for c in Condition::ALL {
            assert_eq!(c.name().parse::<Condition>().unwrap(), c);
        }
        assert_eq!("No-Field".parse::<Condition>().unwrap(), Condition::NoField);
        let e = Condition::parse_list("normal,blurred")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"blurred\"") && e.contains("no_field"), "{e}");
        assert_eq!(
            Condition::parse_list("zeroed, normal,zeroed,").unwrap(),
            [Condition::Zeroed, Condition::Normal]
        );
    }

    #[test]
    fn normal_is_always_run_first() {
        let o = AblationOptions {
            conditions: vec![Condition::Random, Condition::Normal],
            ..AblationOptions::new("x")
        };
        assert_eq!(
            o.checked_conditions().unwrap(),
            [Condition::Normal, Condition::Random]
        );
        let z = AblationOptions { episodes: 0, ..o };
        assert!(matches!(
            z.checked_conditions(),
            Err(AblationError::ZeroEpisodes)
        ));
    }
}
