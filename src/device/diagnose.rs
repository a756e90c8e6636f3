//! The device decision as a pure function of facts, so every case is tested on a CPU: which
//! device a [`DeviceSpec`] gets, and, when a GPU is visible but CUDA is unusable, which of the
//! known reasons it is and how to fix it. A visible GPU never silently becomes a CPU run.

use std::path::PathBuf;

use crate::config::DeviceSpec;

use super::gpu::{CudaVersion, HostGpus};
use super::load::CudaLoad;

/// Everything the decision needs, gathered by [`super::gather_facts`] (or made up by tests).
#[derive(Debug, Clone)]
pub struct CudaFacts {
    /// The GPUs the machine shows (`nvidia-smi`, `/proc/driver/nvidia/gpus`).
    pub host: HostGpus,
    /// Whether libtorch's CUDA part is there and loaded.
    pub load: CudaLoad,
    /// torch's CUDA backend is registered (`tch::utils::has_cudart()`).
    pub has_cudart: bool,
    /// CUDA devices torch can use (0 when CUDA is unusable).
    pub torch_devices: usize,
    /// The CUDA version libtorch was built with (its CUDA runtime's version).
    pub libtorch_cuda: Option<CudaVersion>,
    /// The CUDA version the loaded driver supports, as the CUDA runtime reports it; `None` when
    /// the runtime says there is no driver (or no runtime is loaded).
    pub driver_cuda: Option<CudaVersion>,
    /// GPU architectures libtorch has kernels for (`sm_75`, ...), when known.
    pub arch_list: Option<Vec<String>>,
    /// The `CUDA_VISIBLE_DEVICES` environment variable, when set.
    pub cuda_visible_devices: Option<String>,
}

/// Why a run cannot use the device it asked for (or that `auto` must use). Each message says
/// what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// `train.device` is not a device name.
    #[error("train.device = {0}")]
    BadSpec(String),
    /// CUDA was asked for on a machine that shows no NVIDIA GPU.
    #[error("train.device = {spec} but no NVIDIA GPU is visible (no nvidia-smi listing, no /proc/driver/nvidia/gpus): use \"cpu\" or \"auto\", or run on a machine with a GPU")]
    NoGpu {
        /// The requested device.
        spec: DeviceSpec,
    },
    /// The libtorch in use has no `libtorch_cuda.so`.
    #[error("{gpus}, but the libtorch in use ({lib_dir}) was built without CUDA (no libtorch_cuda.so): build against a CUDA libtorch (`python3 scripts/setup_libtorch.py --cuda` then LIBTORCH=$PWD/.libtorch-cuda, or LIBTORCH_USE_PYTORCH=1 with a CUDA torch), or set train.device = \"cpu\" to train on the CPU on purpose")]
    LibtorchWithoutCuda {
        /// What the machine shows.
        gpus: String,
        /// libtorch's library folder.
        lib_dir: String,
    },
    /// `libtorch_cuda.so` exists but did not load.
    #[error("{gpus}, but libtorch's CUDA part {path} could not be loaded: {error}. A CUDA library it needs is missing: put the nvidia-* libraries of the same torch release beside it (scripts/setup_libtorch.py --cuda does), or fix LD_LIBRARY_PATH")]
    CudaNotLoaded {
        /// What the machine shows.
        gpus: String,
        /// The library that failed.
        path: PathBuf,
        /// The loader's message.
        error: String,
    },
    /// The library loaded but torch's CUDA backend did not register (CUDA was queried first).
    #[error("{gpus}, but torch's CUDA backend is not registered although {path} is loaded: something asked torch about CUDA before emergence_lab loaded it. Call emergence_lab::device::ensure_cuda_loaded() first (before tch::Cuda::*, Device::cuda_if_available or tch::manual_seed), or restart the kernel/process")]
    CudaBackendMissing {
        /// What the machine shows.
        gpus: String,
        /// The loaded `libtorch_cuda.so`.
        path: PathBuf,
    },
    /// The CUDA runtime finds no driver.
    #[error("{gpus}, but the CUDA runtime finds no NVIDIA driver (libcuda.so.1 is not loadable in this process): install the NVIDIA driver, or in a container expose it (e.g. --gpus all)")]
    NoDriver {
        /// What the machine shows.
        gpus: String,
    },
    /// The driver supports an older CUDA than libtorch was built with.
    #[error("{gpus}: the NVIDIA driver{driver} supports CUDA up to {driver_cuda}, but this libtorch was built for CUDA {libtorch_cuda}: update the driver (CUDA 13 needs driver >= 580), or use a libtorch built for CUDA <= {driver_cuda} (the PyTorch index's cu126/cu128 builds of torch 2.11.0)")]
    DriverTooOld {
        /// What the machine shows.
        gpus: String,
        /// ` 550.90.07` or empty.
        driver: String,
        /// The driver's CUDA version.
        driver_cuda: CudaVersion,
        /// libtorch's CUDA version.
        libtorch_cuda: CudaVersion,
    },
    /// The GPU's architecture is not among libtorch's kernels.
    #[error("GPU {index} ({name}) is {sm}, but this libtorch has kernels only for {archs}: use a libtorch built for {sm} (for example the PyTorch index's cu126 build for Pascal sm_60), or another GPU type (Kaggle: T4, sm_75)")]
    ArchMissing {
        /// CUDA index.
        index: usize,
        /// GPU name.
        name: String,
        /// `sm_60`.
        sm: String,
        /// `sm_75 sm_80 ...` or `an unknown list`.
        archs: String,
    },
    /// `CUDA_VISIBLE_DEVICES` hides the GPUs from torch.
    #[error("{gpus}, but CUDA_VISIBLE_DEVICES={value:?} hides them from torch: unset it or list the GPU to use")]
    Hidden {
        /// What the machine shows.
        gpus: String,
        /// The variable's value.
        value: String,
    },
    /// The requested index is out of range.
    #[error("train.device = cuda:{index} but torch sees {count} CUDA device(s): use cuda:0..cuda:{last}", last = count.saturating_sub(1))]
    NoSuchDevice {
        /// Requested index.
        index: usize,
        /// Devices torch sees.
        count: usize,
    },
    /// The device has no memory left for even a small tensor.
    #[error("cuda:{index} is out of memory ({detail}): another process holds it (see nvidia-smi), or restart the kernel that holds it")]
    OutOfMemory {
        /// CUDA index.
        index: usize,
        /// torch's message, first line.
        detail: String,
    },
    /// torch sees no usable device for another reason.
    #[error("{gpus}, but torch cannot use CUDA: {detail}")]
    Unusable {
        /// What the machine shows.
        gpus: String,
        /// What is known.
        detail: String,
    },
}

/// What a spec gets before the device is tried: the CPU (with the reason), or a CUDA index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Train on the CPU.
    Cpu {
        /// Why (`asked for`, `no NVIDIA GPU visible`).
        reason: &'static str,
    },
    /// Train on CUDA device `index` (still to be tried with a small tensor).
    Cuda {
        /// CUDA index.
        index: usize,
    },
}

/// Decides the device for `spec` from `facts`: `cpu` is always the CPU; `auto` is the CPU only
/// when no NVIDIA GPU is visible; otherwise CUDA must be usable, or the error says why not.
pub fn decide(spec: DeviceSpec, facts: &CudaFacts) -> Result<Decision, DeviceError> {
    let index = match spec {
        DeviceSpec::Cpu => {
            return Ok(Decision::Cpu {
                reason: "asked for",
            })
        }
        DeviceSpec::Auto if !facts.host.visible() && facts.torch_devices == 0 => {
            return Ok(Decision::Cpu {
                reason: "no NVIDIA GPU visible",
            })
        }
        DeviceSpec::Auto => 0,
        DeviceSpec::Cuda(n) => n,
    };
    if facts.torch_devices > 0 {
        if index >= facts.torch_devices {
            return Err(DeviceError::NoSuchDevice {
                index,
                count: facts.torch_devices,
            });
        }
        check_arch(index, facts)?;
        return Ok(Decision::Cuda { index });
    }
    if !facts.host.visible() {
        return Err(DeviceError::NoGpu { spec });
    }
    Err(why_unusable(facts))
}

/// The reason CUDA is unusable although a GPU is visible, in the order a fix must follow.
fn why_unusable(facts: &CudaFacts) -> DeviceError {
    let gpus = facts.host.summary();
    match &facts.load {
        CudaLoad::CpuOnly { lib_dir } => {
            return DeviceError::LibtorchWithoutCuda {
                gpus,
                lib_dir: lib_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "folder unknown".into()),
            }
        }
        CudaLoad::Failed { path, error } => {
            return DeviceError::CudaNotLoaded {
                gpus,
                path: path.clone(),
                error: error.clone(),
            }
        }
        CudaLoad::Loaded { path } if !facts.has_cudart => {
            return DeviceError::CudaBackendMissing {
                gpus,
                path: path.clone(),
            }
        }
        CudaLoad::Loaded { .. } => {}
    }
    if let Some(v) = &facts.cuda_visible_devices {
        let v = v.trim();
        if v.is_empty() || v.starts_with('-') {
            return DeviceError::Hidden {
                gpus,
                value: v.to_string(),
            };
        }
    }
    let driver_cuda = facts.driver_cuda.or(facts.host.driver_cuda);
    let Some(driver_cuda) = driver_cuda else {
        return DeviceError::NoDriver { gpus };
    };
    if let Some(libtorch_cuda) = facts.libtorch_cuda {
        if driver_cuda < libtorch_cuda {
            let driver = facts
                .host
                .gpus
                .first()
                .and_then(|g| g.driver_version.clone())
                .map(|v| format!(" {v}"))
                .unwrap_or_default();
            return DeviceError::DriverTooOld {
                gpus,
                driver,
                driver_cuda,
                libtorch_cuda,
            };
        }
    }
    if facts.driver_cuda.is_none() {
        // nvidia-smi reports a driver, but the CUDA runtime in this process cannot reach it.
        return DeviceError::NoDriver { gpus };
    }
    for g in &facts.host.gpus {
        if let Err(e) = check_arch(g.index, facts) {
            return e;
        }
    }
    DeviceError::Unusable {
        gpus,
        detail:
            "torch reports 0 CUDA devices although the driver and libtorch's CUDA part are there"
                .into(),
    }
}

/// An error when GPU `index`'s architecture is known and missing from libtorch's list.
fn check_arch(index: usize, facts: &CudaFacts) -> Result<(), DeviceError> {
    let (Some(gpu), Some(archs)) = (facts.host.gpu(index), &facts.arch_list) else {
        return Ok(());
    };
    let Some(sm) = gpu.sm() else { return Ok(()) };
    if archs.iter().any(|a| a == &sm) {
        return Ok(());
    }
    Err(DeviceError::ArchMissing {
        index,
        name: gpu.name.clone(),
        sm,
        archs: archs.join(" "),
    })
}

/// Turns the error of the first small tensor on `cuda:index` into the matching reason.
pub fn classify_torch_error(index: usize, message: &str, facts: &CudaFacts) -> DeviceError {
    let first = message.lines().next().unwrap_or("").trim().to_string();
    let lower = message.to_ascii_lowercase();
    if lower.contains("out of memory") {
        return DeviceError::OutOfMemory {
            index,
            detail: first,
        };
    }
    if lower.contains("no kernel image is available") {
        let gpu = facts.host.gpu(index);
        return DeviceError::ArchMissing {
            index,
            name: gpu.map(|g| g.name.clone()).unwrap_or_else(|| "?".into()),
            sm: gpu
                .and_then(|g| g.sm())
                .unwrap_or_else(|| "its architecture".into()),
            archs: facts
                .arch_list
                .as_ref()
                .map(|a| a.join(" "))
                .unwrap_or_else(|| "other architectures".into()),
        };
    }
    if lower.contains("found no nvidia driver") {
        return DeviceError::NoDriver {
            gpus: facts.host.summary(),
        };
    }
    DeviceError::Unusable {
        gpus: facts.host.summary(),
        detail: first,
    }
}

#[cfg(test)]
mod tests {
    use super::super::gpu::{parse_query_gpu, GpuInfo};
    use super::*;

    fn v(s: &str) -> Option<CudaVersion> {
        CudaVersion::parse(s)
    }

    fn t4_host(driver_cuda: &str) -> HostGpus {
        HostGpus {
            count: 2,
            gpus: parse_query_gpu(
                "0, Tesla T4, 7.5, 15360, 560.35.03\n1, Tesla T4, 7.5, 15360, 560.35.03\n",
            ),
            driver_cuda: v(driver_cuda),
            source: "nvidia-smi".into(),
        }
    }

    /// A CUDA 13.0 libtorch (sm_75..sm_120) on a T4 machine with a driver for CUDA 13.0.
    fn usable() -> CudaFacts {
        CudaFacts {
            host: t4_host("13.0"),
            load: CudaLoad::Loaded {
                path: "/lt/lib/libtorch_cuda.so".into(),
            },
            has_cudart: true,
            torch_devices: 2,
            libtorch_cuda: v("13.0"),
            driver_cuda: v("13.0"),
            arch_list: Some(
                ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
                    .map(String::from)
                    .to_vec(),
            ),
            cuda_visible_devices: None,
        }
    }

    /// The same machine when torch cannot use CUDA.
    fn unusable() -> CudaFacts {
        CudaFacts {
            torch_devices: 0,
            ..usable()
        }
    }

    fn no_gpu() -> CudaFacts {
        CudaFacts {
            host: HostGpus::default(),
            load: CudaLoad::CpuOnly { lib_dir: None },
            has_cudart: false,
            torch_devices: 0,
            libtorch_cuda: None,
            driver_cuda: None,
            arch_list: None,
            cuda_visible_devices: None,
        }
    }

    #[test]
    fn cpu_is_always_the_cpu_and_auto_without_a_gpu_is_the_cpu() {
        for f in [usable(), unusable(), no_gpu()] {
            assert_eq!(
                decide(DeviceSpec::Cpu, &f),
                Ok(Decision::Cpu {
                    reason: "asked for"
                })
            );
        }
        assert_eq!(
            decide(DeviceSpec::Auto, &no_gpu()),
            Ok(Decision::Cpu {
                reason: "no NVIDIA GPU visible"
            })
        );
        assert!(matches!(
            decide(DeviceSpec::Cuda(0), &no_gpu()),
            Err(DeviceError::NoGpu { .. })
        ));
    }

    #[test]
    fn auto_picks_cuda_0_and_checks_the_index() {
        assert_eq!(
            decide(DeviceSpec::Auto, &usable()),
            Ok(Decision::Cuda { index: 0 })
        );
        assert_eq!(
            decide(DeviceSpec::Cuda(1), &usable()),
            Ok(Decision::Cuda { index: 1 })
        );
        let e = decide(DeviceSpec::Cuda(2), &usable()).unwrap_err();
        assert_eq!(e, DeviceError::NoSuchDevice { index: 2, count: 2 });
        assert!(e.to_string().contains("cuda:0..cuda:1"), "{e}");
    }

    #[test]
    fn a_visible_gpu_with_a_cpu_libtorch_is_an_error_naming_the_fix() {
        let f = CudaFacts {
            load: CudaLoad::CpuOnly {
                lib_dir: Some("/cache/libtorch/lib".into()),
            },
            has_cudart: false,
            ..unusable()
        };
        for spec in [DeviceSpec::Auto, DeviceSpec::Cuda(0)] {
            let e = decide(spec, &f).unwrap_err();
            assert!(
                matches!(e, DeviceError::LibtorchWithoutCuda { .. }),
                "{e:?}"
            );
            let m = e.to_string();
            assert!(
                m.contains("built without CUDA") && m.contains("--cuda"),
                "{m}"
            );
            assert!(
                m.contains("2 NVIDIA GPU(s)") && m.contains("Tesla T4 sm_75"),
                "{m}"
            );
            assert!(m.contains("train.device = \"cpu\""), "{m}");
        }
        // /proc/driver/nvidia/gpus alone also counts as a visible GPU.
        let f = CudaFacts {
            host: HostGpus {
                count: 1,
                source: "/proc/driver/nvidia/gpus".into(),
                ..HostGpus::default()
            },
            ..f
        };
        assert!(matches!(
            decide(DeviceSpec::Auto, &f),
            Err(DeviceError::LibtorchWithoutCuda { .. })
        ));
    }

    #[test]
    fn cuda_part_not_loaded_or_not_registered() {
        let f = CudaFacts {
            load: CudaLoad::Failed {
                path: "/lt/lib/libtorch_cuda.so".into(),
                error: "libcudnn.so.9: cannot open shared object file".into(),
            },
            has_cudart: false,
            ..unusable()
        };
        let m = decide(DeviceSpec::Auto, &f).unwrap_err().to_string();
        assert!(
            m.contains("could not be loaded") && m.contains("libcudnn.so.9"),
            "{m}"
        );
        let f = CudaFacts {
            has_cudart: false,
            ..unusable()
        };
        let e = decide(DeviceSpec::Auto, &f).unwrap_err();
        assert!(matches!(e, DeviceError::CudaBackendMissing { .. }), "{e:?}");
        assert!(e.to_string().contains("ensure_cuda_loaded"));
    }

    #[test]
    fn no_driver_and_an_old_driver_say_both_versions() {
        let f = CudaFacts {
            driver_cuda: None,
            host: HostGpus {
                driver_cuda: None,
                ..t4_host("")
            },
            ..unusable()
        };
        assert!(matches!(
            decide(DeviceSpec::Auto, &f),
            Err(DeviceError::NoDriver { .. })
        ));
        let f = CudaFacts {
            driver_cuda: v("12.6"),
            host: t4_host("12.6"),
            ..unusable()
        };
        let e = decide(DeviceSpec::Auto, &f).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, DeviceError::DriverTooOld { .. }), "{e:?}");
        assert!(
            m.contains("560.35.03") && m.contains("up to 12.6") && m.contains("CUDA 13.0"),
            "{m}"
        );
        // The driver version from nvidia-smi alone is enough to tell the driver is too old.
        let f = CudaFacts {
            driver_cuda: None,
            host: t4_host("12.4"),
            ..unusable()
        };
        assert!(matches!(
            decide(DeviceSpec::Auto, &f),
            Err(DeviceError::DriverTooOld { .. })
        ));
    }

    #[test]
    fn hidden_gpus_and_missing_architectures() {
        let f = CudaFacts {
            cuda_visible_devices: Some(String::new()),
            ..unusable()
        };
        assert!(matches!(
            decide(DeviceSpec::Auto, &f),
            Err(DeviceError::Hidden { .. })
        ));
        // A P100 (sm_60) with a libtorch that has no Pascal kernels: torch may even count it.
        let mut p100 = usable();
        p100.host.gpus = vec![GpuInfo {
            index: 0,
            name: "Tesla P100-PCIE-16GB".into(),
            compute_capability: Some((6, 0)),
            memory_mib: Some(16384),
            driver_version: Some("580.65.06".into()),
        }];
        p100.torch_devices = 1;
        let m = decide(DeviceSpec::Auto, &p100).unwrap_err().to_string();
        assert!(m.contains("sm_60") && m.contains("sm_75 sm_80"), "{m}");
        p100.torch_devices = 0;
        assert!(matches!(
            decide(DeviceSpec::Auto, &p100),
            Err(DeviceError::ArchMissing { .. })
        ));
    }

    #[test]
    fn errors_of_the_first_tensor_are_classified() {
        let f = usable();
        assert!(matches!(
            classify_torch_error(0, "CUDA error: out of memory\nCUDA kernel errors...", &f),
            DeviceError::OutOfMemory { index: 0, .. }
        ));
        assert!(matches!(
            classify_torch_error(
                0,
                "CUDA error: no kernel image is available for execution on the device",
                &f
            ),
            DeviceError::ArchMissing { .. }
        ));
        assert!(matches!(
            classify_torch_error(
                0,
                "Found no NVIDIA driver on your system. Please check...",
                &f
            ),
            DeviceError::NoDriver { .. }
        ));
        assert!(matches!(
            classify_torch_error(0, "something else", &f),
            DeviceError::Unusable { .. }
        ));
    }
}
