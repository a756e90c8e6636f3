//! kaggle_setup, kaggle_push and kaggle_run against the fake Kaggle server: request bodies and
//! auth headers field by field, and every failure case with its exit code and hint.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn setup_with_kaggle_json_verifies_and_writes_metadata() {
    let e = Env::new();
    let r = e.run("kaggle_setup", &["--self-source"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let calls = e.fake.requests();
    assert_eq!(calls.len(), 1, "exactly one cheap verification call");
    assert_eq!(calls[0].rpc(), Some("ListKernels"));
    assert_eq!(calls[0].path, "/v1/kernels.KernelsApiService/ListKernels");
    assert_eq!(calls[0].auth(), Some(basic_header(USER, KEY).as_str()));
    assert_eq!(
        calls[0].json(),
        json!({"group": "PROFILE", "page": 1, "pageSize": 1})
    );
    assert!(calls[0].headers["user-agent"].starts_with("emergence-lab-kaggle-helpers/"));
    let m = e.metadata();
    assert_eq!(m["id"], "fake-user/emergence-lab-training");
    assert_eq!(m["title"], "Emergence Lab Training");
    assert_eq!(m["code_file"], "kaggle_training.ipynb");
    assert_eq!(m["language"], "python");
    assert_eq!(m["kernel_type"], "notebook");
    assert_eq!(m["is_private"], true);
    assert_eq!(m["enable_gpu"], true);
    assert_eq!(m["enable_internet"], true);
    assert_eq!(m["machine_shape"], "NvidiaTeslaT4");
    assert_eq!(
        m["dataset_sources"],
        json!([
            "fake-user/emergence-lab-src",
            "fake-user/emergence-lab-checkpoints"
        ])
    );
    assert_eq!(
        m["kernel_sources"],
        json!(["fake-user/emergence-lab-training"])
    );
    assert!(m["keywords"].as_array().unwrap().contains(&json!("gpu")));
    assert!(r.stdout.contains("Next steps"), "{}", r.stdout);
    assert!(r.stdout.contains("kaggle_run -- --push-first"));
    assert!(r
        .stdout
        .contains(&e.home().join(".kaggle/kaggle.json").display().to_string()));
}

#[test]
fn setup_with_token_introspects_and_takes_username_from_it() {
    let mut e = Env::new();
    e.extra_env.push(("KAGGLE_API_TOKEN".into(), TOKEN.into()));
    let r = e.run("kaggle_setup", &["--no-dataset-source"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let calls = e.fake.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].rpc(), Some("IntrospectToken"));
    assert_eq!(calls[0].auth(), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(calls[0].json(), json!({"token": TOKEN}));
    let m = e.metadata();
    assert_eq!(m["id"], "fake-token-user/emergence-lab-training");
    assert_eq!(m["kernel_sources"], json!([]), "own output is opt-in");
    assert_eq!(
        m["dataset_sources"],
        json!(["fake-token-user/emergence-lab-src"]),
        "the source dataset is always listed"
    );
    assert!(r.stdout.contains("KAGGLE_API_TOKEN"));
}

#[test]
fn setup_token_file_beats_kaggle_json_and_username_flag_wins() {
    let mut e = Env::new();
    let tf = e.tmp.path().join("tok.txt");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    set_mode(&tf, 0o600);
    e.extra_env
        .push(("KAGGLE_API_TOKEN".into(), tf.display().to_string()));
    let r = e.run("kaggle_setup", &["--username", "other-user"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.requests()[0].auth(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(e.metadata()["id"], "other-user/emergence-lab-training");
    assert!(
        r.stderr.contains("warning"),
        "mismatch between token owner and --username is reported"
    );
}

#[test]
fn env_key_beats_kaggle_json_and_access_token_beats_both() {
    let mut e = Env::new();
    e.extra_env
        .push(("KAGGLE_USERNAME".into(), "env-user".into()));
    e.extra_env.push(("KAGGLE_KEY".into(), KEY.into()));
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.requests()[0].auth(),
        Some(basic_header("env-user", KEY).as_str())
    );
    assert_eq!(e.metadata()["id"], "env-user/emergence-lab-training");
    let at = e.home().join(".kaggle/access_token");
    std::fs::write(&at, TOKEN).unwrap();
    set_mode(&at, 0o640);
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.requests()[1].auth(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(mode(&at), 0o600, "token files are tightened too");
    assert!(
        r.stderr.contains("access_token was readable"),
        "{}",
        r.stderr
    );
}

#[test]
fn setup_fixes_readable_kaggle_json() {
    let e = Env::new();
    let kj = e.home().join(".kaggle/kaggle.json");
    set_mode(&kj, 0o644);
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(mode(&kj), 0o600);
    assert!(r.stderr.contains("changed it to 600"), "{}", r.stderr);
}

#[test]
fn setup_without_credentials_fails_before_any_request() {
    let e = Env::new();
    std::fs::remove_file(e.home().join(".kaggle/kaggle.json")).unwrap();
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("error: no Kaggle credentials found"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"));
    assert!(e.fake.requests().is_empty());
}

#[test]
fn setup_rejected_credentials_give_hint_and_never_echo_secrets() {
    let e = Env::new();
    // The fake echoes the Authorization header back in its error body.
    e.fake.script("ListKernels", vec![Reply::Json(401, json!({"code": 401, "message": format!("bad auth {} key {KEY}", basic_header(USER, KEY))}))]);
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("HTTP 401"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the credentials were not accepted"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1
    );
    assert!(r.stderr.contains("<redacted>"));
}

#[test]
fn inactive_token_is_refused() {
    let mut e = Env::new();
    e.extra_env.push(("KAGGLE_API_TOKEN".into(), TOKEN.into()));
    e.fake.script(
        "IntrospectToken",
        vec![Reply::Json(200, json!({"active": false}))],
    );
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not active"), "{}", r.stderr);
}

#[test]
fn push_sends_quick_save_with_every_field() {
    let e = Env::with_metadata();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let calls = e.fake.requests();
    // The source dataset goes first (tested in kaggle_source.rs); the save is the last call.
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 1);
    let c = calls.last().unwrap();
    assert_eq!(c.path, "/v1/kernels.KernelsApiService/SaveKernel");
    assert_eq!(c.method, "POST");
    assert_eq!(c.auth(), Some(basic_header(USER, KEY).as_str()));
    assert_eq!(c.headers["content-type"], "application/json");
    let b = c.json();
    assert_eq!(b["slug"], KERNEL);
    assert_eq!(b["newTitle"], "Emergence Lab Training");
    assert_eq!(b["language"], "python");
    assert_eq!(b["kernelType"], "notebook");
    assert_eq!(
        b["datasetDataSources"],
        json!([
            "fake-user/emergence-lab-src",
            "fake-user/emergence-lab-checkpoints"
        ])
    );
    assert_eq!(b["kernelDataSources"], json!([KERNEL]));
    assert_eq!(b["categoryIds"], json!(["gpu", "reinforcement learning"]));
    assert_eq!(b["isPrivate"], true);
    assert_eq!(b["enableGpu"], true);
    assert_eq!(b["enableInternet"], true);
    assert_eq!(b["enableTpu"], false);
    assert_eq!(b["machineShape"], "NvidiaTeslaT4");
    assert_eq!(b["kernelExecutionType"], "QUICK_SAVE");
    assert!(
        b.get("id").is_none()
            && b.get("competitionDataSources").is_none()
            && b.get("sessionTimeoutSeconds").is_none()
    );
    let nb: serde_json::Value = serde_json::from_str(b["text"].as_str().unwrap()).unwrap();
    // The Rust notebook was converted: python3 kernelspec, setup cell first, then the
    // markdown kept and the Rust cell run through `%%rust`, outputs cleared.
    assert_eq!(nb["metadata"]["kernelspec"]["name"], "python3");
    let cells = nb["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{cells:?}");
    assert_eq!(cells[0]["cell_type"], "code");
    assert_eq!(cells[1]["source"], "# Emergence Lab\ntraining");
    assert_eq!(cells[2]["source"], "%%rust\nprintln!(\"hi\");\n1 + 1");
    assert_eq!(cells[2]["outputs"], json!([]));
    assert!(r.stdout.contains("version 7"), "{}", r.stdout);
    assert!(r
        .stdout
        .contains("https://www.kaggle.com/code/fake-user/emergence-lab-training"));
    assert!(
        !e.proj().join("notebooks/.kaggle-run.json").exists(),
        "a quick save is not a run"
    );
}

#[test]
fn push_with_id_no_sends_id_unless_new() {
    let e = Env::with_metadata();
    let mut m = e.metadata();
    m["id_no"] = json!(12345);
    e.write_metadata(&m);
    assert_eq!(e.run("kaggle_push", &[]).code, 0);
    assert_eq!(e.run("kaggle_push", &["--new"]).code, 0);
    let saves = e.fake.rpcs("SaveKernel");
    assert_eq!(saves[0].json()["id"], 12345);
    assert!(saves[1].json().get("id").is_none());
}

#[test]
fn push_invalid_notebook_sends_nothing() {
    let e = Env::with_metadata();
    std::fs::write(
        e.proj().join("notebooks/kaggle_training.ipynb"),
        "{\"cells\": [",
    )
    .unwrap();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid notebook") && r.stderr.contains("not valid JSON"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"));
    assert!(e.fake.requests().is_empty());
}

#[test]
fn push_invalid_metadata_sends_nothing() {
    let e = Env::with_metadata();
    let mut m = e.metadata();
    m["title"] = json!("Another Title");
    e.write_metadata(&m);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid kernel metadata") && r.stderr.contains("slugifies"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("hint: fix the file or recreate it with kaggle_setup"));
    std::fs::write(e.proj().join("notebooks/kernel-metadata.json"), "{oops").unwrap();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not valid JSON"));
    std::fs::remove_file(e.proj().join("notebooks/kernel-metadata.json")).unwrap();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kaggle_setup"));
    assert!(e.fake.requests().is_empty());
}

#[test]
fn push_rejected_inside_200_is_a_failure() {
    let e = Env::with_metadata();
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            200,
            json!({"error": "Maximum weekly GPU quota of 30.00 hours reached."}),
        )],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Kaggle rejected SaveKernel: Maximum weekly GPU quota"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: the weekly GPU quota"));
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(200, json!({"ref": "", "url": ""}))],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no versionNumber"), "{}", r.stderr);
}

#[test]
fn push_conflict_409() {
    let e = Env::with_metadata();
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            409,
            json!({"code": 409, "message": "Title conflicts"}),
        )],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("conflict") && r.stderr.contains("Title conflicts"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: the title must slugify"));
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 1, "409 is not retried");
}

#[test]
fn push_reports_sources_kaggle_dropped() {
    let e = Env::with_metadata();
    e.fake.script("SaveKernel", vec![Reply::Json(200, json!({"versionNumber": "3", "invalidDatasetSources": ["fake-user/emergence-lab-checkpoints"]}))]);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr
            .contains("ignored these dataset sources: fake-user/emergence-lab-checkpoints"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("version 3"));
}

#[test]
fn run_push_first_saves_and_runs_and_remembers_version() {
    let e = Env::with_metadata();
    let r = e.run("kaggle_run", &["--push-first"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let saves = e.fake.rpcs("SaveKernel");
    assert_eq!(saves.len(), 1);
    let b = saves[0].json();
    assert!(
        b.get("kernelExecutionType").is_none(),
        "save and run omits the execution type"
    );
    assert_eq!(b["machineShape"], "NvidiaTeslaT4");
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(e.proj().join("notebooks/.kaggle-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["version"], 7);
    assert_eq!(st["kernel"], KERNEL);
    assert!(r.stdout.contains("version 7"));
}

#[test]
fn run_without_push_first_reruns_the_saved_notebook() {
    let e = Env::with_metadata();
    assert_eq!(e.run("kaggle_push", &[]).code, 0);
    std::fs::write(
        e.proj().join("notebooks/kaggle_training.ipynb"),
        "local edits not pushed",
    )
    .unwrap();
    let r = e.run("kaggle_run", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let gets = e.fake.rpcs("GetKernel");
    assert_eq!(
        gets[0].json(),
        json!({"userName": USER, "kernelSlug": "emergence-lab-training"})
    );
    let saves = e.fake.rpcs("SaveKernel");
    assert_eq!(saves.len(), 2);
    assert_eq!(saves[1].json()["text"], saves[0].json()["text"]);
    assert!(saves[1].json().get("kernelExecutionType").is_none());
    assert!(r.stdout.contains("version 8"));
}

#[test]
fn run_of_unknown_kernel_is_404_with_hint() {
    let e = Env::with_metadata();
    let r = e.run("kaggle_run", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("not found on Kaggle: kernel fake-user/emergence-lab-training"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("kaggle_push --new"));
}

#[test]
fn rate_limit_waits_retry_after_then_succeeds() {
    let e = Env::with_metadata();
    e.fake.script(
        "SaveKernel",
        vec![Reply::JsonHeaders(
            429,
            json!({"code": 429, "message": "slow down"}),
            vec![("Retry-After", "1".into())],
        )],
    );
    let t = Instant::now();
    let r = e.run("kaggle_run", &["--push-first"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 2);
}

#[test]
fn rate_limit_gives_up_after_bounded_retries() {
    let e = Env::with_metadata();
    e.fake
        .script("SaveKernel", vec![Reply::Json(429, json!({})); 10]);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("rate limit") && r.stderr.contains("4 attempts"),
        "{}",
        r.stderr
    );
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 4);
}

#[test]
fn server_error_on_run_is_not_repeated_but_on_push_it_is() {
    let e = Env::with_metadata();
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            500,
            json!({"code": 500, "message": "Internal error"}),
        )],
    );
    let r = e.run("kaggle_run", &["--push-first"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("server error") && r.stderr.contains("Internal error"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("hint: this is a problem on Kaggle's side"));
    assert_eq!(
        e.fake.rpcs("SaveKernel").len(),
        1,
        "a run must never be started twice"
    );
    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(502, json!({})), Reply::Json(500, json!({}))],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 4);
}

#[test]
fn network_error_and_timeout() {
    let mut e = Env::with_metadata();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    e.extra_env
        .push(("KAGGLE_HELPERS_ENDPOINT".into(), format!("http://{closed}")));
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("network error") && r.stderr.contains("4 attempts"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: check the internet connection"));
    e.extra_env.clear();
    e.extra_env
        .push(("KAGGLE_HELPERS_TIMEOUT_S".into(), "1".into()));
    e.extra_env
        .push(("KAGGLE_HELPERS_RETRIES".into(), "2".into()));
    e.fake.script(
        "SaveKernel",
        vec![
            Reply::Slow(
                Duration::from_secs(3),
                Box::new(Reply::Json(200, json!({"versionNumber": 1})))
            );
            2
        ],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("network error"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the request timed out"),
        "{}",
        r.stderr
    );
}

#[test]
fn endpoint_must_be_https_unless_loopback() {
    let e = Env::with_metadata();
    let r = e.run("kaggle_push", &["--endpoint", "http://api.kaggle.com"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("invalid endpoint") && r.stderr.contains("loopback"),
        "{}",
        r.stderr
    );
    assert!(e.fake.requests().is_empty());
    // The flag also works (and wins over the environment variable) for a loopback host.
    let r = e.run(
        "kaggle_push",
        &["--endpoint", &format!("{}/api", e.fake.url())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.requests().last().unwrap().path,
        "/api/v1/kernels.KernelsApiService/SaveKernel"
    );
}

#[test]
fn help_explains_options_and_prerequisites() {
    let e = Env::new();
    for (bin, needles) in [
        (
            "kaggle_setup",
            vec!["--username", "phone verification", "KAGGLE_API_TOKEN"],
        ),
        ("kaggle_push", vec!["--new", "QUICK_SAVE", "kaggle_setup"]),
        ("kaggle_run", vec!["--push-first", "remember"]),
        (
            "kaggle_status",
            vec!["--watch", "--interval", "--version", "Ctrl-C", "Exit codes"],
        ),
        ("kaggle_download", vec!["--output-dir", "outside", "resume"]),
        (
            "kaggle_publish",
            vec!["--dir", "--dataset", "READY", "dataset_sources"],
        ),
    ] {
        let r = e.run(bin, &["--help"]);
        assert_eq!(r.code, 0, "{bin}");
        assert!(
            r.stdout.contains("--endpoint") && r.stdout.contains("KAGGLE_HELPERS_ENDPOINT"),
            "{bin}"
        );
        for n in needles {
            assert!(
                r.stdout.contains(n),
                "{bin} --help lacks {n}:\n{}",
                r.stdout
            );
        }
    }
}
