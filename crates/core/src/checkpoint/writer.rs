//! Writes a [`Checkpoint`] as a format-v1 safetensors file, streaming the arrays.
//!
//! The header is built here (not by `safetensors::serialize`) because the data CRC must be
//! in the header before the data, and streaming each array avoids a second 150 MB buffer.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::error::{CheckpointError, Result};
use super::format::{Checkpoint, CheckpointMeta, DType};
use super::header::{byte_len, encode_header, TensorEntry};

/// The data-section layout of `ckpt` (arrays in their given order) after checking that
/// names are unique and each array's bytes match its dtype x shape.
pub(crate) fn layout(path: &Path, ckpt: &Checkpoint) -> Result<Vec<TensorEntry>> {
    let mut seen = HashSet::with_capacity(ckpt.arrays.len());
    let mut pos = 0u64;
    let mut out = Vec::with_capacity(ckpt.arrays.len());
    for a in &ckpt.arrays {
        let invalid = |detail: String| CheckpointError::InvalidArray {
            path: path.to_path_buf(),
            name: a.name.clone(),
            detail,
        };
        if a.name.is_empty() || a.name == "__metadata__" {
            return Err(invalid("reserved or empty name".into()));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(invalid("duplicate name".into()));
        }
        let want = byte_len(a.dtype, &a.shape).ok_or_else(|| invalid("shape overflows".into()))?;
        if want != a.data.len() as u64 {
            return Err(invalid(format!(
                "{} data bytes, but {:?} {:?} needs {want}",
                a.data.len(),
                a.dtype,
                a.shape
            )));
        }
        out.push(TensorEntry {
            name: a.name.clone(),
            dtype: a.dtype,
            shape: a.shape.clone(),
            begin: pos,
            end: pos + want,
        });
        pos += want;
    }
    Ok(out)
}

/// CRC-32C (Castagnoli) of the data section `ckpt` will have.
pub(crate) fn data_crc32c(ckpt: &Checkpoint) -> u32 {
    ckpt.arrays
        .iter()
        .fold(0u32, |crc, a| crc32c::crc32c_append(crc, &a.data))
}

/// Encodes `ckpt` into the bytes of a complete file (for tests and in-memory use).
pub fn to_bytes(ckpt: &Checkpoint) -> Result<Vec<u8>> {
    let tensors = layout(Path::new("<memory>"), ckpt)?;
    let header = encode_header(&ckpt.meta, &tensors, data_crc32c(ckpt));
    let total = 8 + header.len() + tensors.last().map_or(0, |t| t.end as usize);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for a in &ckpt.arrays {
        out.extend_from_slice(&a.data);
    }
    Ok(out)
}

/// Writes `ckpt` to `path` (created or truncated) and returns the file size in bytes.
///
/// With `sync` the file is fsynced before returning. This is the plain write; atomic
/// saving (temporary file + rename + `latest`) is [`super::store::CheckpointStore::save`].
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint, sync: bool) -> Result<u64> {
    write_with_meta(path, &ckpt.meta, ckpt, sync)
}

/// Writes `ckpt`'s arrays with `meta` in place of `ckpt.meta`.
pub(crate) fn write_with_meta(
    path: &Path,
    meta: &CheckpointMeta,
    ckpt: &Checkpoint,
    sync: bool,
) -> Result<u64> {
    let tensors = layout(path, ckpt)?;
    let header = encode_header(meta, &tensors, data_crc32c(ckpt));
    let file = File::create(path).map_err(|e| CheckpointError::io(path, "create", e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e| CheckpointError::io(path, "write", e);
    w.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(werr)?;
    w.write_all(&header).map_err(werr)?;
    for a in &ckpt.arrays {
        w.write_all(&a.data).map_err(werr)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| CheckpointError::io(path, "write", e.into_error()))?;
    if sync {
        file.sync_all()
            .map_err(|e| CheckpointError::io(path, "fsync", e))?;
    }
    Ok(8 + header.len() as u64 + tensors.last().map_or(0, |t| t.end))
}

/// Name of the first F32/F64 array holding a NaN or infinity, if any.
pub(crate) fn first_nonfinite_array(ckpt: &Checkpoint) -> Option<&str> {
    ckpt.arrays
        .iter()
        .find(|a| match a.dtype {
            DType::F32 => a
                .data
                .chunks_exact(4)
                .any(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()),
            DType::F64 => a.data.chunks_exact(8).any(|b| {
                !f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).is_finite()
            }),
            _ => false,
        })
        .map(|a| a.name.as_str())
}
