//! `--tty`: the container's stdio is the slave of a pseudo-terminal of the container's own
//! devpts: the init opens it from the container's /dev/ptmx after pivot_root (an exec'd
//! process from the same /dev/ptmx after entering the mount namespace), so that its name,
//! /dev/pts/N, means the same inside, and binds the slave onto /dev/console as runc does.
//! The master goes back to the parent over a socket. The foreground `isolab run` relays
//! between its own stdio and the master, and a detached container's supervisor copies the
//! master's output into the container's log.

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::mount::MsFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::stat::Mode;
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use super::{RunError, sys_err};
use crate::explain::Explain;

/// Both ends, close-on-exec: the container's command gets the slave only as 0, 1 and 2.
#[derive(Debug)]
pub(crate) struct Pty {
    pub(crate) master: OwnedFd,
    pub(crate) slave: OwnedFd,
}

/// What the init needs to open its terminal, prepared before the clone.
#[derive(Debug)]
pub(crate) struct ConsolePlan {
    /// The init's end of the socket the master goes back over.
    pub(crate) socket: OwnedFd,
    /// The caller's window size, if its stdin is a terminal.
    pub(crate) size: Option<libc::winsize>,
}

/// The parent's end of the master's socket, and the init's plan.
pub(crate) fn console_plan() -> Result<(OwnedFd, ConsolePlan), RunError> {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys_err("creating the console socket pair"))?;
    let size = window_size(std::io::stdin().as_fd());
    Ok((
        parent,
        ConsolePlan {
            socket: child,
            size,
        },
    ))
}

/// In the init, after pivot_root: a pty from the container's /dev/ptmx, its slave made
/// the controlling terminal, stdio and /dev/console, its master sent to the parent.
/// Returns what failed.
pub(crate) fn open_in_init(
    plan: &ConsolePlan,
    explain: &Explain,
) -> Result<(), (&'static str, Errno)> {
    explain.step(format_args!(
        "open(\"/dev/ptmx\"); ioctl(TIOCSPTLCK, 0); ioctl(TIOCGPTPEER); setsid(); ioctl(TIOCSCTTY); dup2(slave, 0..=2); mount(\"/proc/self/fd/0\", \"/dev/console\", MS_BIND); sendmsg(master)"
    ));
    let master = nix::fcntl::open(
        c"/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("opening the container's /dev/ptmx", e))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int, which lives across the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .map_err(|e| ("unlocking the pty", e))?;
    if let Some(size) = &plan.size {
        // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, size) };
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor of the slave.
    let slave = Errno::result(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| ("opening the pty slave", e))?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    become_console(slave.as_fd()).map_err(|e| ("making the pty the console", e))?;
    drop(slave);
    // /dev is the runtime's tmpfs: the file is made there and the slave bound over it.
    match nix::fcntl::open(
        c"/dev/console",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    ) {
        Ok(_) => {}
        Err(e) => return Err(("creating /dev/console", e)),
    }
    nix::mount::mount(
        Some(c"/proc/self/fd/0"),
        c"/dev/console",
        None::<&CStr>,
        MsFlags::MS_BIND,
        None::<&CStr>,
    )
    .map_err(|e| ("binding the pty onto /dev/console", e))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        plan.socket.as_raw_fd(),
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|e| ("sending the pty master to the runtime", e))
}

/// In the parent: the master the init sent; `None` when the init ended before sending it.
pub(crate) fn receive_master(socket: &OwnedFd) -> Result<Option<OwnedFd>, RunError> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(sys_err("receiving the pty master"))?,
        }
    };
    for cmsg in msg.cmsgs().map_err(sys_err("receiving the pty master"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this descriptor for this process just now.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
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
    Ok(Pty {
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
