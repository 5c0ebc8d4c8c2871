//! The sysctls that cap or forbid namespace creation, user namespaces above all.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::NamespaceKind;

#[derive(Debug, thiserror::Error)]
pub enum UserNsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} holds {text:?}, not a number")]
    NotANumber { path: PathBuf, text: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserNamespaceLimits {
    /// user.max_<kind>_namespaces for each kind the kernel caps; 0 forbids that kind.
    pub max_namespaces: BTreeMap<NamespaceKind, u64>,
    /// kernel.unprivileged_userns_clone, a Debian/Ubuntu kernel patch; none on other kernels.
    pub unprivileged_userns_clone: Option<bool>,
    /// kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10+); none elsewhere.
    pub apparmor_restrict_unprivileged_userns: Option<bool>,
}

impl UserNamespaceLimits {
    pub fn read() -> Result<Self, UserNsError> {
        Self::read_from(Path::new("/proc/sys"))
    }

    fn read_from(proc_sys: &Path) -> Result<Self, UserNsError> {
        let mut max_namespaces = BTreeMap::new();
        for kind in NamespaceKind::ALL {
            let path = proc_sys.join(format!("user/max_{}_namespaces", kind.name()));
            if let Some(max) = read_number(&path)? {
                max_namespaces.insert(kind, max);
            }
        }
        let flag =
            |name: &str| Ok::<_, UserNsError>(read_number(&proc_sys.join(name))?.map(|v| v != 0));
        Ok(UserNamespaceLimits {
            max_namespaces,
            unprivileged_userns_clone: flag("kernel/unprivileged_userns_clone")?,
            apparmor_restrict_unprivileged_userns: flag(
                "kernel/apparmor_restrict_unprivileged_userns",
            )?,
        })
    }
}

/// A numeric sysctl, or none when this kernel has no such knob.
fn read_number(path: &Path) -> Result<Option<u64>, UserNsError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(UserNsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| UserNsError::NotANumber {
            path: path.to_path_buf(),
            text,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_limits_and_optional_knobs_from_a_fake_proc_sys() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("user")).unwrap();
        fs::create_dir_all(dir.path().join("kernel")).unwrap();
        fs::write(dir.path().join("user/max_user_namespaces"), "0\n").unwrap();
        fs::write(dir.path().join("user/max_pid_namespaces"), "63704\n").unwrap();
        fs::write(dir.path().join("kernel/unprivileged_userns_clone"), "1\n").unwrap();
        let limits = UserNamespaceLimits::read_from(dir.path()).unwrap();
        assert_eq!(
            limits.max_namespaces,
            BTreeMap::from([(NamespaceKind::Pid, 63704), (NamespaceKind::User, 0)])
        );
        assert_eq!(limits.unprivileged_userns_clone, Some(true));
        assert_eq!(limits.apparmor_restrict_unprivileged_userns, None);
    }

    #[test]
    fn garbage_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("user")).unwrap();
        fs::write(dir.path().join("user/max_net_namespaces"), "lots").unwrap();
        let err = UserNamespaceLimits::read_from(dir.path()).unwrap_err();
        assert!(err.to_string().contains("max_net_namespaces"), "{err}");
    }
}
