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
