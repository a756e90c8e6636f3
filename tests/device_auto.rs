//! `train.device = "auto"` on a machine whose `nvidia-smi` shows GPUs while libtorch cannot use
//! them (here: the CPU libtorch of the tests) fails before training with the reason, instead of
//! training on the CPU; `cpu` still trains; every run prints its device line.

use std::path::Path;
use std::process::{Command, Output};

/// An `nvidia-smi` that answers like a T4 x2 machine with driver 560 (CUDA 12.6).
fn fake_nvidia_smi(dir: &Path) {
    let script = r#"#!/bin/sh
case "$1" in
  -L) echo "GPU 0: Tesla T4 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
      echo "GPU 1: Tesla T4 (UUID: GPU-00000000-0000-0000-0000-000000000001)" ;;
  --query-gpu*) echo "0, Tesla T4, 7.5, 15360, 560.35.03"
                echo "1, Tesla T4, 7.5, 15360, 560.35.03" ;;
  *) echo "| NVIDIA-SMI 560.35.03    Driver Version: 560.35.03    CUDA Version: 12.6 |" ;;
esac
"#;
    let p = dir.join("nvidia-smi");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn train(work: &Path, device: &str, path_prefix: Option<&Path>) -> Output {
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(p) = path_prefix {
        path = format!("{}:{path}", p.display());
    }
    Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(work)
        .args([
            "--env.grid_size=6",
            "--env.num_agents=3",
            "--env.num_food=3",
            "--env.max_steps=25",
            "--env.observation_radius=1",
            "--field.num_channels=2",
            "--agent.hidden_dims=[8, 8]",
            "--train.num_envs=2",
            "--train.num_steps=8",
            "--train.minibatch_size=16",
            "--train.num_epochs=1",
            "--evolution.max_agents=4",
            "--train.total_steps=32",
            "--train.num_threads=1",
        ])
        .arg(format!("--train.device={device}"))
        .env("PATH", path)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .expect("run train")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn auto_with_a_visible_gpu_and_a_cpu_libtorch_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    fake_nvidia_smi(&bin);
    for device in ["auto", "cuda", "cuda:1"] {
        let o = train(dir.path(), device, Some(&bin));
        let out = text(&o);
        assert!(!o.status.success(), "{device}: must fail:\n{out}");
        assert!(out.contains("built without CUDA"), "{device}: {out}");
        assert!(out.contains("2 NVIDIA GPU(s) seen by nvidia-smi"), "{out}");
        assert!(out.contains("--cuda"), "the fix is named: {out}");
        assert!(!out.contains("progress step="), "no training: {out}");
        let written: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !written
                .iter()
                .any(|f| f.to_string_lossy().ends_with(".safetensors")),
            "no checkpoint written: {written:?}"
        );
    }
}

#[test]
fn cpu_trains_and_every_run_prints_its_device_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    fake_nvidia_smi(&bin);
    let o = train(dir.path(), "cpu", Some(&bin));
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("device picked=cpu reason=\"asked for\"") && out.contains("gpus_visible=2"),
        "{out}"
    );
    assert!(
        out.contains("driver_cuda=12.6") && out.contains("libtorch=2.11.0"),
        "{out}"
    );

    // Without any GPU, auto is the CPU, and says why.
    let dir = tempfile::tempdir().unwrap();
    let o = train(dir.path(), "auto", None);
    let out = text(&o);
    if out.contains("gpus_visible=0") {
        assert!(o.status.success(), "{out}");
        assert!(
            out.contains("device picked=cpu reason=\"no NVIDIA GPU visible\""),
            "{out}"
        );
    }
}
