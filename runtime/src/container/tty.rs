//! `--tty`: the container's stdio is the slave of a pseudo-terminal opened before the clone;
//! the foreground `isolab run` relays between its own stdio and the master, and a detached
//! container's supervisor copies the master's output into the container's log.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use super::{RunError, sys_err};
use crate::explain::Explain;

/// Both ends, close-on-exec: the container's command gets the slave only as 0, 1 and 2.
#[derive(Debug)]
pub(crate) struct Pty {
    pub(crate) master: OwnedFd,
    pub(crate) slave: OwnedFd,
    /// The slave's host path (/dev/pts/N), bound onto the container's /dev/console.
    pub(crate) slave_path: CString,
}

/// The window size of the terminal on fd 0, if it is one.
fn window_size(fd: BorrowedFd<'_>) -> Option<libc::winsize> {
    // SAFETY: winsize is plain old data; all-zero is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which lives across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ret == 0).then_some(size)
}

/// Opens the pair, sized like the caller's terminal when it has one.
pub(crate) fn open(explain: &Explain) -> Result<Pty, RunError> {
    let size = window_size(std::io::stdin().as_fd());
    explain.step(format_args!("openpty()"));
    let pty = nix::pty::openpty(size.as_ref(), None).map_err(sys_err("opening a pty"))?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(sys_err("marking the pty close-on-exec"))?;
    }
    let path = nix::unistd::ttyname(&pty.slave).map_err(sys_err("naming the pty slave"))?;
    Ok(Pty {
        slave_path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| sys_err("naming the pty slave")(Errno::EINVAL))?,
        master: pty.master,
        slave: pty.slave,
    })
}

/// In the child: a new session with the slave as its controlling terminal and stdio.
pub(crate) fn become_console(slave: BorrowedFd<'_>) -> Result<(), Errno> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal it from another session).
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, from a descriptor that is open.
        Errno::result(unsafe { libc::dup2(slave.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// The caller's terminal in raw mode (keys go to the container's line discipline as they
/// are typed); dropping it restores the settings, on every way out of the relay.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies stdin to the master and the master to stdout until every slave descriptor is
/// closed (the master reads EIO), which happens when the container has ended: its init's
/// exit kills the rest of its pid namespace.
pub(crate) fn relay(master: &OwnedFd) -> Result<(), RunError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let raw = RawMode::enter();
    if raw.is_some() {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            nix::sys::signal::sigaction(
                Signal::SIGWINCH,
                &SigAction::new(
                    SigHandler::Handler(note_resize),
                    SaFlags::SA_RESTART,
                    SigSet::empty(),
                ),
            )
        }
        .map_err(sys_err("installing the SIGWINCH handler"))?;
    }
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        if RESIZED.swap(false, Ordering::Relaxed) {
            if let Some(size) = window_size(stdin.as_fd()) {
                // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
            }
        }
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("polling the pty")(e)),
            Ok(_) => {}
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (master_ready, stdin_ready) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
        if master_ready {
            match nix::unistd::read(master, &mut buf) {
                // EIO: no slave descriptor is open any more.
                Ok(0) | Err(Errno::EIO) => return Ok(()),
                Ok(n) => write_all(stdout.as_fd(), &buf[..n])
                    .map_err(sys_err("writing the container's output"))?,
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(sys_err("reading the pty")(e)),
            }
        }
        if stdin_ready {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n])
                    .map_err(sys_err("writing to the container's terminal"))?,
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(sys_err("reading stdin")(e)),
            }
        }
    }
}

/// A detached container's terminal: copies the master's output to `out` (the log) until
/// every slave descriptor is closed (EIO), that is until the container has ended. Nothing
/// is written to the master: a detached container has no stdin. A failed write (a full
/// disk) loses that output but the copying goes on, so the container never blocks on a
/// full terminal buffer.
pub(crate) fn drain(master: BorrowedFd<'_>, out: BorrowedFd<'_>) -> Result<(), RunError> {
    let mut buf = [0u8; 8192];
    loop {
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => return Ok(()),
            Ok(n) => {
                let _ = write_all(out, &buf[..n]);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(sys_err("reading the pty")(e)),
        }
    }
}
