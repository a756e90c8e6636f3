//! The typed value of the step intervals (`log.save_interval`, `log.log_interval`,
//! `analysis.emergence_check_interval`, `analysis.specialization_check_interval`): a number of
//! steps, or never. TOML, CLI and JSON keep the integer as written (`<= 0` means never).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Steps between recurring events of a run; the one rule for when such an event is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
pub struct StepInterval(i64);

impl StepInterval {
    /// Never fires.
    pub const NEVER: StepInterval = StepInterval(0);

    /// Every `steps` steps (0: never).
    pub fn every(steps: u64) -> StepInterval {
        StepInterval(i64::try_from(steps).unwrap_or(i64::MAX))
    }

    /// The steps between events; `None` when it never fires.
    pub fn steps(self) -> Option<u64> {
        (self.0 > 0).then_some(self.0 as u64)
    }

    /// Whether the event is due after the step counter moved from `before` to `after`: it is
    /// when the counter crossed (or reached) a multiple of the interval (model.md section 1).
    pub fn crossed(self, before: u64, after: u64) -> bool {
        self.steps().is_some_and(|i| after / i > before / i)
    }
}

impl From<i64> for StepInterval {
    fn from(v: i64) -> StepInterval {
        StepInterval(v)
    }
}

impl From<StepInterval> for i64 {
    fn from(v: StepInterval) -> i64 {
        v.0
    }
}

impl PartialEq<i64> for StepInterval {
    fn eq(&self, other: &i64) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for StepInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_crossing_a_multiple() {
        let per_iter = 131_072u64;
        // Shorter than an iteration: every iteration.
        assert!(
            (0..5).all(|k| StepInterval::every(10_000).crossed(k * per_iter, (k + 1) * per_iter))
        );
        // 1e6 steps: the iterations that cross 1e6, 2e6.
        let fired: Vec<u64> = (0..20)
            .filter(|k| StepInterval::every(1_000_000).crossed(k * per_iter, (k + 1) * per_iter))
            .map(|k| k + 1)
            .collect();
        assert_eq!(fired, vec![8, 16]);
        // Landing exactly on a multiple counts; staying below does not.
        let ten = StepInterval::every(10);
        assert!(ten.crossed(0, 10) && ten.crossed(10, 20) && !ten.crossed(10, 19));
        // Zero and negative never fire.
        for never in [StepInterval::NEVER, StepInterval::from(-5)] {
            assert_eq!(never.steps(), None);
            assert!(!never.crossed(0, u64::MAX));
        }
    }

    #[test]
    fn keeps_the_integer_as_written() {
        let v: StepInterval = serde_json::from_str("-1").unwrap();
        assert_eq!(v, -1);
        assert_eq!(serde_json::to_string(&v).unwrap(), "-1");
        assert_eq!(StepInterval::every(100_000).to_string(), "100000");
    }
}
