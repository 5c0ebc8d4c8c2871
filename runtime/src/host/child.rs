//! Runs a probe in a forked child, so that what it changes (a new namespace, a mount) dies
//! with the child instead of altering the caller, and so that calls which need a
//! single-threaded process (unshare(CLONE_NEWUSER)) work even when the caller has threads.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("fork for a probe child: {0}")]
    Fork(#[source] Errno),
    #[error("waiting for probe child {pid}: {source}")]
    Wait {
        pid: Pid,
        #[source]
        source: Errno,
    },
    #[error("probe child {pid} was killed by {signal}")]
    Killed { pid: Pid, signal: Signal },
}

/// Runs `body` in a forked child and returns what it returned, carried as the exit status
/// (0 for success, the errno otherwise).
///
/// # Safety
///
/// The caller may have other threads, whose locks the child inherits held, so `body` runs
/// under fork's async-signal-safety rules: it must not allocate, take locks, print or
/// unwind; raw system calls on data prepared before the call are fine.
pub(crate) unsafe fn errno_in_child(
    body: impl FnOnce() -> Result<(), Errno>,
) -> Result<Result<(), Errno>, ChildError> {
    // SAFETY: the child only runs `body`, which the caller guarantees is async-signal-safe,
    // and then _exit, which is too; it never returns into the caller's code.
    match unsafe { fork() }.map_err(ChildError::Fork)? {
        ForkResult::Child => {
            let status = match body() {
                Ok(()) => 0,
                Err(errno) => errno as i32,
            };
            // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the
            // parent and must not run twice.
            unsafe { libc::_exit(status) }
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(Ok(())),
                Ok(WaitStatus::Exited(_, code)) => return Ok(Err(Errno::from_raw(code))),
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Err(ChildError::Killed { pid: child, signal });
                }
                // Stops and continues are not terminations; keep waiting for the exit.
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(source) => return Err(ChildError::Wait { pid: child, source }),
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_success_and_errno_back() {
        // SAFETY: the bodies only return constants.
        let (ok, refused) = unsafe {
            (
                errno_in_child(|| Ok(())),
                errno_in_child(|| Err(Errno::ENOSPC)),
            )
        };
        assert_eq!(ok.unwrap(), Ok(()));
        assert_eq!(refused.unwrap(), Err(Errno::ENOSPC));
    }
}
