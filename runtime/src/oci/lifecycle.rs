//! The OCI operations: create, start, state, kill, delete, and run, exec, ps, features.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{ContainerState, Hook, Process, Spec};
use serde_json::json;

use super::console::ConsoleSocket;
use super::state::{Locked, Record, Root};
use super::{OciError, hooks, sys_err, translate};
use crate::cgroups;
use crate::container::lifecycle::{pidfd_for, send, wait_exit};
use crate::container::{self, Created, RunError, config::validate_name, state::start_time};
use crate::explain::Explain;

/// How long `delete --force` waits for a SIGKILLed init to be gone.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Where and how a command was asked to act; `explain` is on with `--debug`.
#[derive(Debug, Clone)]
pub struct Context {
    pub root: Root,
    pub explain: Explain,
}

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A process JSON file; otherwise `args` with the container's own process settings.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, u32)>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.to_path_buf();
    move |source| OciError::Io { what, path, source }
}

fn check_id(id: &str) -> Result<(), OciError> {
    validate_name(id).map_err(|_| OciError::Id(id.to_string()))
}

fn state_json(record: &Record, status: ContainerState) -> Vec<u8> {
    serde_json::to_vec(&record.oci_state(status)).unwrap_or_default()
}

/// The hooks of one kind from the config (prestart is the deprecated name of an earlier
/// point, run with createRuntime).
fn hooks_of(spec: &Spec, kind: &str) -> Vec<Hook> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let hooks = match kind {
        "prestart" => h.prestart(),
        "createRuntime" => h.create_runtime(),
        "createContainer" => h.create_container(),
        "startContainer" => h.start_container(),
        "poststart" => h.poststart(),
        _ => h.poststop(),
    };
    hooks.clone().unwrap_or_default()
}

/// `--pid-file`: its directory is opened when the command starts, so the file can be
/// written after this process has entered the container's mount namespace (exec).
#[derive(Debug)]
struct PidFile {
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
}

impl PidFile {
    fn open(path: &Path) -> Result<Self, OciError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| {
            OciError::Usage(format!("--pid-file {} names no file", path.display()))
        })?;
        let dir_fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("opening", dir)(e.into()))?;
        Ok(PidFile {
            dir: dir_fd,
            name: name.to_os_string(),
            path: path.to_path_buf(),
        })
    }

    /// Writes `pid` atomically (a temporary file renamed): the caller (conmon) may read it
    /// as soon as it exists.
    fn write(&self, pid: i32) -> Result<(), OciError> {
        let err = |e: Errno| io_err("writing", &self.path)(e.into());
        let mut tmp = self.name.clone();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let fd = nix::fcntl::openat(
            &self.dir,
            tmp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(err)?;
        nix::unistd::write(&fd, pid.to_string().as_bytes()).map_err(err)?;
        nix::fcntl::renameat(&self.dir, tmp.as_os_str(), &self.dir, self.name.as_os_str())
            .map_err(err)
    }
}

fn load_spec(bundle: &Path) -> Result<(PathBuf, Spec), OciError> {
    let bundle = bundle
        .canonicalize()
        .map_err(io_err("opening the bundle", bundle))?;
    let path = bundle.join("config.json");
    if !path.is_file() {
        return Err(OciError::Io {
            what: "opening",
            path,
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let spec = Spec::load(&path).map_err(|source| OciError::Config {
        path: path.clone(),
        source,
    })?;
    Ok((bundle, spec))
}

/// `create`: the container's init waits at its FIFO when this returns.
pub fn create(ctx: &Context, id: &str, options: &CreateOptions) -> Result<(), OciError> {
    let (_locked, _record, created) = create_container(ctx, id, options)?;
    created.release();
    Ok(())
}

fn create_container(
    ctx: &Context,
    id: &str,
    options: &CreateOptions,
) -> Result<(Locked, Record, Created), OciError> {
    check_id(id)?;
    let (bundle, spec) = load_spec(&options.bundle)?;
    let config = translate::container_config(id, &bundle, &spec, ctx.root.fifo(id))?;
    if config.tty && options.console_socket.is_none() {
        return Err(OciError::Usage(
            "process.terminal is true: --console-socket is required to receive the terminal".into(),
        ));
    }
    let pid_file = options.pid_file.as_deref().map(PidFile::open).transpose()?;
    let console = options
        .console_socket
        .as_deref()
        .filter(|_| config.tty)
        .map(ConsoleSocket::connect)
        .transpose()?;
    let locked = ctx.root.create(id)?;
    let mut record = Record {
        id: id.to_string(),
        bundle,
        pid: 0,
        pid_start_time: 0,
        started: false,
        created: now_secs(),
        spec,
        cgroups: Vec::new(),
        cgroup_parents: Vec::new(),
        exit_status: None,
    };
    let built = (|| {
        let mut before_release = |pid: Pid| -> Result<(), RunError> {
            let mut creating = record.clone();
            creating.pid = pid.as_raw();
            let state = state_json(&creating, ContainerState::Creating);
            let run = |kind, namespaces| {
                hooks::run(kind, &hooks_of(&record.spec, kind), &state, namespaces)
                    .map_err(|e| RunError::Caller(e.to_string()))
            };
            run("prestart", hooks::Namespaces::Runtime)?;
            run("createRuntime", hooks::Namespaces::Runtime)?;
            // The init waits for this go-ahead with its root built, before pivot_root.
            let pidfd = pidfd_for(pid.as_raw(), start_time(pid.as_raw()).unwrap_or(0))
                .ok_or_else(|| RunError::NotRunning(record.id.clone()))?;
            run(
                "createContainer",
                hooks::Namespaces::Container(&pidfd, pid.as_raw()),
            )
        };
        let mut created = container::create(&config, ctx.explain, &mut before_release)?;
        record.pid = created.pid().as_raw();
        record.pid_start_time = start_time(record.pid).unwrap_or(0);
        record.cgroups = created.cgroup_paths();
        record.cgroup_parents = created.cgroup_parents();
        if let (Some(master), Some(console)) = (created.take_console(), &console) {
            console.send(&master)?;
        }
        locked.write(&record)?;
        if let Some(pid_file) = &pid_file {
            pid_file.write(record.pid)?;
        }
        Ok::<_, OciError>(created)
    })();
    match built {
        Ok(created) => Ok((locked, record, created)),
        Err(e) => {
            // `created` is gone already: the init killed, its cgroups removed.
            let _ = locked.remove();
            Err(e)
        }
    }
}

/// `start`: lets a created container's init go on to its command.
pub fn start(ctx: &Context, id: &str) -> Result<(), OciError> {
    let locked = ctx.root.lock(id)?;
    let mut record = ctx.root.read(id)?;
    let status = record.status();
    if status != ContainerState::Created {
        return Err(OciError::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "only a created container can be started",
        });
    }
    let pidfd =
        pidfd_for(record.pid, record.pid_start_time).ok_or_else(|| OciError::WrongState {
            id: id.into(),
            status: "stopped".into(),
            what: "it ended before start",
        })?;
    let state = state_json(&record, ContainerState::Created);
    // The init waits at the FIFO after pivot_root: the hooks' paths are the container's.
    if let Err(e) = hooks::run(
        "startContainer",
        &hooks_of(&record.spec, "startContainer"),
        &state,
        hooks::Namespaces::Container(&pidfd, record.pid),
    ) {
        send(&pidfd, Signal::SIGKILL)?;
        return Err(e);
    }
    let report = release_init(&ctx.root.fifo(id), &pidfd)?;
    record.started = true;
    if !report.is_empty() {
        // The init has ended: its status is kept for `state`, the error goes to the caller
        // (and --log).
        let error = container::report_error(&report);
        record.exit_status = Some(error.exit_code());
        locked.write(&record)?;
        return Err(OciError::Run(error));
    }
    locked.write(&record)?;
    let state = state_json(&record, ContainerState::Running);
    if let Err(e) = hooks::run(
        "poststart",
        &hooks_of(&record.spec, "poststart"),
        &state,
        hooks::Namespaces::Runtime,
    ) {
        // The container runs: a poststart failure is only reported.
        super::cli::warn(&e.to_string());
    }
    Ok(())
}

/// Opens the FIFO the init waits on and takes its byte; fails if the init ends instead.
/// Then reads the FIFO to its end, which execve brings: what comes before it is the
/// init's report of a failure on its last steps (seccomp, execve), returned.
fn release_init(fifo: &Path, pidfd: &OwnedFd) -> Result<Vec<u8>, OciError> {
    // Non-blocking: a plain open would wait forever for an init that has died.
    let reader = nix::fcntl::open(
        fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_err("opening", fifo)(e.into()))?;
    loop {
        let mut fds = [
            PollFd::new(reader.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("waiting for the container's init")(e)),
            Ok(_) => {}
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[0]) {
            let mut byte = [0u8; 1];
            match nix::unistd::read(&reader, &mut byte) {
                Ok(1) => break,
                Err(Errno::EAGAIN | Errno::EINTR) | Ok(_) => {}
                Err(e) => return Err(sys_err("reading the start FIFO")(e)),
            }
        }
        if ready(&fds[1]) {
            return Err(OciError::Sys {
                what: "the container's init ended before it was started",
                source: Errno::ESRCH,
            });
        }
    }
    let _ = std::fs::remove_file(fifo);
    let mut report = Vec::new();
    loop {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("waiting for the container's process to start")(e)),
            Ok(_) => {}
        }
        let mut buf = [0u8; 1024];
        match nix::unistd::read(&reader, &mut buf) {
            Ok(0) => return Ok(report),
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(sys_err("reading the start FIFO")(e)),
        }
    }
}

/// `state`: the spec's state JSON.
pub fn state(ctx: &Context, id: &str) -> Result<String, OciError> {
    let record = ctx.root.read(id)?;
    let corrupt = |source| OciError::Corrupt {
        path: ctx.root.container_dir(id),
        source,
    };
    let mut state = serde_json::to_value(record.oci_state(record.status())).map_err(corrupt)?;
    // Beyond the spec's fields, as runc adds its own: how a process that failed on its
    // last steps after `start` ended.
    if let (Some(status), Some(object)) = (record.exit_status, state.as_object_mut()) {
        object.insert("exitStatus".into(), status.into());
    }
    serde_json::to_string_pretty(&state).map_err(corrupt)
}

/// A signal by name (`TERM`, `SIGTERM`) or number (`15`).
pub fn parse_signal(text: &str) -> Result<Signal, OciError> {
    let bad = || {
        OciError::Usage(format!(
            "unknown signal {text:?}: use a name such as SIGTERM or a number"
        ))
    };
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| bad())
}

/// `kill`: the signal to the init, or with `all` to every process of the container.
pub fn kill(ctx: &Context, id: &str, signal: Signal, all: bool) -> Result<(), OciError> {
    let record = ctx.root.read(id)?;
    let not_running = || OciError::WrongState {
        id: id.into(),
        status: "stopped".into(),
        what: "there is no process to signal",
    };
    if record.status() == ContainerState::Stopped {
        return Err(not_running());
    }
    if all {
        for pid in record.cgroups()?.procs()? {
            // One that ended meanwhile has no need of the signal.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
        return Ok(());
    }
    let pidfd = pidfd_for(record.pid, record.pid_start_time).ok_or_else(not_running)?;
    Ok(send(&pidfd, signal)?)
}

/// `delete`: removes a stopped container (with `force`, kills a live one first), its
/// cgroups and record, then runs the poststop hooks.
pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<(), OciError> {
    let locked = match ctx.root.lock(id) {
        Err(OciError::NoSuchContainer(_)) if force => return Ok(()),
        other => other?,
    };
    let record = match ctx.root.read(id) {
        Ok(record) => record,
        // A create that died before writing the record: nothing of it can be running
        // (its init had it as parent-death signal), so only its leftovers go.
        Err(OciError::NoSuchContainer(_) | OciError::Corrupt { .. }) => {
            cgroups::existing(id)?.remove(&Explain::off())?;
            return locked.remove();
        }
        Err(e) => return Err(e),
    };
    let status = record.status();
    if status != ContainerState::Stopped {
        if !force {
            return Err(OciError::WrongState {
                id: id.into(),
                status: status.to_string(),
                what: "stop it first, or use delete --force",
            });
        }
        if let Some(pidfd) = pidfd_for(record.pid, record.pid_start_time) {
            send(&pidfd, Signal::SIGKILL)?;
            wait_exit(&pidfd, KILL_GRACE);
        }
    }
    let cgroups = record.cgroups()?;
    // Processes outside the init's pid namespace (none when it has its own) go with it.
    for pid in cgroups.procs()? {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    cgroups.remove(&Explain::off())?;
    locked.remove()?;
    let state = state_json(&record, ContainerState::Stopped);
    if let Err(e) = hooks::run(
        "poststop",
        &hooks_of(&record.spec, "poststop"),
        &state,
        hooks::Namespaces::Runtime,
    ) {
        super::cli::warn(&e.to_string());
    }
    Ok(())
}

/// `run`: create and start; without `detach`, wait for the container and delete it.
/// Returns the exit code to leave with.
pub fn run(ctx: &Context, id: &str, options: &CreateOptions, detach: bool) -> Result<u8, OciError> {
    let (locked, _record, created) = create_container(ctx, id, options)?;
    drop(locked);
    if let Err(e) = start(ctx, id) {
        drop(created);
        let _ = delete(ctx, id, true);
        return Err(e);
    }
    if detach {
        created.release();
        return Ok(0);
    }
    let outcome = created.wait();
    delete(ctx, id, true)?;
    Ok(outcome?.exit_code())
}

/// `exec`: a new process in a created or running container. Returns the exit code to
/// leave with (0 when detached).
pub fn exec(ctx: &Context, id: &str, options: &ExecOptions) -> Result<u8, OciError> {
    let record = ctx.root.read(id)?;
    let stopped = || OciError::WrongState {
        id: id.into(),
        status: "stopped".into(),
        what: "exec needs a created or running container",
    };
    if record.status() == ContainerState::Stopped {
        return Err(stopped());
    }
    let process = match &options.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(io_err("reading", path))?;
            serde_json::from_slice::<Process>(&text).map_err(|source| OciError::Corrupt {
                path: path.clone(),
                source,
            })?
        }
        None => process_from_args(&record.spec, options)?,
    };
    let request = translate::exec_request(&process, &record.spec, options.detach)?;
    if request.tty && options.detach && options.console_socket.is_none() {
        return Err(OciError::Usage(
            "a detached exec with a terminal needs --console-socket to hand it to".into(),
        ));
    }
    // Both before spawn, which leaves this process in the container's mount namespace.
    let pid_file = options.pid_file.as_deref().map(PidFile::open).transpose()?;
    let console = options
        .console_socket
        .as_deref()
        .filter(|_| request.tty)
        .map(ConsoleSocket::connect)
        .transpose()?;
    let pidfd = pidfd_for(record.pid, record.pid_start_time).ok_or_else(stopped)?;
    let mut spawned =
        container::spawn(&pidfd, record.pid, record.cgroups()?, &request, ctx.explain)?;
    drop(pidfd);
    if let Some(pid_file) = &pid_file {
        pid_file.write(spawned.pid.as_raw())?;
    }
    if let Some(console) = &console {
        if let Some(master) = spawned.console.take() {
            console.send(&master)?;
        }
    }
    if options.detach {
        return Ok(0);
    }
    Ok(spawned.wait()?.exit_code())
}

/// The container's own process, with the command and the flags of `exec` instead.
fn process_from_args(spec: &Spec, options: &ExecOptions) -> Result<Process, OciError> {
    if options.args.is_empty() {
        return Err(OciError::Usage(
            "exec needs --process FILE or a command".into(),
        ));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(options.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &options.env {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &options.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = options.user {
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    process.set_terminal(Some(options.tty));
    Ok(process)
}

/// `ps`: the host pids of the container's processes.
pub fn ps(ctx: &Context, id: &str) -> Result<Vec<i32>, OciError> {
    Ok(ctx.root.read(id)?.cgroups()?.procs()?)
}

/// `features`: what this runtime supports, in the spec's features document.
pub fn features() -> serde_json::Value {
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": super::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "sync", "async", "noatime", "atime", "nodiratime", "relatime", "strictatime",
            "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
            "runbindable"
        ],
        "linux": {
            "namespaces": ["pid", "network", "ipc", "uts", "mount", "user", "cgroup", "time"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"
                ],
                "operators": [
                    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"
                ],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigusr1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
