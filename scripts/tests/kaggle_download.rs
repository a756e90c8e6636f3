//! kaggle_download against the fake Kaggle server: paging, unauthenticated signed URLs,
//! temp-file-then-rename, skipping complete files, refused names, truncated downloads, expired
//! links, the run log, checkpoint verification and the printed resume command.

mod common;
use common::*;
use serde_json::json;

fn remember(e: &Env, version: i64) {
    std::fs::write(
        e.proj().join("notebooks/.kaggle-run.json"),
        json!({"kernel": KERNEL, "version": version, "url": "u", "started_unix": 1}).to_string(),
    )
    .unwrap();
}

fn populated() -> Env {
    let e = Env::with_metadata();
    remember(&e, 7);
    e.fake.add_output(
        "checkpoints/step_100.safetensors",
        checkpoint_bytes(100, "periodic"),
    );
    e.fake.add_output(
        "checkpoints/latest.safetensors",
        checkpoint_bytes(200, "periodic"),
    );
    e.fake
        .add_output("metrics.csv", b"step,reward\n100,1.5\n200,2.5\n".to_vec());
    e.fake.set_log(
        &json!([
            {"stream_name": "stdout", "time": 1, "data": "progress step=100 total=200\n"},
            {"stream_name": "stderr", "time": 2, "data": "warning: slow\n"}
        ])
        .to_string(),
    );
    e
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut v = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let n = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_dir() {
            v.extend(leftovers(&entry.path()));
        } else if n.contains(".part-") {
            v.push(n);
        }
    }
    v
}

#[test]
fn downloads_all_pages_verifies_and_prints_resume_command() {
    let e = populated();
    let r = e.run("kaggle_download", &["--page-size", "2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lists = e.fake.rpcs("ListKernelSessionOutput");
    assert_eq!(lists.len(), 2);
    assert_eq!(
        lists[0].json(),
        json!({"userName": USER, "kernelSlug": "emergence-lab-training", "pageSize": 2, "pageToken": "", "versionLabel": "v7"})
    );
    assert_eq!(lists[1].json()["pageToken"], "2");
    assert_eq!(lists[0].auth(), Some(basic_header(USER, KEY).as_str()));
    let gets = e.fake.gets("/files/");
    assert_eq!(gets.len(), 3);
    for g in &gets {
        assert!(g.auth().is_none(), "signed URLs get no Kaggle credentials");
        assert!(g.path.contains("X-Goog-Signature=canned"));
    }
    let out = e.proj().join("kaggle_output");
    assert_eq!(
        std::fs::read(out.join("checkpoints/latest.safetensors")).unwrap(),
        checkpoint_bytes(200, "periodic")
    );
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).unwrap(),
        b"step,reward\n100,1.5\n200,2.5\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("emergence-lab-training.log")).unwrap(),
        "progress step=100 total=200\nwarning: slow\n"
    );
    assert!(
        std::fs::read_to_string(out.join("emergence-lab-training.log.json"))
            .unwrap()
            .contains("stream_name")
    );
    assert!(leftovers(&out).is_empty());
    assert!(
        r.stdout
            .contains("ok   kaggle_output/checkpoints/latest.safetensors  step=200"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("ok   kaggle_output/checkpoints/step_100.safetensors  step=100"));
    assert!(r.stdout.lines().any(|l| l.trim() == "cargo run --release --bin train -- --train.resume-from=kaggle_output/checkpoints/latest.safetensors --log.checkpoint-dir=kaggle_output/local-resume/checkpoints --log.metrics-path=kaggle_output/local-resume/metrics.jsonl --log.tensorboard-dir=kaggle_output/local-resume/tensorboard"), "{}", r.stdout);
    assert!(r
        .stdout
        .contains("Downloaded 3, skipped 0, refused 0, failed 0"));
}

#[test]
fn second_run_skips_complete_files() {
    let e = populated();
    assert_eq!(e.run("kaggle_download", &[]).code, 0);
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.gets("/files/").len(),
        3,
        "no file fetched again for the same version"
    );
    assert!(r.stdout.contains("Downloaded 0, skipped 3"), "{}", r.stdout);
    // A damaged local copy is fetched again.
    std::fs::write(e.proj().join("kaggle_output/metrics.csv"), b"x").unwrap();
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0);
    assert_eq!(e.fake.gets("/files/").len(), 4);
    assert_eq!(
        std::fs::read(e.proj().join("kaggle_output/metrics.csv"))
            .unwrap()
            .len(),
        28
    );
}

#[test]
fn without_a_remembered_run_unchanged_files_are_skipped_by_etag() {
    let e = populated();
    std::fs::remove_file(e.proj().join("notebooks/.kaggle-run.json")).unwrap();
    assert_eq!(e.run("kaggle_download", &["--output-dir", "out"]).code, 0);
    assert!(e.fake.rpcs("ListKernelSessionOutput")[0]
        .json()
        .get("versionLabel")
        .is_none());
    let r = e.run("kaggle_download", &["--output-dir", "out"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("skipped metrics.csv (unchanged)"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("resume-from=out/checkpoints/latest.safetensors"));
}

#[test]
fn names_escaping_the_folder_are_refused() {
    let e = Env::with_metadata();
    e.fake.add_output("../evil.txt", b"evil".to_vec());
    e.fake.add_output("/abs.txt", b"evil".to_vec());
    e.fake.add_output("sub/../../evil2.txt", b"evil".to_vec());
    e.fake.add_output("good.txt", b"good".to_vec());
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!e.proj().join("evil.txt").exists() && !e.proj().join("evil2.txt").exists());
    assert!(!std::path::Path::new("/abs.txt").exists());
    assert_eq!(
        std::fs::read(e.proj().join("kaggle_output/good.txt")).unwrap(),
        b"good"
    );
    assert!(
        r.stderr
            .contains("refused 3 file name(s) that would land outside kaggle_output"),
        "{}",
        r.stderr
    );
    assert_eq!(
        e.fake.gets("/files/").len(),
        1,
        "refused files are never fetched"
    );
}

#[test]
fn truncated_download_is_retried_and_never_kept() {
    let e = populated();
    let partial = b"step,reward\n10".to_vec();
    e.fake.script(
        "GET /files/metrics.csv",
        vec![Reply::Truncated(28, partial.clone())],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "one cut is retried: {}", r.all());
    assert_eq!(
        std::fs::read(e.proj().join("kaggle_output/metrics.csv"))
            .unwrap()
            .len(),
        28
    );

    let e = populated();
    e.fake.script(
        "GET /files/metrics.csv",
        vec![Reply::Truncated(28, partial); 4],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("download of metrics.csv was cut short"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("failed: metrics.csv"));
    let out = e.proj().join("kaggle_output");
    assert!(
        !out.join("metrics.csv").exists(),
        "a partial file must not look complete"
    );
    assert!(leftovers(&out).is_empty());
    assert!(
        out.join("checkpoints/latest.safetensors").exists(),
        "other files still arrive"
    );
}

#[test]
fn expired_links_are_refreshed_once() {
    let e = populated();
    e.fake.script(
        "GET /files/metrics.csv",
        vec![Reply::Raw(
            403,
            vec![],
            b"<Error><Code>ExpiredToken</Code></Error>".to_vec(),
        )],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.rpcs("ListKernelSessionOutput").len(), 2);
    assert!(r.stderr.contains("expired; fetching fresh links"));

    let e = populated();
    e.fake.script(
        "GET /files/metrics.csv",
        vec![Reply::Raw(403, vec![], vec![]); 2],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("download link for metrics.csv was refused (HTTP 403)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: download links expire"));
    assert!(!e.proj().join("kaggle_output/metrics.csv").exists());
}

#[test]
fn storage_server_errors_are_retried() {
    let e = populated();
    e.fake.script(
        "GET /files/metrics.csv",
        vec![
            Reply::Raw(503, vec![], vec![]),
            Reply::Raw(500, vec![], vec![]),
        ],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.gets("/files/metrics.csv").len(), 3);
}

#[test]
fn damaged_checkpoint_is_reported() {
    let e = Env::with_metadata();
    remember(&e, 7);
    let mut bad = checkpoint_bytes(300, "periodic");
    *bad.last_mut().unwrap() ^= 0xff;
    e.fake.add_output("checkpoints/step_300.safetensors", bad);
    e.fake.add_output(
        "checkpoints/step_200.safetensors",
        checkpoint_bytes(200, "emergency"),
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout
            .contains("BAD  checkpoint kaggle_output/checkpoints/step_300.safetensors: data checksum mismatch"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("--train.resume-from=kaggle_output/checkpoints/step_200.safetensors"));
    assert!(r.stderr.contains("failed verification"));
}

#[test]
fn listing_failures() {
    let e = populated();
    e.fake.script(
        "ListKernelSessionOutput",
        vec![Reply::Json(500, json!({"code": 500, "message": "Internal error"})); 4],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("server error on ListKernelSessionOutput"),
        "{}",
        r.stderr
    );
    let looping = json!({"files": [], "nextPageToken": "same"});
    e.fake.script(
        "ListKernelSessionOutput",
        vec![Reply::Json(200, looping.clone()), Reply::Json(200, looping)],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("repeated"), "{}", r.stderr);
    e.fake.script(
        "ListKernelSessionOutput",
        vec![Reply::Raw(200, vec![], b"not json".to_vec())],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("unexpected answer from ListKernelSessionOutput"),
        "{}",
        r.stderr
    );
}

#[test]
fn non_loopback_http_file_urls_are_refused() {
    let e = Env::with_metadata();
    e.fake.script(
        "ListKernelSessionOutput",
        vec![Reply::Json(
            200,
            json!({"files": [{"fileName": "a.txt", "url": "http://example.com/a.txt"}]}),
        )],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("plain http is only allowed"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_new_version_refetches_headers_but_skips_unchanged_files() {
    let e = populated();
    assert_eq!(e.run("kaggle_download", &[]).code, 0);
    let r = e.run("kaggle_download", &["--version", "8"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.fake.gets("/files/").len(),
        6,
        "new version: links are asked again"
    );
    assert!(r.stdout.contains("skipped 3"), "{}", r.stdout);
    assert_eq!(
        e.fake.rpcs("ListKernelSessionOutput")[1].json()["versionLabel"],
        "v8"
    );
    let r = e.run("kaggle_download", &["--version", "8"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        e.fake.gets("/files/").len(),
        6,
        "recorded as complete for version 8"
    );
}
