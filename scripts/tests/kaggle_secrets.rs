//! Planted-secret tests: every helper binary runs against the fake server under every failure
//! mode while the server echoes the credential back in clear, JSON-escaped (decoded by the
//! helper), double-escaped, URL-encoded and base64 forms, in every field of every answer.
//! `Env::run_for` asserts that none of these forms reaches stdout or stderr.

mod common;

use common::*;
use std::time::Duration;

/// Every form of `secret` a server could send back, as raw JSON string content (so
/// `\uXXXX` escapes decode to the secret in clear), plus ANSI escapes.
fn planted(secret: &str) -> String {
    format!(
        "clear {secret} escaped {} double {} pct {} b64 {} basic {} \u{1b}[31mred\u{1b}[0m",
        json_escaped(secret),
        json_escaped(secret).replace('\\', "\\\\"),
        pct_encoded(secret),
        b64(secret),
        b64(&format!("{USER}:{secret}")),
    )
    .replace('\u{1b}', "\\u001b")
}

/// The failure modes: (name, reply for every request, whether the helper must fail).
fn modes(fake: &Fake, secret: &str) -> Vec<(String, Reply, bool)> {
    let p = planted(secret);
    let json = |code: u16, body: String| {
        Reply::Raw(
            code,
            vec![("Content-Type", "application/json".into())],
            body.into_bytes(),
        )
    };
    let envelope = |code: u16| format!(r#"{{"code": {code}, "message": "denied: {p}"}}"#);
    let mut v = vec![];
    for code in [400, 401, 403, 404, 409, 418, 429, 500, 503] {
        v.push((format!("HTTP {code}"), json(code, envelope(code)), true));
    }
    for code in [400, 401, 404, 429, 500] {
        v.push((
            format!("HTTP 200 with envelope {code}"),
            json(200, envelope(code)),
            true,
        ));
    }
    let raw_text = format!(
        "oops {} {}",
        p.replace("\\u001b", "\u{1b}"),
        "x".repeat(100_000)
    );
    v.push((
        "HTTP 500 plain text".into(),
        Reply::Raw(500, vec![], raw_text.clone().into_bytes()),
        true,
    ));
    v.push((
        "HTTP 200 not JSON".into(),
        Reply::Raw(200, vec![], raw_text.into_bytes()),
        true,
    ));
    v.push((
        "HTTP 200 JSON array".into(),
        json(200, format!(r#"["{p}"]"#)),
        true,
    ));
    let big = format!(
        r#"{{"code": 500, "message": "{p} {} {p}"}}"#,
        "y".repeat(5_000_000)
    );
    v.push(("HTTP 500 huge body".into(), json(500, big), true));
    v.push(("connection closed".into(), Reply::Hangup, true));
    let addr = fake.addr;
    let url = format!("http://{USER}:{secret}@{addr}/files/x?sig={secret}");
    let echo = format!(
        r#"{{"error": "{p}", "message": "{p}", "failureMessage": "{p}", "status": "{p}",
            "url": "{url}", "ref": "{p}", "username": "{p}", "active": true,
            "token": "{p}", "createUrl": "{url}", "log": "{p}", "nextPageToken": "{p}",
            "files": [{{"fileName": "out/{p}", "url": "{url}"}}, {{"fileName": "x.txt", "url": "{url}"}}],
            "blob": {{"source": "{p}"}}, "metadata": {{}}}}"#
    );
    v.push((
        "HTTP 200 echoing in every field".into(),
        json(200, echo),
        false,
    ));
    v
}

/// Run `bin args` against every failure mode, in a fresh project each time.
fn all_modes(bin: &str, args: &[&str], token: bool) {
    all_modes_with(bin, args, token, &|_| {})
}

/// The training notebook's tagged cells (the toolchain kernel runs the setup, gpu, source and
/// build cells), committed so the source is clean.
fn tagged_notebook(e: &Env) {
    let cell = |tag: &str| {
        serde_json::json!({"cell_type": "code", "metadata": {"tags": [tag]},
               "execution_count": null, "outputs": [], "source": "let x = 1;"})
    };
    let nb = serde_json::json!({
        "cells": [cell("gpu"), cell("source"), cell("build")],
        "metadata": {"kernelspec": {"name": "rust", "display_name": "Rust", "language": "rust"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(
        e.proj().join("notebooks/kaggle_training.ipynb"),
        serde_json::to_string_pretty(&nb).unwrap(),
    )
    .unwrap();
    git(&e.proj(), &["commit", "-q", "-am", "tagged notebook"]);
}

/// [`all_modes`] with `prepare` run on each fresh project.
fn all_modes_with(bin: &str, args: &[&str], token: bool, prepare: &dyn Fn(&Env)) {
    let secret = if token { TOKEN } else { KEY };
    let probe = Env::with_metadata();
    let names: Vec<String> = modes(&probe.fake, secret)
        .into_iter()
        .map(|m| m.0)
        .collect();
    for (i, name) in names.iter().enumerate() {
        let mut e = Env::with_metadata();
        prepare(&e);
        if token {
            e.extra_env.push(("KAGGLE_API_TOKEN".into(), TOKEN.into()));
        }
        let ck = e.proj().join("kaggle_output/checkpoints");
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(
            ck.join("latest.safetensors"),
            checkpoint_bytes(100, "periodic"),
        )
        .unwrap();
        let (_, reply, must_fail) = modes(&e.fake, secret).swap_remove(i);
        e.fake.fail_all(reply);
        let r = e.run_for(bin, args, Duration::from_secs(5));
        assert_ne!(r.code, 101, "{bin} panicked under {name}:\n{}", r.all());
        if must_fail {
            assert_eq!(r.code, 1, "{bin} {args:?} under {name}:\n{}", r.all());
            assert!(
                r.stderr.contains("error: "),
                "{bin} under {name}:\n{}",
                r.all()
            );
        }
        for line in r.all().lines() {
            assert!(
                line.chars().count() <= 4003,
                "{bin} under {name}: unbounded line"
            );
            assert!(
                !line.contains('\u{1b}'),
                "{bin} under {name}: escape reached the terminal:\n{line}"
            );
        }
        // Written logs are scrubbed too.
        for f in [
            "emergence-lab-training.log",
            "emergence-lab-training.log.json",
        ] {
            if let Ok(t) = std::fs::read_to_string(e.proj().join("kaggle_output").join(f)) {
                assert_no_secrets(&t);
            }
        }
    }
}

#[test]
fn setup_never_prints_the_key() {
    all_modes("kaggle_setup", &[], false);
}

#[test]
fn setup_never_prints_the_token() {
    all_modes("kaggle_setup", &[], true);
}

#[test]
fn push_never_prints_the_key() {
    all_modes("kaggle_push", &[], false);
}

#[test]
fn run_never_prints_the_key() {
    all_modes("kaggle_run", &[], false);
    all_modes("kaggle_run", &["--push-first"], true);
}

#[test]
fn toolchain_never_prints_the_key() {
    all_modes_with(
        "kaggle_run",
        &["--toolchain", "--toolchain-interval", "0.05"],
        false,
        &tagged_notebook,
    );
}

#[test]
fn status_never_prints_the_key() {
    all_modes("kaggle_status", &[], false);
}

#[test]
fn status_watch_never_prints_the_key() {
    all_modes("kaggle_status", &["--watch", "--interval", "0.05"], false);
}

#[test]
fn download_never_prints_the_key() {
    all_modes("kaggle_download", &[], false);
}

#[test]
fn publish_never_prints_the_key() {
    all_modes(
        "kaggle_publish",
        &[
            "--dir",
            "kaggle_output/checkpoints",
            "--interval",
            "0.05",
            "--timeout",
            "1",
        ],
        false,
    );
}

#[test]
fn credentials_in_the_endpoint_are_never_printed() {
    let with_checkpoint = |e: &Env| {
        let ck = e.proj().join("kaggle_output/checkpoints");
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(
            ck.join("latest.safetensors"),
            checkpoint_bytes(100, "periodic"),
        )
        .unwrap();
    };
    let e = Env::with_metadata();
    with_checkpoint(&e);
    for bin in [
        "kaggle_setup",
        "kaggle_push",
        "kaggle_run",
        "kaggle_status",
        "kaggle_download",
        "kaggle_publish",
    ] {
        for endpoint in [
            format!("https://{USER}:{KEY}@127.0.0.1:1"),
            format!("http://{USER}:{KEY}@example.com"),
            format!("https://{USER}:{KEY}@bad host"),
            format!("https://example.com/?key={KEY}"),
        ] {
            let r = e.run_for(bin, &["--endpoint", &endpoint], Duration::from_secs(5));
            assert_eq!(r.code, 1, "{bin} {endpoint}:\n{}", r.all());
            assert!(r.stderr.contains("invalid endpoint"), "{bin}:\n{}", r.all());
        }
        // From the environment too, and --help must not show the variable's value.
        let mut e2 = Env::with_metadata();
        e2.extra_env.push((
            "KAGGLE_HELPERS_ENDPOINT".into(),
            format!("https://{USER}:{KEY}@127.0.0.1:1"),
        ));
        with_checkpoint(&e2);
        let r = e2.run_for(bin, &[], Duration::from_secs(5));
        assert_eq!(r.code, 1, "{bin}:\n{}", r.all());
        let r = e2.run_for(bin, &["--help"], Duration::from_secs(5));
        assert_eq!(r.code, 0, "{bin}:\n{}", r.all());
    }
}
