//! kaggle_publish against the fake Kaggle server: blob uploads, dataset creation on first use,
//! new versions afterwards, waiting for READY, metadata update, and failure cases.

mod common;
use common::*;
use serde_json::json;

fn with_checkpoints() -> Env {
    let e = Env::with_metadata();
    let mut m = e.metadata();
    m["dataset_sources"] = json!([]);
    e.write_metadata(&m);
    let d = e.proj().join("kaggle_output/checkpoints");
    std::fs::create_dir_all(d.join("extra")).unwrap();
    std::fs::write(
        d.join("step_100.safetensors"),
        checkpoint_bytes(100, "periodic"),
    )
    .unwrap();
    std::fs::write(
        d.join("latest.safetensors"),
        checkpoint_bytes(200, "periodic"),
    )
    .unwrap();
    std::fs::write(d.join("extra/notes.txt"), b"hello").unwrap();
    std::fs::write(d.join(".kaggle-download.json"), b"{}").unwrap();
    e
}

#[test]
fn first_publish_creates_private_dataset_and_waits_until_ready() {
    let e = with_checkpoints();
    let r = e.run("kaggle_publish", &["--interval", "0.05"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let reqs = e.fake.requests();
    let names: Vec<String> = reqs
        .iter()
        .map(|r| {
            r.rpc()
                .map(str::to_string)
                .unwrap_or(format!("{} {}", r.method, r.path))
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "GetDatasetStatus",
            "StartBlobUpload",
            "PUT /upload/blob-1",
            "StartBlobUpload",
            "PUT /upload/blob-2",
            "StartBlobUpload",
            "PUT /upload/blob-3",
            "CreateDataset",
            "GetDatasetStatus",
            "GetDatasetStatus"
        ]
    );
    assert_eq!(
        reqs[0].json(),
        json!({"ownerSlug": USER, "datasetSlug": "emergence-lab-checkpoints"})
    );
    assert_eq!(
        reqs[0].path,
        "/v1/datasets.DatasetApiService/GetDatasetStatus"
    );
    let b = reqs[1].json();
    assert_eq!(b["type"], "DATASET");
    assert_eq!(b["name"], "extra.zip");
    assert!(b["lastModifiedEpochSeconds"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(reqs[1].path, "/v1/blobs.BlobApiService/StartBlobUpload");
    assert_eq!(reqs[3].json()["name"], "latest.safetensors");
    assert_eq!(
        reqs[3].json()["contentLength"],
        checkpoint_bytes(200, "periodic").len()
    );
    assert_eq!(reqs[5].json()["name"], "step_100.safetensors");
    for put in [&reqs[2], &reqs[4], &reqs[6]] {
        assert!(put.auth().is_none(), "uploads carry no Kaggle credentials");
        assert!(!put.headers.contains_key("content-type"));
    }
    for r in reqs.iter().filter(|r| r.rpc().is_some()) {
        assert_eq!(r.auth(), Some(basic_header(USER, KEY).as_str()));
    }
    let uploads = e.fake.state.lock().unwrap().uploads.clone();
    assert_eq!(uploads["blob-2"], checkpoint_bytes(200, "periodic"));
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(uploads["blob-1"].clone())).unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut z.by_name("notes.txt").unwrap(), &mut s).unwrap();
    assert_eq!(s, "hello");
    assert_eq!(
        reqs[7].json(),
        json!({"ownerSlug": USER, "slug": "emergence-lab-checkpoints", "title": "Emergence Lab Checkpoints",
               "licenseName": "CC0-1.0", "isPrivate": true,
               "files": [{"token": "blob-1"}, {"token": "blob-2"}, {"token": "blob-3"}]})
    );
    assert!(
        r.stdout.contains("dataset status: BLOBS_RECEIVED")
            && r.stdout.contains("dataset status: READY"),
        "{}",
        r.stdout
    );
    assert_eq!(
        e.metadata()["dataset_sources"],
        json!(["fake-user/emergence-lab-checkpoints"])
    );
    assert!(r
        .stdout
        .contains("Added fake-user/emergence-lab-checkpoints to dataset_sources"));
    assert!(r.stdout.contains("resumes from step 200"));
}

#[test]
fn later_publish_adds_a_version() {
    let e = with_checkpoints();
    assert_eq!(e.run("kaggle_publish", &["--interval", "0.05"]).code, 0);
    let r = e.run(
        "kaggle_publish",
        &[
            "--interval",
            "0.05",
            "--latest-only",
            "-m",
            "session 2",
            "--delete-old-versions",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let v = e.fake.rpcs("CreateDatasetVersion");
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].json(),
        json!({"ownerSlug": USER, "datasetSlug": "emergence-lab-checkpoints",
               "body": {"versionNotes": "session 2", "deleteOldVersions": true, "files": [{"token": "blob-4"}]}})
    );
    assert_eq!(e.fake.rpcs("CreateDataset").len(), 1);
    assert!(r.stdout.contains("already lists"));
    let r = e.run(
        "kaggle_publish",
        &[
            "--no-wait",
            "--dataset",
            "fake-user/emergence-lab-checkpoints",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let v = e.fake.rpcs("CreateDatasetVersion");
    assert!(v[1].json()["body"].get("deleteOldVersions").is_none());
    assert!(v[1].json()["body"]["versionNotes"]
        .as_str()
        .unwrap()
        .contains("step 200"));
}

#[test]
fn damaged_checkpoint_is_never_published() {
    let e = with_checkpoints();
    let p = e
        .proj()
        .join("kaggle_output/checkpoints/step_100.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 3);
    std::fs::write(&p, b).unwrap();
    let r = e.run("kaggle_publish", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("refusing to publish a damaged checkpoint")
            && r.stderr.contains("step_100"),
        "{}",
        r.stderr
    );
    assert!(e.fake.requests().is_empty());
    let r = e.run("kaggle_publish", &["--dir", "nowhere"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kaggle_download"));
}

#[test]
fn rejected_or_failed_dataset() {
    let e = with_checkpoints();
    e.fake.script(
        "CreateDataset",
        vec![Reply::Json(
            200,
            json!({"status": "Error", "error": "The title is already in use"}),
        )],
    );
    let r = e.run("kaggle_publish", &["--latest-only"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Kaggle rejected CreateDataset: The title is already in use"),
        "{}",
        r.stderr
    );
    e.fake.state.lock().unwrap().dataset_sequence = vec![json!({"status": "FAILED"})];
    let r = e.run("kaggle_publish", &["--latest-only", "--interval", "0.05"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("status FAILED"), "{}", r.stderr);
    e.fake.state.lock().unwrap().dataset_sequence = vec![json!({})];
    let r = e.run(
        "kaggle_publish",
        &["--latest-only", "--interval", "0.05", "--timeout", "0.2"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("still NOT_YET_PERSISTED"),
        "proto3 default status: {}",
        r.stderr
    );
}

#[test]
fn transient_upload_and_rate_limit_errors_are_retried() {
    let e = with_checkpoints();
    e.fake
        .script("PUT /upload", vec![Reply::Raw(503, vec![], vec![])]);
    e.fake.script(
        "CreateDataset",
        vec![Reply::Json(429, json!({})), Reply::Json(429, json!({}))],
    );
    let r = e.run("kaggle_publish", &["--latest-only", "--interval", "0.05"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.rpcs("CreateDataset").len(), 3);
    let puts: Vec<_> = e
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[1].body, checkpoint_bytes(200, "periodic"));
}

#[test]
fn forbidden_dataset_status() {
    let e = with_checkpoints();
    e.fake.script(
        "GetDatasetStatus",
        vec![Reply::Json(403, json!({"code": 403, "message": "denied"}))],
    );
    let r = e.run("kaggle_publish", &["--dataset", "someone-else/their-data"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("HTTP 403") && r.stderr.contains("hint: access denied"),
        "{}",
        r.stderr
    );
    assert_eq!(
        e.fake.rpcs("GetDatasetStatus")[0].json()["ownerSlug"],
        "someone-else"
    );
}
