//! Which namespace kinds this host lets isolab create, tested by creating each one.

use std::collections::BTreeMap;

use nix::errno::Errno;
use serde::Serialize;

use super::{Probe, child};

/// A namespace kind, named as in /proc/self/ns; the order is the order reports list them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceKind {
    Mnt,
    Uts,
    Ipc,
    Pid,
    Net,
    User,
    Cgroup,
    Time,
}

impl NamespaceKind {
    pub const ALL: [NamespaceKind; 8] = [
        NamespaceKind::Mnt,
        NamespaceKind::Uts,
        NamespaceKind::Ipc,
        NamespaceKind::Pid,
        NamespaceKind::Net,
        NamespaceKind::User,
        NamespaceKind::Cgroup,
        NamespaceKind::Time,
    ];

    /// The name in /proc/self/ns and in /proc/sys/user/max_<name>_namespaces.
    pub fn name(self) -> &'static str {
        match self {
            NamespaceKind::Mnt => "mnt",
            NamespaceKind::Uts => "uts",
            NamespaceKind::Ipc => "ipc",
            NamespaceKind::Pid => "pid",
            NamespaceKind::Net => "net",
            NamespaceKind::User => "user",
            NamespaceKind::Cgroup => "cgroup",
            NamespaceKind::Time => "time",
        }
    }

    /// The kernel option without which unshare(2) answers EINVAL for this kind.
    pub fn kconfig(self) -> &'static str {
        match self {
            // Mount namespaces cannot be configured out.
            NamespaceKind::Mnt => "CONFIG_NAMESPACES",
            NamespaceKind::Uts => "CONFIG_UTS_NS",
            NamespaceKind::Ipc => "CONFIG_IPC_NS",
            NamespaceKind::Pid => "CONFIG_PID_NS",
            NamespaceKind::Net => "CONFIG_NET_NS",
            NamespaceKind::User => "CONFIG_USER_NS",
            NamespaceKind::Cgroup => "CONFIG_CGROUPS",
            NamespaceKind::Time => "CONFIG_TIME_NS",
        }
    }

    // nix's CloneFlags lacks CLONE_NEWTIME, so the raw flags are used for every kind alike.
    fn clone_flag(self) -> libc::c_int {
        match self {
            NamespaceKind::Mnt => libc::CLONE_NEWNS,
            NamespaceKind::Uts => libc::CLONE_NEWUTS,
            NamespaceKind::Ipc => libc::CLONE_NEWIPC,
            NamespaceKind::Pid => libc::CLONE_NEWPID,
            NamespaceKind::Net => libc::CLONE_NEWNET,
            NamespaceKind::User => libc::CLONE_NEWUSER,
            NamespaceKind::Cgroup => libc::CLONE_NEWCGROUP,
            NamespaceKind::Time => libc::CLONE_NEWTIME,
        }
    }

    /// Creates a namespace of this kind in a child process, which then exits and takes the
    /// namespace with it.
    pub fn probe(self) -> Probe {
        let flag = self.clone_flag();
        // SAFETY: unshare only reads its integer argument.
        let body = || Errno::result(unsafe { libc::unshare(flag) }).map(drop);
        // SAFETY: the body makes one system call on a constant and allocates nothing.
        let outcome = unsafe { child::errno_in_child(body) };
        Probe::from_child(outcome)
    }
}

/// Every namespace kind, each tried for real.
pub fn probe_all() -> BTreeMap<NamespaceKind, Probe> {
    NamespaceKind::ALL
        .into_iter()
        .map(|kind| (kind, kind.probe()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_leaves_the_caller_in_its_own_namespaces() {
        let before = std::fs::read_link("/proc/self/ns/uts").unwrap();
        let probe = NamespaceKind::Uts.probe();
        assert_eq!(std::fs::read_link("/proc/self/ns/uts").unwrap(), before);
        // Unprivileged runs may be refused, but then with the kernel's reason.
        assert!(probe.ok || probe.errno.is_some(), "{probe:?}");
    }

    #[test]
    fn every_kind_is_probed_in_order() {
        let kinds: Vec<_> = probe_all().into_keys().collect();
        assert_eq!(kinds, NamespaceKind::ALL);
    }
}
