//! The weekly accelerator quota (`kernels.KernelsApiService/GetAcceleratorQuotaStatistics`):
//! durations come as protobuf strings such as `"3600s"` (numbers are accepted too).

use super::api::KERNELS;
use super::client::{ApiClient, Idempotency};
use super::error::KaggleError;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().trim_end_matches('s').parse().ok(),
        _ => None,
    }
    .filter(|v: &f64| v.is_finite() && *v >= 0.0))
}

/// One accelerator's quota, in seconds.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Quota {
    /// Used this week.
    #[serde(deserialize_with = "de_duration")]
    pub time_used: Option<f64>,
    /// Reserved by sessions running now.
    #[serde(deserialize_with = "de_duration")]
    pub time_reserved: Option<f64>,
    /// Allowed per week.
    #[serde(deserialize_with = "de_duration")]
    pub total_time_allowed: Option<f64>,
}

impl Quota {
    /// Seconds left this week (allowed minus used minus reserved); `None` when Kaggle did not
    /// say how much is allowed.
    pub fn remaining_s(&self) -> Option<f64> {
        let total = self.total_time_allowed?;
        Some((total - self.time_used.unwrap_or(0.0) - self.time_reserved.unwrap_or(0.0)).max(0.0))
    }
}

/// Answer of `GetAcceleratorQuotaStatistics`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct QuotaAnswer {
    /// GPU quota.
    pub gpu_quota: Quota,
    /// When the quota resets (ISO-8601), if given.
    pub quota_refresh_time: Option<String>,
}

impl ApiClient {
    /// The caller's weekly accelerator quota.
    pub fn accelerator_quota(&self) -> Result<QuotaAnswer, KaggleError> {
        self.rpc(
            &format!("{KERNELS}/GetAcceleratorQuotaStatistics"),
            &json!({}),
            "accelerator quota",
            Idempotency::Safe,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_strings_or_numbers() {
        let a: QuotaAnswer = serde_json::from_str(
            r#"{"gpuQuota":{"timeUsed":"3600s","timeReserved":1800,"totalTimeAllowed":"108000s"}}"#,
        )
        .unwrap();
        assert_eq!(a.gpu_quota.remaining_s(), Some(108000.0 - 5400.0));
        let a: QuotaAnswer = serde_json::from_str("{}").unwrap();
        assert_eq!(a.gpu_quota.remaining_s(), None);
    }
}
