//! cgroup v2: one tree. The container's cgroup is `isolab/<name>` under the root (or the
//! OCI cgroups path); the controllers it needs are enabled top-down through each parent's
//! cgroup.subtree_control.

mod cpu;
mod cpuset;
mod io;
mod memory;

use std::path::{Path, PathBuf};

use super::pids;
use super::{CgroupError, CgroupManager, CgroupPath, ContainerView, Place, Resources, Stats};
use crate::explain::Explain;

#[derive(Debug)]
pub(super) struct V2Manager {
    root: PathBuf,
    /// For messages: the container's name or cgroups path.
    label: String,
    place: Place,
    /// Controllers to enable for the container, in `cgroup.subtree_control` syntax order.
    controllers: Vec<&'static str>,
}

type Apply = fn(&Path, &Resources, &Explain) -> Result<(), CgroupError>;

/// (controller, limit requested?, apply). memory, cpu and pids are enabled whenever the host
/// has them, for OOM reports and statistics; cpuset and io only when limited.
fn controllers(resources: &Resources) -> [(&'static str, bool, bool, Apply); 5] {
    [
        (
            memory::NAME,
            memory::limited(resources),
            true,
            memory::apply,
        ),
        (cpu::NAME, cpu::limited(resources), true, cpu::apply),
        (pids::NAME, pids::limited(resources), true, pids::apply),
        (
            cpuset::NAME,
            cpuset::limited(resources),
            false,
            cpuset::apply,
        ),
        (io::NAME, io::limited(resources), false, io::apply),
    ]
}

impl V2Manager {
    /// Checks that every controller a requested limit needs is among the root's `available`
    /// controllers (its cgroup.controllers).
    pub(super) fn new(
        root: &Path,
        available: &[String],
        path: &CgroupPath,
        resources: &Resources,
    ) -> Result<Self, CgroupError> {
        let mut enabled = Vec::new();
        for (controller, limited, always, _) in controllers(resources) {
            let present = available.iter().any(|c| c == controller);
            if limited && !present {
                return Err(CgroupError::Unsupported {
                    what: controller,
                    missing: format!(
                        "the {controller} controller is not in {}",
                        root.join("cgroup.controllers").display()
                    ),
                    how: "free it from cgroup v1 (no v1 hierarchy may hold it; boot with systemd.unified_cgroup_hierarchy=1) or delegate it to this cgroup",
                });
            }
            if present && (limited || always) {
                enabled.push(controller);
            }
        }
        Ok(V2Manager {
            root: root.to_path_buf(),
            label: path.label(),
            place: path.place(root, || super::own_cgroup("")),
            controllers: enabled,
        })
    }

    /// The manager of an existing `isolab/<name>`, with the controllers its parent gives it.
    pub(super) fn existing(root: &Path, name: &str) -> Self {
        let path = CgroupPath::Named(name.to_string());
        Self::of(root, path.label(), path.place(root, || "/".into()))
    }

    /// The manager of the directory `dir`, made earlier (it may be gone by now).
    pub(super) fn at(root: &Path, dir: PathBuf, created: &[PathBuf]) -> Self {
        Self::of(root, String::new(), Place::existing(dir, created))
    }

    fn of(root: &Path, label: String, place: Place) -> Self {
        let given =
            std::fs::read_to_string(place.dir.join("cgroup.controllers")).unwrap_or_default();
        let controllers = controllers(&Resources::default())
            .into_iter()
            .map(|(controller, ..)| controller)
            .filter(|c| given.split_whitespace().any(|g| g == *c))
            .collect();
        V2Manager {
            root: root.to_path_buf(),
            label,
            place,
            controllers,
        }
    }

    /// `+memory +cpu ...`; enabling an already-enabled controller is a no-op for the kernel.
    fn subtree_control_value(&self) -> String {
        self.controllers
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl CgroupManager for V2Manager {
    fn create(&self, resources: &Resources, explain: &Explain) -> Result<(), CgroupError> {
        let enable = self.subtree_control_value();
        let enable_in = |dir: &Path| {
            if enable.is_empty() {
                return Ok(());
            }
            super::write(explain, &dir.join("cgroup.subtree_control"), &enable)
        };
        // From the root down to the level above the base (the base itself and the levels
        // below it are done as they are made).
        let mut above: Vec<&Path> = self
            .place
            .base
            .ancestors()
            .skip(1)
            .filter(|a| a.starts_with(&self.root))
            .collect();
        above.reverse();
        above.into_iter().try_for_each(enable_in)?;
        self.place.create(&self.label, explain, enable_in)?;
        for (controller, _, _, apply) in controllers(resources) {
            if self.controllers.contains(&controller) {
                apply(&self.place.dir, resources, explain)?;
            }
        }
        Ok(())
    }

    fn add_process(&self, pid: i32, explain: &Explain) -> Result<(), CgroupError> {
        super::write(
            explain,
            &self.place.dir.join("cgroup.procs"),
            &pid.to_string(),
        )
    }

    fn oom_kills(&self) -> Result<u64, CgroupError> {
        if self.controllers.contains(&memory::NAME) {
            memory::oom_kills(&self.place.dir)
        } else {
            Ok(0)
        }
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        // cpu.stat's usage is kept by the core, with or without the cpu controller.
        let dir = &self.place.dir;
        cpu::stats(dir, &mut stats)?;
        if self.controllers.contains(&memory::NAME) {
            memory::stats(dir, &mut stats)?;
        }
        if self.controllers.contains(&pids::NAME) {
            pids::stats(dir, &mut stats)?;
        }
        Ok(stats)
    }

    fn paths(&self) -> Vec<PathBuf> {
        if self.place.dir.is_dir() {
            vec![self.place.dir.clone()]
        } else {
            Vec::new()
        }
    }

    fn container_view(&self) -> ContainerView {
        ContainerView::Unified
    }

    fn clone_target(&self) -> Option<&Path> {
        Some(&self.place.dir)
    }

    fn remove(&self, explain: &Explain) -> Result<(), CgroupError> {
        self.place.remove(explain)
    }

    fn created_parents(&self) -> Vec<PathBuf> {
        self.place.created()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(root: &Path, available: &str, res: &Resources) -> Result<V2Manager, CgroupError> {
        let available: Vec<String> = available.split_whitespace().map(String::from).collect();
        V2Manager::new(root, &available, &CgroupPath::Named("c".into()), res)
    }

    #[test]
    fn create_enables_controllers_top_down_and_writes_limits() {
        let root = tempfile::tempdir().unwrap();
        let res = Resources {
            memory: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            cpu_shares: Some(1024),
            pids_limit: Some(64),
            cpuset_cpus: Some("0".into()),
            ..Resources::default()
        };
        let m = manager(
            root.path(),
            "cpuset cpu io memory hugetlb pids rdma misc",
            &res,
        )
        .unwrap();
        m.create(&res, &Explain::off()).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu +pids +cpuset");
        assert_eq!(
            read("isolab/cgroup.subtree_control"),
            "+memory +cpu +pids +cpuset"
        );
        assert_eq!(read("isolab/c/memory.max"), "67108864");
        assert_eq!(read("isolab/c/cpu.max"), "50000 100000");
        assert_eq!(read("isolab/c/cpu.weight"), "39");
        assert_eq!(read("isolab/c/pids.max"), "64");
        assert_eq!(read("isolab/c/cpuset.cpus"), "0");
        m.add_process(42, &Explain::off()).unwrap();
        assert_eq!(read("isolab/c/cgroup.procs"), "42");
        // clone3 places the init; nothing moves itself in.
        assert_eq!(
            m.clone_target(),
            Some(root.path().join("isolab/c").as_path())
        );
        assert!(m.self_join_files().is_empty());
    }

    #[test]
    fn controllers_are_enabled_down_a_given_path() {
        let root = tempfile::tempdir().unwrap();
        let available = ["memory".to_string(), "pids".to_string()];
        let path = CgroupPath::Given("/a/b/c".into());
        let m = V2Manager::new(root.path(), &available, &path, &Resources::default()).unwrap();
        m.create(&Resources::default(), &Explain::off()).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        for level in ["", "a/", "a/b/"] {
            assert_eq!(
                read(&format!("{level}cgroup.subtree_control")),
                "+memory +pids"
            );
        }
        assert!(!root.path().join("a/b/c/cgroup.subtree_control").exists());
        assert_eq!(m.paths(), [root.path().join("a/b/c")]);
        assert_eq!(
            m.created_parents(),
            [root.path().join("a"), root.path().join("a/b")]
        );
    }

    #[test]
    fn a_missing_controller_is_named_before_anything_is_created() {
        let root = tempfile::tempdir().unwrap();
        let res = Resources {
            cpu_quota_us: Some(50_000),
            ..Resources::default()
        };
        let err = manager(root.path(), "memory pids", &res).unwrap_err();
        assert!(
            err.to_string().contains("the cpu controller is not in"),
            "{err}"
        );
        assert!(!root.path().join("isolab").exists());
    }

    #[test]
    fn swap_without_accounting_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let res = Resources {
            memory: Some(32 << 20),
            memory_swap: Some(super::super::MemorySwap::Total(64 << 20)),
            ..Resources::default()
        };
        let m = manager(root.path(), "memory", &res).unwrap();
        let err = m.create(&res, &Explain::off()).unwrap_err();
        assert!(err.to_string().contains("swap"), "{err}");
    }

    #[test]
    fn oom_kills_come_from_memory_events() {
        let root = tempfile::tempdir().unwrap();
        let m = manager(root.path(), "memory", &Resources::default()).unwrap();
        m.create(&Resources::default(), &Explain::off()).unwrap();
        std::fs::write(
            root.path().join("isolab/c/memory.events"),
            "oom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(m.oom_kills().unwrap(), 1);
    }

    #[test]
    fn stats_come_from_each_controllers_files() {
        let root = tempfile::tempdir().unwrap();
        let m = manager(root.path(), "memory cpu pids", &Resources::default()).unwrap();
        m.create(&Resources::default(), &Explain::off()).unwrap();
        let dir = root.path().join("isolab/c");
        for (file, text) in [
            ("memory.current", "4096\n"),
            ("memory.peak", "8192\n"),
            ("memory.max", "max\n"),
            ("memory.events", "oom 0\noom_kill 0\n"),
            (
                "cpu.stat",
                "usage_usec 7\nnr_throttled 3\nthrottled_usec 2\n",
            ),
            ("pids.current", "2\n"),
            ("pids.max", "64\n"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let stats = m.stats().unwrap();
        assert_eq!(stats.memory_current_bytes, Some(4096));
        assert_eq!(stats.memory_peak_bytes, Some(8192));
        assert_eq!(stats.memory_limit_bytes, None);
        assert_eq!(stats.cpu_usage_ns, Some(7000));
        assert_eq!(stats.cpu_throttled_periods, Some(3));
        assert_eq!(stats.cpu_throttled_ns, Some(2000));
        assert_eq!(stats.pids_limit, Some(64));
        assert_eq!(stats.oom_kills, Some(0));
        assert_eq!(m.paths(), [dir]);
    }
}
