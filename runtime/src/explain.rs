//! `--explain`: one line on stderr per step, written by the code that performs the step.
//!
//! Lines are formatted into a stack buffer and written with one `write(2)`, so the cloned
//! child can log between `clone` and `execve` without allocating or taking stdio locks, and
//! lines of parent and child never interleave mid-line.
//!
//! Phase marks are the machine-readable side of the same steps, for the bench harness: when
//! `$ISOLAB_PHASE_FD` names an inherited descriptor, the end of each start-up phase is
//! written there as one line `<phase> <CLOCK_MONOTONIC ns>`. Off, a mark is one branch.

use std::fmt::{self, Write as _};
use std::os::fd::RawFd;
use std::time::Instant;

/// The environment variable naming the descriptor phase marks are written to.
pub const PHASE_FD_ENV: &str = "ISOLAB_PHASE_FD";

/// Where explain lines go, and the instant their time stamps count from; `Copy` so the
/// child takes its own without sharing anything with the parent.
#[derive(Debug, Clone, Copy)]
pub struct Explain {
    start: Option<Instant>,
    actor: &'static str,
    phases: PhaseLog,
}

/// Where phase marks go: a descriptor inherited from whoever measures the start-up, or
/// nowhere. `Copy` like [`Explain`], and usable between clone and execve (one `write(2)`
/// from a stack buffer, no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseLog {
    fd: Option<RawFd>,
}

impl PhaseLog {
    /// Marks go nowhere.
    pub const OFF: PhaseLog = PhaseLog { fd: None };

    /// The descriptor `$ISOLAB_PHASE_FD` names, when it is an open descriptor; it is made
    /// close-on-exec, so only this process and its clones (never what they execute) write
    /// to it.
    pub fn from_env() -> PhaseLog {
        let Some(fd) = std::env::var(PHASE_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<RawFd>().ok())
            .filter(|fd| *fd > libc::STDERR_FILENO)
        else {
            return PhaseLog::OFF;
        };
        // SAFETY: fcntl on a descriptor number only reads and sets its flags; an fd that is
        // not open fails with EBADF and phase marks stay off.
        let marked = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        PhaseLog {
            fd: (marked == 0).then_some(fd),
        }
    }

    pub fn is_on(&self) -> bool {
        self.fd.is_some()
    }

    /// `phase` ended now.
    pub fn mark(&self, phase: &str) {
        if self.fd.is_some() {
            self.mark_at(phase, monotonic_ns());
        }
    }

    /// `phase` ended at `at_ns` (CLOCK_MONOTONIC).
    pub fn mark_at(&self, phase: &str, at_ns: u64) {
        let Some(fd) = self.fd else { return };
        let mut line = StackBuf::<128>::new();
        let _ = write!(line, "{phase} {at_ns}");
        line.push_newline();
        line.write_to(fd);
    }
}

/// One phase mark as read back: `phase` ended `at_ns` (CLOCK_MONOTONIC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseMark {
    pub phase: String,
    pub at_ns: u64,
}

/// The marks in `text` (what was written to the phase descriptor), sorted by time;
/// malformed lines are skipped.
pub fn parse_phase_marks(text: &str) -> Vec<PhaseMark> {
    let mut marks: Vec<PhaseMark> = text
        .lines()
        .filter_map(|line| {
            let (phase, at) = line.split_once(' ')?;
            Some(PhaseMark {
                phase: phase.to_owned(),
                at_ns: at.trim().parse().ok()?,
            })
        })
        .collect();
    marks.sort_by_key(|m| m.at_ns);
    marks
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` reads, and one every process on the
/// host shares (a time namespace's offsets stay 0 for isolab's containers).
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

impl Explain {
    /// Logging on: time stamps count from `start` (the moment `isolab run` began).
    pub fn on(start: Instant) -> Self {
        Explain {
            start: Some(start),
            actor: "isolab",
            phases: PhaseLog::OFF,
        }
    }

    /// Logging off: every call is a no-op, so call sites need no `if`.
    pub fn off() -> Self {
        Explain {
            start: None,
            actor: "isolab",
            phases: PhaseLog::OFF,
        }
    }

    /// The same log, with phase marks going to `phases`.
    pub fn with_phases(self, phases: PhaseLog) -> Self {
        Explain { phases, ..self }
    }

    /// The start-up phase `phase` ended now (see [`PhaseLog`]).
    pub fn phase(&self, phase: &str) {
        self.phases.mark(phase);
    }

    /// The same log, labelled as coming from another process (e.g. the container's init).
    pub fn as_actor(self, actor: &'static str) -> Self {
        Explain { actor, ..self }
    }

    /// Writes `[   123 µs] actor: what` to stderr.
    pub fn step(&self, what: fmt::Arguments<'_>) {
        let Some(start) = self.start else { return };
        let mut line = StackBuf::<512>::new();
        let micros = start.elapsed().as_micros();
        // A line longer than the buffer is cut, never lost: truncation is marked by the writer.
        let _ = write!(line, "[{micros:>6} µs] {}: {what}", self.actor);
        line.push_newline();
        line.write_to(libc::STDERR_FILENO);
    }
}

/// A fixed-size buffer implementing `fmt::Write`; text that does not fit is cut and the
/// end marked with `…`.
#[derive(Debug)]
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push_newline(&mut self) {
        const MARK: &[u8] = "…\n".as_bytes();
        if self.truncated || self.len == N {
            self.len = self.len.min(N - MARK.len());
            // Never cut inside a UTF-8 sequence.
            while self.len > 0 && (self.buf[self.len] & 0xC0) == 0x80 {
                self.len -= 1;
            }
            self.buf[self.len..self.len + MARK.len()].copy_from_slice(MARK);
            self.len += MARK.len();
        } else {
            self.buf[self.len] = b'\n';
            self.len += 1;
        }
    }

    pub(crate) fn write_to(&self, fd: libc::c_int) {
        let mut rest = self.as_bytes();
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid, initialised slice for the duration of the call.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                if n < 0 && nix::errno::Errno::last() == nix::errno::Errno::EINTR {
                    continue;
                }
                return;
            }
            rest = &rest[n as usize..];
        }
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        if s.len() > room {
            self.buf[self.len..].copy_from_slice(&s.as_bytes()[..room]);
            self.len = N;
            self.truncated = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_marked_on_a_char_boundary() {
        let mut b = StackBuf::<8>::new();
        let _ = write!(b, "ééééé");
        b.push_newline();
        let text = std::str::from_utf8(b.as_bytes()).unwrap();
        assert!(text.ends_with("…\n"), "{text:?}");
        assert!(text.len() <= 8);
    }

    #[test]
    fn phase_marks_round_trip_through_a_pipe_in_time_order() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let log = PhaseLog {
            fd: Some(std::os::fd::AsRawFd::as_raw_fd(&tx)),
        };
        log.mark_at("mounts", 30);
        log.mark_at("namespaces", 20);
        log.mark("confine");
        drop(tx);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(rx), &mut text).unwrap();
        let marks = parse_phase_marks(&format!("{text}garbage\n"));
        let names: Vec<&str> = marks.iter().map(|m| m.phase.as_str()).collect();
        assert_eq!(names, ["namespaces", "mounts", "confine"]);
        assert!(marks[2].at_ns <= monotonic_ns());
        assert!(!PhaseLog::OFF.is_on());
    }

    #[test]
    fn short_text_ends_with_a_newline() {
        let mut b = StackBuf::<64>::new();
        write!(b, "mount {}", 1).unwrap();
        b.push_newline();
        assert_eq!(b.as_bytes(), b"mount 1\n");
    }
}
