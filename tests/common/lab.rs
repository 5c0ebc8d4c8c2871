//! What the lab test files share: `isolab` pointed at a labs directory of its own, the life
//! of one lab in it (the untouched starter fails with hints, the reference solution passes,
//! reset removes the workspace) and the host state a lab must not leave behind.
//!
//! A test file takes it with `#[path = "common/lab.rs"] mod lab;` beside `mod common;`.

// Each test target compiles this file on its own and uses only the part it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Serial, serial};

pub fn isolab(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("isolab").unwrap();
    command.env("ISOLAB_LAB_DIR", dir);
    command
}

/// `isolab` as a plain command, for one the test leaves running or spawns from a workspace.
pub fn isolab_std(dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("isolab"));
    command.env("ISOLAB_LAB_DIR", dir);
    command
}

/// `lab check ID --json`: its exit code and its report.
pub fn check_json(dir: &Path, id: u32) -> (i32, Value) {
    let out = isolab(dir)
        .args(["lab", "check", &id.to_string(), "--json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lab {id}: check --json printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

pub fn failing_steps(report: &Value) -> Vec<&Value> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["passed"] == false)
        .collect()
}

/// Whether `lab list` says this host can run the lab; prints why not.
pub fn runnable(dir: &Path, id: u32) -> bool {
    let out = isolab(dir)
        .args(["lab", "list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lab = list["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
        .unwrap();
    let ready = lab["status"] == "ready";
    if !ready {
        eprintln!("skipping lab {id}: {} {}", lab["status"], lab["missing"]);
    }
    ready
}

/// One lab in a labs directory of its own, with its suite's lock held. Dropped, it resets
/// the lab however the test ended, so that a failed assertion leaves no loop device or
/// service behind on a shared host (the test's own reset is checked; this one is not).
pub struct LabDir {
    /// Canonical, so that it compares with the links in /proc.
    pub dir: PathBuf,
    pub id: u32,
    _tmp: TempDir,
    _serial: Serial,
}

impl LabDir {
    /// Takes `suite`'s lock and makes the directory; `None`, saying why, when this host
    /// cannot run the lab.
    pub fn new(suite: &str, id: u32) -> Option<Self> {
        let serial = serial(suite);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        runnable(&dir, id).then_some(LabDir {
            dir,
            id,
            _tmp: tmp,
            _serial: serial,
        })
    }

    /// The lab's workspace.
    pub fn ws(&self) -> PathBuf {
        self.dir.join(self.id.to_string())
    }

    pub fn start(&self) {
        isolab(&self.dir)
            .args(["lab", "start", &self.id.to_string()])
            .assert()
            .success();
    }

    pub fn check(&self) -> (i32, Value) {
        check_json(&self.dir, self.id)
    }

    /// Starts the lab, checks that the untouched starter fails, with a hint on every
    /// failing step, then applies the reference solution and checks that it passes.
    pub fn start_and_solve(&self) {
        let id = self.id;
        self.start();
        let (code, starter) = self.check();
        assert_eq!(
            code, 1,
            "lab {id}: the untouched starter must fail: {starter:#}"
        );
        let failing = failing_steps(&starter);
        assert!(!failing.is_empty(), "lab {id}: {starter:#}");
        for step in failing {
            assert!(
                !step["hint"].as_str().unwrap().is_empty(),
                "lab {id}: failing step without a hint: {step}"
            );
        }
        isolab(&self.dir)
            .args(["lab", "solution", &id.to_string(), "--i-am-instructor"])
            .arg("--apply")
            .assert()
            .success();
        let (code, solved) = self.check();
        assert_eq!(
            code, 0,
            "lab {id}: the reference solution must pass: {solved:#}"
        );
    }

    /// Resets the lab and checks that its workspace is gone.
    pub fn reset(&self) {
        isolab(&self.dir)
            .args(["lab", "reset", &self.id.to_string()])
            .assert()
            .success();
        assert!(
            !self.ws().exists(),
            "lab {}: reset kept {:?}",
            self.id,
            self.ws()
        );
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = isolab_std(&self.dir)
            .args(["lab", "reset", &self.id.to_string()])
            .output();
    }
}

pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// The mount points (with their filesystem type) at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let fstype = fields[fields.iter().position(|f| *f == "-")? + 1];
            Path::new(fields[4])
                .starts_with(dir)
                .then(|| format!("{} ({fstype})", fields[4]))
        })
        .collect();
    mounts.sort();
    mounts
}

/// The processes, other than this one, whose cwd, executable or root is in `dir`, or whose
/// command line names it.
pub fn processes_below(dir: &Path) -> Vec<String> {
    let wanted = dir.to_string_lossy().into_owned();
    pids()
        .into_iter()
        .filter(|&pid| pid != std::process::id())
        .filter_map(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            let links = ["cwd", "exe", "root"]
                .map(|l| std::fs::read_link(proc.join(l)).unwrap_or_default());
            let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (links.iter().any(|l| l.starts_with(dir)) || cmdline.contains(&wanted))
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// The cgroups at `relative` (`isolab-lab6`, `isolab/c1`) that exist below the cgroup root
/// or below any hierarchy mounted under it.
pub fn cgroups(relative: impl IntoIterator<Item = String>) -> Vec<String> {
    let relative: Vec<String> = relative.into_iter().collect();
    let mut roots = vec!["/sys/fs/cgroup".to_owned()];
    roots.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().to_string_lossy().into_owned()),
    );
    let mut found: Vec<String> = roots
        .iter()
        .flat_map(|root| relative.iter().map(move |r| format!("{root}/{r}")))
        .filter(|p| Path::new(p).is_dir())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Waits for a process the reset must have killed; `ended` says which other ends count
/// (`isolab run` reports its container's death as its own failure).
pub fn killed(mut child: Child, what: &str, ended: impl Fn(ExitStatus) -> bool) {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait().unwrap();
    assert!(
        status.signal() == Some(9) || ended(status),
        "{what}: reset did not end it: {status}"
    );
}

/// Waits (at most 10 s) for a state that a started program reaches on its own.
pub fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "it never got there");
        std::thread::sleep(Duration::from_millis(20));
    }
}
