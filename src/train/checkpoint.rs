//! `TrainState` <-> in-memory [`Checkpoint`]: CPU little-endian arrays with path-like names
//! (`policy/...`, `adam/m/policy/...`, `offsets/policy/...`, `world/...`, `rng/...`).
//!
//! Restoring is exact: weights, Adam moments, offsets, world and generator come back
//! bit-for-bit, so a resumed run continues as if never stopped.

use std::time::{SystemTime, UNIX_EPOCH};

use tch::{Device, Tensor};

use super::{TrainError, TrainState};
use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{param_names, Offsets, Policy};
use crate::ppo::Adam;
use crate::rng::{Rng, RngState};
use crate::trackers::Trackers;
use crate::world::{World, WorldParams};

/// Plain element types that go into checkpoint arrays.
trait Element: Copy {
    const DTYPE: DType;
    fn put(self, out: &mut Vec<u8>);
    fn take(b: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().unwrap())
            }
        }
    };
}
element!(f32, DType::F32);
element!(i32, DType::I32);
element!(u32, DType::U32);
element!(u64, DType::U64);
element!(i64, DType::I64);
element!(u8, DType::U8);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn take(b: &[u8]) -> Self {
        b[0] != 0
    }
}

fn array<T: Element>(name: &str, shape: Vec<usize>, v: &[T]) -> NamedArray {
    let mut data = Vec::with_capacity(v.len() * T::DTYPE.size());
    for &x in v {
        x.put(&mut data);
    }
    NamedArray {
        name: name.to_string(),
        dtype: T::DTYPE,
        shape,
        data,
    }
}

fn tensor_array(name: &str, t: &Tensor) -> NamedArray {
    // One memory copy straight into the byte buffer (element-wise encoding cost ~0.5 s per
    // save at the notebook size); see `checkpoint::tensor`.
    crate::checkpoint::tensor::f32_array(name, t).expect("copying a training tensor to CPU")
}

fn missing(name: &str) -> TrainError {
    TrainError::Checkpoint(format!(
        "array {name:?} is missing; the file is not a complete emergence-lab training checkpoint"
    ))
}

/// The array `name` as `T` values, checked against the exact `shape` this config needs: a
/// tensor with the right element count but another shape (a transposed weight written from
/// Python) would otherwise load as scrambled values.
fn read<T: Element>(ck: &Checkpoint, name: &str, shape: &[usize]) -> Result<Vec<T>, TrainError> {
    let a = ck.array(name).ok_or_else(|| missing(name))?;
    if a.dtype != T::DTYPE {
        return Err(TrainError::Checkpoint(format!(
            "array {name:?} has dtype {:?}, expected {:?}",
            a.dtype,
            T::DTYPE
        )));
    }
    if a.shape != shape {
        return Err(TrainError::Checkpoint(format!(
            "array {name:?} has shape {:?}, expected {shape:?} for this config (same element \
             count is not enough: a transposed or reshaped tensor would load as scrambled \
             values; write it with the expected shape)",
            a.shape
        )));
    }
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let sz = T::DTYPE.size();
    if n.and_then(|n| n.checked_mul(sz)) != Some(a.data.len()) {
        return Err(TrainError::Checkpoint(format!(
            "array {name:?} holds {} bytes, which does not match its shape {shape:?}",
            a.data.len()
        )));
    }
    Ok(a.data.chunks_exact(sz).map(T::take).collect())
}

fn read_tensor(
    ck: &Checkpoint,
    name: &str,
    shape: &[i64],
    device: Device,
) -> Result<Tensor, TrainError> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let v: Vec<f32> = read(ck, name, &dims)?;
    Ok(Tensor::from_slice(&v).view(shape).to_device(device))
}

impl TrainState {
    /// The state as a checkpoint (CPU arrays + metadata).
    pub fn to_checkpoint(&self, kind: CheckpointKind) -> Checkpoint {
        self.to_checkpoint_reusing(kind, None)
    }

    /// Like [`TrainState::to_checkpoint`], copying the per-agent offsets into the buffers of
    /// `spare` (the previous save, from `AsyncSaver::take_spare`): a plain copy without a
    /// fresh ~150 MB allocation at the notebook size.
    pub fn to_checkpoint_reusing(
        &self,
        kind: CheckpointKind,
        spare: Option<Checkpoint>,
    ) -> Checkpoint {
        let mut spare: std::collections::HashMap<String, NamedArray> = spare
            .into_iter()
            .flat_map(|c| c.arrays)
            .filter(|a| a.name.starts_with("offsets/"))
            .map(|a| (a.name.clone(), a))
            .collect();
        let mut arrays = Vec::new();
        for (name, p) in self.policy.names.iter().zip(&self.policy.params) {
            arrays.push(tensor_array(name, p));
        }
        // Adam's moments are flat like the parameters; stored per parameter name.
        let m = crate::policy::split_flat(&self.adam.m[0], &self.policy.shapes);
        let v = crate::policy::split_flat(&self.adam.v[0], &self.policy.shapes);
        for (name, m) in self.policy.names.iter().zip(&m) {
            arrays.push(tensor_array(&format!("adam/m/{name}"), m));
        }
        for (name, v) in self.policy.names.iter().zip(&v) {
            arrays.push(tensor_array(&format!("adam/v/{name}"), v));
        }
        arrays.push(array("adam/step", vec![1], &[self.adam.step]));
        if let Some(o) = &self.offsets {
            for (name, t) in o.names.iter().zip(&o.tensors) {
                let key = format!("offsets/{name}");
                arrays.push(match spare.remove(&key) {
                    Some(mut a) => {
                        crate::checkpoint::tensor::refill_f32_array(&mut a, t)
                            .expect("copying a training tensor to CPU");
                        a
                    }
                    None => tensor_array(&key, t),
                });
            }
        }
        let w = &self.world;
        let p = &w.params;
        let (e, a, f) = (p.num_envs, p.num_slots, p.num_food);
        let g = p.grid_size;
        arrays.push(array("world/row", vec![e, a], &w.row));
        arrays.push(array("world/col", vec![e, a], &w.col));
        arrays.push(array("world/energy", vec![e, a], &w.energy));
        arrays.push(array("world/alive", vec![e, a], &w.alive));
        arrays.push(array("world/agent_id", vec![e, a], &w.agent_id));
        arrays.push(array("world/parent_id", vec![e, a], &w.parent_id));
        arrays.push(array("world/birth_tick", vec![e, a], &w.birth_tick));
        arrays.push(array("world/food_row", vec![e, f], &w.food_row));
        arrays.push(array("world/food_col", vec![e, f], &w.food_col));
        arrays.push(array("world/food_collected", vec![e, f], &w.food_collected));
        arrays.push(array(
            "world/field",
            vec![e, g, g, p.num_channels],
            &w.field,
        ));
        arrays.push(array("world/tick", vec![e], &w.tick));
        arrays.push(array("world/next_id", vec![e], &w.next_id));
        let rs = self.rng.state();
        arrays.push(array("rng/seed", vec![32], &rs.seed));
        arrays.push(array("rng/stream", vec![1], &[rs.stream]));
        arrays.push(array(
            "rng/word_pos",
            vec![2],
            &[rs.word_pos as u64, (rs.word_pos >> 64) as u64],
        ));
        let created_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Checkpoint {
            meta: CheckpointMeta {
                step: self.step,
                iteration: self.iteration,
                kind,
                config_json: serde_json::to_string(&self.config).expect("config serialises"),
                trackers_json: self.trackers.to_json(),
                metrics_json: serde_json::to_string(&self.metrics_history)
                    .expect("metrics serialise"),
                created_unix,
                run_id: Some(self.run_id.clone()),
            },
            arrays,
        }
    }

    /// Rebuilds the state of a checkpoint on `device`, with the checkpoint's own config.
    pub fn from_checkpoint(ck: &Checkpoint, device: Device) -> Result<TrainState, TrainError> {
        let config: Config = serde_json::from_str(&ck.meta.config_json)
            .map_err(|e| TrainError::Checkpoint(format!("config metadata does not parse: {e}")))?;
        Self::from_checkpoint_with_config(ck, config, device)
    }

    /// Like [`TrainState::from_checkpoint`] but with `config` (e.g. the checkpoint's config
    /// with changed run-control fields such as `total_steps`); shapes must still match.
    pub fn from_checkpoint_with_config(
        ck: &Checkpoint,
        config: Config,
        device: Device,
    ) -> Result<TrainState, TrainError> {
        super::state::check_config(&config)?;
        let params = WorldParams::from_config(&config);
        let obs_dim = params.obs_dim();
        let names = param_names(&config.agent.hidden_dims);
        let shapes = crate::policy::param_shapes(obs_dim, &config.agent.hidden_dims);
        let load = |prefix: &str| -> Result<Vec<Tensor>, TrainError> {
            names
                .iter()
                .zip(&shapes)
                .map(|(n, s)| read_tensor(ck, &format!("{prefix}{n}"), s, device))
                .collect()
        };
        let policy = Policy::from_tensors(obs_dim, &config.agent.hidden_dims, load("")?, device)
            .map_err(TrainError::Checkpoint)?;
        let mut adam = Adam::new(std::slice::from_ref(&policy.flat));
        let flat = |ts: Vec<Tensor>| {
            Tensor::cat(&ts.iter().map(|t| t.flatten(0, -1)).collect::<Vec<_>>(), 0)
        };
        adam.m = vec![flat(load("adam/m/")?)];
        adam.v = vec![flat(load("adam/v/")?)];
        adam.step = read::<i64>(ck, "adam/step", &[1])?[0];

        let (e, a, f) = (params.num_envs, params.num_slots, params.num_food);
        let mut offsets = Offsets::new(&policy, &config, e * a);
        if let Some(o) = offsets.as_mut() {
            for (name, t) in o.names.iter().zip(o.tensors.iter_mut()) {
                *t = read_tensor(ck, &format!("offsets/{name}"), &t.size(), device)?;
            }
        }

        let (g, c) = (params.grid_size, params.num_channels);
        let mut world = World::new(params, &mut Rng::seed_from_u64(0));
        world.row = read(ck, "world/row", &[e, a])?;
        world.col = read(ck, "world/col", &[e, a])?;
        world.energy = read(ck, "world/energy", &[e, a])?;
        world.alive = read(ck, "world/alive", &[e, a])?;
        world.agent_id = read(ck, "world/agent_id", &[e, a])?;
        world.parent_id = read(ck, "world/parent_id", &[e, a])?;
        world.birth_tick = read(ck, "world/birth_tick", &[e, a])?;
        world.food_row = read(ck, "world/food_row", &[e, f])?;
        world.food_col = read(ck, "world/food_col", &[e, f])?;
        world.food_collected = read(ck, "world/food_collected", &[e, f])?;
        world.field = read(ck, "world/field", &[e, g, g, c])?;
        world.tick = read(ck, "world/tick", &[e])?;
        world.next_id = read(ck, "world/next_id", &[e])?;
        check_world(&world).map_err(TrainError::Checkpoint)?;
        if adam.step < 0 {
            return Err(TrainError::Checkpoint(format!(
                "adam/step is {} (must be >= 0): the checkpoint is inconsistent",
                adam.step
            )));
        }

        let seed: Vec<u8> = read(ck, "rng/seed", &[32])?;
        let stream = read::<u64>(ck, "rng/stream", &[1])?[0];
        let wp: Vec<u64> = read(ck, "rng/word_pos", &[2])?;
        let rng = Rng::from_state(RngState {
            seed: seed.try_into().unwrap(),
            stream,
            word_pos: wp[0] as u128 | ((wp[1] as u128) << 64),
        });

        let mut state = TrainState::from_parts(config, policy, adam, offsets, world, rng);
        if let Some(id) = &ck.meta.run_id {
            state.run_id = id.clone();
        }
        state.step = ck.meta.step;
        state.iteration = ck.meta.iteration;
        state.metrics_history = serde_json::from_str::<Vec<Metrics>>(&ck.meta.metrics_json)
            .map_err(|e| TrainError::Checkpoint(format!("metrics metadata does not parse: {e}")))?;
        if !ck.meta.trackers_json.trim().is_empty() {
            state.trackers = Trackers::from_json(&ck.meta.trackers_json).map_err(|e| {
                TrainError::Checkpoint(format!("trackers metadata does not parse: {e}"))
            })?;
        }
        Ok(state)
    }
}

/// Checks the value ranges of a restored world (positions on the grid, energies and the
/// field finite, ticks below the episode length, ids consistent), so that a checkpoint whose
/// checksums pass but whose values are impossible is an error instead of a panic later.
fn check_world(w: &World) -> Result<(), String> {
    let p = &w.params;
    let g = p.grid_size as i32;
    let on_grid = |v: &[i32]| v.iter().all(|&x| (0..g).contains(&x));
    if !on_grid(&w.row) || !on_grid(&w.col) {
        return Err(format!(
            "world/row or world/col holds a position outside the {g}x{g} grid"
        ));
    }
    if !on_grid(&w.food_row) || !on_grid(&w.food_col) {
        return Err(format!(
            "world/food_row or world/food_col holds a position outside the {g}x{g} grid"
        ));
    }
    if w.energy.iter().any(|e| !e.is_finite() || *e < 0.0) {
        return Err("world/energy holds a negative or non-finite energy".into());
    }
    if w.field.iter().any(|v| !v.is_finite()) {
        return Err("world/field holds a non-finite value".into());
    }
    if w.tick.iter().any(|&t| t >= p.max_steps) {
        return Err(format!(
            "world/tick holds a tick >= env.max_steps ({})",
            p.max_steps
        ));
    }
    let a = p.num_slots;
    for (e, &next) in w.next_id.iter().enumerate() {
        if w.agent_id[e * a..(e + 1) * a].iter().any(|&id| id >= next) {
            return Err(format!(
                "world/agent_id of env {e} holds an id >= world/next_id ({next})"
            ));
        }
    }
    Ok(())
}
