//! The container labs end to end, as root on this host: 2 (chroot versus pivot_root), 9
//! (copy-on-write), 10 (capabilities and seccomp) and 14 (escapes). For each, the untouched
//! starter fails with hints, the reference solution passes, and reset — with something the
//! student left running — leaves no mounts, loop devices, container records, cgroups or
//! processes behind. Labs this host cannot run are skipped, saying why.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::Value;

use lab::{LabDir, isolab, isolab_std, mounts_below, processes_below, wait_until};

/// What a lab must not leave behind, scoped to what it creates (its workspace directory, the
/// containers started from it), so that tests running beside it cannot make it flake.
#[derive(Debug, PartialEq, Eq, Default)]
struct Leftovers {
    /// Mount points at or below the labs' directory.
    mounts: Vec<String>,
    /// Loop devices backed by a file in it.
    loops: Vec<String>,
    /// Processes whose cwd, executable or root is in it, or whose command line names it.
    processes: Vec<String>,
    /// Container records whose root is in it.
    containers: Vec<String>,
    /// `isolab/<name>` cgroups of the containers the lab had.
    cgroups: Vec<String>,
}

fn loops_below(dir: &Path) -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            Path::new(backing.trim())
                .starts_with(dir)
                .then(|| format!("{}: {}", e.file_name().to_string_lossy(), backing.trim()))
        })
        .collect()
}

/// A container record: its name, its root as typed, its init's host pid.
struct Record {
    name: String,
    rootfs: String,
    pid: u64,
}

/// `isolab ps --all --json`: every container record.
fn records(dir: &Path) -> Vec<Record> {
    let out = isolab(dir)
        .args(["ps", "--all", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|c| Record {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    rootfs: c["rootfs"].as_str().unwrap_or_default().to_owned(),
                    pid: c["pid"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the containers whose root is in `dir`. A relative root (the lab texts run
/// from the workspace) counts when it is a store's directory for this very container in the
/// workspace, or when the running init's root is that directory of the workspace.
fn lab_containers(dir: &Path, id: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let ws = dir.join(id.to_string());
    let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    records(dir)
        .into_iter()
        .filter(|r| {
            let rootfs = Path::new(&r.rootfs);
            if rootfs.is_absolute() {
                return rootfs.starts_with(dir);
            }
            let candidate = ws.join(rootfs);
            !r.rootfs.is_empty()
                && identity(&candidate).is_some()
                && (rootfs.file_name() == Some(std::ffi::OsStr::new(&r.name))
                    || identity(Path::new(&format!("/proc/{}/root", r.pid)))
                        == identity(&candidate))
        })
        .map(|r| r.name)
        .collect()
}

fn leftovers(dir: &Path, id: u32, names: &[String]) -> Leftovers {
    Leftovers {
        mounts: mounts_below(dir),
        loops: loops_below(dir),
        processes: processes_below(dir),
        containers: lab_containers(dir, id),
        cgroups: lab::cgroups(names.iter().map(|n| format!("isolab/{n}"))),
    }
}

/// `isolab run ARGS` from the workspace, as the lab texts run it.
fn run_in(ws: &Path, args: &[&str]) -> std::process::Command {
    let mut command = isolab_std(ws.parent().unwrap());
    command.current_dir(ws).arg("run").args(args);
    command
}

/// `isolab run -d ARGS` from the workspace; the container stays running.
fn run_detached_in(ws: &Path, args: &[&str]) {
    let out = run_in(ws, &["-d"]).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a program from the workspace as a student would, and leaves it running.
fn leave_running(command: &mut std::process::Command) -> Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The whole life of one lab; `leave` starts what a student might leave running once the
/// solution is in place (the workspace is its argument).
fn starter_fails_solution_passes_reset_cleans(id: u32, leave: impl FnOnce(&Path) -> Vec<Child>) {
    let Some(lab) = LabDir::new("lab-container", id) else {
        return;
    };
    assert_eq!(
        leftovers(&lab.dir, id, &[]),
        Leftovers::default(),
        "lab {id}: not clean before start"
    );
    lab.start_and_solve();
    let children = leave(&lab.ws());
    let names = lab_containers(&lab.dir, id);
    lab.reset();
    for child in children {
        // `isolab run` reports its container's death as its own failure.
        lab::killed(child, &format!("lab {id}"), |status| !status.success());
    }
    assert_eq!(
        leftovers(&lab.dir, id, &names),
        Leftovers::default(),
        "lab {id} left something behind"
    );
}

#[test]
fn lab2_chroot_versus_pivot_root() {
    starter_fails_solution_passes_reset_cleans(2, |ws| {
        // The escaped program, waiting on its input: its root is the host's /.
        let mut escaped = std::process::Command::new("chroot");
        escaped
            .current_dir(ws)
            .arg("jail")
            .arg("/escape")
            .arg(ws.join("outside/left"))
            .arg("left");
        // The same in a container from a relative root, as the lab text runs it.
        let mut contained = run_in(ws, &["--rootfs", "jail", "--", "/escape", "/left", "left"]);
        let children = vec![leave_running(&mut escaped), leave_running(&mut contained)];
        wait_until(|| {
            processes_below(ws)
                .iter()
                .filter(|p| p.contains("escape"))
                .count()
                >= 2
        });
        children
    });
}

#[test]
fn lab9_copy_on_write() {
    // The solution leaves the overlay mounted and its 100 containers running.
    starter_fails_solution_passes_reset_cleans(9, |ws| {
        run_detached_in(
            ws,
            &[
                "--store",
                "store",
                "--name",
                "lab9-extra",
                "lab9",
                "--",
                "sleep",
                "300",
            ],
        );
        Vec::new()
    });
}

#[test]
fn lab10_capabilities_and_seccomp() {
    starter_fails_solution_passes_reset_cleans(10, |ws| {
        // A detached container from a relative root, loaded with the student's profile.
        run_detached_in(
            ws,
            &[
                "--rootfs",
                "rootfs",
                "--security-opt",
                "seccomp=profile.json",
                "--name",
                "lab10-extra",
                "--",
                "sleep",
                "300",
            ],
        );
        Vec::new()
    });
}

#[test]
fn lab14_escapes() {
    // The solution leaves the lab's service and loop device; add a foreground container.
    starter_fails_solution_passes_reset_cleans(14, |ws| {
        assert!(!loops_below(ws).is_empty(), "lab 14 has no loop device");
        let mut foreground = run_in(ws, &["--rootfs", "rootfs", "--", "sleep", "300"]);
        let child = leave_running(&mut foreground);
        wait_until(|| processes_below(ws).iter().any(|p| p.contains("sleep 300")));
        vec![child]
    });
}

#[test]
fn a_seccomp_profile_that_does_not_compile_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"x": {"filter": [{"syscall": "no_such_call"}]}}"#,
    )
    .unwrap();
    let out = isolab(dir.path())
        .args(["run", "--rootfs"])
        .arg(dir.path())
        .arg("--security-opt")
        .arg(format!("seccomp={}", profile.display()))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&profile.display().to_string()), "{stderr}");
}
