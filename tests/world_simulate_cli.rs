//! End-to-end checks of the `simulate` binary: table, JSON output, config flags, errors.

use std::process::Command;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(args)
        .output()
        .expect("running simulate")
}

#[test]
fn prints_a_table_and_writes_json_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let toml = dir.path().join("run.toml");
    std::fs::write(
        &toml,
        "[env]\ngrid_size = 12\n[evolution]\nmin_agents = 3\n",
    )
    .unwrap();
    let out = simulate(&[
        "--ticks",
        "200",
        "--envs",
        "3",
        "--seed",
        "4",
        "--preset",
        "kaggle",
        "--json",
        json.to_str().unwrap(),
        "--env.num-food",
        "7",
        "--field.decay_rate=0.2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert_eq!(rows.len(), 10, "one row per 10% of the run:\n{stdout}");
    assert!(
        rows[0].trim_start().starts_with("1-20 ") && rows[9].trim_start().starts_with("181-200 ")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let params = &doc["report"]["params"];
    assert_eq!(params["num_envs"], 3);
    assert_eq!(params["num_food"], 7);
    assert_eq!(params["food_energy"], 100.0, "kaggle preset");
    assert!((params["decay_rate"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(doc["report"]["per_tick"].as_array().unwrap().len(), 200);
    assert_eq!(doc["report"]["seed"], 4);
    assert_eq!(doc["summary"].as_array().unwrap().len(), 10);

    // A TOML file, same seed twice: identical JSON.
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    for p in [&a, &b] {
        let cfg = toml.to_str().unwrap();
        let out = simulate(&[
            "--ticks",
            "50",
            "--envs",
            "2",
            "--config",
            cfg,
            "--json",
            p.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ta, tb) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
    );
    assert_eq!(ta, tb);
    let doc: serde_json::Value = serde_json::from_str(&ta).unwrap();
    assert_eq!(doc["report"]["params"]["grid_size"], 12);
    assert_eq!(doc["report"]["params"]["min_agents"], 3);
}

#[test]
fn bad_input_fails_with_a_message_naming_the_problem() {
    for (args, needle) in [
        (vec!["--ticks", "5", "--env.nope", "3"], "env.nope"),
        (
            vec!["--ticks", "5", "--env.food-respawn-prob", "2"],
            "env.food_respawn_prob",
        ),
        (vec!["--ticks", "5", "--preset", "huge"], "preset"),
        (
            vec!["--ticks", "5", "--config", "/nonexistent/run.toml"],
            "/nonexistent/run.toml",
        ),
    ] {
        let out = simulate(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
