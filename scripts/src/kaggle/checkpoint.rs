//! Verification of downloaded checkpoints (format v1: safetensors with an
//! `emergence-lab-checkpoint` metadata block and a CRC-32C of the data section), in pure Rust.
//! Also finds checkpoints in a folder and picks the one to resume from.

use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest header accepted (safetensors' own limit is 100 MB).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// Why a checkpoint failed verification; the message names the file and the check.
#[derive(Debug, Error)]
#[error("checkpoint {path} failed verification: {check}", path = path.display())]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// Which check failed.
    pub check: String,
}

/// What a verified checkpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    /// The file.
    pub path: PathBuf,
    /// Training step.
    pub step: u64,
    /// PPO iteration.
    pub iteration: u64,
    /// `periodic`, `emergency`, `final` or `nonfinite`.
    pub kind: String,
    /// Number of tensors.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
}

fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Verify one checkpoint file: header, metadata, tensor offsets and the data CRC-32C.
/// Checks `header_crc32c`: the CRC-32C of the raw header bytes with the key's own 8 hex
/// digits replaced by `0`s (format v1). A changed tensor name, step or config fails it.
fn check_header_crc(raw: &[u8], stored: &str) -> Result<(), String> {
    const KEY: &[u8] = b"\"header_crc32c\":\"";
    let expected = u32::from_str_radix(stored, 16)
        .ok()
        .filter(|_| stored.len() == 8)
        .ok_or_else(|| format!("metadata `header_crc32c` {stored:?} is not 8 hex digits"))?;
    let mut hits = raw
        .windows(KEY.len())
        .enumerate()
        .filter(|(_, w)| *w == KEY);
    let at = match (hits.next(), hits.next()) {
        (Some((i, _)), None) if raw.len() >= i + KEY.len() + 9 => i + KEY.len(),
        _ => return Err("metadata `header_crc32c` is not found exactly once in the header".into()),
    };
    let mut copy = raw.to_vec();
    copy[at..at + 8].copy_from_slice(b"00000000");
    let actual = crc32c::crc32c(&copy);
    if actual != expected {
        return Err(format!(
            "header CRC-32C is {actual:08x}, metadata says {expected:08x} (header damaged)"
        ));
    }
    Ok(())
}

pub fn verify_checkpoint(path: &Path) -> Result<CheckpointInfo, CheckpointError> {
    let fail = |check: String| CheckpointError {
        path: path.to_path_buf(),
        check,
    };
    let file = File::open(path).map_err(|e| fail(format!("cannot open ({e})")))?;
    let bytes = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat ({e})")))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    if bytes < 8 {
        return Err(fail(format!(
            "file is {bytes} bytes, too short for a safetensors header"
        )));
    }
    let mut len8 = [0u8; 8];
    r.read_exact(&mut len8)
        .map_err(|e| fail(format!("cannot read header length ({e})")))?;
    let n = u64::from_le_bytes(len8);
    if n > MAX_HEADER || 8 + n > bytes {
        return Err(fail(format!(
            "header length {n} does not fit in a {bytes}-byte file (truncated or not safetensors)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    r.read_exact(&mut header)
        .map_err(|e| fail(format!("cannot read header ({e})")))?;
    let raw_header = header;
    let header: HashMap<String, Value> = serde_json::from_slice(&raw_header)
        .map_err(|e| fail(format!("header is not valid JSON ({e})")))?;
    let meta = header
        .get("__metadata__")
        .and_then(Value::as_object)
        .ok_or_else(|| fail("no __metadata__ block".into()))?;
    let get = |k: &str| meta.get(k).and_then(Value::as_str);
    match get("format") {
        Some("emergence-lab-checkpoint") => {}
        other => {
            return Err(fail(format!(
                "metadata format is {other:?}, expected \"emergence-lab-checkpoint\""
            )))
        }
    }
    match get("format_version") {
        Some("1") => {}
        other => {
            return Err(fail(format!(
                "unknown format_version {other:?} (this helper reads version 1)"
            )))
        }
    }
    let num = |k: &str| -> Result<u64, CheckpointError> {
        get(k)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("metadata `{k}` is missing or not an integer")))
    };
    let step = num("step")?;
    let iteration = num("iteration")?;
    let kind = get("kind").unwrap_or("").to_string();
    if !["periodic", "emergency", "final", "nonfinite"].contains(&kind.as_str()) {
        return Err(fail(format!(
            "metadata `kind` {kind:?} is not periodic/emergency/final/nonfinite"
        )));
    }
    let header_crc =
        get("header_crc32c").ok_or_else(|| fail("metadata `header_crc32c` is missing".into()))?;
    check_header_crc(&raw_header, header_crc).map_err(fail)?;
    let crc_hex =
        get("data_crc32c").ok_or_else(|| fail("metadata `data_crc32c` is missing".into()))?;
    let want_crc = u32::from_str_radix(crc_hex, 16)
        .ok()
        .filter(|_| crc_hex.len() == 8)
        .ok_or_else(|| {
            fail(format!(
                "metadata `data_crc32c` {crc_hex:?} is not 8 hex digits"
            ))
        })?;
    let data_len = bytes - 8 - n;
    let mut last = 0u64;
    let mut tensors = 0usize;
    for (name, t) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        tensors += 1;
        let dtype = t.get("dtype").and_then(Value::as_str).unwrap_or("");
        let size = dtype_size(dtype)
            .ok_or_else(|| fail(format!("tensor {name:?} has unknown dtype {dtype:?}")))?;
        let shape: Option<Vec<u64>> = t
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let shape = shape.ok_or_else(|| fail(format!("tensor {name:?} has no valid shape")))?;
        let offs: Option<Vec<u64>> = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect());
        let (b, e) = match offs.as_deref() {
            Some([b, e]) if b <= e => (*b, *e),
            _ => return Err(fail(format!("tensor {name:?} has invalid data_offsets"))),
        };
        if e > data_len {
            return Err(fail(format!(
                "tensor {name:?} ends at byte {e} but the data section has {data_len} bytes (truncated file)"
            )));
        }
        let expect = shape.iter().try_fold(size, |acc, d| acc.checked_mul(*d));
        if expect != Some(e - b) {
            return Err(fail(format!(
                "tensor {name:?} occupies {} bytes, dtype x shape needs {expect:?}",
                e - b
            )));
        }
        last = last.max(e);
    }
    if last != data_len {
        return Err(fail(format!(
            "data section has {data_len} bytes but tensors end at {last}"
        )));
    }
    r.seek(SeekFrom::Start(8 + n))
        .map_err(|e| fail(format!("cannot seek ({e})")))?;
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = r
            .read(&mut buf)
            .map_err(|e| fail(format!("cannot read data ({e})")))?;
        if k == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..k]);
    }
    if crc != want_crc {
        return Err(fail(format!(
            "data CRC-32C is {crc:08x}, metadata says {want_crc:08x} (file damaged)"
        )));
    }
    Ok(CheckpointInfo {
        path: path.to_path_buf(),
        step,
        iteration,
        kind,
        tensors,
        bytes,
    })
}

/// All `*.safetensors` files under `dir` (recursively), skipping temporary `.*.tmp.*` files.
pub fn find_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".safetensors")
                && !(name.starts_with('.') && name.contains(".tmp."))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The checkpoint to resume from: a good `latest.safetensors` if present, else the good
/// checkpoint with the highest step (never a `nonfinite` debug save).
pub fn pick_resume(good: &[CheckpointInfo]) -> Option<&CheckpointInfo> {
    let usable = good.iter().filter(|c| c.kind != "nonfinite");
    let latest = good.iter().filter(|c| c.kind != "nonfinite").find(|c| {
        c.path
            .file_name()
            .map(|n| n == "latest.safetensors")
            .unwrap_or(false)
    });
    let best = usable.max_by_key(|c| {
        (
            c.step,
            c.path.file_name().map(|n| n != "latest.safetensors"),
        )
    });
    match (latest, best) {
        (Some(l), Some(b)) if b.step > l.step => Some(b),
        (Some(l), _) => Some(l),
        (None, b) => b,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Write a format-v1 checkpoint (test helper, also used by integration tests' twin).
    pub fn write_checkpoint(path: &Path, step: u64, kind: &str) {
        let data: Vec<u8> = (0..24u8).collect();
        let crc = crc32c::crc32c(&data);
        let header = json!({
            "__metadata__": {"format": "emergence-lab-checkpoint", "format_version": "1",
                "step": step.to_string(), "iteration": "2", "kind": kind, "config": "{}",
                "trackers": "{}", "metrics": "[]", "created_unix": "0",
                "data_crc32c": format!("{crc:08x}"), "header_crc32c": "00000000"},
            "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}
        });
        let mut h = serde_json::to_vec(&header).unwrap();
        // header_crc32c: CRC-32C of the header with its own digits zeroed, patched in place.
        let key = b"\"header_crc32c\":\"";
        let at = h.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        let hcrc = format!("{:08x}", crc32c::crc32c(&h));
        h[at..at + 8].copy_from_slice(hcrc.as_bytes());
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn good_file_verifies() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("step_100.safetensors");
        write_checkpoint(&p, 100, "periodic");
        let info = verify_checkpoint(&p).unwrap();
        assert_eq!((info.step, info.iteration, info.tensors), (100, 2, 2));
    }

    #[test]
    fn damage_is_detected_and_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("step_1.safetensors");
        write_checkpoint(&p, 1, "periodic");
        let good = std::fs::read(&p).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&p, &flipped).unwrap();
        let e = verify_checkpoint(&p).unwrap_err().to_string();
        assert!(e.contains("CRC") && e.contains("step_1"), "{e}");
        std::fs::write(&p, &good[..good.len() - 4]).unwrap();
        assert!(verify_checkpoint(&p)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&p, b"\x05\0\0\0\0\0\0\0garbage").unwrap();
        assert!(verify_checkpoint(&p)
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        std::fs::write(&p, b"abc").unwrap();
        assert!(verify_checkpoint(&p)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        // A changed number in the header (step 1 -> 7) keeps valid JSON and data: only the
        // header checksum can tell.
        let text = String::from_utf8_lossy(&good).into_owned();
        let edited = text.replacen("\"step\":\"1\"", "\"step\":\"7\"", 1);
        assert_ne!(edited, text);
        std::fs::write(&p, edited.as_bytes()).unwrap();
        let e = verify_checkpoint(&p).unwrap_err().to_string();
        assert!(e.contains("header CRC-32C"), "{e}");
    }

    #[test]
    fn resume_choice() {
        let mk = |name: &str, step, kind: &str| CheckpointInfo {
            path: PathBuf::from(name),
            step,
            iteration: 0,
            kind: kind.into(),
            tensors: 1,
            bytes: 1,
        };
        let v = vec![
            mk("step_5.safetensors", 5, "periodic"),
            mk("latest.safetensors", 5, "periodic"),
            mk("nonfinite_step_9.safetensors", 9, "nonfinite"),
        ];
        assert_eq!(
            pick_resume(&v).unwrap().path,
            PathBuf::from("latest.safetensors")
        );
        let v = vec![
            mk("emergency_step_7.safetensors", 7, "emergency"),
            mk("latest.safetensors", 5, "periodic"),
        ];
        assert_eq!(pick_resume(&v).unwrap().step, 7);
        assert!(pick_resume(&[]).is_none());
    }
}
