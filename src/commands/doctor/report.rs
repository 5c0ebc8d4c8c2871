//! Everything the doctor finds, what each isolab feature needs of it, and the fixes.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use isolab_bench::fingerprint::{cpu_model, kernel_release, mem_total_kib};
use isolab_microvm::host::{KvmKind, KvmSupport};
use isolab_runtime::host::namespaces;
use isolab_runtime::host::{
    CgroupMode, CgroupSupport, NamespaceKind, OverlayError, OverlayfsSupport, Probe,
    SeccompSupport, UserNamespaceLimits,
};
use serde::Serialize;

use super::peers::Peers;

/// The controllers a container's limits are built from.
pub const REQUIRED_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The namespaces every isolab container is created with.
pub const REQUIRED_NAMESPACES: [NamespaceKind; 5] = [
    NamespaceKind::Mnt,
    NamespaceKind::Pid,
    NamespaceKind::Uts,
    NamespaceKind::Ipc,
    NamespaceKind::Net,
];

const AS_ROOT: &str = "run isolab as root: sudo isolab doctor";

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_total_kib: u64,
    pub cgroup: Section<CgroupSupport>,
    pub namespaces: BTreeMap<NamespaceKind, Probe>,
    pub user_namespaces: Section<UserNamespaceLimits>,
    pub overlayfs: Section<OverlayfsSupport>,
    pub seccomp: Section<SeccompSupport>,
    pub kvm: Section<KvmSupport>,
    pub peers: Peers,
    pub basic_container_path: Verdict,
    pub features: Features,
}

/// A section the doctor could read, or why it could not.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Section<T> {
    Found(T),
    Failed { error: String },
}

impl<T> Section<T> {
    fn from_result<E: Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(found) => Section::Found(found),
            Err(e) => Section::Failed {
                error: e.to_string(),
            },
        }
    }

    pub fn found(&self) -> Option<&T> {
        match self {
            Section::Found(found) => Some(found),
            Section::Failed { .. } => None,
        }
    }
}

/// Something a feature needs and this host lacks, and the command that fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub item: String,
    pub problem: String,
    pub fix: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub ok: bool,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Serialize)]
pub struct Feature {
    pub needs: &'static str,
    pub available: bool,
    pub missing: Vec<Missing>,
}

impl Feature {
    fn new(needs: &'static str, missing: Vec<Missing>) -> Self {
        Feature {
            needs,
            available: missing.is_empty(),
            missing,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Features {
    pub container_runtime: Feature,
    pub cgroup_limits: Feature,
    pub vm_mini: Feature,
    pub vm_linux: Feature,
    pub peers: Feature,
}

impl Features {
    pub fn iter(&self) -> [(&'static str, &Feature); 5] {
        [
            ("container_runtime", &self.container_runtime),
            ("cgroup_limits", &self.cgroup_limits),
            ("vm_mini", &self.vm_mini),
            ("vm_linux", &self.vm_linux),
            ("peers", &self.peers),
        ]
    }
}

impl Report {
    /// Probes this host. Creates namespaces and one overlay mount in child processes, and
    /// scratch directories under `scratch_parent`; none of them outlive the call.
    pub fn collect(scratch_parent: &Path) -> Report {
        let cgroup = CgroupSupport::detect();
        let namespaces = namespaces::probe_all();
        let user_namespaces = UserNamespaceLimits::read();
        let overlayfs = OverlayfsSupport::probe(scratch_parent);
        let kvm = Section::from_result(KvmSupport::detect());
        let mut peers = Peers::detect();

        if matches!(&cgroup, Ok(c) if c.mode == CgroupMode::Hybrid) {
            if let Some(crun) = peers.get_mut("crun") {
                crun.note = Some(
                    "crun refuses hybrid cgroup hosts (\"cgroups in hybrid mode not supported\")",
                );
            }
        }

        let container_runtime = Feature::new(
            "mnt, pid, uts, ipc and net namespaces, and an overlayfs mount",
            namespace_gaps(&namespaces, user_namespaces.as_ref().ok())
                .into_iter()
                .chain(overlayfs_gap(&overlayfs))
                .collect(),
        );
        let cgroup_limits = Feature::new(
            "cgroups (v1, hybrid or v2) with the memory, pids and cpu controllers",
            cgroup_gaps(&cgroup),
        );
        let basic_container_path = {
            let missing: Vec<Missing> = container_runtime
                .missing
                .iter()
                .chain(&cgroup_limits.missing)
                .cloned()
                .collect();
            Verdict {
                ok: missing.is_empty(),
                missing,
            }
        };
        let features = Features {
            container_runtime,
            cgroup_limits,
            vm_mini: Feature::new(
                "a usable /dev/kvm of any kind, PVM included",
                kvm_gaps(&kvm, false),
            ),
            vm_linux: Feature::new(
                "a usable /dev/kvm with hardware virtualisation (VMX or SVM)",
                kvm_gaps(&kvm, true),
            ),
            peers: Feature::new(
                "at least one peer runtime or VMM to compare against; each is optional",
                peer_gaps(&peers),
            ),
        };

        Report {
            kernel: kernel_release(),
            cpu_model: cpu_model(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_kib: mem_total_kib(),
            cgroup: Section::from_result(cgroup),
            namespaces,
            user_namespaces: Section::from_result(user_namespaces),
            overlayfs: Section::from_result(overlayfs),
            seccomp: Section::from_result(SeccompSupport::detect()),
            kvm,
            peers,
            basic_container_path,
            features,
        }
    }
}

fn namespace_gaps(
    probes: &BTreeMap<NamespaceKind, Probe>,
    limits: Option<&UserNamespaceLimits>,
) -> Vec<Missing> {
    REQUIRED_NAMESPACES
        .iter()
        .filter_map(|kind| {
            let probe = probes.get(kind)?;
            (!probe.ok).then(|| namespace_missing(*kind, probe, limits))
        })
        .collect()
}

pub fn namespace_missing(
    kind: NamespaceKind,
    probe: &Probe,
    limits: Option<&UserNamespaceLimits>,
) -> Missing {
    Missing {
        item: format!("{} namespace", kind.name()),
        problem: probe.error.clone().unwrap_or_default(),
        fix: namespace_fix(kind, probe.errno, limits),
    }
}

fn namespace_fix(
    kind: NamespaceKind,
    errno: Option<i32>,
    limits: Option<&UserNamespaceLimits>,
) -> String {
    match errno {
        // The per-user-namespace count for this kind is used up, or set to 0.
        Some(libc::ENOSPC) => format!("sysctl -w user.max_{}_namespaces=15000", kind.name()),
        Some(libc::EINVAL) => format!("boot a kernel built with {}=y", kind.kconfig()),
        Some(libc::EPERM) if kind == NamespaceKind::User => match limits {
            Some(l) if l.unprivileged_userns_clone == Some(false) => {
                "sysctl -w kernel.unprivileged_userns_clone=1"
            }
            Some(l) if l.apparmor_restrict_unprivileged_userns == Some(true) => {
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
            }
            _ => AS_ROOT,
        }
        .to_owned(),
        Some(libc::EPERM) => AS_ROOT.to_owned(),
        _ => format!(
            "reproduce with `unshare --{} true` and see unshare(2) for the error",
            unshare_option(kind)
        ),
    }
}

/// unshare(1)'s long option for a kind.
fn unshare_option(kind: NamespaceKind) -> &'static str {
    match kind {
        NamespaceKind::Mnt => "mount",
        NamespaceKind::Uts => "uts",
        NamespaceKind::Ipc => "ipc",
        NamespaceKind::Pid => "pid",
        NamespaceKind::Net => "net",
        NamespaceKind::User => "user",
        NamespaceKind::Cgroup => "cgroup",
        NamespaceKind::Time => "time",
    }
}

fn overlayfs_gap(overlayfs: &Result<OverlayfsSupport, OverlayError>) -> Option<Missing> {
    let item = "overlayfs".to_owned();
    let support = match overlayfs {
        Ok(support) => support,
        Err(e) => {
            let fix = match e {
                OverlayError::Read { .. } => "mount -t proc proc /proc",
                OverlayError::Scratch { .. } | OverlayError::UnusablePath { .. } => {
                    "export TMPDIR=/var/tmp (any writable directory whose path has no , : or \\)"
                }
            };
            return Some(Missing {
                item,
                problem: e.to_string(),
                fix: fix.to_owned(),
            });
        }
    };
    if support.mount.ok {
        return None;
    }
    let fix = match support.mount.errno {
        Some(libc::EPERM) => AS_ROOT.to_owned(),
        Some(libc::ENODEV) => "modprobe overlay".to_owned(),
        _ if !support.registered => "modprobe overlay".to_owned(),
        // overlayfs refuses upper layers on some filesystems (another overlay, some FUSE and
        // network filesystems); the scratch layers follow TMPDIR.
        Some(libc::EINVAL) => format!(
            "export TMPDIR=/var/tmp (a directory on ext4, xfs or tmpfs; {} was refused as an upper layer)",
            support.scratch_parent.display()
        ),
        _ => "dmesg | grep -i overlay (overlayfs logs why it refused the mount)".to_owned(),
    };
    Some(Missing {
        item,
        problem: format!(
            "mounting an overlay under {}: {}",
            support.scratch_parent.display(),
            support.mount.error.as_deref().unwrap_or("failed")
        ),
        fix,
    })
}

fn cgroup_gaps(cgroup: &Result<CgroupSupport, isolab_runtime::host::CgroupError>) -> Vec<Missing> {
    let support = match cgroup {
        Ok(support) => support,
        Err(e) => {
            return vec![Missing {
                item: "cgroups".to_owned(),
                problem: e.to_string(),
                fix: "mount -t cgroup2 cgroup2 /sys/fs/cgroup".to_owned(),
            }];
        }
    };
    REQUIRED_CONTROLLERS
        .iter()
        .filter(|c| !support.has(c))
        .map(|c| controller_missing(support, c))
        .collect()
}

fn controller_missing(support: &CgroupSupport, controller: &str) -> Missing {
    let (problem, fix) = match (support.mode, &support.unified) {
        (CgroupMode::V2, Some(unified)) => (
            format!(
                "not listed in {}",
                unified.mount_point.join("cgroup.controllers").display()
            ),
            format!(
                "remove cgroup_disable={controller} from the kernel command line (see /proc/cmdline) and reboot"
            ),
        ),
        _ => (
            "no v1 hierarchy has it mounted".to_owned(),
            format!(
                "mkdir -p /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}"
            ),
        ),
    };
    Missing {
        item: format!("{controller} controller"),
        problem,
        fix,
    }
}

fn kvm_gaps(kvm: &Section<KvmSupport>, needs_linux_guests: bool) -> Vec<Missing> {
    let support = match kvm {
        Section::Found(support) => support,
        Section::Failed { error } => {
            return vec![Missing {
                item: "/dev/kvm".to_owned(),
                problem: error.clone(),
                fix: "mount -t proc proc /proc".to_owned(),
            }];
        }
    };
    if !support.open || support.kind == KvmKind::Absent {
        return vec![Missing {
            item: "/dev/kvm".to_owned(),
            problem: support
                .open_error
                .clone()
                .unwrap_or_else(|| support.implication.clone()),
            fix: support.fix.clone().unwrap_or_else(|| {
                "modprobe kvm_intel, kvm_amd or kvm_pvm, whichever this CPU and kernel support"
                    .to_owned()
            }),
        }];
    }
    if needs_linux_guests && !support.kind.boots_linux() {
        return vec![Missing {
            item: "VMX/SVM".to_owned(),
            problem: format!("this /dev/kvm is {}: {}", support.kind.name(), support.implication),
            fix: "use `--guest mini` here, or a host whose CPU exposes VT-x/AMD-V (bare metal, or a VM with nested virtualisation)".to_owned(),
        }];
    }
    Vec::new()
}

fn peer_gaps(peers: &Peers) -> Vec<Missing> {
    if peers.0.iter().any(|p| p.installed) {
        return Vec::new();
    }
    peers
        .0
        .iter()
        .filter_map(|p| {
            Some(Missing {
                item: p.name.to_owned(),
                problem: "not installed".to_owned(),
                fix: p.fix?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(errno: i32) -> Probe {
        Probe {
            ok: false,
            error: Some("refused".into()),
            errno: Some(errno),
        }
    }

    #[test]
    fn namespace_fixes_follow_the_errno() {
        let fix = |kind, errno| namespace_missing(kind, &refused(errno), None).fix;
        assert_eq!(
            fix(NamespaceKind::Pid, libc::ENOSPC),
            "sysctl -w user.max_pid_namespaces=15000"
        );
        assert_eq!(
            fix(NamespaceKind::Time, libc::EINVAL),
            "boot a kernel built with CONFIG_TIME_NS=y"
        );
        assert_eq!(fix(NamespaceKind::Net, libc::EPERM), AS_ROOT);
        assert!(fix(NamespaceKind::Ipc, libc::ENOMEM).contains("unshare --ipc"));
        let debian = UserNamespaceLimits {
            max_namespaces: BTreeMap::new(),
            unprivileged_userns_clone: Some(false),
            apparmor_restrict_unprivileged_userns: None,
        };
        let user = namespace_missing(NamespaceKind::User, &refused(libc::EPERM), Some(&debian));
        assert_eq!(user.fix, "sysctl -w kernel.unprivileged_userns_clone=1");
    }

    #[test]
    fn only_required_namespaces_block_the_container_path() {
        let mut probes: BTreeMap<_, _> = NamespaceKind::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    Probe {
                        ok: true,
                        error: None,
                        errno: None,
                    },
                )
            })
            .collect();
        probes.insert(NamespaceKind::Time, refused(libc::EINVAL));
        assert!(namespace_gaps(&probes, None).is_empty());
        probes.insert(NamespaceKind::Pid, refused(libc::EPERM));
        let gaps = namespace_gaps(&probes, None);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].item, "pid namespace");
    }
}
