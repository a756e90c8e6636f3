//! The machine's throughput floor for a PPO iteration (issue 14), measured in the same run
//! as the iteration it judges.
//!
//! Two rates are timed with a given number of threads: one large fp32 matrix product
//! (`MATMUL_DIM`³, with libtorch's sgemm and with `matrixmultiply`'s split over the threads,
//! the faster of the two: the best this machine's BLAS does) and a streaming
//! read of a 1 GiB buffer (the rayon pool, one contiguous share per thread). The floor of an
//! iteration is then
//!
//! `floor = FLOPs / matmul rate + offset bytes / read bandwidth`, with
//! * FLOPs = `6 x P x epochs x S` (update: forward + backward of every alive sample in every
//!   epoch) `+ 2 x P x S` (the rollout's forward), `P` the shared parameter count and `S` the
//!   iteration's alive agent steps;
//! * offset bytes = `4 x D x S`: every tick each alive agent's `D` per-agent offset floats
//!   must be read once by the rollout (zero without evolution, the head offsets with
//!   `evolved = "heads"`, all `P` with `"all"`).
//!
//! Everything else (the world, sampling, the update's offset reads, bookkeeping) is counted
//! as overhead: on a quiet machine `1.0x` the floor is not reachable and `1.4x` is the
//! issue's target. On a busy machine the timed kernels slow down too (their threads wait on
//! descheduled partners), so multiples there are flattering and can even fall below 1.

use std::time::Instant;

/// Side of the square matrices of the timed product (2 x 1024³ = 2.1 GFLOP).
pub const MATMUL_DIM: usize = 1024;

/// Bytes of the timed streaming read (1 GiB).
pub const READ_BYTES: usize = 1 << 30;

/// The two rates the floor is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineFloor {
    /// Threads both rates were measured with.
    pub threads: usize,
    /// fp32 FLOP per second of one `MATMUL_DIM`³ product (median of the timed repeats; the
    /// faster of libtorch and `matrixmultiply`).
    pub matmul_flops_per_s: f64,
    /// Bytes per second of a streaming read of `READ_BYTES` (median of the timed repeats).
    pub read_bytes_per_s: f64,
}

/// The necessary work of one iteration (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IterationWork {
    /// Update arithmetic, FLOP.
    pub update_flops: f64,
    /// Rollout forward arithmetic, FLOP.
    pub rollout_flops: f64,
    /// Per-agent offset bytes the rollout must read.
    pub offset_bytes: f64,
}

impl IterationWork {
    /// The work of an iteration with `alive_steps` alive agent steps, `epochs` update epochs,
    /// `params` shared parameters and `offset_floats` per-agent offset floats per agent.
    pub fn new(alive_steps: f64, epochs: usize, params: usize, offset_floats: usize) -> Self {
        IterationWork {
            update_flops: 6.0 * params as f64 * epochs as f64 * alive_steps,
            rollout_flops: 2.0 * params as f64 * alive_steps,
            offset_bytes: 4.0 * offset_floats as f64 * alive_steps,
        }
    }
}

impl MachineFloor {
    /// Times the matmul and the streaming read on `threads` threads (about a second; the
    /// 1 GiB buffer is freed before returning). libtorch's thread count is restored.
    pub fn measure(threads: usize) -> MachineFloor {
        let threads = threads.max(1);
        MachineFloor {
            threads,
            matmul_flops_per_s: torch_matmul_rate(threads).max(native_matmul_rate(threads)),
            read_bytes_per_s: read_rate(threads),
        }
    }

    /// Seconds of the rollout's floor: its forward arithmetic plus its offset reads.
    pub fn rollout_s(&self, w: &IterationWork) -> f64 {
        w.rollout_flops / self.matmul_flops_per_s + w.offset_bytes / self.read_bytes_per_s
    }

    /// Seconds of the update's floor: its arithmetic.
    pub fn update_s(&self, w: &IterationWork) -> f64 {
        w.update_flops / self.matmul_flops_per_s
    }

    /// Seconds of the whole iteration's floor.
    pub fn total_s(&self, w: &IterationWork) -> f64 {
        self.rollout_s(w) + self.update_s(w)
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "floor rates at {} thread(s): fp32 matmul {MATMUL_DIM}^3 {:.1} GFLOP/s, streaming read of 1 GiB {:.2} GB/s",
            self.threads,
            self.matmul_flops_per_s / 1e9,
            self.read_bytes_per_s / 1e9
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One `MATMUL_DIM`² x `MATMUL_DIM`² product `c = a a` with `matrixmultiply::sgemm`, the
/// output's rows split into one share per thread of the native pool. `a` and `c` hold
/// `MATMUL_DIM`² floats (row-major).
pub fn native_matmul_pass(a: &[f32], c: &mut [f32], threads: usize) {
    let n = MATMUL_DIM;
    assert!(a.len() == n * n && c.len() == n * n);
    let rows = n.div_ceil(threads.max(1));
    let part = |a_rows: &[f32], c_rows: &mut [f32]| {
        let m = c_rows.len() / n;
        // SAFETY: row-major m x n (a_rows), n x n (a) and m x n (c_rows) slices of the
        // right lengths; c_rows is exclusively borrowed.
        unsafe {
            matrixmultiply::sgemm(
                m,
                n,
                n,
                1.0,
                a_rows.as_ptr(),
                n as isize,
                1,
                a.as_ptr(),
                n as isize,
                1,
                0.0,
                c_rows.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    };
    match crate::policy::native::thread_pool(threads) {
        None => part(a, c),
        Some(pool) => pool.scope(|s| {
            for (ar, cr) in a.chunks(rows * n).zip(c.chunks_mut(rows * n)) {
                s.spawn(move |_| part(ar, cr));
            }
        }),
    }
}

/// Matrix data for the timed products (`n`² floats).
pub fn matrix_data(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
        .collect()
}

fn native_matmul_rate(threads: usize) -> f64 {
    let n = MATMUL_DIM;
    let a = matrix_data(n);
    let mut c = vec![0f32; n * n];
    native_matmul_pass(&a, &mut c, threads); // warm-up
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        native_matmul_pass(&a, &mut c, threads);
        times.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (n * n * n) as f64 / median(times)
}

/// libtorch's `matmul` of two `MATMUL_DIM`² matrices on `threads` intra-op threads.
fn torch_matmul_rate(threads: usize) -> f64 {
    let n = MATMUL_DIM;
    let data = matrix_data(n);
    let a = tch::Tensor::from_slice(&data).view([n as i64, n as i64]);
    let b = a.tr().contiguous();
    let before = tch::get_num_threads();
    tch::set_num_threads(threads as i32);
    let mut out = a.matmul(&b); // warm-up
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        out = a.matmul(&b);
        times.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&out);
    tch::set_num_threads(before);
    2.0 * (n * n * n) as f64 / median(times)
}

fn sum_stream(part: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    for c in part.chunks_exact(32) {
        for l in 0..32 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum()
}

/// One streaming read of `buf` (a sum), one contiguous share per thread of the native pool.
pub fn read_pass(buf: &[f32], threads: usize) -> f32 {
    let threads = threads.max(1);
    match crate::policy::native::thread_pool(threads) {
        None => sum_stream(buf),
        Some(pool) => {
            let share = buf.len().div_ceil(threads);
            let mut sums = vec![0f32; threads];
            pool.scope(|s| {
                for (part, out) in buf.chunks(share).zip(sums.iter_mut()) {
                    s.spawn(move |_| *out = sum_stream(part));
                }
            });
            sums.iter().sum()
        }
    }
}

fn read_rate(threads: usize) -> f64 {
    let buf = vec![1f32; READ_BYTES / 4];
    std::hint::black_box(read_pass(&buf, threads)); // warm-up
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(read_pass(&buf, threads));
        times.push(t.elapsed().as_secs_f64());
    }
    READ_BYTES as f64 / median(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counts_follow_the_definition() {
        // The numbers: 4 epochs x 131,072 samples x 37,063 parameters x 6 = 116 GFLOP.
        let w = IterationWork::new(131_072.0, 4, 37_063, 37_063);
        assert!((w.update_flops / 1e9 - 116.6).abs() < 0.1, "{w:?}");
        assert!((w.rollout_flops * 12.0 - w.update_flops).abs() < 1.0);
        // 148 KB per agent per step, 19.4 GB per iteration.
        assert!((w.offset_bytes / 1e9 - 19.43).abs() < 0.01, "{w:?}");
        assert_eq!(IterationWork::new(10.0, 4, 100, 0).offset_bytes, 0.0);
    }

    #[test]
    fn floor_seconds_combine_both_rates() {
        let f = MachineFloor {
            threads: 1,
            matmul_flops_per_s: 100.0,
            read_bytes_per_s: 10.0,
        };
        let w = IterationWork {
            update_flops: 600.0,
            rollout_flops: 200.0,
            offset_bytes: 50.0,
        };
        assert_eq!(f.update_s(&w), 6.0);
        assert_eq!(f.rollout_s(&w), 7.0);
        assert_eq!(f.total_s(&w), 13.0);
    }

    /// Prints both matmul rates and the read rate (`cargo test --release -- --ignored
    /// --nocapture floor_rates`): which BLAS sets the floor on this machine.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn floor_rates() {
        for t in [1, 2] {
            eprintln!(
                "{t} thread(s): libtorch {:.1} GFLOP/s, matrixmultiply {:.1} GFLOP/s, read {:.2} GB/s",
                torch_matmul_rate(t) / 1e9,
                native_matmul_rate(t) / 1e9,
                read_rate(t) / 1e9
            );
        }
    }
}
