//! What this host's kernel offers containers, found by asking the kernel, not by guessing.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// `f_type` of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `f_type` of tmpfs (linux/magic.h TMPFS_MAGIC); v1 and hybrid hosts mount one at /sys/fs/cgroup.
const TMPFS_MAGIC: i64 = 0x0102_1994;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("statfs {path}: {source}")]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "{path} is neither cgroup2 nor a tmpfs of v1 hierarchies (f_type {f_type:#x}); mount cgroups first"
    )]
    UnknownCgroupMount { path: PathBuf, f_type: i64 },
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Only v1 hierarchies, one per controller, under a tmpfs at /sys/fs/cgroup.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount at /sys/fs/cgroup/unified.
    Hybrid,
    /// cgroup2 alone, mounted at /sys/fs/cgroup.
    V2,
}

impl CgroupMode {
    /// `v1`, `hybrid` or `v2`: the name used in fingerprints and JSON.
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        }
    }

    /// Detects the mode from the filesystem magic numbers, as systemd and runc do.
    pub fn detect() -> Result<Self, HostError> {
        Self::detect_at(Path::new(CGROUP_ROOT))
    }

    fn detect_at(root: &Path) -> Result<Self, HostError> {
        match fs_type(root)? {
            CGROUP2_SUPER_MAGIC => Ok(CgroupMode::V2),
            TMPFS_MAGIC => {
                let unified = root.join("unified");
                match fs_type(&unified) {
                    Ok(CGROUP2_SUPER_MAGIC) => Ok(CgroupMode::Hybrid),
                    _ => Ok(CgroupMode::V1),
                }
            }
            f_type => Err(HostError::UnknownCgroupMount {
                path: root.to_path_buf(),
                f_type,
            }),
        }
    }
}

/// The filesystem magic number of whatever is mounted at `path`.
pub fn fs_type(path: &Path) -> Result<i64, HostError> {
    let stat = nix::sys::statfs::statfs(path).map_err(|source| HostError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
    Ok(stat.filesystem_type().0 as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_not_a_cgroup_mount() {
        let dir = tempfile::tempdir().unwrap();
        let err = CgroupMode::detect_at(dir.path());
        // /tmp may itself be a tmpfs; then the mode falls back to v1, otherwise it is an error.
        match fs_type(dir.path()).unwrap() {
            TMPFS_MAGIC => assert_eq!(err.unwrap(), CgroupMode::V1),
            _ => assert!(matches!(err, Err(HostError::UnknownCgroupMount { .. }))),
        }
    }
}
