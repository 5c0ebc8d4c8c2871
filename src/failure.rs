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

use std::fmt;
use std::process::ExitCode;

/// Why a command failed; the variant picks the exit code, the error carries the message.
#[derive(Debug)]
pub enum Failure {
    CheckFailed(anyhow::Error),
    BadInput(anyhow::Error),
    HostLacks(anyhow::Error),
    TargetFailed(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::CheckFailed(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::HostLacks(_) => 3,
            Failure::TargetFailed(_) => 4,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Failure::CheckFailed(e)
        | Failure::BadInput(e)
        | Failure::HostLacks(e)
        | Failure::TargetFailed(e)) = self;
        // `{:#}` prints the whole context chain on one line: "reading X: permission denied".
        write!(f, "{e:#}")
    }
}
