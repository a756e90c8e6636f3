//! What the machine says about its NVIDIA GPUs, independently of libtorch: `nvidia-smi` on
//! `PATH` (`-L`, `--query-gpu`, and the header's "CUDA Version") and `/proc/driver/nvidia/gpus`.
//!
//! Parsing is separate from running the tool, so recorded `nvidia-smi` answers test it on a
//! machine without a GPU. Unreadable answers never fail: what cannot be parsed stays unknown.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A CUDA version as `major.minor` (the driver's supported version, or libtorch's build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CudaVersion {
    /// Major version (12, 13, ...).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl CudaVersion {
    /// From CUDA's integer encoding (`12040` is 12.4); `None` for 0 (no driver) or less.
    pub fn from_encoded(v: i32) -> Option<CudaVersion> {
        (v > 0).then_some(CudaVersion {
            major: (v / 1000) as u32,
            minor: ((v % 1000) / 10) as u32,
        })
    }

    /// From text such as `12.4` or `13.0`.
    pub fn parse(s: &str) -> Option<CudaVersion> {
        let (a, b) = s.trim().split_once('.')?;
        Some(CudaVersion {
            major: a.parse().ok()?,
            minor: b.split('.').next()?.parse().ok()?,
        })
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One GPU as `nvidia-smi --query-gpu` describes it; fields it could not give are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// CUDA index.
    pub index: usize,
    /// Product name, e.g. `Tesla T4`.
    pub name: String,
    /// Compute capability `(major, minor)`, e.g. `(7, 5)` for sm_75.
    pub compute_capability: Option<(u32, u32)>,
    /// Total memory in MiB.
    pub memory_mib: Option<u64>,
    /// NVIDIA driver version, e.g. `550.90.07`.
    pub driver_version: Option<String>,
}

impl GpuInfo {
    /// `sm_75` for compute capability 7.5.
    pub fn sm(&self) -> Option<String> {
        self.compute_capability.map(|(a, b)| format!("sm_{a}{b}"))
    }
}

/// The NVIDIA GPUs the machine shows (not what libtorch can use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostGpus {
    /// GPUs listed by `nvidia-smi -L` (or counted in `/proc/driver/nvidia/gpus`).
    pub count: usize,
    /// Details from `nvidia-smi --query-gpu`, when it answered.
    pub gpus: Vec<GpuInfo>,
    /// The highest CUDA version the driver supports (`nvidia-smi`'s header).
    pub driver_cuda: Option<CudaVersion>,
    /// Where the facts came from (`nvidia-smi`, `/proc/driver/nvidia/gpus`), for messages.
    pub source: String,
}

impl HostGpus {
    /// True when at least one NVIDIA GPU is visible.
    pub fn visible(&self) -> bool {
        self.count > 0
    }

    /// Asks `nvidia-smi` (found on `PATH`) and `/proc/driver/nvidia/gpus`.
    pub fn probe() -> HostGpus {
        Self::probe_with("nvidia-smi", Path::new("/proc/driver/nvidia/gpus"))
    }

    /// [`HostGpus::probe`] with another `nvidia-smi` program and proc folder (tests).
    pub fn probe_with(nvidia_smi: &str, proc_gpus: &Path) -> HostGpus {
        let listed = run_tool(nvidia_smi, &["-L"])
            .map(|o| parse_list(&o))
            .unwrap_or(0);
        let proc_count = std::fs::read_dir(proc_gpus)
            .map(|d| d.flatten().count())
            .unwrap_or(0);
        let mut host = HostGpus {
            count: listed.max(proc_count),
            ..HostGpus::default()
        };
        if listed > 0 {
            host.source = "nvidia-smi".into();
            host.gpus = run_tool(
                nvidia_smi,
                &[
                    "--query-gpu=index,name,compute_cap,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                ],
            )
            .map(|o| parse_query_gpu(&o))
            .unwrap_or_default();
            host.driver_cuda = run_tool(nvidia_smi, &[]).and_then(|o| parse_driver_cuda(&o));
        } else if proc_count > 0 {
            host.source = proc_gpus.display().to_string();
        }
        host
    }

    /// The details of GPU `index`, when known.
    pub fn gpu(&self, index: usize) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// `1 GPU (Tesla T4, sm_75)` for messages.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .gpus
            .iter()
            .map(|g| match g.sm() {
                Some(sm) => format!("{} {sm}", g.name),
                None => g.name.clone(),
            })
            .collect();
        let what = if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        };
        format!("{} NVIDIA GPU(s) seen by {}{what}", self.count, self.source)
    }
}

/// Counts the `GPU N: ...` lines of `nvidia-smi -L`.
pub fn parse_list(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("GPU ") && l.contains(':')
        })
        .count()
}

/// Parses `--query-gpu=index,name,compute_cap,memory.total,driver_version
/// --format=csv,noheader,nounits`; rows it cannot read are skipped, `[N/A]` fields are `None`.
pub fn parse_query_gpu(text: &str) -> Vec<GpuInfo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() < 5 {
                return None;
            }
            let known = |s: &str| !s.is_empty() && !s.starts_with('[') && s != "N/A";
            Some(GpuInfo {
                index: f[0].parse().ok()?,
                name: f[1].to_string(),
                compute_capability: Some(f[2]).filter(|s| known(s)).and_then(|s| {
                    let (a, b) = s.split_once('.')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                }),
                memory_mib: Some(f[3])
                    .filter(|s| known(s))
                    .and_then(|s| s.split_whitespace().next()?.parse().ok()),
                driver_version: Some(f[4]).filter(|s| known(s)).map(str::to_string),
            })
        })
        .collect()
}

/// The `CUDA Version: 12.4` of `nvidia-smi`'s header.
pub fn parse_driver_cuda(text: &str) -> Option<CudaVersion> {
    let at = text.find("CUDA Version:")?;
    let rest = text[at + "CUDA Version:".len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    CudaVersion::parse(&rest[..end])
}

/// Runs a tool with a time limit (a wedged driver can hang `nvidia-smi`); its stdout on success.
fn run_tool(program: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return status.success().then_some(out);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nvidia-smi` answers of a T4 x2 machine with driver 560 (CUDA 12.6), in nvidia-smi's formats.
    const T4_LIST: &str = "GPU 0: Tesla T4 (UUID: GPU-8a3c1f7e-0000-0000-0000-000000000000)\n\
                           GPU 1: Tesla T4 (UUID: GPU-8a3c1f7e-0000-0000-0000-000000000001)\n";
    const T4_QUERY: &str =
        "0, Tesla T4, 7.5, 15360, 560.35.03\n1, Tesla T4, 7.5, 15360, 560.35.03\n";
    const T4_HEADER: &str = "+-----------------------------------------------------------------------------------------+\n\
| NVIDIA-SMI 560.35.03              Driver Version: 560.35.03      CUDA Version: 12.6     |\n\
|-----------------------------------------+------------------------+----------------------+\n";
    /// An old driver that cannot report the compute capability.
    const P100_QUERY: &str = "0, Tesla P100-PCIE-16GB, [N/A], 16384, 470.82.01\n";

    #[test]
    fn parses_recorded_nvidia_smi_answers() {
        assert_eq!(parse_list(T4_LIST), 2);
        assert_eq!(parse_list("No devices were found\n"), 0);
        let gpus = parse_query_gpu(T4_QUERY);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[0].name, "Tesla T4");
        assert_eq!(gpus[0].compute_capability, Some((7, 5)));
        assert_eq!(gpus[0].sm().as_deref(), Some("sm_75"));
        assert_eq!(gpus[0].memory_mib, Some(15360));
        assert_eq!(gpus[0].driver_version.as_deref(), Some("560.35.03"));
        assert_eq!(
            parse_driver_cuda(T4_HEADER),
            Some(CudaVersion {
                major: 12,
                minor: 6
            })
        );
        let p100 = parse_query_gpu(P100_QUERY);
        assert_eq!(p100[0].compute_capability, None);
        assert_eq!(p100[0].memory_mib, Some(16384));
    }

    #[test]
    fn garbage_is_unknown_not_an_error() {
        assert!(
            parse_query_gpu("Failed to initialize NVML: Driver/library version mismatch\n")
                .is_empty()
        );
        assert_eq!(parse_driver_cuda("no header here"), None);
        assert_eq!(parse_driver_cuda("CUDA Version: N/A"), None);
        assert_eq!(CudaVersion::from_encoded(0), None);
        assert_eq!(
            CudaVersion::from_encoded(13000).unwrap().to_string(),
            "13.0"
        );
        assert_eq!(
            CudaVersion::from_encoded(12080).unwrap().to_string(),
            "12.8"
        );
    }

    #[test]
    fn probe_reads_a_fake_nvidia_smi_and_the_proc_folder() {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(
            &smi,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n -L) printf '{}' ;;\n --query-gpu*) printf '{}' ;;\n *) printf '{}' ;;\nesac\n",
                T4_LIST.replace('\n', "\\n"),
                T4_QUERY.replace('\n', "\\n"),
                T4_HEADER.replace('\n', "\\n").replace('%', "%%")
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host = HostGpus::probe_with(smi.to_str().unwrap(), &dir.path().join("none"));
        assert_eq!(host.count, 2);
        assert_eq!(host.gpus.len(), 2);
        assert_eq!(host.driver_cuda.unwrap().to_string(), "12.6");
        assert!(
            host.summary().contains("Tesla T4 sm_75"),
            "{}",
            host.summary()
        );

        // No nvidia-smi, but the driver's proc folder lists a GPU.
        let proc = dir.path().join("gpus");
        std::fs::create_dir_all(proc.join("0000:00:04.0")).unwrap();
        let host = HostGpus::probe_with("/nonexistent/nvidia-smi", &proc);
        assert!(host.visible());
        assert!(host.gpus.is_empty());
        assert!(host.source.contains("gpus"));
        // Neither: nothing visible.
        assert!(!HostGpus::probe_with("/nonexistent/nvidia-smi", &dir.path().join("x")).visible());
    }
}
