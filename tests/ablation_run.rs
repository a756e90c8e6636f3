//! Ablation library tests on tiny checkpoints from short training runs: every condition
//! runs, the files have the documented shape, episodes are paired and deterministic, the
//! conditions change what the agents see, and a field-reading policy shows a gap.

mod ablation_support;

use std::collections::HashSet;

use ablation_support::{tiny, trained_checkpoint};
use emergence_lab::ablation::{
    self, run_state, run_state_inspect, AblationError, AblationOptions, Condition, ObservedBatch,
    Start, METRICS,
};
use emergence_lab::checkpoint::read_checkpoint;
use emergence_lab::{config::Config, train::TrainState};
use tch::Tensor;

fn options(path: &std::path::Path, episodes: usize, conditions: &[Condition]) -> AblationOptions {
    AblationOptions {
        episodes,
        conditions: conditions.to_vec(),
        ..AblationOptions::new(path)
    }
}

#[test]
fn all_conditions_run_and_files_have_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(tiny(), 3, dir.path(), "run.safetensors");
    let r = ablation::run(&options(&ck, 3, &Condition::ALL)).unwrap();
    let names: Vec<&str> = r.conditions.iter().map(|c| c.condition.name()).collect();
    assert_eq!(names, ["normal", "zeroed", "random", "frozen", "no_field"]);
    for c in &r.conditions {
        assert_eq!(c.episodes.len(), 3);
        assert_eq!(c.summary.len(), METRICS.len());
        for (k, e) in c.episodes.iter().enumerate() {
            assert_eq!(e.episode, k);
            assert_eq!(e.start_env, Some(k % 2));
            // Reward is food_energy per food; population never exceeds the slots.
            assert_eq!(e.total_reward, 50.0 * e.foods_eaten as f64);
            assert!(e.mean_population <= 4.0 && e.final_population <= 4);
        }
    }
    assert_eq!(r.gaps.len(), 4 * METRICS.len());
    let state =
        TrainState::from_checkpoint(&read_checkpoint(&ck).unwrap(), tch::Device::Cpu).unwrap();
    assert_eq!(r.step, 3 * tiny().steps_per_iteration());
    assert_eq!(r.config_hash, state.config.hash_hex());
    assert_eq!(r.ticks, 30);

    let (json, csv) = r.write(&dir.path().join("out/results.json")).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["step"], r.step);
    assert_eq!(v["config_hash"], r.config_hash.as_str());
    assert_eq!(v["conditions"].as_array().unwrap().len(), 5);
    assert_eq!(v["conditions"][1]["condition"], "zeroed");
    let ep = &v["conditions"][0]["episodes"][2];
    for m in METRICS {
        assert!(ep[m].is_number(), "episode field {m}");
    }
    assert_eq!(v["gaps"][0]["condition"], "zeroed");
    assert!(v["gaps"][0]["gap"]["ci_low"].is_number());
    // Round trip through serde.
    let back: ablation::AblationResults =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(back, r);

    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 5 * 3);
    assert_eq!(
        lines[0],
        "condition,episode,start_env,total_reward,mean_population,final_population,births,deaths,foods_eaten,floor_respawns,step,config_hash"
    );
    assert!(lines[4].starts_with("zeroed,0,0,"));
    assert!(lines.iter().skip(1).all(|l| l.split(',').count() == 12));

    let table = r.table();
    for name in [
        "normal",
        "zeroed",
        "random",
        "frozen",
        "no_field",
        "reward gap",
    ] {
        assert!(table.contains(name), "table lacks {name}:\n{table}");
    }
}

#[test]
fn paired_episodes_are_deterministic_and_thread_count_independent() {
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(tiny(), 2, dir.path(), "run.safetensors");
    let state =
        TrainState::from_checkpoint(&read_checkpoint(&ck).unwrap(), tch::Device::Cpu).unwrap();
    for start in [Start::Checkpoint, Start::Fresh] {
        let o = AblationOptions {
            start,
            seed: 3,
            ..options(&ck, 4, &[Condition::Normal, Condition::Random])
        };
        tch::set_num_threads(1);
        let a = run_state(
            &state,
            &AblationOptions {
                threads: 1,
                ..o.clone()
            },
        )
        .unwrap();
        tch::set_num_threads(2);
        let b = run_state(
            &state,
            &AblationOptions {
                threads: 3,
                ..o.clone()
            },
        )
        .unwrap();
        tch::set_num_threads(1);
        assert_eq!(a, b, "{start:?}: same seed, different thread counts");
        // normal alone gives the same numbers as normal next to other conditions.
        let alone = run_state(
            &state,
            &AblationOptions {
                conditions: vec![Condition::Normal],
                ..o.clone()
            },
        )
        .map(|r| r.conditions[0].clone());
        assert_eq!(alone.unwrap().episodes, a.conditions[0].episodes);
        // Another seed gives other episodes (the seed is used).
        let c = run_state(
            &state,
            &AblationOptions {
                seed: 4,
                ..o.clone()
            },
        )
        .unwrap();
        if start == Start::Fresh {
            assert_ne!(a.conditions[0].episodes, c.conditions[0].episodes);
        }
    }
}

/// Field part of an observation row.
fn field_part<'a>(row: &'a [f32], c: &Config) -> &'a [f32] {
    let side = 2 * c.env.observation_radius + 1;
    &row[3..3 + side * side * c.field.num_channels]
}

#[test]
fn conditions_change_exactly_what_the_agents_see() {
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(tiny(), 2, dir.path(), "run.safetensors");
    let state =
        TrainState::from_checkpoint(&read_checkpoint(&ck).unwrap(), tch::Device::Cpu).unwrap();
    let c = state.config.clone();
    let o = options(&ck, 3, &Condition::ALL);
    // Per condition: rows seen, rows with a non-zero field part, all field values.
    let mut seen: Vec<(Condition, usize, usize, Vec<f32>)> = Vec::new();
    let mut first_rows: Vec<(Condition, Vec<f32>)> = Vec::new();
    run_state_inspect(&state, &o, &mut |b: &ObservedBatch| {
        if seen.last().is_none_or(|s| s.0 != b.condition) {
            seen.push((b.condition, 0, 0, Vec::new()));
        }
        let s = seen.last_mut().unwrap();
        assert_eq!(b.obs.len(), b.episode.len() * b.obs_dim);
        assert_eq!(b.actions.len(), b.episode.len());
        for row in b.obs.chunks_exact(b.obs_dim) {
            let f = field_part(row, &c);
            s.1 += 1;
            s.2 += f.iter().any(|&v| v != 0.0) as usize;
            s.3.extend_from_slice(f);
            // Position and energy are always there.
            assert!(row[2] > 0.0, "living agents have energy");
        }
        if b.tick == 0 {
            first_rows.push((b.condition, b.obs.to_vec()));
        }
    })
    .unwrap();
    let get = |cond| seen.iter().find(|s| s.0 == cond).unwrap();
    let normal = get(Condition::Normal);
    // Agents write the field where they stand, so nearly every row sees some of it.
    assert!(
        normal.1 > 0 && normal.2 * 10 >= normal.1 * 9,
        "{} of {}",
        normal.2,
        normal.1
    );
    for cond in [Condition::Zeroed, Condition::NoField] {
        let s = get(cond);
        assert!(s.1 > 0);
        assert_eq!(s.2, 0, "{cond}: the agents saw a non-zero field");
    }
    let random = get(Condition::Random);
    assert!(random.3.iter().all(|&v| (0.0..1.0).contains(&v)));
    let distinct: HashSet<u32> = random.3.iter().map(|v| v.to_bits()).collect();
    // Fresh values every tick (neighbourhoods overlap and edges repeat, so not all
    // distinct), uniform on [0, 1).
    assert!(
        distinct.len() * 10 > random.3.len(),
        "{} distinct",
        distinct.len()
    );
    let m = random.3.iter().map(|&v| v as f64).sum::<f64>() / random.3.len() as f64;
    assert!((0.45..0.55).contains(&m), "mean of uniform values {m}");
    // Frozen: every tick sees the episode-start field, i.e. what normal sees at tick 0.
    let frozen = get(Condition::Frozen);
    assert!(frozen.2 > 0);
    let t0 = |cond| &first_rows.iter().find(|r| r.0 == cond).unwrap().1;
    assert_eq!(t0(Condition::Frozen), t0(Condition::Normal));
    // The checkpoint's fields are not zero, so zeroed differs from normal from tick 0.
    assert_ne!(t0(Condition::Zeroed), t0(Condition::Normal));
}

#[test]
fn a_policy_that_reads_the_field_shows_a_significant_gap() {
    // Hand-built: the first layer sees only the field (random weights on the field inputs,
    // zero elsewhere); the actor prefers "stay" only when the hidden layer is silent. With
    // the field zeroed every agent stays and starves of food; with the field, agents move.
    tch::set_num_threads(1);
    let mut c = tiny();
    c.env.grid_size = 10;
    c.env.num_food = 6;
    c.env.max_steps = 100;
    c.env.observation_radius = 2;
    c.evolution.min_agents = 0;
    let state = TrainState::new(c.clone(), tch::Device::Cpu).unwrap();
    let p = &state.policy;
    let side = 2 * c.env.observation_radius + 1;
    let field_cols = 3..3 + (side * side * c.field.num_channels) as i64;
    tch::no_grad(|| {
        let w = &p.params[0];
        let keep = Tensor::zeros_like(w);
        let _ = keep
            .narrow(1, field_cols.start, field_cols.end - field_cols.start)
            .fill_(1.0);
        let mut w2 = w.shallow_clone();
        w2.copy_(&(w * keep * 5.0));
        let a = p.index_of("policy/actor/weight").unwrap();
        let aw = p.params[a].shallow_clone();
        let _ = aw.get(0).fill_(0.0); // stay ignores the hidden state
        let _ = aw.narrow(0, 5, 1).fill_(0.0); // never reproduce
        let mut big = aw.narrow(0, 1, 4).copy();
        big *= 300.0;
        aw.narrow(0, 1, 4).copy_(&big);
        let ab = p.params[a + 1].shallow_clone();
        let _ = ab.get(0).fill_(0.1); // stay wins only when the hidden state is silent
    });
    let o = AblationOptions {
        episodes: 40,
        start: Start::Fresh,
        conditions: vec![Condition::Zeroed, Condition::NoField],
        ..AblationOptions::default()
    };
    // (moves, stays) per condition.
    let mut acts = [(0usize, 0usize); 3];
    let r = run_state_inspect(&state, &o, &mut |b: &ObservedBatch| {
        let i = [Condition::Normal, Condition::Zeroed, Condition::NoField]
            .iter()
            .position(|&c| c == b.condition)
            .unwrap();
        for &a in b.actions {
            if a == 0 {
                acts[i].1 += 1;
            } else {
                acts[i].0 += 1;
            }
        }
    })
    .unwrap();
    eprintln!(
        "{}\n(moves, stays) normal/zeroed/no_field: {acts:?}",
        r.table()
    );
    assert!(
        acts[0].0 > 10 * acts[0].1,
        "with the field, agents move: {acts:?}"
    );
    assert_eq!(
        (acts[1].0, acts[2].0),
        (0, 0),
        "without it, they stay: {acts:?}"
    );
    for cond in [Condition::Zeroed, Condition::NoField] {
        let g = r.gap(cond, "total_reward").unwrap();
        assert!(
            g.significant() && g.mean > 0.0,
            "{cond}: gap {g:?}\n{}",
            r.table()
        );
    }
}

#[test]
fn clear_errors_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let e = ablation::run(&AblationOptions::new(&missing)).unwrap_err();
    assert!(matches!(e, AblationError::MissingCheckpoint(_)), "{e}");
    assert!(e.to_string().contains("nope.safetensors"));

    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"definitely not a checkpoint, just some bytes").unwrap();
    let e = ablation::run(&AblationOptions::new(&corrupt)).unwrap_err();
    assert!(matches!(e, AblationError::Checkpoint(_)), "{e}");
    assert!(e.to_string().contains("corrupt.safetensors"), "{e}");

    let e = ablation::run(&AblationOptions {
        episodes: 0,
        ..AblationOptions::new(&missing)
    })
    .unwrap_err();
    assert!(matches!(e, AblationError::ZeroEpisodes), "{e}");

    let e = Condition::parse_list("normal,shuffled")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shuffled") && e.contains("zeroed, random, frozen, no_field"),
        "{e}"
    );

    let empty = tempfile::tempdir().unwrap();
    let e = ablation::run(&AblationOptions::new(empty.path())).unwrap_err();
    assert!(matches!(e, AblationError::MissingCheckpoint(_)), "{e}");
    assert!(
        e.to_string().contains("latest.safetensors does not exist"),
        "{e}"
    );
}
