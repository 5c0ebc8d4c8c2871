//! Containers that outlive the command that started them, and the commands that act on a
//! container by name: detach, supervise, lookup and list, kill, stop, rm, stats, gc.
//!
//! A detached start forks: the child (the future supervisor) starts the container with its
//! output going to the record's log file, writes the record and tells the parent, which
//! then exits. The supervisor then execs `isolab supervise NAME` — a fresh, small image of
//! the same binary that only waits for the container's init, records how it ended and
//! removes its cgroups; the container's init has SIGKILL as its parent-death signal, so a
//! killed supervisor takes the container with it and `gc` removes what is left.
//!
//! Foreground containers have no record; they are found through their cgroup
//! `isolab/<name>`, whose init is the process that is pid 1 in its own pid namespace.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

use super::state::{self, Locked, State, StateError, Status, Store};
use super::{ContainerConfig, Outcome, RunError, sys, sys_err};
use crate::cgroups::{self, Stats};
use crate::explain::Explain;

/// How long `rm -f`, `stop` and `gc` wait for a SIGKILLed container to be recorded as ended.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// An empty cgroup younger than this may belong to an `isolab run` that has not moved its
/// container into it yet, so `gc` leaves it alone.
const GC_MIN_AGE: Duration = Duration::from_secs(10);

/// A detached container that was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    pub id: String,
    pub pid: i32,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 32 hex digits from the kernel's random pool.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the live buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // The id is a label, not a secret: time and pid are unique enough as a fallback.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn me() -> (i32, u64) {
    let pid = std::process::id() as i32;
    (pid, state::start_time(pid).unwrap_or(0))
}

/// Starts `config` detached. `supervisor` is the argv prefix that runs `supervise` in a
/// fresh image of this program (the container's name is appended).
pub fn detach(config: &ContainerConfig, supervisor: &[String]) -> Result<Detached, RunError> {
    let (pid, start) = me();
    let first = State {
        id: new_id(),
        name: config.name.clone(),
        pid: 0,
        pid_start_time: 0,
        supervisor_pid: pid,
        supervisor_start_time: start,
        rootfs: config.rootfs.clone(),
        command: config.command.clone(),
        cgroups: Vec::new(),
        created: now_secs(),
        status: Status::Created,
        exit_code: None,
        exit_reason: None,
        foreground: false,
        process: super::process_defaults(config),
    };
    let store = Store::default();
    let locked = store.create(&first)?;
    let opened = open_stdio(&locked);
    let (log, devnull) = match opened {
        Ok(files) => files,
        Err(e) => {
            let _ = locked.remove();
            return Err(e);
        }
    };
    let argv: Vec<CString> = supervisor
        .iter()
        .map(String::as_str)
        .chain([config.name.as_str()])
        .map(|a| super::cstring(a, "supervisor argument"))
        .collect::<Result<_, _>>()?;
    let (report_rx, report_tx) = sys::pipe().map_err(sys_err("creating the start pipe"))?;
    // SAFETY: isolab is single-threaded here, so the child's copy of the process has no
    // lock held by a thread that does not exist in it.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            let _ = locked.remove();
            Err(sys_err("fork")(e))
        }
        Ok(ForkResult::Child) => {
            drop(report_rx);
            let code = supervise_start(config, first, locked, [devnull, log], report_tx, &argv);
            // SAFETY: this copy of the process ends here without running the parent's
            // destructors (its temp files, buffered output) a second time.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(report_tx);
            let report = read_report(&report_rx);
            match report.as_deref().and_then(parse_started) {
                Some(pid) => Ok(Detached { id: first.id, pid }),
                None => {
                    // The supervisor failed (and cleaned up) or died; either way it ends now.
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(match report.as_deref().and_then(parse_failed) {
                        Some((code, message)) => RunError::Detached { code, message },
                        None => {
                            let _ = remove_leftovers(&config.name);
                            let _ = locked.remove();
                            RunError::Detached {
                                code: 125,
                                message: format!(
                                    "the supervisor of container {} died while starting it",
                                    config.name
                                ),
                            }
                        }
                    })
                }
            }
        }
    }
}

fn open_stdio(locked: &Locked) -> Result<(File, File), RunError> {
    let path = locked.log_path();
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| {
            RunError::State(StateError::Io {
                what: "creating",
                path,
                source,
            })
        })?;
    let devnull = File::open("/dev/null").map_err(|source| {
        RunError::State(StateError::Io {
            what: "opening",
            path: "/dev/null".into(),
            source,
        })
    })?;
    Ok((log, devnull))
}

fn read_report(rx: &OwnedFd) -> Option<String> {
    let mut text = String::new();
    // SAFETY: the File borrows the pipe's descriptor for this read only; ManuallyDrop keeps
    // it from closing a descriptor the OwnedFd still owns.
    let mut file = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(rx.as_raw_fd()) });
    file.read_to_string(&mut text).ok()?;
    (!text.is_empty()).then_some(text)
}

/// `started <pid>`.
fn parse_started(report: &str) -> Option<i32> {
    report.strip_prefix("started ")?.trim().parse().ok()
}

/// `failed <code> <message>`.
fn parse_failed(report: &str) -> Option<(u8, String)> {
    let (code, message) = report.strip_prefix("failed ")?.split_once(' ')?;
    Some((code.parse().ok()?, message.to_string()))
}

/// The forked child's part: start the container, record it, report, become the supervisor.
/// Returns only with the exit code of a failure.
fn supervise_start(
    config: &ContainerConfig,
    mut state: State,
    locked: Locked,
    [stdin, out]: [File; 2],
    report_tx: OwnedFd,
    supervisor: &[CString],
) -> i32 {
    let report = |text: &str| {
        let _ = nix::unistd::write(&report_tx, text.as_bytes());
    };
    // Its own session: no terminal signal of the caller's reaches the container. Its own
    // stdio: the container's output goes to the log, and the caller's pipes are not held.
    let _ = nix::unistd::setsid();
    for (from, to) in [(&stdin, 0), (&out, 1), (&out, 2)] {
        // SAFETY: dup2 onto the standard descriptors; both are valid descriptors.
        unsafe { libc::dup2(from.as_raw_fd(), to) };
    }
    // Nor does the supervisor keep what the caller's shell left open: everything above the
    // standard descriptors ends at its exec (the pty master is let through on purpose below).
    // SAFETY: close_range only changes descriptor flags; no memory is involved.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    let failed = |error: RunError, locked: Locked| {
        let _ = locked.remove();
        report(&format!("failed {} {error}", error.exit_code()));
        i32::from(error.exit_code())
    };
    let mut running = match super::start(config, Explain::off()) {
        Ok(running) => running,
        Err(e) => return failed(e, locked),
    };
    let (pid, start) = me();
    state.pid = running.pid.as_raw();
    state.pid_start_time = state::start_time(state.pid).unwrap_or(0);
    state.supervisor_pid = pid;
    state.supervisor_start_time = start;
    state.cgroups = running.cgroups.paths();
    state.status = Status::Running;
    if let Err(e) = locked.write(&state) {
        // Dropping `running` kills the container and removes its cgroups.
        drop(running);
        return failed(e.into(), locked);
    }
    // With --tty the master goes to the supervisor, across its exec like its stdio: the
    // only descriptor cleared of close-on-exec, its number an argument.
    let mut console = running.console.take();
    running.release();
    drop(locked);
    report(&format!("started {}", state.pid));
    drop(report_tx);
    let mut supervisor = supervisor.to_vec();
    if let Some(master) = &console {
        let number = super::cstring(master.as_raw_fd().to_string(), "console descriptor");
        match (fcntl(master, FcntlArg::F_SETFD(FdFlag::empty())), number) {
            (Ok(_), Ok(number)) => supervisor.extend([c"--console-fd".to_owned(), number]),
            // It cannot be passed on: this image supervises instead (below).
            _ => supervisor.clear(),
        }
    }
    if !supervisor.is_empty() {
        // A fresh image: the supervisor keeps none of this process's memory while it waits.
        let mut argv: Vec<*const libc::c_char> = supervisor.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        // SAFETY: argv is null-terminated and points into CStrings that outlive the call;
        // `environ` is this process's own environment.
        unsafe { libc::execv(argv[0], argv.as_ptr()) };
    }
    // The exec failed (the binary is gone?): supervise from this image instead.
    match supervise(&config.name, console.take().map(IntoRawFd::into_raw_fd)) {
        Ok(()) => 0,
        Err(e) => i32::from(e.exit_code()),
    }
}

/// The supervisor: waits for the container's init, records how it ended, removes its
/// cgroups. While it waits it holds as little memory as it can (see [`crate::memory::shed`]).
///
/// `console_fd` is the pty master of a `--tty` container, inherited from the process that
/// started it; its output is copied to the log (this process's stdout) until the container
/// has ended.
pub fn supervise(name: &str, console_fd: Option<RawFd>) -> Result<(), RunError> {
    let console = console_fd.map(adopt).transpose()?;
    let store = Store::default();
    let state = store.read(name)?;
    crate::memory::shed();
    if let Some(master) = &console {
        super::tty::drain(master.as_fd(), std::io::stdout().as_fd())?;
    }
    drop(console);
    let status = super::wait_for(Pid::from_raw(state.pid), &Explain::off());
    let cgroups = cgroups::existing(name)?;
    let (code, reason) = match status.and_then(|s| super::outcome(s, &*cgroups)) {
        Ok(outcome @ Outcome::Exited(_)) => (outcome.exit_code(), "exited".to_string()),
        Ok(
            outcome @ Outcome::Signaled {
                oom_killed: true, ..
            },
        ) => (outcome.exit_code(), "oom-killed".to_string()),
        Ok(outcome @ Outcome::Signaled { signal, .. }) => {
            (outcome.exit_code(), format!("killed by signal {signal}"))
        }
        Err(e) => (125, format!("unknown: {e}")),
    };
    // The veth's peer died with the init's namespace; the host end and the lease go now.
    let removed = cgroups
        .remove(&Explain::off())
        .map_err(RunError::from)
        .and_then(|()| Ok(crate::net::release(name).map(drop)?));
    let locked = match store.lock(name, true) {
        // Removed meanwhile (rm of a record whose supervisor looked dead): nothing to record.
        Err(StateError::NoSuchContainer(_)) => return Ok(()),
        other => other?,
    };
    let mut state = locked.read()?;
    state.status = Status::Exited;
    state.exit_code = Some(i32::from(code));
    state.exit_reason = Some(match removed {
        Ok(()) => reason,
        Err(e) => format!("{reason}; {e}"),
    });
    state.cgroups.clear();
    locked.write(&state)?;
    Ok(())
}

/// Takes ownership of an inherited descriptor, after checking that it is open.
fn adopt(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: F_SETFD on a descriptor number takes an int and touches no memory; it fails
    // with EBADF if the number is not open.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })
        .map_err(sys_err("taking over the console descriptor"))?;
    // SAFETY: the descriptor is open (checked above) and was passed to this process to own;
    // nothing else in it refers to that number.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The container called `name`: its record, or a foreground container found by its cgroup.
pub fn lookup(name: &str) -> Result<State, RunError> {
    match Store::default().read(name) {
        Ok(state) => Ok(state.observed()),
        Err(StateError::NoSuchContainer(_)) => {
            foreground(name)?.ok_or_else(|| StateError::NoSuchContainer(name.into()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// A running container of a foreground `isolab run`, from its cgroup; `None` if it has no
/// live process.
fn foreground(name: &str) -> Result<Option<State>, RunError> {
    let cgroups = cgroups::existing(name)?;
    let Some(init) = cgroups
        .procs()?
        .into_iter()
        .find(|&pid| is_namespace_init(pid))
    else {
        return Ok(None);
    };
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let parent: i32 = field("PPid:")
        .first()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let id = |key| field(key).first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let command = std::fs::read(format!("/proc/{init}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let paths = cgroups.paths();
    let created = paths
        .first()
        .and_then(|p| p.metadata().ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(Some(State {
        id: String::new(),
        name: name.to_string(),
        pid: init,
        pid_start_time: state::start_time(init).unwrap_or(0),
        supervisor_pid: parent,
        supervisor_start_time: state::start_time(parent).unwrap_or(0),
        rootfs: PathBuf::new(),
        command,
        cgroups: paths,
        created,
        status: Status::Running,
        exit_code: None,
        exit_reason: None,
        foreground: true,
        process: state::ProcessDefaults {
            uid: id("Uid:"),
            gid: id("Gid:"),
            workdir: "/".into(),
            env: vec![("PATH".into(), super::DEFAULT_PATH.into())],
            privileged: false,
            seccomp: true,
            // Not recorded for a foreground container; exec applies the default profile.
            seccomp_profile: None,
        },
    }))
}

/// Whether `pid` is pid 1 of a pid namespace of its own (the last NSpid entry is 1).
fn is_namespace_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let ids: Vec<String> = s
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))?
                .split_whitespace()
                .map(str::to_string)
                .collect();
            Some(ids.len() > 1 && ids.last().map(String::as_str) == Some("1"))
        })
        .unwrap_or(false)
}

/// Every container: records, then foreground containers; only running ones unless `all`.
pub fn list(all: bool) -> Result<Vec<State>, RunError> {
    let store = Store::default();
    let mut found = Vec::new();
    for name in store.names()? {
        match store.read(&name) {
            Ok(state) => found.push(state.observed()),
            // Being created right now: its record is not written yet.
            Err(StateError::NoSuchContainer(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in cgroups::names()? {
        if !store.exists(&name) {
            found.extend(foreground(&name)?);
        }
    }
    found.retain(|s| all || s.status == Status::Running);
    found.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(found)
}

/// Opens a pidfd for `pid` and checks, after opening, that it is still the process that
/// started at `start`: from then on the pidfd cannot name another process.
pub(crate) fn pidfd_for(pid: i32, start: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just created this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    state::is_alive(pid, start).then_some(fd)
}

pub(super) fn open_running(state: &State) -> Result<OwnedFd, RunError> {
    if !state.is_running() {
        return Err(RunError::NotRunning(state.name.clone()));
    }
    pidfd_for(state.pid, state.pid_start_time)
        .ok_or_else(|| RunError::NotRunning(state.name.clone()))
}

pub(crate) fn send(pidfd: &OwnedFd, signal: Signal) -> Result<(), RunError> {
    // SAFETY: pidfd_send_signal with a null siginfo sends like kill(2); no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match Errno::result(ret) {
        // It ended between the check and the signal: the signal's job is done.
        Ok(_) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(sys_err("sending the signal")(e)),
    }
}

/// Sends `signal` to the container's init.
pub fn kill(name: &str, signal: Signal) -> Result<(), RunError> {
    let state = lookup(name)?;
    send(&open_running(&state)?, signal)
}

/// Waits until the container's init is gone and, for a recorded container, its supervisor
/// too: the supervisor exits only after it has recorded the end, so its exit (not a look at
/// the record, which may still say running) is what tells that the record is final. Each
/// wait is a poll on a pidfd, woken by the exit itself. False on timeout.
fn wait_ended(state: &State, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut watched = vec![(state.pid, state.pid_start_time)];
    if !state.foreground {
        watched.push((state.supervisor_pid, state.supervisor_start_time));
    }
    watched
        .into_iter()
        .all(|(pid, start)| match pidfd_for(pid, start) {
            None => true,
            Some(pidfd) => wait_exit(&pidfd, deadline.saturating_duration_since(Instant::now())),
        })
}

/// Whether the process of `pidfd` exits within `timeout` (a pidfd polls readable then).
pub(crate) fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: poll reads and writes the one pollfd passed, which lives on this stack.
        match Errno::result(unsafe { libc::poll(&mut poll, 1, ms) }) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// SIGTERM, then SIGKILL after `timeout`. A stopped container is no error.
pub fn stop(name: &str, timeout: Duration) -> Result<(), RunError> {
    let state = lookup(name)?;
    let Ok(pidfd) = open_running(&state) else {
        // Ended, but maybe not recorded yet: wait for the supervisor, as after a signal.
        return ended_within(&state, KILL_GRACE);
    };
    send(&pidfd, Signal::SIGTERM)?;
    if wait_ended(&state, timeout) {
        return Ok(());
    }
    send(&pidfd, Signal::SIGKILL)?;
    ended_within(&state, KILL_GRACE)
}

fn ended_within(state: &State, timeout: Duration) -> Result<(), RunError> {
    if wait_ended(state, timeout) {
        Ok(())
    } else {
        Err(RunError::Sys {
            what: "waiting for the container's end to be recorded",
            source: Errno::ETIMEDOUT,
        })
    }
}

/// Removes a container's record and whatever is left of it; `force` kills a running one.
pub fn remove(name: &str, force: bool) -> Result<(), RunError> {
    let store = Store::default();
    let mut locked = match store.lock(name, true) {
        Err(StateError::NoSuchContainer(_)) => {
            return Err(match foreground(name)? {
                Some(state) => RunError::Foreground {
                    name: name.into(),
                    pid: state.supervisor_pid,
                },
                None => StateError::NoSuchContainer(name.into()).into(),
            });
        }
        other => other?,
    };
    let state = locked.read()?;
    if !state.is_settled() {
        if !force {
            return Err(RunError::IsRunning(name.into()));
        }
        // Still starting (no init yet): the supervisor's death takes the init with it.
        let (pid, start) = if state.pid == 0 {
            (state.supervisor_pid, state.supervisor_start_time)
        } else {
            (state.pid, state.pid_start_time)
        };
        if let Some(pidfd) = pidfd_for(pid, start) {
            send(&pidfd, Signal::SIGKILL)?;
        }
        // The supervisor needs the lock to record the end.
        drop(locked);
        wait_ended(&state, KILL_GRACE);
        locked = match store.lock(name, true) {
            Err(StateError::NoSuchContainer(_)) => return Ok(()),
            other => other?,
        };
    }
    // Nothing acts on the container any more: its cgroups are normally gone already (the
    // supervisor removes them), unless the supervisor was killed.
    remove_leftovers(name)?;
    super::image_root::release(&state.rootfs, name)?;
    Ok(locked.remove()?)
}

fn remove_leftovers(name: &str) -> Result<(), RunError> {
    cgroups::existing(name)?.remove(&Explain::off())?;
    crate::net::release(name)?;
    Ok(())
}

/// A running container's record (whose supervisor the caller may measure) and its cgroup
/// figures.
pub fn stats(name: &str) -> Result<(State, Stats), RunError> {
    let state = lookup(name)?;
    if !state.is_running() {
        return Err(RunError::NotRunning(name.into()));
    }
    let stats = cgroups::existing(name)?.stats()?;
    Ok((state, stats))
}

/// The log file of a detached container.
pub fn log(name: &str) -> Result<PathBuf, RunError> {
    let state = lookup(name)?;
    if state.foreground {
        return Err(RunError::Foreground {
            name: name.into(),
            pid: state.supervisor_pid,
        });
    }
    Ok(state::log_path(&Store::default(), name))
}

/// Cleans up after supervisors and `isolab run` processes that were killed: records whose
/// supervisor is gone (their container is killed if anything of it lives), and empty cgroups
/// under `isolab/` that no record owns. Returns one line per thing removed.
///
/// isolab mounts nothing in the host's mount namespace (a container's mounts live and die
/// with its own), so there are no mounts to clean up.
pub fn gc() -> Result<Vec<String>, RunError> {
    let store = Store::default();
    let mut removed = Vec::new();
    for name in store.names()? {
        // Held by another command: that command is acting on it.
        let Some(locked) = store.try_lock(&name)? else {
            continue;
        };
        let state = match locked.read() {
            Ok(state) => state,
            Err(StateError::NoSuchContainer(_) | StateError::Corrupt { .. }) => {
                remove_leftovers(&name)?;
                locked.remove()?;
                removed.push(format!("container {name}: an unreadable record"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if state.status == Status::Exited
            || state::is_alive(state.supervisor_pid, state.supervisor_start_time)
        {
            continue;
        }
        if let Some(pidfd) = pidfd_for(state.pid, state.pid_start_time) {
            send(&pidfd, Signal::SIGKILL)?;
            wait_ended(&state, KILL_GRACE);
        }
        remove_leftovers(&name)?;
        locked.remove()?;
        removed.push(format!(
            "container {name}: its supervisor (pid {}) was gone",
            state.supervisor_pid
        ));
    }
    for name in cgroups::names()? {
        if store.exists(&name) {
            continue;
        }
        let cgroups = cgroups::existing(&name)?;
        let young = cgroups.paths().iter().any(|p| {
            p.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < GC_MIN_AGE)
        });
        if young || !cgroups.procs()?.is_empty() {
            continue;
        }
        cgroups.remove(&Explain::off())?;
        removed.push(format!("cgroup isolab/{name}: no container owned it"));
    }
    // After the records above: a root whose record was just removed is an orphan now.
    removed.extend(super::image_root::gc()?);
    // Leases held by foreground runs that were killed, and veths no lease owns.
    removed.extend(crate::net::gc()?);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_reports_round_trip() {
        assert_eq!(parse_started("started 42"), Some(42));
        assert_eq!(parse_started("failed 127 x"), None);
        assert_eq!(
            parse_failed("failed 127 sh: command not found"),
            Some((127, "sh: command not found".into()))
        );
        assert_eq!(parse_failed("started 1"), None);
    }

    #[test]
    fn ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_pid_namespace_init_counts_as_one() {
        assert!(!is_namespace_init(std::process::id() as i32));
        assert!(!is_namespace_init(0));
    }
}
