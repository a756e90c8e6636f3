//! Every config error case produces a message that names the field (and, for unknown keys,
//! the closest valid one), and all problems are reported together.

use emergence_lab_core::config::Config;
use emergence_lab_core::config::ConfigError;

/// The error message of defaults + `EMERGENCE_LAB_OVERRIDES`-style settings.
fn err(overrides: &str) -> String {
    match Config::from_env_overrides_str(overrides) {
        Ok(_) => panic!("{overrides:?} should be rejected"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should contain {p:?}");
    }
}

#[test]
fn defaults_and_notebook_values_are_valid() {
    Config::default().validate().unwrap();
    Config::kaggle_notebook().validate().unwrap();
}

#[test]
fn unknown_keys_suggest_the_closest_name() {
    let cases: &[(&str, &[&str])] = &[
        (
            "train.nm_envs=4",
            &[
                "unknown config key `train.nm_envs`",
                "did you mean `train.num_envs`",
            ],
        ),
        (
            "train.total-stesp=4",
            &["`train.total-stesp`", "did you mean `train.total_steps`"],
        ),
        // A field of another group.
        (
            "env.num_envs=4",
            &[
                "unknown config key `env.num_envs`",
                "did you mean `train.num_envs`",
            ],
        ),
        ("evolution.num_agents=4", &["did you mean `env.num_agents`"]),
        (
            "trian.num_envs=4",
            &[
                "unknown config group `trian`",
                "did you mean `train.num_envs`",
                "groups are: env,",
            ],
        ),
        (
            "total_steps=5",
            &[
                "must have the form group.field",
                "did you mean `train.total_steps`",
            ],
        ),
        (
            "specialization.layer_mutation_rates.actor=0.1",
            &["did you mean `specialization.layer_mutation_rates`"],
        ),
    ];
    for (input, parts) in cases {
        assert_has(&err(input), parts);
    }
    // Nothing close: no suggestion rather than a silly one.
    let m = err("train.zzzzqqq=1");
    assert_has(&m, &["unknown config key `train.zzzzqqq`"]);
    assert!(!m.contains("did you mean"), "{m}");
}

#[test]
fn wrong_types_say_what_was_expected() {
    let cases: &[(&str, &str)] = &[
        (
            "train.num_envs=abc",
            "train.num_envs expects an unsigned integer, got \"abc\"",
        ),
        (
            "train.num_envs=-3",
            "train.num_envs expects an unsigned integer, got \"-3\"",
        ),
        (
            "train.num_envs=2.5",
            "train.num_envs expects an unsigned integer, got \"2.5\"",
        ),
        (
            "env.max_steps=5000000000",
            "env.max_steps expects an unsigned integer up to 4294967295",
        ),
        (
            "log.save_interval=often",
            "log.save_interval expects an integer, got \"often\"",
        ),
        (
            "train.learning_rate=fast",
            "train.learning_rate expects a finite number, got \"fast\"",
        ),
        (
            "train.learning_rate=nan",
            "train.learning_rate expects a finite number",
        ),
        (
            "evolution.enabled=maybe",
            "evolution.enabled expects a boolean (true or false), got \"maybe\"",
        ),
        (
            "train.lr_schedule=cosine",
            "train.lr_schedule expects one of linear|constant, got \"cosine\"",
        ),
        (
            "evolution.evolved=some",
            "evolution.evolved expects one of all|heads",
        ),
        (
            "agent.hidden_dims=64,x",
            "agent.hidden_dims expects a list of unsigned integers",
        ),
        (
            "specialization.layer_mutation_rates=actor",
            "specialization.layer_mutation_rates expects a map",
        ),
        (
            "specialization.layer_mutation_rates=actor=big",
            "specialization.layer_mutation_rates expects a map",
        ),
    ];
    for (input, expected) in cases {
        assert_has(&err(input), &[expected]);
    }
}

#[test]
fn impossible_values_name_the_field_and_the_reason() {
    let cases: &[(&str, &[&str])] = &[
        ("train.num_envs=0", &["train.num_envs: must be at least 1, got 0"]),
        ("train.num_steps=0", &["train.num_steps: must be at least 1"]),
        ("train.total_steps=0", &["train.total_steps: must be at least 1"]),
        ("train.num_epochs=0", &["train.num_epochs: must be at least 1"]),
        ("train.minibatch_size=0", &["train.minibatch_size: must be at least 1"]),
        ("env.num_agents=0", &["env.num_agents: must be at least 1"]),
        ("env.num_agents=40", &["env.num_agents: 40 agents", "evolution.max_agents = 32"]),
        ("evolution.min_agents=33", &["evolution.min_agents: 33 is above evolution.max_agents = 32"]),
        ("env.grid_size=2", &["env.grid_size: must be at least 3, got 2"]),
        ("env.max_steps=0", &["env.max_steps: must be at least 1"]),
        ("env.observation_radius=0", &["env.observation_radius: must be at least 1"]),
        ("env.grid_size=5 env.observation_radius=5", &["env.observation_radius: 5 is larger than needed", "radius of 4"]),
        ("env.food_respawn_prob=1.5", &["env.food_respawn_prob: must be between 0 and 1, got 1.5"]),
        ("env.food_respawn_prob=-0.1", &["env.food_respawn_prob: must be between 0 and 1"]),
        ("field.num_channels=0", &["field.num_channels: must be at least 1"]),
        ("field.diffusion_rate=2", &["field.diffusion_rate: must be between 0 and 1, got 2"]),
        ("field.decay_rate=-0.5", &["field.decay_rate: must be between 0 and 1, got -0.5"]),
        ("field.write_strength=-1", &["field.write_strength: must not be negative"]),
        ("agent.hidden_dims=", &["agent.hidden_dims: needs at least one layer"]),
        ("agent.hidden_dims=64,0", &["agent.hidden_dims: needs at least one layer and no zero widths, got [64, 0]"]),
        ("train.learning_rate=0", &["train.learning_rate: must be greater than 0, got 0"]),
        ("train.learning_rate=-1e-3", &["train.learning_rate: must be greater than 0"]),
        ("train.gamma=1.01", &["train.gamma: must be between 0 and 1, got 1.01"]),
        ("train.gae_lambda=-0.1", &["train.gae_lambda: must be between 0 and 1"]),
        ("train.clip_eps=0", &["train.clip_eps: must be greater than 0 and at most 1"]),
        ("train.clip_eps=1.5", &["train.clip_eps: must be greater than 0 and at most 1, got 1.5"]),
        ("train.vf_coef=-0.5", &["train.vf_coef: must not be negative"]),
        ("train.ent_coef=-0.01", &["train.ent_coef: must not be negative"]),
        ("train.max_grad_norm=0", &["train.max_grad_norm: must be greater than 0"]),
        (
            "train.num_envs=1 train.num_steps=2 evolution.max_agents=4 env.num_agents=2",
            &["train.minibatch_size: 256 is larger than a batch", "1 * 2 * 4 = 8 samples"],
        ),
        ("train.device=gpu", &["train.device: must be auto, cpu, cuda or cuda:N", "\"gpu\""]),
        ("train.device=cuda:", &["train.device: must be auto, cpu, cuda or cuda:N"]),
        ("train.device=cuda:x", &["train.device: must be auto, cpu, cuda or cuda:N"]),
        ("train.max_wall_time=soon", &["train.max_wall_time: invalid duration \"soon\"", "11h30m"]),
        ("train.max_wall_time=0s", &["train.max_wall_time: must be positive, or empty"]),
        ("log.keep_checkpoints=0", &["log.keep_checkpoints: must be at least 1"]),
        ("log.checkpoint_dir=", &["log.checkpoint_dir: must not be empty"]),
        ("analysis.event_window=1", &["analysis.event_window: must be at least 2"]),
        ("analysis.event_threshold=0", &["analysis.event_threshold: must be greater than 0"]),
        ("evolution.starting_energy=0", &["evolution.starting_energy: must be greater than 0"]),
        ("evolution.energy_per_step=-1", &["evolution.energy_per_step: must not be negative"]),
        ("evolution.food_energy=-1", &["evolution.food_energy: must not be negative"]),
        ("evolution.max_energy=90", &["evolution.max_energy: 90 is below evolution.starting_energy = 100"]),
        ("evolution.reproduce_threshold=250", &["evolution.reproduce_threshold: 250 is above evolution.max_energy = 200"]),
        ("evolution.reproduce_cost=160", &["evolution.reproduce_cost: 160 is above evolution.reproduce_threshold = 150", "negative energy"]),
        ("evolution.reproduce_cost=0", &["evolution.reproduce_cost: must be greater than 0"]),
        ("evolution.mutation_std=-0.01", &["evolution.mutation_std: must not be negative"]),
        ("evolution.max_agents=0 env.num_agents=0", &["evolution.max_agents: must be at least 1"]),
        ("specialization.diversity_bonus=-0.1", &["specialization.diversity_bonus: must not be negative"]),
        ("specialization.niche_pressure=-0.1", &["specialization.niche_pressure: must not be negative"]),
        (
            "specialization.layer_mutation_rates=actor=0.1,critic=-0.2",
            &["specialization.layer_mutation_rates: the std for layer \"critic\" must not be negative"],
        ),
        ("specialization.layer_mutation_rates=a=1,a=2", &["layer name \"a\" appears twice"]),
    ];
    for (input, parts) in cases {
        assert_has(&err(input), parts);
    }
}

#[test]
fn boundary_values_are_accepted() {
    let ok = [
        "env.grid_size=3 env.observation_radius=2",
        "env.food_respawn_prob=1 field.diffusion_rate=0 field.decay_rate=1 train.gamma=1",
        "train.clip_eps=1 train.device=cuda:3",
        "train.device=cuda train.max_wall_time=1.5h",
        "train.num_envs=1 train.num_steps=2 evolution.max_agents=4 env.num_agents=2 train.minibatch_size=8",
        "evolution.reproduce_cost=150 evolution.max_energy=100 evolution.reproduce_threshold=100 evolution.reproduce_cost=100",
        "evolution.min_agents=0",
    ];
    for input in ok {
        Config::from_env_overrides_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    }
}

#[test]
fn all_problems_are_reported_together() {
    let e = Config::from_env_overrides_str("train.num_envs=0 env.grid_size=2 train.gamma=1.5")
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("3 problems in the configuration:"), "{msg}");
    assert_eq!(msg.lines().count(), 4, "{msg}");
    let keys: Vec<_> = e.problems().iter().filter_map(|p| p.key()).collect();
    assert_eq!(keys, ["env.grid_size", "train.num_envs", "train.gamma"]);

    // Unknown keys and wrong types are collected too.
    let msg = err("train.nm_envs=1 env.grid_size=abc trian.seed=1");
    assert_has(
        &msg,
        &[
            "3 problems",
            "train.nm_envs",
            "env.grid_size expects",
            "trian",
        ],
    );
}

#[test]
fn set_checks_the_field_and_leaves_the_config_unchanged_on_error() {
    let mut c = Config::default();
    let e = c.set("env.grid_size", "2").unwrap_err();
    assert_eq!(e.to_string(), "env.grid_size: must be at least 3, got 2");
    assert_eq!(e.key(), Some("env.grid_size"));
    assert!(c.set("train.num-envs", "abc").is_err());
    assert!(c.set("train.nm_envs", "4").is_err());
    assert_eq!(c, Config::default());

    // Fields that constrain each other can be set in any order; validate judges the end.
    c.set("env.num_agents", "40").unwrap();
    let e = c.validate().unwrap_err();
    assert_has(
        &e.to_string(),
        &["env.num_agents", "evolution.max_agents = 32"],
    );
    c.set("evolution.max_agents", "64").unwrap();
    c.validate().unwrap();
    assert_eq!(c.env.num_agents, 40);
}

#[test]
fn toml_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[train]\nnum_envs = \"abc\"\n",
            "train.num_envs expects an unsigned integer, got \"abc\"",
        ),
        (
            "[train]\nnum_envs = 3.5\n",
            "train.num_envs expects an unsigned integer, got 3.5",
        ),
        (
            "[train]\nnum_envs = -1\n",
            "train.num_envs expects an unsigned integer, got -1",
        ),
        ("[train]\nnum_envz = 3\n", "did you mean `train.num_envs`"),
        ("[trainn]\nnum_envs = 3\n", "unknown config group `trainn`"),
        ("total_steps = 3\n", "did you mean `train.total_steps`"),
        (
            "[evolution]\nenabled = 1.5\n",
            "evolution.enabled expects a boolean",
        ),
        (
            "[agent]\nhidden_dims = [64, -1]\n",
            "agent.hidden_dims expects a list of unsigned integers",
        ),
        (
            "[train]\ngamma = 2.0\n",
            "train.gamma: must be between 0 and 1",
        ),
        ("[train\n", "config TOML: "),
    ];
    for (text, expected) in cases {
        let msg = Config::from_toml_str(text).unwrap_err().to_string();
        assert_has(&msg, &[expected]);
    }
}

#[test]
fn json_errors_name_the_field() {
    let msg = Config::from_json(r#"{"train": {"num_envz": 3}}"#)
        .unwrap_err()
        .to_string();
    assert_has(&msg, &["train.num_envz", "did you mean `train.num_envs`"]);
    let msg = Config::from_json(r#"{"train": {"num_envs": "x"}}"#)
        .unwrap_err()
        .to_string();
    assert_has(&msg, &["train.num_envs expects an unsigned integer"]);
    assert!(Config::from_json("{not json").is_err());
}

#[test]
fn error_type_is_structured() {
    let e = Config::from_env_overrides_str("train.num_envs=abc").unwrap_err();
    assert_eq!(e.key(), Some("train.num_envs"));
    assert!(
        e.to_string().ends_with("(from EMERGENCE_LAB_OVERRIDES)"),
        "{e}"
    );
    match e {
        ConfigError::InSource { origin, error } => {
            assert_eq!(origin, "EMERGENCE_LAB_OVERRIDES");
            assert!(matches!(*error, ConfigError::WrongType { .. }), "{error:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Settings made in code carry no source.
    let e = Config::default().set("train.num_envs", "abc").unwrap_err();
    assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
}
