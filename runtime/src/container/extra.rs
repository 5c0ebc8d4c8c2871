//! What a container can be asked for beyond `isolab run`'s options: the parts of an OCI
//! bundle's config that `isolab-oci` translates (see [`crate::oci`]) and this runtime carries
//! out in its one start path. The default asks for nothing more, and a container is then
//! exactly what `isolab run` makes.

use std::path::PathBuf;

use nix::mount::MsFlags;
use seccompiler::BpfProgram;

/// Container-wide additions; the process-level ones are in [`ProcessExtra`].
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub process: ProcessExtra,
    /// Mounts made after the runtime's own /proc, /sys and /dev, before pivot_root, in order.
    pub mounts: Vec<Mount>,
    /// Namespaces of the runtime's default set that the container shares with the caller
    /// instead of getting its own (an OCI config that does not list them).
    pub share: Vec<Namespace>,
    /// Existing namespaces the container's init enters (setns) instead of creating them.
    pub join: Vec<(Namespace, PathBuf)>,
    /// With `userns`: the `uid_map` and `gid_map` lines to write, instead of the range of
    /// /etc/subuid and /etc/subgid.
    pub id_maps: Option<(String, String)>,
    /// Replace the runtime's masked and read-only kernel paths (Docker's).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// Written under /proc/sys (`net.ipv4.ping_group_range` -> net/ipv4/ping_group_range)
    /// before /proc/sys is made read-only.
    pub sysctls: Vec<(String, String)>,
    /// The created state of the OCI lifecycle: the init stops right before its last steps
    /// (seccomp, execve) and goes on only once something opens this FIFO for reading.
    pub start_fifo: Option<PathBuf>,
    /// The cgroup directory in each hierarchy (`linux.cgroupsPath`) instead of
    /// `isolab/<name>`: absolute from the hierarchy's root, relative from the runtime's own.
    pub cgroups_path: Option<PathBuf>,
}

/// Process-level additions, for a container's init and for `exec` alike.
#[derive(Debug, Clone, Default)]
pub struct ProcessExtra {
    /// Capability sets instead of Docker's default.
    pub capabilities: Option<CapabilitySets>,
    /// Compiled seccomp filters, installed in order, instead of Docker's default profile.
    pub seccomp: Option<Vec<BpfProgram>>,
    pub rlimits: Vec<Rlimit>,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
}

/// Capabilities by their kernel names (`CAP_CHOWN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// `libc::RLIMIT_*`.
    pub resource: u32,
    /// Its name, for messages (`RLIMIT_NOFILE`).
    pub name: &'static str,
    pub soft: u64,
    pub hard: u64,
}

/// One mount, its target already resolved to a host path inside the root (symlinks
/// followed within the root, never out of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: Option<PathBuf>,
    pub target: PathBuf,
    pub fstype: Option<String>,
    /// The flags of the mount itself (MS_BIND, MS_REC for a bind).
    pub flags: MsFlags,
    pub data: Option<String>,
    /// A bind mount's flags (read-only, nosuid, ...), which need a remount to take effect.
    pub remount: MsFlags,
    /// MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_UNBINDABLE (with MS_REC), if asked for.
    pub propagation: MsFlags,
    /// The target is a file (a bind of a file), not a directory.
    pub file: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Pid,
    Ipc,
    Uts,
    Net,
    Mount,
    User,
    Cgroup,
    Time,
}

impl Namespace {
    pub fn clone_flag(self) -> libc::c_int {
        match self {
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
            Namespace::Time => libc::CLONE_NEWTIME,
        }
    }
}

/// The hard limit of `resource` for this process: what it may raise a limit to without
/// CAP_SYS_RESOURCE.
pub fn host_limit(resource: u32) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit, which lives across the call.
    if unsafe { libc::getrlimit(resource, &mut limit) } == 0 {
        limit.rlim_max
    } else {
        libc::RLIM_INFINITY
    }
}

/// Whether this process may raise hard limits above [`host_limit`] (CAP_SYS_RESOURCE).
pub fn can_exceed_host_limits() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

/// Refuses, before anything is created, a limit above this host's hard limit when this
/// process cannot raise it (no CAP_SYS_RESOURCE), naming the limit and the fix.
pub(crate) fn check_rlimits(limits: &[Rlimit]) -> Result<(), super::RunError> {
    let can_raise = can_exceed_host_limits();
    for limit in limits {
        let host = host_limit(limit.resource);
        if limit.hard > host && !can_raise {
            return Err(super::RunError::Rlimit {
                name: limit.name,
                short: limit.name.trim_start_matches("RLIMIT_").to_lowercase(),
                soft: limit.soft,
                hard: limit.hard,
                host,
            });
        }
    }
    Ok(())
}
