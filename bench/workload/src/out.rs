//! Output with exactly one `write(2)` per message (unless the kernel writes short).
//!
//! `print!`/`eprintln!` go through std's stdout `LineWriter` or unbuffered stderr, where one
//! formatted line may turn into several writes. Whoever reads us (the start-up probe in
//! particular) should see each message arrive whole, and an strace of the workload should
//! be easy to read, so every message is formatted into memory first and written here.

use std::io;

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live, initialised slice; write(2) only reads `bytes.len()`
        // bytes from its start and does not keep the pointer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Writes `text` to stdout (fd 1).
pub fn stdout(text: &str) -> io::Result<()> {
    write_all(libc::STDOUT_FILENO, text.as_bytes())
}

/// Writes `text` to stderr (fd 2); errors are ignored (there is nowhere left to report them).
pub fn stderr(text: &str) {
    let _ = write_all(libc::STDERR_FILENO, text.as_bytes());
}

/// Set on the kernel command line by isolab's Linux micro-VM, which runs this binary as
/// /init (the kernel hands unknown `KEY=VALUE` parameters to init's environment). The kernel
/// panics the moment init exits and prints its panic text straight to the console, racing
/// whatever output of ours the tty still queues; with two vCPUs the two interleave. Reading
/// the environment costs no system call, so every other target runs exactly as before.
const DRAIN_ENV: &str = "ISOLAB_DRAIN_CONSOLE";

/// Waits until stdout and stderr have been transmitted, when [`DRAIN_ENV`] asks for it.
pub fn drain_console_if_asked() {
    if std::env::var_os(DRAIN_ENV).is_none() {
        return;
    }
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: tcdrain takes a descriptor number and no memory; one that is not a
        // terminal just fails with ENOTTY, which changes nothing here.
        unsafe { libc::tcdrain(fd) };
    }
}
