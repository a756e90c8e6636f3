//! Compute devices: loading libtorch's CUDA part ([`ensure_cuda_loaded`]), the machine's GPU
//! facts ([`HostGpus`]), and the one decision that turns `train.device` into a `tch::Device`
//! ([`resolve`]), which never lets a visible GPU silently become a CPU run.
//!
//! This is the only module that asks torch about CUDA; everything else gets a `Device`.

mod diagnose;
mod gpu;
mod load;

use std::fmt;

use tch::{Device, Kind, Tensor};

use crate::config::DeviceSpec;
pub use diagnose::{classify_torch_error, decide, CudaFacts, Decision, DeviceError};
pub use gpu::{parse_driver_cuda, parse_list, parse_query_gpu, CudaVersion, GpuInfo, HostGpus};
pub use load::{ensure_cuda_loaded, CudaLoad};

/// The libtorch version this build of tch expects (tch 0.24 checks it at build time); declared
/// once, in the root `Cargo.toml` (`[workspace.metadata.libtorch]`).
pub const LIBTORCH_VERSION: &str = env!("EMERGENCE_LAB_LIBTORCH_VERSION");

/// Name of the file, beside libtorch's `lib/` folder, listing the GPU architectures its CUDA
/// kernels are built for (`sm_75 sm_80 ...`); written by `scripts/setup_libtorch.py --cuda`.
pub const ARCH_LIST_FILE: &str = "cuda-arch-list";

/// Gathers the facts for [`decide`]: loads libtorch's CUDA part first, then asks the machine
/// and torch.
pub fn gather_facts() -> CudaFacts {
    let load = ensure_cuda_loaded().clone();
    let has_cudart = tch::utils::has_cudart();
    let torch_devices = if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    let versions = load::cudart_versions();
    let arch_list = load
        .lib_dir()
        .and_then(|d| d.parent())
        .and_then(|d| std::fs::read_to_string(d.join(ARCH_LIST_FILE)).ok())
        .map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|v| !v.is_empty());
    CudaFacts {
        host: HostGpus::probe(),
        libtorch_cuda: match load {
            CudaLoad::Loaded { .. } | CudaLoad::Failed { .. } => {
                versions.and_then(|(r, _)| CudaVersion::from_encoded(r))
            }
            CudaLoad::CpuOnly { .. } => None,
        },
        driver_cuda: versions.and_then(|(_, d)| CudaVersion::from_encoded(d)),
        load,
        has_cudart,
        torch_devices,
        arch_list,
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
    }
}

/// The device a run trains on, and the one line that says so.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The device.
    pub device: Device,
    /// The facts behind it, for the device line.
    pub report: DeviceReport,
}

/// Resolves a device spec: [`decide`] on the gathered facts, then a small tensor on the chosen
/// CUDA device (so an architecture without kernels or a full device fails here, with the reason,
/// not hours later).
pub fn resolve(spec: DeviceSpec) -> Result<Resolved, DeviceError> {
    let facts = gather_facts();
    let device = match decide(spec, &facts)? {
        Decision::Cpu { .. } => Device::Cpu,
        Decision::Cuda { index } => {
            let device = Device::Cuda(index);
            Tensor::f_ones([16], (Kind::Float, device))
                .and_then(|t| t.f_sum(Kind::Float))
                .and_then(|t| t.f_double_value(&[]))
                .map_err(|e| classify_torch_error(index, &e.to_string(), &facts))?;
            device
        }
    };
    Ok(Resolved {
        device,
        report: DeviceReport::new(device, reason(spec, device), &facts),
    })
}

/// The device line for a run that asked for `spec` (a `train.device` value) and got `device`.
pub fn report(spec: &str, device: Device) -> DeviceReport {
    let spec = spec.parse().unwrap_or(DeviceSpec::Auto);
    DeviceReport::new(device, reason(spec, device), &gather_facts())
}

/// Why `spec` got `device`, for the device line.
fn reason(spec: DeviceSpec, device: Device) -> &'static str {
    match (spec, device) {
        (DeviceSpec::Auto, Device::Cpu) => "no NVIDIA GPU visible",
        (DeviceSpec::Auto, _) => "auto: GPU visible and usable",
        _ => "asked for",
    }
}

/// The device for a `train.device` value (see [`resolve`]).
pub fn select(spec: &str) -> Result<Device, DeviceError> {
    let spec: DeviceSpec = spec.parse().map_err(DeviceError::BadSpec)?;
    resolve(spec).map(|r| r.device)
}

/// One line about the device a run uses: printed at the start of training and by the notebook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReport {
    /// `cpu` or `cuda:N`.
    pub picked: String,
    /// Why that device.
    pub reason: String,
    /// The picked GPU (or GPU 0 when the CPU was picked), when known.
    pub gpu: Option<GpuInfo>,
    /// GPUs the machine shows.
    pub host_gpus: usize,
    /// The CUDA version the driver supports.
    pub driver_cuda: Option<CudaVersion>,
    /// The CUDA version libtorch was built with.
    pub libtorch_cuda: Option<CudaVersion>,
    /// torch's CUDA backend is registered.
    pub has_cudart: bool,
    /// libtorch intra-op threads.
    pub threads: i32,
}

impl DeviceReport {
    fn new(device: Device, reason: &str, facts: &CudaFacts) -> DeviceReport {
        let index = match device {
            Device::Cuda(n) => n,
            _ => 0,
        };
        DeviceReport {
            picked: match device {
                Device::Cuda(n) => format!("cuda:{n}"),
                _ => "cpu".into(),
            },
            reason: reason.into(),
            gpu: facts.host.gpu(index).cloned(),
            host_gpus: facts.host.count,
            driver_cuda: facts.driver_cuda.or(facts.host.driver_cuda),
            libtorch_cuda: facts.libtorch_cuda,
            has_cudart: facts.has_cudart,
            threads: tch::get_num_threads(),
        }
    }
}

impl fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
        write!(f, "device picked={} reason={:?}", self.picked, self.reason)?;
        if let Some(g) = &self.gpu {
            write!(
                f,
                " gpu={:?} cc={} memory_mib={} driver={}",
                g.name,
                opt(g.compute_capability.map(|(a, b)| format!("{a}.{b}"))),
                opt(g.memory_mib.map(|m| m.to_string())),
                opt(g.driver_version.clone()),
            )?;
        }
        write!(
            f,
            " gpus_visible={} driver_cuda={} libtorch={LIBTORCH_VERSION} libtorch_cuda={} cuda_backend={} threads={}",
            self.host_gpus,
            opt(self.driver_cuda.map(|v| v.to_string())),
            opt(self.libtorch_cuda.map(|v| v.to_string())),
            self.has_cudart,
            self.threads
        )
    }
}

/// What the process can compute on (for notebook cells and logs); never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// libtorch was built with CUDA and a GPU is usable.
    pub cuda_available: bool,
    /// Visible CUDA devices (torch's count).
    pub cuda_device_count: i64,
    /// cuDNN usable.
    pub cudnn_available: bool,
    /// torch's CUDA backend is registered (`libtorch_cuda.so` loaded in time).
    pub has_cudart: bool,
    /// NVIDIA GPUs the machine shows (nvidia-smi or /proc), whatever libtorch can do.
    pub host_gpus: usize,
    /// libtorch version (see [`LIBTORCH_VERSION`]).
    pub libtorch_version: String,
    /// libtorch intra-op threads.
    pub num_threads: i32,
    /// The device `train.device = "auto"` picks, or the error it gives.
    pub auto_device: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cuda_available={} cuda_devices={} cudnn={} cuda_backend={} gpus_visible={} libtorch={} threads={} auto_device={}",
            self.cuda_available,
            self.cuda_device_count,
            self.cudnn_available,
            self.has_cudart,
            self.host_gpus,
            self.libtorch_version,
            self.num_threads,
            self.auto_device
        )
    }
}

/// Facts about the compute devices of this process (loads libtorch's CUDA part first).
pub fn describe() -> DeviceInfo {
    let facts = gather_facts();
    let cuda = facts.torch_devices > 0;
    DeviceInfo {
        cuda_available: cuda,
        cuda_device_count: facts.torch_devices as i64,
        cudnn_available: cuda && tch::Cuda::cudnn_is_available(),
        has_cudart: facts.has_cudart,
        host_gpus: facts.host.count,
        libtorch_version: LIBTORCH_VERSION.to_string(),
        num_threads: tch::get_num_threads(),
        auto_device: match decide(DeviceSpec::Auto, &facts) {
            Ok(Decision::Cpu { .. }) => "cpu".into(),
            Ok(Decision::Cuda { index }) => format!("cuda:{index}"),
            Err(e) => format!("error ({e})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kaggle setup cell runs before the source is there, so it carries the version as a
    /// literal: it must be the one declared in Cargo.toml.
    #[test]
    fn the_kaggle_setup_cell_installs_the_declared_libtorch() {
        let cell = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel/kaggle_setup.py");
        let text = std::fs::read_to_string(&cell).unwrap();
        let want = format!("torch_version = \"{LIBTORCH_VERSION}\"");
        assert!(
            text.contains(&want),
            "{} must say {want} (Cargo.toml's [workspace.metadata.libtorch])",
            cell.display()
        );
        assert!(
            LIBTORCH_VERSION.split('.').count() == 3,
            "{LIBTORCH_VERSION}"
        );
    }

    #[test]
    fn select_parses_and_rejects() {
        assert_eq!(select("cpu").unwrap(), Device::Cpu);
        let e = select("tpu").unwrap_err();
        assert!(matches!(e, DeviceError::BadSpec(_)));
        assert!(e.to_string().contains("auto, cpu"), "{e}");
        let d = describe();
        assert_eq!(d.libtorch_version, "2.11.0");
        assert!(d.to_string().contains("threads="));
    }

    #[test]
    fn the_device_line_names_device_versions_and_backend() {
        let r = resolve(DeviceSpec::Cpu).unwrap();
        assert_eq!(r.device, Device::Cpu);
        let line = r.report.to_string();
        assert!(
            line.starts_with("device picked=cpu reason=\"asked for\""),
            "{line}"
        );
        for key in [
            "gpus_visible=",
            "driver_cuda=",
            "libtorch=2.11.0",
            "libtorch_cuda=",
            "cuda_backend=",
            "threads=",
        ] {
            assert!(line.contains(key), "{key} missing: {line}");
        }
        let report = DeviceReport {
            picked: "cuda:0".into(),
            reason: "auto: GPU visible and usable".into(),
            gpu: parse_query_gpu("0, Tesla T4, 7.5, 15360, 560.35.03").pop(),
            host_gpus: 2,
            driver_cuda: CudaVersion::parse("13.0"),
            libtorch_cuda: CudaVersion::parse("13.0"),
            has_cudart: true,
            threads: 4,
        };
        assert_eq!(
            report.to_string(),
            "device picked=cuda:0 reason=\"auto: GPU visible and usable\" gpu=\"Tesla T4\" cc=7.5 \
             memory_mib=15360 driver=560.35.03 gpus_visible=2 driver_cuda=13.0 libtorch=2.11.0 \
             libtorch_cuda=13.0 cuda_backend=true threads=4"
        );
    }

    /// Every tensor of a run lives on the run's device: the only places in the library that name
    /// the CPU are these host transfers and CPU-side steps, each for a reason (a new one must be
    /// added here, with its reason, or take the device as a parameter).
    #[test]
    fn the_training_path_names_the_cpu_only_where_listed() {
        let allowed: &[(&str, usize, &str)] = &[
            (
                "policy/mod.rs",
                2,
                "initial weights drawn on the CPU, then moved: same start on every device",
            ),
            (
                "train/state.rs",
                1,
                "tracker readback of evolved weights, once per measurement",
            ),
            (
                "ppo/rollout.rs",
                2,
                "actions, log-probs and values down, once per tick",
            ),
            (
                "ppo/specialization.rs",
                1,
                "the Gram matrix down, once per iteration",
            ),
            (
                "policy/native.rs",
                2,
                "checks: the native passes take only CPU tensors (other devices use libtorch)",
            ),
            (
                "train/mod.rs",
                1,
                "a comparison: the thread count is measured only on the CPU",
            ),
            (
                "ppo/update_tch.rs",
                1,
                "loss sums and the finiteness check down, once per epoch",
            ),
            (
                "checkpoint/tensor.rs",
                1,
                "checkpoints hold CPU arrays (device-independent files)",
            ),
            ("ablation/episode.rs", 1, "actions down, once per tick"),
            (
                "ablation/mod.rs",
                1,
                "a comparison: one libtorch thread when running on the CPU",
            ),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    if p != root.join("device") && p != root.join("bin") {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let code = text.split("#[cfg(test)]").next().unwrap_or("");
                    let n = code.matches("Device::Cpu").count();
                    if n > 0 {
                        let rel = p.strip_prefix(&root).unwrap().display().to_string();
                        found.push((rel, n));
                    }
                }
            }
        }
        for (file, n) in &found {
            let limit = allowed
                .iter()
                .find(|a| a.0 == file)
                .map(|a| a.1)
                .unwrap_or(0);
            assert!(
                *n <= limit,
                "{file} names Device::Cpu {n} time(s) outside tests (allowed {limit}): take the run's device instead"
            );
        }
    }

    /// Only this module may ask torch about CUDA (it loads libtorch's CUDA part first).
    #[test]
    fn no_other_module_queries_cuda_directly() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    if p != root.join("device") {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for needle in ["Cuda::", "cuda_if_available", "manual_seed", "has_cudart"] {
                        if text.contains(needle) {
                            offenders.push(format!("{} uses {needle}", p.display()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:?}");
    }
}
