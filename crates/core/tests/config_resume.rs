//! Resume rules: the checkpoint's config is the run's config; only run-control fields may be
//! overridden, and every other differing setting is reported with both values.

use std::path::PathBuf;

use emergence_lab_core::config::Config;
use emergence_lab_core::config::{ConfigError, ConfigOverrides, RUN_CONTROL_FIELDS};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// A run started with `--config run.toml --train.num-envs 6`, as its checkpoint stores it.
fn started_run(dir: &tempfile::TempDir) -> (PathBuf, Config) {
    let path = dir.path().join("run.toml");
    std::fs::write(
        &path,
        "[env]\ngrid_size = 12\n[train]\ntotal_steps = 100000\ngamma = 0.9\n",
    )
    .unwrap();
    let cli = format!("--config {} --train.num-envs 6", path.display());
    let ov = ConfigOverrides::from_cli_with_env(&args(&cli), None).unwrap();
    let cfg = ov.apply_to(Config::default()).unwrap();
    // What a checkpoint stores and gives back.
    let cfg = Config::from_json(&cfg.to_json()).unwrap();
    (path, cfg)
}

fn resume(cli: &str, env: Option<&str>, checkpoint: &Config) -> Result<Config, ConfigError> {
    ConfigOverrides::from_cli_with_env(&args(cli), env)?.apply_for_resume(checkpoint)
}

#[test]
fn resume_without_other_flags_keeps_the_checkpoint_config() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ckpt) = started_run(&dir);
    let c = resume("--train.resume-from latest", None, &ckpt).unwrap();
    assert_eq!(c.train.resume_from, "latest");
    assert_eq!(
        (c.env.grid_size, c.train.num_envs, c.train.gamma),
        (12, 6, 0.9)
    );
    let diff = ckpt.diff(&c);
    assert_eq!(
        diff,
        [(
            "train.resume_from".to_string(),
            "\"\"".to_string(),
            "\"latest\"".to_string()
        )]
    );
}

#[test]
fn resume_with_the_same_file_and_run_control_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ckpt) = started_run(&dir);
    let cli = format!(
        "--config {} --train.resume-from auto --train.total-steps 500000 --train.max-wall-time 11h \
         --train.device cpu --log.save-interval 1000 --log.keep-checkpoints 2 \
         --train.resume-search /kaggle/input/a --train.num-threads 1",
        path.display()
    );
    let c = resume(
        &cli,
        Some("log.metrics_path=m.jsonl log.checkpoint_dir=/tmp/ck"),
        &ckpt,
    )
    .unwrap();
    assert_eq!(c.train.total_steps, 500_000);
    assert_eq!(c.train.max_wall_time, "11h");
    assert_eq!(c.train.device, "cpu");
    assert_eq!(c.log.save_interval, 1000);
    assert_eq!(c.log.keep_checkpoints, 2);
    assert_eq!(c.log.metrics_path, "m.jsonl");
    assert_eq!(c.log.checkpoint_dir, "/tmp/ck");
    assert_eq!(c.train.resume_search, ["/kaggle/input/a"]);
    // num_envs came from the original CLI, not the file: still the checkpoint's.
    assert_eq!(c.train.num_envs, 6);
    assert!(ckpt
        .diff(&c)
        .iter()
        .all(|(k, _, _)| RUN_CONTROL_FIELDS.contains(&k.as_str())));
    // Setting a non-run-control field to the checkpoint's own value is fine.
    resume("--env.grid-size 12 --train.num-envs 6", None, &ckpt).unwrap();
}

#[test]
fn resume_rejects_other_changes_listing_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ckpt) = started_run(&dir);
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[field]\nnum_channels = 8\n").unwrap();
    let cli = format!(
        "--config {} --env.grid-size 10 --train.total-steps 5000000 --specialization.layer-mutation-rates actor=0.1",
        other.display()
    );
    let e = resume(&cli, Some("train.gamma=0.99"), &ckpt).unwrap_err();
    let ConfigError::ResumeConflict { conflicts } = &e else {
        panic!("unexpected {e:?}")
    };
    let keys: Vec<&str> = conflicts.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "env.grid_size",
            "field.num_channels",
            "train.gamma",
            "specialization.layer_mutation_rates"
        ]
    );
    let msg = e.to_string();
    for part in [
        "env.grid_size: checkpoint has 12, requested 10",
        "field.num_channels: checkpoint has 4, requested 8",
        "train.gamma: checkpoint has 0.9, requested 0.99",
        "specialization.layer_mutation_rates: checkpoint has {}, requested { actor = 0.1 }",
        "only run-control fields",
    ] {
        assert!(msg.contains(part), "{msg:?} should contain {part:?}");
    }
    assert!(!msg.contains("train.total_steps"), "{msg}");
}

#[test]
fn resume_still_validates_and_reports_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ckpt) = started_run(&dir);
    let e = resume("--train.total-steps 0", None, &ckpt).unwrap_err();
    assert!(
        e.to_string()
            .contains("train.total_steps: must be at least 1"),
        "{e}"
    );
    let e = resume("--train.total-stepz 9", None, &ckpt).unwrap_err();
    assert!(
        e.to_string().contains("did you mean `train.total_steps`"),
        "{e}"
    );
}

#[test]
fn merge_run_control_is_strict_outside_run_control() {
    let ckpt = Config::kaggle_notebook();
    let mut requested = ckpt.clone();
    requested.train.total_steps = 42_000_000;
    requested.train.device = "cuda:1".into();
    requested.log.tensorboard_dir = String::new();
    let merged = Config::merge_run_control(&ckpt, &requested).unwrap();
    assert_eq!(merged, requested);

    requested.env.num_food = 3;
    requested.evolution.enabled = false;
    let e = Config::merge_run_control(&ckpt, &requested)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("env.num_food: checkpoint has 20, requested 3"),
        "{e}"
    );
    assert!(
        e.contains("evolution.enabled: checkpoint has true, requested false"),
        "{e}"
    );
    assert!(!e.contains("train.device"), "{e}");
}

#[test]
fn run_control_fields_are_real_fields() {
    let mut c = Config::default();
    for key in RUN_CONTROL_FIELDS {
        c.get(key).unwrap();
    }
    // diff covers every leaf.
    let mut d = c.clone();
    d.agent.hidden_dims = vec![8];
    d.train.lr_schedule = emergence_lab_core::config::LrSchedule::Constant;
    c.train.seed = 1;
    let keys: Vec<String> = c.diff(&d).into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(
        keys,
        ["agent.hidden_dims", "train.seed", "train.lr_schedule"]
    );
}
