//! How the helpers read Kaggle's answers: an HTTP 200 carrying Kaggle's error envelope
//! (`{"code": >= 400, "message"}`) is an error for every call (retried like the same HTTP
//! status), an answer that is not a JSON object is an error, and server text reaching the
//! terminal is bounded and free of control characters and ANSI escapes.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn envelope(code: u16, message: &str) -> Reply {
    Reply::Json(200, json!({"code": code, "message": message}))
}

fn with_checkpoint(e: &Env) {
    let d = e.proj().join("kaggle_output/checkpoints");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("latest.safetensors"),
        checkpoint_bytes(100, "periodic"),
    )
    .unwrap();
}

#[test]
fn status_envelope_in_http_200_is_an_error_not_queued() {
    let e = Env::with_metadata();
    e.fake.script(
        "GetKernelSessionStatus",
        vec![envelope(400, "Bad kernel slug")],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.stdout.contains("QUEUED"), "{}", r.all());
    assert!(
        r.stderr.contains("Bad kernel slug") && r.stderr.contains("inside an HTTP 200 answer"),
        "{}",
        r.stderr
    );
    // --watch stops at once instead of polling a phantom QUEUED forever.
    e.fake.script(
        "GetKernelSessionStatus",
        vec![envelope(403, "Permission denied")],
    );
    let r = e.run_for(
        "kaggle_status",
        &["--watch", "--interval", "0.05"],
        Duration::from_secs(10),
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: access denied"), "{}", r.stderr);
}

#[test]
fn download_envelope_is_an_error_not_an_empty_listing() {
    let e = Env::with_metadata();
    e.fake.script(
        "ListKernelSessionOutput",
        vec![envelope(404, "Kernel not found")],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.stdout.contains("0 file(s) listed"), "{}", r.stdout);
    assert!(r.stderr.contains("not found on Kaggle"), "{}", r.stderr);
}

#[test]
fn envelope_errors_are_retried_like_http_errors() {
    let e = Env::with_metadata();
    e.fake.script(
        "GetKernelSessionStatus",
        vec![
            envelope(500, "Internal error"),
            Reply::Json(200, json!({"code": "429"})),
            Reply::Json(200, json!({"status": "COMPLETE"})),
        ],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("COMPLETE"), "{}", r.stdout);
    assert_eq!(e.fake.rpcs("GetKernelSessionStatus").len(), 3);
    // A code below 400 is not an error.
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(200, json!({"code": 200, "status": "RUNNING"}))],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("RUNNING"), "{}", r.stdout);
}

/// Every RPC any helper makes goes through the envelope check.
#[test]
fn every_call_treats_an_envelope_as_an_error() {
    let cases: Vec<(&str, Vec<&str>, &str, bool)> = vec![
        ("kaggle_setup", vec![], "ListKernels", false),
        ("kaggle_setup", vec![], "IntrospectToken", true),
        ("kaggle_push", vec![], "SaveKernel", false),
        ("kaggle_run", vec![], "GetKernel", false),
        ("kaggle_run", vec!["--push-first"], "SaveKernel", false),
        ("kaggle_status", vec![], "GetKernelSessionStatus", false),
        ("kaggle_download", vec![], "ListKernelSessionOutput", false),
        ("kaggle_publish", vec![], "GetDatasetStatus", false),
        ("kaggle_publish", vec![], "StartBlobUpload", false),
        ("kaggle_publish", vec![], "CreateDataset", false),
        // The source dataset sent by a push, before anything is saved.
        ("kaggle_push", vec![], "GetDatasetStatus", false),
        ("kaggle_push", vec![], "StartBlobUpload", false),
        ("kaggle_push", vec![], "CreateDataset", false),
        // A chained run: its status polls and the checkpoint publication.
        (
            "kaggle_run",
            vec!["--push-first", "--sessions", "1", "--interval", "0.05"],
            "GetKernelSessionStatus",
            false,
        ),
    ];
    for (bin, args, rpc, token) in cases {
        let mut e = Env::with_metadata();
        if token {
            e.extra_env.push(("KAGGLE_API_TOKEN".into(), TOKEN.into()));
        }
        with_checkpoint(&e);
        e.fake.script(
            rpc,
            vec![envelope(400, &format!("{rpc} refused by the server"))],
        );
        let r = e.run(bin, &args);
        assert_eq!(r.code, 1, "{bin} {rpc}:\n{}", r.all());
        assert!(
            r.stderr.contains(&format!("{rpc} refused by the server")),
            "{bin} {rpc}:\n{}",
            r.all()
        );
        assert_eq!(
            e.fake.rpcs(rpc).len(),
            1,
            "{bin} {rpc}: a 400 is not retried"
        );
    }
}

#[test]
fn answers_that_are_not_json_objects_are_errors() {
    let e = Env::with_metadata();
    for body in ["[]", "null", "\"COMPLETE\"", "42"] {
        e.fake.script(
            "GetKernelSessionStatus",
            vec![Reply::Raw(200, vec![], body.as_bytes().to_vec())],
        );
        let r = e.run("kaggle_status", &[]);
        assert_eq!(r.code, 1, "{body}: {}", r.all());
        assert!(r.stderr.contains("expected a JSON object"), "{}", r.stderr);
    }
    // An empty body is proto3's "all defaults" (QUEUED).
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Raw(200, vec![], vec![])],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("QUEUED"));
}

#[test]
fn server_text_is_bounded_and_stripped_of_escapes() {
    let e = Env::with_metadata();
    let hostile = format!(
        "\u{1b}[2J\u{1b}]0;owned\u{7}boom\r\n{}\u{1b}[31mend",
        "z".repeat(50_000_000)
    );
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(500, json!({"code": 500, "message": hostile})); 4],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1, "{}", &r.all()[..r.all().len().min(2000)]);
    assert!(r.all().len() < 5_000, "output is {} bytes", r.all().len());
    assert!(!r.all().contains('\u{1b}') && !r.all().contains('\u{7}'));
    assert!(r.stderr.contains("boom"), "{}", r.stderr);
    // A failure message inside a normal answer: shown, cleaned and bounded.
    let msg = format!(
        "\u{1b}[31mCUDA out of memory\u{1b}[0m\n{}",
        "w".repeat(1_000_000)
    );
    e.fake.script(
        "GetKernelSessionStatus",
        vec![Reply::Json(
            200,
            json!({"status": "ERROR", "failureMessage": msg}),
        )],
    );
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 3, "{}", &r.all()[..r.all().len().min(2000)]);
    assert!(r.stdout.contains("CUDA out of memory"));
    assert!(r.all().len() < 10_000, "output is {} bytes", r.all().len());
    assert!(!r.all().contains('\u{1b}'));
    // An answer larger than the cap is refused, not buffered.
    let huge = json!({"status": "RUNNING", "pad": "p".repeat(33 * 1024 * 1024)});
    e.fake
        .script("GetKernelSessionStatus", vec![Reply::Json(200, huge)]);
    let r = e.run("kaggle_status", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("larger than 32 MiB"), "{}", r.stderr);
}

/// A new version of an existing dataset (the source after a commit, the checkpoints after a
/// session) refused inside an HTTP 200 is an error, and nothing is saved after it.
#[test]
fn dataset_version_envelope_is_an_error() {
    // The source: pushed once, then a new commit is a new version.
    let e = Env::with_metadata();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    std::fs::write(
        e.proj().join("src/lib.rs"),
        "pub fn answer() -> u32 { 43 }\n",
    )
    .unwrap();
    git(&e.proj(), &["commit", "-q", "-am", "change"]);
    e.fake.script(
        "CreateDatasetVersion",
        vec![envelope(400, "CreateDatasetVersion refused by the server")],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("CreateDatasetVersion refused by the server"),
        "{}",
        r.all()
    );
    assert_eq!(
        e.fake.rpcs("SaveKernel").len(),
        1,
        "no save after the refusal"
    );

    // The checkpoints: a second kaggle_publish adds a version.
    let e = Env::with_metadata();
    with_checkpoint(&e);
    let r = e.run("kaggle_publish", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    e.fake.script(
        "CreateDatasetVersion",
        vec![envelope(403, "no permission on this dataset")],
    );
    let r = e.run("kaggle_publish", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("no permission on this dataset"),
        "{}",
        r.all()
    );
}

/// The quota endpoint answering with an envelope is not read as quota left: the chain says
/// it could not read the quota (Kaggle itself refuses a session over the quota at SaveKernel).
#[test]
fn quota_envelope_is_reported_not_read_as_quota() {
    let e = Env::with_metadata();
    e.fake.set_statuses(vec![json!({"status": "COMPLETE"})]);
    e.fake.add_output(
        "checkpoints/step_100.safetensors",
        checkpoint_bytes(100, "periodic"),
    );
    e.fake.script(
        "GetAcceleratorQuotaStatistics",
        vec![envelope(400, "quota service says no")],
    );
    let r = e.run(
        "kaggle_run",
        &["--push-first", "--sessions", "1", "--interval", "0.05"],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("cannot read the GPU quota")
            && r.stderr.contains("quota service says no"),
        "{}",
        r.all()
    );
    assert!(!r.stdout.contains("h left this week"), "{}", r.all());
}
