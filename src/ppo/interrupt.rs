//! A stop request polled inside an iteration: once per rollout tick and once per update
//! minibatch, so a stop takes a tick or a minibatch instead of a whole iteration.
//!
//! An interrupted rollout or update leaves the world, generator, weights and Adam moments
//! part-way through the iteration: the caller throws that state away and keeps (or writes)
//! the state of the last completed iteration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// When to abandon the current iteration: a flag set by someone else (a signal handler, a
/// notebook, another thread) and/or a point in time.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    flag: Option<Arc<AtomicBool>>,
    deadline: Option<Instant>,
}

impl Interrupt {
    /// Never interrupts (the iteration always runs to its end).
    pub fn never() -> Interrupt {
        Interrupt::default()
    }

    /// Interrupts once `flag` is set or `deadline` has passed (either may be absent).
    pub fn new(flag: Option<Arc<AtomicBool>>, deadline: Option<Instant>) -> Interrupt {
        Interrupt { flag, deadline }
    }

    /// Whether the iteration should stop now.
    pub fn requested(&self) -> bool {
        self.flag
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
