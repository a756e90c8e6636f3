//! Test support: a fake Kaggle API server on loopback (std::net, one thread per connection)
//! that answers like docs/kaggle-protocol.md describes and records every request, plus a
//! harness that runs the real helper binaries against it in a temporary project and HOME.
#![allow(dead_code)]

mod repo;
#[allow(unused_imports)]
pub use repo::{git, init_repo};
mod output;
pub use output::*;

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const USER: &str = "fake-user";
pub const KEY: &str = "FAKEKEY0123456789";
pub const TOKEN: &str = "KGAT_FAKE_not_a_real_token_42";
pub const KERNEL: &str = "fake-user/emergence-lab-training";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn auth(&self) -> Option<&str> {
        self.headers.get("authorization").map(String::as_str)
    }
    /// RPC method name for `POST /v1/<service>/<Method>` (also under `/api`).
    pub fn rpc(&self) -> Option<&str> {
        if self.method != "POST" {
            return None;
        }
        let p = self.path.strip_prefix("/api").unwrap_or(&self.path);
        let rest = p.strip_prefix("/v1/")?;
        rest.split('/').nth(1)
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(u16, Value),
    JsonHeaders(u16, Value, Vec<(&'static str, String)>),
    Raw(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Announce `declared` bytes, send `body`, then close.
    Truncated(u64, Vec<u8>),
    /// Wait, then answer.
    Slow(Duration, Box<Reply>),
    /// SSE body sent in pieces with pauses.
    Stream(Vec<String>, Duration),
    /// Close the connection without answering.
    Hangup,
}

pub fn basic_header(user: &str, key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"))
    )
}

#[derive(Default)]
pub struct State {
    pub requests: Vec<Req>,
    /// Scripted replies by key: RPC name, `GET /files/<name>`, `PUT /upload`, `LOGSTREAM`.
    pub scripted: HashMap<String, VecDeque<Reply>>,
    pub next_version: i64,
    pub saved_text: Option<String>,
    pub statuses: VecDeque<Value>,
    pub outputs: Vec<(String, Vec<u8>)>,
    pub log: Option<String>,
    pub datasets: HashMap<String, VecDeque<Value>>,
    pub dataset_sequence: Vec<Value>,
    pub uploads: HashMap<String, Vec<u8>>,
    pub blob_counter: usize,
    pub introspect_user: String,
    pub addr: Option<SocketAddr>,
    /// When set, every request (API, files, uploads) gets this reply.
    pub fail_all: Option<Reply>,
}

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            next_version: 7,
            introspect_user: "fake-token-user".into(),
            dataset_sequence: vec![
                json!({"status": "BLOBS_RECEIVED"}),
                json!({"status": "READY"}),
            ],
            addr: Some(addr),
            ..Default::default()
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        Fake { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, key: &str, replies: Vec<Reply>) {
        self.state
            .lock()
            .unwrap()
            .scripted
            .entry(key.to_string())
            .or_default()
            .extend(replies);
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn rpcs(&self, name: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.rpc() == Some(name))
            .collect()
    }

    pub fn gets(&self, prefix: &str) -> Vec<Req> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(prefix))
            .collect()
    }

    pub fn set_statuses(&self, s: Vec<Value>) {
        self.state.lock().unwrap().statuses = s.into();
    }

    /// Adds an output file, replacing one of the same name.
    pub fn add_output(&self, name: &str, data: Vec<u8>) {
        let mut st = self.state.lock().unwrap();
        st.outputs.retain(|(n, _)| n != name);
        st.outputs.push((name.to_string(), data));
    }

    /// Answer every request with `reply` from now on.
    pub fn fail_all(&self, reply: Reply) {
        self.state.lock().unwrap().fail_all = Some(reply);
    }

    pub fn set_log(&self, log: &str) {
        self.state.lock().unwrap().log = Some(log.to_string());
    }
}

fn read_request(conn: &mut TcpStream) -> std::io::Result<Req> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = vec![];
    if headers
        .get("transfer-encoding")
        .map(|v| v.contains("chunked"))
        .unwrap_or(false)
    {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz)?;
            let n = usize::from_str_radix(sz.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body = vec![0u8; n];
        r.read_exact(&mut body)?;
    }
    Ok(Req {
        method,
        path,
        headers,
        body,
    })
}

fn write_reply(conn: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    let reason = |s: u16| match s {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    match reply {
        Reply::Json(s, v) => write_reply(conn, Reply::JsonHeaders(s, v, vec![])),
        Reply::JsonHeaders(s, v, mut h) => {
            h.push(("Content-Type", "application/json".into()));
            write_reply(conn, Reply::Raw(s, h, serde_json::to_vec(&v).unwrap()))
        }
        Reply::Raw(s, h, body) => {
            let mut head = format!(
                "HTTP/1.1 {s} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason(s),
                body.len()
            );
            for (k, v) in h {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            conn.write_all(head.as_bytes())?;
            conn.write_all(&body)?;
            conn.flush()
        }
        Reply::Truncated(declared, body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(&body)?;
            conn.flush()?;
            conn.shutdown(std::net::Shutdown::Both)
        }
        Reply::Slow(d, inner) => {
            std::thread::sleep(d);
            write_reply(conn, *inner)
        }
        Reply::Stream(events, pause) => {
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
            )?;
            for e in events {
                conn.write_all(e.as_bytes())?;
                conn.flush()?;
                std::thread::sleep(pause);
            }
            conn.shutdown(std::net::Shutdown::Both)
        }
        Reply::Hangup => conn.shutdown(std::net::Shutdown::Both),
    }
}

fn not_found() -> Reply {
    Reply::Json(404, json!({"code": 404, "message": "Not found"}))
}

fn handle(mut conn: TcpStream, st: &Arc<Mutex<State>>) -> std::io::Result<()> {
    let req = read_request(&mut conn)?;
    let reply = {
        let mut s = st.lock().unwrap();
        s.requests.push(req.clone());
        answer(&mut s, &req)
    };
    write_reply(&mut conn, reply)
}

fn answer(s: &mut State, req: &Req) -> Reply {
    let addr = s.addr.unwrap();
    if let Some(r) = &s.fail_all {
        return r.clone();
    }
    let path_only = req.path.split('?').next().unwrap_or("").to_string();
    let key = if let Some(rpc) = req.rpc() {
        rpc.to_string()
    } else if path_only.contains("/kernels/logs/stream/") {
        "LOGSTREAM".to_string()
    } else if req.method == "PUT" {
        "PUT /upload".to_string()
    } else {
        format!("{} {}", req.method, path_only)
    };
    if let Some(q) = s.scripted.get_mut(&key) {
        if let Some(r) = q.pop_front() {
            return r;
        }
    }
    let body = req.json();
    match key.as_str() {
        "SaveKernel" => {
            let v = s.next_version;
            s.next_version += 1;
            s.saved_text = body["text"].as_str().map(str::to_string);
            let slug = body["slug"].as_str().unwrap_or("");
            Reply::Json(
                200,
                json!({"ref": format!("/code/{slug}"), "url": format!("https://www.kaggle.com/code/{slug}"), "versionNumber": v, "kernelId": 42}),
            )
        }
        "GetKernel" => match &s.saved_text {
            Some(t) => Reply::Json(
                200,
                json!({"metadata": {"ref": KERNEL, "title": "Emergence Lab Training"}, "blob": {"source": t, "language": "python", "kernelType": "notebook", "slug": "emergence-lab-training"}}),
            ),
            None => not_found(),
        },
        "GetKernelSessionStatus" => {
            let v = if s.statuses.len() > 1 {
                s.statuses.pop_front().unwrap()
            } else {
                s.statuses.front().cloned().unwrap_or(json!({}))
            };
            Reply::Json(200, v)
        }
        "ListKernelSessionOutput" => {
            let size = body["pageSize"].as_u64().unwrap_or(20).max(1) as usize;
            let start: usize = body["pageToken"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let end = (start + size).min(s.outputs.len());
            let files: Vec<Value> = s.outputs[start.min(end)..end]
                .iter()
                .map(|(n, _)| json!({"fileName": n, "url": format!("http://{addr}/files/{}?X-Goog-Signature=canned", n.replace("../", "UP/"))}))
                .collect();
            let mut v = json!({"files": files});
            if start == 0 {
                if let Some(l) = &s.log {
                    v["log"] = json!(l);
                }
            }
            if end < s.outputs.len() {
                v["nextPageToken"] = json!(end.to_string());
            }
            Reply::Json(200, v)
        }
        "LOGSTREAM" => Reply::Json(
            200,
            serde_json::from_str(s.log.as_deref().unwrap_or("[]")).unwrap_or(json!([])),
        ),
        "IntrospectToken" => Reply::Json(
            200,
            json!({"active": true, "clientId": "cli", "username": s.introspect_user, "scope": "all"}),
        ),
        "ListKernels" => Reply::Json(200, json!({})),
        "GetAcceleratorQuotaStatistics" => Reply::Json(
            200,
            json!({"quotaRefreshTime": "2026-12-07T00:00:00Z",
                   "gpuQuota": {"timeUsed": "3600s", "totalTimeAllowed": "108000s", "hasEverRun": true}}),
        ),
        "GetDatasetStatus" => {
            let k = format!(
                "{}/{}",
                body["ownerSlug"].as_str().unwrap_or(""),
                body["datasetSlug"].as_str().unwrap_or("")
            );
            match s.datasets.get_mut(&k) {
                None => not_found(),
                Some(q) => {
                    let v = if q.len() > 1 {
                        q.pop_front().unwrap()
                    } else {
                        q.front().cloned().unwrap_or(json!({}))
                    };
                    Reply::Json(200, v)
                }
            }
        }
        "StartBlobUpload" => {
            s.blob_counter += 1;
            let t = format!("blob-{}", s.blob_counter);
            Reply::Json(
                200,
                json!({"token": t, "createUrl": format!("http://{addr}/upload/{t}")}),
            )
        }
        "PUT /upload" => {
            let t = path_only.trim_start_matches("/upload/").to_string();
            s.uploads.insert(t, req.body.clone());
            Reply::Json(200, json!({}))
        }
        "CreateDataset" => {
            let k = format!(
                "{}/{}",
                body["ownerSlug"].as_str().unwrap_or(""),
                body["slug"].as_str().unwrap_or("")
            );
            let seq = s.dataset_sequence.clone();
            s.datasets.insert(k.clone(), seq.into());
            Reply::Json(
                200,
                json!({"ref": k, "url": format!("https://www.kaggle.com/datasets/{k}"), "status": "Ok"}),
            )
        }
        "CreateDatasetVersion" => {
            let k = format!(
                "{}/{}",
                body["ownerSlug"].as_str().unwrap_or(""),
                body["datasetSlug"].as_str().unwrap_or("")
            );
            if !s.datasets.contains_key(&k) {
                return not_found();
            }
            let seq = s.dataset_sequence.clone();
            s.datasets.insert(k.clone(), seq.into());
            Reply::Json(
                200,
                json!({"ref": k, "url": format!("https://www.kaggle.com/datasets/{k}"), "status": "ok"}),
            )
        }
        _ if key.starts_with("GET /files/") => {
            let name = key.trim_start_matches("GET /files/").replace("UP/", "../");
            match s.outputs.iter().find(|(n, _)| *n == name) {
                Some((_, data)) => Reply::Raw(
                    200,
                    vec![("ETag", format!("\"{}\"", data.len()))],
                    data.clone(),
                ),
                None => Reply::Raw(404, vec![], b"no such object".to_vec()),
            }
        }
        _ => not_found(),
    }
}

/// A temporary project (notebooks/ with metadata and notebook) and HOME with kaggle.json.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub fake: Fake,
    pub extra_env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn notebook_json() -> Value {
    json!({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Emergence Lab\n", "training"]},
            {"cell_type": "code", "metadata": {}, "execution_count": 3, "outputs": [{"output_type": "stream", "text": "old"}], "source": ["println!(\"hi\");\n", "1 + 1"]}
        ],
        "metadata": {"kernelspec": {"name": "rust", "display_name": "Rust", "language": "rust"}},
        "nbformat": 4, "nbformat_minor": 5
    })
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join(".kaggle")).unwrap();
        let kj = home.join(".kaggle/kaggle.json");
        std::fs::write(&kj, json!({"username": USER, "key": KEY}).to_string()).unwrap();
        set_mode(&kj, 0o600);
        let proj = tmp.path().join("proj");
        std::fs::create_dir_all(proj.join("notebooks")).unwrap();
        std::fs::write(
            proj.join("notebooks/kaggle_training.ipynb"),
            serde_json::to_string_pretty(&notebook_json()).unwrap(),
        )
        .unwrap();
        init_repo(&proj);
        Env {
            tmp,
            fake: Fake::start(),
            extra_env: vec![],
        }
    }

    /// Env with the metadata kaggle_setup would write.
    pub fn with_metadata() -> Env {
        let e = Env::new();
        let meta = emergence_lab_scripts::kaggle::metadata::default_metadata(USER, true, true);
        e.write_metadata(&meta);
        e
    }

    pub fn write_metadata(&self, v: &Value) {
        std::fs::write(
            self.proj().join("notebooks/kernel-metadata.json"),
            serde_json::to_string_pretty(v).unwrap(),
        )
        .unwrap();
    }

    pub fn metadata(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.proj().join("notebooks/kernel-metadata.json")).unwrap(),
        )
        .unwrap()
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn proj(&self) -> PathBuf {
        self.tmp.path().join("proj")
    }

    pub fn command(&self, bin: &str, args: &[&str]) -> Command {
        let exe = match bin {
            "kaggle_setup" => env!("CARGO_BIN_EXE_kaggle_setup"),
            "kaggle_push" => env!("CARGO_BIN_EXE_kaggle_push"),
            "kaggle_run" => env!("CARGO_BIN_EXE_kaggle_run"),
            "kaggle_status" => env!("CARGO_BIN_EXE_kaggle_status"),
            "kaggle_download" => env!("CARGO_BIN_EXE_kaggle_download"),
            "kaggle_publish" => env!("CARGO_BIN_EXE_kaggle_publish"),
            other => panic!("unknown binary {other}"),
        };
        let mut c = Command::new(exe);
        c.args(args)
            .current_dir(self.proj())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("KAGGLE_CONFIG_DIR", self.home().join(".kaggle"))
            .env("TMPDIR", self.tmp.path())
            .env("KAGGLE_HELPERS_ENDPOINT", self.fake.url())
            .env("KAGGLE_HELPERS_BACKOFF_MS", "5")
            .env("KAGGLE_HELPERS_RETRIES", "4")
            .env("KAGGLE_HELPERS_TIMEOUT_S", "5")
            .env("KAGGLE_HELPERS_MAX_WAIT_S", "2")
            .env("KAGGLE_HELPERS_DATASET_POLL_S", "0.02")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        c
    }

    /// Run a helper to completion; asserts no credential appears in its output.
    pub fn run(&self, bin: &str, args: &[&str]) -> Run {
        let out: Output = self.command(bin, args).output().unwrap();
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        };
        assert_no_secrets(&r.all());
        r
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A format-v1 checkpoint's bytes, written by the core crate's writer (the one format).
pub fn checkpoint_bytes(step: u64, kind: &str) -> Vec<u8> {
    use emergence_lab_core::checkpoint::{
        to_bytes, Checkpoint, CheckpointKind, CheckpointMeta, DType, NamedArray,
    };
    let kind = match kind {
        "periodic" => CheckpointKind::Periodic,
        "emergency" => CheckpointKind::Emergency,
        "final" => CheckpointKind::Final,
        "nonfinite" => CheckpointKind::Nonfinite,
        other => panic!("unknown checkpoint kind {other:?}"),
    };
    let data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(step as u8 + 3)).collect();
    let ckpt = Checkpoint {
        meta: CheckpointMeta {
            step,
            iteration: step / 10,
            kind,
            config_json: "{}".into(),
            trackers_json: "{}".into(),
            metrics_json: "[]".into(),
            created_unix: 1,
            run_id: None,
        },
        arrays: vec![
            NamedArray {
                name: "policy.w".into(),
                dtype: DType::F32,
                shape: vec![4, 2],
                data: data[..32].to_vec(),
            },
            NamedArray {
                name: "rng".into(),
                dtype: DType::U8,
                shape: vec![8],
                data: data[32..].to_vec(),
            },
        ],
    };
    to_bytes(&ckpt).expect("a valid checkpoint")
}
