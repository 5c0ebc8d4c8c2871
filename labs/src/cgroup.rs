//! The one cgroup a cgroup lab works in, wherever this host keeps the controller: its v1
//! hierarchy (v1 and hybrid hosts) or the cgroup2 mount (pure v2 hosts).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isolab_runtime::host::{CgroupMode, CgroupSupport};

use crate::StepResult;
use crate::answers;
use crate::error::LabError;
use crate::workspace::Workspace;

#[derive(Debug, Clone)]
pub struct LabCgroup {
    pub dir: PathBuf,
    pub v2: bool,
    controller: &'static str,
}

impl LabCgroup {
    /// The cgroup `name` directly below the root of the hierarchy holding `controller`.
    pub fn locate(controller: &'static str, name: &str) -> Result<Self, LabError> {
        let host = CgroupSupport::detect()?;
        let root = host
            .location(controller)
            .ok_or(LabError::NoController { controller })?;
        let v2 = host.mode == CgroupMode::V2
            && host.unified.as_ref().is_some_and(|u| u.mount_point == root);
        Ok(LabCgroup {
            dir: root.join(name),
            v2,
            controller,
        })
    }

    /// The cgroup of lab `id`, `isolab-lab<id>`, in the hierarchy holding `controller`.
    pub fn for_lab(controller: &'static str, id: u32) -> Result<Self, LabError> {
        Self::locate(controller, &format!("isolab-lab{id}"))
    }

    /// What every cgroup lab's start does: enables the controller for the cgroup the student
    /// will create, and writes the answers template headed by where that cgroup is on this
    /// host, so that the lab text can stay the same on every host.
    pub fn start(&self, ws: &Workspace, answers: &str) -> Result<(), LabError> {
        self.enable()?;
        ws.write(answers::FILE, &format!("# {}\n{answers}", describe(self)))
    }

    /// Every cgroup lab's first step.
    pub fn created_step(&self) -> StepResult {
        let created = self.exists();
        StepResult::judge(
            "create the cgroup",
            created,
            format!("{} exists: {created}", self.dir.display()),
            &format!("mkdir {}", self.dir.display()),
        )
    }

    /// On cgroup v2, enables the controller for the root's children, so that the cgroup the
    /// student creates gets its files: with no systemd (or container runtime) having done
    /// it, a fresh v2 root enables nothing. Like them, it leaves it enabled; enabling an
    /// enabled controller is a no-op. v1 hierarchies need nothing.
    pub fn enable(&self) -> Result<(), LabError> {
        let Some(parent) = self.dir.parent().filter(|_| self.v2) else {
            return Ok(());
        };
        let path = parent.join("cgroup.subtree_control");
        std::fs::write(&path, format!("+{}", self.controller))
            .map_err(LabError::io("writing", path))
    }

    /// The file's name on this host, from its v1 and v2 names.
    pub fn name<'a>(&self, v1: &'a str, v2: &'a str) -> &'a str {
        if self.v2 { v2 } else { v1 }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// A file's trimmed text; `None` when it (or the cgroup) does not exist.
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name))
            .ok()
            .map(|t| t.trim().to_owned())
    }

    /// The number on the `key N` line of a flat-keyed file (memory.events, pids.events).
    pub fn keyed(&self, name: &str, key: &str) -> Option<u64> {
        self.read(name)?.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    }

    pub fn create(&self) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.dir).map_err(LabError::io("creating", &self.dir))
    }

    pub fn write(&self, name: &str, value: &str) -> Result<(), LabError> {
        let path = self.file(name);
        std::fs::write(&path, value).map_err(LabError::io("writing", path))
    }

    pub fn procs(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills everything in the cgroup until it stays empty: a fork bomb's killed processes
    /// fork no more, so repeated sweeps converge.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.procs();
            if procs.is_empty() || Instant::now() >= deadline {
                return;
            }
            // Those that exited meanwhile drop out of the next read of cgroup.procs.
            crate::observe::kill_all(&procs);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills everything in the cgroup and removes it. A missing cgroup is no error.
    pub fn destroy(&self) -> Result<(), LabError> {
        if !self.exists() {
            return Ok(());
        }
        self.kill_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // rmdir fails with EBUSY while a dying task is still charged to the cgroup.
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(source) if Instant::now() >= deadline => {
                    return Err(LabError::Io {
                        action: "removing cgroup",
                        path: self.dir.clone(),
                        source,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Where the cgroup is, as `start` tells the student.
fn describe(cgroup: &LabCgroup) -> String {
    let version = match cgroup.dir.parent().filter(|_| cgroup.v2) {
        Some(parent) => format!(
            "v2 (enabled for child cgroups in {})",
            parent.join("cgroup.subtree_control").display()
        ),
        None => "v1".to_owned(),
    };
    format!(
        "this host keeps the controller in cgroup {version}; your cgroup is {}",
        cgroup.dir.display()
    )
}

/// Runs `script` with `sh` inside the cgroup: the shell moves itself in before it runs it.
pub fn sh_in(cgroup: &Path, script: &str) -> std::process::Command {
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(format!(
        "echo $$ > {}/cgroup.procs && {script}",
        cgroup.display()
    ));
    command
}
