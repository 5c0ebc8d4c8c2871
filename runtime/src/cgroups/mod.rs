//! Resource limits through cgroups: a [`CgroupManager`] per container, with a v1 and a v2
//! implementation. Hybrid hosts (v1 controllers plus an empty cgroup2 mount) use v1, because
//! that is where their controllers are.
//!
//! Each container gets `isolab/<name>` under each hierarchy it needs (or, for an OCI
//! bundle, its `linux.cgroupsPath`: see [`CgroupPath`]); the parent process creates it and
//! writes the limits while the child is still setting up its mounts, then places the child
//! in it before the child may exec.

mod pids;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::explain::Explain;
use crate::host::{CgroupMode, CgroupSupport};

/// The CFS period every quota is expressed against (the kernel's default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The directory under each hierarchy's root that holds isolab's containers.
const PARENT_DIR: &str = "isolab";

/// The limits a container asked for; `None` leaves the kernel's default (unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Memory plus swap, as Docker's `--memory-swap`.
    pub memory_swap: Option<MemorySwap>,
    /// CFS quota in µs per [`CPU_PERIOD_US`].
    pub cpu_quota_us: Option<u64>,
    /// v1 `cpu.shares` (2..=262144); converted to a weight on v2.
    pub cpu_shares: Option<u64>,
    /// v2 `cpu.weight` (1..=10000); converted to shares on v1.
    pub cpu_weight: Option<u64>,
    /// CPUs the container may run on, in the kernel's list syntax (`0-2,4`).
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<u64>,
    /// Proportional block-I/O weight (10..=1000, Docker's `--blkio-weight`).
    pub blkio_weight: Option<u16>,
    /// `--privileged`: every device may be opened, as on the host; otherwise only the
    /// container's own /dev nodes (v1 devices controller).
    pub all_devices: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySwap {
    /// Memory plus swap may not exceed this many bytes.
    Total(u64),
    Unlimited,
}

impl Resources {
    /// The cgroup v1 shares value to write, from either option.
    fn shares(&self) -> Option<u64> {
        self.cpu_shares.or_else(|| {
            self.cpu_weight
                .map(|w| 2 + (w.clamp(1, 10_000) - 1) * 262_142 / 9_999)
        })
    }

    /// The cgroup v2 weight to write, from either option (runc's conversion of shares).
    fn weight(&self) -> Option<u64> {
        self.cpu_weight.or_else(|| {
            self.cpu_shares
                .map(|s| 1 + (s.clamp(2, 262_144) - 2) * 9_999 / 262_142)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Host(#[from] crate::host::CgroupError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening cgroup {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a container named {name:?} exists already ({path} is present)")]
    NameInUse { name: String, path: PathBuf },
    #[error("removing cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no line {key:?} with a number")]
    MissingKey { path: PathBuf, key: &'static str },
    #[error("this host cannot limit {what}: {missing}; {how}")]
    Unsupported {
        what: &'static str,
        missing: String,
        how: &'static str,
    },
}

/// The cgroup filesystems the container mounts read-only at /sys/fs/cgroup after it has
/// entered its cgroup namespace, so it sees its own cgroup as the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerView {
    /// One cgroup2 mount.
    Unified,
    /// A tmpfs with one v1 hierarchy per entry: (directory name, controllers as mount options).
    Hierarchies(Vec<(String, String)>),
}

/// What a container's cgroups report; `None` where this host's controllers do not say
/// (e.g. no memory.peak before Linux 5.19 on cgroup v2, no cpuacct hierarchy on v1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub memory_current_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    /// CFS periods in which the cgroup ran out of quota, and the time it was held back.
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_ns: Option<u64>,
    pub pids_current: Option<u64>,
    /// `None` when unlimited.
    pub pids_limit: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// The cgroups of one container.
pub trait CgroupManager: fmt::Debug {
    /// Creates the container's cgroup(s) and writes every limit.
    fn create(&self, resources: &Resources, explain: &Explain) -> Result<(), CgroupError>;
    /// Moves `pid` into the container's cgroup(s).
    fn add_process(&self, pid: i32, explain: &Explain) -> Result<(), CgroupError>;
    /// Whether the container's device access is restricted to its /dev nodes (v1's devices
    /// controller). cgroup v2 has no devices file, only a BPF program isolab does not load,
    /// so there the container must not get CAP_MKNOD instead (see capabilities.rs).
    fn limits_devices(&self) -> bool {
        false
    }
    /// How many processes the kernel's OOM killer killed in the container's memory cgroup.
    fn oom_kills(&self) -> Result<u64, CgroupError>;
    /// Usage figures, each from the controller that keeps it.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// The container's cgroup directories, one per hierarchy joined.
    fn paths(&self) -> Vec<PathBuf>;
    /// The processes in the container's cgroup (host pids).
    fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        // Every hierarchy holds the same processes; the first one answers.
        let Some(dir) = self.paths().into_iter().next() else {
            return Ok(Vec::new());
        };
        match std::fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CgroupError::Read {
                path: dir.join("cgroup.procs"),
                source,
            }),
        }
    }
    /// What to mount inside the container.
    fn container_view(&self) -> ContainerView;
    /// The one cgroup v2 directory a new process can be created in directly (clone3's
    /// CLONE_INTO_CGROUP) once [`create`](Self::create) has run; `None` on v1 and hybrid
    /// hierarchies, which a process can only be moved into.
    fn clone_target(&self) -> Option<&Path> {
        None
    }
    /// The files a single-threaded process writes "0" to, once [`create`](Self::create) has
    /// run, to move itself in (v1's `tasks`). A thread that moves itself spares the kernel
    /// the global threadgroup lock that a cgroup.procs write of another pid takes for
    /// writing, and with it an RCU grace period: tenths of a millisecond instead of
    /// milliseconds. Empty where the parent places the process (v2: clone3 does).
    fn self_join_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Moves the calling process, which must be single-threaded, into the cgroup(s): by
    /// itself where it can ([`self_join_files`](Self::self_join_files)), else by pid.
    fn join_self(&self, explain: &Explain) -> Result<(), CgroupError> {
        let files = self.self_join_files();
        if files.is_empty() {
            return self.add_process(std::process::id() as i32, explain);
        }
        files.iter().try_for_each(|file| write(explain, file, "0"))
    }
    /// Removes the container's cgroup(s), and the levels above them that this manager
    /// created and nothing else uses; ones that were never created are no error.
    fn remove(&self, explain: &Explain) -> Result<(), CgroupError>;
    /// The levels above the container's cgroup(s) that [`create`](Self::create) made, for
    /// [`at`] to remove them with the container later.
    fn created_parents(&self) -> Vec<PathBuf>;
}

/// Where a container's cgroup directory goes in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupPath {
    /// `isolab/<name>` under each root: isolab's own containers. `isolab/` is shared by all
    /// of them and stays.
    Named(String),
    /// An OCI `linux.cgroupsPath`: an absolute one from each hierarchy's root, a relative
    /// one from this process's own cgroup in that hierarchy (the runtime spec's
    /// runtime-determined location, as runc reads it).
    Given(PathBuf),
}

impl CgroupPath {
    /// The container's name in messages (a taken name, a taken path).
    fn label(&self) -> String {
        match self {
            CgroupPath::Named(name) => name.clone(),
            CgroupPath::Given(path) => path.display().to_string(),
        }
    }

    /// The container's directory in the hierarchy mounted at `root`, whose own cgroup (from
    /// /proc/self/cgroup) is `own`.
    fn place(&self, root: &Path, own: impl FnOnce() -> PathBuf) -> Place {
        match self {
            CgroupPath::Named(name) => {
                let base = root.join(PARENT_DIR);
                Place {
                    dir: base.join(name),
                    base,
                    created: Mutex::default(),
                }
            }
            CgroupPath::Given(path) if path.is_absolute() => Place {
                dir: root.join(path.strip_prefix("/").unwrap_or(path)),
                base: root.to_path_buf(),
                created: Mutex::default(),
            },
            CgroupPath::Given(path) => {
                let own = own();
                let base = root.join(own.strip_prefix("/").unwrap_or(&own));
                Place {
                    dir: base.join(path),
                    base,
                    created: Mutex::default(),
                }
            }
        }
    }
}

/// One hierarchy's cgroup of a container: `base` exists or is shared (created if missing,
/// never removed), the levels between it and `dir` are made as needed and removed again,
/// if empty, by whoever made them.
#[derive(Debug)]
struct Place {
    base: PathBuf,
    dir: PathBuf,
    /// The levels below `base` this manager created, outermost first.
    created: Mutex<Vec<PathBuf>>,
}

impl Place {
    /// A directory that exists already, with the levels above it that its creator made.
    fn existing(dir: PathBuf, created: &[PathBuf]) -> Self {
        Place {
            base: dir.clone(),
            created: Mutex::new(
                created
                    .iter()
                    .filter(|c| dir.starts_with(c))
                    .cloned()
                    .collect(),
            ),
            dir,
        }
    }

    /// The levels from `base` (excluded) down to `dir` (included).
    fn levels(&self) -> Vec<PathBuf> {
        let mut levels: Vec<PathBuf> = self
            .dir
            .ancestors()
            .take_while(|a| *a != self.base && a.starts_with(&self.base))
            .map(Path::to_path_buf)
            .collect();
        levels.reverse();
        levels
    }

    /// Creates `base` if missing, every missing level below it, and `dir`, which must be
    /// new; `each` runs on a level's parent before the level is made (v2: enable the
    /// controllers there). A level removed meanwhile by another container's cleanup
    /// (ENOENT under it) starts the walk again.
    fn create(
        &self,
        label: &str,
        explain: &Explain,
        mut each: impl FnMut(&Path) -> Result<(), CgroupError>,
    ) -> Result<(), CgroupError> {
        const TRIES: u32 = 10;
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 1.. {
            ensure_parent(explain, &self.base)?;
            let mut parent = self.base.clone();
            let mut outcome = Ok(());
            for level in self.levels() {
                each(&parent)?;
                let made = if level == self.dir {
                    create_leaf(explain, &level, label).map(|()| false)
                } else {
                    ensure_parent(explain, &level)
                };
                match made {
                    Ok(true) => created.push(level.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
                parent = level;
            }
            match outcome {
                Err(CgroupError::Create { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempt < TRIES => {}
                other => return other,
            }
        }
        unreachable!("the loop returns by its last attempt")
    }

    /// Removes `dir`, then the levels this manager created that nothing else uses now.
    fn remove(&self, explain: &Explain) -> Result<(), CgroupError> {
        remove_dir(explain, &self.dir)?;
        let created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        for level in created.iter().rev().filter(|l| **l != self.dir) {
            match std::fs::remove_dir(level) {
                Ok(()) => explain.step(format_args!("rmdir {}", level.display())),
                // Another container's cgroup is in it: it stays for that one.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOTEMPTY | libc::EBUSY | libc::ENOENT)
                    ) => {}
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: level.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn created(&self) -> Vec<PathBuf> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// This process's cgroup in the hierarchy whose /proc/self/cgroup entry is named by
/// `controllers` (v1: `memory`, `cpu,cpuacct`, `name=systemd`; v2: empty); `/` when
/// there is no such line.
fn own_cgroup(controllers: &str) -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own_cgroup_in(&text, controllers)
}

fn own_cgroup_in(text: &str, controllers: &str) -> PathBuf {
    let wanted: BTreeSet<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, list, path) = (fields.next()?, fields.next()?, fields.next()?);
            let have: BTreeSet<&str> = list.split(',').filter(|c| !c.is_empty()).collect();
            (have == wanted).then(|| PathBuf::from(path))
        })
        .next()
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The manager for this host's cgroup layout; fails (before anything is created) when the
/// host lacks a controller or file a requested limit needs.
pub fn for_host(
    path: &CgroupPath,
    resources: &Resources,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let host = CgroupSupport::detect()?;
    Ok(match (host.mode, host.unified) {
        (CgroupMode::V2, Some(unified)) => Box::new(v2::V2Manager::new(
            &unified.mount_point,
            &unified.controllers,
            path,
            resources,
        )?),
        _ => Box::new(v1::V1Manager::new(path, resources, host.v1_hierarchies)?),
    })
}

/// The manager for the cgroup directories `dirs` (what [`CgroupManager::paths`] said when
/// they were created), which also removes the levels above them listed in `created`
/// ([`CgroupManager::created_parents`]). Directories that are gone are left out.
pub fn at(dirs: &[PathBuf], created: &[PathBuf]) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let host = CgroupSupport::detect()?;
    Ok(match (host.mode, host.unified, dirs.first()) {
        (CgroupMode::V2, Some(unified), Some(dir)) => Box::new(v2::V2Manager::at(
            &unified.mount_point,
            dir.clone(),
            created,
        )),
        // v1, or no directory at all (a manager of no hierarchy, which does nothing).
        _ => Box::new(v1::V1Manager::at(
            dirs.iter().filter(|d| d.is_dir()).cloned().collect(),
            created,
            host.v1_hierarchies,
        )),
    })
}

/// The manager for the existing cgroups of container `name`: whatever `isolab/<name>`
/// directories the host's hierarchies hold (none, when the container has none any more).
pub fn existing(name: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let host = CgroupSupport::detect()?;
    Ok(match (host.mode, host.unified) {
        (CgroupMode::V2, Some(unified)) => {
            Box::new(v2::V2Manager::existing(&unified.mount_point, name))
        }
        _ => Box::new(v1::V1Manager::existing(name, host.v1_hierarchies)),
    })
}

/// The names of every container that has a cgroup directory under `isolab/` in any
/// hierarchy, whether or not isolab still knows about it.
pub fn names() -> Result<BTreeSet<String>, CgroupError> {
    let host = CgroupSupport::detect()?;
    let roots: Vec<PathBuf> = match (host.mode, host.unified) {
        (CgroupMode::V2, Some(unified)) => vec![unified.mount_point],
        _ => host
            .v1_hierarchies
            .into_iter()
            .map(|h| h.mount_point)
            .collect(),
    };
    let mut names = BTreeSet::new();
    for root in roots {
        let parent = root.join(PARENT_DIR);
        let entries = match std::fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: parent,
                    source,
                });
            }
        };
        names.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    Ok(names)
}

/// A number from a one-value control file; `max` (v2's "unlimited") and v1's
/// page-counter maximum read as `None`, as does a file this kernel does not have.
fn read_value(path: &Path) -> Result<Option<u64>, CgroupError> {
    /// v1 writes "unlimited" as PAGE_COUNTER_MAX pages or LLONG_MAX; both are far above this.
    const UNLIMITED: u64 = 1 << 62;
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse::<u64>().ok().filter(|&v| v < UNLIMITED)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Like [`read_key`], but a missing file or key is `None`.
fn read_key_opt(path: &Path, key: &'static str) -> Result<Option<u64>, CgroupError> {
    match read_key(path, key) {
        Ok(v) => Ok(Some(v)),
        Err(CgroupError::MissingKey { .. }) => Ok(None),
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn write(explain: &Explain, path: &Path, value: &str) -> Result<(), CgroupError> {
    explain.step(format_args!("write {} = {value:?}", path.display()));
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The number after `key` in a flat-keyed file such as memory.events or cpu.stat.
pub fn read_key(path: &Path, key: &'static str) -> Result<u64, CgroupError> {
    read(path)?
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .ok_or(CgroupError::MissingKey {
            path: path.to_path_buf(),
            key,
        })
}

fn mkdir(explain: &Explain, path: &Path) -> Result<(), CgroupError> {
    explain.step(format_args!("mkdir {}", path.display()));
    std::fs::create_dir(path).map_err(|source| CgroupError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates the shared `isolab` directory unless another container already did.
fn ensure_parent(explain: &Explain, path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => {
            explain.step(format_args!("mkdir {}", path.display()));
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates the container's own directory; an existing one means the name is taken.
fn create_leaf(explain: &Explain, path: &Path, name: &str) -> Result<(), CgroupError> {
    mkdir(explain, path).map_err(|e| match e {
        CgroupError::Create { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
            CgroupError::NameInUse {
                name: name.to_string(),
                path: path.to_path_buf(),
            }
        }
        other => other,
    })
}

/// Removes an empty cgroup directory. Right after the container's init was reaped the
/// kernel may still be tearing the cgroup down (EBUSY), so this retries for a short while.
fn remove_dir(explain: &Explain, path: &Path) -> Result<(), CgroupError> {
    const TRIES: u32 = 100;
    for attempt in 1.. {
        match std::fs::remove_dir(path) {
            Ok(()) => {
                explain.step(format_args!("rmdir {}", path.display()));
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < TRIES => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    unreachable!("the loop returns by its last attempt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_weight_convert_both_ways() {
        let shares = Resources {
            cpu_shares: Some(1024),
            ..Resources::default()
        };
        assert_eq!(shares.shares(), Some(1024));
        assert_eq!(shares.weight(), Some(39));
        let weight = Resources {
            cpu_weight: Some(100),
            ..Resources::default()
        };
        assert_eq!(weight.weight(), Some(100));
        assert_eq!(weight.shares(), Some(2597));
        assert_eq!(Resources::default().weight(), None);
    }

    #[test]
    fn keyed_files_are_read_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.events");
        std::fs::write(&path, "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n").unwrap();
        assert_eq!(read_key(&path, "oom_kill").unwrap(), 1);
        assert!(matches!(
            read_key(&path, "absent"),
            Err(CgroupError::MissingKey { .. })
        ));
    }

    #[test]
    fn values_read_unlimited_and_missing_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert_eq!(read_value(&file("a", "4096\n")).unwrap(), Some(4096));
        assert_eq!(read_value(&file("b", "max\n")).unwrap(), None);
        assert_eq!(
            read_value(&file("c", "9223372036854771712\n")).unwrap(),
            None
        );
        assert_eq!(read_value(&dir.path().join("absent")).unwrap(), None);
        let stat = file("cpu.stat", "usage_usec 5\nnr_throttled 2\n");
        assert_eq!(read_key_opt(&stat, "nr_throttled").unwrap(), Some(2));
        assert_eq!(read_key_opt(&stat, "throttled_usec").unwrap(), None);
    }

    #[test]
    fn own_cgroups_are_found_by_their_controllers() {
        let text = "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u\n";
        assert_eq!(own_cgroup_in(text, "memory"), Path::new("/a/b"));
        assert_eq!(own_cgroup_in(text, "cpuacct,cpu"), Path::new("/c"));
        assert_eq!(own_cgroup_in(text, "name=systemd"), Path::new("/"));
        assert_eq!(own_cgroup_in(text, ""), Path::new("/u"));
        assert_eq!(own_cgroup_in(text, "pids"), Path::new("/"));
    }

    #[test]
    fn paths_are_placed_from_the_root_or_the_own_cgroup() {
        let root = Path::new("/sys/fs/cgroup/memory");
        let own = || PathBuf::from("/runtime/here");
        let named = CgroupPath::Named("c".into()).place(root, own);
        assert_eq!(named.base, root.join("isolab"));
        assert_eq!(named.dir, root.join("isolab/c"));
        let absolute = CgroupPath::Given("/a/b".into()).place(root, own);
        assert_eq!(absolute.base, root);
        assert_eq!(absolute.levels(), [root.join("a"), root.join("a/b")]);
        let relative = CgroupPath::Given("a/b".into()).place(root, own);
        assert_eq!(relative.dir, root.join("runtime/here/a/b"));
        assert_eq!(relative.levels().len(), 2);
    }

    #[test]
    fn missing_levels_are_made_and_only_those_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("shared")).unwrap();
        let place = CgroupPath::Given("/shared/new/leaf".into()).place(root, || "/".into());
        let mut parents = Vec::new();
        place
            .create("x", &Explain::off(), |p| {
                parents.push(p.to_path_buf());
                Ok(())
            })
            .unwrap();
        assert!(root.join("shared/new/leaf").is_dir());
        assert_eq!(
            parents,
            [
                root.to_path_buf(),
                root.join("shared"),
                root.join("shared/new")
            ]
        );
        assert_eq!(place.created(), [root.join("shared/new")]);
        // Another process removes it later, knowing only the path and what was made.
        let later = Place::existing(place.dir.clone(), &place.created());
        later.remove(&Explain::off()).unwrap();
        assert!(!root.join("shared/new").exists());
        assert!(root.join("shared").is_dir(), "not made here, so kept");
        // A level that another container still uses stays.
        let a = CgroupPath::Given("/p/a".into()).place(root, || "/".into());
        let b = CgroupPath::Given("/p/b".into()).place(root, || "/".into());
        a.create("a", &Explain::off(), |_| Ok(())).unwrap();
        b.create("b", &Explain::off(), |_| Ok(())).unwrap();
        a.remove(&Explain::off()).unwrap();
        assert!(root.join("p/b").is_dir());
        assert!(matches!(
            b.create("b", &Explain::off(), |_| Ok(())),
            Err(CgroupError::NameInUse { .. })
        ));
    }

    #[test]
    fn removing_a_missing_cgroup_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        remove_dir(&Explain::off(), &dir.path().join("gone")).unwrap();
        let taken = dir.path().join("taken");
        create_leaf(&Explain::off(), &taken, "taken").unwrap();
        assert!(matches!(
            create_leaf(&Explain::off(), &taken, "taken"),
            Err(CgroupError::NameInUse { .. })
        ));
        remove_dir(&Explain::off(), &taken).unwrap();
        assert!(!taken.exists());
    }
}
