//! kaggle_status against the fake Kaggle server: remembered version, proto3 defaults, exit
//! codes per state, "not yet" 404s after a run, --watch with live log progress, and Ctrl-C.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn remember(e: &Env, version: i64, started_unix: u64) {
    std::fs::write(
        e.proj().join("notebooks/.kaggle-run.json"),
        json!({"kernel": KERNEL, "version": version, "url": "u", "started_unix": started_unix})
            .to_string(),
    )
    .unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sse(data: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"stream_name": "stdout", "time": 1.5, "data": data})
    )
}

#[test]
fn missing_status_means_queued_and_uses_remembered_version() {
    let e = Env::with_metadata();
    remember(&e, 7, 1);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("fake-user/emergence-lab-training version 7: QUEUED"),
        "{}",
        r.stdout
    );
    let calls = e.fake.rpcs("GetKernelSessionStatus");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].json(),
        json!({"userName": USER, "kernelSlug": "emergence-lab-training", "versionLabel": "v7"})
    );
    assert_eq!(calls[0].auth(), Some(basic_header(USER, KEY).as_str()));
}

#[test]
fn explicit_version_and_latest_session() {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("RUNNING"));
    assert!(e.fake.rpcs("GetKernelSessionStatus")[0]
        .json()
        .get("versionLabel")
        .is_none());
    let r = e.run("kaggle_status", &["--version", "3"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        e.fake.rpcs("GetKernelSessionStatus")[1].json()["versionLabel"],
        "v3"
    );
}

#[test]
fn exit_codes_follow_the_final_state() {
    let e = Env::with_metadata();
    remember(&e, 7, 1);
    e.fake.set_statuses(vec![json!({"status": "COMPLETE"})]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("COMPLETE") && r.stdout.contains("kaggle_download"));
    e.fake.set_statuses(vec![
        json!({"status": "ERROR", "failureMessage": "CUDA out of memory"}),
    ]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 3);
    assert!(
        r.stdout.contains("Failure message: CUDA out of memory"),
        "{}",
        r.stdout
    );
    e.fake
        .set_statuses(vec![json!({"status": "cancelAcknowledged"})]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 4);
    assert!(r.stdout.contains("CANCEL_ACKNOWLEDGED"));
}

#[test]
fn not_found_right_after_a_run_means_not_yet() {
    let e = Env::with_metadata();
    remember(&e, 7, now());
    let nf = Reply::Json(404, json!({"code": 404, "message": "Not found"}));
    e.fake
        .script("GetKernelSessionStatus", vec![nf.clone(), nf.clone()]);
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("RUNNING"));
    assert_eq!(e.fake.rpcs("GetKernelSessionStatus").len(), 3);
    // Still invisible after the retries: a gentle note, not a failure.
    e.fake.script("GetKernelSessionStatus", vec![nf.clone(); 4]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("not visible on Kaggle yet"));
}

#[test]
fn not_found_long_after_is_an_unknown_kernel() {
    let e = Env::with_metadata();
    remember(&e, 7, 1000);
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(
            404,
            json!({"code": 404, "message": "Not found"}),
        )],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("not found on Kaggle: kernel fake-user/emergence-lab-training version 7"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: check `id`"));
}

#[test]
fn forbidden_and_server_errors() {
    let e = Env::with_metadata();
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(
            403,
            json!({"code": 403, "message": "Permission 'kernels.get' was denied"}),
        )],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("HTTP 403") && r.stderr.contains("hint: access denied"),
        "{}",
        r.stderr
    );
    e.fake.script(
        "GetKernelSessionStatus",
        vec![
            Reply::Json(500, json!({})),
            Reply::Raw(503, vec![], b"<html>busy</html>".to_vec()),
        ],
    );
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "5xx are retried: {}", r.all());
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(500, json!({"code": 500, "message": "Internal error"})); 4],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("HTTP 500, gave up after 4 attempts): Internal error"),
        "{}",
        r.stderr
    );
}

#[test]
fn watch_shows_live_progress_then_final_state() {
    let e = Env::with_metadata();
    remember(&e, 7, now());
    e.fake.set_statuses(vec![
        json!({}),
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "COMPLETE"}),
    ]);
    e.fake.script(
        "LOGSTREAM",
        vec![Reply::Stream(
            vec![
                sse("building...\nprogress step=250 total=1000 iter=1 reward=0.5 pop=12 sps=900 eta_s=90\n"),
                sse("progress step=500 tot"),
                sse("al=1000 iter=2 reward=1.25 pop=7.5 sps=1234 eta_s=42 extra=1\n"),
                "data: END_OF_LOG\n\n".to_string(),
            ],
            Duration::from_millis(60),
        )],
    );
    e.fake.set_log(&json!([
        {"stream_name": "stdout", "time": 1, "data": "progress step=500 total=1000 reward=1.25\n"},
        {"stream_name": "stdout", "time": 2, "data": "progress step=1000 total=1000 iter=4 reward=2.5 pop=9 sps=1300 eta_s=0\ndone\n"}
    ]).to_string());
    let r = e.run("kaggle_status", &["--watch", "--interval", "0.3"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("QUEUED"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("RUNNING step 250/1000 (25.0%) reward=0.500 pop=12.0 sps=900 eta=1m30s"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("RUNNING step 500/1000 (50.0%) reward=1.250 pop=7.5 sps=1234 eta=42s"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("COMPLETE step 1000/1000 (100.0%) reward=2.500"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("version 7: COMPLETE"));
    assert!(
        !r.stdout.contains("COMPLETE step 500"),
        "final state shown with the stored log's progress only"
    );
    let stream = e.fake.gets("/v1/kernels/logs/stream/");
    assert!(!stream.is_empty());
    assert_eq!(
        stream[0].path,
        "/v1/kernels/logs/stream/fake-user/emergence-lab-training?versionLabel=v7"
    );
    assert_eq!(stream[0].auth(), Some(basic_header(USER, KEY).as_str()));
    assert!(stream[0].headers["accept"].contains("text/event-stream"));
    let outs = e.fake.rpcs("ListKernelSessionOutput");
    assert_eq!(
        outs.last().unwrap().json()["versionLabel"],
        "v7",
        "stored log read after the end"
    );
}

#[test]
fn watch_ends_with_error_exit_code() {
    let e = Env::with_metadata();
    remember(&e, 7, now());
    e.fake.set_statuses(vec![
        json!({"status": "RUNNING"}),
        json!({"status": "ERROR", "failureMessage": "Killed"}),
    ]);
    let r = e.run("kaggle_status", &["--watch", "--interval", "0.1"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stdout.contains("Failure message: Killed"));
}

#[test]
fn watch_gives_up_on_persistent_errors() {
    let e = Env::with_metadata();
    e.fake
        .script("GetKernelSessionStatus", vec![Reply::Json(401, json!({}))]);
    let r = e.run("kaggle_status", &["--watch", "--interval", "0.1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("HTTP 401"));
    let r = e.run("kaggle_status", &["--watch", "--interval", "0"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--interval"));
}

#[test]
fn ctrl_c_stops_watching_cleanly() {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![json!({"status": "RUNNING"})]);
    let mut child = e
        .command("kaggle_status", &["--watch", "--interval", "0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the "Watching" line is printed: wait for that line
    // (and a few polls), then interrupt.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("Watching"), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    let ok = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("Stopped watching; the run goes on"), "{rest}");
    assert!(e.fake.rpcs("GetKernelSessionStatus").len() >= 2);
}

/// On a terminal the helpers draw indicatif bars; run under `script` (util-linux) for a pty.
#[test]
fn watch_and_download_draw_bars_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed, no pty available");
        return;
    }
    let e = Env::with_metadata();
    remember(&e, 7, now());
    e.fake.set_statuses(vec![
        json!({"status": "RUNNING"}),
        json!({"status": "RUNNING"}),
        json!({"status": "COMPLETE"}),
    ]);
    e.fake.set_log(&json!([{"stream_name": "stdout", "time": 1, "data": "progress step=1000 total=1000 reward=2.5 pop=9 eta_s=0\n"}]).to_string());
    e.fake.add_output(
        "checkpoints/latest.safetensors",
        checkpoint_bytes(1000, "final"),
    );
    let under_pty = |cmdline: String| {
        // Same environment as the helpers get in every other test.
        let c = e.command("kaggle_status", &[]);
        let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = c
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
            .collect();
        let mut s = std::process::Command::new("script");
        s.args(["-qec", &cmdline, "/dev/null"])
            .current_dir(e.proj())
            .env_clear()
            .envs(envs);
        let o = s.output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        assert_no_secrets(&text);
        (o.status.code(), text)
    };
    let status = env!("CARGO_BIN_EXE_kaggle_status");
    let (code, text) = under_pty(format!("{status} --watch --interval 0.2"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("1000/1000") && text.contains("COMPLETE reward=2.500"),
        "{text}"
    );
    let download = env!("CARGO_BIN_EXE_kaggle_download");
    let (code, text) = under_pty(download.to_string());
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("--train.resume-from=kaggle_output/checkpoints/latest.safetensors"),
        "{text}"
    );
}

/// Kaggle's error envelope inside an HTTP 200 is the error it says, for every call: status
/// (not QUEUED, and `--watch` does not poll forever), the output listing of a download, and a push.
#[test]
fn error_envelope_inside_200_is_an_error_for_every_call() {
    let e = Env::with_metadata();
    let envelope = |code: u16, msg: &str| Reply::Json(200, json!({"code": code, "message": msg}));
    e.fake.script(
        "GetKernelSessionStatus",
        vec![envelope(404, "Notebook not found")],
    );
    let r = e.run("kaggle_status", &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("QUEUED"), "{}", r.all());
    assert!(r.stderr.contains("Notebook not found"), "{}", r.stderr);

    e.fake.script(
        "GetKernelSessionStatus",
        vec![envelope(403, "Permission 'kernels.get' was denied")],
    );
    let r = e.run("kaggle_status", &["--watch"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("hint: access denied"), "{}", r.stderr);

    e.fake.set_statuses(vec![json!({"status": "COMPLETE"})]);
    e.fake.script(
        "ListKernelSessionOutput",
        vec![envelope(400, "Bad request: kernel version")],
    );
    let r = e.run("kaggle_download", &[]);
    assert_ne!(
        r.code,
        0,
        "listing 0 files and exiting 0 hides the error: {}",
        r.all()
    );
    assert!(r.stderr.contains("Bad request"), "{}", r.stderr);

    e.fake
        .script("SaveKernel", vec![envelope(409, "Title conflicts")]);
    let r = e.run("kaggle_push", &["--no-source"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Title conflicts"), "{}", r.stderr);
}

/// A key the server echoes back JSON-escaped is scrubbed after decoding, in error details and
/// in undecodable answers; an endpoint carrying credentials is refused without printing them.
/// (`Env::run` fails the test when a credential appears in clear in any output.)
#[test]
fn echoed_and_embedded_credentials_are_never_printed() {
    let e = Env::with_metadata();
    let escaped: String = KEY
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let body = format!(r#"{{"code": 403, "message": "key {escaped} is not allowed"}}"#);
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Raw(403, vec![], body.clone().into_bytes())],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("key <redacted> is not allowed"),
        "{}",
        r.stderr
    );
    assert!(
        !r.all().contains(&escaped),
        "escaped form printed: {}",
        r.all()
    );
    // The same envelope inside a 200.
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Raw(200, vec![], body.into_bytes())],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("<redacted>"), "{}", r.stderr);
    // Credentials inside the endpoint URL.
    let mut c = e.command("kaggle_status", &[]);
    c.env(
        "KAGGLE_HELPERS_ENDPOINT",
        format!("https://{USER}:{KEY}@kaggle.example/api"),
    );
    let out = c.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains(KEY), "endpoint credentials printed: {all}");
    assert!(all.contains("credentials inside the URL"), "{all}");
}

/// Server text reaches the terminal bounded and without control characters: a huge failure
/// message full of ANSI escapes, and a huge error body.
#[test]
fn server_text_is_bounded_and_stripped_of_escapes() {
    let e = Env::with_metadata();
    let huge = format!("\u{1b}[2J\u{1b}[31mboom{}", "x".repeat(5_000_000));
    e.fake
        .set_statuses(vec![json!({"status": "ERROR", "failureMessage": huge})]);
    let r = e.run("kaggle_status", &[]);
    assert!(
        r.stdout.contains("boom"),
        "{}",
        &r.stdout[..r.stdout.len().min(500)]
    );
    assert!(
        !r.all().contains('\u{1b}'),
        "escape sequences reached the terminal"
    );
    assert!(r.all().len() < 20_000, "{} bytes printed", r.all().len());
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Raw(
            403,
            vec![],
            "\u{1b}[31m".repeat(1_000_000).into_bytes(),
        )],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1);
    assert!(
        !r.all().contains('\u{1b}') && r.all().len() < 20_000,
        "{}",
        r.all().len()
    );
}
