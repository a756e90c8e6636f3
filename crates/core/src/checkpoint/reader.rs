//! Reads and verifies format-v1 checkpoint files; never panics and never executes code.
//!
//! Verification = header parses, format and version known, metadata complete, tensor
//! offsets consistent and covering the data section exactly, and the data CRC-32C matches.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use super::error::{CheckpointError, Result};
use super::format::{Checkpoint, NamedArray};
use super::header::{parse_header, Header, MAX_HEADER_LEN};

fn read_exact_or(path: &Path, r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => CheckpointError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the file ended inside {what}"),
        },
        _ => CheckpointError::io(path, "read", e),
    })
}

/// Opens `path`, parses its header and returns the reader positioned at the data section.
fn open_with_header(path: &Path) -> Result<(BufReader<File>, Header)> {
    let file = File::open(path).map_err(|e| CheckpointError::io(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| CheckpointError::io(path, "stat", e))?
        .len();
    if file_len < 8 {
        return Err(CheckpointError::Truncated {
            path: path.to_path_buf(),
            detail: format!("{file_len} bytes, less than the 8-byte header length"),
        });
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut len8 = [0u8; 8];
    read_exact_or(path, &mut r, &mut len8, "the header length")?;
    let header_len = u64::from_le_bytes(len8);
    if header_len > file_len - 8 {
        return Err(CheckpointError::HeaderLengthBeyondFile {
            path: path.to_path_buf(),
            header_len,
            file_len,
        });
    }
    if header_len > MAX_HEADER_LEN {
        return Err(CheckpointError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("header length {header_len} exceeds the {MAX_HEADER_LEN}-byte limit"),
        });
    }
    let mut hbuf = vec![0u8; header_len as usize];
    read_exact_or(path, &mut r, &mut hbuf, "the header")?;
    let header = parse_header(path, &hbuf, file_len - 8 - header_len)?;
    Ok((r, header))
}

/// Parses and checks the header only (fast: no data read, no CRC). Use [`verify_checkpoint`]
/// or [`read_checkpoint`] before trusting the data.
pub fn read_header(path: &Path) -> Result<Header> {
    open_with_header(path).map(|(_, h)| h)
}

fn check_crc(path: &Path, header: &Header, actual: u32) -> Result<()> {
    if actual != header.data_crc32c {
        return Err(CheckpointError::CrcMismatch {
            path: path.to_path_buf(),
            expected: header.data_crc32c,
            actual,
        });
    }
    Ok(())
}

/// Fully verifies a file (header checks + streaming CRC of the data) without keeping the data.
pub fn verify_checkpoint(path: &Path) -> Result<Header> {
    let (mut r, header) = open_with_header(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut left = header.data_len;
    let mut crc = 0u32;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        read_exact_or(path, &mut r, &mut buf[..n], "the data section")?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        left -= n as u64;
    }
    check_crc(path, &header, crc)?;
    Ok(header)
}

/// Loads and verifies a checkpoint file. Arrays come back in data-section order (the order
/// they were written in).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let (mut r, header) = open_with_header(path)?;
    let mut crc = 0u32;
    let mut arrays = Vec::with_capacity(header.tensors.len());
    for t in &header.tensors {
        let mut data = vec![0u8; (t.end - t.begin) as usize];
        read_exact_or(path, &mut r, &mut data, &format!("tensor `{}`", t.name))?;
        crc = crc32c::crc32c_append(crc, &data);
        arrays.push(NamedArray {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            data,
        });
    }
    check_crc(path, &header, crc)?;
    Ok(Checkpoint {
        meta: header.meta,
        arrays,
    })
}

/// Decodes and verifies a checkpoint held in memory (`name` is used in error messages).
pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let file_len = bytes.len() as u64;
    if file_len < 8 {
        return Err(CheckpointError::Truncated {
            path: name.to_path_buf(),
            detail: format!("{file_len} bytes, less than the 8-byte header length"),
        });
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header_len > file_len - 8 {
        return Err(CheckpointError::HeaderLengthBeyondFile {
            path: name.to_path_buf(),
            header_len,
            file_len,
        });
    }
    let start = 8 + header_len as usize;
    let header = parse_header(name, &bytes[8..start], file_len - 8 - header_len)?;
    let data = &bytes[start..];
    check_crc(name, &header, crc32c::crc32c(data))?;
    let arrays = header
        .tensors
        .iter()
        .map(|t| NamedArray {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: data[t.begin as usize..t.end as usize].to_vec(),
        })
        .collect();
    Ok(Checkpoint {
        meta: header.meta,
        arrays,
    })
}
