//! Compute device facts for notebook cells and logs: CUDA availability, device count,
//! libtorch version and thread count.
//!
//! `describe()` never fails; `select` turns `train.device` into a `tch::Device`.

use std::fmt;

use tch::{Cuda, Device};

/// The libtorch version this build of tch expects (tch 0.24 checks it at build time).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// What the process can compute on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// libtorch was built with CUDA and a GPU is visible.
    pub cuda_available: bool,
    /// Visible CUDA devices.
    pub cuda_device_count: i64,
    /// cuDNN usable.
    pub cudnn_available: bool,
    /// libtorch version (see [`LIBTORCH_VERSION`]).
    pub libtorch_version: String,
    /// libtorch intra-op threads.
    pub num_threads: i32,
    /// The device `train.device = "auto"` picks.
    pub auto_device: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cuda_available={} cuda_devices={} cudnn={} libtorch={} threads={} auto_device={}",
            self.cuda_available,
            self.cuda_device_count,
            self.cudnn_available,
            self.libtorch_version,
            self.num_threads,
            self.auto_device
        )
    }
}

/// Facts about the compute devices of this process.
pub fn describe() -> DeviceInfo {
    let cuda = Cuda::is_available();
    DeviceInfo {
        cuda_available: cuda,
        cuda_device_count: if cuda { Cuda::device_count() } else { 0 },
        cudnn_available: cuda && Cuda::cudnn_is_available(),
        libtorch_version: LIBTORCH_VERSION.to_string(),
        num_threads: tch::get_num_threads(),
        auto_device: if cuda { "cuda:0".into() } else { "cpu".into() },
    }
}

/// The device for a `train.device` value: `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
pub fn select(spec: &str) -> Result<Device, String> {
    let s = spec.trim().to_ascii_lowercase();
    match s.as_str() {
        "auto" | "" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda_device(0, spec),
        _ => match s.strip_prefix("cuda:").map(|n| n.parse::<usize>()) {
            Some(Ok(n)) => cuda_device(n, spec),
            _ => Err(format!(
                "train.device = {spec:?} is not one of auto, cpu, cuda, cuda:N"
            )),
        },
    }
}

fn cuda_device(n: usize, spec: &str) -> Result<Device, String> {
    if !Cuda::is_available() {
        return Err(format!(
            "train.device = {spec:?} but CUDA is not available (libtorch built without CUDA or no GPU visible); use \"auto\" or \"cpu\""
        ));
    }
    let count = Cuda::device_count() as usize;
    if n >= count {
        return Err(format!(
            "train.device = {spec:?} but only {count} CUDA device(s) are visible"
        ));
    }
    Ok(Device::Cuda(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_parses_and_rejects() {
        assert_eq!(select("cpu").unwrap(), Device::Cpu);
        assert!(select("tpu").unwrap_err().contains("auto, cpu"));
        if !Cuda::is_available() {
            assert!(select("cuda:0").unwrap_err().contains("not available"));
            assert_eq!(select("auto").unwrap(), Device::Cpu);
        }
        let d = describe();
        assert_eq!(d.libtorch_version, "2.11.0");
        assert!(d.to_string().contains("threads="));
    }
}
