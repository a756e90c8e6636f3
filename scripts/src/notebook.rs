//! Generation of the Kaggle notebook from the Rust (evcxr) training notebook.
//!
//! Kaggle only runs Python kernels, so the generated notebook starts with the custom setup cell
//! (`kernel/kaggle_setup.py`, which starts an evcxr kernel and registers the `%%rust` magic) and
//! sends every Rust code cell through `%%rust`; markdown is kept and all outputs are cleared.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// The Python setup cell placed first in every generated Kaggle notebook.
pub const KAGGLE_SETUP_CELL: &str = include_str!("../../kernel/kaggle_setup.py");

/// The cell magic that hands a cell to the evcxr kernel started by the setup cell.
pub const RUST_MAGIC: &str = "%%rust";

/// Id of the generated setup cell (nbformat 4.5 cell ids).
pub const SETUP_CELL_ID: &str = "emergence-lab-setup";

/// Turn the Rust notebook's JSON into the Kaggle notebook's JSON (python3 kernelspec).
///
/// The setup cell comes first; every code cell is prefixed with `%%rust` (unless it already
/// starts with it), markdown and raw cells are kept, outputs and execution counts are cleared,
/// and every cell gets a unique id. Errors say which cell is malformed and how.
pub fn kaggle_notebook_from_rust(rust_nb_json: &str) -> Result<String> {
    let nb: Value = serde_json::from_str(rust_nb_json)
        .context("the Rust notebook is not valid JSON (is it an .ipynb file?)")?;
    let obj = nb
        .as_object()
        .context("the Rust notebook must be a JSON object with a `cells` list")?;
    match obj.get("nbformat") {
        Some(v) if v.as_u64() == Some(4) => {}
        Some(v) => bail!("the Rust notebook has nbformat {v}; only nbformat 4 is supported (re-save it with Jupyter)"),
        None => bail!("the Rust notebook has no `nbformat` field; only nbformat 4 notebooks are supported"),
    }
    let cells = obj
        .get("cells")
        .and_then(Value::as_array)
        .context("the Rust notebook has no `cells` list")?;
    if !cells
        .iter()
        .any(|c| c.get("cell_type").and_then(Value::as_str) == Some("code"))
    {
        bail!("the Rust notebook has no code cells: nothing to run on Kaggle");
    }

    let mut used_ids: HashSet<String> = HashSet::from([SETUP_CELL_ID.to_string()]);
    let mut out_cells = vec![json!({
        "cell_type": "code",
        "id": SETUP_CELL_ID,
        "metadata": {"tags": ["emergence-lab-setup"]},
        "execution_count": null,
        "outputs": [],
        "source": KAGGLE_SETUP_CELL,
    })];
    for (i, cell) in cells.iter().enumerate() {
        out_cells.push(convert_cell(i, cell, &mut used_ids)?);
    }

    let mut metadata = obj
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    metadata.insert(
        "kernelspec".into(),
        json!({"name": "python3", "display_name": "Python 3", "language": "python"}),
    );
    metadata.insert("language_info".into(), json!({"name": "python"}));
    let out = json!({
        "cells": out_cells,
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    });
    Ok(serde_json::to_string_pretty(&out)? + "\n")
}

/// Convert one cell of the Rust notebook (index `i`, for error messages).
fn convert_cell(i: usize, cell: &Value, used_ids: &mut HashSet<String>) -> Result<Value> {
    let c = cell
        .as_object()
        .with_context(|| format!("cell {i} is not a JSON object"))?;
    let kind = c
        .get("cell_type")
        .and_then(Value::as_str)
        .with_context(|| format!("cell {i} has no `cell_type` (expected code, markdown or raw)"))?;
    let source = source_text(c.get("source")).with_context(|| format!("cell {i} ({kind})"))?;
    let metadata = c
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let id = unique_id(c.get("id").and_then(Value::as_str), i, used_ids);
    Ok(match kind {
        "code" => {
            let source = if source.trim_start().starts_with(RUST_MAGIC) {
                source
            } else {
                format!("{RUST_MAGIC}\n{source}")
            };
            json!({"cell_type": "code", "id": id, "metadata": metadata,
                   "execution_count": null, "outputs": [], "source": source})
        }
        "markdown" | "raw" => {
            let mut out =
                json!({"cell_type": kind, "id": id, "metadata": metadata, "source": source});
            if let Some(att) = c.get("attachments") {
                out["attachments"] = att.clone();
            }
            out
        }
        other => bail!("cell {i} has cell_type `{other}`; expected code, markdown or raw"),
    })
}

/// A cell's source as one string (nbformat allows a string or a list of strings).
fn source_text(source: Option<&Value>) -> Result<String> {
    match source {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| p.as_str().context("`source` list holds a non-string item"))
            .collect(),
        Some(_) => bail!("`source` must be a string or a list of strings"),
        None => bail!("has no `source`"),
    }
}

/// Keep a valid, unused cell id, else make one (`cell-<i>`, suffixed until unused).
fn unique_id(given: Option<&str>, i: usize, used: &mut HashSet<String>) -> String {
    let valid = |s: &str| {
        (1..=64).contains(&s.len())
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    };
    let mut id = match given {
        Some(s) if valid(s) && !used.contains(s) => s.to_string(),
        _ => format!("cell-{i}"),
    };
    let mut n = 1;
    while used.contains(&id) {
        id = format!("cell-{i}-{n}");
        n += 1;
    }
    used.insert(id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust_nb(cells: Value) -> String {
        json!({
            "cells": cells,
            "metadata": {"kernelspec": {"name": "emergence-lab-rust", "display_name": "Rust", "language": "rust"},
                          "language_info": {"name": "Rust"}, "custom": 1},
            "nbformat": 4, "nbformat_minor": 5
        })
        .to_string()
    }

    fn generate(cells: Value) -> Value {
        serde_json::from_str(&kaggle_notebook_from_rust(&rust_nb(cells)).unwrap()).unwrap()
    }

    #[test]
    fn setup_first_rust_cells_prefixed_markdown_kept() {
        let out = generate(json!([
            {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": ["# Title\n", "text"]},
            {"cell_type": "code", "id": "c1", "metadata": {"x": 1}, "execution_count": 3,
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}],
             "source": ["let a = 1;\n", "println!(\"{a}\");"]},
            {"cell_type": "code", "id": "c2", "metadata": {}, "outputs": [], "source": "%%rust\n:opt 2"}
        ]));
        let cells = out["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[0]["id"], SETUP_CELL_ID);
        assert_eq!(cells[0]["source"], KAGGLE_SETUP_CELL);
        assert!(
            KAGGLE_SETUP_CELL.contains("register_magic_function"),
            "setup cell registers %%rust"
        );
        assert_eq!(cells[1]["cell_type"], "markdown");
        assert_eq!(cells[1]["source"], "# Title\ntext");
        assert_eq!(cells[2]["source"], "%%rust\nlet a = 1;\nprintln!(\"{a}\");");
        assert_eq!(cells[2]["outputs"], json!([]));
        assert_eq!(cells[2]["execution_count"], Value::Null);
        assert_eq!(cells[2]["metadata"], json!({"x": 1}));
        // Already prefixed: not doubled.
        assert_eq!(cells[3]["source"], "%%rust\n:opt 2");
        assert_eq!(out["metadata"]["kernelspec"]["name"], "python3");
        assert_eq!(out["metadata"]["language_info"]["name"], "python");
        assert_eq!(out["metadata"]["custom"], 1, "other metadata kept");
        assert_eq!(out["nbformat"], 4);
    }

    #[test]
    fn ids_are_unique_and_valid() {
        let out = generate(json!([
            {"cell_type": "code", "id": "same", "metadata": {}, "source": "1"},
            {"cell_type": "code", "id": "same", "metadata": {}, "source": "2"},
            {"cell_type": "code", "metadata": {}, "source": "3"},
            {"cell_type": "code", "id": "bad id!", "metadata": {}, "source": "4"},
            {"cell_type": "code", "id": SETUP_CELL_ID, "metadata": {}, "source": "5"}
        ]));
        let ids: Vec<&str> = out["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let set: HashSet<&&str> = ids.iter().collect();
        assert_eq!(set.len(), ids.len(), "{ids:?}");
        assert_eq!(ids[1], "same");
        assert!(ids.iter().all(|s| s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')));
    }

    #[test]
    fn generated_notebook_is_stable() {
        let nb = rust_nb(json!([{"cell_type": "code", "metadata": {}, "source": "1"}]));
        let once = kaggle_notebook_from_rust(&nb).unwrap();
        assert_eq!(once, kaggle_notebook_from_rust(&nb).unwrap());
    }

    #[test]
    fn invalid_notebooks_give_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("{oops", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"cells": []}"#, "nbformat"),
            (r#"{"cells": [], "nbformat": 3}"#, "nbformat 3"),
            (r#"{"nbformat": 4}"#, "no `cells`"),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "markdown", "source": "x"}]}"#,
                "no code cells",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code", "source": "x"}, 5]}"#,
                "cell 1 is not a JSON object",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code"}]}"#,
                "no `source`",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code", "source": 7}]}"#,
                "string or a list",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code", "source": ["a", 1]}]}"#,
                "non-string",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code", "source": "x"}, {"source": "y"}]}"#,
                "cell 1 has no `cell_type`",
            ),
            (
                r#"{"nbformat": 4, "cells": [{"cell_type": "code", "source": "x"}, {"cell_type": "plot", "source": "y"}]}"#,
                "`plot`",
            ),
        ];
        for (nb, needle) in cases {
            let err = format!("{:#}", kaggle_notebook_from_rust(nb).unwrap_err());
            assert!(
                err.contains(needle),
                "input {nb}: error `{err}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn the_repository_notebook_converts() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../notebooks/kaggle_training.ipynb"
        );
        let text = std::fs::read_to_string(path).expect("notebooks/kaggle_training.ipynb exists");
        let out: Value = serde_json::from_str(&kaggle_notebook_from_rust(&text).unwrap()).unwrap();
        let cells = out["cells"].as_array().unwrap();
        let rust_code = cells.iter().filter(|c| c["cell_type"] == "code").count() - 1;
        let src: Value = serde_json::from_str(&text).unwrap();
        let want = src["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["cell_type"] == "code")
            .count();
        assert_eq!(rust_code, want);
        for c in &cells[1..] {
            if c["cell_type"] == "code" {
                assert!(c["source"].as_str().unwrap().starts_with("%%rust\n"));
            }
        }
    }
}
