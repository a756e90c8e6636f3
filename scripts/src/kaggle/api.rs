//! Typed Kaggle kernel RPCs (SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput,
//! GetKernel, the log stream, token introspection) on top of [`ApiClient`].
//! Answers follow proto3 JSON rules: every field is optional and defaults apply.

use super::client::{Answer, ApiClient, Idempotency};
use super::error::{one_line, KaggleError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use std::fmt;

/// RPC service of the kernel calls.
pub const KERNELS: &str = "kernels.KernelsApiService";

/// `owner/slug` of a kernel or dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// Owner (user name).
    pub owner: String,
    /// Slug.
    pub slug: String,
}

impl Ref {
    /// Parse `owner/slug`; `None` when the shape is wrong.
    pub fn parse(s: &str) -> Option<Ref> {
        let (o, sl) = s.split_once('/')?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        (ok(o) && ok(sl)).then(|| Ref {
            owner: o.to_string(),
            slug: sl.to_string(),
        })
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.slug)
    }
}

/// Kaggle's `KernelWorkerStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Waiting for a machine (also what a missing `status` means).
    Queued,
    /// Executing.
    Running,
    /// Finished successfully.
    Complete,
    /// Failed.
    Error,
    /// Stop requested.
    CancelRequested,
    /// Stopped.
    CancelAcknowledged,
    /// Saved without running.
    NewScript,
    /// A value this helper does not know.
    Unknown(String),
}

impl RunStatus {
    /// Parse any spelling (`COMPLETE`, `complete`, `cancelAcknowledged`, `KernelWorkerStatus.ERROR`).
    pub fn parse(raw: Option<&str>) -> RunStatus {
        let Some(raw) = raw else {
            return RunStatus::Queued;
        };
        let last = raw.rsplit('.').next().unwrap_or(raw);
        let norm: String = last
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "" | "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "complete" => RunStatus::Complete,
            "error" => RunStatus::Error,
            "cancelrequested" => RunStatus::CancelRequested,
            "cancelacknowledged" => RunStatus::CancelAcknowledged,
            "newscript" => RunStatus::NewScript,
            _ => RunStatus::Unknown(raw.to_string()),
        }
    }

    /// True for states that will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunStatus::Complete
                | RunStatus::Error
                | RunStatus::CancelAcknowledged
                | RunStatus::NewScript
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Running => "RUNNING",
            RunStatus::Complete => "COMPLETE",
            RunStatus::Error => "ERROR",
            RunStatus::CancelRequested => "CANCEL_REQUESTED",
            RunStatus::CancelAcknowledged => "CANCEL_ACKNOWLEDGED",
            RunStatus::NewScript => "NEW_SCRIPT",
            RunStatus::Unknown(s) => s,
        };
        f.write_str(s)
    }
}

/// Accept an integer given as a JSON number or a string (proto3 64-bit rule).
pub fn de_opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Body of `SaveKernel` (lower-camel names; defaults omitted like the CLI).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SaveKernelRequest {
    /// `id_no` from the metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// `owner/slug`.
    pub slug: String,
    /// Title.
    pub new_title: String,
    /// The notebook JSON as a string.
    pub text: String,
    /// `python`.
    pub language: String,
    /// `notebook`.
    pub kernel_type: String,
    /// Dataset sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataset_data_sources: Vec<String>,
    /// Kernel output sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_data_sources: Vec<String>,
    /// Competition sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub competition_data_sources: Vec<String>,
    /// Model sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_data_sources: Vec<String>,
    /// Keywords.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub category_ids: Vec<String>,
    /// Private kernel.
    pub is_private: bool,
    /// GPU on.
    pub enable_gpu: bool,
    /// Internet on.
    pub enable_internet: bool,
    /// TPU (always sent, false for us).
    pub enable_tpu: bool,
    /// Docker image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// `original` / `latest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_image_pinning_type: Option<String>,
    /// Session timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_timeout_seconds: Option<u64>,
    /// `QUICK_SAVE` to save without running; omitted to save and run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_execution_type: Option<String>,
    /// Accelerator, e.g. `NvidiaTeslaT4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_shape: Option<String>,
}

/// Answer of `SaveKernel`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SaveKernelAnswer {
    /// `owner/slug`.
    #[serde(rename = "ref")]
    pub kernel_ref: Option<String>,
    /// Web page of the kernel.
    pub url: Option<String>,
    /// The new version.
    #[serde(deserialize_with = "de_opt_int")]
    pub version_number: Option<i64>,
    /// Rejection text (HTTP 200 with this means failure).
    pub error: Option<String>,
    /// Tags Kaggle dropped.
    pub invalid_tags: Vec<String>,
    /// Dataset sources Kaggle dropped.
    pub invalid_dataset_sources: Vec<String>,
    /// Competition sources Kaggle dropped.
    pub invalid_competition_sources: Vec<String>,
    /// Kernel sources Kaggle dropped.
    pub invalid_kernel_sources: Vec<String>,
    /// Model sources Kaggle dropped.
    pub invalid_model_sources: Vec<String>,
}

/// Answer of `GetKernelSessionStatus`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StatusWire {
    status: Option<String>,
    failure_message: Option<String>,
}

/// A run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    /// The state (QUEUED when absent).
    pub status: RunStatus,
    /// Why it failed, when given.
    pub failure_message: Option<String>,
}

/// One output file of a run.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OutputFile {
    /// Relative path inside the output.
    pub file_name: String,
    /// Pre-signed storage URL.
    pub url: String,
}

/// One page of `ListKernelSessionOutput`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OutputPage {
    /// Files on this page.
    pub files: Vec<OutputFile>,
    /// The run log (JSON array string), on the first page.
    pub log: Option<String>,
    /// Token of the next page; empty or absent on the last page.
    pub next_page_token: Option<String>,
}

/// `blob` part of `GetKernel`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct KernelBlob {
    /// The saved source (notebook JSON).
    pub source: String,
}

/// Answer of `GetKernel`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct GetKernelAnswer {
    /// Kernel metadata as sent by Kaggle.
    pub metadata: Value,
    /// Saved source.
    pub blob: KernelBlob,
}

/// Answer of `IntrospectToken`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Introspection {
    /// Whether the token is valid.
    pub active: bool,
    /// Its owner.
    pub username: Option<String>,
}

fn version_label(version: Option<i64>) -> Option<String> {
    version.map(|v| format!("v{v}"))
}

impl ApiClient {
    /// Save a kernel (`QUICK_SAVE` when `req.kernel_execution_type` says so, else save and run).
    /// A 200 answer with `error` or without `versionNumber` is an error.
    pub fn save_kernel(
        &self,
        req: &SaveKernelRequest,
    ) -> Result<(SaveKernelAnswer, i64), KaggleError> {
        let body = serde_json::to_value(req).expect("serialisable");
        let idem = if req.kernel_execution_type.is_some() {
            Idempotency::Safe
        } else {
            Idempotency::Once
        };
        let ans: SaveKernelAnswer = self.rpc(
            &format!("{KERNELS}/SaveKernel"),
            &body,
            &format!("kernel {}", req.slug),
            idem,
        )?;
        if let Some(e) = ans.error.as_deref().filter(|e| !e.trim().is_empty()) {
            return Err(KaggleError::Rejected {
                call: "SaveKernel".into(),
                message: one_line(e),
            });
        }
        let v = ans.version_number.ok_or_else(|| KaggleError::BadAnswer {
            call: "SaveKernel".into(),
            detail: "no versionNumber in the answer, so the push cannot be confirmed".into(),
        })?;
        Ok((ans, v))
    }

    /// Status of a run (`version` = the version number; `None` = the latest session).
    pub fn kernel_status(
        &self,
        k: &Ref,
        version: Option<i64>,
    ) -> Result<StatusAnswer, KaggleError> {
        let mut body = json!({"userName": k.owner, "kernelSlug": k.slug});
        if let Some(l) = version_label(version) {
            body["versionLabel"] = json!(l);
        }
        let what = match version {
            Some(v) => format!("kernel {k} version {v}"),
            None => format!("kernel {k}"),
        };
        let w: StatusWire = self.rpc(
            &format!("{KERNELS}/GetKernelSessionStatus"),
            &body,
            &what,
            Idempotency::Safe,
        )?;
        Ok(StatusAnswer {
            status: RunStatus::parse(w.status.as_deref()),
            failure_message: w
                .failure_message
                .filter(|m| !m.trim().is_empty())
                .map(|m| crate::kaggle::error::terminal_text(&m, 2000)),
        })
    }

    /// One page of a run's output list.
    pub fn output_page(
        &self,
        k: &Ref,
        version: Option<i64>,
        page_token: &str,
        page_size: u32,
    ) -> Result<OutputPage, KaggleError> {
        let mut body = json!({"userName": k.owner, "kernelSlug": k.slug, "pageSize": page_size, "pageToken": page_token});
        if let Some(l) = version_label(version) {
            body["versionLabel"] = json!(l);
        }
        self.rpc(
            &format!("{KERNELS}/ListKernelSessionOutput"),
            &body,
            &format!("output of kernel {k}"),
            Idempotency::Safe,
        )
    }

    /// The stored log of a run (first output page's `log`), if any.
    pub fn stored_log(&self, k: &Ref, version: Option<i64>) -> Result<Option<String>, KaggleError> {
        Ok(self.output_page(k, version, "", 1)?.log)
    }

    /// The saved source and metadata of a kernel.
    pub fn get_kernel(&self, k: &Ref) -> Result<GetKernelAnswer, KaggleError> {
        self.rpc(
            &format!("{KERNELS}/GetKernel"),
            &json!({"userName": k.owner, "kernelSlug": k.slug}),
            &format!("kernel {k}"),
            Idempotency::Safe,
        )
    }

    /// Open the log stream: a live `text/event-stream` while running ([`Answer::Stream`]), the
    /// whole log as a JSON array when done ([`Answer::Body`]).
    pub fn log_stream(&self, k: &Ref, version: Option<i64>) -> Result<Answer, KaggleError> {
        let mut path = format!("v1/kernels/logs/stream/{}/{}", k.owner, k.slug);
        if let Some(l) = version_label(version) {
            path.push_str(&format!("?versionLabel={l}"));
        }
        self.get_stream(
            &path,
            "text/event-stream, */*",
            &format!("log of kernel {k}"),
        )
    }

    /// Validate a token and learn its owner (`security.OAuthService/IntrospectToken`).
    pub fn introspect(&self, token: &str) -> Result<Introspection, KaggleError> {
        self.rpc(
            "security.OAuthService/IntrospectToken",
            &json!({"token": token}),
            "token",
            Idempotency::Safe,
        )
    }

    /// Cheapest authenticated call for key credentials: list one of the caller's kernels.
    pub fn list_my_kernels(&self) -> Result<Value, KaggleError> {
        self.rpc(
            &format!("{KERNELS}/ListKernels"),
            &json!({"group": "PROFILE", "page": 1, "pageSize": 1}),
            "kernel list",
            Idempotency::Safe,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_spellings() {
        assert_eq!(RunStatus::parse(None), RunStatus::Queued);
        assert_eq!(RunStatus::parse(Some("COMPLETE")), RunStatus::Complete);
        assert_eq!(RunStatus::parse(Some("complete")), RunStatus::Complete);
        assert_eq!(
            RunStatus::parse(Some("cancelAcknowledged")),
            RunStatus::CancelAcknowledged
        );
        assert_eq!(
            RunStatus::parse(Some("CANCEL_ACKNOWLEDGED")),
            RunStatus::CancelAcknowledged
        );
        assert_eq!(
            RunStatus::parse(Some("KernelWorkerStatus.ERROR")),
            RunStatus::Error
        );
        assert_eq!(
            RunStatus::parse(Some("weird")),
            RunStatus::Unknown("weird".into())
        );
        assert!(RunStatus::NewScript.is_terminal() && !RunStatus::Running.is_terminal());
    }

    #[test]
    fn ints_as_strings_and_missing_fields() {
        let a: SaveKernelAnswer =
            serde_json::from_str(r#"{"versionNumber":"7","extra":1}"#).unwrap();
        assert_eq!(a.version_number, Some(7));
        let a: SaveKernelAnswer = serde_json::from_str("{}").unwrap();
        assert_eq!(a.version_number, None);
        assert!(a.invalid_tags.is_empty());
    }

    #[test]
    fn refs() {
        assert_eq!(Ref::parse("a/b-c").unwrap().slug, "b-c");
        assert!(Ref::parse("a/b/c").is_none());
        assert!(Ref::parse("/b").is_none());
        assert!(Ref::parse("a b/c").is_none());
    }
}
