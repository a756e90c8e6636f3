//! The typed value of `train.device` (and the ablation's device): `auto`, `cpu`, `cuda` or
//! `cuda:N`, parsed in one place for the config validator and the device selection.

use std::fmt;
use std::str::FromStr;

/// Which device a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// CUDA device 0 when an NVIDIA GPU is visible (an error when it is visible but unusable),
    /// else the CPU.
    Auto,
    /// The CPU, even when a GPU is there.
    Cpu,
    /// CUDA device `N` (`cuda` is `cuda:0`); an error when it cannot be used.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("{s:?} is not one of auto, cpu, cuda, cuda:N")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_spellings_and_round_trips() {
        for (s, d) in [
            ("auto", DeviceSpec::Auto),
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
        }
        assert_eq!(
            DeviceSpec::Cuda(2).to_string().parse(),
            Ok(DeviceSpec::Cuda(2))
        );
        for bad in [
            "",
            "gpu",
            "CUDA",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:99999999999999999999",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("auto, cpu, cuda, cuda:N"), "{bad}: {e}");
        }
    }
}
