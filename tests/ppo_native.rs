//! The native CPU minibatch pass against libtorch autograd: same loss, same gradients
//! (within 1e-5 relative) for every offset mode; both update backends learn the same; the
//! libtorch backend reads the host once per epoch.

use std::sync::atomic::Ordering;

use emergence_lab::config::Evolved;
use emergence_lab::policy::gemm::RowTable;
use emergence_lab::policy::native::{Layout, Seg, Workspace};
use emergence_lab::policy::{Offsets, Policy};
use emergence_lab::ppo::update_native::{finish_metrics, loss_and_grad, LossCoefs, LossRows, Norm};
use emergence_lab::ppo::update_tch::{minibatch_loss, MinibatchData, HOST_SYNCS};
use emergence_lab::ppo::Backend;
use emergence_lab::{config::Config, rng::Rng, train::TrainState};
use tch::{Device, Kind, Tensor};

const OBS: usize = 10;
const HIDDEN: [usize; 2] = [8, 8];
/// `(table entry, rows)` of the chunks; 4 slots, entry 4 = zero row, 5 = archived row.
const CHUNKS: [(i64, usize); 5] = [(0, 3), (2, 1), (5, 4), (4, 2), (1, 3)];

fn randn(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal_f32() * std).collect()
}

/// Relative L2 distance of `a` from `b`.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

fn check_gradients(evolved: Option<Evolved>) {
    check_gradients_with(evolved, false);
    check_gradients_with(evolved, true);
}

fn check_gradients_with(evolved: Option<Evolved>, split_offsets: bool) {
    tch::set_num_threads(1);
    let mut rng = Rng::seed_from_u64(7);
    let mut policy = Policy::new(OBS, &HIDDEN, &mut rng, Device::Cpu);
    // Non-trivial biases and LayerNorm parameters so every gradient term is exercised.
    let noise = Tensor::from_slice(&randn(&mut rng, policy.num_params() as usize, 0.2));
    tch::no_grad(|| {
        let _ = policy.flat.g_add_(&noise);
    });
    let mut c = Config::default();
    c.evolution.mutation_std = 0.3;
    let offsets = evolved.map(|e| {
        c.evolution.evolved = e;
        let mut o = Offsets::new(&policy, &c, 4).unwrap();
        for k in 1..4 {
            o.birth(k - 1, k, &mut rng);
        }
        o
    });
    // Extra rows: the zero row, then one archived row.
    let extra: Option<Vec<Tensor>> = offsets.as_ref().map(|o| {
        o.tensors
            .iter()
            .map(|t| {
                Tensor::cat(
                    &[
                        t.get(0).zeros_like().unsqueeze(0),
                        t.get(3).unsqueeze(0) * -1.5,
                    ],
                    0,
                )
            })
            .collect()
    });

    let rows: usize = CHUNKS.iter().map(|c| c.1).sum();
    let l = CHUNKS.iter().map(|c| c.1).max().unwrap();
    let u = CHUNKS.len();
    let x = randn(&mut rng, rows * OBS, 1.0);
    let actions: Vec<usize> = (0..rows).map(|i| (i * 7 + 3) % 6).collect();
    let old_logp: Vec<f32> = (0..rows)
        .map(|i| -1.8 + 0.4 * ((i % 5) as f32 - 2.0))
        .collect();
    let adv = randn(&mut rng, rows, 1.0);
    let ret = randn(&mut rng, rows, 1.0);
    let cfg = Config::default().train;

    // libtorch autograd on the padded [U, L] block.
    let (mut idx, mut mask) = (Vec::new(), Vec::new());
    let mut start = 0;
    for &(_, n) in &CHUNKS {
        for j in 0..l {
            idx.push(if j < n { (start + j) as i64 } else { 0 });
            mask.push(if j < n { 1f32 } else { 0.0 });
        }
        start += n;
    }
    let idx = Tensor::from_slice(&idx);
    let (ui, li) = (u as i64, l as i64);
    let pick = |v: &Tensor| v.index_select(0, &idx).view([ui, li]);
    let xt = Tensor::from_slice(&x).view([rows as i64, OBS as i64]);
    let d = offsets.as_ref().map(|o| {
        let n = 4i64;
        let e: Vec<i64> = CHUNKS.iter().map(|c| c.0).collect();
        let lo: Vec<i64> = e.iter().map(|&e| e.min(n - 1)).collect();
        let hi: Vec<i64> = e.iter().map(|&e| (e - n).max(0)).collect();
        let ins: Vec<bool> = e.iter().map(|&e| e < n).collect();
        o.gather_entry_tensors(
            extra.as_ref().unwrap(),
            &Tensor::from_slice(&lo),
            &Tensor::from_slice(&hi),
            &Tensor::from_slice(&ins),
            false,
            false,
        )
    });
    let acts_i: Vec<i64> = actions.iter().map(|&a| a as i64).collect();
    let mb = MinibatchData {
        x: xt.index_select(0, &idx).view([ui, li, OBS as i64]),
        offsets: d.as_ref(),
        actions: pick(&Tensor::from_slice(&acts_i)),
        old_logp: pick(&Tensor::from_slice(&old_logp)),
        advantages: pick(&Tensor::from_slice(&adv)),
        returns: pick(&Tensor::from_slice(&ret)),
        mask: Tensor::from_slice(&mask).view([ui, li]),
        n: rows as f64,
    };
    let params = policy.fresh_params();
    let (loss, metrics) = minibatch_loss(&policy, &params, &mb, &cfg);
    let grads = Tensor::run_backward(&[&loss], &[&policy.flat], false, false);
    let want_grad: Vec<f32> = Vec::try_from(&grads[0]).unwrap();
    let want_metrics: Vec<f64> = Vec::try_from(metrics.to_kind(Kind::Double)).unwrap();

    // Native pass.
    let lay = Layout::new(OBS, &HIDDEN);
    let host = offsets
        .as_ref()
        .map(|o| o.host_rows(Some(extra.as_ref().unwrap())).unwrap());
    let mut segs = Vec::new();
    let mut start = 0;
    for &(e, n) in &CHUNKS {
        segs.push(Seg {
            entry: e as usize,
            start,
            len: n,
        });
        start += n;
    }
    let p: Vec<f32> = Vec::try_from(policy.flat.detach()).unwrap();
    let mut ws = Workspace::default();
    ws.split_offsets = split_offsets;
    ws.input_mut(&lay, rows).copy_from_slice(&x);
    ws.forward(&lay, &p, &segs, host.as_ref());
    let loss_rows = LossRows {
        actions,
        old_logp,
        advantages: adv,
        returns: ret,
    };
    let coefs = LossCoefs {
        clip_eps: cfg.clip_eps,
        vf_coef: cfg.vf_coef,
        ent_coef: cfg.ent_coef,
    };
    let (mut dl, mut dv) = (Vec::new(), Vec::new());
    let norm = Norm::of(loss_rows.advantages.iter().copied());
    let sums = loss_and_grad(
        &ws.logits, &ws.value, &loss_rows, norm, coefs, &mut dl, &mut dv,
    );
    let got_metrics = finish_metrics(sums, norm.n, coefs);
    let mut grad = vec![0f32; lay.total];
    ws.backward(&lay, &p, &segs, host.as_ref(), &dl, &dv, &mut grad);

    // The same pass with the input rows read in place, scattered over a larger store (as the
    // update reads the rollout's observations): the same bits.
    let place = |r: usize| 2 * (rows - 1 - r) + 1;
    let mut store = vec![f32::NAN; (2 * rows + 1) * OBS];
    for r in 0..rows {
        store[place(r) * OBS..(place(r) + 1) * OBS].copy_from_slice(&x[r * OBS..(r + 1) * OBS]);
    }
    let mut table = RowTable::new(OBS);
    for r in 0..rows {
        table.push(&store[place(r) * OBS..(place(r) + 1) * OBS]);
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut in_place = Workspace::default();
    in_place.split_offsets = split_offsets;
    in_place.size(&lay, rows);
    in_place.forward_on(&lay, &p, table.rows(), &segs, host.as_ref());
    assert_eq!(
        bits(&in_place.logits),
        bits(&ws.logits),
        "logits, rows in place"
    );
    assert_eq!(
        bits(&in_place.value),
        bits(&ws.value),
        "values, rows in place"
    );
    let mut grad_in_place = vec![0f32; lay.total];
    in_place.backward_on(
        &lay,
        &p,
        table.rows(),
        &segs,
        host.as_ref(),
        &dl,
        &dv,
        &mut grad_in_place,
    );
    assert_eq!(
        bits(&grad_in_place),
        bits(&grad),
        "gradients, rows in place"
    );

    // The clip is active on some samples and inactive on others (both branches tested).
    assert!(
        want_metrics[4] > 0.05 && want_metrics[4] < 0.95,
        "{want_metrics:?}"
    );
    for (i, (g, w)) in got_metrics.iter().zip(&want_metrics).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "metric {i}: {g} vs {w}"
        );
    }
    for (i, name) in policy.names.iter().enumerate() {
        let r = lay.start[i]..lay.start[i] + lay.len[i];
        let e = rel(&grad[r.clone()], &want_grad[r.clone()]);
        assert!(
            e < 1e-5,
            "{evolved:?} split {split_offsets}: {name}: relative gradient error {e}"
        );
        assert!(
            want_grad[r].iter().any(|&v| v != 0.0),
            "{name}: zero gradient"
        );
    }
}

#[test]
fn native_gradients_match_autograd_without_offsets() {
    check_gradients(None);
}

#[test]
fn native_gradients_match_autograd_with_head_offsets() {
    check_gradients(Some(Evolved::Heads));
}

#[test]
fn native_gradients_match_autograd_with_all_offsets() {
    check_gradients(Some(Evolved::All));
}

fn small_config() -> Config {
    let mut c = Config::default();
    c.env.grid_size = 8;
    c.env.num_agents = 3;
    c.env.num_food = 6;
    c.env.observation_radius = 2;
    c.env.max_steps = 12;
    c.train.num_envs = 3;
    c.train.num_steps = 8;
    c.train.minibatch_size = 32;
    c.train.num_epochs = 3;
    c.train.learning_rate = 1e-3;
    c.evolution.max_agents = 6;
    c.evolution.min_agents = 2;
    c.evolution.mutation_std = 0.05;
    c
}

fn flat(s: &TrainState) -> Vec<f32> {
    Vec::try_from(s.policy.flat.detach()).unwrap()
}

#[test]
fn both_backends_learn_the_same_and_tch_reads_the_host_once_per_epoch() {
    tch::set_num_threads(1);
    let c = small_config();
    let mut a = TrainState::new(c.clone(), Device::Cpu).unwrap();
    let mut b = TrainState::new(c.clone(), Device::Cpu).unwrap();
    b.update_backend = Backend::Tch;
    let before = flat(&a);
    let syncs = HOST_SYNCS.load(Ordering::Relaxed);
    let ma = a.iterate().unwrap();
    let mb = b.iterate().unwrap();
    assert_eq!(
        HOST_SYNCS.load(Ordering::Relaxed) - syncs,
        c.train.num_epochs as u64
    );
    assert_eq!(
        mb.get("perf/update_host_syncs"),
        Some(c.train.num_epochs as f64)
    );
    assert_eq!(ma.get("perf/update_host_syncs"), Some(0.0));
    assert_eq!(ma.get("perf/minibatches"), mb.get("perf/minibatches"));
    let (pa, pb) = (flat(&a), flat(&b));
    // Parameters moved by the update; the two backends differ by far less than that.
    let moved: f64 = pa
        .iter()
        .zip(&before)
        .map(|(x, y)| ((x - y) as f64).abs())
        .sum();
    let diff: f64 = pa
        .iter()
        .zip(&pb)
        .map(|(x, y)| ((x - y) as f64).abs())
        .sum();
    assert!(
        moved > 0.0 && diff < 0.01 * moved,
        "moved {moved}, backends differ by {diff}"
    );
    let (la, lb) = (
        ma.get("losses/value_loss").unwrap(),
        mb.get("losses/value_loss").unwrap(),
    );
    assert!((la - lb).abs() < 1e-4 * lb.abs().max(1.0), "{la} vs {lb}");
}

#[test]
fn native_rollout_evaluation_matches_libtorch_forward() {
    use emergence_lab::ppo::evaluate;
    tch::set_num_threads(1);
    let mut rng = Rng::seed_from_u64(21);
    let policy = Policy::new(OBS, &HIDDEN, &mut rng, Device::Cpu);
    let mut c = Config::default();
    c.evolution.mutation_std = 0.3;
    let mut o = Offsets::new(&policy, &c, 5).unwrap();
    for k in 1..5 {
        o.birth(k - 1, k, &mut rng);
    }
    let slots = [0i64, 3, 4, 1, 2, 2];
    let x = randn(&mut rng, slots.len() * OBS, 1.0);
    let (lp, v, obs) = evaluate(&policy, Some(&o), &x, &slots, true);
    let xt = Tensor::from_slice(&x).view([slots.len() as i64, 1, OBS as i64]);
    let (logits, value) = tch::no_grad(|| policy.forward(&xt, Some(&o.by_slots(&slots))));
    let want_lp: Vec<f32> =
        Vec::try_from(logits.log_softmax(-1, Kind::Float).flatten(0, -1)).unwrap();
    let want_v: Vec<f32> = Vec::try_from(value.flatten(0, -1)).unwrap();
    for (a, b) in lp.iter().zip(&want_lp).chain(v.iter().zip(&want_v)) {
        assert!(
            (a - b).abs() < 1e-5,
            "{lp:?} vs {want_lp:?}, {v:?} vs {want_v:?}"
        );
    }
    // The same agent on the same observation: the same numbers, bit for bit.
    let same: Vec<f32> = x[..OBS].iter().chain(&x[..OBS]).copied().collect();
    let (lp2, v2, _) = evaluate(&policy, Some(&o), &same, &[3, 3], false);
    assert_eq!(&lp2[..6], &lp2[6..]);
    assert_eq!(v2[0], v2[1]);
    assert_eq!(obs.unwrap().size(), [slots.len() as i64, OBS as i64]);
}
