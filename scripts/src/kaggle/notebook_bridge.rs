//! Turns the notebook file named in the kernel metadata into the text `SaveKernel` sends.
//! A Rust (evcxr) notebook is converted into the Kaggle-runnable python3 notebook by
//! [`crate::notebook::kaggle_notebook_from_rust`]; a python3 notebook is sent as it is.

use super::error::KaggleError;
use serde_json::Value;
use std::path::Path;

/// Check that `text` is a Jupyter notebook (JSON object with a `cells` list, nbformat 4 when
/// given) and return it normalised like the official CLI: code-cell outputs emptied,
/// list-form `source` joined into one string, everything else unchanged.
pub fn validate_notebook(path: &Path, text: &str) -> Result<Value, KaggleError> {
    let bad = |detail: String| KaggleError::InvalidNotebook {
        path: path.to_path_buf(),
        detail,
    };
    let mut nb: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    if let Some(v) = nb.get("nbformat") {
        if v.as_u64() != Some(4) {
            return Err(bad(format!("nbformat is {v}, expected 4")));
        }
    }
    let cells = nb
        .get_mut("cells")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no `cells` list".into()))?;
    if cells.is_empty() {
        return Err(bad("the notebook has no cells".into()));
    }
    for (i, c) in cells.iter_mut().enumerate() {
        let kind = c
            .get("cell_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !["code", "markdown", "raw"].contains(&kind.as_str()) {
            return Err(bad(format!("cell {i} has no valid `cell_type`")));
        }
        match c.get("source") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                let joined: Option<String> = parts.iter().map(|p| p.as_str()).collect();
                let joined =
                    joined.ok_or_else(|| bad(format!("cell {i} `source` must be text")))?;
                c["source"] = Value::String(joined);
            }
            _ => return Err(bad(format!("cell {i} has no `source`"))),
        }
        if kind == "code" {
            c["outputs"] = Value::Array(vec![]);
        }
    }
    Ok(nb)
}

/// The Kaggle-runnable notebook text for the notebook at `path`.
///
/// The notebook is validated first (nothing is sent when it is invalid). A notebook whose
/// kernelspec is not python3 (our Rust notebook) is converted: the setup cell first, every
/// code cell run through `%%rust`; the result is normalised like the official CLI does
/// (see [`validate_notebook`]).
pub fn kaggle_notebook_text(path: &Path) -> Result<String, KaggleError> {
    let text = std::fs::read_to_string(path).map_err(|e| KaggleError::InvalidNotebook {
        path: path.to_path_buf(),
        detail: format!("cannot read it ({e})"),
    })?;
    let nb = validate_notebook(path, &text)?;
    let kernel = nb["metadata"]["kernelspec"]["name"].as_str().unwrap_or("");
    if kernel == "python3" || kernel.is_empty() {
        return Ok(serde_json::to_string(&nb).expect("serialisable"));
    }
    let converted = crate::notebook::kaggle_notebook_from_rust(&text).map_err(|e| {
        KaggleError::InvalidNotebook {
            path: path.to_path_buf(),
            detail: format!("cannot convert it for Kaggle ({e:#})"),
        }
    })?;
    let nb = validate_notebook(path, &converted)?;
    Ok(serde_json::to_string(&nb).expect("serialisable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_the_cli() {
        let nb = r##"{"cells":[{"cell_type":"code","source":["a\n","b"],"outputs":[1],"metadata":{}},
            {"cell_type":"markdown","source":"# t","metadata":{}}],"metadata":{"kernelspec":{"name":"python3"}},"nbformat":4,"nbformat_minor":4}"##;
        let v = validate_notebook(Path::new("x.ipynb"), nb).unwrap();
        assert_eq!(v["cells"][0]["source"], "a\nb");
        assert_eq!(v["cells"][0]["outputs"], serde_json::json!([]));
        assert_eq!(v["metadata"]["kernelspec"]["name"], "python3");
    }

    #[test]
    fn rust_notebooks_are_converted_for_kaggle() {
        let dir = std::env::temp_dir().join(format!("nb-bridge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rust.ipynb");
        let nb = r##"{"cells":[{"cell_type":"code","source":"let x = 1;","outputs":[],"metadata":{},"execution_count":null},
            {"cell_type":"markdown","source":"# t","metadata":{}}],
            "metadata":{"kernelspec":{"name":"emergence-lab-rust","display_name":"Rust","language":"rust"}},"nbformat":4,"nbformat_minor":4}"##;
        std::fs::write(&path, nb).unwrap();
        let out: Value = serde_json::from_str(&kaggle_notebook_text(&path).unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(out["metadata"]["kernelspec"]["name"], "python3");
        let cells = out["cells"].as_array().unwrap();
        assert!(cells.len() >= 3, "setup cell + the two cells");
        let rust_cell = cells
            .iter()
            .find(|c| c["source"].as_str().unwrap_or("").contains("let x = 1;"))
            .expect("the Rust cell is kept");
        assert!(rust_cell["source"].as_str().unwrap().starts_with("%%rust"));
    }

    #[test]
    fn rejects_bad_notebooks() {
        for (nb, needle) in [
            ("{not json", "JSON"),
            ("[]", "cells"),
            (r#"{"cells":[]}"#, "no cells"),
            (r#"{"cells":[{"source":"x"}]}"#, "cell_type"),
            (r#"{"cells":[{"cell_type":"code"}]}"#, "source"),
            (
                r#"{"cells":[{"cell_type":"code","source":"x"}],"nbformat":3}"#,
                "nbformat",
            ),
        ] {
            let e = validate_notebook(Path::new("x.ipynb"), nb)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{nb}: {e}");
        }
    }
}
