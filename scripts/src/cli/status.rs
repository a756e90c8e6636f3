//! `kaggle_status`: the state of the remembered run, or with `--watch` polling until it ends
//! while showing training progress parsed from the run's log (stream while running, stored
//! log afterwards). Ctrl-C stops watching, never the run.

use super::out::say;
use super::{Common, AFTER_HELP, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_CANCELLED, EXIT_RUN_FAILED};
use crate::kaggle::api::{Ref, RunStatus, StatusAnswer};
use crate::kaggle::client::{Answer, ApiClient};
use crate::kaggle::metadata::now_unix;
use crate::kaggle::progress::{
    describe, last_progress, log_text, parse_log_json, parse_progress_line, LineBuffer,
    ProgressRecord, SseParser, StreamEvent,
};
use crate::kaggle::KaggleError;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Show the status of the run started by kaggle_run (or of --version N).
///
/// Without --watch: prints the state once and exits 0 while queued or running. With --watch:
/// polls every --interval seconds until the run ends, showing step/total, mean reward,
/// population and ETA from the training log; Ctrl-C stops watching (the run continues).
/// Exit 0 on COMPLETE, 3 on ERROR (the failure message is printed), 4 when cancelled.
#[derive(Debug, Parser)]
#[command(name = "kaggle_status", after_help = AFTER_HELP)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Poll until the run ends, showing live progress.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between polls with --watch.
    #[arg(long, value_name = "N", default_value_t = 60.0)]
    pub interval: f64,
    /// Version to look at (default: the one kaggle_run remembered, else the latest session).
    #[arg(long, value_name = "N")]
    pub version: Option<i64>,
}

enum Display {
    Bar(ProgressBar),
    Plain { last: String, start: Instant },
}

impl Display {
    fn new() -> Self {
        if super::is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:40} [{bar:30}] {pos}/{len} ({percent}%)",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Plain {
                last: String::new(),
                start: Instant::now(),
            }
        }
    }

    fn show(&mut self, status: &str, p: Option<&ProgressRecord>) {
        match self {
            Display::Bar(bar) => {
                if let Some(p) = p {
                    if let Some(t) = p.total {
                        bar.set_length(t);
                    }
                    bar.set_position(p.step);
                }
                let mut msg = status.to_string();
                if let Some(p) = p {
                    if let Some(r) = p.reward {
                        msg.push_str(&format!(" reward={r:.3}"));
                    }
                    if let Some(v) = p.pop {
                        msg.push_str(&format!(" pop={v:.1}"));
                    }
                    if let Some(e) = p.eta_s {
                        msg.push_str(&format!(
                            " eta={}",
                            crate::kaggle::progress::human_duration(e)
                        ));
                    }
                }
                bar.set_message(super::out::line(&msg));
            }
            Display::Plain { last, start } => {
                let line = match p {
                    Some(p) => format!("{status} {}", describe(p)),
                    None => status.to_string(),
                };
                if &line != last {
                    let s = start.elapsed().as_secs();
                    say!(
                        "[+{:02}:{:02}:{:02}] {line}",
                        s / 3600,
                        (s / 60) % 60,
                        s % 60
                    );
                    *last = line;
                }
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.abandon();
        }
    }
}

pub(crate) fn poll(
    client: &ApiClient,
    k: &Ref,
    version: Option<i64>,
    started: Option<u64>,
) -> Result<Option<StatusAnswer>, KaggleError> {
    match client.kernel_status(k, version) {
        Ok(s) => Ok(Some(s)),
        Err(KaggleError::NotFound { .. })
            if started
                .map(|t| now_unix().saturating_sub(t) <= client.settings().not_yet_window.as_secs())
                .unwrap_or(false) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn exit_code(s: &RunStatus) -> i32 {
    match s {
        RunStatus::Error => EXIT_RUN_FAILED,
        RunStatus::CancelAcknowledged => EXIT_RUN_CANCELLED,
        _ => EXIT_OK,
    }
}

fn report_final(k: &Ref, version: Option<i64>, s: &StatusAnswer) {
    let v = version.map(|v| format!(" version {v}")).unwrap_or_default();
    say!("{k}{v}: {}", s.status);
    if let Some(m) = &s.failure_message {
        say!("Failure message: {m}");
    }
    match s.status {
        RunStatus::Complete => say!("Download the results with: cargo run --release -p emergence_lab_scripts --bin kaggle_download"),
        RunStatus::Error => say!("See the log: kaggle_download writes it next to the outputs, or open the kernel page."),
        RunStatus::NewScript => say!("This version was saved without running; start it with kaggle_run."),
        _ => {}
    }
}

/// Run `kaggle_status`.
pub fn run(args: StatusArgs) -> anyhow::Result<i32> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        anyhow::bail!("--interval must be a positive number of seconds");
    }
    let meta = args.common.metadata()?;
    let state = args.common.run_state(&meta)?;
    let version = args.version.or(state.as_ref().map(|s| s.version));
    let started = state
        .filter(|s| Some(s.version) == version)
        .map(|s| s.started_unix);
    let (client, _) = args.common.connect()?;
    let k = meta.id.clone();
    if !args.watch {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match poll(&client, &k, version, started)? {
                Some(s) => {
                    report_final(&k, version, &s);
                    return Ok(exit_code(&s.status));
                }
                None if attempt < client.settings().retry.max_attempts => {
                    std::thread::sleep(client.settings().retry.backoff(attempt));
                }
                None => {
                    say!("{k} version {}: not visible on Kaggle yet (new runs appear after a short delay); try again in a minute", version.unwrap_or(0));
                    return Ok(EXIT_OK);
                }
            }
        }
    }
    watch(
        &client,
        &k,
        version,
        started,
        Duration::from_secs_f64(args.interval),
    )
}

fn watch(
    client: &ApiClient,
    k: &Ref,
    version: Option<i64>,
    started: Option<u64>,
    interval: Duration,
) -> anyhow::Result<i32> {
    // First Ctrl-C: stop at the next check (within 50 ms unless a request is in flight);
    // a second one exits at once.
    let interrupted = super::interrupt_flag()?;
    let v = version
        .map(|v| format!(" version {v}"))
        .unwrap_or_else(|| " (latest session)".into());
    say!(
        "Watching {k}{v} every {:.0?}; Ctrl-C stops watching (the run continues).",
        interval
    );
    let (tx, rx) = mpsc::channel::<ProgressRecord>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut follower = None;
    let mut display = Display::new();
    let mut progress: Option<ProgressRecord> = None;
    loop {
        let st = poll(client, k, version, started);
        let st = match st {
            Ok(s) => s,
            Err(e) => {
                display.finish();
                return Err(e.into());
            }
        };
        let label = match &st {
            None => "NOT_YET_VISIBLE".to_string(),
            Some(s) => s.status.to_string(),
        };
        if !st.as_ref().map(|s| s.status.is_terminal()).unwrap_or(false) {
            display.show(&label, progress.as_ref());
        }
        if let Some(s) = &st {
            if s.status.is_terminal() {
                stop.store(true, Ordering::SeqCst);
                while let Ok(p) = rx.try_recv() {
                    progress = Some(p);
                }
                if let Ok(Some(log)) = client.stored_log(k, version) {
                    if let Some(p) = last_progress(&log_text(&parse_log_json(&log))) {
                        progress = Some(p);
                    }
                }
                display.show(&label, progress.as_ref());
                display.finish();
                report_final(k, version, s);
                return Ok(exit_code(&s.status));
            }
            if s.status == RunStatus::Running && follower.is_none() {
                let (c, kk, tx2, stop2) = (client.clone(), k.clone(), tx.clone(), stop.clone());
                follower = Some(std::thread::spawn(move || {
                    follow_log(c, kk, version, tx2, stop2, interval)
                }));
            }
        }
        let deadline = Instant::now() + interval;
        while Instant::now() < deadline {
            if interrupted.load(Ordering::SeqCst) {
                stop.store(true, Ordering::SeqCst);
                display.finish();
                say!(
                    "Stopped watching; the run goes on on Kaggle. Check again with kaggle_status."
                );
                return Ok(EXIT_INTERRUPTED);
            }
            let mut changed = false;
            while let Ok(p) = rx.try_recv() {
                progress = Some(p);
                changed = true;
            }
            if changed {
                display.show(&label, progress.as_ref());
            }
            std::thread::sleep(Duration::from_millis(50).min(interval));
        }
    }
}

/// Follow the log stream, sending each new progress line; reconnects (the server replays from
/// the start, so lines already seen are skipped) until the stream ends or `stop` is set.
fn follow_log(
    client: ApiClient,
    k: Ref,
    version: Option<i64>,
    tx: mpsc::Sender<ProgressRecord>,
    stop: Arc<AtomicBool>,
    wait: Duration,
) {
    let mut seen = 0usize;
    while !stop.load(Ordering::SeqCst) {
        match client.log_stream(&k, version) {
            Ok(Answer::Body(text)) => {
                if let Some(p) = last_progress(&log_text(&parse_log_json(&text))) {
                    let _ = tx.send(p);
                }
                return;
            }
            Ok(Answer::Stream(mut resp)) => {
                let mut sse = SseParser::default();
                let mut lines = LineBuffer::default();
                let mut count = 0usize;
                let mut buf = [0u8; 8192];
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let n = match resp.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    for ev in sse.feed(&buf[..n]) {
                        match ev {
                            StreamEvent::End => return,
                            StreamEvent::Entry(e) => {
                                for line in lines.push(&e.data) {
                                    count += 1;
                                    if count > seen {
                                        seen = count;
                                        if let Some(p) = parse_progress_line(&line) {
                                            if tx.send(p).is_err() {
                                                return;
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Err(_) => {}
        }
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
