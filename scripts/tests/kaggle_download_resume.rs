//! kaggle_download and damaged checkpoints (recorded as complete only once they verify, so a
//! rerun fetches them again), and the printed local-resume command, parsed against the `train`
//! binary's CLI rules (`crates/core/src/config/`): it must write next to the download, never into the
//! checkpoint's baked-in `/kaggle/working` paths.

mod common;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};

fn remember(e: &Env, version: i64) {
    std::fs::write(
        e.proj().join("notebooks/.kaggle-run.json"),
        json!({"kernel": KERNEL, "version": version, "url": "u", "started_unix": 1}).to_string(),
    )
    .unwrap();
}

const CKPT: &str = "checkpoints/step_300.safetensors";

fn manifest_has(e: &Env, dir: &str, name: &str) -> bool {
    std::fs::read_to_string(e.proj().join(dir).join(".kaggle-download.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| v["files"].get(name).is_some())
        .unwrap_or(false)
}

#[test]
fn checkpoint_damaged_in_transit_is_not_recorded_and_is_fetched_again() {
    let e = Env::with_metadata();
    remember(&e, 7);
    let good = checkpoint_bytes(300, "periodic");
    e.fake.add_output(CKPT, good.clone());
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0x55;
    e.fake.script(
        &format!("GET /files/{CKPT}"),
        vec![Reply::Raw(200, vec![("ETag", "\"same\"".into())], bad)],
    );
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("arrived damaged") && r.stderr.contains("not recorded as complete"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("failed: checkpoints/step_300.safetensors"));
    assert!(!manifest_has(&e, "kaggle_output", CKPT));
    // The rerun the message advises fetches it again, and now it verifies.
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("downloaded {CKPT}")),
        "{}",
        r.stdout
    );
    assert_eq!(e.fake.gets(&format!("/files/{CKPT}")).len(), 2);
    assert!(manifest_has(&e, "kaggle_output", CKPT));
    assert_eq!(
        std::fs::read(e.proj().join("kaggle_output").join(CKPT)).unwrap(),
        good
    );
}

#[test]
fn damaged_local_copy_is_fetched_again_despite_the_manifest() {
    let e = Env::with_metadata();
    remember(&e, 7);
    e.fake.add_output(CKPT, checkpoint_bytes(300, "periodic"));
    assert_eq!(e.run("kaggle_download", &[]).code, 0);
    let p = e.proj().join("kaggle_output").join(CKPT);
    let mut bytes = std::fs::read(&p).unwrap();
    *bytes.last_mut().unwrap() ^= 1; // same size: the manifest alone cannot tell
    std::fs::write(&p, bytes).unwrap();
    let r = e.run("kaggle_download", &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("damaged locally"), "{}", r.stdout);
    assert_eq!(e.fake.gets(&format!("/files/{CKPT}")).len(), 2);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        checkpoint_bytes(300, "periodic")
    );
}

/// Split a POSIX shell command line (plain words, single quotes, double quotes, backslash).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The config keys (`group.field`) of the train CLI and its run-control fields, read from the
/// core crate's sources.
fn train_cli_keys() -> (String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let schema = std::fs::read_to_string(root.join("crates/core/src/config/schema.rs")).unwrap();
    let resume = std::fs::read_to_string(root.join("crates/core/src/config/resume.rs")).unwrap();
    (schema, resume)
}

#[test]
fn resume_command_parses_with_the_train_cli_and_writes_next_to_the_download() {
    let e = Env::with_metadata();
    remember(&e, 7);
    e.fake.add_output(
        "checkpoints/latest.safetensors",
        checkpoint_bytes(200, "periodic"),
    );
    let dir = "my results/it's here";
    let r = e.run("kaggle_download", &["--output-dir", dir]);
    assert_eq!(r.code, 0, "{}", r.all());
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("--bin train"))
        .unwrap_or_else(|| panic!("no resume command:\n{}", r.stdout));
    let words = shell_words(line.trim());
    assert_eq!(
        &words[..5],
        &["cargo", "run", "--release", "--bin", "train"],
        "{line}"
    );
    assert_eq!(words[5], "--", "{line}");
    let (schema, resume) = train_cli_keys();
    let mut got = std::collections::BTreeMap::new();
    for w in &words[6..] {
        // The train CLI takes `--group.field=value` (crates/core/src/config/cli.rs).
        let (name, value) = w
            .strip_prefix("--")
            .and_then(|b| b.split_once('='))
            .unwrap_or_else(|| panic!("{w:?} is not --group.field=value"));
        let key = name.replace('-', "_");
        assert!(
            schema.contains(&format!("    {key}: Kind::Str")),
            "{key} is not a string option of the train CLI"
        );
        assert!(
            resume.contains(&format!("\"{key}\"")),
            "{key} is not a run-control field: a resume would refuse to change it"
        );
        got.insert(key, value.to_string());
    }
    let inside = |v: &str| {
        assert!(
            Path::new(v).starts_with(dir) && !v.starts_with("/kaggle"),
            "{v} is not next to the download"
        );
        e.proj().join(v)
    };
    let ckpt: PathBuf = inside(&got["train.resume_from"]);
    assert!(ckpt.is_file(), "{}", ckpt.display());
    for key in [
        "log.checkpoint_dir",
        "log.metrics_path",
        "log.tensorboard_dir",
    ] {
        let p = inside(
            got.get(key)
                .unwrap_or_else(|| panic!("{key} missing: {line}")),
        );
        // A later download into the same folder must never touch what a local resume wrote.
        assert!(
            !p.starts_with(e.proj().join(dir).join("checkpoints")),
            "{key} would mix with downloaded files"
        );
    }
}
