//! Result files read together for a report or a plan: one host, one run set per workload mode,
//! and what each target is (native, container, VM).

#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;

use crate::schema::{HostFingerprint, ResultKind, ResultSet, SchemaError, TargetResult};

/// What kind of isolation a target stands for, from its name: the built-in targets and the
/// usual peer names (`--peer runc=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Native,
    Container,
    /// isolab's mini kernel: a KVM guest without a Linux kernel.
    MiniVm,
    /// A VM booting a Linux kernel (isolab's Linux guest, QEMU, Firecracker...).
    LinuxVm,
    /// A peer whose name says nothing of its kind; charted, left out of the claims.
    Other,
}

/// Names recognised as containers: isolab's own and the usual runtimes given as peers.
const CONTAINER_NAMES: [&str; 7] = [
    "container",
    "container-image",
    "unshare",
    "runc",
    "crun",
    "docker",
    "podman",
];
/// Names recognised as Linux VMs besides `vm-*` (which is `vm-mini` or a Linux guest).
const LINUX_VM_NAMES: [&str; 4] = ["qemu-microvm", "qemu", "firecracker", "cloud-hypervisor"];

impl Kind {
    pub fn of(target: &str) -> Kind {
        match target {
            "native" => Kind::Native,
            "vm-mini" => Kind::MiniVm,
            _ if CONTAINER_NAMES.contains(&target) => Kind::Container,
            _ if target.starts_with("vm-") || LINUX_VM_NAMES.contains(&target) => Kind::LinuxVm,
            _ => Kind::Other,
        }
    }

    pub fn is_vm(self) -> bool {
        matches!(self, Kind::MiniVm | Kind::LinuxVm)
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Container => "container",
            Kind::MiniVm => "mini VM",
            Kind::LinuxVm => "Linux VM",
            Kind::Other => "other",
        }
    }
}

/// Colours of the well-known targets, the same in every chart and every report; other
/// targets take [`FALLBACK_COLOURS`] in order of appearance.
const TARGET_COLOURS: [(&str, (u8, u8, u8)); 10] = [
    ("native", (90, 90, 90)),
    ("container", (31, 119, 180)),
    ("container-image", (110, 165, 215)),
    ("podman", (196, 156, 148)),
    ("unshare", (23, 190, 207)),
    ("runc", (44, 160, 44)),
    ("docker", (148, 103, 189)),
    ("vm-mini", (255, 127, 14)),
    ("vm-linux", (214, 39, 40)),
    ("qemu-microvm", (140, 86, 75)),
];
const FALLBACK_COLOURS: [(u8, u8, u8); 4] = [
    (227, 119, 194),
    (188, 189, 34),
    (127, 127, 127),
    (0, 0, 128),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no results file given")]
    NoFiles,
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{path} holds no measured runs")]
    Empty { path: PathBuf },
    #[error(
        "{path} comes from another host than {first} ({differences}); results from different \
         hosts are never merged: report them separately"
    )]
    OtherHost {
        path: PathBuf,
        first: PathBuf,
        differences: String,
    },
}

/// One loaded results file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub set: ResultSet,
}

/// Result files from one host: the newest run set of each kind and workload mode.
#[derive(Debug, Clone)]
pub struct Collection {
    /// In the order given, one per mode.
    pub sets: Vec<Loaded>,
    /// Files left out because a newer one measured the same mode.
    pub superseded: Vec<PathBuf>,
}

impl Collection {
    /// Reads `paths`, refusing empty files and files from different hosts.
    pub fn load(paths: &[PathBuf]) -> Result<Collection, LoadError> {
        let mut loaded = Vec::new();
        for path in paths {
            let set = ResultSet::load(path)?;
            if set.targets.iter().all(|t| t.runs.is_empty()) && set.footprint.is_none() {
                return Err(LoadError::Empty { path: path.clone() });
            }
            loaded.push(Loaded {
                path: path.clone(),
                set,
            });
        }
        Collection::from_loaded(loaded)
    }

    pub fn from_loaded(loaded: Vec<Loaded>) -> Result<Collection, LoadError> {
        let first = loaded.first().ok_or(LoadError::NoFiles)?;
        if let Some(other) = loaded
            .iter()
            .find(|l| !l.set.host.same_host(&first.set.host))
        {
            return Err(LoadError::OtherHost {
                path: other.path.clone(),
                first: first.path.clone(),
                differences: host_differences(&first.set.host, &other.set.host),
            });
        }
        let mut sets: Vec<Loaded> = Vec::new();
        let mut superseded = Vec::new();
        for file in loaded {
            match sets.iter_mut().find(|kept| {
                (kept.set.kind, &kept.set.workload.mode) == (file.set.kind, &file.set.workload.mode)
            }) {
                // RFC 3339 UTC dates sort as text.
                Some(kept) if kept.set.host.date < file.set.host.date => {
                    superseded.push(std::mem::replace(kept, file).path)
                }
                Some(_) => superseded.push(file.path),
                None => sets.push(file),
            }
        }
        Ok(Collection { sets, superseded })
    }

    pub fn host(&self) -> &HostFingerprint {
        &self.sets[0].set.host
    }

    /// The bench run set of a workload mode.
    pub fn mode(&self, mode: &str) -> Option<&Loaded> {
        self.sets
            .iter()
            .find(|l| l.set.kind == ResultKind::Bench && l.set.workload.mode == mode)
    }

    /// The density run set, if one was given.
    pub fn density(&self) -> Option<&Loaded> {
        self.sets.iter().find(|l| l.set.kind == ResultKind::Density)
    }

    /// The disk footprint set, if one was given.
    pub fn footprint(&self) -> Option<&Loaded> {
        self.sets
            .iter()
            .find(|l| l.set.kind == ResultKind::Footprint && l.set.footprint.is_some())
    }

    /// Every target name, in order of first appearance.
    pub fn target_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for target in self.sets.iter().flat_map(|l| &l.set.targets) {
            if !names.contains(&target.name.as_str()) {
                names.push(&target.name);
            }
        }
        names
    }

    /// A target's colour, fixed for well-known names and stable within this collection.
    pub fn colour(&self, target: &str) -> (u8, u8, u8) {
        if let Some((_, rgb)) = TARGET_COLOURS.iter().find(|(name, _)| *name == target) {
            return *rgb;
        }
        let others: Vec<&str> = self
            .target_names()
            .into_iter()
            .filter(|name| !TARGET_COLOURS.iter().any(|(known, _)| known == name))
            .collect();
        let position = others.iter().position(|n| *n == target).unwrap_or(0);
        FALLBACK_COLOURS[position % FALLBACK_COLOURS.len()]
    }
}

impl Loaded {
    /// The command that produced this file, as one shell-quoted line.
    pub fn command_line(&self) -> String {
        shell_words::join(&self.set.command)
    }

    pub fn target(&self, name: &str) -> Option<&TargetResult> {
        self.set.targets.iter().find(|t| t.name == name)
    }
}

/// The values of one metric over a target's runs (see [`crate::schema::RunRecord::metrics`]).
pub fn samples(target: &TargetResult, metric: &str) -> Vec<f64> {
    target
        .runs
        .iter()
        .filter_map(|run| {
            run.metrics()
                .into_iter()
                .find(|(name, _)| name == metric)
                .map(|(_, v)| v)
        })
        .collect()
}

/// "cores 2 vs 8, kernel a vs b": the fields that make two fingerprints different hosts.
pub fn host_differences(a: &HostFingerprint, b: &HostFingerprint) -> String {
    let fields = [
        ("kernel", a.kernel.clone(), b.kernel.clone()),
        ("cpu_model", a.cpu_model.clone(), b.cpu_model.clone()),
        ("cores", a.cores.to_string(), b.cores.to_string()),
        (
            "mem_total_kib",
            a.mem_total_kib.to_string(),
            b.mem_total_kib.to_string(),
        ),
        ("cgroup_mode", a.cgroup_mode.clone(), b.cgroup_mode.clone()),
        ("kvm_kind", a.kvm_kind.clone(), b.kvm_kind.clone()),
    ];
    fields
        .iter()
        .filter(|(_, x, y)| x != y)
        .map(|(name, x, y)| format!("{name} `{x}` vs `{y}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the committed fixtures (reports/tests/fixtures) for unit tests.
#[cfg(test)]
pub(crate) fn fixture(names: &[&str]) -> Collection {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    Collection::load(&paths).unwrap()
}

/// The fixtures of every mode, from one host.
#[cfg(test)]
pub(crate) const ALL_FIXTURES: [&str; 5] = [
    "ready.json",
    "cpu.json",
    "mem.json",
    "syscall.json",
    "io.json",
];

/// Every fixture of one host: the bench modes, the probe and a density run.
#[cfg(test)]
pub(crate) const FULL_FIXTURES: [&str; 7] = [
    "ready.json",
    "cpu.json",
    "mem.json",
    "syscall.json",
    "io.json",
    "probe.json",
    "density.json",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_names() {
        assert_eq!(Kind::of("native"), Kind::Native);
        assert_eq!(Kind::of("unshare"), Kind::Container);
        assert_eq!(Kind::of("vm-mini"), Kind::MiniVm);
        assert_eq!(Kind::of("vm-linux"), Kind::LinuxVm);
        assert_eq!(Kind::of("my-peer"), Kind::Other);
    }

    #[test]
    fn refuses_another_host_naming_both_files_and_the_difference() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let err = Collection::load(&[dir.join("ready.json"), dir.join("ready-other-host.json")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ready-other-host.json") && err.contains("ready.json"),
            "{err}"
        );
        assert!(err.contains("cores `2` vs `8`"), "{err}");
    }

    #[test]
    fn keeps_the_newest_set_per_mode() {
        let c = fixture(&["ready.json", "ready-regressed-20pct.json", "cpu.json"]);
        assert_eq!(c.sets.len(), 2);
        assert_eq!(c.superseded.len(), 1);
    }

    #[test]
    fn colours_are_fixed_for_known_targets_and_distinct_for_others() {
        let c = fixture(&["ready.json"]);
        assert_eq!(c.colour("native"), (90, 90, 90));
        assert_ne!(c.colour("vm-mini"), c.colour("unshare"));
        assert_eq!(c.colour("someone"), FALLBACK_COLOURS[0]);
    }
}
