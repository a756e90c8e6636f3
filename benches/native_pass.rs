//! The native forward/backward pass alone (`src/policy/native.rs`) on synthetic data at the
//! Kaggle-notebook shapes (one update part: 128 rows in chunks of 32; one rollout tick
//! share: 512 rows of one agent each) and at the tiny fixture shapes.
//!
//! `cargo bench --bench native_pass -- time` prints the best microseconds per pass (one
//! thread); `-- write FILE` / `-- check FILE` store / compare the bits of every output
//! (logits, values, gradients) so a kernel change can be shown not to change any result.

use emergence_lab::policy::native::{Layout, OffsetRows, Seg, Workspace};
use std::time::Instant;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * s).collect()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Evo {
    None,
    Heads,
    All,
}

struct Case {
    lay: Layout,
    params: Vec<f32>,
    tables: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    num_slots: usize,
    x: Vec<f32>,
    segs: Vec<Seg>,
    dlogits: Vec<f32>,
    dvalue: Vec<f32>,
    evo: Evo,
}

impl Case {
    fn new(obs: usize, hidden: &[usize], evo: Evo, segs: Vec<Seg>, seed: u64) -> Case {
        let mut r = Lcg(seed);
        let lay = Layout::new(obs, hidden);
        let params = r.vec(lay.total, 0.2);
        let num_slots = 8;
        let nh = hidden.len();
        let tables = (0..lay.len.len())
            .map(|i| {
                let on = match evo {
                    Evo::None => false,
                    Evo::Heads => i >= 4 * nh,
                    Evo::All => true,
                };
                on.then(|| {
                    (
                        r.vec(num_slots * lay.len[i], 0.05),
                        r.vec(4 * lay.len[i], 0.05),
                    )
                })
            })
            .collect();
        let rows: usize = segs.iter().map(|s| s.len).sum();
        Case {
            x: r.vec(rows * obs, 1.0),
            dlogits: r.vec(rows * 6, 0.01),
            dvalue: r.vec(rows, 0.01),
            lay,
            params,
            tables,
            num_slots,
            segs,
            evo,
        }
    }
    fn off(&self) -> Option<OffsetRows<'_>> {
        (self.evo != Evo::None).then(|| OffsetRows {
            tables: self
                .tables
                .iter()
                .map(|t| t.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice())))
                .collect(),
            half: Vec::new(),
            num_slots: self.num_slots,
        })
    }
    fn rows(&self) -> usize {
        self.segs.iter().map(|s| s.len).sum()
    }
    /// Forward + backward; returns every output.
    fn run(&self, ws: &mut Workspace, grad: &mut Vec<f32>, backward: bool) -> Vec<f32> {
        let off = self.off();
        ws.input_mut(&self.lay, self.rows())
            .copy_from_slice(&self.x);
        ws.forward(&self.lay, &self.params, &self.segs, off.as_ref());
        let mut out = ws.logits.clone();
        out.extend_from_slice(&ws.value);
        if backward {
            grad.resize(self.lay.total, 0.0);
            ws.backward(
                &self.lay,
                &self.params,
                &self.segs,
                off.as_ref(),
                &self.dlogits,
                &self.dvalue,
                grad,
            );
            out.extend_from_slice(grad);
        }
        out
    }
}

fn chunks(lens: &[usize], entries: usize) -> Vec<Seg> {
    let mut start = 0;
    lens.iter()
        .enumerate()
        .map(|(i, &len)| {
            let s = Seg {
                entry: (i * 5 + 3) % entries,
                start,
                len,
            };
            start += len;
            s
        })
        .collect()
}

fn ticks(rows: usize, entries: usize) -> Vec<Seg> {
    (0..rows)
        .map(|j| Seg {
            entry: (j * 7 + 1) % entries,
            start: j,
            len: 1,
        })
        .collect()
}

fn cases() -> Vec<(String, Case, bool)> {
    let mut v = Vec::new();
    for (obs, hidden) in [
        (502usize, vec![64usize, 64]),
        (31, vec![8, 8]),
        (300, vec![16, 24]),
    ] {
        for evo in [Evo::None, Evo::Heads, Evo::All] {
            let name = format!(
                "obs{obs}_{}_{}",
                hidden
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join("x"),
                match evo {
                    Evo::None => "none",
                    Evo::Heads => "heads",
                    Evo::All => "all",
                }
            );
            let seed = obs as u64 * 31 + evo as u64;
            v.push((
                format!("{name}_update128"),
                Case::new(obs, &hidden, evo, chunks(&[32, 32, 32, 32], 12), seed),
                true,
            ));
            v.push((
                format!("{name}_update_odd"),
                Case::new(
                    obs,
                    &hidden,
                    evo,
                    chunks(&[20, 1, 2, 32, 45, 3, 17, 9], 12),
                    seed + 1,
                ),
                true,
            ));
            v.push((
                format!("{name}_tick512"),
                Case::new(obs, &hidden, evo, ticks(512, 12), seed + 2),
                false,
            ));
        }
    }
    v
}

/// The best over 7 rounds of the mean seconds of a forward and a backward pass (200 passes a
/// round); `prepare` runs before each pass, untimed.
fn best_times(
    ws: &mut Workspace,
    grad: &mut Vec<f32>,
    case: &mut Case,
    backward: bool,
    mut prepare: impl FnMut(&mut Case),
) -> (f64, f64) {
    let (mut best_f, mut best_b) = (f64::MAX, f64::MAX);
    let reps = 200;
    for _ in 0..7 {
        let (mut tf, mut tb) = (0.0, 0.0);
        for _ in 0..reps {
            prepare(case);
            let off = case.off();
            let t = Instant::now();
            ws.input_mut(&case.lay, case.rows())
                .copy_from_slice(&case.x);
            ws.forward(&case.lay, &case.params, &case.segs, off.as_ref());
            tf += t.elapsed().as_secs_f64();
            if backward {
                let t = Instant::now();
                grad.resize(case.lay.total, 0.0);
                ws.backward(
                    &case.lay,
                    &case.params,
                    &case.segs,
                    off.as_ref(),
                    &case.dlogits,
                    &case.dvalue,
                    grad,
                );
                tb += t.elapsed().as_secs_f64();
            }
        }
        best_f = best_f.min(tf / reps as f64);
        best_b = best_b.min(tb / reps as f64);
    }
    (best_f, best_b)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mode = args.first().map(String::as_str).unwrap_or("time");
    let mut ws = Workspace::default();
    let mut grad = Vec::new();
    match mode {
        "write" | "check" => {
            let path = args.get(1).expect("FILE");
            let mut bits: Vec<u32> = Vec::new();
            let mut names = Vec::new();
            for (name, case, bwd) in cases() {
                // Twice on the same workspace: reused buffers must not change anything.
                let a = case.run(&mut ws, &mut grad, bwd);
                let b = case.run(&mut ws, &mut grad, bwd);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{name}: rerun differs"
                );
                names.push((name, bits.len(), a.len()));
                bits.extend(a.iter().map(|x| x.to_bits()));
            }
            if mode == "write" {
                let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
                std::fs::write(path, bytes).unwrap();
                println!("wrote {} values", bits.len());
            } else {
                let bytes = std::fs::read(path).unwrap();
                let want: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let mut bad = 0;
                for (name, s, n) in names {
                    let diff = (s..s + n)
                        .filter(|&i| want.get(i) != Some(&bits[i]))
                        .count();
                    if diff > 0 {
                        bad += 1;
                        println!("{name}: {diff} of {n} values differ");
                    }
                }
                assert_eq!(want.len(), bits.len(), "value count");
                println!(
                    "{}",
                    if bad == 0 {
                        "all bit-identical"
                    } else {
                        "DIFFERENT"
                    }
                );
                if bad > 0 {
                    std::process::exit(1);
                }
            }
        }
        "dram" => {
            // Evolved `all` with 1,100 offset rows (about 160 MB, as in the Kaggle config):
            // each pass uses chunks of agents not touched for a while (main memory).
            let entries = 1100;
            let mut case = Case::new(502, &[64, 64], Evo::All, chunks(&[32; 4], 1), 7);
            let mut r = Lcg(3);
            case.num_slots = entries;
            for (i, t) in case.tables.iter_mut().enumerate() {
                if let Some((slots, _)) = t {
                    *slots = r.vec(entries * case.lay.len[i], 0.05);
                }
            }
            let mut next = 0usize;
            let (f, b) = best_times(&mut ws, &mut grad, &mut case, true, |case| {
                for s in case.segs.iter_mut() {
                    s.entry = next % entries;
                    next += 37;
                }
            });
            println!(
                "{:32} forward {:8.1} us  backward {:8.1} us",
                "obs502_64x64_all_update128_dram",
                f * 1e6,
                b * 1e6
            );
        }
        _ => {
            let filter = args.get(1).cloned().unwrap_or_default();
            for (name, mut case, bwd) in cases() {
                if !name.starts_with("obs502") || !name.contains(&filter) || name.contains("odd") {
                    continue;
                }
                let (best_f, best_b) = best_times(&mut ws, &mut grad, &mut case, bwd, |_| {});
                println!(
                    "{name:32} forward {:8.1} us  backward {:8.1} us",
                    best_f * 1e6,
                    best_b * 1e6
                );
            }
        }
    }
}
