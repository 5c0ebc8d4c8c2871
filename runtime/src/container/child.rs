//! The container's init between clone and execve.
//!
//! Everything it needs was prepared by the parent (CStrings, pointer arrays, the BPF
//! programs, the capability lists), so it mostly makes system calls. On failure it writes
//! one report to the error pipe and exits; on success execve closes that pipe (O_CLOEXEC),
//! which the parent reads as "started".

use std::ffi::{CStr, CString};
use std::fmt::{self, Write as _};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use seccompiler::BpfProgram;

use super::capabilities::CapabilityPlan;
use super::extra::Rlimit;
use super::rootfs::{self, Plan};
use super::sys::{Linux, Sys};
use crate::explain::{Explain, StackBuf};

/// What the child reports failed; the parent turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    Setup = 0,
    Exec = 1,
}

/// The largest report; one write of at most PIPE_BUF bytes is atomic.
pub(crate) const REPORT_MAX: usize = 1024;

/// Everything the container's init does, prepared before the clone.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub(crate) explain: Explain,
    pub(crate) mounts: Plan,
    pub(crate) rootfs: CString,
    /// Empty: the UTS namespace is the caller's, and its name is left alone.
    pub(crate) hostname: String,
    /// Namespaces to enter (descriptor, clone flag) before anything else.
    pub(crate) join: Vec<(RawFd, libc::c_int)>,
    /// /proc/sys files and their values, written after pivot_root.
    pub(crate) sysctls: Vec<(CString, CString)>,
    pub(crate) userns: bool,
    pub(crate) own_netns: bool,
    /// The cgroup files the child writes "0" to, to move itself in after the parent's
    /// go-ahead; empty when the parent (or clone3) places it.
    pub(crate) join_cgroups: Vec<CString>,
    /// `--tty`: the init opens its terminal from the container's /dev/ptmx after
    /// pivot_root and sends the master back.
    pub(crate) console: Option<super::tty::ConsolePlan>,
    /// The child's end of the sync pipe.
    pub(crate) sync_rx: OwnedFd,
    /// The parent's ends, which the child's copy of the descriptor table must not keep open.
    pub(crate) parent_ends: Vec<RawFd>,
    pub(crate) process: ProcessPlan,
}

/// What a process does from dropping privileges to execve: the same for a container's init
/// and for a process `isolab exec` starts in a running container.
#[derive(Debug)]
pub(crate) struct ProcessPlan {
    pub(crate) explain: Explain,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) workdir: CString,
    /// Where to look for the command, in order (one entry when it contains a `/`).
    pub(crate) candidates: Vec<CString>,
    pub(crate) argv: Vec<CString>,
    pub(crate) env: Vec<CString>,
    /// `None` when privileged: every capability stays.
    pub(crate) capabilities: Option<CapabilityPlan>,
    pub(crate) seccomp: Vec<BpfProgram>,
    /// The write end of the error pipe (close-on-exec).
    pub(crate) report_tx: OwnedFd,
    pub(crate) rlimits: Vec<Rlimit>,
    pub(crate) groups: Vec<Gid>,
    pub(crate) umask: Option<u32>,
    /// The OCI created state: where the init waits to be started.
    pub(crate) barrier: Option<Barrier>,
    /// Its starter exits right after the execve: no parent-death signal from then on.
    pub(crate) detached: bool,
}

/// The init's side of `isolab-oci create` / `start`: tell the creator it is ready, then
/// wait until `start` opens the FIFO.
#[derive(Debug)]
pub(crate) struct Barrier {
    /// Written once everything but seccomp and execve is done.
    pub(crate) ready_tx: OwnedFd,
    /// `/proc/self/fd/N` of an O_PATH descriptor of the FIFO, opened before the clone.
    pub(crate) fifo: CString,
}

/// Null-terminated pointer array for execve, into strings that outlive it.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The pointer arrays execve takes, built before the clone.
#[derive(Debug)]
pub(crate) struct ExecArrays {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ProcessPlan {
    pub(crate) fn exec_arrays(&self) -> ExecArrays {
        ExecArrays {
            argv: pointers(&self.argv),
            envp: pointers(&self.env),
        }
    }
}

/// Writes the report (stage, errno, message) to the parent and exits.
pub(crate) fn fail(plan: &ProcessPlan, stage: Stage, errno: Errno, what: fmt::Arguments<'_>) -> ! {
    let mut report = StackBuf::<REPORT_MAX>::new();
    // A message cut short by the buffer still reports stage and errno.
    let _ = write!(
        report,
        "{}{:04x}{what}",
        char::from(stage as u8),
        errno as i32
    );
    report.write_to(plan.report_tx.as_raw_fd());
    // Docker's codes, as RunError::exit_code gives them to whoever reads the report.
    let code = match (stage, errno) {
        (Stage::Exec, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => 127,
        (Stage::Exec, _) => 126,
        (Stage::Setup, _) => 125,
    };
    // SAFETY: _exit ends the process without running destructors or atexit handlers,
    // which belong to the parent's copy of this state.
    unsafe { libc::_exit(code) }
}

/// Splits a report into (stage, errno, message); the errno is four hex digits.
pub(crate) fn parse_report(bytes: &[u8]) -> Option<(Stage, Errno, String)> {
    let stage = match *bytes.first()? {
        0 => Stage::Setup,
        1 => Stage::Exec,
        _ => return None,
    };
    let errno = std::str::from_utf8(bytes.get(1..5)?).ok()?;
    let errno = Errno::from_raw(i32::from_str_radix(errno, 16).ok()?);
    let message = String::from_utf8_lossy(&bytes[5..]).into_owned();
    Some((stage, errno, message))
}

macro_rules! check {
    ($plan:expr, $result:expr, $($what:tt)+) => {
        if let Err(errno) = $result {
            fail($plan, Stage::Setup, errno, format_args!($($what)+));
        }
    };
}

/// Waits for the parent's go-ahead; EOF means the parent gave up, and the child leaves.
fn wait_for_parent(plan: &ChildPlan) {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&plan.sync_rx, &mut byte) {
            Ok(1) => return,
            Err(Errno::EINTR) => continue,
            // SAFETY: see fail(); nothing of this copy of the process needs cleaning up.
            _ => unsafe { libc::_exit(125) },
        }
    }
}

/// The container init's whole life: never returns.
pub(crate) fn run(plan: &ChildPlan, arrays: &ExecArrays) -> ! {
    let x = &plan.explain;
    let p = &plan.process;
    x.phase("namespaces");
    let sys = Linux { explain: *x };
    for &fd in &plan.parent_ends {
        // SAFETY: closes this process's copies of the parent's pipe ends; the OwnedFds
        // naming them live in the parent's copy of memory and are never dropped here.
        unsafe { libc::close(fd) };
    }
    guard_until_exec(p);
    for &(fd, flag) in &plan.join {
        x.step(format_args!(
            "setns({fd}, {})",
            super::sys::CloneFlags(flag as u64)
        ));
        // SAFETY: setns takes a descriptor (the parent's, open in this copy until execve)
        // and a flag; this process is single-threaded.
        let joined = Errno::result(unsafe { libc::setns(fd, flag) });
        check!(p, joined, "entering the namespace of descriptor {fd}");
    }

    if plan.userns {
        wait_for_parent(plan);
        x.step(format_args!(
            "setresgid(0, 0, 0); setresuid(0, 0, 0)  (become the namespace's root)"
        ));
        check!(
            p,
            become_user(0, 0, &[]),
            "becoming root of the user namespace"
        );
    }

    if let Err((op, errno)) = rootfs::apply(&sys, &plan.mounts.prepare) {
        fail(p, Stage::Setup, errno, format_args!("{op}"));
    }
    if !plan.hostname.is_empty() {
        x.step(format_args!("sethostname({:?})", plan.hostname));
        check!(
            p,
            nix::unistd::sethostname(&plan.hostname),
            "setting the hostname"
        );
    }
    if plan.own_netns {
        x.step(format_args!(
            "socket(AF_INET, SOCK_DGRAM); ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP|IFF_RUNNING)"
        ));
        check!(p, loopback_up(), "bringing up the loopback interface");
    }

    x.phase("mounts");
    // The parent has created the cgroups (and put this process into them, unless it moves
    // itself); a namespace created now has that cgroup as its root, so the container sees
    // itself at "/".
    wait_for_parent(plan);
    for file in &plan.join_cgroups {
        x.step(format_args!(
            "write {file:?} = \"0\"  (moves itself: no threadgroup lock, no RCU grace period)"
        ));
        check!(p, join_cgroup(file), "joining the cgroup of {file:?}");
    }
    x.step(format_args!("unshare(CLONE_NEWCGROUP)"));
    check!(
        p,
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP),
        "creating the cgroup namespace"
    );
    if let Err((op, errno)) = rootfs::apply(&sys, &plan.mounts.cgroup_view) {
        fail(p, Stage::Setup, errno, format_args!("{op}"));
    }
    x.phase("cgroup");

    // pivot_root(".", ".") stacks the old root on the new one; detaching "." then removes it,
    // with no put_old directory to create in (or later delete from) the rootfs.
    check!(p, sys.chdir(&plan.rootfs), "entering {:?}", plan.rootfs);
    check!(
        p,
        sys.pivot_root(c".", c"."),
        "pivot_root into {:?}",
        plan.rootfs
    );
    check!(p, sys.umount_detach(c"."), "detaching the old root");
    check!(p, sys.chdir(c"/"), "entering the new root");
    if let Some(console) = &plan.console {
        if let Err((what, errno)) = super::tty::open_in_init(console, x) {
            fail(p, Stage::Setup, errno, format_args!("{what}"));
        }
    }
    for (file, value) in &plan.sysctls {
        x.step(format_args!("write {file:?} = {value:?}"));
        check!(p, write_file(file, value), "writing {value:?} to {file:?}");
    }
    if let Err((op, errno)) = rootfs::apply(&sys, &plan.mounts.finish) {
        fail(p, Stage::Setup, errno, format_args!("{op}"));
    }
    x.phase("mounts");
    confine_and_exec(p, arrays)
}

/// Moves the calling thread (this whole single-threaded process) into the cgroup of `file`.
fn join_cgroup(file: &CStr) -> Result<(), Errno> {
    write_file(file, c"0")
}

fn write_file(file: &CStr, value: &CStr) -> Result<(), Errno> {
    let fd = nix::fcntl::open(
        file,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::write(&fd, value.to_bytes()).map(drop)
}

/// The OCI created state: no parent-death signal any more (the creator exits now and the
/// init lives on), "ready" to the creator, then wait for `start` to open the FIFO.
fn wait_for_start(p: &ProcessPlan, barrier: &Barrier) {
    let x = &p.explain;
    x.step(format_args!(
        "prctl(PR_SET_PDEATHSIG, 0); write(ready); open({:?}, O_WRONLY)  (waits for start)",
        barrier.fifo
    ));
    check!(
        p,
        nix::sys::prctl::set_pdeathsig(None),
        "clearing the parent-death signal"
    );
    check!(
        p,
        nix::unistd::write(&barrier.ready_tx, b"r").map(drop),
        "telling the creator the container is ready"
    );
    let fifo = nix::fcntl::open(
        barrier.fifo.as_c_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    let fifo = match fifo {
        Ok(fd) => fd,
        Err(e) => fail(p, Stage::Setup, e, format_args!("waiting for start")),
    };
    check!(
        p,
        nix::unistd::write(&fifo, b"0").map(drop),
        "answering start"
    );
    // The creator, which reads the error pipe, is gone by now; `start` reads the FIFO on
    // to its end instead. So the FIFO becomes the error pipe: a failure from here to
    // execve (seccomp, the command) is reported to `start`, and execve closes it
    // (O_CLOEXEC), which `start` reads as "runs".
    // SAFETY: dup3 onto a descriptor number this process owns (the error pipe's), which
    // it atomically replaces; no memory is involved.
    let moved = Errno::result(unsafe {
        libc::dup3(fifo.as_raw_fd(), p.report_tx.as_raw_fd(), libc::O_CLOEXEC)
    });
    check!(p, moved.map(drop), "reporting to start through the FIFO");
}

/// Parent-death signal and non-dumpable, first thing in a new process of the container.
pub(crate) fn guard_until_exec(p: &ProcessPlan) {
    p.explain.step(format_args!(
        "prctl(PR_SET_PDEATHSIG, SIGKILL); prctl(PR_SET_DUMPABLE, 0)  (until execve)"
    ));
    check!(
        p,
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
        "setting the parent-death signal"
    );
    // Non-dumpable until execve: /proc/<pid>/exe and /proc/<pid>/mem of this copy of the
    // isolab binary cannot be opened by anything in the container (CVE-2019-5736 class).
    // execve of the command resets it.
    check!(
        p,
        nix::sys::prctl::set_dumpable(false),
        "making the process non-dumpable"
    );
}

/// From root with every capability inside the container's namespaces to the command:
/// bounding set, user, capability sets, working directory, no_new_privs, descriptors,
/// seccomp, execve. Never returns.
pub(crate) fn confine_and_exec(p: &ProcessPlan, arrays: &ExecArrays) -> ! {
    let x = &p.explain;
    let sys = Linux { explain: *x };
    for limit in &p.rlimits {
        x.step(format_args!(
            "setrlimit({}, {}, {})",
            limit.name, limit.soft, limit.hard
        ));
        let rlim = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: setrlimit reads one rlimit, which lives across the call.
        let set = Errno::result(unsafe { libc::setrlimit(limit.resource, &rlim) });
        check!(
            p,
            set,
            "setting {} to {}:{} (the host allows {})",
            limit.name,
            limit.soft,
            limit.hard,
            super::extra::host_limit(limit.resource)
        );
    }
    if let Some(mask) = p.umask {
        // SAFETY: umask only sets the process's file creation mask.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    if let Some(caps) = &p.capabilities {
        if let Err(e) = caps.limit_bounding(x) {
            fail(p, Stage::Setup, Errno::last(), format_args!("{e}"));
        }
    }
    x.step(format_args!(
        "setgroups(0, NULL); setresgid({g}, {g}, {g}); setresuid({u}, {u}, {u})",
        g = p.gid,
        u = p.uid
    ));
    check!(
        p,
        become_user(p.uid, p.gid, &p.groups),
        "switching to user {}:{}",
        p.uid,
        p.gid
    );
    if let Some(caps) = &p.capabilities {
        if let Err(e) = caps.limit_sets(p.uid == 0, x) {
            fail(p, Stage::Setup, Errno::last(), format_args!("{e}"));
        }
    }
    // The working directory is resolved inside the new root, after every mount, so no
    // descriptor or path of the host can be the container's cwd (CVE-2024-21626 class).
    check!(
        p,
        sys.chdir(&p.workdir),
        "entering the working directory {:?}",
        p.workdir
    );

    if p.capabilities.is_some() {
        x.step(format_args!("prctl(PR_SET_NO_NEW_PRIVS, 1)"));
        check!(
            p,
            nix::sys::prctl::set_no_new_privs(),
            "setting no_new_privs"
        );
    }
    // Mark every inherited descriptor above stderr close-on-exec (the error pipe too, whose
    // closing tells the parent that execve succeeded).
    x.step(format_args!("close_range(3, ~0U, CLOSE_RANGE_CLOEXEC)"));
    // SAFETY: close_range only changes descriptor flags; no memory is involved.
    let closed = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    check!(
        p,
        Errno::result(closed),
        "marking descriptors close-on-exec"
    );
    if let Some(barrier) = &p.barrier {
        wait_for_start(p, barrier);
    }
    if p.detached {
        x.step(format_args!("prctl(PR_SET_PDEATHSIG, 0)"));
        check!(
            p,
            nix::sys::prctl::set_pdeathsig(None),
            "clearing the parent-death signal"
        );
    }
    for (i, program) in p.seccomp.iter().enumerate() {
        x.step(format_args!(
            "seccomp(SECCOMP_SET_MODE_FILTER, 0, {{{} BPF instructions}})  (filter {} of {})",
            program.len(),
            i + 1,
            p.seccomp.len()
        ));
        if let Err(e) = seccompiler::apply_filter(program) {
            fail(
                p,
                Stage::Setup,
                Errno::last(),
                format_args!("loading the seccomp filter: {e}"),
            );
        }
    }
    x.phase("confine");
    exec(p, arrays)
}

fn become_user(uid: u32, gid: u32, groups: &[Gid]) -> nix::Result<()> {
    nix::unistd::setgroups(groups)?;
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)
}

/// Tries each candidate path as execvp does: a missing file moves on, a permission error is
/// remembered (and wins over "not found"), anything else is the answer.
fn exec(plan: &ProcessPlan, arrays: &ExecArrays) -> ! {
    let mut denied: Option<&CStr> = None;
    let mut last = Errno::ENOENT;
    for candidate in &plan.candidates {
        plan.explain.step(format_args!(
            "execve({candidate:?}, argv[{}], envp[{}])",
            plan.argv.len(),
            plan.env.len()
        ));
        // SAFETY: both arrays are null-terminated and point into CStrings of `plan`,
        // which outlive the call.
        unsafe {
            libc::execve(
                candidate.as_ptr(),
                arrays.argv.as_ptr(),
                arrays.envp.as_ptr(),
            )
        };
        last = Errno::last();
        match last {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP => {}
            Errno::EACCES => {
                denied.get_or_insert(candidate);
            }
            _ => fail(
                plan,
                Stage::Exec,
                last,
                format_args!("{}", candidate.to_string_lossy()),
            ),
        }
    }
    let command = plan.argv[0].to_string_lossy();
    match denied {
        Some(path) => fail(
            plan,
            Stage::Exec,
            Errno::EACCES,
            format_args!("{}", path.to_string_lossy()),
        ),
        None => fail(plan, Stage::Exec, last, format_args!("{command}")),
    }
}

fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads an ifreq, and `req` is one that lives across the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let mut b = StackBuf::<64>::new();
        write!(
            b,
            "{}{:04x}/bin/x",
            char::from(Stage::Exec as u8),
            Errno::EACCES as i32
        )
        .unwrap();
        assert_eq!(
            parse_report(b.as_bytes()),
            Some((Stage::Exec, Errno::EACCES, "/bin/x".to_string()))
        );
        assert_eq!(parse_report(b""), None);
    }

    #[test]
    fn pointer_arrays_end_with_null() {
        let strings = [c"a".to_owned(), c"b".to_owned()];
        let p = pointers(&strings);
        assert_eq!(p.len(), 3);
        assert!(p[2].is_null());
    }
}
