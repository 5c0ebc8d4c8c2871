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
            | Failure::Coded(_, e) => Some(format!("{e:#}")),
            Failure::PassThrough(_) => None,
        }
    }
}
