//! `TrainState` <-> in-memory [`Checkpoint`]: CPU little-endian arrays with path-like names
//! (`policy/...`, `adam/m/policy/...`, `offsets/policy/...`, `world/...`, `rng/...`).
//!
//! Restoring is exact: weights, Adam moments, offsets, world and generator come back
//! bit-for-bit, so a resumed run continues as if never stopped.

use std::time::{SystemTime, UNIX_EPOCH};

use tch::{Device, Tensor};

use super::{TrainError, TrainState};
use crate::checkpoint::{
    load_arrays, read_values, Checkpoint, CheckpointKind, CheckpointMeta, Element, NamedArray,
    SavedArray, SchemaError,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{param_names, Offsets, Policy};
use crate::ppo::Adam;
use crate::rng::{Rng, SavedRng};
use crate::trackers::Trackers;
use crate::world::{World, WorldParams};

fn array<T: Element>(name: &'static str, shape: Vec<usize>, v: &[T]) -> NamedArray {
    SavedArray::new(name, shape, v).to_named()
}

fn tensor_array(name: &str, t: &Tensor) -> NamedArray {
    // One memory copy straight into the byte buffer (element-wise encoding cost ~0.5 s per
    // save at the notebook size); see `checkpoint::tensor`.
    crate::checkpoint::tensor::f32_array(name, t).expect("copying a training tensor to CPU")
}

fn schema_error(e: SchemaError) -> TrainError {
    TrainError::Checkpoint(e.to_string())
}

/// The array `name` as `T` values, checked against the exact `shape` this config needs.
fn read<T: Element>(ck: &Checkpoint, name: &str, shape: &[usize]) -> Result<Vec<T>, TrainError> {
    read_values(ck, name, shape).map_err(schema_error)
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
        let (spare_json, spare_arrays) = match spare {
            Some(c) => (c.meta.metrics_json, c.arrays),
            None => (String::new(), Vec::new()),
        };
        let mut spare: std::collections::HashMap<String, NamedArray> = spare_arrays
            .into_iter()
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
        // The world and the generator list their own arrays (declared once, in the core crate).
        arrays.extend(self.world.saved_arrays().iter().map(SavedArray::to_named));
        let rng = SavedRng::from_state(self.rng.state());
        arrays.extend(rng.saved_arrays().iter().map(SavedArray::to_named));
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
                metrics_json: {
                    // Into the spare's buffer when there is one: a copy, no allocation.
                    let mut json = spare_json;
                    json.clear();
                    json.push_str(self.metrics_json());
                    json
                },
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

        let (e, a) = (params.num_envs, params.num_slots);
        let mut offsets = Offsets::new(&policy, &config, e * a);
        if let Some(o) = offsets.as_mut() {
            for (name, t) in o.names.iter().zip(o.tensors.iter_mut()) {
                *t = read_tensor(ck, &format!("offsets/{name}"), &t.size(), device)?;
            }
        }

        let mut world = World::new(params, &mut Rng::seed_from_u64(0));
        load_arrays(world.saved_arrays_mut(), ck).map_err(schema_error)?;
        world.check_restored().map_err(TrainError::Checkpoint)?;
        if adam.step < 0 {
            return Err(TrainError::Checkpoint(format!(
                "adam/step is {} (must be >= 0): the checkpoint is inconsistent",
                adam.step
            )));
        }
        let mut saved_rng = SavedRng::default();
        load_arrays(saved_rng.saved_arrays_mut(), ck).map_err(schema_error)?;
        let rng = Rng::from_state(saved_rng.state());

        let mut state = TrainState::from_parts(config, policy, adam, offsets, world, rng);
        if let Some(id) = &ck.meta.run_id {
            state.run_id = id.clone();
        }
        state.step = ck.meta.step;
        state.iteration = ck.meta.iteration;
        let history = serde_json::from_str::<Vec<Metrics>>(&ck.meta.metrics_json)
            .map_err(|e| TrainError::Checkpoint(format!("metrics metadata does not parse: {e}")))?;
        state.set_metrics_history(history);
        if !ck.meta.trackers_json.trim().is_empty() {
            state.trackers = Trackers::from_json(&ck.meta.trackers_json).map_err(|e| {
                TrainError::Checkpoint(format!("trackers metadata does not parse: {e}"))
            })?;
        }
        Ok(state)
    }
}
