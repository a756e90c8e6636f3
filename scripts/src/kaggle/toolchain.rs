//! The toolchain kernel (`kaggle_run --toolchain`): a CPU-only Kaggle kernel, internet on,
//! that runs the training notebook's setup, GPU, source and build cells (installing the Rust
//! toolchain, building evcxr_jupyter, installing the libtorch the GPU sessions will use and
//! compiling tch, torch-sys and the library in evcxr's build folder) and then packs all of it
//! into its output with a manifest (`emergence-lab-toolchain.json`). Training kernels list it in
//! `kernel_sources`; their setup cell restores it after checking the versions.

use serde_json::{json, Value};

/// Kernel slug of the toolchain kernel.
pub const TOOLCHAIN_SLUG: &str = "emergence-lab-toolchain";
/// Its title (slugifies to [`TOOLCHAIN_SLUG`]).
pub const TOOLCHAIN_TITLE: &str = "Emergence Lab Toolchain";
/// The manifest file the toolchain kernel leaves in its output.
pub const TOOLCHAIN_MANIFEST: &str = "emergence-lab-toolchain.json";
/// torch builds the toolchain kernel can install (the setup cell's list plus `cpu`).
pub const TORCH_BUILDS: &[&str] = &["cu130", "cu128", "cu126", "cpu"];
/// Default build: CUDA 12.6 runs on the widest range of drivers and has kernels for the T4
/// (sm_75) and the P100 (sm_60), Kaggle's GPUs.
pub const DEFAULT_TORCH: &str = "cu126";

/// Tags of the training notebook's cells the toolchain kernel runs (the build cell compiles
/// everything the training sessions need; training itself is left out).
const KEPT_TAGS: &[&str] = &["emergence-lab-setup", "gpu", "source", "build"];

/// Why a toolchain notebook cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// The torch build is not one the setup cell knows.
    #[error("unknown torch build {0:?}: use one of {builds}", builds = TORCH_BUILDS.join(", "))]
    UnknownTorch(String),
    /// The Kaggle notebook is not JSON with a cell list.
    #[error("the generated Kaggle notebook is not valid ({0})")]
    BadNotebook(String),
    /// A cell the toolchain kernel needs is missing.
    #[error("the training notebook has no cell tagged `{0}`: the toolchain kernel runs the cells tagged {tags}", tags = KEPT_TAGS.join(", "))]
    MissingCell(&'static str),
}

fn tags(cell: &Value) -> Vec<&str> {
    cell["metadata"]["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn code_cell(tag: &str, source: String) -> Value {
    json!({"cell_type": "code", "id": tag, "metadata": {"tags": [tag]},
           "execution_count": null, "outputs": [], "source": source})
}

/// The toolchain kernel's notebook (JSON text), made from the generated Kaggle training
/// notebook `kaggle_text`: a first cell that selects the torch build and the toolchain mode,
/// the setup, GPU, source and build cells, and a last cell that packs the cache.
pub fn toolchain_notebook(kaggle_text: &str, torch: &str) -> Result<String, ToolchainError> {
    if !TORCH_BUILDS.contains(&torch) {
        return Err(ToolchainError::UnknownTorch(torch.to_string()));
    }
    let mut nb: Value = serde_json::from_str(kaggle_text)
        .map_err(|e| ToolchainError::BadNotebook(e.to_string()))?;
    let cells = nb["cells"]
        .as_array()
        .ok_or_else(|| ToolchainError::BadNotebook("no `cells` list".into()))?;
    let mut kept = vec![code_cell(
        "emergence-lab-toolchain-mode",
        format!(
            "# kaggle_run --toolchain: build the toolchain cache for the training sessions.\n\
             import os\n\
             os.environ[\"EMERGENCE_LAB_TOOLCHAIN_BUILD\"] = {}\n\
             os.environ.setdefault(\"EMERGENCE_LAB_KEEP_TOOLS\", \"0\")\n\
             print(\"toolchain kernel: torch build\", os.environ[\"EMERGENCE_LAB_TOOLCHAIN_BUILD\"])",
            serde_json::to_string(torch).expect("a string")
        ),
    )];
    for tag in KEPT_TAGS {
        let cell = cells
            .iter()
            .find(|c| tags(c).contains(tag))
            .ok_or(ToolchainError::MissingCell(tag))?;
        kept.push(cell.clone());
    }
    kept.push(code_cell(
        "emergence-lab-toolchain-pack",
        "# Pack the toolchain into this kernel's output (read by the training sessions' setup cell).\n\
         import json, os\n\
         _root = os.environ.get(\"EMERGENCE_LAB_KAGGLE_ROOT\", \"/kaggle\")\n\
         _s = _EMERGENCE_LAB_RUST\n\
         _m = _emergence_lab_pack_toolchain(\n\
         \x20   os.path.join(_root, \"working\"), _s[\"evcxr\"], _s[\"evcxr_tmp\"], _s[\"libtorch\"],\n\
         \x20   None if os.environ.get(\"EMERGENCE_LAB_LIBTORCH\") else _s[\"toolchain_build\"],\n\
         \x20   _source_cargo_lock(os.path.join(_root, \"input\")),\n\
         \x20   rust_home=None if os.environ.get(\"EMERGENCE_LAB_PACK_RUST\") == \"0\" else os.path.expanduser(\"~\"))\n\
         print(\"toolchain cache written:\", json.dumps(_m, indent=1))"
            .to_string(),
    ));
    nb["cells"] = Value::Array(kept);
    Ok(serde_json::to_string_pretty(&nb).expect("serialisable") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../notebooks/kaggle_training.ipynb"
        );
        let text = std::fs::read_to_string(path).unwrap();
        crate::notebook::kaggle_notebook_from_rust(&text).unwrap()
    }

    #[test]
    fn keeps_the_build_cells_and_packs_without_training() {
        let nb: Value =
            serde_json::from_str(&toolchain_notebook(&training(), "cu128").unwrap()).unwrap();
        let cells = nb["cells"].as_array().unwrap();
        let all_tags: Vec<&str> = cells.iter().flat_map(tags).collect();
        assert_eq!(
            all_tags,
            vec![
                "emergence-lab-toolchain-mode",
                "emergence-lab-setup",
                "gpu",
                "source",
                "build",
                "emergence-lab-toolchain-pack"
            ]
        );
        assert!(cells[0]["source"].as_str().unwrap().contains("\"cu128\""));
        assert!(cells[5]["source"]
            .as_str()
            .unwrap()
            .contains("_emergence_lab_pack_toolchain("));
        assert!(crate::notebook::KAGGLE_SETUP_CELL.contains("def _emergence_lab_pack_toolchain("));
        assert_eq!(nb["metadata"]["kernelspec"]["name"], "python3");
    }

    #[test]
    fn refuses_unknown_builds_and_notebooks_without_the_cells() {
        let e = toolchain_notebook(&training(), "cu999")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cu126") && e.contains("cu999"), "{e}");
        let no_build = r#"{"cells": [{"cell_type": "code", "metadata": {"tags": ["emergence-lab-setup"]}, "source": ""}]}"#;
        let e = toolchain_notebook(no_build, "cu126")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`gpu`"), "{e}");
        assert!(toolchain_notebook("{", "cu126").is_err());
    }
}
