//! The test project as a git repository of emergence-lab: the source a push sends is what
//! git tracks, and the kernel metadata written later stays untracked.

use std::path::Path;
use std::process::Command;

/// Make `proj` (already holding the notebook) an emergence-lab repository with one commit.
pub fn init_repo(proj: &Path) {
    std::fs::write(
        proj.join("Cargo.toml"),
        "[package]\nname = \"emergence_lab\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(proj.join("src")).unwrap();
    std::fs::write(proj.join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    git(proj, &["init", "-q"]);
    git(
        proj,
        &[
            "add",
            "Cargo.toml",
            "src",
            "notebooks/kaggle_training.ipynb",
        ],
    );
    git(proj, &["commit", "-q", "-m", "initial"]);
}

/// Run git in `dir` with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
