//! A dynamic library like an evcxr cell: torch's libraries come only from `LD_LIBRARY_PATH`,
//! and no link argument keeps `libtorch_cuda.so`. Two entry points, each for its own process
//! (torch remembers its first answer about CUDA):
//! - `probe_without_loading`: asks torch directly (the control: the backend is missing);
//! - `probe_after_loading`: calls `emergence_lab::device::ensure_cuda_loaded()` first, as every
//!   entry point of the library does.
//!
//! Each returns a JSON line (a static C string owned by the library).

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

static ANSWER: OnceLock<CString> = OnceLock::new();

fn probe(loaded: Option<String>) -> *const c_char {
    let has_cudart = tch::utils::has_cudart();
    let tensor = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0)))
        .and_then(|t| t.f_sum(Kind::Float))
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string().lines().next().unwrap_or("").to_string());
    let line = serde_json::json!({
        "probe": "dylib",
        "loaded": loaded,
        "has_cudart": has_cudart,
        "cuda_tensor": tensor,
    })
    .to_string();
    ANSWER
        .get_or_init(|| CString::new(line).unwrap_or_default())
        .as_ptr()
}

/// Asks torch about CUDA without loading libtorch_cuda.so first.
#[no_mangle]
pub extern "C" fn probe_without_loading() -> *const c_char {
    probe(None)
}

/// Loads libtorch_cuda.so the library's way, then asks torch.
#[no_mangle]
pub extern "C" fn probe_after_loading() -> *const c_char {
    let load = emergence_lab::device::ensure_cuda_loaded();
    probe(Some(format!("{load:?}")))
}
