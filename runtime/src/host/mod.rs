//! What this host's kernel offers containers, found by asking the kernel, not by guessing:
//! filesystem magic numbers for cgroups, and real unshare(2) and mount(2) calls, made in
//! throw-away child processes, for namespaces and overlayfs.

pub mod cgroup;
mod child;
pub mod mountinfo;
pub mod namespaces;
pub mod overlayfs;
pub mod seccomp;
pub mod userns;

use nix::errno::Errno;
use serde::Serialize;

pub use cgroup::{CgroupError, CgroupMode, CgroupSupport, fs_type};
pub use child::ChildError;
pub use namespaces::NamespaceKind;
pub use overlayfs::{OverlayError, OverlayfsSupport};
pub use seccomp::{SeccompError, SeccompSupport};
pub use userns::{UserNamespaceLimits, UserNsError};

/// The outcome of trying something for real rather than inferring it from config files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub ok: bool,
    /// Why it failed, as the kernel or the probe's setup put it.
    pub error: Option<String>,
    /// The errno the kernel answered with, when the failure was a syscall's; fixes depend on it.
    pub errno: Option<i32>,
}

impl Probe {
    fn passed() -> Self {
        Probe {
            ok: true,
            error: None,
            errno: None,
        }
    }

    fn refused(errno: Errno) -> Self {
        Probe {
            ok: false,
            error: Some(errno.to_string()),
            errno: Some(errno as i32),
        }
    }

    fn broken(error: &dyn std::error::Error) -> Self {
        Probe {
            ok: false,
            error: Some(error.to_string()),
            errno: None,
        }
    }

    fn from_child(outcome: Result<Result<(), Errno>, ChildError>) -> Self {
        match outcome {
            Ok(Ok(())) => Probe::passed(),
            Ok(Err(errno)) => Probe::refused(errno),
            Err(e) => Probe::broken(&e),
        }
    }

    /// The kernel's errno, when the probe failed in a syscall.
    pub fn errno(&self) -> Option<Errno> {
        self.errno.map(Errno::from_raw)
    }
}
