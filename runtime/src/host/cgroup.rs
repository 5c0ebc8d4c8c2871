//! How this host mounts cgroups and which controllers a container can be limited by.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::mountinfo::{self, Mount, MountInfoError};

/// `f_type` of a cgroup2 mount (linux/magic.h CGROUP2_SUPER_MAGIC).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `f_type` of tmpfs (linux/magic.h TMPFS_MAGIC); v1 and hybrid hosts mount one at /sys/fs/cgroup.
const TMPFS_MAGIC: i64 = 0x0102_1994;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
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
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MountInfo(#[from] MountInfoError),
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
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new(CGROUP_ROOT))
    }

    fn detect_at(root: &Path) -> Result<Self, CgroupError> {
        match fs_type(root)? {
            CGROUP2_SUPER_MAGIC => Ok(CgroupMode::V2),
            TMPFS_MAGIC => {
                let unified = root.join("unified");
                match fs_type(&unified) {
                    Ok(CGROUP2_SUPER_MAGIC) => Ok(CgroupMode::Hybrid),
                    _ => Ok(CgroupMode::V1),
                }
            }
            f_type => Err(CgroupError::UnknownCgroupMount {
                path: root.to_path_buf(),
                f_type,
            }),
        }
    }
}

/// The filesystem magic number of whatever is mounted at `path`.
pub fn fs_type(path: &Path) -> Result<i64, CgroupError> {
    let stat = nix::sys::statfs::statfs(path).map_err(|source| CgroupError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libc targets.
    Ok(stat.filesystem_type().0 as i64)
}

/// The cgroup hierarchies this host offers and the controllers in them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupSupport {
    pub mode: CgroupMode,
    /// Every controller a container can be limited by, whichever hierarchy holds it; sorted.
    pub controllers: Vec<String>,
    /// v1 hierarchies mounted in this mount namespace, one per superblock (empty on v2).
    pub v1_hierarchies: Vec<V1Hierarchy>,
    /// The cgroup2 hierarchy: the root itself on v2, `<root>/unified` on hybrid, none on v1.
    pub unified: Option<UnifiedHierarchy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V1Hierarchy {
    pub mount_point: PathBuf,
    pub controllers: Vec<String>,
    /// `name=` of a named hierarchy without controllers, such as systemd's.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnifiedHierarchy {
    pub mount_point: PathBuf,
    /// The root's cgroup.controllers: what is not bound to a v1 hierarchy (v1-only
    /// controllers such as net_cls never appear here).
    pub controllers: Vec<String>,
}

impl CgroupSupport {
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(
            Path::new(CGROUP_ROOT),
            Path::new("/proc/self/mountinfo"),
            Path::new("/proc/cgroups"),
        )
    }

    fn detect_at(root: &Path, mountinfo: &Path, proc_cgroups: &Path) -> Result<Self, CgroupError> {
        let mode = CgroupMode::detect_at(root)?;
        let unified = match mode {
            CgroupMode::V1 => None,
            CgroupMode::Hybrid => Some(root.join("unified")),
            CgroupMode::V2 => Some(root.to_path_buf()),
        }
        .map(|mount_point| {
            let file = mount_point.join("cgroup.controllers");
            let text = read(&file)?;
            Ok::<_, CgroupError>(UnifiedHierarchy {
                mount_point,
                controllers: parse_controllers(&text),
            })
        })
        .transpose()?;
        let v1_hierarchies = match mode {
            CgroupMode::V2 => Vec::new(),
            CgroupMode::V1 | CgroupMode::Hybrid => {
                let known = enabled_v1_subsystems(&read(proc_cgroups)?);
                v1_hierarchies(&mountinfo::read(mountinfo)?, &known)
            }
        };
        let controllers: BTreeSet<String> = v1_hierarchies
            .iter()
            .flat_map(|h| h.controllers.iter())
            .chain(unified.iter().flat_map(|u| u.controllers.iter()))
            .cloned()
            .collect();
        Ok(CgroupSupport {
            mode,
            controllers: controllers.into_iter().collect(),
            v1_hierarchies,
            unified,
        })
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Where a controller lives: its v1 mount point, or the cgroup2 mount.
    pub fn location(&self, controller: &str) -> Option<&Path> {
        let owns = |list: &[String]| list.iter().any(|c| c == controller);
        self.v1_hierarchies
            .iter()
            .find(|h| owns(&h.controllers))
            .map(|h| h.mount_point.as_path())
            .or_else(|| {
                self.unified
                    .as_ref()
                    .filter(|u| owns(&u.controllers))
                    .map(|u| u.mount_point.as_path())
            })
    }
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// cgroup.controllers is one line of space-separated names, empty when there are none.
pub fn parse_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The v1 subsystems /proc/cgroups lists as enabled, whether or not they are mounted: the
/// kernel's list of names that are controllers, as opposed to other super options.
fn enabled_v1_subsystems(proc_cgroups: &str) -> BTreeSet<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            match fields.as_slice() {
                [name, _hierarchy, _num_cgroups, "1", ..] => Some((*name).to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// v1 hierarchies from mountinfo, one per superblock however often it is bind-mounted.
fn v1_hierarchies(mounts: &[Mount], known: &BTreeSet<String>) -> Vec<V1Hierarchy> {
    let mut seen = BTreeSet::new();
    mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" && seen.insert(m.device.clone()))
        .map(|m| V1Hierarchy {
            mount_point: m.mount_point.clone(),
            controllers: m
                .super_options
                .iter()
                .filter(|o| known.contains(*o))
                .cloned()
                .collect(),
            name: m
                .super_options
                .iter()
                .find_map(|o| o.strip_prefix("name="))
                .map(str::to_owned),
        })
        .collect()
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
            _ => assert!(matches!(err, Err(CgroupError::UnknownCgroupMount { .. }))),
        }
    }

    #[test]
    fn parses_v2_controllers_files() {
        assert_eq!(
            parse_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
            [
                "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"
            ]
        );
        assert!(parse_controllers("\n").is_empty());
        assert!(parse_controllers("").is_empty());
    }

    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t1\t1\t1
memory\t4\t14\t1
net_cls\t0\t1\t1
pids\t8\t1\t1
rdma\t0\t1\t0
";

    #[test]
    fn enabled_subsystems_skip_header_and_disabled() {
        let known = enabled_v1_subsystems(PROC_CGROUPS);
        assert_eq!(
            known.into_iter().collect::<Vec<_>>(),
            ["cpu", "cpuacct", "cpuset", "memory", "net_cls", "pids"]
        );
    }

    fn mount(device: &str, point: &str, fs_type: &str, opts: &str) -> Mount {
        Mount {
            device: device.into(),
            root: "/".into(),
            mount_point: point.into(),
            fs_type: fs_type.into(),
            source: fs_type.into(),
            super_options: opts.split(',').map(str::to_owned).collect(),
        }
    }

    #[test]
    fn v1_hierarchies_keep_controllers_and_names_once_per_superblock() {
        let mounts = [
            mount("0:20", "/sys/fs/cgroup", "tmpfs", "rw,mode=755"),
            mount(
                "0:29",
                "/sys/fs/cgroup/cpu,cpuacct",
                "cgroup",
                "rw,cpu,cpuacct",
            ),
            mount("0:35", "/sys/fs/cgroup/memory", "cgroup", "rw,xattr,memory"),
            mount("0:35", "/elsewhere/memory", "cgroup", "rw,xattr,memory"),
            mount(
                "0:40",
                "/sys/fs/cgroup/systemd",
                "cgroup",
                "rw,xattr,name=systemd",
            ),
            mount("0:41", "/sys/fs/cgroup/unified", "cgroup2", "rw"),
        ];
        let got = v1_hierarchies(&mounts, &enabled_v1_subsystems(PROC_CGROUPS));
        assert_eq!(
            got,
            [
                V1Hierarchy {
                    mount_point: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    name: None,
                },
                V1Hierarchy {
                    mount_point: "/sys/fs/cgroup/memory".into(),
                    controllers: vec!["memory".into()],
                    name: None,
                },
                V1Hierarchy {
                    mount_point: "/sys/fs/cgroup/systemd".into(),
                    controllers: vec![],
                    name: Some("systemd".into()),
                },
            ]
        );
    }

    #[test]
    fn this_host_reports_controllers_consistent_with_its_hierarchies() {
        let Ok(support) = CgroupSupport::detect() else {
            return; // No cgroups mounted here (e.g. a minimal container): nothing to compare.
        };
        assert_eq!(support.mode, CgroupMode::detect().unwrap());
        for c in &support.controllers {
            assert!(support.location(c).is_some(), "{c} has no hierarchy");
        }
        assert_eq!(support.unified.is_some(), support.mode != CgroupMode::V1);
    }
}
