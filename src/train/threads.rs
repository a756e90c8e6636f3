//! `train.num_threads = 0` (the default): pick the thread count by measuring.
//!
//! Whether two threads beat one depends on the machine and on what else runs on it (on a
//! busy 2-core machine one thread wins, on a quiet one two do), so at start-up a few
//! synthetic PPO minibatches of the run's network are timed with the native CPU pass at 1
//! and at up to [`crate::ppo::update_native::PARTS`] threads, in interleaved rounds so both
//! counts see the same conditions (a few tens of milliseconds), and, comparing each count's
//! median round, the most threads within 10% of the fastest win. Ties go to more threads because the costs are lopsided: on a
//! quiet 2-core machine one thread makes an iteration about 1.5x slower, while two threads
//! within 10% of one thread cost at most that 10%. On the CPU the thread count changes only
//! the speed: results are the same for every count (see `tests/ppo_threads.rs`).

use std::sync::Mutex;
use std::time::Instant;

use crate::policy::native::{Layout, Seg, Workspace};
use crate::ppo::pair::SpinPair;
use crate::ppo::update_native::PARTS;

/// The outcome of the start-up measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadChoice {
    /// Threads chosen.
    pub threads: usize,
    /// `(threads, seconds per synthetic minibatch)` measured.
    pub timings: Vec<(usize, f64)>,
}

impl ThreadChoice {
    /// One line for the reporter.
    pub fn describe(&self) -> String {
        let t: Vec<String> = self
            .timings
            .iter()
            .map(|(n, s)| format!("{n} thread(s) {:.2} ms", s * 1e3))
            .collect();
        format!(
            "train.num_threads = 0 (auto): measured {} per minibatch; using {} thread(s)",
            t.join(", "),
            self.threads
        )
    }
}

static LAST_CHOICE: Mutex<Option<ThreadChoice>> = Mutex::new(None);

/// The choice made by the last [`choose_threads`] call, taken (the trainer reports it once).
pub fn take_last_choice() -> Option<ThreadChoice> {
    LAST_CHOICE.lock().ok()?.take()
}

/// Rounds of [`time_minibatch`] per thread count (the first one warms up and is dropped).
const ROUNDS: usize = 6;
/// Minibatches per round.
const PER_ROUND: usize = 8;

/// Seconds per synthetic minibatch (256 rows in chunks of 32, split in `PARTS` parts) of
/// the network with `obs_dim` inputs and `hidden` widths on `threads` threads: the mean of
/// [`PER_ROUND`] minibatches.
fn time_minibatch(lay: &Layout, threads: usize) -> f64 {
    let params: Vec<f32> = (0..lay.total)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
        .collect();
    let rows = 256 / PARTS;
    let mut parts: Vec<(Workspace, Vec<f32>)> = (0..PARTS)
        .map(|p| {
            let mut ws = Workspace::default();
            for (i, x) in ws.input_mut(lay, rows).iter_mut().enumerate() {
                *x = (((i + p) * 31 % 17) as f32 - 8.0) * 0.1;
            }
            (ws, vec![0f32; lay.total])
        })
        .collect();
    let segs: Vec<Seg> = (0..rows.div_ceil(32))
        .map(|c| Seg {
            entry: c,
            start: c * 32,
            len: 32.min(rows - c * 32),
        })
        .collect();
    let dl = vec![0.01f32; rows * crate::world::NUM_ACTIONS];
    let dv = vec![0.01f32; rows];
    let work = |(ws, g): &mut (Workspace, Vec<f32>)| {
        ws.forward(lay, &params, &segs, None);
        ws.backward(lay, &params, &segs, None, &dl, &dv, g);
    };
    // Buffers sized before the clock starts.
    parts.iter_mut().for_each(work);
    // As the update runs them (`NativeUpdate::run`): inline, or this thread plus a helper.
    let pair = if threads > 1 { SpinPair::new() } else { None };
    let t = Instant::now();
    for _ in 0..PER_ROUND {
        match (&pair, &mut parts[..]) {
            (Some(pair), [a, b]) => pair.run_two(&work, a, b),
            (_, parts) => parts.iter_mut().for_each(work),
        }
    }
    t.elapsed().as_secs_f64() / PER_ROUND as f64
}

/// Measures 1 to `max_threads` threads (at most [`PARTS`]) on the network with `obs_dim`
/// inputs and `hidden` widths, sets libtorch's thread count to the choice and records it
/// for [`take_last_choice`]. Sets the native passes' thread count
/// ([`crate::policy::native::set_threads`]); libtorch is left alone.
pub fn choose_threads(obs_dim: usize, hidden: &[usize], max_threads: usize) -> ThreadChoice {
    let lay = Layout::new(obs_dim, hidden);
    let counts: Vec<usize> = (1..=max_threads.clamp(1, PARTS)).collect();
    // Interleaved rounds; round 0 warms up caches and the pools. The median round per
    // count, not the best: with another busy process, two threads are slow in most rounds
    // (their partner waits for a time slice) but can be lucky in one.
    let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..ROUNDS {
        for (&t, times) in counts.iter().zip(rounds.iter_mut()) {
            let s = time_minibatch(&lay, t);
            if round > 0 {
                times.push(s);
            }
        }
    }
    let timings: Vec<(usize, f64)> = counts
        .iter()
        .zip(rounds.iter_mut())
        .map(|(&t, times)| {
            times.sort_by(f64::total_cmp);
            (t, times[times.len() / 2])
        })
        .collect();
    let fastest = timings.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
    let threads = timings
        .iter()
        .rev()
        .find(|t| t.1 <= fastest * 1.1)
        .map_or(1, |t| t.0);
    crate::policy::native::set_threads(threads);
    let choice = ThreadChoice { threads, timings };
    if let Ok(mut last) = LAST_CHOICE.lock() {
        *last = Some(choice.clone());
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_one_of_the_measured_counts_and_is_applied() {
        let saved = crate::policy::native::threads();
        let c = choose_threads(30, &[16, 16], 2);
        assert!(c.timings.iter().any(|t| t.0 == c.threads));
        assert!(c.timings.iter().all(|t| t.1 > 0.0 && t.1.is_finite()));
        let fastest = c.timings.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
        let chosen = c.timings.iter().find(|t| t.0 == c.threads).unwrap().1;
        assert!(chosen <= fastest * 1.1);
        assert_eq!(crate::policy::native::threads(), c.threads);
        assert!(c.describe().contains("using"));
        crate::policy::native::set_threads(saved);
    }
}
