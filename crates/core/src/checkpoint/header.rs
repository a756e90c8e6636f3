//! The safetensors JSON header of format v1: encoding it and parsing/validating it.
//!
//! The header lists every tensor (dtype, shape, byte offsets into the data section) and a
//! `__metadata__` string map with the format version, counters, JSON blobs and two CRCs.
//!
//! File layout (a standard safetensors file): 8-byte little-endian header length `N`, `N`
//! bytes of JSON (starts with `{`, space-padded to a multiple of 8), then the data section.
//! `__metadata__` keys: `format` = `emergence-lab-checkpoint`, `format_version` = `1`,
//! `step`, `iteration`, `created_unix` (decimal), `kind` (`periodic` | `emergency` | `final`
//! | `nonfinite`), `config`, `trackers`, `metrics` (JSON text), `data_crc32c` (8 lowercase
//! hex digits, CRC-32C of the data section) and `header_crc32c` (8 lowercase hex digits,
//! CRC-32C of the `N` raw header bytes with its own 8 digits replaced by `0`s; catches
//! flipped bytes in names, shapes, counters and config that the data CRC cannot see).
//! Optional: `run_id`, the identity of the run that wrote the file (absent in files written
//! before run ids existed, which read as "unknown").
//! Tensors may appear in the data section in any order but must tile it without gaps.

use std::path::Path;

use serde_json::{Map, Value};

use super::error::{CheckpointError, Result};
use super::format::{CheckpointKind, CheckpointMeta, DType};

/// `format` metadata value of every emergence-lab checkpoint.
pub const FORMAT_NAME: &str = "emergence-lab-checkpoint";
/// The only format version this build writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// Largest JSON header accepted (the safetensors limit).
pub(crate) const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor entry of a parsed header, with offsets relative to the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub begin: u64,
    pub end: u64,
}

/// A parsed and structurally validated header.
#[derive(Debug, Clone)]
pub struct Header {
    pub meta: CheckpointMeta,
    /// Tensors in data-section order.
    pub tensors: Vec<TensorEntry>,
    /// The expected CRC-32C of the data section.
    pub data_crc32c: u32,
    /// Length of the JSON header in bytes (without the 8-byte length prefix).
    pub header_len: u64,
    /// Length of the data section in bytes.
    pub data_len: u64,
}

/// The safetensors name of a dtype.
pub(crate) fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::U64 => "U64",
        DType::U32 => "U32",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

fn dtype_from_name(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "U64" => DType::U64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// The metadata value of a kind.
impl std::fmt::Display for CheckpointKind {
    /// The kind as written in the header (`periodic`, `emergency`, `final`, `nonfinite`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(kind_name(*self))
    }
}

pub(crate) fn kind_name(k: CheckpointKind) -> &'static str {
    match k {
        CheckpointKind::Periodic => "periodic",
        CheckpointKind::Emergency => "emergency",
        CheckpointKind::Final => "final",
        CheckpointKind::Nonfinite => "nonfinite",
    }
}

fn kind_from_name(s: &str) -> Option<CheckpointKind> {
    Some(match s {
        "periodic" => CheckpointKind::Periodic,
        "emergency" => CheckpointKind::Emergency,
        "final" => CheckpointKind::Final,
        "nonfinite" => CheckpointKind::Nonfinite,
        _ => return None,
    })
}

/// Bytes of `shape` elements of `dtype`, or `None` on overflow.
pub(crate) fn byte_len(dtype: DType, shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Encodes the JSON header (space-padded to a multiple of 8 bytes, as safetensors does).
pub(crate) fn encode_header(meta: &CheckpointMeta, tensors: &[TensorEntry], crc: u32) -> Vec<u8> {
    let mut md = Map::new();
    let mut put = |k: &str, v: String| {
        md.insert(k.to_string(), Value::String(v));
    };
    put("format", FORMAT_NAME.into());
    put("format_version", FORMAT_VERSION.into());
    put("step", meta.step.to_string());
    put("iteration", meta.iteration.to_string());
    put("kind", kind_name(meta.kind).into());
    put("config", meta.config_json.clone());
    put("trackers", meta.trackers_json.clone());
    put("metrics", meta.metrics_json.clone());
    put("created_unix", meta.created_unix.to_string());
    if let Some(id) = &meta.run_id {
        put("run_id", id.clone());
    }
    put("data_crc32c", format!("{crc:08x}"));
    put("header_crc32c", "00000000".into());
    let mut root = Map::new();
    root.insert("__metadata__".into(), Value::Object(md));
    for t in tensors {
        let mut e = Map::new();
        e.insert("dtype".into(), Value::String(dtype_name(t.dtype).into()));
        e.insert("shape".into(), Value::from(t.shape.clone()));
        e.insert("data_offsets".into(), Value::from(vec![t.begin, t.end]));
        root.insert(t.name.clone(), Value::Object(e));
    }
    let mut bytes = Value::Object(root).to_string().into_bytes();
    let pad = (8 - bytes.len() % 8) % 8;
    bytes.extend(std::iter::repeat_n(b' ', pad));
    let at = find_header_crc(&bytes).expect("the header has just been given a header_crc32c");
    let hex = format!("{:08x}", crc32c::crc32c(&bytes));
    bytes[at..at + 8].copy_from_slice(hex.as_bytes());
    bytes
}

const HEADER_CRC_KEY: &[u8] = b"\"header_crc32c\":\"";

/// Byte position of the 8 hex digits of `header_crc32c` in raw header bytes (it occurs once:
/// inside JSON strings the quotes would be escaped).
fn find_header_crc(bytes: &[u8]) -> Option<usize> {
    let mut hits = bytes
        .windows(HEADER_CRC_KEY.len())
        .enumerate()
        .filter(|(_, w)| *w == HEADER_CRC_KEY);
    let (i, _) = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    let at = i + HEADER_CRC_KEY.len();
    (bytes.len() >= at + 9 && bytes[at + 8] == b'"').then_some(at)
}

/// Checks `header_crc32c`: CRC-32C of the raw header bytes with its own 8 digits set to `0`.
fn check_header_crc(path: &Path, bytes: &[u8], stored: &str) -> Result<()> {
    let bad = |detail: String| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: "header_crc32c",
        detail,
    };
    let expected =
        parse_hex8(stored).ok_or_else(|| bad(format!("{stored:?} is not 8 hex digits")))?;
    let at = find_header_crc(bytes)
        .ok_or_else(|| bad("not found exactly once in the raw header".into()))?;
    let mut copy = bytes.to_vec();
    copy[at..at + 8].copy_from_slice(b"00000000");
    let actual = crc32c::crc32c(&copy);
    if actual != expected {
        return Err(CheckpointError::HeaderCrcMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn parse_hex8(s: &str) -> Option<u32> {
    // Lowercase only, so a flipped case bit (`a` -> `A`) cannot go unnoticed.
    (s.len() == 8 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn bad_header(path: &Path, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::BadHeader {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn bad_tensor(path: &Path, name: &str, detail: impl Into<String>) -> CheckpointError {
    CheckpointError::BadTensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        detail: detail.into(),
    }
}

/// Parses and validates a JSON header whose file has a `data_len`-byte data section.
///
/// Checks, in order: UTF-8 JSON object, `__metadata__` present, `format`, `format_version`,
/// every required metadata key, every tensor entry (dtype, shape, offsets = dtype x shape),
/// offsets contiguous from 0, and the data section's length. The CRC is checked by the reader.
pub(crate) fn parse_header(path: &Path, bytes: &[u8], data_len: u64) -> Result<Header> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| bad_header(path, format!("not UTF-8 ({e})")))?;
    if !text.starts_with('{') {
        return Err(bad_header(
            path,
            "does not start with `{` (not a safetensors file?)",
        ));
    }
    let root: Map<String, Value> = serde_json::from_str(text.trim_end())
        .map_err(|e| bad_header(path, format!("not a JSON object ({e})")))?;
    let md = match root.get("__metadata__") {
        None => {
            return Err(CheckpointError::MissingMetadata {
                path: path.to_path_buf(),
                key: "__metadata__",
            })
        }
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad_header(path, "`__metadata__` is not a JSON object")),
    };
    let get = |key: &'static str| -> Result<&str> {
        match md.get(key) {
            None => Err(CheckpointError::MissingMetadata {
                path: path.to_path_buf(),
                key,
            }),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(CheckpointError::BadMetadata {
                path: path.to_path_buf(),
                key,
                detail: "not a string".into(),
            }),
        }
    };
    match md.get("format") {
        Some(Value::String(s)) if s == FORMAT_NAME => {}
        other => {
            return Err(CheckpointError::NotACheckpoint {
                path: path.to_path_buf(),
                found: other.map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                }),
            })
        }
    }
    let version = get("format_version")?;
    if version != FORMAT_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version.to_string(),
        });
    }
    check_header_crc(path, bytes, get("header_crc32c")?)?;
    let num = |key: &'static str| -> Result<u64> {
        let s = get(key)?;
        s.parse::<u64>().map_err(|_| CheckpointError::BadMetadata {
            path: path.to_path_buf(),
            key,
            detail: format!("{s:?} is not a non-negative integer"),
        })
    };
    let step = num("step")?;
    let iteration = num("iteration")?;
    let created_unix = num("created_unix")?;
    let kind_s = get("kind")?;
    let kind = kind_from_name(kind_s).ok_or_else(|| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: "kind",
        detail: format!("{kind_s:?} is not periodic, emergency, final or nonfinite"),
    })?;
    // Optional: files written before run ids existed have none ("unknown").
    let run_id = match md.get("run_id") {
        None => None,
        Some(_) => Some(get("run_id")?.to_string()),
    };
    let config_json = get("config")?.to_string();
    let trackers_json = get("trackers")?.to_string();
    let metrics_json = get("metrics")?.to_string();
    let crc_s = get("data_crc32c")?;
    let data_crc32c = parse_hex8(crc_s).ok_or_else(|| CheckpointError::BadMetadata {
        path: path.to_path_buf(),
        key: "data_crc32c",
        detail: format!("{crc_s:?} is not 8 hex digits"),
    })?;

    let mut tensors = Vec::with_capacity(root.len().saturating_sub(1));
    for (name, v) in root.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let e = v
            .as_object()
            .ok_or_else(|| bad_tensor(path, name, "entry is not a JSON object"))?;
        let dtype_s = e
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_tensor(path, name, "no dtype"))?;
        let dtype = dtype_from_name(dtype_s)
            .ok_or_else(|| bad_tensor(path, name, format!("unsupported dtype {dtype_s:?}")))?;
        let shape = e
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                bad_tensor(path, name, "shape is not an array of non-negative integers")
            })?;
        let offs = e
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad_tensor(path, name, "data_offsets is not [begin, end]"))?;
        let (begin, end) = (offs[0], offs[1]);
        let want =
            byte_len(dtype, &shape).ok_or_else(|| bad_tensor(path, name, "shape overflows"))?;
        if end < begin || end - begin != want {
            return Err(bad_tensor(
                path,
                name,
                format!("offsets [{begin}, {end}] do not hold {want} bytes of {dtype_s} {shape:?}"),
            ));
        }
        tensors.push(TensorEntry {
            name: name.clone(),
            dtype,
            shape,
            begin,
            end,
        });
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut pos = 0u64;
    for t in &tensors {
        if t.begin != pos {
            return Err(bad_tensor(
                path,
                &t.name,
                format!(
                    "starts at byte {} of the data section, expected {pos} (gap or overlap)",
                    t.begin
                ),
            ));
        }
        pos = t.end;
    }
    if data_len < pos {
        return Err(CheckpointError::Truncated {
            path: path.to_path_buf(),
            detail: format!("data section has {data_len} bytes, the tensors need {pos}"),
        });
    }
    if data_len > pos {
        return Err(CheckpointError::TrailingData {
            path: path.to_path_buf(),
            expected: pos,
            actual: data_len,
        });
    }
    let meta = CheckpointMeta {
        step,
        iteration,
        kind,
        config_json,
        trackers_json,
        metrics_json,
        created_unix,
        run_id,
    };
    Ok(Header {
        meta,
        tensors,
        data_crc32c,
        header_len: bytes.len() as u64,
        data_len,
    })
}
