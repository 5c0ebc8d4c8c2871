//! What the container labs (2, 9, 10, 14) share: small static C programs the checker builds
//! from the lab's own (or the student's) source and runs inside containers, and the
//! containers a student started from a workspace, which reset must end.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use std::os::unix::fs::MetadataExt;

use isolab_runtime::container::lifecycle;
use isolab_runtime::container::state::State;

use crate::error::LabError;
use crate::observe;

/// `gcc -static`: the programs run in root filesystems that hold no C library.
pub fn build_static(source: &Path, binary: &Path) -> Result<Output, LabError> {
    observe::output(
        Command::new("gcc")
            .args(["-Wall", "-O1", "-static", "-o"])
            .arg(binary)
            .arg(source),
    )
}

/// Builds a program the lab itself provides (or a reference solution): failing is an error.
pub fn build_static_or_fail(source: &Path, binary: &Path) -> Result<(), LabError> {
    let out = build_static(source, binary)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: format!("gcc -static {}", source.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The container's init under a foreground `isolab run` whose pid is `run`: its child.
pub fn init_of(run: i32, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(&init) = observe::children_of(run).first() {
            return Some(init);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The container records (`all`: exited ones too) whose root is at or below `dir`.
pub fn under(dir: &Path, all: bool) -> Result<Vec<State>, LabError> {
    let states = lifecycle::list(all).map_err(|e| runtime_error("isolab ps", &e))?;
    Ok(states.into_iter().filter(|s| belongs(s, dir)).collect())
}

/// A record keeps the root as it was typed, relative to a working directory it does not
/// record; so a relative one belongs to `dir` when it names a store's container directory
/// of this very name in `dir`, or when the running init's root is that directory in `dir`.
fn belongs(state: &State, dir: &Path) -> bool {
    if state.rootfs.is_absolute() {
        return state.rootfs.starts_with(dir);
    }
    let candidate = dir.join(&state.rootfs);
    let identity = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let own_upper = candidate.file_name() == Some(std::ffi::OsStr::new(&state.name))
        && candidate.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("containers"))
        && candidate.is_dir();
    own_upper
        || (state.pid > 0
            && identity(&candidate).is_some()
            && identity(Path::new(&format!("/proc/{}/root", state.pid))) == identity(&candidate))
}

/// What a container lab's reset does first: ends what the student left running from the
/// workspace `dir`, then removes the containers whose root is in it.
pub fn clear_under(dir: &Path) -> Result<(), LabError> {
    end_processes_under(dir)?;
    remove_under(dir)?;
    Ok(())
}

/// Removes every container record (running or not) whose root is at or below `dir`, killing
/// the running ones; their upper layers go with them. Returns their names.
fn remove_under(dir: &Path) -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    for state in under(dir, true)? {
        lifecycle::remove(&state.name, true)
            .map_err(|e| runtime_error(&format!("isolab rm -f {}", state.name), &e))?;
        removed.push(state.name);
    }
    Ok(removed)
}

/// The runtime's errors, as the command a student would have typed.
pub fn runtime_error(command: &str, error: &dyn std::fmt::Display) -> LabError {
    LabError::Command {
        command: command.to_owned(),
        detail: error.to_string(),
    }
}

/// `key=value` lines of a program's output.
pub fn values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The value of `key` in `key=value` lines.
pub fn value<'a>(values: &'a [(String, String)], key: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Runs a program that prints `key=value` lines and then waits for its input to close; while
/// it waits, `look` inspects it from the host, given the pid of the process started (for a
/// foreground `isolab run`, the container's init is its child: see [`init_of`]).
pub fn converse<T>(
    command: &mut Command,
    keys: &[&str],
    look: impl FnOnce(i32) -> T,
) -> Result<(Vec<Option<String>>, T), LabError> {
    let program = observe::Conversation::start(command)?;
    let values = program.wait_for(keys, Duration::from_secs(15));
    let seen = look(program.pid());
    program.finish(Duration::from_secs(5));
    Ok((values, seen))
}

/// Ends what a student may have left running from the workspace `dir`: programs whose
/// executable or root directory is in it (a chrooted or escaped program, a lab's service),
/// and foreground `isolab run`s of a root in it. Never a shell that merely works in the
/// directory.
fn end_processes_under(dir: &Path) -> Result<(), LabError> {
    let isolab = std::fs::canonicalize(crate::rootfs::isolab()?).ok();
    let me = i32::try_from(std::process::id()).expect("pids fit in i32");
    let link = |pid: i32, name: &str| std::fs::read_link(format!("/proc/{pid}/{name}")).ok();
    let from_dir = |pid: i32| {
        ["exe", "root"]
            .iter()
            .any(|l| link(pid, l).is_some_and(|p| p.starts_with(dir)))
    };
    let runs_from_dir = |pid: i32| {
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = link(pid, "cwd").unwrap_or_default();
        link(pid, "exe") == isolab
            && argv.get(1).is_some_and(|a| a == "run")
            && argv.windows(2).any(|w| {
                ["--rootfs", "--store"].contains(&w[0].as_str()) && cwd.join(&w[1]).starts_with(dir)
            })
    };
    let pids: Vec<i32> = observe::pids().into_iter().filter(|&p| p != me).collect();
    observe::kill_all(
        &pids
            .iter()
            .copied()
            .filter(|&p| from_dir(p))
            .collect::<Vec<_>>(),
    );
    // A run whose container ends removes the container's cgroups and mounts itself; killed,
    // it could not. So its container's init goes first.
    let runs: Vec<i32> = pids.into_iter().filter(|&p| runs_from_dir(p)).collect();
    for &run in &runs {
        observe::kill_all(&observe::children_of(run));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until each has exited; a zombie has, and waits only for its parent.
    let alive = |pid: i32| observe::status_field(pid, "State").is_some_and(|s| !s.starts_with('Z'));
    while runs.iter().any(|&run| alive(run)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    observe::kill_all(&runs);
    Ok(())
}
