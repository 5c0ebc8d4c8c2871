//! Whether containers can be given seccomp filters here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

const ACTIONS_AVAIL: &str = "/proc/sys/kernel/seccomp/actions_avail";
const SELF_STATUS: &str = "/proc/self/status";

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeccompSupport {
    /// Filters can be installed: the kernel has seccomp and lists filter return actions.
    pub ok: bool,
    /// PR_GET_SECCOMP for this process (0 none, 1 strict, 2 filter); none when the kernel
    /// lacks CONFIG_SECCOMP and the call fails.
    pub mode: Option<i32>,
    pub prctl_error: Option<String>,
    /// /proc/self/status has a `Seccomp:` line (CONFIG_SECCOMP).
    pub status_field: bool,
    /// Filter return actions (CONFIG_SECCOMP_FILTER); empty when the file is absent.
    pub actions_avail: Vec<String>,
}

impl SeccompSupport {
    pub fn detect() -> Result<Self, SeccompError> {
        let actions_avail = match fs::read_to_string(ACTIONS_AVAIL) {
            Ok(text) => parse_actions(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(SeccompError::Read {
                    path: ACTIONS_AVAIL.into(),
                    source,
                });
            }
        };
        let status = fs::read_to_string(SELF_STATUS).map_err(|source| SeccompError::Read {
            path: Path::new(SELF_STATUS).to_path_buf(),
            source,
        })?;
        let status_field = has_seccomp_field(&status);
        // SAFETY: PR_GET_SECCOMP takes no pointers and only reads this thread's mode.
        let (mode, prctl_error) = match Errno::result(unsafe { libc::prctl(libc::PR_GET_SECCOMP) })
        {
            Ok(mode) => (Some(mode), None),
            Err(errno) => (None, Some(format!("prctl(PR_GET_SECCOMP): {errno}"))),
        };
        Ok(SeccompSupport {
            ok: mode.is_some() && status_field && !actions_avail.is_empty(),
            mode,
            prctl_error,
            status_field,
            actions_avail,
        })
    }
}

fn parse_actions(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn has_seccomp_field(status: &str) -> bool {
    status.lines().any(|l| l.starts_with("Seccomp:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_actions_and_status() {
        assert_eq!(
            parse_actions("kill_process kill_thread trap errno user_notif trace log allow\n"),
            [
                "kill_process",
                "kill_thread",
                "trap",
                "errno",
                "user_notif",
                "trace",
                "log",
                "allow"
            ]
        );
        assert!(has_seccomp_field(
            "Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n"
        ));
        assert!(!has_seccomp_field("Name:\tx\nNoNewPrivs:\t0\n"));
    }

    #[test]
    fn prctl_reports_a_known_mode() {
        let support = SeccompSupport::detect().unwrap();
        if let Some(mode) = support.mode {
            assert!((0..=2).contains(&mode));
        }
    }
}
