//! `isolab exec`: a new process in a running container.
//!
//! The caller joins the container's cgroups, makes itself non-dumpable, enters every
//! namespace of the container's init that differs from its own with one setns(2) on a
//! pidfd (so a recycled pid can never be entered), then forks: only a child is in the pid
//! and time namespaces. The child hardens itself exactly as the container's init did
//! (bounding set, user, capabilities, working directory inside the root, no_new_privs,
//! descriptors above 2 closed on exec, seccomp) and execs the command; the caller forwards
//! signals to it and returns its status.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

use super::child;
use super::extra::ProcessExtra;
use super::lifecycle::{lookup, open_running};
use super::state::ProcessDefaults;
use super::{Outcome, RunError, User, sys, sys_err};
use crate::cgroups::{self, CgroupManager};
use crate::explain::Explain;

/// What to run, and what to change from the container's own process settings.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub name: String,
    pub command: Vec<String>,
    /// `KEY=VAL` pairs that override the container's environment.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<User>,
}

/// The namespaces, by clone flag and /proc name, that exec joins; user first, as setns
/// applies them in this order and the others are owned by it.
const NAMESPACES: [(libc::c_int, &str); 8] = [
    (libc::CLONE_NEWUSER, "user"),
    (libc::CLONE_NEWNS, "mnt"),
    (libc::CLONE_NEWPID, "pid"),
    (libc::CLONE_NEWUTS, "uts"),
    (libc::CLONE_NEWIPC, "ipc"),
    (libc::CLONE_NEWNET, "net"),
    (libc::CLONE_NEWCGROUP, "cgroup"),
    (libc::CLONE_NEWTIME, "time"),
];

/// The flags of the namespaces `pid` is in that this process is not (joining one's own
/// user namespace is an error; the others would be no-ops).
pub(crate) fn differing_namespaces(pid: i32) -> libc::c_int {
    NAMESPACES
        .iter()
        .filter(|(_, name)| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}"));
            let ours = std::fs::read_link(format!("/proc/self/ns/{name}"));
            matches!((theirs, ours), (Ok(t), Ok(o)) if t != o)
        })
        .fold(0, |flags, (flag, _)| flags | flag)
}

/// Runs `config.command` in the container and returns how it ended.
pub fn exec(config: &ExecConfig, explain: Explain) -> Result<Outcome, RunError> {
    let state = lookup(&config.name)?;
    let pidfd = open_running(&state)?;
    let mut process = state.process.clone();
    for (key, value) in &config.env {
        match process.env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => process.env.push((key.clone(), value.clone())),
        }
    }
    if let Some(workdir) = &config.workdir {
        process.workdir = workdir.clone();
    }
    if let Some(user) = config.user {
        (process.uid, process.gid) = (user.uid, user.gid);
    }
    let request = ExecRequest {
        process,
        extra: ProcessExtra::default(),
        command: config.command.clone(),
        tty: false,
        detach: false,
    };
    let cgroups = cgroups::existing(&config.name)?;
    spawn(&pidfd, state.pid, cgroups, &request, explain)?.wait()
}

/// A process for [`spawn`], fully described (what `isolab-oci exec` reads from a process
/// file).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub process: ProcessDefaults,
    pub extra: ProcessExtra,
    pub command: Vec<String>,
    /// A new pty is its stdio; its master is in [`Spawned::console`].
    pub tty: bool,
    /// The caller will not wait: the process keeps running after the caller exits.
    pub detach: bool,
}

/// A process started by [`spawn`], past its execve.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub console: Option<OwnedFd>,
    cgroups: Box<dyn CgroupManager>,
    explain: Explain,
}

impl Spawned {
    /// Waits for the process (relaying its terminal, if any) and tells how it ended.
    pub fn wait(mut self) -> Result<Outcome, RunError> {
        if let Some(master) = self.console.take() {
            super::tty::relay(&master)?;
        }
        let status = super::wait_for(self.pid, &self.explain)?;
        super::outcome(status, &*self.cgroups)
    }
}

/// Starts `request` in the container whose init is `pidfd` (host pid `pid`) and whose
/// cgroups `cgroups` manages; returns once it has exec'd. This process joins the
/// container's cgroups and namespaces on the way.
pub fn spawn(
    pidfd: &OwnedFd,
    pid: i32,
    cgroups: Box<dyn CgroupManager>,
    request: &ExecRequest,
    explain: Explain,
) -> Result<Spawned, RunError> {
    // Joined from the host's view of the cgroup tree, before the mount and cgroup
    // namespaces hide it; the same manager reads the OOM count at the end.
    let (report_rx, report_tx) = sys::pipe().map_err(sys_err("creating the error pipe"))?;
    let mut plan = super::process_plan(
        &request.process,
        &request.extra,
        None,
        &request.command,
        cgroups.limits_devices(),
        report_tx,
        explain.as_actor("exec  "),
    )?;
    plan.detached = request.detach;
    let arrays = plan.exec_arrays();
    let flags = differing_namespaces(pid);

    // Before anything of the container can see this process: not dumpable (its
    // /proc/<pid>/exe and memory cannot be opened from inside; the child inherits it).
    explain.step(format_args!("prctl(PR_SET_DUMPABLE, 0)"));
    nix::sys::prctl::set_dumpable(false).map_err(sys_err("making isolab non-dumpable"))?;
    cgroups.join_self(&explain)?;
    explain.step(format_args!(
        "setns(pidfd of {}, {})",
        pid,
        sys::CloneFlags(flags as u64)
    ));
    // SAFETY: setns takes a descriptor and flags; this process is single-threaded, as
    // joining a mount or user namespace requires.
    let ret = unsafe { libc::setns(pidfd.as_raw_fd(), flags) };
    Errno::result(ret).map_err(sys_err("entering the container's namespaces"))?;
    // Opened from the container's /dev/ptmx, so the terminal belongs to its devpts and
    // its name (/dev/pts/N) means the same inside.
    let pty = request
        .tty
        .then(|| super::tty::open(&explain))
        .transpose()?;

    explain.step(format_args!("fork()  (into the pid and time namespaces)"));
    // SAFETY: single-threaded, so the child's copy holds no lock of a vanished thread.
    let child = match unsafe { nix::unistd::fork() }.map_err(sys_err("fork"))? {
        ForkResult::Child => {
            drop(report_rx);
            child::guard_until_exec(&plan);
            if let Some(pty) = &pty {
                let console = super::tty::become_console(pty.slave.as_fd());
                if let Err(errno) = console {
                    child::fail(
                        &plan,
                        child::Stage::Setup,
                        errno,
                        format_args!("making the pty the console"),
                    );
                }
            }
            child::confine_and_exec(&plan, &arrays)
        }
        ForkResult::Parent { child } => child,
    };
    // Closes this process's write end: EOF on the error pipe now means exec or death.
    drop(plan);
    if !request.detach {
        super::forward_signals_to(child)?;
    }
    if let Some(error) = super::child_report(&report_rx)? {
        let _ = super::wait_for(child, &explain);
        return Err(error);
    }
    Ok(Spawned {
        pid: child,
        // Only the process holds the slave now, so the master reads EIO once it has ended.
        console: pty.map(|p| p.master),
        cgroups,
        explain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_shares_every_namespace_with_itself() {
        assert_eq!(differing_namespaces(std::process::id() as i32), 0);
    }
}
