//! Ablation results: per-episode numbers, per-condition summaries, the paired
//! normal-minus-condition gaps, the text table and the JSON / CSV files.
//!
//! The JSON file is [`AblationResults`] serialised (`serde_json`); the CSV file has one row
//! per (condition, episode) with the columns of [`METRICS`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::stats::{mean, std_dev, PairedGap};
use super::{AblationError, AblationOptions, Condition, Start};
use crate::train::TrainState;

/// The per-episode metrics, in column order.
pub const METRICS: [&str; 7] = [
    "total_reward",
    "mean_population",
    "final_population",
    "births",
    "deaths",
    "foods_eaten",
    "floor_respawns",
];

/// What happened in one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeResult {
    /// Episode index `k` (paired across conditions).
    pub episode: usize,
    /// Env of the checkpoint the episode started from (`None` for fresh starts).
    pub start_env: Option<usize>,
    /// Sum of all agents' rewards (`food_energy` per food eaten).
    pub total_reward: f64,
    /// Living agents per tick, averaged over the episode.
    pub mean_population: f64,
    /// Living agents after the last tick.
    pub final_population: u64,
    /// Children born.
    pub births: u64,
    /// Agents that died.
    pub deaths: u64,
    /// Foods eaten.
    pub foods_eaten: u64,
    /// Agents placed by the population floor.
    pub floor_respawns: u64,
}

impl EpisodeResult {
    /// An empty record for episode `k`.
    pub fn new(episode: usize, start_env: Option<usize>) -> Self {
        EpisodeResult {
            episode,
            start_env,
            total_reward: 0.0,
            mean_population: 0.0,
            final_population: 0,
            births: 0,
            deaths: 0,
            foods_eaten: 0,
            floor_respawns: 0,
        }
    }

    /// The value of metric `name` (one of [`METRICS`]).
    pub fn metric(&self, name: &str) -> Option<f64> {
        Some(match name {
            "total_reward" => self.total_reward,
            "mean_population" => self.mean_population,
            "final_population" => self.final_population as f64,
            "births" => self.births as f64,
            "deaths" => self.deaths as f64,
            "foods_eaten" => self.foods_eaten as f64,
            "floor_respawns" => self.floor_respawns as f64,
            _ => return None,
        })
    }
}

/// Mean and sample standard deviation of one metric over episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Metric name.
    pub metric: String,
    pub mean: f64,
    /// Sample standard deviation (divisor n - 1).
    pub std: f64,
}

/// All episodes of one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionResults {
    pub condition: Condition,
    /// Mean and std of every metric, in [`METRICS`] order.
    pub summary: Vec<Summary>,
    /// Every episode, in episode order.
    pub episodes: Vec<EpisodeResult>,
}

impl ConditionResults {
    /// Summarises `episodes` of `condition`.
    pub fn new(condition: Condition, episodes: Vec<EpisodeResult>) -> Self {
        let summary = METRICS
            .iter()
            .map(|&m| {
                let v = column(&episodes, m);
                Summary {
                    metric: m.to_string(),
                    mean: mean(&v),
                    std: std_dev(&v),
                }
            })
            .collect();
        ConditionResults {
            condition,
            summary,
            episodes,
        }
    }

    /// The summary of `metric`.
    pub fn summary_of(&self, metric: &str) -> Option<&Summary> {
        self.summary.iter().find(|s| s.metric == metric)
    }
}

fn column(episodes: &[EpisodeResult], metric: &str) -> Vec<f64> {
    episodes
        .iter()
        .map(|e| e.metric(metric).expect("known metric"))
        .collect()
}

/// The paired gap `normal - condition` of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapResult {
    pub condition: Condition,
    pub metric: String,
    /// The paired difference with its 95% confidence interval.
    pub gap: PairedGap,
}

/// The outcome of an ablation run (serialised as the JSON output file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationResults {
    /// The checkpoint file (empty for a state from memory).
    pub checkpoint: String,
    /// Training step of the checkpoint.
    pub step: u64,
    /// Training iteration of the checkpoint.
    pub iteration: u64,
    /// `Config::hash_hex` of the checkpoint's config.
    pub config_hash: String,
    /// Seed of the episode generators.
    pub seed: u64,
    /// Episodes per condition.
    pub episodes: usize,
    /// Ticks per episode (`env.max_steps`).
    pub ticks: u32,
    /// Where episodes started.
    pub start: Start,
    /// Per condition, in run order (`normal` first).
    pub conditions: Vec<ConditionResults>,
    /// `normal - condition` for every other condition and every metric.
    pub gaps: Vec<GapResult>,
}

impl AblationResults {
    /// Assembles the results and computes the gaps.
    pub(super) fn new(
        state: &TrainState,
        options: &AblationOptions,
        conditions: Vec<ConditionResults>,
    ) -> Self {
        let mut gaps = Vec::new();
        if let Some(normal) = conditions.iter().find(|c| c.condition == Condition::Normal) {
            for c in conditions
                .iter()
                .filter(|c| c.condition != Condition::Normal)
            {
                for &m in &METRICS {
                    gaps.push(GapResult {
                        condition: c.condition,
                        metric: m.to_string(),
                        gap: PairedGap::of(&column(&normal.episodes, m), &column(&c.episodes, m)),
                    });
                }
            }
        }
        AblationResults {
            checkpoint: String::new(),
            step: state.step,
            iteration: state.iteration,
            config_hash: state.config.hash_hex(),
            seed: options.seed,
            episodes: options.episodes,
            ticks: state.config.env.max_steps,
            start: options.start,
            conditions,
            gaps,
        }
    }

    /// Results of `condition`, if it was run.
    pub fn condition(&self, condition: Condition) -> Option<&ConditionResults> {
        self.conditions.iter().find(|c| c.condition == condition)
    }

    /// The gap `normal - condition` of `metric`.
    pub fn gap(&self, condition: Condition, metric: &str) -> Option<&PairedGap> {
        self.gaps
            .iter()
            .find(|g| g.condition == condition && g.metric == metric)
            .map(|g| &g.gap)
    }

    /// The table printed by the `ablation` command: per condition mean ± std of the episode
    /// reward, population (mean over ticks and at the end), births, deaths and foods eaten;
    /// then the paired `normal - condition` reward and food gaps with 95% intervals.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Ablation: {} episodes x {} ticks per condition, seed {}, start {}, checkpoint step {} (config {})",
            self.episodes,
            self.ticks,
            self.seed,
            self.start,
            self.step,
            self.config_hash
        );
        let _ = writeln!(
            s,
            "{:<10} {:>22} {:>16} {:>16} {:>16} {:>16} {:>16}",
            "condition",
            "reward mean±std",
            "population",
            "final pop.",
            "births",
            "deaths",
            "foods eaten"
        );
        for c in &self.conditions {
            let cell = |m: &str| {
                let x = c.summary_of(m).expect("summarised");
                format!("{:.1}±{:.1}", x.mean, x.std)
            };
            let _ = writeln!(
                s,
                "{:<10} {:>22} {:>16} {:>16} {:>16} {:>16} {:>16}",
                c.condition.name(),
                cell("total_reward"),
                cell("mean_population"),
                cell("final_population"),
                cell("births"),
                cell("deaths"),
                cell("foods_eaten")
            );
        }
        if self.conditions.len() > 1 {
            let _ = writeln!(
                s,
                "\nPaired gaps normal - condition (mean [95% CI, t with n-1 df]):"
            );
            let _ = writeln!(
                s,
                "{:<10} {:>36} {:>30} {:>5}",
                "condition", "reward gap", "foods-eaten gap", "sig."
            );
            for c in self.conditions.iter().skip(1) {
                let fmt = |m: &str| {
                    let g = self.gap(c.condition, m).expect("gap computed");
                    match (g.ci_low, g.ci_high) {
                        (Some(lo), Some(hi)) => format!("{:.1} [{lo:.1}, {hi:.1}]", g.mean),
                        _ => format!("{:.1} [n/a: 1 episode]", g.mean),
                    }
                };
                let sig = self
                    .gap(c.condition, "total_reward")
                    .is_some_and(|g| g.significant());
                let _ = writeln!(
                    s,
                    "{:<10} {:>36} {:>30} {:>5}",
                    c.condition.name(),
                    fmt("total_reward"),
                    fmt("foods_eaten"),
                    if sig { "yes" } else { "no" }
                );
            }
        }
        s
    }

    /// Pretty JSON of the whole result.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results serialise")
    }

    /// CSV with a header and one row per (condition, episode): `condition,episode,start_env,`
    /// then [`METRICS`], then `step,config_hash`.
    pub fn to_csv(&self) -> String {
        let mut s = format!(
            "condition,episode,start_env,{},step,config_hash\n",
            METRICS.join(",")
        );
        for c in &self.conditions {
            for e in &c.episodes {
                let _ = write!(
                    s,
                    "{},{},{}",
                    c.condition.name(),
                    e.episode,
                    e.start_env.map(|x| x.to_string()).unwrap_or_default()
                );
                for m in METRICS {
                    let _ = write!(s, ",{}", e.metric(m).expect("known metric"));
                }
                let _ = writeln!(s, ",{},{}", self.step, self.config_hash);
            }
        }
        s
    }

    /// Writes the JSON to `path` and the CSV next to it (same name, extension `csv`);
    /// returns both paths.
    pub fn write(&self, path: &Path) -> Result<(PathBuf, PathBuf), AblationError> {
        let csv = path.with_extension("csv");
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| AblationError::Io { path: p, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(path, self.to_json()).map_err(io(path))?;
        std::fs::write(&csv, self.to_csv()).map_err(io(&csv))?;
        Ok((path.to_path_buf(), csv))
    }
}
