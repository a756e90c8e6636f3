//! `notebooks/kernel-metadata.json`: creation by `kaggle_setup`, validation before a push, and
//! conversion to a `SaveKernel` request; plus the small run-state file kept next to it.
//! Validation mirrors the official CLI's checks and refuses before anything is sent.

use super::api::{Ref, SaveKernelRequest};
use super::error::KaggleError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Default metadata location, relative to the repository root.
pub const DEFAULT_METADATA: &str = "notebooks/kernel-metadata.json";
/// Kernel slug used by `kaggle_setup`.
pub const KERNEL_SLUG: &str = "emergence-lab-training";
/// Kernel title (slugifies to [`KERNEL_SLUG`]).
pub const KERNEL_TITLE: &str = "Emergence Lab Training";
/// Notebook file, relative to the metadata folder.
pub const CODE_FILE: &str = "kaggle_training.ipynb";
/// Dataset slug used for checkpoints carried between sessions.
pub const DATASET_SLUG: &str = "emergence-lab-checkpoints";
/// Accelerator: GPU T4 x2.
pub const MACHINE_SHAPE: &str = "NvidiaTeslaT4";
/// Name of the run-state file next to the metadata.
pub const STATE_FILE: &str = ".kaggle-run.json";

/// Build the metadata `kaggle_setup` writes for `user`.
pub fn default_metadata(user: &str, dataset_source: bool, self_source: bool) -> Value {
    // The source dataset comes first: kaggle_push creates it before the first save.
    let mut datasets = vec![format!("{user}/{}", super::source::SOURCE_SLUG)];
    if dataset_source {
        datasets.push(format!("{user}/{DATASET_SLUG}"));
    }
    let kernels: Vec<String> = if self_source {
        vec![format!("{user}/{KERNEL_SLUG}")]
    } else {
        vec![]
    };
    json!({
        "id": format!("{user}/{KERNEL_SLUG}"),
        "title": KERNEL_TITLE,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": true,
        "enable_gpu": true,
        "enable_tpu": false,
        "enable_internet": true,
        "machine_shape": MACHINE_SHAPE,
        "keywords": ["gpu", "reinforcement learning"],
        "dataset_sources": datasets,
        "kernel_sources": kernels,
        "competition_sources": [],
        "model_sources": []
    })
}

/// Kaggle's slug rule: lower-case, runs of non-alphanumerics become `-`.
pub fn slugify(title: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Validated kernel metadata.
#[derive(Debug, Clone)]
pub struct KernelMetadata {
    /// The file it was read from.
    pub path: PathBuf,
    /// Kernel `owner/slug`.
    pub id: Ref,
    /// `id_no`, when present.
    pub id_no: Option<i64>,
    /// Title.
    pub title: String,
    /// Absolute or metadata-relative notebook path, resolved.
    pub code_file: PathBuf,
    /// Private.
    pub is_private: bool,
    /// GPU.
    pub enable_gpu: bool,
    /// Internet.
    pub enable_internet: bool,
    /// Accelerator.
    pub machine_shape: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Dataset sources.
    pub dataset_sources: Vec<String>,
    /// Kernel sources.
    pub kernel_sources: Vec<String>,
    /// Competition sources.
    pub competition_sources: Vec<String>,
    /// Model sources.
    pub model_sources: Vec<String>,
    /// Docker image.
    pub docker_image: Option<String>,
    /// Docker pinning.
    pub docker_image_pinning_type: Option<String>,
    /// The raw JSON (for rewriting sources).
    pub raw: Value,
}

fn bool_field(v: &Value, key: &str, default: bool) -> Result<bool, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("`{key}` must be true or false, found {other}")),
    }
}

fn str_list(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| format!("`{key}` must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be a list of strings")),
    }
}

fn opt_str(v: &Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

impl KernelMetadata {
    /// The metadata of a companion kernel of the same owner (the smoke run, the toolchain
    /// kernel): this one's settings under the slug `slug` and `title`, as a new kernel.
    pub fn companion(&self, slug: &str, title: &str) -> KernelMetadata {
        let mut k = self.clone();
        k.id = Ref {
            owner: self.id.owner.clone(),
            slug: slug.into(),
        };
        k.id_no = None;
        k.title = title.into();
        k
    }

    /// Read and validate `path`. Every problem is reported before any request is made.
    pub fn load(path: &Path) -> Result<Self, KaggleError> {
        let text = std::fs::read_to_string(path).map_err(|e| KaggleError::InvalidMetadata {
            path: path.to_path_buf(),
            detail: format!("cannot read it ({e}); create it with kaggle_setup"),
        })?;
        let raw: Value = serde_json::from_str(&text).map_err(|e| KaggleError::InvalidMetadata {
            path: path.to_path_buf(),
            detail: format!("not valid JSON ({e})"),
        })?;
        Self::from_value(path, raw).map_err(|detail| KaggleError::InvalidMetadata {
            path: path.to_path_buf(),
            detail,
        })
    }

    fn from_value(path: &Path, raw: Value) -> Result<Self, String> {
        if !raw.is_object() {
            return Err("the top level must be a JSON object".into());
        }
        let id_str = opt_str(&raw, "id")?.ok_or("`id` (\"owner/kernel-slug\") is missing")?;
        let id = Ref::parse(&id_str).ok_or_else(|| {
            format!("`id` must look like \"owner/kernel-slug\", found {id_str:?}")
        })?;
        if id.slug.len() < 5 {
            return Err(format!(
                "the kernel slug {:?} must have at least 5 characters",
                id.slug
            ));
        }
        let id_no = match raw.get("id_no") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .ok_or("`id_no` must be an integer")?,
            ),
        };
        let title = opt_str(&raw, "title")?.ok_or("`title` is missing")?;
        if title.len() < 5 {
            return Err("`title` must have at least 5 characters".into());
        }
        if slugify(&title) != id.slug {
            return Err(format!(
                "`title` {title:?} slugifies to {:?} but the id's slug is {:?}; Kaggle answers 409 for such pairs",
                slugify(&title),
                id.slug
            ));
        }
        let code = opt_str(&raw, "code_file")?.ok_or("`code_file` is missing")?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let code_file = if Path::new(&code).is_absolute() {
            PathBuf::from(&code)
        } else {
            dir.join(&code)
        };
        let language = opt_str(&raw, "language")?.ok_or("`language` is missing")?;
        if language != "python" {
            return Err(format!(
                "`language` must be \"python\" (Kaggle runs our notebook through a python3 kernel), found {language:?}"
            ));
        }
        let kt = opt_str(&raw, "kernel_type")?.ok_or("`kernel_type` is missing")?;
        if kt != "notebook" {
            return Err(format!("`kernel_type` must be \"notebook\", found {kt:?}"));
        }
        let dataset_sources = str_list(&raw, "dataset_sources")?;
        for s in &dataset_sources {
            let parts: Vec<&str> = s.split('/').collect();
            let ok = (parts.len() == 2 || (parts.len() == 3 && parts[2].parse::<u32>().is_ok()))
                && Ref::parse(&format!("{}/{}", parts[0], parts[1])).is_some();
            if !ok {
                return Err(format!(
                    "dataset source {s:?} must be \"owner/dataset-slug\" (optionally \"/VERSION\")"
                ));
            }
        }
        let kernel_sources = str_list(&raw, "kernel_sources")?;
        for s in &kernel_sources {
            if Ref::parse(s).is_none() {
                return Err(format!("kernel source {s:?} must be \"owner/kernel-slug\""));
            }
        }
        let model_sources = str_list(&raw, "model_sources")?;
        for s in &model_sources {
            let parts: Vec<&str> = s.split('/').collect();
            if parts.len() != 5 || parts[4].parse::<u32>().is_err() {
                return Err(format!(
                    "model source {s:?} must be \"owner/model/framework/variation/VERSION\""
                ));
            }
        }
        let pinning = opt_str(&raw, "docker_image_pinning_type")?;
        if let Some(p) = &pinning {
            if p != "original" && p != "latest" {
                return Err(format!(
                    "`docker_image_pinning_type` must be \"original\" or \"latest\", found {p:?}"
                ));
            }
        }
        if bool_field(&raw, "enable_tpu", false)? {
            return Err("`enable_tpu` must be false: the training runs on GPU".into());
        }
        Ok(KernelMetadata {
            path: path.to_path_buf(),
            id,
            id_no,
            title,
            code_file,
            is_private: bool_field(&raw, "is_private", true)?,
            enable_gpu: bool_field(&raw, "enable_gpu", false)?,
            enable_internet: bool_field(&raw, "enable_internet", true)?,
            machine_shape: opt_str(&raw, "machine_shape")?,
            keywords: str_list(&raw, "keywords")?,
            dataset_sources,
            kernel_sources,
            competition_sources: str_list(&raw, "competition_sources")?,
            model_sources,
            docker_image: opt_str(&raw, "docker_image")?,
            docker_image_pinning_type: pinning,
            raw,
        })
    }

    /// The `SaveKernel` body for notebook `text`; `quick_save` saves without running.
    pub fn save_request(
        &self,
        text: String,
        quick_save: bool,
        send_id_no: bool,
    ) -> SaveKernelRequest {
        SaveKernelRequest {
            id: if send_id_no { self.id_no } else { None },
            slug: self.id.to_string(),
            new_title: self.title.clone(),
            text,
            language: "python".into(),
            kernel_type: "notebook".into(),
            dataset_data_sources: self.dataset_sources.clone(),
            kernel_data_sources: self.kernel_sources.clone(),
            competition_data_sources: self.competition_sources.clone(),
            model_data_sources: self.model_sources.clone(),
            category_ids: self.keywords.clone(),
            is_private: self.is_private,
            enable_gpu: self.enable_gpu,
            enable_internet: self.enable_internet,
            enable_tpu: false,
            docker_image: self.docker_image.clone(),
            docker_image_pinning_type: self.docker_image_pinning_type.clone(),
            session_timeout_seconds: None,
            kernel_execution_type: quick_save.then(|| "QUICK_SAVE".to_string()),
            machine_shape: self.machine_shape.clone(),
        }
    }

    /// Where the run-state file lives (next to the metadata).
    pub fn state_path(&self) -> PathBuf {
        state_path_for(&self.path)
    }
}

/// The run-state path for a metadata file.
pub fn state_path_for(metadata: &Path) -> PathBuf {
    metadata.parent().unwrap_or(Path::new(".")).join(STATE_FILE)
}

/// The run `kaggle_run` started last, so `status` and `download` follow it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunState {
    /// Kernel `owner/slug`.
    pub kernel: String,
    /// Version number of the run.
    pub version: i64,
    /// Kernel web page.
    pub url: String,
    /// When the run was started (Unix seconds).
    pub started_unix: u64,
}

impl RunState {
    /// Read the state file; `Ok(None)` when absent.
    pub fn load(path: &Path) -> Result<Option<Self>, KaggleError> {
        load_state(
            path,
            "run-state file is damaged",
            "delete it or run kaggle_run again",
        )
    }

    /// Write the state file atomically.
    pub fn save(&self, path: &Path) -> Result<(), KaggleError> {
        save_state(path, self)
    }
}

/// Reads a helper's small JSON state file; `Ok(None)` when there is none. A file that does
/// not parse is an error saying `what ({parse error}); {fix}`.
pub(crate) fn load_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    fix: &str,
) -> Result<Option<T>, KaggleError> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| KaggleError::InvalidMetadata {
                path: path.to_path_buf(),
                detail: format!("{what} ({e}); {fix}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KaggleError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes a helper's JSON state file atomically (temporary file, then rename).
pub(crate) fn save_state<T: serde::Serialize>(path: &Path, state: &T) -> Result<(), KaggleError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).expect("serialisable") + "\n";
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| KaggleError::Io {
            action: "cannot write",
            path: path.to_path_buf(),
            source: e,
        })
}

/// Add `dataset` to `dataset_sources` of the metadata file, keeping everything else; returns
/// false when it was already listed (with or without a version suffix).
pub fn add_dataset_source(path: &Path, dataset: &str) -> Result<bool, KaggleError> {
    add_source(path, "dataset_sources", dataset)
}

/// Adds `kernel` (`owner/slug`) to `kernel_sources` in the metadata file unless present;
/// `Ok(true)` when the file was changed.
pub fn add_kernel_source(path: &Path, kernel: &str) -> Result<bool, KaggleError> {
    add_source(path, "kernel_sources", kernel)
}

fn add_source(path: &Path, key: &str, dataset: &str) -> Result<bool, KaggleError> {
    let bad = |detail: String| KaggleError::InvalidMetadata {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| KaggleError::Io {
        action: "cannot read",
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut v: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let arr = v
        .as_object_mut()
        .ok_or_else(|| bad("the top level must be a JSON object".into()))?
        .entry(key)
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| bad(format!("`{key}` must be a list of strings")))?;
    let present = arr
        .iter()
        .filter_map(|s| s.as_str())
        .any(|s| s == dataset || s.starts_with(&format!("{dataset}/")));
    if present {
        return Ok(false);
    }
    arr.push(json!(dataset));
    std::fs::write(
        path,
        serde_json::to_string_pretty(&v).expect("serialisable") + "\n",
    )
    .map_err(|e| KaggleError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(true)
}

/// Current Unix time in seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_value(v: Value) -> Result<KernelMetadata, String> {
        KernelMetadata::from_value(Path::new("notebooks/kernel-metadata.json"), v)
    }

    #[test]
    fn default_metadata_is_valid() {
        let m = load_value(default_metadata("fake-user", true, true)).unwrap();
        assert_eq!(m.id.to_string(), "fake-user/emergence-lab-training");
        assert_eq!(m.machine_shape.as_deref(), Some("NvidiaTeslaT4"));
        assert!(m.enable_gpu && m.enable_internet && m.is_private);
        assert_eq!(
            m.code_file,
            PathBuf::from("notebooks/kaggle_training.ipynb")
        );
        let r = m.save_request("{}".into(), true, true);
        assert_eq!(r.kernel_execution_type.as_deref(), Some("QUICK_SAVE"));
    }

    #[test]
    fn slug_rule() {
        assert_eq!(slugify("Emergence Lab Training"), "emergence-lab-training");
        assert_eq!(slugify("  A -- b!!C "), "a-b-c");
    }

    #[test]
    fn rejections_name_the_field() {
        let base = default_metadata("u", false, false);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("id", json!("nouser"), "id"),
            ("id", json!("u/abc"), "5 characters"),
            ("title", json!("Something Else"), "slugifies"),
            ("language", json!("r"), "language"),
            ("kernel_type", json!("script"), "kernel_type"),
            ("is_private", json!("maybe"), "is_private"),
            ("dataset_sources", json!(["bad"]), "dataset source"),
            ("kernel_sources", json!([1]), "kernel_sources"),
            ("model_sources", json!(["a/b/c"]), "model source"),
            ("enable_tpu", json!(true), "enable_tpu"),
        ];
        for (key, val, needle) in cases {
            let mut v = base.clone();
            v[key] = val;
            let e = load_value(v).unwrap_err();
            assert!(e.contains(needle), "{key}: {e}");
        }
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("code_file");
        assert!(load_value(v).unwrap_err().contains("code_file"));
    }

    #[test]
    fn string_booleans_accepted() {
        let mut v = default_metadata("u", false, false);
        v["enable_gpu"] = json!("False");
        assert!(!load_value(v).unwrap().enable_gpu);
    }
}
