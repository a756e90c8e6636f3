//! `kaggle_download` and `checkpoint inspect` give the same verdict on every file: both call the
//! core crate's verifier. The same damaged files are fed to the helper (through the fake Kaggle
//! server) and to `inspect`, and every file's verdict and reason must agree.

mod common;
use common::*;
use emergence_lab_core::checkpoint::inspect;
use serde_json::json;

/// Damaged variants of one good checkpoint, by file name.
fn damaged_files() -> Vec<(&'static str, Vec<u8>)> {
    let good = checkpoint_bytes(300, "periodic");
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut data_flip = good.clone();
    *data_flip.last_mut().unwrap() ^= 0x01;
    // A changed step inside the header: the JSON stays valid, the header CRC does not.
    let mut header_edit = good.clone();
    let at = header_edit[8..8 + header_len]
        .windows(5)
        .position(|w| w == b"\"300\"")
        .expect("step in the header")
        + 8;
    header_edit[at + 3] = b'1';
    let truncated = good[..good.len() - 7].to_vec();
    let mut huge_header = good.clone();
    huge_header[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    vec![
        ("step_300.safetensors", good),
        ("step_301.safetensors", data_flip),
        ("step_302.safetensors", header_edit),
        ("step_303.safetensors", truncated),
        ("step_304.safetensors", huge_header),
        ("step_305.safetensors", b"not a checkpoint at all".to_vec()),
    ]
}

#[test]
fn download_and_inspect_agree_on_every_damaged_file() {
    let e = Env::with_metadata();
    std::fs::write(
        e.proj().join("notebooks/.kaggle-run.json"),
        json!({"kernel": KERNEL, "version": 7, "url": "u", "started_unix": 1}).to_string(),
    )
    .unwrap();
    let files = damaged_files();
    for (name, bytes) in &files {
        e.fake
            .add_output(&format!("checkpoints/{name}"), bytes.clone());
    }
    let r = e.run("kaggle_download", &[]);
    assert_eq!(
        r.code,
        1,
        "damaged files make the download fail: {}",
        r.all()
    );
    for (name, _) in &files {
        let rel = format!("kaggle_output/checkpoints/{name}");
        let report = inspect(&e.proj().join(&rel)).expect("the file was downloaded");
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains(&rel) && (l.contains(" ok ") || l.contains(" BAD ")))
            .unwrap_or_else(|| panic!("no verdict for {rel}:\n{}", r.stdout));
        match &report.problem {
            None => assert!(line.trim_start().starts_with("ok"), "{rel}: {line}"),
            Some(problem) => {
                assert!(line.trim_start().starts_with("BAD"), "{rel}: {line}");
                // Same reason, word for word (paths are relative in both).
                let reason = problem.split_once(": ").map_or(problem.as_str(), |p| p.1);
                assert!(
                    line.contains(reason),
                    "{rel}: helper says {line:?}, inspect says {problem:?}"
                );
            }
        }
    }
    let bad = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("BAD"))
        .count();
    assert_eq!(bad, files.len() - 1, "{}", r.stdout);
    assert!(r
        .stdout
        .contains("--train.resume-from=kaggle_output/checkpoints/step_300.safetensors"));
}
