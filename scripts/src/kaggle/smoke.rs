//! The checks of the smoke test (`kaggle_run --smoke`): the smoke notebook (the training
//! notebook with a first cell that shrinks the run), the training log's device line, and the
//! one-line verdict.

use serde_json::{json, Value};

/// Kernel slug of the smoke test (a kernel of its own, so the training kernel's versions and
/// outputs are untouched).
pub const SMOKE_SLUG: &str = "emergence-lab-smoke";
/// Its title (slugifies to [`SMOKE_SLUG`]).
pub const SMOKE_TITLE: &str = "Emergence Lab Smoke";
/// The small config: a few PPO iterations of a tiny population, a checkpoint at the end.
pub const SMOKE_OVERRIDES: &str = "train.num_envs=2 train.num_steps=32 train.num_epochs=2 \
train.minibatch_size=512 evolution.max_agents=16 env.num_agents=8 \
analysis.emergence_check_interval=1024 analysis.specialization_check_interval=1024 \
log.log_interval=1024";

/// The Kaggle notebook (JSON text) with a first cell that sets `EMERGENCE_LAB_OVERRIDES` (the
/// setup cell passes the environment to the Rust kernel) to [`SMOKE_OVERRIDES`] and `steps`.
pub fn smoke_notebook(kaggle_text: &str, steps: u64) -> Result<String, serde_json::Error> {
    let mut nb: Value = serde_json::from_str(kaggle_text)?;
    let overrides =
        format!("{SMOKE_OVERRIDES} train.total_steps={steps} log.save_interval={steps}");
    let cell = json!({
        "cell_type": "code",
        "metadata": {"tags": ["smoke"]},
        "execution_count": null,
        "outputs": [],
        "source": format!(
            "# kaggle_run --smoke: a few iterations of a small config, GPU on.\nimport os\nos.environ[\"EMERGENCE_LAB_OVERRIDES\"] = {}\nprint(\"smoke test overrides:\", os.environ[\"EMERGENCE_LAB_OVERRIDES\"])",
            serde_json::to_string(&overrides)?
        ),
    });
    if let Some(cells) = nb["cells"].as_array_mut() {
        cells.insert(0, cell);
    }
    serde_json::to_string(&nb)
}

/// What the training log's device line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLine {
    /// `picked=` value (`cuda:0`, `cpu`).
    pub picked: String,
    /// `gpu="..."` value, when present.
    pub gpu: Option<String>,
    /// `cuda_backend=` value, when present.
    pub cuda_backend: Option<bool>,
    /// The whole line.
    pub line: String,
}

impl DeviceLine {
    /// True when training ran on a CUDA device with the CUDA backend.
    pub fn is_cuda(&self) -> bool {
        self.picked.starts_with("cuda") && self.cuda_backend != Some(false)
    }
}

/// The last `device picked=...` line of a log.
pub fn device_line(log: &str) -> Option<DeviceLine> {
    let line = log.lines().rev().find(|l| l.contains("device picked="))?;
    let after = |key: &str| -> Option<String> {
        let rest = &line[line.find(key)? + key.len()..];
        if let Some(q) = rest.strip_prefix('"') {
            Some(q[..q.find('"').unwrap_or(q.len())].to_string())
        } else {
            Some(rest.split_whitespace().next().unwrap_or("").to_string())
        }
    };
    Some(DeviceLine {
        picked: after("picked=")?,
        gpu: after("gpu="),
        cuda_backend: after("cuda_backend=").map(|v| v == "true"),
        line: line.trim().to_string(),
    })
}

/// The setup cell's `[setup] times: ...` summary, if the log has one.
pub fn setup_times(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("[setup] times: ").map(str::to_string))
}

/// The verdict's reason: `Ok(description)` when the GPU was used and a checkpoint verified,
/// else `Err(why)`.
pub fn judge(
    device: Option<&DeviceLine>,
    checkpoint: Option<(&str, u64)>,
) -> Result<String, String> {
    let d = device.ok_or("the log has no `device picked=` line (did training start?)")?;
    if !d.is_cuda() {
        return Err(format!("ran on the CPU, not the GPU: {}", d.line));
    }
    let (name, step) = checkpoint.ok_or("no verified checkpoint in the outputs")?;
    let gpu = d
        .gpu
        .as_deref()
        .map(|g| format!(" ({g})"))
        .unwrap_or_default();
    Ok(format!(
        "{}{gpu}, checkpoint {name} at step {step} verified",
        d.picked
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lines() {
        let d = device_line(
            "x\ndevice picked=cuda:0 reason=auto gpu=\"Tesla T4\" cc=7.5 cuda_backend=true\n",
        )
        .unwrap();
        assert_eq!(d.picked, "cuda:0");
        assert_eq!(d.gpu.as_deref(), Some("Tesla T4"));
        assert!(d.is_cuda());
        let d = device_line("device picked=cpu reason=no-gpu cuda_backend=false").unwrap();
        assert!(!d.is_cuda());
        assert!(judge(Some(&d), Some(("a", 1))).unwrap_err().contains("CPU"));
        assert!(device_line("nothing").is_none());
        assert_eq!(
            setup_times("[setup] times: a 1.0 s; total 2 s\n").unwrap(),
            "a 1.0 s; total 2 s"
        );
    }

    #[test]
    fn smoke_cell_goes_first() {
        let nb = smoke_notebook(r#"{"cells":[{"cell_type":"code","source":"x"}]}"#, 4096).unwrap();
        let v: Value = serde_json::from_str(&nb).unwrap();
        let src = v["cells"][0]["source"].as_str().unwrap();
        assert!(src.contains("train.total_steps=4096") && src.contains("EMERGENCE_LAB_OVERRIDES"));
        assert_eq!(v["cells"][1]["source"], "x");
    }
}
