//! Config sources and their precedence (defaults < TOML < CLI < environment), the accepted
//! forms of booleans, lists and maps, argument splitting, and lossless storage.
//!
//! Only `reads_the_process_environment` touches `EMERGENCE_LAB_OVERRIDES`; every other test
//! passes the environment text explicitly, so tests can run in parallel.

use std::path::PathBuf;

use emergence_lab_core::config::Config;
use emergence_lab_core::config::{split_args, ConfigOverrides, ENV_VAR};
use proptest::prelude::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn write_toml(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn precedence_defaults_toml_cli_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_toml(
        &dir,
        "run.toml",
        "[train]\ntotal_steps = 100\nnum_envs = 4\nseed = 7\n[env]\ngrid_size = 10\n",
    );
    let cli = format!(
        "--config {} --train.total-steps 200 --train.num_envs=8",
        file.display()
    );
    let c = Config::load_cli_with_env(args(&cli), Some("train.total_steps=300")).unwrap();
    assert_eq!(c.train.total_steps, 300, "env wins over CLI and file");
    assert_eq!(c.train.num_envs, 8, "CLI wins over file");
    assert_eq!(c.train.seed, 7, "file wins over defaults");
    assert_eq!(c.env.grid_size, 10);
    assert_eq!(
        c.env.num_food,
        Config::default().env.num_food,
        "defaults stay"
    );

    // The file is applied first even when it comes after a CLI option.
    let cli = format!("--train.total-steps 200 --config={}", file.display());
    let c = Config::load_cli_with_env(args(&cli), None).unwrap();
    assert_eq!(c.train.total_steps, 200);

    // Several files apply in order; within a source the later setting wins.
    let second = write_toml(&dir, "more.toml", "[train]\nseed = 9\n");
    let cli = format!(
        "--config {} --config {} --train.seed 1 --train.seed 2",
        file.display(),
        second.display()
    );
    assert_eq!(
        Config::load_cli_with_env(args(&cli), None)
            .unwrap()
            .train
            .seed,
        2
    );
    let cli = format!("--config {} --config {}", file.display(), second.display());
    assert_eq!(
        Config::load_cli_with_env(args(&cli), None)
            .unwrap()
            .train
            .seed,
        9
    );
}

#[test]
fn boolean_forms() {
    let load = |s: &str| {
        Config::load_cli_with_env(args(s), None)
            .unwrap()
            .evolution
            .enabled
    };
    assert!(!load("--evolution.no-enabled"));
    assert!(!load("--evolution.no_enabled"));
    assert!(!load("--evolution.enabled false"));
    assert!(!load("--evolution.enabled=no"));
    assert!(!load("--evolution.enabled 0"));
    assert!(load("--evolution.no-enabled --evolution.enabled"));
    assert!(load("--evolution.enabled false --evolution.enabled=true"));
    assert!(load(
        "--evolution.no-enabled --evolution.enabled --train.seed 3"
    ));
    let e = Config::load_cli_with_env(args("--evolution.no-enabled=true"), None).unwrap_err();
    assert!(e.to_string().contains("takes no value"), "{e}");
}

#[test]
fn list_forms() {
    let load = |s: &str| Config::load_cli_with_env(args(s), None).unwrap();
    let c = load("--train.resume-search a b --train.seed 3");
    assert_eq!(c.train.resume_search, ["a", "b"]);
    assert_eq!(c.train.seed, 3);
    assert_eq!(
        load("--train.resume-search a,b").train.resume_search,
        ["a", "b"]
    );
    assert_eq!(
        load("--train.resume-search=a,b").train.resume_search,
        ["a", "b"]
    );
    assert!(load("--train.resume-search").train.resume_search.is_empty());
    assert_eq!(
        load("--agent.hidden-dims 128 32").agent.hidden_dims,
        [128, 32]
    );
    assert_eq!(
        load("--agent.hidden-dims=32,16").agent.hidden_dims,
        [32, 16]
    );
    // A path with a space, as one shell word, stays one entry.
    let c = Config::load_cli_with_env(
        vec![
            "--train.resume-search".to_string(),
            "/kaggle/input/my run".to_string(),
        ],
        None,
    )
    .unwrap();
    assert_eq!(c.train.resume_search, ["/kaggle/input/my run"]);
    let c = Config::from_env_overrides_str("train.resume_search=a,b agent.hidden_dims=\"8 8\"")
        .unwrap();
    assert_eq!(c.train.resume_search, ["a", "b"]);
    assert_eq!(c.agent.hidden_dims, [8, 8]);
    let c = Config::from_toml_str("[train]\nresume_search = [\"x\", \"y\"]\n").unwrap();
    assert_eq!(c.train.resume_search, ["x", "y"]);
}

#[test]
fn map_forms_keep_their_order() {
    let rates = |c: &Config| {
        c.specialization
            .layer_mutation_rates
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    let want = vec![("critic".to_string(), 0.5), ("actor".to_string(), 0.02)];
    let load = |s: &str| Config::load_cli_with_env(args(s), None).unwrap();
    assert_eq!(
        rates(&load(
            "--specialization.layer-mutation-rates critic=0.5,actor=0.02"
        )),
        want
    );
    assert_eq!(
        rates(&load(
            "--specialization.layer-mutation-rates critic=0.5 actor=0.02"
        )),
        want
    );
    let c = Config::load_cli_with_env(
        vec!["--specialization.layer_mutation_rates={ critic = 0.5, actor = 0.02 }".to_string()],
        None,
    )
    .unwrap();
    assert_eq!(rates(&c), want);
    let c = Config::from_toml_str(
        "[specialization.layer_mutation_rates]\ncritic = 0.5\nactor = 0.02\n",
    )
    .unwrap();
    assert_eq!(rates(&c), want);
    let mut c = Config::default();
    c.set(
        "specialization.layer-mutation-rates",
        "critic:0.5 actor:0.02",
    )
    .unwrap();
    assert_eq!(rates(&c), want);
    // Setting another field of the group keeps the map and its order.
    c.set("specialization.diversity_bonus", "0.1").unwrap();
    assert_eq!(rates(&c), want);
    assert_eq!(
        c.get("specialization.layer_mutation_rates").unwrap(),
        "{ critic = 0.5, actor = 0.02 }"
    );
    c.set("specialization.layer_mutation_rates", "").unwrap();
    assert!(c.specialization.layer_mutation_rates.is_empty());
}

#[test]
fn set_parses_by_field_type() {
    let mut c = Config::kaggle_notebook();
    c.set("train.total_steps", "8192").unwrap();
    c.set("train.total-steps", "1e6").unwrap();
    assert_eq!(c.train.total_steps, 1_000_000);
    c.set("train.seed", "18446744073709551615").unwrap();
    assert_eq!(c.train.seed, u64::MAX);
    c.set("log.save_interval", "-1").unwrap();
    assert_eq!(c.log.save_interval, -1);
    c.set("train.learning_rate", "2.5e-4").unwrap();
    assert_eq!(c.train.learning_rate, 2.5e-4);
    c.set("train.lr_schedule", "Constant").unwrap();
    assert_eq!(
        c.train.lr_schedule,
        emergence_lab_core::config::LrSchedule::Constant
    );
    c.set("evolution.evolved", "heads").unwrap();
    assert_eq!(
        c.evolution.evolved,
        emergence_lab_core::config::Evolved::Heads
    );
    c.set("train.max_wall_time", "11h30m").unwrap();
    assert_eq!(
        c.max_wall_time(),
        Some(std::time::Duration::from_secs(41_400))
    );
    c.set("train.device", "cuda:0").unwrap();
    assert_eq!(c.get("train.device").unwrap(), "\"cuda:0\"");
    assert_eq!(c.get("train.learning_rate").unwrap(), "0.00025");
    assert_eq!(c.get("evolution.starting_energy").unwrap(), "200.0");
    assert_eq!(Config::default().max_wall_time(), None);
}

#[test]
fn environment_text_forms() {
    let mut c = Config::default();
    c.apply_overrides_str(
        "  train.total_steps=8192\n env.grid_size=10 log.checkpoint_dir=\"my runs/a\" --train.device='cpu' ",
    )
    .unwrap();
    assert_eq!(c.train.total_steps, 8192);
    assert_eq!(c.env.grid_size, 10);
    assert_eq!(c.log.checkpoint_dir, "my runs/a");
    assert_eq!(c.train.device, "cpu");
    let before = c.clone();
    let e = c
        .apply_overrides_str("train.total_steps=1 grid_size")
        .unwrap_err();
    assert!(
        e.to_string().contains("\"grid_size\" is not key=value"),
        "{e}"
    );
    assert!(c.apply_overrides_str("train.seed=\"1").is_err());
    assert!(c
        .apply_overrides_str("train.seed=1 train.num_envs=x")
        .is_err());
    assert_eq!(c, before, "a failed apply changes nothing");
    c.apply_overrides_str("").unwrap();
    assert_eq!(c, before);
}

#[test]
fn reads_the_process_environment() {
    // The only test in this binary that reads or writes the variable.
    std::env::set_var(ENV_VAR, "train.total_steps=4096 env.grid_size=12");
    let mut c = Config::kaggle_notebook();
    c.apply_env_overrides().unwrap();
    assert_eq!((c.train.total_steps, c.env.grid_size), (4096, 12));
    let from_cli = Config::load_cli(args("--train.total-steps 7 --env.grid-size 9")).unwrap();
    assert_eq!(
        (from_cli.train.total_steps, from_cli.env.grid_size),
        (4096, 12)
    );
    std::env::set_var(ENV_VAR, "env.grid_size=1");
    assert!(Config::default().apply_env_overrides().is_err());
    std::env::remove_var(ENV_VAR);
    let mut d = Config::default();
    d.apply_env_overrides().unwrap();
    assert_eq!(d, Config::default());
}

#[test]
fn split_args_separates_config_options_in_order() {
    let input = args(
        "--steps 5 --config a.toml --train.total-steps 9 --json x --evolution.enabled --verbose \
         --train.resume-search a b --foo.bar 1 --env.grid_size=4 --train.nm-envs 3 --config=b.toml pos",
    );
    let (config, other) = split_args(&input);
    assert_eq!(
        config,
        args(
            "--config a.toml --train.total-steps 9 --evolution.enabled --train.resume-search a b \
              --env.grid_size=4 --train.nm-envs 3 --config=b.toml"
        )
    );
    assert_eq!(other, args("--steps 5 --json x --verbose --foo.bar 1 pos"));
    assert_eq!(
        ConfigOverrides::config_files(&input),
        [PathBuf::from("a.toml"), PathBuf::from("b.toml")]
    );
    // Splitting keeps unknown fields of known groups on the config side, so they are reported.
    let e = Config::load_cli_with_env(args("--train.nm-envs 3"), None).unwrap_err();
    assert!(
        e.to_string().contains("did you mean `train.num_envs`"),
        "{e}"
    );
}

#[test]
fn load_cli_rejects_stray_arguments_and_missing_files() {
    let e = Config::load_cli_with_env(args("--json out.json"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected argument \"--json\""), "{e}");
    let e = Config::load_cli_with_env(args("--total-steps 5"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unexpected argument \"--total-steps\" (did you mean `--train.total-steps`?)"),
        "{e}"
    );
    let e = Config::load_cli_with_env(args("--foo.bar 1"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown config group `foo`"), "{e}");
    let e = Config::load_cli_with_env(args("--train.num-envs"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--train.num-envs needs a value"), "{e}");
    let e = Config::load_cli_with_env(args("--config /nonexistent/run.toml"), None).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot read config file /nonexistent/run.toml"),
        "{e}"
    );
    let e = Config::load_cli_with_env(args("--config"), None).unwrap_err();
    assert!(
        e.to_string().contains("--config needs a TOML file path"),
        "{e}"
    );
    // Errors name their source.
    let dir = tempfile::tempdir().unwrap();
    let bad = write_toml(&dir, "bad.toml", "[train]\nnum_envs = \"many\"\n");
    let cli = format!("--config {} --train.seed x", bad.display());
    let e = Config::load_cli_with_env(args(&cli), Some("env.grid_size=y")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("3 problems"), "{msg}");
    assert!(
        msg.contains(&format!("got \"many\" (from {})", bad.display())),
        "{msg}"
    );
    assert!(
        msg.contains("train.seed expects an unsigned integer, got \"x\" (from the command line)"),
        "{msg}"
    );
    assert!(msg.contains("(from EMERGENCE_LAB_OVERRIDES)"), "{msg}");
    // Validation runs after all sources.
    let e = Config::load_cli_with_env(args("--env.num-agents 40"), None).unwrap_err();
    assert!(e.to_string().contains("evolution.max_agents = 32"), "{e}");
    // Negative numbers are values, not options.
    let c = Config::load_cli_with_env(args("--log.save-interval -1"), None).unwrap();
    assert_eq!(c.log.save_interval, -1);
}

fn tricky_config() -> Config {
    let mut c = Config::kaggle_notebook();
    c.train.seed = u64::MAX;
    c.train.learning_rate = 0.1 + 0.2;
    c.train.gamma = 1.0 / 3.0;
    c.field.write_strength = 1e-300;
    c.evolution.mutation_std = f64::MIN_POSITIVE;
    c.specialization.diversity_bonus = 123_456_789.123_456_78;
    c.specialization
        .layer_mutation_rates
        .insert("zeta".into(), 0.7);
    c.specialization
        .layer_mutation_rates
        .insert("alpha".into(), 1e-17);
    c.specialization
        .layer_mutation_rates
        .insert("with space".into(), 0.0);
    c.train.resume_search = vec!["/kaggle/input/a b".into(), "c\"d".into()];
    c.train.max_wall_time = "11h30m".into();
    c.log.save_interval = (-5).into();
    c
}

#[test]
fn json_and_toml_round_trips_are_exact() {
    let c = tricky_config();
    c.validate().unwrap();
    let back = Config::from_json(&c.to_json()).unwrap();
    assert_eq!(back, c);
    assert_eq!(
        back.train.learning_rate.to_bits(),
        c.train.learning_rate.to_bits()
    );
    let order: Vec<_> = back
        .specialization
        .layer_mutation_rates
        .keys()
        .cloned()
        .collect();
    assert_eq!(order, ["zeta", "alpha", "with space"]);
    assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    assert_eq!(Config::from_toml_str(&c.to_toml_string()).unwrap(), c);
    // Missing fields take defaults (older checkpoints).
    let partial = Config::from_json(r#"{"train": {"num_envs": 3}}"#).unwrap();
    assert_eq!(partial.train.num_envs, 3);
    assert_eq!(partial.env, Config::default().env);
}

proptest! {
    #[test]
    fn json_round_trip_keeps_every_float_bit(a in any::<f64>(), b in any::<f64>(), seed in any::<u64>()) {
        prop_assume!(a.is_finite() && b.is_finite());
        let mut c = Config::default();
        c.train.learning_rate = a;
        c.specialization.layer_mutation_rates.insert("x".into(), b);
        c.train.seed = seed;
        let back = Config::from_json(&c.to_json()).unwrap();
        prop_assert_eq!(back.train.learning_rate.to_bits(), a.to_bits());
        prop_assert_eq!(back.specialization.layer_mutation_rates["x"].to_bits(), b.to_bits());
        prop_assert_eq!(back, c);
    }
}

#[test]
fn summary_table_and_hash() {
    let mut c = Config::default();
    c.set("train.total_steps", "8192").unwrap();
    let table = c.summary_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), Config::num_fields());
    let eq_col = lines[0].find(" = ").unwrap();
    assert!(
        lines.iter().all(|l| l.find(" = ") == Some(eq_col)),
        "{table}"
    );
    let line = lines
        .iter()
        .find(|l| l.starts_with("train.total_steps "))
        .unwrap();
    assert!(
        line.contains("= 8192") && line.ends_with("# default 10000000"),
        "{line}"
    );
    let line = lines
        .iter()
        .find(|l| l.starts_with("train.device "))
        .unwrap();
    assert!(line.ends_with("= \"auto\""), "{line}");
    assert!(table.contains("agent.hidden_dims"));

    let help = Config::options_help();
    assert!(
        help.contains("--train.total-steps <unsigned integer>"),
        "{help}"
    );
    assert!(help.contains("[default: 10000000]"), "{help}");
    assert!(help.contains("--evolution.[no-]enabled"), "{help}");
    assert_eq!(
        help.lines()
            .filter(|l| l.trim_start().starts_with("--"))
            .count(),
        Config::num_fields()
    );

    let h = c.hash_hex();
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(h, c.clone().hash_hex());
    assert_ne!(h, Config::default().hash_hex());
    let mut d = c.clone();
    d.specialization
        .layer_mutation_rates
        .insert("a".into(), 0.1);
    d.specialization
        .layer_mutation_rates
        .insert("b".into(), 0.1);
    let mut e = c.clone();
    e.specialization
        .layer_mutation_rates
        .insert("b".into(), 0.1);
    e.specialization
        .layer_mutation_rates
        .insert("a".into(), 0.1);
    assert_ne!(
        d.hash_hex(),
        e.hash_hex(),
        "map order matters (first match wins)"
    );
}
