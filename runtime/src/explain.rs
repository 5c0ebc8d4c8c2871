//! `--explain`: one line on stderr per step, written by the code that performs the step.
//!
//! Lines are formatted into a stack buffer and written with one `write(2)`, so the cloned
//! child can log between `clone` and `execve` without allocating or taking stdio locks, and
//! lines of parent and child never interleave mid-line.

use std::fmt::{self, Write as _};
use std::time::Instant;

/// Where explain lines go, and the instant their time stamps count from; `Copy` so the
/// child takes its own without sharing anything with the parent.
#[derive(Debug, Clone, Copy)]
pub struct Explain {
    start: Option<Instant>,
    actor: &'static str,
}

impl Explain {
    /// Logging on: time stamps count from `start` (the moment `isolab run` began).
    pub fn on(start: Instant) -> Self {
        Explain {
            start: Some(start),
            actor: "isolab",
        }
    }

    /// Logging off: every call is a no-op, so call sites need no `if`.
    pub fn off() -> Self {
        Explain {
            start: None,
            actor: "isolab",
        }
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
    fn short_text_ends_with_a_newline() {
        let mut b = StackBuf::<64>::new();
        write!(b, "mount {}", 1).unwrap();
        b.push_newline();
        assert_eq!(b.as_bytes(), b"mount 1\n");
    }
}
