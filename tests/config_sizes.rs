//! Sizes and counts in the config: any config either validates and its memory estimate fits
//! this machine, or is a config error naming fields; never a panic, an overflow or an
//! allocation that aborts the process.

use emergence_lab::config::{machine_memory, max_threads, ConfigError};
use emergence_lab::{config::Config, train::TrainState};
use proptest::prelude::*;

/// A size: mostly small, sometimes huge, sometimes at the type's edge.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..64,
        2 => 0usize..100_000,
        1 => Just(usize::MAX),
        1 => Just(usize::MAX / 2 + 1),
        1 => any::<usize>(),
        1 => (1usize..64).prop_map(|s| 1usize << s),
    ]
}

fn small_default() -> Config {
    let mut c = Config::default();
    c.train.device = "cpu".into();
    c
}

fn apply(sizes: &[usize; 13], dims: &[usize], specialize: bool, heads: bool) -> Config {
    let mut c = small_default();
    c.env.grid_size = sizes[0];
    c.env.num_agents = sizes[1];
    c.env.num_food = sizes[2];
    c.env.observation_radius = sizes[3];
    c.env.observed_food = sizes[4];
    c.field.num_channels = sizes[5];
    c.train.num_envs = sizes[6];
    c.train.num_steps = sizes[7];
    c.train.minibatch_size = sizes[8];
    c.train.num_threads = sizes[9];
    c.evolution.max_agents = sizes[10];
    c.evolution.min_agents = sizes[11].min(sizes[10]);
    c.train.num_epochs = sizes[12].max(1);
    c.agent.hidden_dims = dims.to_vec();
    if heads {
        c.evolution.evolved = emergence_lab::config::Evolved::Heads;
    }
    if !specialize {
        c.specialization.diversity_bonus = 0.0;
        c.specialization.niche_pressure = 0.0;
    } else {
        c.specialization.diversity_bonus = 0.1;
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_size_config_validates_and_fits_or_is_a_config_error(
        sizes in proptest::array::uniform13(size()),
        dims in proptest::collection::vec(size(), 0..4),
        specialize in any::<bool>(),
        heads in any::<bool>(),
    ) {
        let c = apply(&sizes, &dims, specialize, heads);
        // Helpers used before validation never panic on any input.
        let _ = c.obs_dim();
        let _ = c.steps_per_iteration();
        match c.validate() {
            Ok(()) => {
                let est = c.memory_estimate().expect("a valid config has an estimate");
                if let Some(mem) = machine_memory() {
                    prop_assert!(est.total() <= mem, "{} > {mem}", est.total());
                }
                prop_assert!(c.train.num_threads <= max_threads());
                prop_assert!(c.checked_obs_dim().is_some());
            }
            Err(e) => {
                for p in e.problems() {
                    let key = p.key().unwrap_or_default();
                    prop_assert!(key.contains('.'), "every problem names a field: {p}");
                }
            }
        }
        // Setting every size through the public string API is also panic-free.
        let mut d = small_default();
        for (k, v) in [
            ("env.grid_size", sizes[0]),
            ("train.num_envs", sizes[6]),
            ("evolution.max_agents", sizes[10]),
            ("train.num_threads", sizes[9]),
        ] {
            let _ = d.set(k, &v.to_string());
        }
        let _ = d.validate();
    }
}

fn message(e: ConfigError) -> String {
    e.to_string()
}

#[test]
fn max_agents_100000_is_a_config_error_with_the_estimate() {
    let mut c = small_default();
    c.evolution.max_agents = 100_000;
    let e = message(c.validate().unwrap_err());
    assert!(e.contains("evolution.max_agents"), "{e}");
    assert!(
        e.contains("needs about") && e.contains("this machine has"),
        "{e}"
    );
}

#[test]
fn products_that_overflow_are_config_errors_naming_the_fields() {
    let mut c = small_default();
    c.train.num_envs = usize::MAX / 2;
    c.train.num_steps = usize::MAX / 2;
    let e = message(c.memory_estimate().unwrap_err());
    assert!(
        e.contains("train.num_steps") && e.contains("train.num_envs"),
        "{e}"
    );
    assert!(c.validate().is_err());
    let mut c = small_default();
    c.agent.hidden_dims = vec![usize::MAX, usize::MAX];
    let e = message(c.validate().unwrap_err());
    assert!(e.contains("agent.hidden_dims"), "{e}");
}

#[test]
fn absurd_thread_counts_are_refused() {
    let mut c = small_default();
    c.train.num_threads = 100_000;
    let e = message(c.validate().unwrap_err());
    assert!(e.contains("train.num_threads"), "{e}");
    c.train.num_threads = 4;
    c.validate().unwrap();
}

#[test]
fn the_default_and_kaggle_configs_fit_comfortably() {
    for c in [Config::default(), Config::kaggle_notebook()] {
        let est = c.memory_estimate().unwrap();
        assert!(est.total() < 4 << 30, "{est:?}");
        assert!(est.world > 0 && est.rollout > 0 && est.offsets > 0 && est.minibatch > 0);
    }
}

#[test]
fn train_state_new_refuses_a_config_that_cannot_fit_before_allocating() {
    // Notebooks may build a state without `validate`: the check must be there too.
    let mut c = small_default();
    c.evolution.max_agents = 100_000;
    let e = TrainState::new(c, tch::Device::Cpu).err().expect("refused");
    let e = e.to_string();
    assert!(e.contains("needs about"), "{e}");
}

#[cfg(unix)]
#[test]
fn an_overrides_variable_that_is_not_text_is_an_error_in_the_binary() {
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .env(
            "EMERGENCE_LAB_OVERRIDES",
            std::ffi::OsStr::from_bytes(b"train.total_steps=\xff\xfe"),
        )
        .args(["--train.total-steps", "1", "--log.checkpoint-dir"])
        .arg(tempfile::tempdir().unwrap().path().join("c"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("EMERGENCE_LAB_OVERRIDES") && err.contains("UTF-8"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_command_line_argument_that_is_not_text_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    for bin in [env!("CARGO_BIN_EXE_train")] {
        let out = std::process::Command::new(bin)
            .arg("--train.total-steps")
            .arg(std::ffi::OsStr::from_bytes(b"\xff"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
        assert!(
            err.contains("not valid UTF-8") && !err.contains("panicked"),
            "{err}"
        );
    }
}
