//! Adam (betas 0.9/0.999, eps 1e-5) and global gradient-norm clipping, written on plain
//! tensors so the optimizer state (m, v, step) checkpoints and restores exactly.
//!
//! The update follows `torch.optim.Adam`: `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use tch::{Kind, Tensor};

/// Adam state over the shared parameters.
#[derive(Debug)]
pub struct Adam {
    /// First moments, one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor>,
    /// Steps taken so far.
    pub step: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Adam {
    /// Zero state for `params` (betas 0.9, 0.999; eps 1e-5 as in model.md).
    pub fn new(params: &[Tensor]) -> Adam {
        let zeros = || {
            params
                .iter()
                .map(|p| p.detach().zeros_like())
                .collect::<Vec<_>>()
        };
        Adam {
            m: zeros(),
            v: zeros(),
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-5,
        }
    }

    /// One step with learning rate `lr` on `params` given their `grads`.
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor], lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        tch::no_grad(|| {
            for ((p, g), (m, v)) in params
                .iter()
                .zip(grads)
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let _ = m.lerp_(g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(g * g * (1.0 - self.beta2)));
                let denom = v.sqrt() / bc2_sqrt + self.eps;
                let mut p = p.shallow_clone();
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (like
/// `torch.nn.utils.clip_grad_norm_`, factor `max_norm / (norm + 1e-6)` when below 1).
/// Returns the norm before clipping (a scalar tensor, no device sync).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Tensor {
    let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
    let norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt();
    let coef = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
    tch::no_grad(|| {
        for g in grads.iter_mut() {
            let _ = g.g_mul_(&coef);
        }
    });
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn first_step_moves_each_weight_by_about_lr() {
        // With bias correction the first Adam step is lr * g / (|g| + eps') ~ lr * sign(g).
        let p = Tensor::from_slice(&[1.0f32, -2.0, 3.0]);
        let g = Tensor::from_slice(&[0.5f32, -4.0, 0.0]);
        let mut adam = Adam::new(&[p.shallow_clone()]);
        adam.step(&[p.shallow_clone()], &[g], 0.1);
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        assert!((got[0] - 0.9).abs() < 1e-4, "{got:?}");
        assert!((got[1] + 1.9).abs() < 1e-4, "{got:?}");
        assert_eq!(got[2], 3.0);
        assert_eq!(adam.step, 1);
    }

    #[test]
    fn matches_reference_formula_over_steps() {
        let p = Tensor::from_slice(&[0.3f32]);
        let mut adam = Adam::new(&[p.shallow_clone()]);
        let (mut m, mut v, mut x) = (0f64, 0f64, 0.3f64);
        for t in 1..=5 {
            let g = 2.0 * x; // d/dx x^2
            adam.step(
                &[p.shallow_clone()],
                &[Tensor::from_slice(&[g as f32])],
                0.01,
            );
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let denom = v.sqrt() / (1.0 - 0.999f64.powi(t)).sqrt() + 1e-5;
            x -= 0.01 / (1.0 - 0.9f64.powi(t)) * m / denom;
        }
        assert!((p.double_value(&[0]) - x).abs() < 1e-6);
    }

    #[test]
    fn clip_scales_to_max_norm_only_when_above() {
        let mut g = vec![Tensor::from_slice(&[3.0f32]), Tensor::from_slice(&[4.0f32])];
        let n = clip_grad_norm(&mut g, 1.0);
        assert!((n.double_value(&[]) - 5.0).abs() < 1e-6);
        let total = (g[0].square() + g[1].square()).sqrt().double_value(&[0]);
        assert!((total - 1.0).abs() < 1e-5);
        let mut g = vec![Tensor::zeros([2], (Kind::Float, Device::Cpu)) + 0.1];
        let _ = clip_grad_norm(&mut g, 1.0);
        assert!((g[0].double_value(&[0]) - 0.1).abs() < 1e-7);
    }
}
