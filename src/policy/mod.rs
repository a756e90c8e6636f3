//! The actor-critic MLP of model.md section 5 on tch, with stable path-like parameter names.
//!
//! Parameters are plain tensors (no `VarStore`) so the names (`policy/hidden0/weight`, ...)
//! are exactly the checkpoint keys; the forward pass takes optional per-agent offsets and
//! computes `x (W + D_i)^T` as one shared matmul plus batched per-agent products.

pub mod gemm;
pub mod native;
pub(crate) mod offsets;
mod products;
mod rows;
pub(crate) mod simd;

pub use offsets::{round_through_f16, Offsets};

use tch::{Device, Kind, Tensor};

use crate::rng::Rng;
use crate::world::NUM_ACTIONS;

/// LayerNorm epsilon of model.md section 5.
pub const LAYER_NORM_EPS: f64 = 1e-6;

/// The shared actor-critic parameters.
///
/// All parameters live in one flat leaf tensor `flat` (so Adam and gradient clipping are a
/// few ops per step); `params` are views into it in this order (also the checkpoint order):
/// per hidden layer `k` `policy/hidden{k}/weight [h, in]`, `policy/hidden{k}/bias [h]`,
/// `policy/hidden{k}/norm/weight [h]`, `policy/hidden{k}/norm/bias [h]`; then
/// `policy/actor/weight [6, h]`, `policy/actor/bias [6]`, `policy/critic/weight [1, h]`,
/// `policy/critic/bias [1]`.
#[derive(Debug)]
pub struct Policy {
    /// Parameter names, in order.
    pub names: Vec<String>,
    /// Parameter shapes, in order.
    pub shapes: Vec<Vec<i64>>,
    /// All parameters concatenated (leaf tensor with `requires_grad`).
    pub flat: Tensor,
    /// Views into `flat`, one per parameter (use [`Policy::fresh_params`] for a new graph).
    pub params: Vec<Tensor>,
    /// Observation length.
    pub obs_dim: usize,
    /// Hidden layer widths.
    pub hidden_dims: Vec<usize>,
}

/// Views of `flat` with `shapes`, in order.
pub fn split_flat(flat: &Tensor, shapes: &[Vec<i64>]) -> Vec<Tensor> {
    let mut off = 0;
    shapes
        .iter()
        .map(|s| {
            let n: i64 = s.iter().product();
            let v = flat.narrow(0, off, n).view(s.as_slice());
            off += n;
            v
        })
        .collect()
}

/// Per-agent offsets for a batch of `U` agents, per parameter (indexed like
/// [`Policy::params`]): either `gathered[i]` (`[U, ...shape]`), or for weight matrices
/// `runs[i]` (the full per-slot table `[N, out, in]`) read through `spans` without copying.
#[derive(Debug, Default)]
pub struct AgentOffsets {
    /// Gathered per-agent offsets `[U, ...shape]`, `None` when absent or in `runs`.
    pub gathered: Vec<Option<Tensor>>,
    /// Full per-slot tables of weight matrices used through `spans`.
    pub runs: Vec<Option<Tensor>>,
    /// `(first agent in the batch, first table row, length)` of each run of consecutive
    /// table rows; they cover the batch in order.
    pub spans: Vec<(i64, i64, i64)>,
}

impl AgentOffsets {
    /// Offsets given as gathered `[U, ...shape]` tensors.
    pub fn gathered(gathered: Vec<Option<Tensor>>) -> Self {
        let runs = gathered.iter().map(|_| None).collect();
        AgentOffsets {
            gathered,
            runs,
            spans: Vec::new(),
        }
    }
}

/// The parameter names of the network for `hidden_dims`, in order.
pub fn param_names(hidden_dims: &[usize]) -> Vec<String> {
    let mut names = Vec::new();
    for k in 0..hidden_dims.len() {
        for s in ["weight", "bias", "norm/weight", "norm/bias"] {
            names.push(format!("policy/hidden{k}/{s}"));
        }
    }
    for head in ["actor", "critic"] {
        for s in ["weight", "bias"] {
            names.push(format!("policy/{head}/{s}"));
        }
    }
    names
}

/// The parameter shapes of the network, in the order of [`param_names`].
pub fn param_shapes(obs_dim: usize, hidden_dims: &[usize]) -> Vec<Vec<i64>> {
    let mut shapes = Vec::new();
    let mut inp = obs_dim as i64;
    for &h in hidden_dims {
        let h = h as i64;
        shapes.extend([vec![h, inp], vec![h], vec![h], vec![h]]);
        inp = h;
    }
    shapes.extend([
        vec![NUM_ACTIONS as i64, inp],
        vec![NUM_ACTIONS as i64],
        vec![1, inp],
        vec![1],
    ]);
    shapes
}

/// An orthogonal `[rows, cols]` matrix scaled by `gain` (the usual QR construction, with
/// the normal draws taken from `rng` in row-major order of the `[max, min]` matrix). The QR
/// runs on one libtorch thread: its rounding depends on the thread count, the
/// initialisation must not.
pub fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Tensor {
    let (r, c) = (rows.max(cols), rows.min(cols));
    let data: Vec<f32> = (0..r * c).map(|_| rng.normal_f32()).collect();
    let a = Tensor::from_slice(&data).view([r as i64, c as i64]);
    let threads = tch::get_num_threads();
    tch::set_num_threads(1);
    let (q, rr) = Tensor::linalg_qr(&a, "reduced");
    tch::set_num_threads(threads);
    let sign = rr.diagonal(0, 0, 1).sign();
    // A zero diagonal entry has sign 0; keep that column rather than zeroing it.
    let sign = sign.where_self(&sign.ne(0.0), &sign.ones_like());
    let q = q * sign.unsqueeze(0);
    let q = if rows < cols { q.tr() } else { q };
    (q * gain).contiguous()
}

impl Policy {
    /// A freshly initialised network (model.md section 5): orthogonal weights with gains
    /// sqrt(2) (hidden), 0.01 (actor), 1.0 (critic); zero biases; LayerNorm scale 1, bias 0.
    /// Random draws come from `rng` (hidden layers in order, then actor, then critic).
    pub fn new(obs_dim: usize, hidden_dims: &[usize], rng: &mut Rng, device: Device) -> Policy {
        let names = param_names(hidden_dims);
        let shapes = param_shapes(obs_dim, hidden_dims);
        let n_hidden = hidden_dims.len();
        let mut params = Vec::with_capacity(names.len());
        for (i, shape) in shapes.iter().enumerate() {
            let t = if shape.len() == 2 {
                let gain = if i < 4 * n_hidden {
                    2f64.sqrt()
                } else if i == 4 * n_hidden {
                    0.01
                } else {
                    1.0
                };
                orthogonal(shape[0] as usize, shape[1] as usize, gain, rng)
            } else if names[i].ends_with("norm/weight") {
                Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
            } else {
                Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
            };
            params.push(t);
        }
        Self::assemble(names, shapes, params, obs_dim, hidden_dims, device)
    }

    fn assemble(
        names: Vec<String>,
        shapes: Vec<Vec<i64>>,
        tensors: Vec<Tensor>,
        obs_dim: usize,
        hidden_dims: &[usize],
        device: Device,
    ) -> Policy {
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.detach().to_kind(Kind::Float).flatten(0, -1))
            .collect();
        let flat = Tensor::cat(&parts, 0)
            .to_device(device)
            .set_requires_grad(true);
        let params = split_flat(&flat, &shapes);
        Policy {
            names,
            shapes,
            flat,
            params,
            obs_dim,
            hidden_dims: hidden_dims.to_vec(),
        }
    }

    /// New views of `flat` (for building a fresh autograd graph).
    pub fn fresh_params(&self) -> Vec<Tensor> {
        split_flat(&self.flat, &self.shapes)
    }

    /// Builds a policy from existing tensors (e.g. a checkpoint), checking names and shapes.
    pub fn from_tensors(
        obs_dim: usize,
        hidden_dims: &[usize],
        tensors: Vec<Tensor>,
        device: Device,
    ) -> Result<Policy, String> {
        let names = param_names(hidden_dims);
        let shapes = param_shapes(obs_dim, hidden_dims);
        if tensors.len() != names.len() {
            return Err(format!(
                "expected {} policy tensors, got {}",
                names.len(),
                tensors.len()
            ));
        }
        for ((t, shape), name) in tensors.iter().zip(&shapes).zip(&names) {
            if t.size() != *shape {
                return Err(format!(
                    "{name}: shape {:?}, expected {:?}",
                    t.size(),
                    shape
                ));
            }
        }
        Ok(Self::assemble(
            names,
            shapes,
            tensors,
            obs_dim,
            hidden_dims,
            device,
        ))
    }

    /// Total number of scalar parameters (37,063 for the defaults).
    pub fn num_params(&self) -> i64 {
        self.flat.numel() as i64
    }

    /// Device of the parameters.
    pub fn device(&self) -> Device {
        self.flat.device()
    }

    /// Index of a parameter by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Forward pass for `U` agents x `L` timesteps: `x` is `[U, L, obs_dim]`, `offsets`
    /// (if any) holds per-agent `[U, ...shape]` offsets per parameter. Returns logits
    /// `[U, L, 6]` and values `[U, L]`.
    ///
    /// The shared part is one matmul over all `U*L` rows; the per-agent part is one `bmm`
    /// per evolved weight (`[U, L, in] x [U, in, out]`), so each agent's offsets are read
    /// once and reused over its `L` timesteps.
    pub fn forward(&self, x: &Tensor, offsets: Option<&AgentOffsets>) -> (Tensor, Tensor) {
        self.forward_with(&self.params, x, offsets)
    }

    /// [`Policy::forward`] with the parameter tensors `p` (e.g. from [`Policy::fresh_params`]).
    pub fn forward_with(
        &self,
        p: &[Tensor],
        x: &Tensor,
        offsets: Option<&AgentOffsets>,
    ) -> (Tensor, Tensor) {
        let off = |i: usize| offsets.and_then(|o| o.gathered[i].as_ref());
        let run =
            |i: usize| offsets.and_then(|o| o.runs[i].as_ref().map(|t| (t, o.spans.as_slice())));
        let mut h = x.shallow_clone();
        for k in 0..self.hidden_dims.len() {
            let b = 4 * k;
            h = linear(&h, &p[b], &p[b + 1], off(b), run(b), off(b + 1));
            h = layer_norm(&h, &p[b + 2], &p[b + 3], off(b + 2), off(b + 3));
            h = h.tanh();
        }
        let a = 4 * self.hidden_dims.len();
        let logits = linear(&h, &p[a], &p[a + 1], off(a), run(a), off(a + 1));
        let value =
            linear(&h, &p[a + 2], &p[a + 3], off(a + 2), run(a + 2), off(a + 3)).squeeze_dim(-1);
        (logits, value)
    }

    /// Deep copies of the parameters, detached (no gradient).
    pub fn detached_copies(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.detach().copy()).collect()
    }
}

/// A per-slot weight table and the runs `(batch start, table start, len)` to read it by.
type Runs<'a> = Option<(&'a Tensor, &'a [(i64, i64, i64)])>;

/// `x W^T + b (+ x D^T + d)` for `x` `[U, L, in]`; `D` gathered (`dw`) or read from a
/// per-slot table through runs of consecutive rows (one `bmm` per run, no copy).
/// (Out-of-place adds on purpose: these tensors are part of the autograd graph.)
#[allow(clippy::assign_op_pattern)]
fn linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    dw: Option<&Tensor>,
    runs: Runs<'_>,
    db: Option<&Tensor>,
) -> Tensor {
    let mut y = x.matmul(&w.tr()) + b;
    if let Some(dw) = dw {
        y = y + x.bmm(&dw.transpose(1, 2));
    } else if let Some((table, spans)) = runs {
        let parts: Vec<Tensor> = spans
            .iter()
            .map(|&(xs, ts, len)| {
                x.narrow(0, xs, len)
                    .bmm(&table.narrow(0, ts, len).transpose(1, 2))
            })
            .collect();
        y = y + Tensor::cat(&parts, 0);
    }
    if let Some(db) = db {
        y = y + db.unsqueeze(1);
    }
    y
}

/// LayerNorm over the last dim with (optionally per-agent offset) scale and bias.
fn layer_norm(
    x: &Tensor,
    g: &Tensor,
    b: &Tensor,
    dg: Option<&Tensor>,
    db: Option<&Tensor>,
) -> Tensor {
    let h = *x.size().last().unwrap();
    if dg.is_none() && db.is_none() {
        return x.layer_norm([h], Some(g), Some(b), LAYER_NORM_EPS, true);
    }
    let n = x.layer_norm([h], None::<Tensor>, None::<Tensor>, LAYER_NORM_EPS, true);
    let scale = match dg {
        Some(dg) => g + dg.unsqueeze(1),
        None => g.shallow_clone(),
    };
    let shift = match db {
        Some(db) => b + db.unsqueeze(1),
        None => b.shallow_clone(),
    };
    n * scale + shift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_param_count_is_37063() {
        let c = crate::config::Config::default();
        let p = Policy::new(
            c.obs_dim(),
            &c.agent.hidden_dims,
            &mut Rng::seed_from_u64(0),
            Device::Cpu,
        );
        assert_eq!(p.num_params(), 37_063);
        assert_eq!(p.names[0], "policy/hidden0/weight");
        assert_eq!(p.names[2], "policy/hidden0/norm/weight");
        assert_eq!(p.names[11], "policy/critic/bias");
    }

    #[test]
    fn orthogonal_rows_or_columns_are_orthonormal_times_gain() {
        let mut rng = Rng::seed_from_u64(1);
        let w = orthogonal(6, 64, 0.01, &mut rng);
        let g = w.matmul(&w.tr()) / (0.01 * 0.01);
        let err = (g - Tensor::eye(6, (Kind::Float, Device::Cpu)))
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-4, "{err}");
        let w = orthogonal(64, 30, 2f64.sqrt(), &mut rng);
        let g = w.tr().matmul(&w) / 2.0;
        let err = (g - Tensor::eye(30, (Kind::Float, Device::Cpu)))
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn biases_zero_and_norm_scale_one() {
        let p = Policy::new(20, &[8, 8], &mut Rng::seed_from_u64(2), Device::Cpu);
        for (n, t) in p.names.iter().zip(&p.params) {
            let expect = if n.ends_with("norm/weight") { 1.0 } else { 0.0 };
            if n.ends_with("bias") || n.ends_with("norm/weight") {
                let dev = (t - expect).abs().max().double_value(&[]);
                assert_eq!(dev, 0.0, "{n}");
            }
        }
    }

    #[test]
    fn offsets_in_forward_equal_effective_weights() {
        // x (W + D)^T computed via the split path equals the forward with W + D as shared.
        tch::set_num_threads(1);
        let mut rng = Rng::seed_from_u64(3);
        let p = Policy::new(10, &[8, 8], &mut rng, Device::Cpu);
        let x = Tensor::randn([1, 4, 10], (Kind::Float, Device::Cpu));
        let d: Vec<Tensor> = p.params.iter().map(|t| t.randn_like() * 0.1).collect();
        let offs = AgentOffsets::gathered(d.iter().map(|t| Some(t.unsqueeze(0))).collect());
        let (l1, v1) = tch::no_grad(|| p.forward(&x, Some(&offs)));
        let eff: Vec<Tensor> = p
            .params
            .iter()
            .zip(&d)
            .map(|(w, d)| w.detach() + d)
            .collect();
        let q = Policy::from_tensors(10, &[8, 8], eff, Device::Cpu).unwrap();
        let (l2, v2) = tch::no_grad(|| q.forward(&x, None));
        assert!((l1 - l2).abs().max().double_value(&[]) < 1e-5);
        assert!((v1 - v2).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn runs_over_slot_table_equal_gathered_offsets() {
        tch::set_num_threads(1);
        let mut c = crate::config::Config::default();
        c.evolution.mutation_std = 0.3;
        let mut rng = Rng::seed_from_u64(8);
        let p = Policy::new(10, &[8, 8], &mut rng, Device::Cpu);
        let mut o = Offsets::new(&p, &c, 6).unwrap();
        for k in 1..6 {
            o.birth(k - 1, k, &mut rng);
        }
        let slots = [0i64, 1, 3, 4, 5, 2];
        let x = Tensor::randn([6, 1, 10], (Kind::Float, Device::Cpu));
        let (l1, v1) = tch::no_grad(|| p.forward(&x, Some(&o.by_slots(&slots))));
        let idx = Tensor::from_slice(&slots);
        let (l2, v2) = tch::no_grad(|| p.forward(&x, Some(&o.gather(&o.tensors, &idx))));
        assert!((l1 - l2).abs().max().double_value(&[]) < 1e-6);
        assert!((v1 - v2).abs().max().double_value(&[]) < 1e-6);
    }
}
