//! `kaggle_download`: fetch every output file of the remembered run, write its log, verify the
//! checkpoints and print the command that resumes training locally.

use super::out::{say, shout};
use super::{human_bytes, Common, AFTER_HELP, EXIT_ERROR, EXIT_OK};
use crate::kaggle::api::{OutputFile, Ref};
use crate::kaggle::client::{ApiClient, StorageClient};
use crate::kaggle::download::{fetch_file, safe_join, DlEvent, Fetched, Manifest, ManifestEntry};
use crate::kaggle::progress::{log_text, parse_log_json};
use crate::kaggle::KaggleError;
use anyhow::Context;
use clap::Parser;
use emergence_lab_core::checkpoint::{
    find_checkpoint_files, pick_resume, verify_info, CheckpointInfo,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Download the outputs (checkpoints, metrics, log) of the run started by kaggle_run.
///
/// Pages through the output list, streams each file from its signed link (no Kaggle
/// credentials are sent there) to a temporary file renamed when complete, skips files already
/// downloaded, refuses names that would land outside DIR, retries transient errors, writes the
/// run log to DIR/<kernel-slug>.log, then verifies every checkpoint and prints the command to
/// resume locally.
#[derive(Debug, Parser)]
#[command(name = "kaggle_download", after_help = AFTER_HELP)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub common: Common,
    /// Folder to download into.
    #[arg(long, value_name = "DIR", default_value = "kaggle_output")]
    pub output_dir: PathBuf,
    /// Version to download (default: the one kaggle_run remembered, else the latest).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
    /// Files per page when listing outputs (1-200).
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub page_size: u32,
}

/// All output files (all pages) and the log of the first page.
pub fn list_outputs(
    client: &ApiClient,
    k: &Ref,
    version: Option<i64>,
    page_size: u32,
) -> Result<(Vec<OutputFile>, Option<String>), KaggleError> {
    let mut files = vec![];
    let mut log = None;
    let mut token = String::new();
    let mut seen = HashSet::new();
    loop {
        let page = client.output_page(k, version, &token, page_size)?;
        if log.is_none() {
            log = page.log.clone();
        }
        files.extend(page.files);
        match page.next_page_token.filter(|t| !t.is_empty()) {
            None => return Ok((files, log)),
            Some(t) => {
                if !seen.insert(t.clone()) {
                    return Err(KaggleError::BadAnswer {
                        call: "ListKernelSessionOutput".into(),
                        detail: format!("page token {t:?} repeated; the listing would never end"),
                    });
                }
                token = t;
            }
        }
    }
}

fn bar_for(name: &str) -> Option<ProgressBar> {
    if !super::is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(super::out::line(name));
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

struct Tally {
    written: usize,
    skipped: usize,
    refused: Vec<String>,
    failed: Vec<String>,
}

/// Run `kaggle_download`.
pub fn run(args: DownloadArgs) -> anyhow::Result<i32> {
    let meta = args.common.metadata()?;
    let state = args.common.run_state(&meta)?;
    let version = args.version.or(state.map(|s| s.version));
    let (client, _) = args.common.connect()?;
    let storage = StorageClient::new(
        client.settings(),
        Duration::from_secs(300).max(client.settings().timeout),
    )?;
    let k = meta.id.clone();
    let dir = &args.output_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let v = version
        .map(|v| format!(" version {v}"))
        .unwrap_or_else(|| " (latest run)".into());
    say!("Listing outputs of {k}{v}...");
    let (files, log) = list_outputs(&client, &k, version, args.page_size)?;
    say!("{} file(s) listed.", files.len());
    if let Some(log) = &log {
        write_log(dir, &k, log)?;
    }
    let mut manifest = Manifest::load(dir);
    if manifest.kernel != k.to_string() {
        manifest = Manifest {
            kernel: k.to_string(),
            ..Default::default()
        };
    }
    let mut urls: HashMap<String, String> = files
        .iter()
        .map(|f| (f.file_name.clone(), f.url.clone()))
        .collect();
    let mut refreshed = false;
    let mut checks = Verified::default();
    let mut t = Tally {
        written: 0,
        skipped: 0,
        refused: vec![],
        failed: vec![],
    };
    for f in &files {
        let dest = match safe_join(dir, &f.file_name) {
            Ok(d) => d,
            Err(why) => {
                shout!("refused: {why}");
                t.refused.push(f.file_name.clone());
                continue;
            }
        };
        // A checkpoint counts as present only while it verifies: a damaged local copy is
        // fetched again even when the manifest lists it.
        let is_ckpt = is_checkpoint(&f.file_name);
        let local_ok = !is_ckpt || !dest.exists() || checks.verify(&dest).is_ok();
        if local_ok && manifest.is_complete(&manifest.kernel, &f.file_name, version, &dest) {
            say!("skipped {} (already complete)", f.file_name);
            t.skipped += 1;
            continue;
        }
        if !local_ok {
            say!("{} is damaged locally; downloading it again", f.file_name);
            checks.forget(&dest);
        }
        let known = manifest.files.get(&f.file_name).filter(|_| local_ok);
        let mut result = fetch_one(&storage, &f.file_name, &urls[&f.file_name], &dest, known);
        if matches!(result, Err(KaggleError::SignedUrlExpired { .. })) && !refreshed {
            shout!(
                "note: download link of {} expired; fetching fresh links",
                f.file_name
            );
            refreshed = true;
            let (fresh, _) = list_outputs(&client, &k, version, args.page_size)?;
            urls = fresh.into_iter().map(|f| (f.file_name, f.url)).collect();
            if let Some(u) = urls.get(&f.file_name) {
                let known = manifest.files.get(&f.file_name).filter(|_| local_ok);
                result = fetch_one(&storage, &f.file_name, u, &dest, known);
            }
        }
        if let Ok(Fetched::Written { .. }) = &result {
            checks.forget(&dest);
            if is_ckpt {
                // Recorded as complete only once it verifies, so a rerun fetches it again.
                if let Err(e) = checks.verify(&dest) {
                    if manifest.files.remove(&f.file_name).is_some() {
                        manifest.save(dir)?;
                    }
                    shout!(
                        "error: {} arrived damaged ({}); it is not recorded as complete",
                        f.file_name,
                        e
                    );
                    t.failed.push(f.file_name.clone());
                    continue;
                }
            }
        }
        match result {
            Ok(Fetched::Written { bytes, etag }) => {
                say!("downloaded {} ({})", f.file_name, human_bytes(bytes));
                t.written += 1;
                manifest.files.insert(
                    f.file_name.clone(),
                    ManifestEntry {
                        version,
                        bytes,
                        etag,
                    },
                );
                manifest.save(dir)?;
            }
            Ok(Fetched::AlreadyComplete) => {
                say!("skipped {} (unchanged)", f.file_name);
                t.skipped += 1;
                if let Some(entry) = manifest.files.get_mut(&f.file_name) {
                    if entry.version != version {
                        entry.version = version;
                        manifest.save(dir)?;
                    }
                }
            }
            Err(e) => {
                super::report_error(&anyhow::Error::new(e));
                t.failed.push(f.file_name.clone());
            }
        }
    }
    say!(
        "Downloaded {}, skipped {}, refused {}, failed {} -> {}",
        t.written,
        t.skipped,
        t.refused.len(),
        t.failed.len(),
        dir.display()
    );
    let bad_ckpt = report_checkpoints(dir, &mut checks);
    if !t.refused.is_empty() {
        shout!(
            "error: refused {} file name(s) that would land outside {}: {}",
            t.refused.len(),
            dir.display(),
            t.refused.join(", ")
        );
        shout!("hint: the output list is not trustworthy; nothing was written outside the folder");
    }
    if !t.failed.is_empty() {
        shout!(
            "error: {} file(s) failed: {}",
            t.failed.len(),
            t.failed.join(", ")
        );
        shout!("hint: run kaggle_download again; complete files are skipped");
    }
    Ok(
        if t.refused.is_empty() && t.failed.is_empty() && !bad_ckpt {
            EXIT_OK
        } else {
            EXIT_ERROR
        },
    )
}

fn fetch_one(
    storage: &StorageClient,
    name: &str,
    url: &str,
    dest: &Path,
    known: Option<&ManifestEntry>,
) -> Result<Fetched, KaggleError> {
    let bar = bar_for(name);
    let r = fetch_file(storage, name, url, dest, known, &mut |ev| {
        if let Some(b) = &bar {
            match ev {
                DlEvent::Start(total) => {
                    b.set_length(total.unwrap_or(0));
                    b.set_position(0);
                }
                DlEvent::Bytes(n) => b.set_position(n),
            }
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r
}

fn write_log(dir: &Path, k: &Ref, log: &str) -> anyhow::Result<()> {
    let text_path = dir.join(format!("{}.log", k.slug));
    let json_path = dir.join(format!("{}.log.json", k.slug));
    // The log is server text too: credentials are scrubbed from both files.
    let text = crate::kaggle::redact::scrub(&log_text(&parse_log_json(log)));
    let log = crate::kaggle::redact::scrub(log);
    std::fs::write(&json_path, log)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&text_path, text)
        .with_context(|| format!("cannot write {}", text_path.display()))?;
    say!("Run log written to {}", text_path.display());
    Ok(())
}

/// True for files that are verified as checkpoints.
fn is_checkpoint(name: &str) -> bool {
    name.ends_with(".safetensors")
}

/// Verification results by path, so each checkpoint is read once per run.
#[derive(Default)]
struct Verified(HashMap<PathBuf, Result<CheckpointInfo, String>>);

impl Verified {
    fn verify(&mut self, p: &Path) -> Result<CheckpointInfo, String> {
        self.0
            .entry(p.to_path_buf())
            .or_insert_with(|| verify_info(p).map_err(|e| e.to_string()))
            .clone()
    }

    fn forget(&mut self, p: &Path) {
        self.0.remove(p);
    }
}

/// Folder (inside the download folder) that a local resume writes to.
pub const LOCAL_RESUME_DIR: &str = "local-resume";

/// Quote one argument for a POSIX shell when it needs it.
fn shell_arg(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that resumes training locally from `ckpt`. A checkpoint's config names the
/// Kaggle paths (`/kaggle/working/...`) for checkpoints, metrics and TensorBoard files; these
/// are run-control fields a resume may change, so the command points them next to the
/// download (`DIR/local-resume/`), where a later `kaggle_download` never overwrites them.
pub fn resume_command(dir: &Path, ckpt: &Path) -> String {
    let local = dir.join(LOCAL_RESUME_DIR);
    let args = [
        format!("--train.resume-from={}", ckpt.display()),
        format!(
            "--log.checkpoint-dir={}",
            local.join("checkpoints").display()
        ),
        format!(
            "--log.metrics-path={}",
            local.join("metrics.jsonl").display()
        ),
        format!(
            "--log.tensorboard-dir={}",
            local.join("tensorboard").display()
        ),
    ];
    let args: Vec<String> = args.iter().map(|a| shell_arg(a)).collect();
    format!("cargo run --release --bin train -- {}", args.join(" "))
}

/// Verify every checkpoint under `dir` (the local-resume folder aside), print the results and
/// the resume command. Returns true when at least one checkpoint failed verification.
fn report_checkpoints(dir: &Path, checks: &mut Verified) -> bool {
    let local = dir.join(LOCAL_RESUME_DIR);
    let paths: Vec<PathBuf> = find_checkpoint_files(dir)
        .into_iter()
        .filter(|p| !p.starts_with(&local))
        .collect();
    if paths.is_empty() {
        say!("No checkpoints (*.safetensors) found in {}.", dir.display());
        return false;
    }
    say!("Checkpoints:");
    let mut good: Vec<CheckpointInfo> = vec![];
    let mut bad = false;
    for p in paths {
        match checks.verify(&p) {
            Ok(info) => {
                say!(
                    "  ok   {}  step={} iteration={} kind={} {}",
                    p.display(),
                    info.step,
                    info.iteration,
                    info.kind,
                    human_bytes(info.size_bytes)
                );
                good.push(info);
            }
            Err(check) => {
                say!("  BAD  {check}");
                bad = true;
            }
        }
    }
    match pick_resume(&good) {
        Some(c) => {
            say!("Resume locally from step {} with:", c.step);
            say!("  {}", resume_command(dir, &c.path));
        }
        None => say!("No usable checkpoint to resume from."),
    }
    if bad {
        shout!("error: some checkpoints failed verification (listed as BAD above)");
        shout!("hint: run kaggle_download again; if it persists the run wrote a damaged file, resume from an older checkpoint");
    }
    bad
}
