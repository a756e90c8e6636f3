//! Proves how a binary of this package links libtorch: prints one JSON line with torch's CUDA
//! backend state *before* anything of ours loads it (so only the link can have registered it),
//! and what creating a tensor on `cuda:0` says. Used by `tests/cuda/check_cuda_build.sh`
//! against the CUDA libtorch of `scripts/setup_libtorch.py --cuda`; on a machine without a GPU
//! the tensor must fail with a driver error, not a missing-backend error.

use tch::{Device, Kind, Tensor};

fn main() {
    // Deliberately first: no emergence_lab call has loaded libtorch_cuda.so yet.
    let has_cudart = tch::utils::has_cudart();
    let tensor = Tensor::f_zeros([1], (Kind::Float, Device::Cuda(0)))
        .and_then(|t| t.f_sum(Kind::Float))
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string().lines().next().unwrap_or("").to_string());
    let info = emergence_lab::device::describe();
    println!(
        "{}",
        serde_json::json!({
            "probe": "binary",
            "has_cudart": has_cudart,
            "cuda_tensor": tensor,
            "describe": info.to_string(),
        })
    );
}
