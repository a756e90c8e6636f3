//! Checkpoints are readable outside Rust: Python's `safetensors` (numpy) loads one and the
//! tensors and metadata match. Installs `safetensors` + `numpy` into a venv under
//! `target/` when missing; skips (with a message) only when `python3` itself is missing.
mod checkpoint_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use emergence_lab_core::checkpoint::{CheckpointKind, CheckpointStore, DType};

fn has_packages(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import safetensors, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A python3 with safetensors and numpy, or `None` when python3 is missing.
fn python_with_packages() -> Option<PathBuf> {
    let system = PathBuf::from("python3");
    if Command::new(&system).arg("--version").output().is_err() {
        return None;
    }
    if has_packages(&system) {
        return Some(system);
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("checkpoint-python-venv");
    let python = venv.join("bin").join("python3");
    if !has_packages(&python) {
        let out = Command::new(&system)
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python3 -m venv {} failed: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "safetensors",
                "numpy",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "installing safetensors + numpy into {} failed (needs the PyPI registry): {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(python)
}

#[test]
fn python_safetensors_reads_tensors_and_metadata() {
    let Some(python) = python_with_packages() else {
        eprintln!("SKIPPED python_safetensors_reads_tensors_and_metadata: python3 not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let c = checkpoint_support::sample(4242, CheckpointKind::Emergency);
    let path = CheckpointStore::new(dir.path(), 5)
        .unwrap()
        .save(&c)
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_checkpoint.py");
    // Through the `latest` symlink, as a notebook would open it.
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path().join("latest.safetensors"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        direct.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&direct.stdout).unwrap();
    assert!(d == v, "the file and latest read differently");
    let md = &v["metadata"];
    assert_eq!(md["format"], "emergence-lab-checkpoint");
    assert_eq!(md["format_version"], "1");
    assert_eq!(md["step"], "4242");
    assert_eq!(md["kind"], "emergency");
    assert_eq!(md["config"], c.meta.config_json.as_str());
    assert_eq!(v["seed"], 7);
    let t = &v["tensors"];
    assert_eq!(t.as_object().unwrap().len(), c.arrays.len());
    let np_dtype = |d: DType| match d {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::I64 => "int64",
        DType::I32 => "int32",
        DType::U64 => "uint64",
        DType::U32 => "uint32",
        DType::U8 => "uint8",
        DType::Bool => "bool",
    };
    for a in &c.arrays {
        let e = &t[&a.name];
        assert_eq!(e["dtype"], np_dtype(a.dtype), "{}", a.name);
        assert_eq!(e["shape"], serde_json::json!(a.shape), "{}", a.name);
    }
    let w = c.array("policy/hidden0/weight").unwrap();
    let first: Vec<f64> = w
        .data
        .chunks_exact(4)
        .take(8)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
        .collect();
    assert_eq!(
        t["policy/hidden0/weight"]["first"],
        serde_json::json!(first)
    );
    let e = c.array("world/energy").unwrap();
    let sum: f64 = e
        .data
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .sum();
    assert_eq!(t["world/energy"]["sum"].as_f64().unwrap(), sum);
    let ids = c.array("world/ids").unwrap();
    let first_ids: Vec<i64> = ids
        .data
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
        .collect();
    assert_eq!(t["world/ids"]["first"], serde_json::json!(first_ids));
    let alive = c.array("world/alive").unwrap();
    let first_alive: Vec<bool> = alive.data.iter().map(|&b| b != 0).collect();
    assert_eq!(t["world/alive"]["first"], serde_json::json!(first_alive));
}
