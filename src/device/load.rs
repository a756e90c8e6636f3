//! Loads libtorch's CUDA part at run time, before anything asks torch about CUDA.
//!
//! Rust links with `--as-needed`, and code compiled by evcxr keeps no link arguments of ours,
//! so `libtorch_cuda.so` may be missing from the process even when the libtorch in use has it;
//! torch then answers "no CUDA" for good. [`ensure_cuda_loaded`] finds the folder of the already
//! loaded `libtorch_cpu.so` (in `/proc/self/maps`), and opens `libtorch_cuda.so` beside it with
//! `RTLD_NOW | RTLD_GLOBAL` so its CUDA backend registers. A CPU-only libtorch is not an error.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// What [`ensure_cuda_loaded`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaLoad {
    /// The libtorch in use has no `libtorch_cuda.so` beside `libtorch_cpu.so` (a CPU build).
    CpuOnly {
        /// The folder of `libtorch_cpu.so`, when it could be found.
        lib_dir: Option<PathBuf>,
    },
    /// `libtorch_cuda.so` is loaded (it was already, or this call opened it).
    Loaded {
        /// The library that was opened.
        path: PathBuf,
    },
    /// `libtorch_cuda.so` exists but could not be opened (a missing CUDA library, usually).
    Failed {
        /// The library that failed to open.
        path: PathBuf,
        /// The dynamic loader's message.
        error: String,
    },
}

impl CudaLoad {
    /// The folder holding libtorch's libraries, when known.
    pub fn lib_dir(&self) -> Option<&Path> {
        match self {
            CudaLoad::CpuOnly { lib_dir } => lib_dir.as_deref(),
            CudaLoad::Loaded { path } | CudaLoad::Failed { path, .. } => path.parent(),
        }
    }
}

static LOAD: OnceLock<CudaLoad> = OnceLock::new();

/// Loads `libtorch_cuda.so` when the libtorch in use has it; idempotent and cheap after the
/// first call. Every entry point of the library that can reach `tch::Cuda`,
/// `Device::cuda_if_available()` or the CUDA generator calls this first (torch remembers its
/// first answer about CUDA for the life of the process).
pub fn ensure_cuda_loaded() -> &'static CudaLoad {
    LOAD.get_or_init(|| {
        let lib_dir = loaded_library_path("libtorch_cpu.so")
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(|| {
                std::env::var_os("LIBTORCH")
                    .map(|d| PathBuf::from(d).join("lib"))
                    .filter(|d| d.join("libtorch_cpu.so").is_file())
            });
        load_from(lib_dir)
    })
}

/// Opens `libtorch_cuda.so` in `lib_dir`, if it is there.
fn load_from(lib_dir: Option<PathBuf>) -> CudaLoad {
    let Some(dir) = lib_dir else {
        return CudaLoad::CpuOnly { lib_dir: None };
    };
    let path = dir.join("libtorch_cuda.so");
    if !path.is_file() {
        return CudaLoad::CpuOnly { lib_dir: Some(dir) };
    }
    // SAFETY: libtorch_cuda.so's initialisers register torch's CUDA backend; they run once, as
    // when the library is linked. The handle is kept for the life of the process (never closed).
    match unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) } {
        Ok(lib) => {
            std::mem::forget(lib);
            CudaLoad::Loaded { path }
        }
        Err(e) => CudaLoad::Failed {
            path,
            error: e.to_string(),
        },
    }
}

/// The path of a shared library mapped into this process whose file name is `name`.
pub(crate) fn loaded_library_path(name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    find_in_maps(&maps, |file| file == name)
}

/// The first mapped file in `/proc/self/maps` text whose file name satisfies `wanted`.
pub(crate) fn find_in_maps(maps: &str, wanted: impl Fn(&str) -> bool) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(&wanted))
        .map(Path::to_path_buf)
}

/// Versions reported by the CUDA runtime library that libtorch loaded (`libcudart.so.*`):
/// `(runtime, driver)` as CUDA versions (`13000` = 13.0); the driver's is 0 without a driver.
/// `None` when no CUDA runtime is in the process (a CPU-only libtorch without cudart).
pub(crate) fn cudart_versions() -> Option<(i32, i32)> {
    let path = find_in_maps(&std::fs::read_to_string("/proc/self/maps").ok()?, |f| {
        f.starts_with("libcudart.so")
    })?;
    // SAFETY: the library is already mapped (this only takes a reference); the two functions
    // have the C signature `cudaError_t f(int*)` and need no driver or device.
    unsafe {
        let lib = Library::open(Some(&path), RTLD_NOW).ok()?;
        type VersionFn = unsafe extern "C" fn(*mut i32) -> i32;
        let runtime: libloading::os::unix::Symbol<VersionFn> =
            lib.get(b"cudaRuntimeGetVersion\0").ok()?;
        let driver: libloading::os::unix::Symbol<VersionFn> =
            lib.get(b"cudaDriverGetVersion\0").ok()?;
        let (mut r, mut d) = (0i32, 0i32);
        if runtime(&mut r) != 0 {
            return None;
        }
        if driver(&mut d) != 0 {
            d = 0;
        }
        Some((r, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
7f00-7f01 r--p 00000000 fd:01 123  /opt/torch/lib/libc10.so
7f01-7f02 r-xp 00001000 fd:01 124  /opt/torch/lib/libtorch_cpu.so
7f02-7f03 rw-p 00000000 00:00 0
7f03-7f04 r--p 00000000 fd:01 125  /opt/nv/lib/libcudart.so.13
7f05-7f06 r--p 00000000 00:00 0    [heap]
";

    #[test]
    fn finds_mapped_libraries_by_file_name() {
        assert_eq!(
            find_in_maps(MAPS, |f| f == "libtorch_cpu.so"),
            Some(PathBuf::from("/opt/torch/lib/libtorch_cpu.so"))
        );
        assert_eq!(
            find_in_maps(MAPS, |f| f.starts_with("libcudart.so")),
            Some(PathBuf::from("/opt/nv/lib/libcudart.so.13"))
        );
        assert_eq!(find_in_maps(MAPS, |f| f == "libtorch_cuda.so"), None);
    }

    #[test]
    fn a_folder_without_libtorch_cuda_is_cpu_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load_from(Some(dir.path().to_path_buf())),
            CudaLoad::CpuOnly {
                lib_dir: Some(dir.path().to_path_buf())
            }
        );
        assert_eq!(load_from(None), CudaLoad::CpuOnly { lib_dir: None });
    }

    #[test]
    fn a_libtorch_cuda_that_cannot_load_is_reported_with_the_loader_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libtorch_cuda.so"), b"not an ELF file").unwrap();
        match load_from(Some(dir.path().to_path_buf())) {
            CudaLoad::Failed { path, error } => {
                assert_eq!(path, dir.path().join("libtorch_cuda.so"));
                assert!(!error.is_empty());
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn this_process_has_libtorch_cpu_mapped() {
        // Test binaries link libtorch_cpu.so; the loader must find its folder.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        let p = loaded_library_path("libtorch_cpu.so").expect("libtorch_cpu.so mapped");
        assert!(p.is_absolute() && p.exists(), "{}", p.display());
    }
}
