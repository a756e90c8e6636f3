//! The thread count changes speed, not results: on the CPU the native update splits each
//! minibatch into a fixed number of parts and the rollout computes each agent's row the
//! same way whatever the split, so 1 and 2 threads train bit-identically. (One test per
//! process: the libtorch thread count is global.)

use emergence_lab::{config::Config, train::TrainState};
use tch::Device;

fn run(threads: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    tch::set_num_threads(1);
    emergence_lab::policy::native::set_threads(threads);
    let mut c = Config::default();
    c.env.grid_size = 8;
    c.env.num_agents = 3;
    c.env.num_food = 6;
    c.env.observation_radius = 2;
    c.env.max_steps = 12;
    c.train.num_envs = 3;
    c.train.num_steps = 16;
    c.train.minibatch_size = 32;
    c.train.num_epochs = 2;
    c.evolution.max_agents = 6;
    c.evolution.min_agents = 2;
    c.evolution.mutation_std = 0.05;
    c.specialization.diversity_bonus = 0.1;
    c.specialization.niche_pressure = 0.05;
    let mut s = TrainState::new(c, Device::Cpu).unwrap();
    for _ in 0..2 {
        s.iterate().unwrap();
    }
    let flat = Vec::try_from(s.policy.flat.detach()).unwrap();
    let offs = s
        .offsets
        .as_ref()
        .unwrap()
        .tensors
        .iter()
        .map(|t| Vec::try_from(t.flatten(0, -1)).unwrap())
        .collect();
    (flat, offs)
}

#[test]
fn one_and_two_threads_train_bit_identically() {
    let one = run(1);
    let two = run(2);
    assert!(one == two, "parameters differ between 1 and 2 threads");
    let again = run(2);
    assert!(two == again, "2 threads are not deterministic");
}
