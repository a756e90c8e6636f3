//! Small statistics for ablation results: mean, sample standard deviation, the Student-t
//! 0.975 quantile and the paired 95% confidence interval of a mean difference.
//!
//! The t quantile comes from a table for 1..=30 degrees of freedom and from the
//! Cornish-Fisher expansion beyond (absolute error below 1e-4 there).

use serde::{Deserialize, Serialize};

/// Mean of `x` (NaN when empty).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation of `x` (divisor `n - 1`); 0 for a single value, NaN when empty.
pub fn std_dev(x: &[f64]) -> f64 {
    match x.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(x);
            (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
    }
}

/// `t_{0.975}` for 1..=30 degrees of freedom (two-sided 95%).
const T975: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010,
    2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687,
    2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (the half-width factor
/// of a two-sided 95% interval); NaN for `df = 0`.
///
/// Exact to 4 decimals: a table for `df <= 30`, the Cornish-Fisher expansion around the
/// normal quantile 1.959964 for larger `df` (error < 1e-4 for df > 30).
pub fn t_quantile_975(df: usize) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    if df <= T975.len() {
        return T975[df - 1];
    }
    let z: f64 = 1.959_963_984_540_054;
    let v = df as f64;
    let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v * v * v)
}

/// A paired difference `a - b` over episodes with its 95% confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedGap {
    /// Number of pairs.
    pub n: usize,
    /// Mean of the differences.
    pub mean: f64,
    /// Sample standard deviation of the differences.
    pub std: f64,
    /// Lower end of the 95% interval (`mean - t * std / sqrt(n)`); `None` for `n < 2`.
    pub ci_low: Option<f64>,
    /// Upper end of the 95% interval; `None` for `n < 2`.
    pub ci_high: Option<f64>,
}

impl PairedGap {
    /// The gap `a[k] - b[k]` over pairs `k` (`a` and `b` have the same length).
    pub fn of(a: &[f64], b: &[f64]) -> PairedGap {
        assert_eq!(a.len(), b.len(), "paired samples have equal length");
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let n = d.len();
        let (m, s) = (mean(&d), std_dev(&d));
        let half = (n >= 2).then(|| t_quantile_975(n - 1) * s / (n as f64).sqrt());
        PairedGap {
            n,
            mean: m,
            std: s,
            ci_low: half.map(|h| m - h),
            ci_high: half.map(|h| m + h),
        }
    }

    /// The interval excludes zero (the gap is significant at the 5% level).
    pub fn significant(&self) -> bool {
        matches!((self.ci_low, self.ci_high), (Some(lo), Some(hi)) if lo > 0.0 || hi < 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let x = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&x), 5.0);
        // Sum of squares 32, n - 1 = 7.
        assert!((std_dev(&x) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[3.0]), 0.0);
        assert!(mean(&[]).is_nan());
    }

    #[test]
    fn t_quantiles_match_reference_values() {
        // Reference values (R: qt(0.975, df)).
        for (df, q) in [
            (1, 12.7062),
            (19, 2.0930),
            (30, 2.0423),
            (31, 2.0395),
            (40, 2.0211),
            (60, 2.0003),
            (120, 1.9799),
            (1000, 1.9623),
        ] {
            let t = t_quantile_975(df);
            assert!((t - q).abs() < 1e-4, "df {df}: {t} vs {q}");
        }
        assert!(t_quantile_975(0).is_nan());
    }

    #[test]
    fn paired_gap_interval() {
        let a = [10.0, 12.0, 11.0, 13.0];
        let b = [9.0, 10.0, 10.0, 11.0];
        // d = [1, 2, 1, 2]: mean 1.5, sd sqrt(1/3), t(3) = 3.1824.
        let g = PairedGap::of(&a, &b);
        let half = 3.1824 * (1.0f64 / 3.0).sqrt() / 2.0;
        assert_eq!(g.n, 4);
        assert!((g.mean - 1.5).abs() < 1e-12);
        assert!((g.ci_low.unwrap() - (1.5 - half)).abs() < 1e-9);
        assert!((g.ci_high.unwrap() - (1.5 + half)).abs() < 1e-9);
        assert!(g.significant());
        let one = PairedGap::of(&[1.0], &[0.0]);
        assert!(one.ci_low.is_none() && !one.significant());
    }
}
