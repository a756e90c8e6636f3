//! The `ablation` binary on a tiny checkpoint from a short training run: table on stdout,
//! JSON and CSV files, and clear errors (exit code 1) for bad input.

mod ablation_support;

use std::process::{Command, Output};

use ablation_support::{tiny, trained_checkpoint};

fn ablation(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ablation"))
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run the ablation binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn prints_the_table_and_writes_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let ck = trained_checkpoint(tiny(), 2, dir.path(), "run.safetensors");
    let out_json = dir.path().join("res/ablation.json");
    let o = ablation(&[
        "--checkpoint",
        ck.to_str().unwrap(),
        "--episodes",
        "3",
        "--seed",
        "7",
        "--conditions",
        "zeroed,no-field,frozen",
        "--output",
        out_json.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for want in [
        "normal",
        "zeroed",
        "no_field",
        "frozen",
        "reward gap",
        "seed 7",
    ] {
        assert!(stdout.contains(want), "stdout lacks {want}:\n{stdout}");
    }
    assert!(stderr.contains("ablation.csv"), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    assert_eq!(v["episodes"], 3);
    assert_eq!(v["seed"], 7);
    assert_eq!(v["conditions"].as_array().unwrap().len(), 4);
    assert_eq!(v["conditions"][2]["condition"], "no_field");
    let csv = std::fs::read_to_string(dir.path().join("res/ablation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 3);
}

#[test]
fn works_on_the_checkpoint_folder_of_a_train_run() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let t = Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "--env.grid_size=6",
            "--env.num_agents=3",
            "--env.num_food=3",
            "--env.max_steps=25",
            "--env.observation_radius=1",
            "--field.num_channels=2",
            "--agent.hidden_dims=[8, 8]",
            "--train.num_envs=2",
            "--train.num_steps=8",
            "--train.minibatch_size=16",
            "--train.num_epochs=1",
            "--evolution.max_agents=4",
            "--train.total_steps=64",
            "--train.device=cpu",
            "--train.num_threads=1",
        ])
        .arg(format!("--log.checkpoint_dir={}", ck.display()))
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(t.status.success(), "train: {}", text(&t.stderr));
    let out = dir.path().join("a.json");
    let o = ablation(&[
        "--checkpoint",
        ck.to_str().unwrap(),
        "--episodes",
        "2",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["step"], 64);
    assert_eq!(v["ticks"], 25);
    assert!(v["checkpoint"]
        .as_str()
        .unwrap()
        .contains("latest.safetensors"));
    assert!(text(&o.stdout).contains("checkpoint step 64"));
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, [7u8; 100]).unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--checkpoint", missing.to_str().unwrap()],
            "missing.safetensors does not exist",
        ),
        (
            vec!["--checkpoint", corrupt.to_str().unwrap()],
            "corrupt.safetensors",
        ),
        (
            vec!["--checkpoint", "x", "--conditions", "normal,blur"],
            "unknown ablation condition \"blur\"; valid conditions: normal, zeroed, random, frozen, no_field",
        ),
        (
            vec!["--checkpoint", missing.to_str().unwrap(), "--episodes", "0"],
            "at least 1",
        ),
    ];
    for (args, want) in cases {
        let o = ablation(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want),
            "{args:?}: stderr lacks {want:?}:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
