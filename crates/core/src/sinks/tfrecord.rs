//! TFRecord framing as TensorBoard reads it: `u64 length`, masked CRC-32C of the length,
//! the data, masked CRC-32C of the data (all little-endian), plus a reader for tests.
//!
//! The mask is `((crc >> 15) | (crc << 17)) + 0xa282ead8` (wrapping), as in TensorFlow's
//! `record_writer.cc`.

use std::io::{self, Write};

/// The masked CRC-32C (Castagnoli) of `data`.
pub fn masked_crc(data: &[u8]) -> u32 {
    mask(crc32c::crc32c(data))
}

/// Applies TensorFlow's CRC mask.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one framed record.
pub fn write_record<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    let mut buf = Vec::with_capacity(data.len() + 16);
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&masked_crc(&len).to_le_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(&masked_crc(data).to_le_bytes());
    // One write per record so a crash leaves at most one torn record at the end.
    w.write_all(&buf)
}

/// The records of a TFRecord byte string, and whether it ended in a torn or corrupt
/// record (everything from that point on is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The complete, checksum-valid records in order.
    pub records: Vec<Vec<u8>>,
    /// Byte offset where reading stopped early (torn or corrupt tail), if it did.
    pub stopped_at: Option<usize>,
    /// Why reading stopped early.
    pub reason: Option<String>,
}

/// Splits `bytes` into records, verifying both checksums of each.
pub fn read_records(bytes: &[u8]) -> Records {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let stop = |pos: usize, why: &str, records: Vec<Vec<u8>>| Records {
        records,
        stopped_at: Some(pos),
        reason: Some(format!("{why} at byte {pos}")),
    };
    while pos < bytes.len() {
        if bytes.len() - pos < 12 {
            return stop(pos, "truncated record header", records);
        }
        let len_bytes = &bytes[pos..pos + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
        let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap_or([0; 4]));
        if len_crc != masked_crc(len_bytes) {
            return stop(pos, "length checksum mismatch", records);
        }
        let start = pos + 12;
        let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
            return stop(pos, "record length too large", records);
        };
        if end + 4 > bytes.len() {
            return stop(pos, "truncated record", records);
        }
        let data = &bytes[start..end];
        let crc = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap_or([0; 4]));
        if crc != masked_crc(data) {
            return stop(pos, "data checksum mismatch", records);
        }
        records.push(data.to_vec());
        pos = end + 4;
    }
    Records {
        records,
        stopped_at: None,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_mask_known_values() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // Known masked value from an independent TFRecord implementation's test suite.
        assert_eq!(masked_crc(b"1234567890asdfghjkl"), 4_134_599_430);
    }

    #[test]
    fn records_round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        let payloads: Vec<Vec<u8>> = vec![b"".to_vec(), b"hello".to_vec(), vec![7u8; 1000]];
        for p in &payloads {
            write_record(&mut buf, p).unwrap();
        }
        assert_eq!(buf.len(), 3 * 16 + 5 + 1000);
        let r = read_records(&buf);
        assert_eq!(r.records, payloads);
        assert_eq!(r.stopped_at, None);
        // A torn last record is dropped, the earlier ones survive.
        let torn = &buf[..buf.len() - 3];
        let r = read_records(torn);
        assert_eq!(r.records, payloads[..2].to_vec());
        assert_eq!(r.stopped_at, Some(2 * 16 + 5));
        // A flipped data byte is detected.
        let mut bad = buf.clone();
        bad[16 + 12 + 2] ^= 1;
        let r = read_records(&bad);
        assert_eq!(r.records.len(), 1);
        assert!(r.reason.unwrap().contains("data checksum"));
    }
}
