//! Sizes of a run: checked arithmetic over every size and count field, and an estimate of
//! the memory a run needs, compared with this machine's memory before anything is allocated.
//!
//! The estimate is an upper-side approximation of the big buffers (the world, the rollout
//! buffers, the per-agent weight offsets with their checkpoint copies, the PPO minibatch,
//! the specialization distance matrices); small objects are covered by a fixed allowance.
//! It is meant to turn configs that cannot possibly run (a 25 GB allocation inside
//! libtorch, a `capacity overflow` panic, an aborting allocator) into a config error that
//! names the fields, not to predict the peak to the byte.

use super::error::ConfigError;
use super::Config;
use crate::config::Evolved;

/// Bytes of small objects (network, Adam, trackers, libtorch itself) added to every estimate.
const BASE_BYTES: u128 = 256 << 20;

/// The memory a run of a config needs, by part, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Agents, food and the field of every env, plus the observation buffer.
    pub world: u64,
    /// One rollout: observations, actions, log-probabilities, GAE inputs and outputs.
    pub rollout: u64,
    /// Per-agent weight offsets, with the checkpoint copy and the saver's spare.
    pub offsets: u64,
    /// One PPO minibatch: observations, per-chunk offsets, activations and gradients.
    pub minibatch: u64,
    /// Cosine distance matrices of the specialization pressure (0 when it is off).
    pub specialization: u64,
    /// Fixed allowance for everything else.
    pub base: u64,
}

impl MemoryEstimate {
    /// Sum of all parts.
    pub fn total(&self) -> u64 {
        [
            self.world,
            self.rollout,
            self.offsets,
            self.minibatch,
            self.specialization,
            self.base,
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// The parts as `(name, bytes, the fields that size it)`.
    pub fn parts(&self) -> [(&'static str, u64, &'static str); 5] {
        [
            ("world", self.world, WORLD_FIELDS),
            ("rollout", self.rollout, ROLLOUT_FIELDS),
            ("offsets", self.offsets, OFFSET_FIELDS),
            ("minibatch", self.minibatch, MINIBATCH_FIELDS),
            ("specialization", self.specialization, SPEC_FIELDS),
        ]
    }
}

const WORLD_FIELDS: &str =
    "train.num_envs, evolution.max_agents, env.grid_size, field.num_channels, env.num_food";
const ROLLOUT_FIELDS: &str = "train.num_steps, train.num_envs, evolution.max_agents, env.observation_radius, field.num_channels, env.observed_food";
const OFFSET_FIELDS: &str = "train.num_envs, evolution.max_agents, agent.hidden_dims, evolution.evolved, env.observation_radius";
const MINIBATCH_FIELDS: &str = "train.minibatch_size, agent.hidden_dims, env.observation_radius";
const SPEC_FIELDS: &str = "train.num_envs, evolution.max_agents (specialization.diversity_bonus / niche_pressure turn it on)";

/// Human-readable bytes: `1.5 GiB`, `300.0 MiB`.
pub fn format_bytes(b: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Checked products and sums that name the fields when they overflow.
struct Sizes<'a> {
    keys: &'a str,
}

impl Sizes<'_> {
    fn mul(&self, factors: &[u128]) -> Result<u128, ConfigError> {
        factors
            .iter()
            .try_fold(1u128, |a, &b| a.checked_mul(b))
            .ok_or_else(|| self.overflow())
    }

    fn add(&self, terms: &[u128]) -> Result<u128, ConfigError> {
        terms
            .iter()
            .try_fold(0u128, |a, &b| a.checked_add(b))
            .ok_or_else(|| self.overflow())
    }

    fn overflow(&self) -> ConfigError {
        ConfigError::Invalid {
            key: self
                .keys
                .split(',')
                .next()
                .unwrap_or(self.keys)
                .trim()
                .into(),
            message: format!(
                "the sizes given by {} multiply to more than any machine can hold; lower them",
                self.keys
            ),
        }
    }
}

fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Config {
    /// Observation length `3 + (2R+1)^2 C + 3K` with checked arithmetic (`None` when it
    /// does not fit a `usize`).
    pub fn checked_obs_dim(&self) -> Option<usize> {
        let r = self.env.observation_radius;
        let side = r.checked_mul(2)?.checked_add(1)?;
        side.checked_mul(side)?
            .checked_mul(self.field.num_channels)?
            .checked_add(self.env.observed_food.checked_mul(3)?)?
            .checked_add(3)
    }

    /// Parameter counts of the network: `(all, evolved)`, with checked arithmetic.
    fn param_counts(&self, obs_dim: u128) -> Result<(u128, u128), ConfigError> {
        let k = Sizes {
            keys: "agent.hidden_dims, env.observation_radius, field.num_channels",
        };
        let actions = crate::world::NUM_ACTIONS as u128;
        let mut inp = obs_dim;
        let mut body = 0u128;
        for &h in &self.agent.hidden_dims {
            let h = h as u128;
            body = k.add(&[body, k.mul(&[h, inp])?, k.mul(&[3, h])?])?;
            inp = h;
        }
        let heads = k.add(&[k.mul(&[actions + 1, inp])?, actions + 1])?;
        let all = k.add(&[body, heads])?;
        let evolved = match self.evolution.evolved {
            Evolved::All => all,
            Evolved::Heads => heads,
        };
        Ok((all, if self.evolution.enabled { evolved } else { 0 }))
    }

    /// The memory a run of this config needs (see [`MemoryEstimate`]); an error naming the
    /// fields when the sizes overflow.
    pub fn memory_estimate(&self) -> Result<MemoryEstimate, ConfigError> {
        let (e, a, t) = (
            self.train.num_envs as u128,
            self.evolution.max_agents as u128,
            self.train.num_steps as u128,
        );
        let (g, c, f) = (
            self.env.grid_size as u128,
            self.field.num_channels as u128,
            self.env.num_food as u128,
        );
        let obs = self.checked_obs_dim().ok_or_else(|| {
            Sizes {
                keys: "env.observation_radius, field.num_channels, env.observed_food",
            }
            .overflow()
        })? as u128;
        let w = Sizes { keys: WORLD_FIELDS };
        let slots = w.mul(&[e, a])?;
        // Per slot: row, col, energy, birth tick (4 bytes each), ids (2 x 8), alive (1).
        let agents = w.mul(&[slots, 33])?;
        let food = w.mul(&[e, f, 9])?;
        // The field and the blur's two scratch copies, f32.
        let field = w.mul(&[e, g, g, c, 4, 3])?;
        let r = Sizes {
            keys: ROLLOUT_FIELDS,
        };
        let obs_buffer = r.mul(&[slots, obs, 4])?;
        let world = w.add(&[agents, food, field])?;
        // Every tick's observations (all slots alive at worst), kept for the update, plus
        // their concatenation; ~40 bytes of per-sample scalars (action, log-prob, value,
        // reward, masks, ids, advantages, returns, index).
        let samples = r.mul(&[t, slots])?;
        let rollout = r.add(&[
            r.mul(&[samples, obs, 4, 2])?,
            r.mul(&[samples, 40])?,
            obs_buffer,
        ])?;
        let (params, evolved) = self.param_counts(obs)?;
        let o = Sizes {
            keys: OFFSET_FIELDS,
        };
        // The live tensors, the checkpoint copy being written and the saver's spare.
        let offsets = o.mul(&[slots, evolved, 4, 3])?;
        let m = Sizes {
            keys: MINIBATCH_FIELDS,
        };
        let mb = (self.train.minibatch_size as u128).min(samples.max(1));
        let widest = self
            .agent
            .hidden_dims
            .iter()
            .map(|&h| h as u128)
            .max()
            .unwrap_or(0)
            .max(obs);
        let layers = self.agent.hidden_dims.len() as u128 + 1;
        // Observations, per-chunk offsets with their gradients, activations (forward and
        // backward), the network's gradients and Adam moments.
        let minibatch = m.add(&[
            m.mul(&[mb, obs, 4])?,
            m.mul(&[mb, evolved, 4, 3])?,
            m.mul(&[mb, widest, layers, 4, 4])?,
            m.mul(&[params, 4, 4])?,
        ])?;
        let specialization = if self.specialization.diversity_bonus != 0.0
            || self.specialization.niche_pressure != 0.0
        {
            // f32 Gram matrices on the device, their f64 distances on the host.
            Sizes { keys: SPEC_FIELDS }.mul(&[e, a, a, 12])?
        } else {
            0
        };
        Ok(MemoryEstimate {
            world: to_u64(world),
            rollout: to_u64(rollout),
            offsets: to_u64(offsets),
            minibatch: to_u64(minibatch),
            specialization: to_u64(specialization),
            base: to_u64(BASE_BYTES),
        })
    }

    /// Checks that [`Config::memory_estimate`] fits in `available` bytes; the error names
    /// the estimate, its largest part and the fields that size it.
    pub fn check_memory(&self, available: u64) -> Result<MemoryEstimate, ConfigError> {
        let est = self.memory_estimate()?;
        if est.total() <= available {
            return Ok(est);
        }
        let parts = est.parts();
        let (name, bytes, fields) = parts
            .iter()
            .copied()
            .max_by_key(|p| p.1)
            .expect("five parts");
        let breakdown = parts
            .iter()
            .filter(|p| p.1 > 0)
            .map(|p| format!("{} {}", p.0, format_bytes(p.1 as u128)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(ConfigError::Invalid {
            key: fields.split(',').next().unwrap_or(fields).trim().into(),
            message: format!(
                "this run needs about {} of memory ({breakdown}) but this machine has {}; the \
                 largest part, {name} ({}), is sized by {fields}: lower them",
                format_bytes(est.total() as u128),
                format_bytes(available as u128),
                format_bytes(bytes as u128),
            ),
        })
    }
}

/// The most libtorch threads `train.num_threads` may ask for: 4 per core, at least 64
/// (more only slows a run down; 100000 makes thread creation hang).
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_mul(4).max(64)
}

/// This machine's memory in bytes: the physical memory, or the container's limit (cgroup
/// v2 `memory.max`, v1 `memory.limit_in_bytes`) when lower. `None` where it cannot be
/// read (not Linux): only the overflow checks apply then.
pub fn machine_memory() -> Option<u64> {
    static CACHE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *CACHE.get_or_init(|| {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .map(|kb| kb.saturating_mul(1024))
            })?;
        let limit = [
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        .min();
        Some(limit.map_or(total, |l| l.min(total)))
    })
}
