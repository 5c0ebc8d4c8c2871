//! Lab 2: the mount namespace, chroot versus pivot_root. The student completes a C program
//! that breaks out of a chroot with the classic mkdir + chroot + chdir("..") trick. The
//! checker builds it and runs it twice: under chroot(8), where it must get out (its root, seen
//! through /proc/<pid>/root, is the host's, and a file it writes lands outside the jail), and
//! under `isolab run`, where pivot_root with the old root detached keeps it in (its root stays
//! the jail and the host's root file system is mounted nowhere in its namespace).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isolab_runtime::host::NamespaceKind;

use super::containers;
use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::workspace::nonce;
use crate::{Lab, Need, StepResult, Workspace, observe, rootfs};

pub static LAB: ChrootLab = ChrootLab;

const JAIL: &str = "jail";
const SOURCE: &str = "escape.c";
const BINARY: &str = "jail/escape";
/// Outside the jail: where an escaped program's file lands.
const OUTSIDE: &str = "outside";
const STARTER: &str = include_str!("../../content/2/escape.c");
const REFERENCE: &str = include_str!("../../content/2/solution.c");
const ANSWERS: &str = include_str!("../../content/2/answers.txt");
const KEYS: [&str; 3] = ["chroot", "wrote", "ready"];

#[derive(Debug)]
pub struct ChrootLab;

/// A file system object's identity.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// One run of the student's program, seen from the host.
#[derive(Debug, Default)]
struct Attempt {
    /// What it printed: its chroot() result, its write's result.
    chroot: Option<String>,
    wrote: Option<String>,
    /// `readlink /proc/<pid>/root`, and whether that root is the host's / or the jail.
    root_link: Option<PathBuf>,
    root_is_host: bool,
    root_is_jail: bool,
    /// Mounts of the host's root file system in its namespace whose root is not the jail.
    host_mounts: Vec<String>,
    /// The root, within its file system, of the namespace's `/` mount.
    slash_root: Option<String>,
    mounts: usize,
    /// The host file it was to write holds this run's text.
    file_outside: bool,
}

impl Attempt {
    /// Runs `command` (which ends in `/escape PATH TEXT`) and looks at the process from the
    /// host; `in_container`: the program is the init under a foreground `isolab run`.
    fn run(ws: &Workspace, mut command: Command, in_container: bool) -> Result<Self, LabError> {
        let proof = ws.path(&format!(
            "{OUTSIDE}/{}",
            if in_container { "container" } else { "chroot" }
        ));
        let _ = std::fs::remove_file(&proof);
        let text = nonce()?;
        command.arg(&proof).arg(&text);
        let jail = ws.path(JAIL);
        let jail_root = format!(
            "{}",
            std::fs::canonicalize(&jail)
                .unwrap_or(jail.clone())
                .display()
        );
        let host = identity(Path::new("/"));
        let host_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
        let (values, seen) = containers::converse(&mut command, &KEYS, |pid| {
            let pid = if in_container {
                containers::init_of(pid, Duration::from_secs(5))?
            } else {
                pid
            };
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let mounts = observe::mounts_of(pid).unwrap_or_default();
            let device = host_dev.map(|d| format!("{}:{}", libc::major(d), libc::minor(d)));
            Some(Attempt {
                root_link: std::fs::read_link(&root).ok(),
                root_is_host: identity(&root).is_some() && identity(&root) == host,
                root_is_jail: identity(&root).is_some() && identity(&root) == identity(&jail),
                host_mounts: mounts
                    .iter()
                    .filter(|m| {
                        Some(&m.device) == device.as_ref() && !m.root.starts_with(&jail_root)
                    })
                    .map(|m| format!("{} on {}", m.root, m.mount_point.display()))
                    .collect(),
                slash_root: mounts
                    .iter()
                    .filter(|m| m.mount_point == Path::new("/"))
                    .map(|m| m.root.clone())
                    .next_back(),
                mounts: mounts.len(),
                ..Attempt::default()
            })
        })?;
        let mut attempt = seen.unwrap_or_default();
        attempt.chroot = values[0].clone();
        attempt.wrote = values[1].clone();
        attempt.file_outside = std::fs::read_to_string(&proof).is_ok_and(|t| t.trim() == text);
        Ok(attempt)
    }

    fn tried(&self) -> bool {
        self.chroot
            .as_deref()
            .is_some_and(|c| c.parse::<i32>().is_ok())
    }

    fn describe(&self) -> String {
        format!(
            "it printed chroot={} wrote={}; /proc/<pid>/root -> {} (the host's /: {}, the jail: {}); its file outside the jail: {}; {} mounts in its namespace{}",
            self.chroot.as_deref().unwrap_or("(nothing)"),
            self.wrote.as_deref().unwrap_or("(nothing)"),
            self.root_link
                .as_deref()
                .map_or_else(|| "(gone)".to_owned(), |p| p.display().to_string()),
            self.root_is_host,
            self.root_is_jail,
            if self.file_outside {
                "written"
            } else {
                "absent"
            },
            self.mounts,
            if self.host_mounts.is_empty() {
                String::new()
            } else {
                format!(
                    ", the host's root file system among them: {}",
                    self.host_mounts.join(", ")
                )
            }
        )
    }
}

fn build(ws: &Workspace) -> Result<std::process::Output, LabError> {
    containers::build_static(&ws.path(SOURCE), &ws.path(BINARY))
}

fn attempts(ws: &Workspace) -> Result<(Attempt, Attempt), LabError> {
    let mut chroot = Command::new("chroot");
    chroot.arg(ws.path(JAIL)).arg("/escape");
    let escaped = Attempt::run(ws, chroot, false)?;
    let contained = Attempt::run(ws, rootfs::run(&ws.path(JAIL), &[], &["/escape"])?, true)?;
    Ok((escaped, contained))
}

impl Lab for ChrootLab {
    lab_number!(2);

    fn minutes(&self) -> u32 {
        45
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Mnt),
            Need::Namespace(NamespaceKind::Pid),
            Need::Command("busybox"),
            Need::Command("gcc"),
            Need::Command("chroot"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        rootfs::build(&ws.path(JAIL))?;
        let outside = ws.path(OUTSIDE);
        std::fs::create_dir(&outside).map_err(LabError::io("creating", &outside))?;
        ws.write(SOURCE, STARTER)?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let build = build(ws)?;
        let built = build.status.success();
        let mut steps = vec![StepResult::judge(
            "build escape.c",
            built,
            format!(
                "gcc -static: {}{}",
                build.status,
                super::pidns::tail(&String::from_utf8_lossy(&build.stderr))
            ),
            "fix the compiler errors shown; build it yourself with `gcc -static -o jail/escape escape.c`",
        )];
        let (escaped, contained) = if built {
            attempts(ws)?
        } else {
            (Attempt::default(), Attempt::default())
        };
        let got_out = escaped.tried() && escaped.root_is_host && escaped.file_outside;
        steps.push(StepResult::judge(
            "out of a chroot",
            got_out,
            format!("under `chroot jail /escape`: {}", escaped.describe()),
            "complete break_out() in escape.c: mkdir a directory, chroot() into it, chdir(\"..\") many times, then chroot(\".\")",
        ));
        let held = got_out
            && contained.tried()
            && contained.root_is_jail
            && !contained.file_outside
            && contained.host_mounts.is_empty()
            && contained.mounts > 0;
        steps.push(StepResult::judge(
            "held by pivot_root in a container",
            held,
            format!("under `isolab run --rootfs jail -- /escape`: {}", contained.describe()),
            if got_out {
                "the same program must try again in `isolab run --rootfs jail -- /escape PATH TEXT` and stay inside: look at its /proc/<pid>/root and /proc/<pid>/mountinfo"
            } else {
                "first make the program get out of a plain chroot (the step above); then the checker runs it in a container"
            },
        ));
        let answers = Answers::load(ws)?;
        let escaped_root = escaped
            .root_link
            .as_deref()
            .filter(|_| got_out)
            .map(|p| p.display().to_string());
        steps.push(answers.grade("escaped_root", escaped_root.as_deref(), answers::same));
        steps.push(answers.grade(
            "container_chroot",
            contained.chroot.as_deref().filter(|_| held),
            answers::same_number,
        ));
        steps.push(answers.grade(
            "container_root_mount",
            contained.slash_root.as_deref().filter(|_| held),
            |a, m| a.trim().trim_end_matches('/') == m.trim_end_matches('/'),
        ));
        Ok(steps)
    }

    fn reset(&self, ws: &Workspace) -> Result<(), LabError> {
        // Programs the student left waiting, in the jail or escaped from it.
        containers::clear_under(ws.dir())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(SOURCE, REFERENCE)?;
        containers::build_static_or_fail(&ws.path(SOURCE), &ws.path(BINARY))?;
        let (escaped, contained) = attempts(ws)?;
        let filled = answers::fill(
            ANSWERS,
            &[
                (
                    "escaped_root",
                    escaped
                        .root_link
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
                ("container_chroot", contained.chroot.unwrap_or_default()),
                (
                    "container_root_mount",
                    contained.slash_root.unwrap_or_default(),
                ),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}
