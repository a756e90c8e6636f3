//! `evolution.rollout_offsets = "f16"`: the rollout acts with the hidden layers' weight
//! offsets rounded to half precision, exactly as if the f32 tables held the rounded values,
//! through births and zeroed rows; the libtorch pass (the GPU's) rounds the same way.

use emergence_lab::act::Lineage;
use emergence_lab::config::{Config, RolloutOffsets};
use emergence_lab::policy::{round_through_f16, Offsets, Policy};
use emergence_lab::ppo::evaluate;
use emergence_lab::rng::Rng;
use tch::{Device, Tensor};

/// Long enough for whole 16-value blocks and a tail in every dot product.
const OBS: usize = 41;
const HIDDEN: [usize; 2] = [16, 8];
const SLOTS: usize = 6;

fn setup(precision: RolloutOffsets) -> (Policy, Offsets, Rng) {
    let mut rng = Rng::seed_from_u64(4);
    let policy = Policy::new(OBS, &HIDDEN, &mut rng, Device::Cpu);
    let mut c = Config::default();
    c.evolution.mutation_std = 0.3;
    c.evolution.rollout_offsets = precision;
    let mut o = Offsets::new(&policy, &c, SLOTS).unwrap();
    let spec = o.mutation_spec();
    for k in 1..SLOTS {
        let noise = spec.draw(&mut rng);
        o.apply(
            0,
            &Lineage::Birth {
                parent: k - 1,
                child: k,
                mutation: &noise,
            },
        );
    }
    (policy, o, rng)
}

/// An f32 twin of `o` whose hidden weight tables hold `o`'s values rounded through f16.
fn rounded_twin(o: &Offsets) -> Offsets {
    let (_, mut twin, _) = setup(RolloutOffsets::F32);
    for (j, name) in o.names.iter().enumerate() {
        let src = &o.tensors[j];
        // `policy/hidden{k}/weight` (not the norm's `policy/hidden{k}/norm/weight`).
        let hidden_weight = name.starts_with("policy/hidden")
            && name.split('/').count() == 3
            && name.ends_with("/weight");
        let v = if hidden_weight {
            round_through_f16(src)
        } else {
            src.copy()
        };
        twin.tensors[j] = v.contiguous();
    }
    twin
}

fn obs_and_slots(rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let slots = vec![0i64, 5, 3, 1, 2, 4, 3];
    let x = (0..slots.len() * OBS)
        .map(|_| rng.normal_f32())
        .collect::<Vec<f32>>();
    (x, slots)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn f16_rollout_acts_with_the_rounded_offsets_bit_for_bit_through_lineage() {
    let (policy, mut o, mut rng) = setup(RolloutOffsets::F16);
    o.refresh_rollout_copy();
    let (x, slots) = obs_and_slots(&mut rng);
    let same_as_rounded = |o: &Offsets| {
        let (lp, v, _) = evaluate(&policy, Some(o), &x, &slots, false);
        let twin = rounded_twin(o);
        let (lp2, v2, _) = evaluate(&policy, Some(&twin), &x, &slots, false);
        assert_eq!(bits(&lp), bits(&lp2));
        assert_eq!(bits(&v), bits(&v2));
        lp
    };
    let lp = same_as_rounded(&o);
    // The rounding is visible: the exact f32 offsets act differently.
    let mut exact = setup(RolloutOffsets::F32).1;
    for (t, s) in exact.tensors.iter_mut().zip(&o.tensors) {
        *t = s.copy();
    }
    let (lp_exact, _, _) = evaluate(&policy, Some(&exact), &x, &slots, false);
    assert_ne!(bits(&lp), bits(&lp_exact), "f16 must differ from f32 here");
    // A birth and zeroed rows during the rollout reach the copy at once.
    let noise = o.mutation_spec().draw(&mut rng);
    o.apply(
        0,
        &Lineage::Birth {
            parent: 4,
            child: 2,
            mutation: &noise,
        },
    );
    let after_birth = same_as_rounded(&o);
    assert_ne!(bits(&after_birth), bits(&lp), "the birth changed slot 2");
    o.zero_rows(3..5);
    same_as_rounded(&o);
    // A write to the tables behind the copy's back is seen at the next refresh.
    let _ = o.tensors[0].get(1).fill_(0.25);
    o.refresh_rollout_copy();
    same_as_rounded(&o);
}

#[test]
fn libtorch_rounding_equals_the_host_copy_rounding() {
    let mut rng = Rng::seed_from_u64(8);
    let mut v: Vec<f32> = (0..4096).map(|_| rng.normal_f32() * 0.3).collect();
    // Ties, the smallest normals and subnormals, the largest finite and past it.
    v.extend([
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        6.1e-5,
        3.0e-6,
        1e-9,
        -65504.0,
        65520.0,
        7e4,
        0.0,
        -0.0,
    ]);
    let t = round_through_f16(&Tensor::from_slice(&v));
    let got: Vec<f32> = Vec::try_from(&t).unwrap();
    let want: Vec<f32> = v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    assert_eq!(bits(&got), bits(&want));
}

/// `t` with the same shape and values but non-contiguous strides (the native pass does not
/// take it: the libtorch pass runs, as on a GPU).
fn strided(t: &Tensor) -> Tensor {
    let last = t.dim() as i64 - 1;
    t.transpose(0, last).contiguous().transpose(0, last)
}

#[test]
fn the_libtorch_rollout_pass_reads_the_rounded_copy_too() {
    let (policy, o, mut rng) = setup(RolloutOffsets::F16);
    let (x, slots) = obs_and_slots(&mut rng);
    let mut native = setup(RolloutOffsets::F16).1;
    for (t, s) in native.tensors.iter_mut().zip(&o.tensors) {
        *t = s.copy();
    }
    native.refresh_rollout_copy();
    let (want, _, _) = evaluate(&policy, Some(&native), &x, &slots, false);
    let run_tch = |precision: RolloutOffsets| {
        let mut dev = setup(precision).1;
        for (t, s) in dev.tensors.iter_mut().zip(&o.tensors) {
            *t = strided(s);
        }
        assert!(dev.tensors.iter().any(|t| !t.is_contiguous()));
        dev.refresh_rollout_copy();
        evaluate(&policy, Some(&dev), &x, &slots, false).0
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5);
    let f16 = run_tch(RolloutOffsets::F16);
    assert!(close(&f16, &want), "{f16:?} vs {want:?}");
    let f32 = run_tch(RolloutOffsets::F32);
    assert!(!close(&f32, &want), "the comparison must see the rounding");
}
