//! Hooks: programs the config names for points of the lifecycle, each given the
//! container's state JSON on stdin, run one after another in the config's order.
//!
//! prestart, createRuntime, poststart and poststop hooks run in the runtime's namespaces.
//! createContainer and startContainer hooks run in the container's, as the spec asks:
//! the hook's process enters every namespace of the container's init that differs from
//! the runtime's (one setns on the init's pidfd) and forks once more, so that the hook
//! itself is in the container's pid and time namespaces too. createContainer hooks run
//! before pivot_root, so their path still resolves on the host; startContainer hooks run
//! after it, so theirs resolves in the container's root.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::OciError;

/// Where hooks run.
#[derive(Debug, Clone, Copy)]
pub enum Namespaces<'a> {
    Runtime,
    /// Those of the container's init: its pidfd and host pid.
    Container(&'a OwnedFd, i32),
}

/// How often a hook with a timeout is checked on.
const POLL: Duration = Duration::from_millis(5);

/// Runs `hooks` in order; the first failure (non-zero exit, timeout, not startable) stops.
pub fn run(
    kind: &'static str,
    hooks: &[Hook],
    state: &[u8],
    namespaces: Namespaces<'_>,
) -> Result<(), OciError> {
    hooks
        .iter()
        .try_for_each(|hook| run_one(kind, hook, state, namespaces))
}

/// In the forked child before execve: enters the namespaces `flags` of `pidfd`, then forks
/// again and waits, passing on the hook's status, so that the hook runs in the pid and
/// time namespaces, which only a new child enters. Only async-signal-safe calls.
fn enter(pidfd: libc::c_int, flags: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setns takes a descriptor and flags; this forked child is single-threaded.
    if unsafe { libc::setns(pidfd, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fork in a single-threaded child; both sides only make system calls.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: prctl with integer arguments: the hook dies with its waiting parent,
            // which the runtime kills on a timeout.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            Ok(())
        }
        hook => {
            // Only the hook may hold what the runtime waits on: std's exec-error channel,
            // which must close with the hook's execve, not with this process.
            // SAFETY: close_range takes integers; this process only waits from here on.
            unsafe { libc::close_range(3, u32::MAX, 0) };
            let mut status = 0;
            loop {
                // SAFETY: waitpid writes one int, which lives across the call.
                let r = unsafe { libc::waitpid(hook, &mut status, 0) };
                if r == hook
                    || (r == -1
                        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
                {
                    break;
                }
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            // SAFETY: _exit ends this intermediate process without running anything of
            // the runtime's copy of its state.
            unsafe { libc::_exit(code) }
        }
    }
}

fn run_one(
    kind: &'static str,
    hook: &Hook,
    state: &[u8],
    namespaces: Namespaces<'_>,
) -> Result<(), OciError> {
    let fail = |reason: String| OciError::Hook {
        kind,
        path: hook.path().clone(),
        reason,
    };
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            command.arg0(arg0).args(rest);
        }
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    if let Namespaces::Container(pidfd, pid) = namespaces {
        let flags = crate::container::differing_namespaces(pid);
        let fd = pidfd.as_raw_fd();
        // SAFETY: `enter` only makes async-signal-safe system calls.
        unsafe { command.pre_exec(move || enter(fd, flags)) };
    }
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe early; that is its business.
        let _ = stdin.write_all(state);
    }
    let status = match hook.timeout() {
        None => child
            .wait()
            .map_err(|e| fail(format!("waiting for it: {e}")))?,
        Some(seconds) if seconds <= 0 => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timeout {seconds} is not a positive number of seconds"
            )));
        }
        Some(seconds) => {
            let deadline = Instant::now() + Duration::from_secs(seconds as u64);
            loop {
                if let Some(status) = child
                    .try_wait()
                    .map_err(|e| fail(format!("waiting for it: {e}")))?
                {
                    break status;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("killed after its timeout of {seconds} s")));
                }
                std::thread::sleep(POLL);
            }
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("failed: {status}")))
    }
}
