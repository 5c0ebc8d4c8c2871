//! How a command fails, and the exit code each kind of failure maps to.
//!
//! Exit codes (documented in the README):
//! - 0: success
//! - 1: the command ran, and what it checked does not hold (e.g. `doctor`: the basic
//!   container path does not work on this host)
//! - 2: bad input: an unknown option, a malformed value, a missing or unreadable file
//!   (clap's own usage errors also exit 2)
//! - 3: this host lacks something the command needs, and installing it would fix it
//! - 4: a measured target failed (its process exited non-zero or never became ready)
//!
//! `isolab run` follows Docker's convention instead: 125 when isolab itself fails, 126 when
//! the command cannot be executed, 127 when it is not found, otherwise the command's status.

use std::process::ExitCode;

/// Why a command failed; the variant picks the exit code, the error carries the message.
#[derive(Debug)]
pub enum Failure {
    CheckFailed(anyhow::Error),
    BadInput(anyhow::Error),
    HostLacks(anyhow::Error),
    TargetFailed(anyhow::Error),
    /// A failure whose code comes from another convention (e.g. `run`'s 125/126/127).
    Coded(u8, anyhow::Error),
    /// Something isolab ran exited with this status, which becomes isolab's; nothing to print.
    PassThrough(u8),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::CheckFailed(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::HostLacks(_) => 3,
            Failure::TargetFailed(_) => 4,
            Failure::Coded(code, _) => *code,
            Failure::PassThrough(code) => *code,
        })
    }

    /// The one line to print on stderr, with the whole context chain ("reading X: denied").
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::CheckFailed(e)
            | Failure::BadInput(e)
            | Failure::HostLacks(e)
            | Failure::TargetFailed(e)
            | Failure::Coded(_, e) => Some(one_line(e)),
            Failure::PassThrough(_) => None,
        }
    }
}

/// The error and its causes joined by ": ", each cause only once: many errors already
/// show their source in their own text ("clone3: EAGAIN: Try again"), and `{:#}` would
/// repeat it.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("clone3: {0}")]
    struct ShowsItsSource(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let source = std::io::Error::from_raw_os_error(libc::EAGAIN);
        let shown = Failure::Coded(125, anyhow::anyhow!(ShowsItsSource(source)));
        let text = shown.message().unwrap();
        assert_eq!(
            text,
            "clone3: Resource temporarily unavailable (os error 11)"
        );
        let context = anyhow::anyhow!("denied").context("reading /x");
        assert_eq!(
            Failure::BadInput(context).message().unwrap(),
            "reading /x: denied"
        );
    }
}
