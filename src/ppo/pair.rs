//! Two threads for the native update's minibatches: the calling thread and one helper that
//! waits for work by spinning (then yielding), so handing it a part costs a cache-line
//! write instead of a pool wake-up. A PPO iteration hands over about 2,100 minibatches of a
//! few hundred microseconds each; a rayon `install` + `join` per minibatch (a sleeping
//! worker woken through the OS, the caller parked on a latch) cost tens of microseconds of
//! each, and the helper is idle for only the short serial step between two minibatches.
//!
//! A part the helper has not picked up by the time the caller finished its own runs on the
//! caller (whoever takes the job runs it, exactly once). On a busy machine, where the OS
//! may not run the helper for milliseconds, the pair then slows to one thread's speed
//! instead of waiting on it; the results are the same whichever thread runs a part.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Spins before a waiting thread starts yielding its core (at most a few hundred
/// microseconds: longer than the serial step between two minibatches).
const SPINS: u32 = 20_000;

/// One job for the helper, its borrows' lifetimes erased (see [`SpinPair::run_two`]).
struct Job {
    run: *const (dyn Fn() + Sync),
}

// SAFETY: the closure is `Sync` and is only called while `run_two` keeps it (and what it
// borrows) alive: `run_two` returns only after the helper reported the job done.
unsafe impl Send for Job {}

/// A pointer that may cross to the helper (what it points to is lent for one job).
struct Lent<T>(*mut T);
// SAFETY: used only by `run_two`, which lends `*mut T` of a `T: Send` to exactly one
// thread at a time.
unsafe impl<T: Send> Sync for Lent<T> {}

impl<T> Lent<T> {
    /// The pointer (a method, so closures capture the whole `Lent`).
    fn get(&self) -> *mut T {
        self.0
    }
}

struct Shared {
    /// Jobs handed out so far (the helper runs job `posted` when it exceeds `done`).
    posted: AtomicU64,
    /// Jobs finished by the helper.
    done: AtomicU64,
    quit: AtomicBool,
    /// The helper's job panicked.
    panicked: AtomicBool,
    job: Mutex<Option<Job>>,
}

/// The calling thread plus one spinning helper thread.
pub struct SpinPair {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl SpinPair {
    /// Starts the helper thread; `None` if the OS refuses a thread (then run inline).
    pub fn new() -> Option<SpinPair> {
        let shared = Arc::new(Shared {
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            job: Mutex::new(None),
        });
        let s = shared.clone();
        let helper = std::thread::Builder::new()
            .name("ppo-update-helper".into())
            .spawn(move || {
                let mut seen = 0u64;
                loop {
                    wait_until(|| s.posted.load(Ordering::Acquire) != seen);
                    seen = s.posted.load(Ordering::Acquire);
                    if s.quit.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(job) = s.take_job() {
                        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            // SAFETY: see `Job`: `run_two` keeps it alive until `done`.
                            unsafe { (*job.run)() }
                        }));
                        if ok.is_err() {
                            s.panicked.store(true, Ordering::Release);
                        }
                    }
                    s.done.store(seen, Ordering::Release);
                }
            })
            .ok()?;
        Some(SpinPair {
            shared,
            helper: Some(helper),
        })
    }

    /// Runs `work(a)` on this thread and `work(b)` on the helper; returns when both are done.
    ///
    /// # Panics
    /// If `work` panicked on the helper.
    pub fn run_two<T: Send>(&self, work: &(dyn Fn(&mut T) + Sync), a: &mut T, b: &mut T) {
        let s = &self.shared;
        let lent = Lent(b as *mut T);
        // SAFETY: `b` is lent to the helper alone until it reports this job done.
        let there = move || work(unsafe { &mut *lent.get() });
        let there: &(dyn Fn() + Sync) = &there;
        // SAFETY (lifetime erasure): `there` is run by the thread that takes the job from the
        // slot. If that is the helper, this function returns only after it stored `done`;
        // otherwise this thread ran it, and the emptied slot gives the helper nothing.
        let job = Job {
            run: unsafe {
                std::mem::transmute::<*const (dyn Fn() + Sync + '_), *const (dyn Fn() + Sync)>(
                    there,
                )
            },
        };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        let id = s.posted.fetch_add(1, Ordering::AcqRel) + 1;
        // Waits for the helper even if `work(a)` panics here (it still uses `b`, `there`).
        let guard = WaitDone(s, id);
        work(a);
        if let Some(job) = s.take_job() {
            // The helper has not started it: run it here (the helper finds no job).
            std::mem::forget(guard);
            // SAFETY: taken from the slot, so only this thread runs it; `there` is alive.
            unsafe { (*job.run)() };
            return;
        }
        drop(guard);
        assert!(
            !s.panicked.load(Ordering::Acquire),
            "a minibatch part panicked on the update's helper thread"
        );
    }
}

impl Shared {
    /// The posted job, if no thread has taken it yet.
    fn take_job(&self) -> Option<Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Waits in `drop` until the helper finished job `.1` (or withdraws it if it has not
/// started: the caller's part panicked, and the helper's part is not needed).
struct WaitDone<'a>(&'a Shared, u64);

impl Drop for WaitDone<'_> {
    fn drop(&mut self) {
        if self.0.take_job().is_some() {
            return;
        }
        // The helper took it: it is running or ran it. `done` reaches `.1` once the helper
        // has finished it (a stale round may first store an older id; it then loops once).
        wait_until(|| self.0.done.load(Ordering::Acquire) >= self.1);
    }
}

impl Drop for SpinPair {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        self.shared.posted.fetch_add(1, Ordering::AcqRel);
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parts_run_every_time_and_the_helper_stops() {
        let pair = SpinPair::new().unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..1000u64 {
            let work = move |v: &mut Vec<u64>| v.push(i * 2);
            pair.run_two(&work, &mut a, &mut b);
        }
        let want: Vec<u64> = (0..1000).map(|i| i * 2).collect();
        assert_eq!(a, want);
        assert_eq!(b, want);
        drop(pair);
    }

    #[test]
    fn every_part_runs_exactly_once_whichever_thread_takes_it() {
        use std::sync::atomic::AtomicUsize;
        use std::time::{Duration, Instant};
        let pair = SpinPair::new().unwrap();
        let caller = std::thread::current().id();
        let (runs, b_here, b_started) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let (mut a, mut b) = ((0u64, false), (0u64, true));
        let n = 20_000u64;
        for i in 0..n {
            // Half the rounds the caller's part waits (up to 20 ms) for the other part to
            // start, so the helper takes it; otherwise the caller usually finishes first.
            let patient = i % 2 == 0;
            let work = |v: &mut (u64, bool)| {
                runs.fetch_add(1, Ordering::Relaxed);
                if v.1 {
                    b_started.fetch_add(1, Ordering::AcqRel);
                    if std::thread::current().id() == caller {
                        b_here.fetch_add(1, Ordering::Relaxed);
                    }
                } else if patient {
                    let t = Instant::now();
                    while b_started.load(Ordering::Acquire) as u64 <= i
                        && t.elapsed() < Duration::from_millis(20)
                    {
                        std::hint::spin_loop();
                    }
                }
                v.0 += i;
            };
            pair.run_two(&work, &mut a, &mut b);
        }
        assert_eq!(runs.load(Ordering::Relaxed) as u64, 2 * n);
        assert_eq!((a.0, b.0), (n * (n - 1) / 2, n * (n - 1) / 2));
        let here = b_here.load(Ordering::Relaxed) as u64;
        eprintln!("parts of b run by the caller: {here} of {n}");
        assert!(
            here > 0 && here < n,
            "both threads ran parts: {here} of {n}"
        );
    }
}
