//! An OCI bundle's config.json as the runtime's own [`ContainerConfig`] (and, for `exec`,
//! a process file as an [`ExecRequest`]).
//!
//! What the runtime does its own way, and so is not taken from the config:
//! - /proc, /sys, /dev (with its device nodes, /dev/pts, /dev/shm, /dev/mqueue) and
//!   /sys/fs/cgroup are mounted as for `isolab run`; config mounts of those kinds at those
//!   places are skipped, every other mount is made as given (after them, in order).
//! - The container always gets its own cgroup namespace. Its cgroups are
//!   `linux.cgroupsPath` in each hierarchy (absolute: from the root; relative: from the
//!   runtime's own cgroup), `isolab/<id>` without one.
//! - The device cgroup allows the runtime's own /dev nodes; `linux.devices` is refused.
//! - `no_new_privs` is always set for a process whose capabilities are reduced.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{
    LinuxIdMapping, LinuxNamespaceType, LinuxResources, Mount as OciMount, PosixRlimit, Process,
    Spec,
};

use super::OciError;
use crate::cgroups::{MemorySwap, Resources};
use crate::container::extra::{CapabilitySets, Extra, Mount, Namespace, ProcessExtra, Rlimit};
use crate::container::state::ProcessDefaults;
use crate::container::{ContainerConfig, ExecRequest, Network, User};

fn unsupported(what: impl Into<String>) -> OciError {
    OciError::Unsupported(what.into())
}

/// `linux.cgroupsPath` as a cgroupfs path; `None` when empty. systemd's `slice:prefix:name`
/// and paths that climb out of their hierarchy (`..`) are refused.
fn cgroups_path(path: &Path) -> Result<Option<PathBuf>, OciError> {
    if path.as_os_str().is_empty() || path == Path::new("/") {
        return Ok(None);
    }
    let text = path.to_string_lossy();
    if !text.contains('/') && text.split(':').count() == 3 {
        return Err(unsupported(format!(
            "linux.cgroupsPath {text:?} is a systemd unit (slice:prefix:name); isolab-oci manages cgroups through cgroupfs (podman: --cgroup-manager cgroupfs)"
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(unsupported(format!(
            "linux.cgroupsPath {text:?} contains \"..\"; give a path inside the cgroup hierarchy"
        )));
    }
    Ok(Some(path.to_path_buf()))
}

/// The container `id` of the bundle at `bundle` (canonical) with `spec` its config.
pub fn container_config(
    id: &str,
    bundle: &Path,
    spec: &Spec,
    start_fifo: PathBuf,
) -> Result<ContainerConfig, OciError> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| unsupported("config.json has no process: nothing to run"))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| unsupported("config.json has no root"))?;
    let rootfs = bundle.join(root.path());
    let rootfs = rootfs.canonicalize().map_err(|source| OciError::Io {
        what: "opening the root filesystem",
        path: rootfs.clone(),
        source,
    })?;
    let linux = spec.linux().clone().unwrap_or_default();
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported(
            "linux.devices: extra device nodes are not supported; the container gets null, zero, full, random, urandom, tty and a pts instance",
        ));
    }

    let mut extra = Extra {
        process: process_extra(process, spec)?,
        ..Extra::default()
    };
    let mut network = Network::Host;
    let mut userns = false;
    let mut own = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let kind = match ns.typ() {
            LinuxNamespaceType::Pid => Namespace::Pid,
            LinuxNamespaceType::Network => Namespace::Net,
            LinuxNamespaceType::Mount => Namespace::Mount,
            LinuxNamespaceType::Ipc => Namespace::Ipc,
            LinuxNamespaceType::Uts => Namespace::Uts,
            LinuxNamespaceType::User => Namespace::User,
            LinuxNamespaceType::Cgroup => Namespace::Cgroup,
            LinuxNamespaceType::Time => Namespace::Time,
        };
        own.push(kind);
        match (kind, ns.path()) {
            (Namespace::Net, None) => network = Network::None,
            (Namespace::User, None) => userns = true,
            (Namespace::Net | Namespace::Ipc | Namespace::Uts, Some(path)) => {
                extra.join.push((kind, path.clone()));
            }
            (_, Some(path)) => {
                return Err(unsupported(format!(
                    "joining the {kind:?} namespace at {} is not supported (only network, ipc and uts can be joined)",
                    path.display()
                )));
            }
            _ => {}
        }
    }
    if !own.contains(&Namespace::Mount) {
        return Err(unsupported(
            "linux.namespaces has no mount namespace; isolab-oci always builds the root in one",
        ));
    }
    // The runtime's default set, less what the config does not ask for (the cgroup
    // namespace stays: see the module comment).
    extra.share = [
        Namespace::Pid,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Time,
    ]
    .into_iter()
    .filter(|ns| !own.contains(ns))
    .collect();
    if userns {
        extra.id_maps = Some((
            map_lines(linux.uid_mappings().as_deref()),
            map_lines(linux.gid_mappings().as_deref()),
        ));
    }
    extra.masked_paths = Some(linux.masked_paths().clone().unwrap_or_default());
    extra.readonly_paths = Some(linux.readonly_paths().clone().unwrap_or_default());
    extra.sysctls = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extra.sysctls.sort();
    for m in spec.mounts().iter().flatten() {
        if let Some(m) = mount(m, bundle, &rootfs)? {
            extra.mounts.push(m);
        }
    }
    extra.start_fifo = Some(start_fifo);
    extra.cgroups_path = linux
        .cgroups_path()
        .as_deref()
        .map(cgroups_path)
        .transpose()?
        .flatten();

    let seccomp = extra.process.seccomp.is_some();
    let (env, user, workdir) = process_basics(process)?;
    let uts_own =
        own.contains(&Namespace::Uts) && !extra.join.iter().any(|(ns, _)| *ns == Namespace::Uts);
    Ok(ContainerConfig {
        name: id.to_string(),
        hostname: if uts_own {
            spec.hostname().clone().unwrap_or_default()
        } else {
            String::new()
        },
        rootfs,
        overlay: None,
        command: args(process)?,
        env,
        workdir: Some(workdir),
        user,
        read_only: root.readonly().unwrap_or(false),
        resources: resources(linux.resources().as_ref()),
        network,
        userns,
        privileged: false,
        seccomp,
        seccomp_profile: None,
        tty: process.terminal().unwrap_or(false),
        extra,
    })
}

/// A process file of `exec` for the container of `spec`, whose seccomp profile applies to
/// it as to the container's init.
pub fn exec_request(process: &Process, spec: &Spec, detach: bool) -> Result<ExecRequest, OciError> {
    let extra = process_extra(process, spec)?;
    let (env, user, workdir) = process_basics(process)?;
    Ok(ExecRequest {
        process: ProcessDefaults {
            uid: user.uid,
            gid: user.gid,
            workdir,
            env,
            privileged: false,
            seccomp: extra.seccomp.is_some(),
            seccomp_profile: None,
        },
        extra,
        command: args(process)?,
        tty: process.terminal().unwrap_or(false),
        detach,
    })
}

fn args(process: &Process) -> Result<Vec<String>, OciError> {
    match process.args() {
        Some(args) if !args.is_empty() => Ok(args.clone()),
        _ => Err(unsupported("process.args is empty: nothing to run")),
    }
}

type Basics = (Vec<(String, String)>, User, String);

fn process_basics(process: &Process) -> Result<Basics, OciError> {
    let env = process
        .env()
        .iter()
        .flatten()
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(unsupported(format!(
                "process.env entry {e:?} is not KEY=VALUE"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(unsupported(format!(
            "process.cwd {} is not an absolute path",
            cwd.display()
        )));
    }
    let user = User {
        uid: process.user().uid(),
        gid: process.user().gid(),
    };
    Ok((env, user, cwd.to_string_lossy().into_owned()))
}

fn process_extra(process: &Process, spec: &Spec) -> Result<ProcessExtra, OciError> {
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut names: Vec<String> = set.iter().flatten().map(|c| format!("CAP_{c}")).collect();
        names.sort();
        names
    };
    let caps = process.capabilities().clone().unwrap_or_default();
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(super::seccomp::compile)
        .transpose()?;
    Ok(ProcessExtra {
        capabilities: Some(CapabilitySets {
            bounding: names(caps.bounding()),
            effective: names(caps.effective()),
            permitted: names(caps.permitted()),
            inheritable: names(caps.inheritable()),
            ambient: names(caps.ambient()),
        }),
        seccomp,
        rlimits: process
            .rlimits()
            .iter()
            .flatten()
            .map(rlimit)
            .collect::<Result<_, _>>()?,
        additional_gids: process.user().additional_gids().clone().unwrap_or_default(),
        umask: process.user().umask(),
    })
}

/// The resources, by their names in the spec.
const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn rlimit(limit: &PosixRlimit) -> Result<Rlimit, OciError> {
    let name = serde_json::to_value(limit.typ())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let (name, resource) = RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| unsupported(format!("process.rlimits: unknown type {name:?}")))?;
    if limit.soft() > limit.hard() {
        return Err(unsupported(format!(
            "process.rlimits: {name} soft limit {} is above its hard limit {}",
            limit.soft(),
            limit.hard()
        )));
    }
    Ok(Rlimit {
        resource: *resource,
        name,
        soft: limit.soft(),
        hard: limit.hard(),
    })
}

fn map_lines(maps: Option<&[LinuxIdMapping]>) -> String {
    maps.iter()
        .flat_map(|m| m.iter())
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn resources(r: Option<&LinuxResources>) -> Resources {
    let mut out = Resources::default();
    let Some(r) = r else {
        return out;
    };
    if let Some(memory) = r.memory() {
        out.memory = memory
            .limit()
            .and_then(|l| u64::try_from(l).ok().filter(|&l| l > 0));
        out.memory_swap = memory.swap().and_then(|s| match s {
            -1 => Some(MemorySwap::Unlimited),
            s if s > 0 => Some(MemorySwap::Total(s as u64)),
            _ => None,
        });
    }
    if let Some(cpu) = r.cpu() {
        let period = cpu.period().unwrap_or(crate::cgroups::CPU_PERIOD_US).max(1);
        // The runtime writes quotas against its fixed period; the ratio is what counts.
        out.cpu_quota_us = cpu
            .quota()
            .and_then(|q| u64::try_from(q).ok().filter(|&q| q > 0))
            .map(|q| q * crate::cgroups::CPU_PERIOD_US / period);
        out.cpu_shares = cpu.shares().filter(|&s| s > 0);
        out.cpuset_cpus = cpu.cpus().clone().filter(|c| !c.is_empty());
    }
    if let Some(pids) = r.pids() {
        out.pids_limit = u64::try_from(pids.limit()).ok().filter(|&l| l > 0);
    }
    if let Some(io) = r.block_io() {
        out.blkio_weight = io.weight();
    }
    // An "allow everything" rule (a privileged container) opens every device.
    out.all_devices = r
        .devices()
        .iter()
        .flatten()
        .any(|d| d.allow() && d.major().is_none() && d.minor().is_none() && d.typ().is_none());
    out
}

/// The kernel filesystems the runtime mounts itself (see the module comment).
fn runtime_mounted(destination: &Path, fstype: &str) -> bool {
    matches!(
        (destination.to_str().unwrap_or(""), fstype),
        ("/proc", "proc")
            | ("/sys", "sysfs")
            | ("/dev", "tmpfs")
            | ("/dev/pts", "devpts")
            | ("/dev/shm", "tmpfs")
            | ("/dev/mqueue", "mqueue")
            | ("/sys/fs/cgroup", "cgroup" | "cgroup2")
    )
}

fn mount(m: &OciMount, bundle: &Path, rootfs: &Path) -> Result<Option<Mount>, OciError> {
    let fstype = m.typ().clone().unwrap_or_default();
    let destination = m.destination();
    if !destination.is_absolute() {
        return Err(unsupported(format!(
            "mount destination {} is not an absolute path",
            destination.display()
        )));
    }
    if runtime_mounted(destination, &fstype) {
        return Ok(None);
    }
    let mut flags = MsFlags::empty();
    let mut clear = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    let mut bind = fstype == "bind";
    for option in m.options().iter().flatten() {
        let (set, unset, prop) = match option.as_str() {
            "bind" => {
                bind = true;
                (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty())
            }
            "rbind" => {
                bind = true;
                (
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    MsFlags::empty(),
                    MsFlags::empty(),
                )
            }
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        flags |= set;
        clear |= unset;
        propagation |= prop;
    }
    flags &= !clear;
    let target = resolve_in_root(rootfs, destination)?;
    let data = (!data.is_empty()).then(|| data.join(","));
    if bind {
        let source = m.source().as_ref().ok_or_else(|| {
            unsupported(format!(
                "bind mount on {} has no source",
                destination.display()
            ))
        })?;
        let source = bundle.join(source);
        let meta = std::fs::metadata(&source).map_err(|e| OciError::Io {
            what: "opening the bind mount source",
            path: source.clone(),
            source: e,
        })?;
        let bind_flags = MsFlags::MS_BIND | (flags & MsFlags::MS_REC);
        return Ok(Some(Mount {
            source: Some(source),
            target,
            fstype: None,
            flags: bind_flags,
            data: None,
            // A bind takes its flags only from a remount.
            remount: flags & !(MsFlags::MS_BIND | MsFlags::MS_REC),
            propagation,
            file: !meta.is_dir(),
        }));
    }
    if fstype.is_empty() {
        return Err(unsupported(format!(
            "mount on {} has no type",
            destination.display()
        )));
    }
    Ok(Some(Mount {
        source: Some(m.source().clone().unwrap_or_else(|| PathBuf::from(&fstype))),
        target,
        fstype: Some(fstype),
        flags,
        data,
        remount: MsFlags::empty(),
        propagation,
        file: false,
    }))
}

/// `path` inside `root`, with every symlink on the way resolved as the container would see
/// it: an absolute link starts again at `root`, and `..` never climbs above it.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, OciError> {
    const MAX_LINKS: u32 = 40;
    let mut pending: VecDeque<OsString> = normal_parts(path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(unsupported(format!(
                        "{}: too many symbolic links in the root",
                        path.display()
                    )));
                }
                let link =
                    std::fs::read_link(root.join(&candidate)).map_err(|source| OciError::Io {
                        what: "reading the link",
                        path: root.join(&candidate),
                        source,
                    })?;
                if link.is_absolute() {
                    resolved = PathBuf::new();
                }
                for (i, p) in normal_parts(&link).into_iter().enumerate() {
                    pending.insert(i, p);
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// The components of `path` that name something (`..` kept, `/` and `.` dropped).
fn normal_parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_are_checked() {
        assert_eq!(cgroups_path(Path::new("")).unwrap(), None);
        assert_eq!(
            cgroups_path(Path::new("/libpod_parent/libpod-x")).unwrap(),
            Some(PathBuf::from("/libpod_parent/libpod-x"))
        );
        assert_eq!(
            cgroups_path(Path::new("rel/x")).unwrap(),
            Some(PathBuf::from("rel/x"))
        );
        let systemd = cgroups_path(Path::new("machine.slice:libpod:x")).unwrap_err();
        assert!(systemd.to_string().contains("cgroupfs"), "{systemd}");
        assert!(cgroups_path(Path::new("/a/../..")).is_err());
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("real/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/abs/dir/x")).unwrap(),
            r.join("real/dir/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/real/up/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/../..")).unwrap(),
            r.to_path_buf()
        );
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, Path::new("/loop")).is_err());
    }

    #[test]
    fn kernel_filesystems_are_the_runtimes() {
        assert!(runtime_mounted(Path::new("/proc"), "proc"));
        assert!(runtime_mounted(Path::new("/sys/fs/cgroup"), "cgroup"));
        assert!(!runtime_mounted(Path::new("/dev/shm"), "bind"));
        assert!(!runtime_mounted(Path::new("/data"), "tmpfs"));
    }
}
