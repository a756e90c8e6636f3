//! `kaggle_run --toolchain` against the fake server: the toolchain kernel is pushed CPU-only with
//! internet on and the source attached, followed, its output checked for the cache's manifest,
//! and only then listed in the training metadata's kernel_sources.

mod common;

use common::*;
use serde_json::{json, Value};

const FAST: &[&str] = &["--toolchain", "--toolchain-interval", "0.05"];

/// The test project with a training notebook tagged like the real one (committed: the source
/// must be clean).
fn env() -> Env {
    let e = Env::with_metadata();
    let cell = |tag: &str, src: &str| {
        json!({"cell_type": "code", "metadata": {"tags": [tag]}, "execution_count": null,
               "outputs": [], "source": src})
    };
    let nb = json!({
        "cells": [cell("gpu", "let gpus = 0;"), cell("source", "// source"),
                  cell("build", ":dep emergence_lab = { path = \"emergence-lab-src\" }"),
                  cell("train", "emergence_lab::checkpoint::train_with_checkpoints(config)")],
        "metadata": {"kernelspec": {"name": "rust", "display_name": "Rust", "language": "rust"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(
        e.proj().join("notebooks/kaggle_training.ipynb"),
        serde_json::to_string_pretty(&nb).unwrap(),
    )
    .unwrap();
    git(&e.proj(), &["commit", "-q", "-am", "tagged notebook"]);
    e
}

fn kernel_sources(e: &Env) -> Value {
    e.metadata()["kernel_sources"].clone()
}

#[test]
fn toolchain_kernel_is_pushed_cpu_only_online_and_registered_when_its_cache_is_there() {
    let e = env();
    let before = kernel_sources(&e);
    assert_eq!(
        before,
        json!([KERNEL]),
        "kaggle_setup's metadata (with its own output)"
    );
    e.fake.set_statuses(vec![
        json!({"status": "RUNNING"}),
        json!({"status": "COMPLETE"}),
    ]);
    e.fake
        .add_output("emergence-lab-toolchain.json", b"{\"format\": 1}".to_vec());
    e.fake.add_output("evcxr-build.tar", b"tar".to_vec());
    let r = e.run("kaggle_run", FAST);
    assert_eq!(r.code, 0, "{}", r.all());
    let saves = e.fake.rpcs("SaveKernel");
    assert_eq!(saves.len(), 1);
    let b = saves[0].json();
    assert_eq!(b["slug"], "fake-user/emergence-lab-toolchain");
    assert_eq!(b["newTitle"], "Emergence Lab Toolchain");
    assert_eq!(b["enableGpu"], false);
    assert_eq!(b["enableInternet"], true);
    assert!(b.get("kernelExecutionType").is_none(), "saved and run");
    assert_eq!(
        b["datasetDataSources"],
        json!(["fake-user/emergence-lab-src"])
    );
    assert!(
        b.get("kernelDataSources").is_none(),
        "no kernel sources: {b}"
    );
    assert!(
        b.get("id").is_none(),
        "a kernel of its own, not the training kernel's id_no"
    );
    // The source went up first, and the notebook builds without training.
    let order: Vec<String> = e
        .fake
        .requests()
        .iter()
        .filter_map(|r| r.rpc().map(str::to_string))
        .collect();
    assert!(
        order.iter().position(|n| n == "CreateDataset")
            < order.iter().position(|n| n == "SaveKernel"),
        "{order:?}"
    );
    let nb: Value = serde_json::from_str(b["text"].as_str().unwrap()).unwrap();
    let text = nb["cells"].to_string();
    assert!(text.contains("EMERGENCE_LAB_TOOLCHAIN_BUILD") && text.contains("cu126"));
    assert!(text.contains("_emergence_lab_pack_toolchain("));
    assert!(
        !text.contains("train_with_checkpoints"),
        "no training in the toolchain kernel"
    );
    // Registered for the training sessions.
    assert_eq!(
        kernel_sources(&e),
        json!([KERNEL, "fake-user/emergence-lab-toolchain"])
    );
    assert!(r.stdout.contains("Toolchain cache ready"), "{}", r.stdout);
    // Running it again (e.g. after a Rust update) keeps one entry.
    e.fake.set_statuses(vec![json!({"status": "COMPLETE"})]);
    let r = e.run("kaggle_run", &[FAST, &["--torch", "cu128"]].concat());
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        kernel_sources(&e),
        json!([KERNEL, "fake-user/emergence-lab-toolchain"])
    );
    let last = e.fake.rpcs("SaveKernel").pop().unwrap().json();
    assert!(last["text"].as_str().unwrap().contains("cu128"));
}

#[test]
fn failed_or_empty_toolchain_kernel_leaves_the_metadata_alone() {
    let e = env();
    e.fake.set_statuses(vec![
        json!({"status": "ERROR", "failureMessage": "cargo install failed"}),
    ]);
    e.fake.set_log(
        &json!([{"stream_name": "stderr", "time": 1.0, "data": "error: linker `cc` not found\n"}])
            .to_string(),
    );
    let r = e.run("kaggle_run", FAST);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("cargo install failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("linker `cc` not found"),
        "the log's tail: {}",
        r.stderr
    );
    assert_eq!(kernel_sources(&e), json!([KERNEL]), "unchanged");

    // Completed without the manifest: not registered either.
    let e = env();
    e.fake.set_statuses(vec![json!({"status": "COMPLETE"})]);
    e.fake.add_output("something-else.txt", b"x".to_vec());
    let r = e.run("kaggle_run", FAST);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("emergence-lab-toolchain.json"),
        "{}",
        r.stderr
    );
    assert_eq!(kernel_sources(&e), json!([KERNEL]), "unchanged");
}

#[test]
fn toolchain_refusals_are_errors_before_or_at_the_push() {
    let e = env();
    let r = e.run("kaggle_run", &[FAST, &["--torch", "cu999"]].concat());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("unknown torch build"), "{}", r.stderr);
    assert!(e.fake.requests().is_empty(), "nothing sent");

    let r = e.run("kaggle_run", &["--toolchain", "--smoke"]);
    assert_ne!(r.code, 0, "{}", r.all());

    e.fake.script(
        "SaveKernel",
        vec![Reply::Json(
            200,
            json!({"code": 403, "message": "phone verification required"}),
        )],
    );
    let r = e.run("kaggle_run", FAST);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("phone verification required"),
        "{}",
        r.stderr
    );
    assert_eq!(kernel_sources(&e), json!([KERNEL]), "unchanged");
}
