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
    // Per-env series (one column per statistic, one entry per tick) and food/field totals.
    let per_env = doc["report"]["per_env"].as_array().unwrap();
    assert_eq!(per_env.len(), 3);
    for key in [
        "alive",
        "foods_eaten",
        "foods_respawned",
        "mean_energy",
        "field_mean",
        "field_max",
        "field_above",
        "reset",
    ] {
        assert_eq!(per_env[2][key].as_array().unwrap().len(), 200, "{key}");
    }
    assert_eq!(doc["report"]["field_threshold"], 0.5);
    let totals = &doc["totals"];
    assert!(totals["foods_respawned"].as_u64().unwrap() <= totals["foods_eaten"].as_u64().unwrap());
    assert!(totals["field_above"].as_f64().unwrap() >= 0.0);

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

#[test]
fn a_closed_stdout_ends_it_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(["--ticks", "3000", "--envs", "2", "--rows", "3000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe (like `simulate ... | head -1`).
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let _ = stdout.read(&mut first).unwrap();
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
