//! Background checkpoint writing: the trainer hands over an owned [`Checkpoint`] and goes
//! on training while one thread writes it through a [`CheckpointStore`].
//!
//! At most one save is in flight and at most one waits. A newer request replaces a waiting
//! *periodic* one (coalescing: the newest state always gets written and training never
//! stalls on a slow disk); emergency, final and nonfinite requests are never replaced, a
//! request behind one of them waits for the writer to take it. Errors surface on the next call.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use super::error::{CheckpointError, Result};
use super::format::{Checkpoint, CheckpointKind};
use super::store::{CheckpointStore, SaveReport};

/// Counters of an [`AsyncSaver`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaverStats {
    /// Requests accepted by `submit`.
    pub submitted: u64,
    /// Files written.
    pub written: u64,
    /// Periodic requests replaced by a newer request before being written.
    pub superseded: u64,
    /// Saves that failed.
    pub failed: u64,
    /// Total time the writer thread spent saving, in seconds.
    pub write_seconds: f64,
    /// The slowest single save, in seconds (the run's deadline keeps time for one).
    pub max_write_seconds: f64,
    /// Total time `submit` calls spent blocked (waiting behind a non-periodic request).
    pub blocked_seconds: f64,
    /// Report of the last successful save.
    pub last: Option<SaveReport>,
}

#[derive(Default)]
struct State {
    pending: Option<Checkpoint>,
    busy: bool,
    shutdown: bool,
    error: Option<CheckpointError>,
    stats: SaverStats,
    spare: Option<Checkpoint>,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes checkpoints on a background thread; see the module docs for the queueing rule.
pub struct AsyncSaver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    dir: std::path::PathBuf,
}

impl AsyncSaver {
    /// Starts the writer thread for `store`.
    pub fn new(store: CheckpointStore) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let dir = store.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || writer_loop(&worker, &store))
            .map_err(|e| CheckpointError::io(&dir, "spawn writer thread", e))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            dir,
        })
    }

    fn take_error(&self, st: &mut State) -> Result<()> {
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) && !st.shutdown {
            return Err(CheckpointError::SaverGone {
                detail: format!("writer for {} exited", self.dir.display()),
            });
        }
        Ok(())
    }

    /// Queues `ckpt` for writing and returns at once (unless a non-periodic request is still
    /// waiting, then it waits for the writer to take that one).
    ///
    /// `Err` reports a *previous* failed save; `ckpt` is queued all the same.
    pub fn submit(&self, ckpt: Checkpoint) -> Result<()> {
        let t0 = Instant::now();
        let mut st = self.shared.lock();
        while st
            .pending
            .as_ref()
            .is_some_and(|p| p.meta.kind != CheckpointKind::Periodic)
        {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                break;
            }
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.pending.replace(ckpt).is_some() {
            st.stats.superseded += 1;
        }
        st.stats.submitted += 1;
        st.stats.blocked_seconds += t0.elapsed().as_secs_f64();
        self.shared.cv.notify_all();
        self.take_error(&mut st)
    }

    /// Blocks until every queued save is written; returns the first error since the last call.
    pub fn wait(&self) -> Result<()> {
        let mut st = self.shared.lock();
        while st.pending.is_some() || st.busy {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                break;
            }
            st = self.shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        self.take_error(&mut st)
    }

    /// Same as [`AsyncSaver::wait`] (call before exit).
    pub fn flush(&self) -> Result<()> {
        self.wait()
    }

    /// Whether a save is being written or waiting.
    pub fn is_busy(&self) -> bool {
        let st = self.shared.lock();
        st.busy || st.pending.is_some()
    }

    /// The last written checkpoint, handed back so the next conversion can copy into its
    /// buffers (no fresh 150 MB allocation and page faults per save). `None` if none is spare.
    pub fn take_spare(&self) -> Option<Checkpoint> {
        self.shared.lock().spare.take()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SaverStats {
        self.shared.lock().stats.clone()
    }

    /// Writes everything queued, stops the thread and returns the final counters.
    pub fn finish(mut self) -> Result<SaverStats> {
        let r = self.wait();
        self.stop();
        r.map(|()| self.stats())
    }

    fn stop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AsyncSaver {
    /// Writes what is queued before the thread ends (errors are lost here: call `finish`).
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_loop(shared: &Shared, store: &CheckpointStore) {
    loop {
        let ckpt = {
            let mut st = shared.lock();
            loop {
                if let Some(c) = st.pending.take() {
                    st.busy = true;
                    shared.cv.notify_all();
                    break c;
                }
                if st.shutdown {
                    return;
                }
                st = shared.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let t0 = Instant::now();
        let result = store.save_with_report(&ckpt);
        let mut st = shared.lock();
        st.spare = Some(ckpt);
        st.busy = false;
        let secs = t0.elapsed().as_secs_f64();
        st.stats.write_seconds += secs;
        st.stats.max_write_seconds = st.stats.max_write_seconds.max(secs);
        match result {
            Ok(r) => {
                st.stats.written += 1;
                st.stats.last = Some(r);
            }
            Err(e) => {
                st.stats.failed += 1;
                if st.error.is_none() {
                    st.error = Some(e);
                }
            }
        }
        shared.cv.notify_all();
    }
}
