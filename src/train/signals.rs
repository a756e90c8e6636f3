//! SIGINT/SIGTERM handling for the duration of a run, leaving the process's handling
//! exactly as it was afterwards.
//!
//! signal-hook (not `ctrlc`) because it tells which signal arrived (the exit code is
//! 128 + signal) and its actions can be unregistered when the run ends; `ctrlc` allows one
//! handler per process for its whole life. signal-hook alone does not put back the previous
//! disposition when its last action goes (the signal would stay ignored), so the guard saves
//! the disposition with `sigaction` before and restores it after.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

/// signal-hook's own handler for each signal, recorded the first time it is installed: the
/// registry installs it only once per process, so after a restore it is put back by hand.
static HOOK_HANDLERS: Mutex<Vec<(i32, libc::sigaction)>> = Mutex::new(Vec::new());

fn current(sig: i32) -> std::io::Result<libc::sigaction> {
    // SAFETY: querying only (null new action); `old` is plain data filled by the kernel.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

fn set(sig: i32, action: &libc::sigaction) -> std::io::Result<()> {
    // SAFETY: `action` is a disposition read from the kernel earlier for this signal.
    unsafe {
        if libc::sigaction(sig, action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGINT/SIGTERM handling while it lives; on drop the process handles both signals
/// exactly as before [`SignalGuard::install`].
///
/// The first signal sets the stop flag (the run abandons its iteration, writes the state of
/// the last completed one and returns); a second one exits the process at once with
/// 128 + signal.
pub struct SignalGuard {
    ids: Vec<signal_hook::SigId>,
    previous: Vec<(i32, libc::sigaction)>,
}

impl SignalGuard {
    /// Installs the handlers: `stop` is set and `which` receives the signal number.
    pub fn install(stop: Arc<AtomicBool>, which: Arc<AtomicUsize>) -> std::io::Result<SignalGuard> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut guard = SignalGuard {
            ids: Vec::new(),
            previous: Vec::new(),
        };
        let again = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            guard.previous.push((sig, current(sig)?));
            // Order matters: actions run in registration order, so the exit checks the flag
            // before this signal sets it.
            guard
                .ids
                .push(signal_hook::flag::register_conditional_shutdown(
                    sig,
                    128 + sig,
                    again.clone(),
                )?);
            guard
                .ids
                .push(signal_hook::flag::register(sig, again.clone())?);
            guard.ids.push(signal_hook::flag::register_usize(
                sig,
                which.clone(),
                sig as usize,
            )?);
            guard
                .ids
                .push(signal_hook::flag::register(sig, stop.clone())?);
            let mut hooks = HOOK_HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
            match hooks.iter().find(|(s, _)| *s == sig) {
                // A later run: the registry kept its slot, put its handler back.
                Some((_, h)) => set(sig, h)?,
                None => hooks.push((sig, current(sig)?)),
            }
        }
        Ok(guard)
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        for (sig, action) in self.previous.drain(..) {
            let _ = set(sig, &action);
        }
    }
}
