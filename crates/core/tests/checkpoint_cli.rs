//! The `checkpoint` command: `inspect` prints the contents and exits non-zero when a file
//! does not verify; `list` lists a folder.
mod checkpoint_support;

use std::process::Command;

use emergence_lab_core::checkpoint::{CheckpointKind, CheckpointStore};

fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_checkpoint"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn inspect_and_list_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(dir.path(), 5).unwrap();
    let p1 = store
        .save(&checkpoint_support::sample(100, CheckpointKind::Periodic))
        .unwrap();
    let p2 = store
        .save(&checkpoint_support::sample(200, CheckpointKind::Emergency))
        .unwrap();
    let (code, text) = run(&["inspect".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, 0, "{text}");
    for needle in [
        "step 200",
        "kind emergency",
        "world/field_u8",
        "verifies: yes",
        "total size",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let mut b = std::fs::read(&p1).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    std::fs::write(&p1, b).unwrap();
    let (code, text) = run(&["inspect".as_ref(), p2.as_os_str(), p1.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("verifies: NO") && text.contains("checksum"),
        "{text}"
    );
    let (code, text) = run(&["list".as_ref(), dir.path().as_os_str()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("latest -> step 200 (emergency)"), "{text}");
    let (code, text) = run(&[
        "inspect".as_ref(),
        dir.path().join("missing.safetensors").as_os_str(),
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("missing.safetensors"), "{text}");
}
