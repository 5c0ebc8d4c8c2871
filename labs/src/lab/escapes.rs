//! Lab 14: escapes, and which layer stops them. The lab sets up what four known escapes go
//! for, all its own and harmless to the host: a "host disk" (a file-backed ext2 image on a
//! read-only loop device), a "host service" on an abstract Unix socket, a host directory
//! whose descriptor a careless runtime leaks, and the container's own /proc/self/exe. A probe
//! the lab provides tries each in a misconfigured container and in a default one; the
//! checker runs them itself and grades the student's account of what each got and which
//! layer stopped it.

use std::path::Path;
use std::process::{Command, Stdio};

use isolab_runtime::host::NamespaceKind;

use super::containers;
use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace, observe, rootfs};

pub static LAB: EscapesLab = EscapesLab;

const ROOTFS: &str = "rootfs";
const SOURCE: &str = "escapes.c";
/// Outside the root file system: the containers cannot touch the service's program.
const BINARY: &str = "bin/escapes";
const PROBE: &str = "rootfs/escapes";
const DISK: &str = "disk.img";
const HOST_DIR: &str = "hostdir";
const SOCKET_NAME: &str = "socket-name";
const ESCAPES_C: &str = include_str!("../../content/14/escapes.c");
const ANSWERS: &str = include_str!("../../content/14/answers.txt");

#[derive(Debug)]
pub struct EscapesLab;

/// What one attempt printed.
#[derive(Debug, Default)]
struct Attempt {
    values: Vec<(String, String)>,
    /// isolab's or the probe's complaint, when it printed nothing.
    stderr: String,
}

impl Attempt {
    fn run(command: &mut Command) -> Result<Self, LabError> {
        let out = observe::output(command)?;
        Ok(Attempt {
            values: containers::values(&String::from_utf8_lossy(&out.stdout)),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.contains("WARNING: --privileged"))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        containers::value(&self.values, key)
    }

    fn describe(&self, what: &str) -> String {
        match (
            self.get(&format!("{what}_step")),
            self.get(&format!("{what}_errno")),
        ) {
            (Some("done"), _) => "got through".to_owned(),
            (Some(step), Some(errno)) => format!("stopped at {step} with errno {errno}"),
            _ => format!("did not run ({})", self.stderr),
        }
    }
}

/// The layer that stopped an attempt, from the step it failed at; `None` when it did not
/// run, `none` when nothing stopped it.
fn layer(what: &str, attempt: &Attempt) -> Option<&'static str> {
    let step = attempt.get(&format!("{what}_step"))?;
    Some(match (what, step) {
        (_, "done") => "none",
        // Without CAP_MKNOD (cgroup v2 hosts) there is no node to open.
        ("disk", "mknod") => "capabilities",
        // The v1 devices cgroup allows mknod of any node and refuses to open it.
        ("disk", "open") => "devices cgroup",
        // mount(2) is not on Docker's seccomp allowlist: refused before any capability check.
        ("disk", "mount") => "seccomp",
        // An abstract socket lives in a network namespace.
        ("socket", "connect") => "network namespace",
        // The runtime closed every inherited descriptor above 2.
        ("fd", "find") => "runtime",
        // ETXTBSY: the kernel refuses to write a file that a process is executing.
        ("exe", "open") => "kernel",
        _ => "other",
    })
}

/// Blanks, `-` and `_` alike, case ignored: `Devices-cgroup` is `devices cgroup`.
fn same_layer(answer: &str, measured: &str) -> bool {
    let norm = |t: &str| {
        t.to_lowercase()
            .replace(['-', '_'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    norm(answer) == norm(measured)
}

/// The loop devices whose backing file is in `dir`, as `loopN`.
fn loops_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim().trim_end_matches(" (deleted)");
            (name.starts_with("loop") && Path::new(backing).starts_with(&dir)).then_some(name)
        })
        .collect()
}

/// `MAJOR:MINOR` of the lab's loop device.
fn disk_device(ws: &Workspace) -> Option<String> {
    let name = loops_under(ws.dir()).into_iter().next()?;
    std::fs::read_to_string(format!("/sys/block/{name}/dev"))
        .ok()
        .map(|d| d.trim().to_owned())
}

/// The lab's host service, if it still runs: a process of the lab's program in `serve` mode.
fn service_running(ws: &Workspace) -> bool {
    let Ok(binary) = std::fs::canonicalize(ws.path(BINARY)) else {
        return false;
    };
    observe::pids()
        .into_iter()
        .any(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
}

/// The eight attempts: each escape in its misconfigured and its default container.
struct Attempts {
    disk: [Attempt; 2],
    socket: [Attempt; 2],
    fd: [Attempt; 2],
    exe: [Attempt; 2],
}

fn attempts(ws: &Workspace, device: &str, socket: &str) -> Result<Attempts, LabError> {
    let root = ws.path(ROOTFS);
    let run = |args: &[&str], command: &[&str]| -> Result<Attempt, LabError> {
        Attempt::run(&mut rootfs::run(&root, args, command)?)
    };
    // A shell opens the host directory as descriptor 3, without close-on-exec, and hands it
    // to the "container": a runtime that closes nothing leaks it.
    let leak = |launcher: String| -> Result<Attempt, LabError> {
        Attempt::run(Command::new("sh").arg("-c").arg(format!(
            "exec 3< '{}'; exec {launcher} /escapes fd",
            ws.path(HOST_DIR).display()
        )))
    };
    let isolab = rootfs::isolab()?;
    Ok(Attempts {
        disk: [
            run(&["--privileged"], &["/escapes", "disk", device])?,
            run(&[], &["/escapes", "disk", device])?,
        ],
        socket: [
            run(&["--net", "host"], &["/escapes", "socket", socket])?,
            run(&[], &["/escapes", "socket", socket])?,
        ],
        fd: [
            leak(format!(
                "unshare --mount --pid --fork --root '{}'",
                root.display()
            ))?,
            leak(format!(
                "'{}' run --rootfs '{}' --",
                isolab.display(),
                root.display()
            ))?,
        ],
        exe: [
            run(&["--privileged"], &["/escapes", "exe"])?,
            run(&[], &["/escapes", "exe"])?,
        ],
    })
}

/// Builds the lab's program from its own source, for the service and into the root.
fn build(ws: &Workspace) -> Result<(), LabError> {
    ws.write(SOURCE, ESCAPES_C)?;
    let bin = ws.path("bin");
    std::fs::create_dir_all(&bin).map_err(LabError::io("creating", &bin))?;
    containers::build_static_or_fail(&ws.path(SOURCE), &ws.path(PROBE))
}

impl Lab for EscapesLab {
    lab_number!(14);

    fn minutes(&self) -> u32 {
        60
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Mnt),
            Need::Namespace(NamespaceKind::Pid),
            Need::Namespace(NamespaceKind::Net),
            Need::Command("busybox"),
            Need::Command("gcc"),
            Need::Command("mke2fs"),
            Need::Command("losetup"),
            Need::Command("unshare"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        rootfs::build(&ws.path(ROOTFS))?;
        build(ws)?;
        let service = ws.path(BINARY);
        std::fs::copy(ws.path(PROBE), &service).map_err(LabError::io("copying", &service))?;
        let host_dir = ws.path(HOST_DIR);
        std::fs::create_dir_all(&host_dir).map_err(LabError::io("creating", &host_dir))?;
        ws.write(&format!("{HOST_DIR}/secret"), &format!("{}\n", nonce()?))?;
        // The disk's files, staged in a directory that mke2fs copies and that goes after.
        let staged = ws.path("disk-files");
        std::fs::create_dir_all(&staged).map_err(LabError::io("creating", &staged))?;
        ws.write("disk-files/secret", &format!("{}\n", nonce()?))?;
        observe::succeed(
            Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext2", "-d"])
                .arg(&staged)
                .arg(ws.path(DISK))
                .arg("4M"),
        )?;
        std::fs::remove_dir_all(&staged).map_err(LabError::io("removing", &staged))?;
        // Read-only at the block layer: whatever mounts it cannot write to it.
        observe::succeed(
            Command::new("losetup")
                .args(["--find", "--show", "--read-only"])
                .arg(ws.path(DISK)),
        )?;
        let socket = format!("isolab-lab14-{}", nonce()?);
        ws.write(SOCKET_NAME, &format!("{socket}\n"))?;
        // The service outlives `lab start`; reset ends it (its program is in the workspace).
        Command::new(&service)
            .args(["serve", &socket, &nonce()?])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                command: format!("{} serve", service.display()),
                source,
            })?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let device = disk_device(ws);
        let socket = ws.read(SOCKET_NAME)?.map(|s| s.trim().to_owned());
        let mut steps = Vec::new();
        let (Some(device), Some(socket), true) = (device, socket, service_running(ws)) else {
            steps.push(StepResult::fail(
                "the lab's host disk and service",
                format!(
                    "loop device for {}: {}; host service running: {}",
                    ws.path(DISK).display(),
                    disk_device(ws).unwrap_or_else(|| "none".into()),
                    service_running(ws)
                ),
                "they are set up by `isolab lab start 14`: run it again (it resets the lab first)",
            ));
            return Ok(steps);
        };
        build(ws)?;
        let a = attempts(ws, &device, &socket)?;
        let answers = Answers::load(ws)?;
        let got = |attempt: &Attempt, key: &str| {
            attempt
                .get(key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let graded = [
            (
                "disk_secret",
                got(&a.disk[0], "disk_secret"),
                "disk",
                &a.disk,
            ),
            (
                "socket_reply",
                got(&a.socket[0], "socket_reply"),
                "socket",
                &a.socket,
            ),
            ("fd_secret", got(&a.fd[0], "fd_secret"), "fd", &a.fd),
        ];
        for (key, measured, what, pair) in graded {
            let mut step = answers.grade(key, measured.as_deref(), answers::same);
            step.observed = format!(
                "{}; misconfigured: {}, default: {}",
                step.observed,
                pair[0].describe(what),
                pair[1].describe(what)
            );
            steps.push(step);
            let layer_key = format!("{what}_layer");
            steps.push(answers.grade(&layer_key, layer(what, &pair[1]), same_layer));
        }
        steps.push(
            answers.grade(
                "exe_errno",
                got(&a.exe[1], "exe_errno")
                    .filter(|_| a.exe[1].get("exe_step") == Some("open"))
                    .as_deref(),
                answers::same_number,
            ),
        );
        let exe_layer =
            layer("exe", &a.exe[1]).filter(|_| layer("exe", &a.exe[0]) == Some("kernel"));
        steps.push(answers.grade("exe_layer", exe_layer, same_layer));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        containers::clear_under(ws.dir())?;
        for name in loops_under(ws.dir()) {
            observe::succeed(Command::new("losetup").args(["-d", &format!("/dev/{name}")]))?;
        }
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        let device = disk_device(ws)
            .ok_or_else(|| LabError::Unsupported("lab 14's loop device is gone".into()))?;
        let socket = ws.read(SOCKET_NAME)?.unwrap_or_default().trim().to_owned();
        build(ws)?;
        let a = attempts(ws, &device, &socket)?;
        let value = |attempt: &Attempt, key: &str| attempt.get(key).unwrap_or_default().to_owned();
        let layer_of =
            |what: &str, attempt: &Attempt| layer(what, attempt).unwrap_or_default().to_owned();
        let filled = answers::fill(
            ANSWERS,
            &[
                ("disk_secret", value(&a.disk[0], "disk_secret")),
                ("disk_layer", layer_of("disk", &a.disk[1])),
                ("socket_reply", value(&a.socket[0], "socket_reply")),
                ("socket_layer", layer_of("socket", &a.socket[1])),
                ("fd_secret", value(&a.fd[0], "fd_secret")),
                ("fd_layer", layer_of("fd", &a.fd[1])),
                ("exe_errno", value(&a.exe[1], "exe_errno")),
                ("exe_layer", layer_of("exe", &a.exe[1])),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(text: &str) -> Attempt {
        Attempt {
            values: containers::values(text),
            stderr: String::new(),
        }
    }

    #[test]
    fn the_step_an_attempt_failed_at_names_the_layer() {
        let default_v1 = attempt("disk_step=open\ndisk_errno=1\n");
        assert_eq!(layer("disk", &default_v1), Some("devices cgroup"));
        assert_eq!(
            layer("disk", &attempt("disk_step=mknod\ndisk_errno=1")),
            Some("capabilities")
        );
        assert_eq!(
            layer("socket", &attempt("socket_step=done\nsocket_reply=x")),
            Some("none")
        );
        assert_eq!(layer("fd", &attempt("")), None);
        assert_eq!(default_v1.describe("disk"), "stopped at open with errno 1");
        assert!(same_layer(" Devices-Cgroup", "devices cgroup"));
        assert!(same_layer("network_namespace", "network namespace"));
        assert!(!same_layer("seccomp", "capabilities"));
    }
}
