//! What a lab needs from the host, each tested for real when asked.

use std::path::Path;

use isolab_microvm::host::KvmKind;
use isolab_runtime::host::{CgroupSupport, NamespaceKind, OverlayfsSupport};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// Effective uid 0: the labs create namespaces, cgroups and mounts.
    Root,
    /// A program on the PATH (or in /sbin, /usr/sbin).
    Command(&'static str),
    Namespace(NamespaceKind),
    /// A cgroup controller, in whichever hierarchy this host keeps it.
    Controller(&'static str),
    Overlayfs,
    Kvm,
}

impl Need {
    pub fn describe(&self) -> String {
        match self {
            Need::Root => "root".into(),
            Need::Command(name) => (*name).into(),
            Need::Namespace(kind) => format!("{} namespace", kind.name()),
            Need::Controller(name) => format!("{name} cgroup"),
            Need::Overlayfs => "overlayfs".into(),
            Need::Kvm => "/dev/kvm".into(),
        }
    }

    /// Why this host does not meet the need, or `None` when it does.
    pub fn missing(&self) -> Option<String> {
        match self {
            Need::Root => (!nix::unistd::geteuid().is_root()).then(|| "not running as root".into()),
            Need::Command(name) => (!on_path(name)).then(|| format!("{name} is not installed")),
            Need::Namespace(kind) => {
                let probe = kind.probe();
                (!probe.ok).then(|| {
                    format!(
                        "cannot create a {} namespace ({}; kernel option {})",
                        kind.name(),
                        probe.error.unwrap_or_default(),
                        kind.kconfig()
                    )
                })
            }
            Need::Controller(name) => match CgroupSupport::detect() {
                Ok(host) if host.location(name).is_some() => None,
                Ok(_) => Some(format!("no {name} cgroup controller is mounted")),
                Err(e) => Some(e.to_string()),
            },
            Need::Overlayfs => match OverlayfsSupport::probe(&std::env::temp_dir()) {
                Ok(support) if support.mount.ok => None,
                Ok(support) => Some(format!(
                    "overlayfs cannot be mounted ({})",
                    support.mount.error.unwrap_or_default()
                )),
                Err(e) => Some(e.to_string()),
            },
            Need::Kvm => {
                (KvmKind::detect() == KvmKind::Absent).then(|| "no usable /dev/kvm".into())
            }
        }
    }
}

fn on_path(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|dir| Path::new(dir).join(name).is_file())
}

/// Every unmet need of a list, with the reason.
pub fn unmet(needs: &[Need]) -> Vec<String> {
    needs
        .iter()
        .filter_map(|n| n.missing().map(|why| format!("{}: {why}", n.describe())))
        .collect()
}
