//! TensorBoard event files written by hand: the few protobuf fields of `Event` and
//! `Summary.Value.simple_value` TensorBoard needs, framed as TFRecords.
//!
//! Files are named `events.out.tfevents.<unix-time>.<host>.<pid>` in the configured folder.
//! On resume a new file is started whose events come after the resume step, and older files
//! holding events after that step (written before a crash) are rewritten without them;
//! TensorBoard reads every file of a folder as one run, so the curve continues seamlessly.
//! A fresh run moves older event files into `previous-<unix-time>/`, which TensorBoard
//! shows as a separate run.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::tfrecord::{read_records, write_record};
use super::{unix_now, write_atomic, SinkError};
use crate::metrics::Metrics;

/// The fields of a TensorBoard `Event` this module writes and reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// Global step.
    pub step: i64,
    /// `brain.Event:2` in a file's first event, otherwise `None`.
    pub file_version: Option<String>,
    /// Scalar summaries `(tag, simple_value)`.
    pub scalars: Vec<(String, f32)>,
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes(buf: &mut Vec<u8>, tag: u8, data: &[u8]) {
    buf.push(tag);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

impl Event {
    /// Protobuf encoding: `wall_time` (1, double), `step` (2, int64), `file_version`
    /// (3, string), `summary` (5, message of repeated `value` (1): `tag` (1, string),
    /// `simple_value` (2, float)).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(32 + 24 * self.scalars.len());
        buf.push(0x09);
        buf.extend_from_slice(&self.wall_time.to_le_bytes());
        if self.step != 0 {
            buf.push(0x10);
            put_varint(&mut buf, self.step as u64);
        }
        if let Some(v) = &self.file_version {
            put_bytes(&mut buf, 0x1a, v.as_bytes());
        }
        if !self.scalars.is_empty() {
            let mut summary = Vec::new();
            for (tag, value) in &self.scalars {
                let mut val = Vec::with_capacity(tag.len() + 8);
                put_bytes(&mut val, 0x0a, tag.as_bytes());
                val.push(0x15);
                val.extend_from_slice(&value.to_le_bytes());
                put_bytes(&mut summary, 0x0a, &val);
            }
            put_bytes(&mut buf, 0x2a, &summary);
        }
        buf
    }

    /// Decodes what [`Event::encode`] writes (other fields are skipped).
    pub fn decode(bytes: &[u8]) -> Result<Event, String> {
        let mut ev = Event::default();
        for (field, value) in Fields::new(bytes) {
            match (field?, value) {
                (1, Wire::Fixed64(v)) => ev.wall_time = f64::from_le_bytes(v),
                (2, Wire::Varint(v)) => ev.step = v as i64,
                (3, Wire::Bytes(b)) => {
                    ev.file_version = Some(String::from_utf8_lossy(b).into_owned())
                }
                (5, Wire::Bytes(summary)) => {
                    for (f, value) in Fields::new(summary) {
                        if let (1, Wire::Bytes(val)) = (f?, value) {
                            ev.scalars.push(decode_value(val)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(ev)
    }
}

fn decode_value(bytes: &[u8]) -> Result<(String, f32), String> {
    let (mut tag, mut value) = (String::new(), f32::NAN);
    for (f, v) in Fields::new(bytes) {
        match (f?, v) {
            (1, Wire::Bytes(b)) => tag = String::from_utf8_lossy(b).into_owned(),
            (2, Wire::Fixed32(b)) => value = f32::from_le_bytes(b),
            _ => {}
        }
    }
    Ok((tag, value))
}

enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Invalid,
}

/// Iterator over `(field number or error, value)` of a protobuf message.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len())?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Some(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Result<u64, String>, Wire<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let at = self.pos;
        let parsed = (|| {
            let key = self.varint()?;
            let wire = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => Wire::Fixed64(self.take(8)?.try_into().ok()?),
                2 => {
                    let n = usize::try_from(self.varint()?).ok()?;
                    Wire::Bytes(self.take(n)?)
                }
                5 => Wire::Fixed32(self.take(4)?.try_into().ok()?),
                _ => return None,
            };
            Some((key >> 3, wire))
        })();
        match parsed {
            Some((field, wire)) => Some((Ok(field), wire)),
            None => {
                self.failed = true;
                Some((
                    Err(format!("malformed protobuf at byte {at}")),
                    Wire::Invalid,
                ))
            }
        }
    }
}

/// Reads every event of an event file; a torn last record (a crash mid-write) is ignored.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>, SinkError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| SinkError::io("read event file", path, e))?;
    read_records(&bytes)
        .records
        .iter()
        .map(|r| Event::decode(r))
        .collect::<Result<_, _>>()
        .map_err(|reason| SinkError::BadEventFile {
            path: path.to_path_buf(),
            reason,
        })
}

/// File in a TensorBoard folder naming the run that writes its event files.
pub const RUN_ID_FILE: &str = "run_id";

/// The event files of `dir`, sorted by name (TensorBoard's reading order).
pub fn event_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, SinkError> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(SinkError::io("list folder", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| SinkError::io("list folder", dir, e))?;
        let name = entry.file_name();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && name.to_string_lossy().starts_with("events.out.tfevents.") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Writes one event file with a scalar summary per metric per iteration.
#[derive(Debug)]
pub struct TensorBoardWriter {
    path: PathBuf,
    file: File,
    resume_step: Option<u64>,
    /// What opening had to do besides creating the file (moved or trimmed old files).
    pub warnings: Vec<String>,
}

impl TensorBoardWriter {
    /// Starts a new event file in `dir` (see the module doc for what happens to older
    /// files on a fresh start and on a resume at `resume_step`).
    pub fn open(dir: impl AsRef<Path>, resume_step: Option<u64>) -> Result<Self, SinkError> {
        Self::open_for_run(dir, resume_step, None)
    }

    /// Like [`TensorBoardWriter::open`] for the run `run_id`, recorded in the folder's
    /// `run_id` file: on resume, event files of another run (a different recorded id) are
    /// moved to `other-run-<id>-<unix-time>/` untouched instead of being trimmed; a folder
    /// without the file (older builds) is treated as this run's, as before.
    pub fn open_for_run(
        dir: impl AsRef<Path>,
        resume_step: Option<u64>,
        run_id: Option<&str>,
    ) -> Result<Self, SinkError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io("create folder", dir, e))?;
        let mut warnings = Vec::new();
        let mut old = event_files(dir)?;
        let marker = dir.join(RUN_ID_FILE);
        let theirs = match std::fs::read_to_string(&marker) {
            Ok(t) => Some(t.trim().to_string()).filter(|t| !t.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(SinkError::io("read run id file", &marker, e)),
        };
        if let (Some(ours), Some(theirs), Some(_)) = (run_id, &theirs, resume_step) {
            if ours != theirs && !old.is_empty() {
                let aside = dir.join(format!("other-run-{theirs}-{}", unix_now() as u64));
                std::fs::create_dir_all(&aside)
                    .map_err(|e| SinkError::io("create folder", &aside, e))?;
                for f in old.iter().chain(std::iter::once(&marker)) {
                    let to = aside.join(f.file_name().unwrap_or_default());
                    std::fs::rename(f, &to)
                        .map_err(|e| SinkError::io("move another run's event file", f, e))?;
                }
                warnings.push(format!(
                    "{} holds event files of another run (run id {theirs}, this run is \
                     {ours}): moved {} file(s) to {} untouched",
                    dir.display(),
                    old.len(),
                    aside.display()
                ));
                old.clear();
            }
        }
        match resume_step {
            None if !old.is_empty() => {
                let aside = dir.join(format!("previous-{}", unix_now() as u64));
                std::fs::create_dir_all(&aside)
                    .map_err(|e| SinkError::io("create folder", &aside, e))?;
                for f in &old {
                    let to = aside.join(f.file_name().unwrap_or_default());
                    std::fs::rename(f, &to)
                        .map_err(|e| SinkError::io("move old event file", f, e))?;
                }
                if marker.exists() {
                    std::fs::rename(&marker, aside.join(RUN_ID_FILE))
                        .map_err(|e| SinkError::io("move old run id file", &marker, e))?;
                }
                warnings.push(format!(
                    "fresh run: moved {} older event file(s) to {}",
                    old.len(),
                    aside.display()
                ));
            }
            None => {}
            Some(step) => {
                for f in &old {
                    if let Some(note) = trim_event_file(f, step)? {
                        warnings.push(note);
                    }
                }
            }
        }
        if let Some(id) = run_id {
            let current = std::fs::read_to_string(&marker).unwrap_or_default();
            if current.trim() != id {
                super::write_atomic(&marker, format!("{id}\n").as_bytes())?;
            }
        }
        let path = new_file_name(dir);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| SinkError::io("create event file", &path, e))?;
        let header = Event {
            wall_time: unix_now(),
            step: resume_step.unwrap_or(0) as i64,
            file_version: Some("brain.Event:2".into()),
            scalars: Vec::new(),
        };
        write_record(&mut file, &header.encode())
            .and_then(|_| file.flush())
            .map_err(|e| SinkError::io("write event file", &path, e))?;
        Ok(Self {
            path,
            file,
            resume_step,
            warnings,
        })
    }

    /// Writes every metric of `m` as a scalar at `m.step` (metrics at or before the resume
    /// step are skipped: they are already in older files).
    pub fn write(&mut self, m: &Metrics) -> Result<(), SinkError> {
        if self.resume_step.is_some_and(|s| m.step <= s) {
            return Ok(());
        }
        let mut scalars: Vec<(String, f32)> = m
            .values
            .iter()
            .map(|(k, v)| (k.clone(), *v as f32))
            .collect();
        scalars.push((
            crate::metrics::names::CHARTS_ITERATION.into(),
            m.iteration as f32,
        ));
        let ev = Event {
            wall_time: unix_now(),
            step: m.step as i64,
            file_version: None,
            scalars,
        };
        write_record(&mut self.file, &ev.encode())
            .and_then(|_| self.file.flush())
            .map_err(|e| SinkError::io("write event file", &self.path, e))
    }

    /// Forces the file's data to disk.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.file
            .sync_data()
            .map_err(|e| SinkError::io("sync event file", &self.path, e))
    }

    /// The event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Rewrites `path` without events after `step` (and without a torn tail); returns a note
/// when it changed the file.
fn trim_event_file(path: &Path, step: u64) -> Result<Option<String>, SinkError> {
    let bytes = std::fs::read(path).map_err(|e| SinkError::io("read event file", path, e))?;
    let recs = read_records(&bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut dropped = 0usize;
    for r in &recs.records {
        let keep = match Event::decode(r) {
            Ok(ev) => ev.file_version.is_some() || ev.step <= step as i64,
            Err(_) => true, // not ours to judge; keep it as it was
        };
        if keep {
            // Writing to a Vec cannot fail.
            let _ = write_record(&mut out, r);
        } else {
            dropped += 1;
        }
    }
    if dropped == 0 && recs.stopped_at.is_none() {
        return Ok(None);
    }
    write_atomic(path, &out)?;
    Ok(Some(format!(
        "{}: removed {dropped} event(s) after the checkpoint's step {step}{}",
        path.display(),
        if recs.stopped_at.is_some() {
            " and a torn last record"
        } else {
            ""
        }
    )))
}

/// `events.out.tfevents.<time>.<host>.<pid>`, with a counter if that name exists.
fn new_file_name(dir: &Path) -> PathBuf {
    let base = format!(
        "events.out.tfevents.{}.{}.{}",
        unix_now() as u64,
        hostname(),
        std::process::id()
    );
    let mut path = dir.join(&base);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{base}.{n}"));
        n += 1;
    }
    path
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_encoding_known_bytes_and_round_trip() {
        let ev = Event {
            wall_time: 1.5,
            step: 300,
            file_version: None,
            scalars: vec![("a".into(), 1.0)],
        };
        let bytes = ev.encode();
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // 300 as varint
        want.extend_from_slice(&[0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        want.extend_from_slice(&1.0f32.to_le_bytes());
        assert_eq!(bytes, want);
        assert_eq!(Event::decode(&bytes).unwrap(), ev);
        let header = Event {
            file_version: Some("brain.Event:2".into()),
            ..Event::default()
        };
        assert_eq!(Event::decode(&header.encode()).unwrap(), header);
        assert!(Event::decode(&[0x0a, 0x05, 1]).is_err());
    }
}
