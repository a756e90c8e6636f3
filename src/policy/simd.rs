//! The run-time choice of instruction set for the row-wise and element-wise loops of the
//! native passes (LayerNorm/tanh rows, Adam, gradient sums).

/// Defines `fn $name(args) -> R` that runs `$body(args)` compiled for AVX-512F, for AVX2 +
/// FMA, or for the baseline, chosen at run time. `$body` must be `#[inline(always)]` so each
/// version compiles it with its features. It is one function, so every version performs the
/// same operations in the same order (Rust never fuses a multiply and an add by itself): the
/// same bits on every CPU.
macro_rules! dispatch_simd {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident;) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::policy::simd::avx512() {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::policy::simd::avx2_fma() {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use dispatch_simd;

/// Environment variable that keeps the native passes off AVX-512 on a CPU that has it
/// (`avx2`: AVX2 + FMA at most; `baseline`: neither), to measure or check what an
/// AVX2-only machine runs. Any other value is ignored.
pub const FEATURES_ENV: &str = "EMERGENCE_LAB_CPU_FEATURES";

/// The widest instruction set [`FEATURES_ENV`] allows (read once per process).
fn allowed() -> u8 {
    static ALLOWED: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| match std::env::var(FEATURES_ENV).as_deref() {
        Ok("avx2") => 1,
        Ok("baseline") => 0,
        _ => 2,
    })
}

/// Whether the native passes use AVX-512F: the CPU has it and [`FEATURES_ENV`] allows it.
#[cfg(target_arch = "x86_64")]
pub fn avx512() -> bool {
    allowed() >= 2 && std::is_x86_feature_detected!("avx512f")
}

/// Whether the native passes use AVX2 + FMA: the CPU has them and [`FEATURES_ENV`] allows
/// them.
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma() -> bool {
    allowed() >= 1 && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// `dst.copy_from_slice(src)` with non-temporal stores where the CPU has them (x86-64): the
/// values go to memory without being read into the cache first or evicting what is there.
/// For data written once and read much later (the rollout's observation store, read by the
/// update). Call [`stream_fence`] before another thread reads `dst`.
///
/// # Panics
/// If the lengths differ.
pub fn stream_copy(dst: &mut [f32], src: &[f32]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "stream_copy of slices of different lengths"
    );
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
        // Up to the first 16-byte boundary of `dst` (the stores' alignment) by plain stores.
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let (dh, dt) = dst.split_at_mut(head);
        let (sh, st) = src.split_at(head);
        dh.copy_from_slice(sh);
        let whole = dt.len() / 4 * 4;
        for i in (0..whole).step_by(4) {
            // SAFETY: `i + 4 <= whole` values of each slice; `dt[i]` is 16-byte aligned (SSE2
            // is part of x86-64).
            unsafe { _mm_stream_ps(dt.as_mut_ptr().add(i), _mm_loadu_ps(st.as_ptr().add(i))) };
        }
        dt[whole..].copy_from_slice(&st[whole..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// Orders the non-temporal stores of [`stream_copy`] before later stores (x86-64 `sfence`),
/// so a thread that is handed the data afterwards reads the new values.
pub fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_copy_copies_every_value_at_any_alignment() {
        let src: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        for start in 0..5 {
            for len in [0, 1, 3, 4, 5, 17, 502, 995] {
                let mut dst = vec![f32::NAN; 1000];
                super::stream_copy(&mut dst[start..start + len], &src[..len]);
                super::stream_fence();
                assert_eq!(
                    &dst[start..start + len],
                    &src[..len],
                    "start {start} len {len}"
                );
                assert!(dst[..start]
                    .iter()
                    .chain(&dst[start + len..])
                    .all(|x| x.is_nan()));
            }
        }
    }
}
