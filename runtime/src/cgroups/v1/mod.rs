//! cgroup v1: one hierarchy per controller (or co-mounted group), each with its own
//! directory for the container (`isolab/<name>`, or the OCI cgroups path).

mod blkio;
mod cpu;
mod cpuacct;
mod cpuset;
mod devices;
mod memory;

use std::path::{Path, PathBuf};

use super::pids;
use super::{CgroupError, CgroupManager, CgroupPath, ContainerView, Place, Resources, Stats};
use crate::explain::Explain;
use crate::host::cgroup::V1Hierarchy as Hierarchy;

fn has(hierarchy: &Hierarchy, controller: &str) -> bool {
    hierarchy.controllers.iter().any(|c| c == controller)
}

type Check = fn(&Path, &Resources) -> Result<(), CgroupError>;
type Apply = fn(&Path, &Resources, &Explain) -> Result<(), CgroupError>;
type Collect = fn(&Path, &mut Stats) -> Result<(), CgroupError>;

/// One controller: whether a limit asks for it, whether the container joins it anyway,
/// what the host must offer for the limit, how the limit is written and what it reports.
struct Controller {
    name: &'static str,
    limited: bool,
    always: bool,
    check: Option<Check>,
    apply: Apply,
    stats: Option<Collect>,
}

/// memory (for OOM reports), cpu, cpuacct (CPU usage), pids and devices (the device
/// allowlist) are joined wherever mounted; cpuset and blkio only when limited, to keep the
/// start cheap.
fn controllers(resources: &Resources) -> [Controller; 7] {
    let controller = |name, limited, always, check, apply, stats| Controller {
        name,
        limited,
        always,
        check,
        apply,
        stats,
    };
    [
        controller(
            memory::NAME,
            memory::limited(resources),
            true,
            Some(memory::check as Check),
            memory::apply as Apply,
            Some(memory::stats as Collect),
        ),
        controller(
            cpu::NAME,
            cpu::limited(resources),
            true,
            Some(cpu::check),
            cpu::apply,
            Some(cpu::stats),
        ),
        controller(
            cpuacct::NAME,
            false,
            true,
            None,
            cpuacct::apply,
            Some(cpuacct::stats),
        ),
        controller(
            pids::NAME,
            pids::limited(resources),
            true,
            None,
            pids::apply,
            Some(pids::stats),
        ),
        controller(devices::NAME, false, true, None, devices::apply, None),
        controller(
            cpuset::NAME,
            cpuset::limited(resources),
            false,
            None,
            cpuset::apply,
            None,
        ),
        controller(
            blkio::NAME,
            blkio::limited(resources),
            false,
            Some(blkio::check),
            blkio::apply,
            None,
        ),
    ]
}

#[derive(Debug)]
pub(super) struct V1Manager {
    /// For messages: the container's name or cgroups path.
    label: String,
    /// The hierarchies this container joins, each with the container's directory in it.
    joined: Vec<(Hierarchy, Place)>,
}

/// The line of /proc/self/cgroup that names `hierarchy` (`cpu,cpuacct`, `name=systemd`).
fn proc_key(hierarchy: &Hierarchy) -> String {
    match &hierarchy.name {
        Some(name) if hierarchy.controllers.is_empty() => format!("name={name}"),
        _ => hierarchy.controllers.join(","),
    }
}

impl V1Manager {
    /// Checks that each requested limit has its controller and files among the mounted
    /// hierarchies, and picks the hierarchies to join.
    pub(super) fn new(
        path: &CgroupPath,
        resources: &Resources,
        hierarchies: Vec<Hierarchy>,
    ) -> Result<Self, CgroupError> {
        let find = |controller: &str| hierarchies.iter().find(|h| has(h, controller));
        let mut joined: Vec<(Hierarchy, Place)> = Vec::new();
        for Controller {
            name: controller,
            limited,
            always,
            check,
            ..
        } in controllers(resources)
        {
            match find(controller) {
                Some(h) if limited || always => {
                    if let (true, Some(check)) = (limited, check) {
                        check(&h.mount_point, resources)?;
                    }
                    if !joined.iter().any(|(j, _)| j == h) {
                        let place = path.place(&h.mount_point, || super::own_cgroup(&proc_key(h)));
                        joined.push((h.clone(), place));
                    }
                }
                None if limited => {
                    return Err(CgroupError::Unsupported {
                        what: controller_subject(controller),
                        missing: format!(
                            "no cgroup v1 hierarchy with the {controller} controller is mounted"
                        ),
                        how: "mount it (e.g. mount -t cgroup -o <controller> cgroup /sys/fs/cgroup/<controller>) or enable the controller in the kernel (CONFIG_CGROUP_*, cgroup_enable=)",
                    });
                }
                _ => {}
            }
        }
        Ok(V1Manager {
            label: path.label(),
            joined,
        })
    }

    /// The hierarchies in which `isolab/<name>` exists.
    pub(super) fn existing(name: &str, hierarchies: Vec<Hierarchy>) -> Self {
        let path = CgroupPath::Named(name.to_string());
        let joined = hierarchies
            .into_iter()
            .map(|h| {
                let place = path.place(&h.mount_point, || "/".into());
                (h, place)
            })
            .filter(|(_, place)| place.dir.is_dir())
            .collect();
        V1Manager {
            label: path.label(),
            joined,
        }
    }

    /// The existing directories `dirs`, each in the hierarchy mounted above it.
    pub(super) fn at(dirs: Vec<PathBuf>, created: &[PathBuf], hierarchies: Vec<Hierarchy>) -> Self {
        let joined = dirs
            .into_iter()
            .filter_map(|dir| {
                let h = hierarchies
                    .iter()
                    .find(|h| dir.starts_with(&h.mount_point))?;
                Some((h.clone(), Place::existing(dir, created)))
            })
            .collect();
        V1Manager {
            label: String::new(),
            joined,
        }
    }

    fn dir_with(&self, controller: &str) -> Option<&Path> {
        self.joined
            .iter()
            .find(|(h, _)| has(h, controller))
            .map(|(_, place)| place.dir.as_path())
    }
}

fn controller_subject(controller: &str) -> &'static str {
    match controller {
        "memory" => "memory",
        "cpu" => "CPU time",
        "pids" => "the number of processes",
        "cpuset" => "the CPUs used",
        _ => "block I/O",
    }
}

impl CgroupManager for V1Manager {
    fn create(&self, resources: &Resources, explain: &Explain) -> Result<(), CgroupError> {
        for (hierarchy, place) in &self.joined {
            place.create(&self.label, explain, |_| Ok(()))?;
            if has(hierarchy, cpuset::NAME) {
                // Each level below the root, top-down, gets its parent's CPUs and nodes.
                let mut levels: Vec<&Path> = place
                    .dir
                    .ancestors()
                    .take_while(|a| *a != hierarchy.mount_point)
                    .collect();
                levels.reverse();
                for level in levels {
                    if let Some(parent) = level.parent() {
                        cpuset::inherit(explain, parent, level)?;
                    }
                }
            }
        }
        for controller in controllers(resources) {
            if let Some(dir) = self.dir_with(controller.name) {
                (controller.apply)(dir, resources, explain)?;
            }
        }
        Ok(())
    }

    fn add_process(&self, pid: i32, explain: &Explain) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for (_, place) in &self.joined {
            super::write(explain, &place.dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn self_join_files(&self) -> Vec<PathBuf> {
        self.joined
            .iter()
            .map(|(_, place)| place.dir.join("tasks"))
            .collect()
    }

    fn limits_devices(&self) -> bool {
        self.dir_with(devices::NAME).is_some()
    }

    fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self.dir_with(memory::NAME) {
            Some(dir) => memory::oom_kills(dir),
            None => Ok(0),
        }
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        for controller in controllers(&Resources::default()) {
            if let (Some(collect), Some(dir)) = (controller.stats, self.dir_with(controller.name)) {
                collect(dir, &mut stats)?;
            }
        }
        Ok(stats)
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.joined
            .iter()
            .map(|(_, place)| place.dir.clone())
            .collect()
    }

    fn container_view(&self) -> ContainerView {
        ContainerView::Hierarchies(
            self.joined
                .iter()
                .map(|(h, _)| {
                    let dir = h
                        .mount_point
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| h.controllers.join(","));
                    (dir, h.controllers.join(","))
                })
                .collect(),
        )
    }

    fn remove(&self, explain: &Explain) -> Result<(), CgroupError> {
        // Try every hierarchy even when one fails, so one error leaves the least behind.
        let mut first_error = None;
        for (_, place) in &self.joined {
            if let Err(e) = place.remove(explain) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn created_parents(&self) -> Vec<PathBuf> {
        self.joined
            .iter()
            .flat_map(|(_, place)| place.created())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(mount_point: &str, controllers: &[&str]) -> Hierarchy {
        Hierarchy {
            mount_point: mount_point.into(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            name: None,
        }
    }

    fn named() -> CgroupPath {
        CgroupPath::Named("c".into())
    }

    fn hybrid() -> Vec<Hierarchy> {
        vec![
            hierarchy("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            hierarchy("/sys/fs/cgroup/cpuset", &["cpuset"]),
            hierarchy("/sys/fs/cgroup/memory", &["memory"]),
            hierarchy("/sys/fs/cgroup/pids", &["pids"]),
        ]
    }

    #[test]
    fn the_container_joins_cpuset_only_when_limited() {
        let none = V1Manager::new(&named(), &Resources::default(), hybrid()).unwrap();
        let dirs = none.paths();
        assert_eq!(
            dirs,
            [
                PathBuf::from("/sys/fs/cgroup/memory/isolab/c"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/isolab/c"),
                PathBuf::from("/sys/fs/cgroup/pids/isolab/c"),
            ]
        );
        assert_eq!(
            none.container_view(),
            ContainerView::Hierarchies(vec![
                ("memory".into(), "memory".into()),
                ("cpu,cpuacct".into(), "cpu,cpuacct".into()),
                ("pids".into(), "pids".into()),
            ])
        );
        let pinned = Resources {
            cpuset_cpus: Some("0".into()),
            ..Resources::default()
        };
        let with = V1Manager::new(&named(), &pinned, hybrid()).unwrap();
        assert!(with.dir_with("cpuset").is_some());
    }

    #[test]
    fn the_init_joins_itself_through_each_hierarchys_tasks_file() {
        let manager = V1Manager::new(&named(), &Resources::default(), hybrid()).unwrap();
        assert_eq!(
            manager.self_join_files(),
            [
                PathBuf::from("/sys/fs/cgroup/memory/isolab/c/tasks"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/isolab/c/tasks"),
                PathBuf::from("/sys/fs/cgroup/pids/isolab/c/tasks"),
            ]
        );
    }

    #[test]
    fn a_limit_without_its_controller_names_the_controller() {
        let limited = Resources {
            blkio_weight: Some(500),
            ..Resources::default()
        };
        let err = V1Manager::new(&named(), &limited, hybrid()).unwrap_err();
        assert!(err.to_string().contains("blkio controller"), "{err}");
    }

    #[test]
    fn create_writes_limits_and_remove_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory");
        std::fs::create_dir(&memory).unwrap();
        let hierarchies = vec![hierarchy(memory.to_str().unwrap(), &["memory"])];
        let res = Resources {
            memory: Some(32 << 20),
            ..Resources::default()
        };
        let manager = V1Manager::new(&named(), &res, hierarchies).unwrap();
        manager.create(&res, &Explain::off()).unwrap();
        let dir = memory.join("isolab/c");
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            "33554432"
        );
        // A real cgroupfs removes the control files with the directory; a tempdir does not.
        std::fs::remove_file(dir.join("memory.limit_in_bytes")).unwrap();
        manager.remove(&Explain::off()).unwrap();
        assert!(!dir.exists());
    }
}
