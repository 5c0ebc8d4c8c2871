//! `idle`: print ISOLAB-READY, then sleep until SIGTERM or SIGINT.
//!
//! A plain `loop { pause() }` with a flag set by the handler has a window: a signal landing
//! between the flag check and pause(2) would be handled and then slept through. So the two
//! signals are blocked first and the loop waits in sigsuspend(2), which is pause(2) with
//! the signals unblocked atomically for the duration of the wait.
//!
//! A handler (rather than the default action) matters when the workload is PID 1 of a
//! container or guest: the kernel drops signals that PID 1 has not installed a handler for.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::json::Object;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

pub fn run() -> Result<Object, String> {
    let os_err = |what: &str| format!("{what} failed: {}", std::io::Error::last_os_error());

    // SAFETY: `sigset_t` is plain old data; sigemptyset initialises it before any use.
    let mut stop_set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut wait_set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set pointers are valid and writable; SIGTERM and SIGINT are valid signals.
    unsafe {
        libc::sigemptyset(&mut stop_set);
        libc::sigaddset(&mut stop_set, libc::SIGTERM);
        libc::sigaddset(&mut stop_set, libc::SIGINT);
    }

    // Block first, so a signal sent as soon as ISOLAB-READY is seen stays pending.
    // SAFETY: valid set pointers; the old mask is written into `wait_set`.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &stop_set, &mut wait_set) } != 0 {
        return Err(os_err("sigprocmask"));
    }
    // While waiting, the old mask minus the stop signals applies.
    // SAFETY: `wait_set` is an initialised set (filled in by sigprocmask).
    unsafe {
        libc::sigdelset(&mut wait_set, libc::SIGTERM);
        libc::sigdelset(&mut wait_set, libc::SIGINT);
    }

    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `sigaction` is plain old data; the relevant fields are set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `action.sa_mask` is a valid, writable set.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and the handler only does an atomic store,
        // which is async-signal-safe.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(os_err("sigaction"));
        }
    }

    crate::out::stdout("ISOLAB-READY\n").map_err(|e| format!("writing to stdout failed: {e}"))?;

    while !STOP.load(Ordering::SeqCst) {
        // Returns -1/EINTR after a handler ran; any other signal's handler (none are
        // installed) or a spurious wake-up just loops.
        // SAFETY: `wait_set` is an initialised signal set.
        unsafe { libc::sigsuspend(&wait_set) };
    }
    Ok(Object::mode("idle"))
}
