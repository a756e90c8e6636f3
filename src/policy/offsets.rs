//! Per-slot evolved weight offsets `d_i` (model.md section 5): agents act with `w + d_i`.
//!
//! One tensor `[E*A, ...shape]` per evolved parameter; births copy the parent's row plus
//! Gaussian mutation drawn from the run's [`Rng`], floor respawns and resets zero a row.

use half::f16;
use tch::{Device, Kind, Tensor};

use super::{AgentOffsets, Policy};
use crate::act::{Lineage, MutationSpec};
use crate::config::{Config, Evolved, RolloutOffsets};
use crate::rng::Rng;

/// The per-slot offsets of the evolved parameters.
#[derive(Debug)]
pub struct Offsets {
    /// Index of each evolved parameter in [`Policy::params`].
    pub param_index: Vec<usize>,
    /// Names of the evolved parameters (`policy/...`), in order.
    pub names: Vec<String>,
    /// `[num_slots, ...shape]` per evolved parameter (no gradient).
    pub tensors: Vec<Tensor>,
    /// Mutation standard deviation per evolved parameter.
    pub stds: Vec<f32>,
    /// Total parameter count of the network (for [`Offsets::gather`]).
    pub num_policy_params: usize,
    /// How the rollout reads the hidden layers' weight offsets (`evolution.rollout_offsets`).
    pub rollout_precision: RolloutOffsets,
    /// The rollout's rounded copy (see [`Offsets::refresh_rollout_copy`]).
    rollout_copy: Option<RolloutCopy>,
}

/// The rollout's copy of the hidden layers' weight offsets rounded to f16, one entry per
/// table (`None` for tables that are not a hidden layer's weight matrix).
#[derive(Debug)]
enum RolloutCopy {
    /// Host tables of half floats, read by the native CPU pass (half the bytes).
    Host(Vec<Option<Vec<f16>>>),
    /// f32 tables on the offsets' device holding the rounded values (the libtorch pass).
    Device(Vec<Option<Tensor>>),
}

/// `t` rounded to the nearest f16 (ties to even) and back to f32: the values the rollout's
/// f16 copy holds, on any device.
pub fn round_through_f16(t: &Tensor) -> Tensor {
    t.to_kind(Kind::Half).to_kind(Kind::Float)
}

/// Names of the parameters that carry offsets for `evolved`.
pub fn evolved_names(names: &[String], evolved: Evolved) -> Vec<usize> {
    (0..names.len())
        .filter(|&i| match evolved {
            Evolved::All => true,
            Evolved::Heads => {
                names[i].starts_with("policy/actor/") || names[i].starts_with("policy/critic/")
            }
        })
        .collect()
}

/// The mutation std of a parameter: the first `layer_mutation_rates` key that is a
/// substring of `name`, else `mutation_std`.
pub fn mutation_std_for(config: &Config, name: &str) -> f32 {
    for (key, std) in &config.specialization.layer_mutation_rates {
        if name.contains(key.as_str()) {
            return *std as f32;
        }
    }
    config.evolution.mutation_std as f32
}

impl Offsets {
    /// Zero offsets for `num_slots` slots, or `None` when `evolution.enabled = false`.
    pub fn new(policy: &Policy, config: &Config, num_slots: usize) -> Option<Offsets> {
        if !config.evolution.enabled {
            return None;
        }
        let idx = evolved_names(&policy.names, config.evolution.evolved);
        let device = policy.device();
        let tensors = idx
            .iter()
            .map(|&i| {
                let mut shape = vec![num_slots as i64];
                shape.extend(policy.params[i].size());
                Tensor::zeros(shape.as_slice(), (Kind::Float, device))
            })
            .collect();
        Some(Offsets {
            names: idx.iter().map(|&i| policy.names[i].clone()).collect(),
            stds: idx
                .iter()
                .map(|&i| mutation_std_for(config, &policy.names[i]))
                .collect(),
            param_index: idx,
            tensors,
            num_policy_params: policy.params.len(),
            rollout_precision: config.evolution.rollout_offsets,
            rollout_copy: None,
        })
    }

    /// Whether table `j` holds a hidden layer's weight matrix (the tables the rollout may
    /// read through its f16 copy; the heads and vectors are a few hundred bytes per agent).
    fn is_hidden_weight(&self, j: usize) -> bool {
        let p = self.param_index[j];
        p.is_multiple_of(4) && p + 4 < self.num_policy_params
    }

    /// Rebuilds the rollout's copy from the tables when `rollout_precision` is `F16` (drops it
    /// for `F32`). The rollout calls this before its first tick; births and zeroed rows keep
    /// it current during the rollout (through [`Offsets::apply`], [`Offsets::set_row`] and
    /// [`Offsets::zero_rows`]). Writes to `tensors` by other means are seen at the next call.
    pub fn refresh_rollout_copy(&mut self) {
        if self.rollout_precision == RolloutOffsets::F32 {
            self.rollout_copy = None;
            return;
        }
        let host: Option<Vec<&[f32]>> = self.tensors.iter().map(super::native::cpu_slice).collect();
        let copy = match host {
            Some(tables) => {
                let mut old = match self.rollout_copy.take() {
                    Some(RolloutCopy::Host(v)) => v,
                    _ => Vec::new(),
                };
                old.resize_with(tables.len(), || None);
                let copies = tables
                    .iter()
                    .zip(old)
                    .enumerate()
                    .map(|(j, (src, buf))| {
                        self.is_hidden_weight(j).then(|| {
                            let mut buf = buf.unwrap_or_default();
                            buf.resize(src.len(), f16::ZERO);
                            convert_rows(src, &mut buf);
                            buf
                        })
                    })
                    .collect();
                RolloutCopy::Host(copies)
            }
            None => RolloutCopy::Device(
                (0..self.tensors.len())
                    .map(|j| {
                        self.is_hidden_weight(j)
                            .then(|| tch::no_grad(|| round_through_f16(&self.tensors[j])))
                    })
                    .collect(),
            ),
        };
        self.rollout_copy = Some(copy);
    }

    /// Brings the rollout's copy of the rows `slots` up to date with the tables.
    fn refresh_copy_rows(&mut self, slots: std::ops::Range<usize>) {
        let n = self.num_slots().max(1);
        let Some(copy) = self.rollout_copy.as_mut() else {
            return;
        };
        for (j, t) in self.tensors.iter().enumerate() {
            match copy {
                RolloutCopy::Host(tables) => {
                    if let (Some(dst), Some(src)) = (&mut tables[j], super::native::cpu_slice(t)) {
                        let len = src.len() / n;
                        let rows = slots.start * len..slots.end * len;
                        convert_rows(&src[rows.clone()], &mut dst[rows]);
                    }
                }
                RolloutCopy::Device(tables) => {
                    if let Some(dst) = &tables[j] {
                        let (start, len) = (slots.start as i64, slots.len() as i64);
                        tch::no_grad(|| {
                            dst.narrow(0, start, len)
                                .copy_(&round_through_f16(&t.narrow(0, start, len)))
                        });
                    }
                }
            }
        }
    }

    /// Number of slots.
    pub fn num_slots(&self) -> usize {
        self.tensors
            .first()
            .map(|t| t.size()[0] as usize)
            .unwrap_or(0)
    }

    /// Number of offset scalars per slot.
    pub fn per_slot_numel(&self) -> i64 {
        self.tensors.iter().map(|t| t.numel() as i64).sum::<i64>() / self.num_slots().max(1) as i64
    }

    /// Device of the offsets.
    pub fn device(&self) -> Device {
        self.tensors[0].device()
    }

    /// The shapes and standard deviations of a mutation, as plain data (shareable across
    /// threads; the ablation draws mutations in parallel episodes with it).
    pub fn mutation_spec(&self) -> MutationSpec {
        MutationSpec {
            numel: self
                .tensors
                .iter()
                .map(|t| t.size()[1..].iter().product::<i64>() as usize)
                .collect(),
            stds: self.stds.clone(),
        }
    }

    /// Draws one mutation (see [`MutationSpec::draw`]) as tensors shaped like one row.
    pub fn mutation_noise(&self, rng: &mut Rng) -> Vec<Tensor> {
        let noise = self.mutation_spec().draw(rng);
        self.noise_tensors(&noise)
    }

    fn noise_tensors(&self, noise: &[Vec<f32>]) -> Vec<Tensor> {
        let device = self.device();
        self.tensors
            .iter()
            .zip(noise)
            .map(|(t, z)| Tensor::from_slice(z).view(&t.size()[1..]).to_device(device))
            .collect()
    }

    /// The rows of `slot` (views, `[...shape]` per parameter).
    pub fn row(&self, slot: usize) -> Vec<Tensor> {
        self.tensors.iter().map(|t| t.get(slot as i64)).collect()
    }

    /// Overwrites the rows of `slot` with `values` (`[...shape]` per parameter).
    pub fn set_row(&mut self, slot: usize, values: &[Tensor]) {
        tch::no_grad(|| {
            for (t, v) in self.tensors.iter().zip(values) {
                t.get(slot as i64).copy_(v);
            }
        });
        self.refresh_copy_rows(slot..slot + 1);
    }

    /// Birth: `d_child = d_parent + mutation` (noise from `rng`). Returns the child's row.
    pub fn birth(&mut self, parent: usize, child: usize, rng: &mut Rng) -> Vec<Tensor> {
        let noise = self.mutation_spec().draw(rng);
        self.birth_with_noise(parent, child, &noise)
    }

    /// Birth with a mutation drawn beforehand ([`MutationSpec::draw`]): `d_child = d_parent +
    /// noise`. Returns the child's row.
    pub fn birth_with_noise(
        &mut self,
        parent: usize,
        child: usize,
        noise: &[Vec<f32>],
    ) -> Vec<Tensor> {
        let noise = self.noise_tensors(noise);
        let row: Vec<Tensor> = self
            .row(parent)
            .iter()
            .zip(&noise)
            .map(|(p, n)| p + n)
            .collect();
        self.set_row(child, &row);
        row
    }

    /// Applies what a tick did to a world whose slot 0 is row `base` of this table: a birth
    /// copies the parent's row plus its mutation, a respawn or reset zeroes the rows.
    pub fn apply(&mut self, base: usize, event: &Lineage<'_>) {
        match *event {
            Lineage::Birth {
                parent,
                child,
                mutation,
            } => {
                if !self.birth_in_place(base + parent, base + child, mutation) {
                    self.birth_with_noise(base + parent, base + child, mutation);
                }
            }
            Lineage::Respawn { .. } | Lineage::Reset { .. } => {
                let (rows, _) = event.overwrites();
                self.zero_rows(base + rows.start..base + rows.end);
            }
        }
    }

    /// [`Offsets::birth_with_noise`] on host slices when every table is a contiguous f32
    /// CPU tensor (the same values: one f32 addition per scalar, no tensor made); `false`
    /// (nothing changed) otherwise.
    fn birth_in_place(&mut self, parent: usize, child: usize, noise: &[Vec<f32>]) -> bool {
        let slots = self.num_slots().max(1);
        let Some(tables) = self.host_tables_mut() else {
            return false;
        };
        for (table, z) in tables.into_iter().zip(noise) {
            let len = table.len() / slots;
            assert_eq!(z.len(), len, "mutation noise of the wrong length");
            table.copy_within(parent * len..(parent + 1) * len, child * len);
            let row = &mut table[child * len..(child + 1) * len];
            row.iter_mut().zip(z).for_each(|(d, n)| *d += n);
        }
        self.refresh_copy_rows(child..child + 1);
        true
    }

    /// The tables as host slices when every one is a contiguous f32 CPU tensor.
    fn host_tables_mut(&mut self) -> Option<Vec<&mut [f32]>> {
        // SAFETY: `&mut self` holds the tables, and the slices borrow it: no other view of
        // them is alive while they are.
        self.tensors
            .iter()
            .map(|t| unsafe { super::native::cpu_slice_mut(t) })
            .collect()
    }

    /// Zeroes the rows of `slots` (floor respawns, episode resets).
    pub fn zero_rows(&mut self, slots: std::ops::Range<usize>) {
        if slots.is_empty() {
            return;
        }
        let n = self.num_slots().max(1);
        if let Some(tables) = self.host_tables_mut() {
            for table in tables {
                let len = table.len() / n;
                table[slots.start * len..slots.end * len].fill(0.0);
            }
        } else {
            tch::no_grad(|| {
                for t in &self.tensors {
                    let _ = t.narrow(0, slots.start as i64, slots.len() as i64).zero_();
                }
            });
        }
        self.refresh_copy_rows(slots);
    }

    /// Gathers rows `idx` (`[U]` int64 on the offsets' device) of `tables` (one
    /// `[rows, ...shape]` tensor per evolved parameter) into per-parameter `[U, ...shape]`,
    /// placed at their [`Policy::params`] index.
    pub fn gather(&self, tables: &[Tensor], idx: &Tensor) -> AgentOffsets {
        let mut out: Vec<Option<Tensor>> = (0..self.num_policy_params).map(|_| None).collect();
        for (&pi, t) in self.param_index.iter().zip(tables) {
            out[pi] = Some(t.index_select(0, idx));
        }
        AgentOffsets::gathered(out)
    }

    /// Per-parameter offsets of chunks of the virtual table `[self.tensors; extra]`, given
    /// per chunk `lo` (its slot row, clamped), `hi` (its `extra` row, clamped) and
    /// `in_slots` (whether the entry is a slot row), all on the offsets' device;
    /// `all_slots` / `all_extra` skip the blend when every entry is on one side.
    pub fn gather_entry_tensors(
        &self,
        extra: &[Tensor],
        lo: &Tensor,
        hi: &Tensor,
        in_slots: &Tensor,
        all_slots: bool,
        all_extra: bool,
    ) -> AgentOffsets {
        let mut out: Vec<Option<Tensor>> = (0..self.num_policy_params).map(|_| None).collect();
        let u = lo.size()[0];
        for ((&pi, t), x) in self.param_index.iter().zip(&self.tensors).zip(extra) {
            out[pi] = Some(if all_slots {
                t.index_select(0, lo)
            } else if all_extra {
                x.index_select(0, hi)
            } else {
                let mut shape = vec![u];
                shape.extend(std::iter::repeat_n(1, t.dim() - 1));
                t.index_select(0, lo)
                    .where_self(&in_slots.view(shape.as_slice()), &x.index_select(0, hi))
            });
        }
        AgentOffsets::gathered(out)
    }

    /// The offsets as host rows for the native CPU pass (`None` unless every table is a
    /// contiguous f32 CPU tensor), with `extra` the rows `N..` of the virtual table (none:
    /// only slot rows are used).
    pub fn host_rows<'a>(
        &'a self,
        extra: Option<&'a [Tensor]>,
    ) -> Option<super::native::OffsetRows<'a>> {
        let mut tables: Vec<Option<(&[f32], &[f32])>> =
            (0..self.num_policy_params).map(|_| None).collect();
        for (j, (&pi, t)) in self.param_index.iter().zip(&self.tensors).enumerate() {
            let x = match extra {
                Some(e) => super::native::cpu_slice(e.get(j)?)?,
                None => &[],
            };
            tables[pi] = Some((super::native::cpu_slice(t)?, x));
        }
        // The rollout's f16 copy serves the slot rows (the update passes `extra` and reads
        // the f32 tables).
        let mut half: Vec<Option<&[f16]>> = Vec::new();
        if let (None, Some(RolloutCopy::Host(copies))) = (extra, &self.rollout_copy) {
            half.resize(self.num_policy_params, None);
            for (&pi, c) in self.param_index.iter().zip(copies) {
                half[pi] = c.as_deref();
            }
        }
        Some(super::native::OffsetRows {
            tables,
            half,
            num_slots: self.num_slots(),
        })
    }

    /// The offsets of the slots `slots` without copying the weight matrices:
    /// they are read in place through runs of consecutive slots; vectors (biases, norm
    /// parameters) are gathered. Use for one observation per agent (rollout ticks).
    pub fn by_slots(&self, slots: &[i64]) -> AgentOffsets {
        let mut spans: Vec<(i64, i64, i64)> = Vec::new();
        for (j, &k) in slots.iter().enumerate() {
            match spans.last_mut() {
                Some((_, ts, len)) if *ts + *len == k => *len += 1,
                _ => spans.push((j as i64, k, 1)),
            }
        }
        let mut out = AgentOffsets {
            gathered: (0..self.num_policy_params).map(|_| None).collect(),
            runs: (0..self.num_policy_params).map(|_| None).collect(),
            spans,
        };
        let copies = match &self.rollout_copy {
            Some(RolloutCopy::Device(c)) => Some(c),
            _ => None,
        };
        for (j, (&pi, t)) in self.param_index.iter().zip(&self.tensors).enumerate() {
            if t.dim() == 3 {
                // The rollout's rounded copy when it has one (the same values as the
                // native pass's f16 rows).
                let table = copies.and_then(|c| c[j].as_ref()).unwrap_or(t);
                out.runs[pi] = Some(table.shallow_clone());
            } else {
                // Vectors: the runs' rows back to back (no index tensor to copy over).
                let parts: Vec<Tensor> = out
                    .spans
                    .iter()
                    .map(|&(_, ts, len)| t.narrow(0, ts, len))
                    .collect();
                out.gathered[pi] = Some(Tensor::cat(&parts, 0));
            }
        }
        out
    }
}

/// `dst = round_to_f16(src)` (ties to even), the conversion `half` vectorises where it can.
fn convert_rows(src: &[f32], dst: &mut [f16]) {
    use half::slice::HalfFloatSliceExt;
    dst.convert_from_f32_slice(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(evolved: Evolved) -> (Config, Policy) {
        let mut c = Config::default();
        c.evolution.evolved = evolved;
        c.specialization
            .layer_mutation_rates
            .insert("actor".into(), 0.5);
        let p = Policy::new(12, &[8, 8], &mut Rng::seed_from_u64(0), Device::Cpu);
        (c, p)
    }

    #[test]
    fn heads_select_only_actor_and_critic() {
        let (c, p) = setup(Evolved::Heads);
        let o = Offsets::new(&p, &c, 4).unwrap();
        assert_eq!(
            o.names,
            [
                "policy/actor/weight",
                "policy/actor/bias",
                "policy/critic/weight",
                "policy/critic/bias"
            ]
        );
        assert_eq!(o.per_slot_numel(), 6 * 8 + 6 + 8 + 1);
        let (c2, p2) = setup(Evolved::All);
        let o = Offsets::new(&p2, &c2, 4).unwrap();
        assert_eq!(o.per_slot_numel(), p2.num_params());
    }

    #[test]
    fn disabled_has_no_offsets() {
        let (mut c, p) = setup(Evolved::All);
        c.evolution.enabled = false;
        assert!(Offsets::new(&p, &c, 4).is_none());
    }

    #[test]
    fn birth_copies_parent_plus_per_layer_mutation_and_zero_resets() {
        let (c, p) = setup(Evolved::All);
        let mut o = Offsets::new(&p, &c, 4).unwrap();
        let mut rng = Rng::seed_from_u64(5);
        let first = o.birth(0, 1, &mut rng);
        let second = o.birth(1, 2, &mut rng);
        let ai = o
            .names
            .iter()
            .position(|n| n == "policy/actor/weight")
            .unwrap();
        let hi = o
            .names
            .iter()
            .position(|n| n == "policy/hidden0/weight")
            .unwrap();
        // Child 2 = child 1 + noise; the actor noise has std 0.5, hidden noise std 0.01.
        let da = (&second[ai] - &first[ai]).std(false).double_value(&[]);
        let dh = (&second[hi] - &first[hi]).std(false).double_value(&[]);
        assert!((0.3..0.7).contains(&da), "{da}");
        assert!((0.005..0.015).contains(&dh), "{dh}");
        assert_eq!(
            o.row(2)[ai].sum(Kind::Float).double_value(&[]),
            second[ai].sum(Kind::Float).double_value(&[])
        );
        o.zero_rows(1..3);
        assert_eq!(o.tensors[ai].abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn lineage_on_host_tables_equals_the_tensor_path_bit_for_bit() {
        // `apply` writes births and zeroes rows in place on CPU tables; the tensor
        // operations of `birth_with_noise` / a `narrow().zero_()` are the reference.
        let (c, p) = setup(Evolved::All);
        let mut fast = Offsets::new(&p, &c, 5).unwrap();
        let mut reference = Offsets::new(&p, &c, 5).unwrap();
        let mut rng = Rng::seed_from_u64(9);
        let spec = fast.mutation_spec();
        let births = [(0, 3), (3, 1), (1, 1), (4, 2), (2, 0)];
        for (parent, child) in births {
            let noise = spec.draw(&mut rng);
            fast.apply(
                0,
                &Lineage::Birth {
                    parent,
                    child,
                    mutation: &noise,
                },
            );
            reference.birth_with_noise(parent, child, &noise);
        }
        let bits = |o: &Offsets| -> Vec<Vec<u32>> {
            o.tensors
                .iter()
                .map(|t| {
                    let v: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                })
                .collect()
        };
        assert!(
            bits(&fast).iter().flatten().any(|&b| b != 0),
            "births wrote rows"
        );
        assert_eq!(bits(&fast), bits(&reference));
        fast.zero_rows(1..3);
        for t in &reference.tensors {
            let _ = t.narrow(0, 1, 2).zero_();
        }
        assert_eq!(bits(&fast), bits(&reference));
        assert!(
            bits(&fast).iter().flatten().any(|&b| b != 0),
            "other rows kept"
        );
    }
}
