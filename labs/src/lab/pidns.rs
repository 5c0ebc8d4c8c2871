//! Lab 1: processes and the PID namespace. The student's C program clones a child into a new
//! PID namespace; the checker compiles and runs it, and looks at the child from the host.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use isolab_runtime::host::NamespaceKind;

use crate::answers::{self, Answers};
use crate::error::LabError;
use crate::observe::{self, Conversation};
use crate::{Lab, Need, StepResult, Workspace};

pub static LAB: PidNamespaceLab = PidNamespaceLab;

const SOURCE: &str = "pidns.c";
const BINARY: &str = "pidns";
const STARTER: &str = include_str!("../../content/1/pidns.c");
const REFERENCE: &str = include_str!("../../content/1/solution.c");
const ANSWERS: &str = include_str!("../../content/1/answers.txt");

#[derive(Debug)]
pub struct PidNamespaceLab;

/// What the checker saw of one run of the student's program.
#[derive(Debug, Default)]
struct Run {
    /// The child's own getpid(), as it printed it.
    printed_pid: Option<String>,
    /// How many processes the child counted in its /proc.
    printed_procs: Option<String>,
    /// The child, seen from the host.
    child: Option<i32>,
    child_ns: Option<u64>,
    /// The NSpid line of the child's /proc/<pid>/status: its pid in each namespace.
    nspid: Option<String>,
    /// The processes in the child's PID namespace, counted from the host.
    in_child_ns: usize,
}

impl Lab for PidNamespaceLab {
    lab_number!(1, solution: REFERENCE);

    fn minutes(&self) -> u32 {
        40
    }

    fn needs(&self) -> &'static [Need] {
        &[
            Need::Root,
            Need::Namespace(NamespaceKind::Pid),
            Need::Namespace(NamespaceKind::Mnt),
            Need::Command("gcc"),
            Need::Command("unshare"),
        ]
    }

    fn start(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(SOURCE, STARTER)?;
        ws.write(answers::FILE, ANSWERS)
    }

    fn check(&self, ws: &Workspace) -> Result<Vec<StepResult>, LabError> {
        let build = compile(ws)?;
        let mut steps = vec![StepResult::judge(
            "build pidns.c",
            build.status.success(),
            format!(
                "gcc: {}{}",
                build.status,
                tail(&String::from_utf8_lossy(&build.stderr))
            ),
            "fix the compiler errors shown; build it yourself with `gcc -Wall -o pidns pidns.c`",
        )];
        let run = if build.status.success() {
            observe_run(&ws.path(BINARY))?
        } else {
            Run::default()
        };
        steps.extend(grade(&run));
        let answers = Answers::load(ws)?;
        steps.push(answers.grade(
            "pid_seen_by_child",
            run.printed_pid.as_deref(),
            answers::same_number,
        ));
        let counted = (run.in_child_ns > 0).then(|| run.in_child_ns.to_string());
        steps.push(answers.grade(
            "processes_visible",
            counted.as_deref(),
            answers::same_number,
        ));
        Ok(steps)
    }

    fn reset(&self, _ws: &Workspace) -> Result<(), LabError> {
        // The checker ends every program it runs; what the student ran by hand ended with
        // their shell. Nothing lives outside the workspace.
        Ok(())
    }

    fn apply_solution(&self, ws: &Workspace) -> Result<(), LabError> {
        ws.write(SOURCE, REFERENCE)?;
        let run = observe_run_built(ws)?;
        let filled = answers::fill(
            ANSWERS,
            &[
                ("pid_seen_by_child", run.printed_pid.unwrap_or_default()),
                ("processes_visible", run.in_child_ns.to_string()),
            ],
        );
        ws.write(answers::FILE, &filled)
    }
}

fn compile(ws: &Workspace) -> Result<std::process::Output, LabError> {
    observe::output(
        Command::new("gcc")
            .args(["-Wall", "-O1", "-o"])
            .arg(ws.path(BINARY))
            .arg(ws.path(SOURCE)),
    )
}

/// Builds the workspace's program and observes one run of it.
fn observe_run_built(ws: &Workspace) -> Result<Run, LabError> {
    let build = compile(ws)?;
    if !build.status.success() {
        return Err(LabError::Command {
            command: format!("gcc {}", ws.path(SOURCE).display()),
            detail: String::from_utf8_lossy(&build.stderr).into_owned(),
        });
    }
    observe_run(&ws.path(BINARY))
}

fn observe_run(binary: &Path) -> Result<Run, LabError> {
    let program = Conversation::start(&mut Command::new(binary))?;
    let printed = program.wait_for(&["pid", "procs"], Duration::from_secs(5));
    // The child blocks on its input until the program finishes, so it is still there.
    let child = observe::children_of(program.pid()).into_iter().next();
    let child_ns = child.and_then(|c| observe::ns_inode(Path::new(&format!("/proc/{c}/ns/pid"))));
    let run = Run {
        printed_pid: printed[0].clone(),
        printed_procs: printed[1].clone(),
        child,
        child_ns,
        nspid: child.and_then(|c| observe::status_field(c, "NSpid")),
        in_child_ns: child_ns.map_or(0, |ns| observe::processes_in_ns("pid", ns).len()),
    };
    program.finish(Duration::from_secs(3));
    Ok(run)
}

fn grade(run: &Run) -> Vec<StepResult> {
    let host_ns = observe::ns_inode(Path::new("/proc/self/ns/pid"));
    let Some(child) = run.child else {
        return vec![StepResult::fail(
            "run: a child process",
            format!(
                "printed pid={:?} procs={:?}; no child process of the program was found",
                run.printed_pid, run.printed_procs
            ),
            "the program must clone() a child that prints `pid=` and `procs=` lines and then waits for its input to close, as the starter does",
        )];
    };
    let new_ns = run.child_ns.is_some() && run.child_ns != host_ns;
    let nspid_last = run
        .nspid
        .as_deref()
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_owned);
    let is_one = run.printed_pid.as_deref() == Some("1") && nspid_last.as_deref() == Some("1");
    let printed_procs: Option<usize> = run.printed_procs.as_deref().and_then(|p| p.parse().ok());
    let host_procs = observe::pids().len();
    vec![
        StepResult::judge(
            "new PID namespace",
            new_ns,
            format!(
                "host /proc/self/ns/pid inode {}; child {child}'s /proc/{child}/ns/pid inode {}",
                observe::show_inode(host_ns),
                observe::show_inode(run.child_ns)
            ),
            "pass CLONE_NEWPID in clone()'s flags: without it the child shares the host's PID namespace",
        ),
        StepResult::judge(
            "child is PID 1",
            is_one,
            format!(
                "the child printed pid={}; the host's /proc/{child}/status says NSpid: {}",
                run.printed_pid.as_deref().unwrap_or("(nothing)"),
                run.nspid.as_deref().unwrap_or("(no line)")
            ),
            "the first process of a new PID namespace is its PID 1; check your clone() flags and that the child prints getpid()",
        ),
        StepResult::judge(
            "host processes hidden",
            printed_procs == Some(run.in_child_ns) && run.in_child_ns < host_procs,
            format!(
                "the child counted {} processes in its /proc; its namespace holds {}; the host sees {host_procs}",
                run.printed_procs.as_deref().unwrap_or("(nothing)"),
                run.in_child_ns
            ),
            "/proc still shows the host's PID namespace: in the child, make mounts private (MS_REC|MS_PRIVATE on /) and mount a new proc on /proc; clone with CLONE_NEWNS so this stays in the child",
        ),
    ]
}

/// The last lines of compiler output, enough to show the first error.
pub(crate) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(6)..];
    if shown.is_empty() {
        String::new()
    } else {
        format!("\n{}", shown.join("\n"))
    }
}
