//! The source travels with a push: the tracked files as the private dataset
//! USER/emergence-lab-src, uploaded only when their content changed, listed in the kernel's
//! dataset sources; dirty trees are refused unless --allow-dirty; failures are errors.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut data = vec![];
        f.read_to_end(&mut data).unwrap();
        out.insert(f.name().to_string(), data);
    }
    out
}

/// The uploaded (name, bytes) pairs in upload order.
fn uploaded(e: &Env) -> Vec<(String, Vec<u8>)> {
    let uploads = e.fake.state.lock().unwrap().uploads.clone();
    e.fake
        .rpcs("StartBlobUpload")
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.json()["name"].as_str().unwrap().to_string(),
                uploads[&format!("blob-{}", i + 1)].clone(),
            )
        })
        .collect()
}

#[test]
fn push_uploads_the_tracked_source_then_saves_with_it_as_a_source() {
    let e = Env::with_metadata();
    std::fs::write(e.proj().join("untracked.txt"), "not sent").unwrap();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let names: Vec<String> = e
        .fake
        .requests()
        .iter()
        .map(|r| r.rpc().unwrap_or(&r.method).to_string())
        .collect();
    let first_save = names.iter().position(|n| n == "SaveKernel").unwrap();
    let created = names.iter().position(|n| n == "CreateDataset").unwrap();
    assert!(created < first_save, "{names:?}");
    assert_eq!(names.last().unwrap(), "SaveKernel");
    let create = &e.fake.rpcs("CreateDataset")[0];
    let b = create.json();
    assert_eq!(b["slug"], "emergence-lab-src");
    assert_eq!(b["ownerSlug"], USER);
    assert_eq!(b["isPrivate"], true);
    assert_eq!(b["title"], "Emergence Lab Src");
    let files = uploaded(&e);
    assert_eq!(
        files.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["emergence-lab-source.json", "emergence-lab-src.zip"]
    );
    let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
    let head = git(&e.proj(), &["rev-parse", "HEAD"]);
    assert_eq!(manifest["commit"], head.trim());
    assert_eq!(manifest["dirty"], false);
    assert_eq!(manifest["project"], "emergence-lab");
    assert_eq!(manifest["content_sha256"].as_str().unwrap().len(), 64);
    let zip = unzip(&files[1].1);
    assert_eq!(
        zip.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "Cargo.toml",
            "emergence-lab-source.json",
            "notebooks/kaggle_training.ipynb",
            "src/lib.rs"
        ],
        "tracked files only: no kernel metadata, no untracked file"
    );
    assert_eq!(zip["src/lib.rs"], b"pub fn answer() -> u32 { 42 }\n");
    let save = e.fake.rpcs("SaveKernel")[0].json();
    assert_eq!(save["datasetDataSources"][0], "fake-user/emergence-lab-src");
    assert!(r.stdout.contains("dataset status: READY"), "{}", r.stdout);
    assert!(r.stdout.contains(&head.trim()[..12]), "{}", r.stdout);
}

#[test]
fn unchanged_source_is_not_uploaded_again_and_a_new_commit_is_a_new_version() {
    let e = Env::with_metadata();
    assert_eq!(e.run("kaggle_push", &[]).code, 0);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("Source unchanged"), "{}", r.stdout);
    assert_eq!(e.fake.rpcs("StartBlobUpload").len(), 2, "no new upload");
    assert_eq!(e.fake.rpcs("SaveKernel").len(), 2);
    std::fs::write(
        e.proj().join("src/lib.rs"),
        "pub fn answer() -> u32 { 43 }\n",
    )
    .unwrap();
    git(&e.proj(), &["commit", "-qam", "change"]);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v = e.fake.rpcs("CreateDatasetVersion");
    assert_eq!(v.len(), 1, "{}", r.all());
    assert_eq!(v[0].json()["datasetSlug"], "emergence-lab-src");
    let files = uploaded(&e);
    assert_eq!(
        unzip(&files[3].1)["src/lib.rs"],
        b"pub fn answer() -> u32 { 43 }\n"
    );
}

#[test]
fn dirty_tree_is_refused_with_the_changed_files_unless_allowed() {
    let e = Env::with_metadata();
    std::fs::write(
        e.proj().join("src/lib.rs"),
        "pub fn answer() -> u32 { 0 }\n",
    )
    .unwrap();
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("src/lib.rs") && r.stderr.contains("--allow-dirty"),
        "{}",
        r.stderr
    );
    assert!(e.fake.requests().is_empty(), "nothing sent");
    let r = e.run("kaggle_run", &["--push-first", "--allow-dirty"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let files = uploaded(&e);
    let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(manifest["dirty"], true);
    assert_eq!(manifest["changed_files"], json!(["src/lib.rs"]));
    assert_eq!(
        unzip(&files[1].1)["src/lib.rs"],
        b"pub fn answer() -> u32 { 0 }\n"
    );
    let save = e.fake.rpcs("SaveKernel")[0].json();
    assert!(
        save.get("kernelExecutionType").is_none(),
        "run saves and runs"
    );
}

#[test]
fn metadata_without_the_source_gets_it_and_no_source_skips_it() {
    let e = Env::with_metadata();
    let mut m = e.metadata();
    m["dataset_sources"] = json!([]);
    e.write_metadata(&m);
    let r = e.run("kaggle_push", &["--no-source"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(e.fake.rpcs("StartBlobUpload").is_empty());
    assert!(e.fake.rpcs("SaveKernel")[0]
        .json()
        .get("datasetDataSources")
        .is_none());
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        e.metadata()["dataset_sources"],
        json!(["fake-user/emergence-lab-src"])
    );
    assert_eq!(
        e.fake.rpcs("SaveKernel")[1].json()["datasetDataSources"],
        json!(["fake-user/emergence-lab-src"])
    );
}

#[test]
fn failed_source_upload_is_an_error_and_nothing_is_saved() {
    let e = Env::with_metadata();
    e.fake.script(
        "CreateDataset",
        vec![Reply::Json(
            200,
            json!({"status": "Error", "error": "Dataset quota exceeded"}),
        )],
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("Dataset quota exceeded"), "{}", r.stderr);
    assert!(e.fake.rpcs("SaveKernel").is_empty());

    let e = Env::with_metadata();
    e.fake.script(
        "StartBlobUpload",
        vec![Reply::Json(
            403,
            json!({"code": 403, "message": "Permission denied"}),
        )],
    );
    let r = e.run("kaggle_run", &["--push-first"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(e.fake.rpcs("SaveKernel").is_empty());
}

#[test]
fn waiting_for_the_source_is_bounded_and_reported() {
    let e = Env::with_metadata();
    e.fake.state.lock().unwrap().dataset_sequence = vec![json!({"status": "BLOBS_RECEIVED"})];
    let r = e.run("kaggle_push", &["--source-timeout", "0.3"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("still BLOBS_RECEIVED"), "{}", r.stderr);
    assert!(e.fake.rpcs("SaveKernel").is_empty());
    // The upload is remembered: the next push waits again instead of uploading again.
    e.fake.state.lock().unwrap().datasets.insert(
        "fake-user/emergence-lab-src".into(),
        vec![json!({"status": "READY"})].into(),
    );
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(e.fake.rpcs("StartBlobUpload").len(), 2);
}

#[test]
fn a_repository_that_is_not_emergence_lab_is_refused() {
    let e = Env::with_metadata();
    std::fs::write(e.proj().join("Cargo.toml"), "[package]\nname = \"other\"\n").unwrap();
    git(&e.proj(), &["commit", "-qam", "other"]);
    let r = e.run("kaggle_push", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("not emergence-lab"), "{}", r.stderr);
    assert!(e.fake.requests().is_empty());
}

#[test]
fn write_source_only_writes_the_dataset_files() {
    let e = Env::new();
    let out = e.tmp.path().join("staged");
    let r = e.run("kaggle_push", &["--write-source", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(e.fake.requests().is_empty(), "nothing sent");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("emergence-lab-source.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["files"], 3);
    let zip = unzip(&std::fs::read(out.join("emergence-lab-src.zip")).unwrap());
    assert!(zip.contains_key("Cargo.toml") && zip.contains_key("emergence-lab-source.json"));
}

#[test]
fn setup_then_the_first_run_works_without_edits() {
    let e = Env::new();
    let r = e.run("kaggle_setup", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = e.run("kaggle_run", &["--push-first"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let save = e.fake.rpcs("SaveKernel")[0].json();
    assert_eq!(save["slug"], KERNEL);
    assert_eq!(save["datasetDataSources"][0], "fake-user/emergence-lab-src");
    assert_eq!(
        e.fake.rpcs("CreateDataset")[0].json()["slug"],
        "emergence-lab-src"
    );
    assert!(e.proj().join("notebooks/.kaggle-run.json").is_file());
}
