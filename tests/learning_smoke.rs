//! Quick end-to-end checks of TrainState::iterate on a tiny config.
use emergence_lab::{config::Config, train::TrainState};

#[test]
fn iterate_small_config_produces_finite_metrics() {
    tch::set_num_threads(1);
    let mut c = Config::default();
    c.env.grid_size = 10;
    c.train.num_envs = 4;
    c.evolution.max_agents = 8;
    c.env.num_agents = 4;
    c.train.num_steps = 16;
    c.train.minibatch_size = 64;
    c.env.max_steps = 20;
    c.specialization.diversity_bonus = 0.1;
    c.specialization.niche_pressure = 0.05;
    let mut s = TrainState::new(c, tch::Device::Cpu).unwrap();
    for _ in 0..3 {
        let m = s.iterate().unwrap();
        for (k, v) in &m.values {
            assert!(v.is_finite(), "{k} = {v}");
        }
    }
}
