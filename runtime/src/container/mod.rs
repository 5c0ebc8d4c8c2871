//! Running one container: the parent's side.
//!
//! The parent prepares everything, clones the container's init directly into its new
//! namespaces (no re-exec, no helper process), then — while the child builds its root —
//! writes the id maps (with `--userns`) and creates the cgroups, places the child in them
//! and lets it go on. In the foreground it forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the
//! child, waits for it, reports an OOM kill, and removes the cgroups. Whatever fails, the
//! guard kills the child (which takes its namespaces and mounts with it) and removes the
//! cgroups. Detached containers, and the commands that act on running ones, are in
//! [`lifecycle`] and [`exec`](mod@exec).

mod capabilities;
mod child;
pub mod config;
mod exec;
pub mod extra;
pub mod image_root;
pub mod lifecycle;
mod rootfs;
mod seccomp;
pub mod state;
mod sys;
mod tty;
pub mod userns;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroups::{self, CgroupError, CgroupManager};
use crate::explain::{Explain, PhaseLog};
use capabilities::CapabilityPlan;
use child::{ChildPlan, ProcessPlan, Stage};
pub use config::{ConfigError, ContainerConfig, Network, User};
pub(crate) use exec::differing_namespaces;
pub use exec::{ExecConfig, ExecRequest, Spawned, exec, spawn};
use extra::ProcessExtra;
use rootfs::Layout;
use state::{ProcessDefaults, StateError, Store};
use userns::IdRange;

/// What a confined container gets by default, for peers configured to match it (the
/// bench's runc bundle).
pub mod defaults {
    pub use super::rootfs::{MASKED, READ_ONLY};

    /// Docker's default capabilities by their kernel names (`CAP_CHOWN`, ...).
    pub fn capabilities() -> Vec<String> {
        super::capabilities::DOCKER_DEFAULT
            .iter()
            .map(|c| c.to_string())
            .collect()
    }
}

/// The `PATH` a container gets unless `-e PATH=...` says otherwise (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the container's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled { signal: i32, oom_killed: bool },
}

impl Outcome {
    /// The shell's convention: the status, or 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Exited(code) => code as u8,
            Outcome::Signaled { signal, .. } => (128 + signal) as u8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("rootfs {path}: {reason}")]
    Rootfs { path: PathBuf, reason: String },
    #[error("--user {uid}:{gid} is outside the user namespace's {count} mapped ids")]
    UserOutsideMap { uid: u32, gid: u32, count: u32 },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    ImageRoot(#[from] image_root::ImageRootError),
    #[error("building the seccomp filter: {0}")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("writing {path}: {source}")]
    IdMap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot raise {name} to {soft}:{hard}: this host's hard limit is {host} and isolab lacks CAP_SYS_RESOURCE to go above it; ask for at most {host} (podman/docker: --ulimit {short}={host}:{host})"
    )]
    Rlimit {
        name: &'static str,
        short: String,
        soft: u64,
        hard: u64,
        host: u64,
    },
    #[error("{what} {path}: {source}")]
    Path {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{0}")]
    Unsupported(String),
    /// A step of the caller's that failed while the container was being created (OCI hooks).
    #[error("{0}")]
    Caller(String),
    #[error("setting up the container failed: {message}: {errno}")]
    Setup { message: String, errno: Errno },
    #[error("{command}: command not found in the container ({errno})")]
    NotFound { command: String, errno: Errno },
    #[error("{command}: cannot execute: {errno}")]
    CannotExecute { command: String, errno: Errno },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first, or use rm -f")]
    IsRunning(String),
    #[error(
        "container {name} is the foreground container of `isolab run` (pid {pid}); stop or kill it instead"
    )]
    Foreground { name: String, pid: i32 },
    /// A detached start that failed in the supervisor, which reported its code and message.
    #[error("{message}")]
    Detached { code: u8, message: String },
}

impl RunError {
    /// Docker's convention: 127 not found, 126 not executable, 125 isolab's own failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::NotFound { .. } => 127,
            RunError::CannotExecute { .. } => 126,
            RunError::Detached { code, .. } => *code,
            _ => 125,
        }
    }
}

fn sys_err(what: &'static str) -> impl FnOnce(Errno) -> RunError {
    move |source| RunError::Sys { what, source }
}

fn cstring(bytes: impl Into<Vec<u8>>, what: &'static str) -> Result<CString, RunError> {
    CString::new(bytes).map_err(|_| RunError::Sys {
        what,
        source: Errno::EINVAL,
    })
}

/// The child's pid for the signal handler; 0 when there is none.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and touches no memory.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Installed in the parent only after the clone, so the child never runs this handler.
fn forward_signals_to(pid: Pid) -> Result<(), RunError> {
    CHILD.store(pid.as_raw(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only reads an atomic and calls kill(2), both async-signal-safe.
        unsafe { nix::sys::signal::sigaction(signal, &action) }
            .map_err(sys_err("installing the signal forwarder"))?;
    }
    Ok(())
}

/// Owns the running child and its cgroups; dropping it before `finish` kills the child and
/// removes the cgroups, so an early return leaves nothing behind.
#[derive(Debug)]
struct Running {
    pid: Pid,
    reaped: bool,
    cleaned: bool,
    cgroups: Box<dyn CgroupManager>,
    /// The pty master with `--tty`.
    console: Option<OwnedFd>,
    /// `--net bridge`: its veth pair and lease, removed with the container.
    network: Option<crate::net::Attachment>,
    explain: Explain,
}

impl Running {
    fn wait(&mut self) -> Result<WaitStatus, RunError> {
        let status = wait_for(self.pid, &self.explain)?;
        self.reaped = true;
        CHILD.store(0, Ordering::Relaxed);
        Ok(status)
    }

    /// Waits for the command to end and tells how, OOM kill included.
    fn outcome(&mut self) -> Result<Outcome, RunError> {
        let status = self.wait()?;
        outcome(status, &*self.cgroups)
    }

    /// Removes the cgroups (and takes off the bridge) a container that has been reaped.
    fn finish(mut self) -> Result<(), RunError> {
        self.cleaned = true;
        self.cgroups.remove(&self.explain)?;
        if let Some(network) = self.network.take() {
            crate::net::detach(&network, &self.explain)?;
        }
        Ok(())
    }

    /// Leaves the child running and its cgroups in place: another process takes them over.
    fn release(mut self) {
        self.cleaned = true;
    }

    fn kill(&mut self) {
        if !self.reaped {
            self.explain
                .step(format_args!("kill({}, SIGKILL)", self.pid));
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = self.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.kill();
        // The error that brought us here is the one to report; a cleanup failure on top of
        // it can only be mentioned.
        if let Err(e) = self.cgroups.remove(&self.explain) {
            eprintln!("isolab: warning: {e}");
        }
        if let Some(network) = self.network.take() {
            if let Err(e) = crate::net::detach(&network, &self.explain) {
                eprintln!("isolab: warning: {e}");
            }
        }
    }
}

/// waitpid, retried on EINTR.
fn wait_for(pid: Pid, explain: &Explain) -> Result<WaitStatus, RunError> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("waiting for the container")(e)),
            Ok(status) => {
                explain.step(format_args!("wait4({pid}) = {status:?}"));
                return Ok(status);
            }
        }
    }
}

/// How a reaped container init ended; a SIGKILL with an OOM kill counted is the OOM killer's.
fn outcome(status: WaitStatus, cgroups: &dyn CgroupManager) -> Result<Outcome, RunError> {
    match status {
        WaitStatus::Exited(_, code) => Ok(Outcome::Exited(code)),
        WaitStatus::Signaled(_, signal, _) => Ok(Outcome::Signaled {
            signal: signal as i32,
            oom_killed: signal == Signal::SIGKILL && cgroups.oom_kills()? > 0,
        }),
        // Stops and continues are only reported with WUNTRACED/WCONTINUED, never asked for.
        _ => Err(RunError::Sys {
            what: "unexpected wait status",
            source: Errno::ECHILD,
        }),
    }
}

/// Runs the container to completion in the foreground. No record is written on this path
/// (it costs nothing extra); `isolab ps` finds such a container through its cgroup.
pub fn run(config: &ContainerConfig, explain: Explain) -> Result<Outcome, RunError> {
    let explain = explain.with_phases(PhaseLog::from_env());
    explain.phase("launch");
    let store = Store::default();
    if store.exists(&config.name) {
        return Err(RunError::State(StateError::NameInUse {
            name: config.name.clone(),
            path: store.dir(&config.name),
        }));
    }
    let mut running = start(config, explain)?;
    if let Some(master) = running.console.take() {
        tty::relay(&master)?;
    }
    let outcome = running.outcome()?;
    running.finish()?;
    Ok(outcome)
}

/// How the container's command is started: from the run's options.
fn process_defaults(config: &ContainerConfig) -> ProcessDefaults {
    ProcessDefaults {
        uid: config.user.uid,
        gid: config.user.gid,
        workdir: config.workdir.clone().unwrap_or_else(|| "/".into()),
        env: environment(config),
        privileged: config.privileged,
        seccomp: config.seccomp,
        seccomp_profile: config.seccomp_profile.clone(),
    }
}

/// Everything from the drop of privileges to execve, prepared in the parent;
/// `devices_limited`: the container's cgroup restricts its devices (CAP_MKNOD may stay).
fn process_plan(
    process: &ProcessDefaults,
    extra: &ProcessExtra,
    barrier: Option<child::Barrier>,
    command: &[String],
    devices_limited: bool,
    report_tx: OwnedFd,
    explain: Explain,
) -> Result<ProcessPlan, RunError> {
    let confined = !process.privileged;
    Ok(ProcessPlan {
        explain,
        uid: process.uid,
        gid: process.gid,
        workdir: cstring(process.workdir.as_str(), "--workdir")?,
        candidates: candidates(&command[0], &process.env)?,
        argv: command
            .iter()
            .map(|a| cstring(a.as_str(), "command argument"))
            .collect::<Result<_, _>>()?,
        env: process
            .env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}"), "environment variable"))
            .collect::<Result<_, _>>()?,
        capabilities: confined
            .then(|| match &extra.capabilities {
                Some(sets) => CapabilityPlan::from_sets(sets).map_err(RunError::Unsupported),
                None => Ok(CapabilityPlan::docker_default(devices_limited)),
            })
            .transpose()?,
        seccomp: if let (Some(filters), true) = (&extra.seccomp, confined) {
            filters.clone()
        } else if confined {
            let mut filters = if process.seccomp {
                seccomp::docker_default()?
            } else {
                Vec::new()
            };
            if let Some(profile) = &process.seccomp_profile {
                filters.extend(seccomp::profile(profile)?);
            }
            filters
        } else {
            Vec::new()
        },
        report_tx,
        rlimits: extra.rlimits.clone(),
        groups: extra
            .additional_gids
            .iter()
            .map(|&g| nix::unistd::Gid::from_raw(g))
            .collect(),
        umask: extra.umask,
        barrier,
        detached: false,
    })
}

/// A container whose init is past its setup: waiting at its start FIFO (the OCI created
/// state) or running. Dropping it kills the init and removes its cgroups;
/// [`Created::release`] leaves both to whoever acts on the container next.
#[derive(Debug)]
pub struct Created(Running);

impl Created {
    pub fn pid(&self) -> Pid {
        self.0.pid
    }

    /// The pty master of a container with `tty`.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.0.console.take()
    }

    pub fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.0.cgroups.paths()
    }

    /// The levels above [`cgroup_paths`](Self::cgroup_paths) made for this container, to
    /// be removed with it ([`cgroups::at`]).
    pub fn cgroup_parents(&self) -> Vec<PathBuf> {
        self.0.cgroups.created_parents()
    }

    pub fn release(self) {
        self.0.release();
    }

    /// Waits for the init (this process is its parent), then removes its cgroups.
    pub fn wait(mut self) -> Result<Outcome, RunError> {
        let outcome = self.0.outcome()?;
        self.0.finish()?;
        Ok(outcome)
    }
}

/// Starts a container that `isolab-oci` describes (see [`extra::Extra`]): `before_release`
/// runs once its namespaces and cgroups exist (the createRuntime hooks); with a start FIFO
/// this returns while the init waits there.
pub fn create(
    config: &ContainerConfig,
    explain: Explain,
    before_release: &mut dyn FnMut(Pid) -> Result<(), RunError>,
) -> Result<Created, RunError> {
    start_with(config, explain, before_release).map(Created)
}

/// Starts the container and returns once its command has been exec'd.
fn start(config: &ContainerConfig, explain: Explain) -> Result<Running, RunError> {
    start_with(config, explain, &mut |_| Ok(()))
}

/// [`start`], calling `before_release` with the init's pid once its namespaces and cgroups
/// exist, before the init may go on (the OCI createRuntime hooks). With
/// `extra.start_fifo` it returns once the init waits there instead of after execve.
fn start_with(
    config: &ContainerConfig,
    explain: Explain,
    before_release: &mut dyn FnMut(Pid) -> Result<(), RunError>,
) -> Result<Running, RunError> {
    extra::check_rlimits(&config.extra.process.rlimits)?;
    let rootfs = check_rootfs(&config.rootfs)?;
    let cgroup_path = match &config.extra.cgroups_path {
        Some(path) => cgroups::CgroupPath::Given(path.clone()),
        None => cgroups::CgroupPath::Named(config.name.clone()),
    };
    let cgroups = cgroups::for_host(&cgroup_path, &config.resources)?;
    let own_netns = config.network != Network::Host;
    let ids = (config.userns && config.extra.id_maps.is_none()).then(|| {
        (
            IdRange::for_root(Path::new("/etc/subuid")),
            IdRange::for_root(Path::new("/etc/subgid")),
        )
    });
    if let Some((uids, gids)) = ids {
        if config.user.uid >= uids.count || config.user.gid >= gids.count {
            return Err(RunError::UserOutsideMap {
                uid: config.user.uid,
                gid: config.user.gid,
                count: uids.count.min(gids.count),
            });
        }
    }

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if own_netns {
        flags |= libc::CLONE_NEWNET;
    }
    if config.userns {
        flags |= libc::CLONE_NEWUSER;
    }
    if Path::new("/proc/self/ns/time").exists() {
        flags |= libc::CLONE_NEWTIME;
    }
    let maps = match (&config.extra.id_maps, ids) {
        (Some(maps), _) if config.userns => Some(maps.clone()),
        (_, Some((uids, gids))) => Some((uids.map_line(), gids.map_line())),
        _ => None,
    };
    for ns in config
        .extra
        .share
        .iter()
        .chain(config.extra.join.iter().map(|(ns, _)| ns))
    {
        flags &= !ns.clone_flag();
    }
    // Opened here, entered by the init first thing; kept open until it has.
    let joins = config
        .extra
        .join
        .iter()
        .map(|(ns, path)| {
            let fd = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|source| RunError::Path {
                what: "opening the namespace",
                path: path.clone(),
                source,
            })?;
            Ok((fd, ns.clone_flag()))
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let (ready_rx, barrier, start_fifo) = match &config.extra.start_fifo {
        Some(path) => {
            let fifo = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|source| RunError::Path {
                what: "opening the start FIFO",
                path: path.clone(),
                source,
            })?;
            let (ready_rx, ready_tx) = sys::pipe().map_err(sys_err("creating the ready pipe"))?;
            let barrier = child::Barrier {
                ready_tx,
                fifo: cstring(format!("/proc/self/fd/{}", fifo.as_raw_fd()), "FIFO path")?,
            };
            (Some(ready_rx), Some(barrier), Some(fifo))
        }
        None => (None, None, None),
    };

    // On v1 the init moves itself into its cgroups, which is far cheaper than being moved
    // (see CgroupManager::self_join_files); not from a user namespace, whose root cannot
    // write the host's cgroup files.
    let join_cgroups = if config.userns {
        Vec::new()
    } else {
        cgroups
            .self_join_files()
            .into_iter()
            .map(|file| cstring(file.into_os_string().into_vec(), "cgroup path"))
            .collect::<Result<_, _>>()?
    };
    let self_joins = !join_cgroups.is_empty();
    let (console_rx, console) = match config.tty {
        true => tty::console_plan().map(|(rx, plan)| (Some(rx), Some(plan)))?,
        false => (None, None),
    };
    let (sync_rx, sync_tx) = sys::pipe().map_err(sys_err("creating the sync pipe"))?;
    let (report_rx, report_tx) = sys::pipe().map_err(sys_err("creating the error pipe"))?;
    let plan = ChildPlan {
        explain: explain.as_actor("init  "),
        mounts: Layout {
            rootfs: &rootfs,
            overlay: config.overlay.as_deref(),
            read_only: config.read_only,
            privileged: config.privileged,
            own_netns,
            userns: config.userns,
            cgroups: cgroups.container_view(),
            extra: &config.extra,
        }
        .plan(),
        rootfs: cstring(rootfs.as_os_str().as_bytes(), "rootfs path")?,
        hostname: config.hostname.clone(),
        join: joins
            .iter()
            .map(|(fd, flag)| (fd.as_raw_fd(), *flag))
            .collect(),
        sysctls: config
            .extra
            .sysctls
            .iter()
            .map(|(key, value)| {
                Ok((
                    cstring(format!("/proc/sys/{}", key.replace('.', "/")), "sysctl")?,
                    cstring(value.as_str(), "sysctl value")?,
                ))
            })
            .collect::<Result<_, RunError>>()?,
        userns: config.userns,
        own_netns,
        join_cgroups,
        console,
        sync_rx,
        parent_ends: [Some(&sync_tx), Some(&report_rx), console_rx.as_ref()]
            .into_iter()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect(),
        process: process_plan(
            &process_defaults(config),
            &config.extra.process,
            barrier,
            &config.command,
            cgroups.limits_devices(),
            report_tx,
            explain.as_actor("init  "),
        )?,
    };
    let exec_arrays = plan.process.exec_arrays();
    explain.phase("prepare");

    // On cgroup v2 the init is created inside its cgroup (CLONE_INTO_CGROUP), which needs
    // the cgroup first. That spares the cgroup.procs write, whose migration takes
    // cgroup_threadgroup_rwsem for writing: a percpu rwsem whose writer waits for an RCU
    // grace period, milliseconds (see README, Containers).
    let into = cgroups
        .clone_target()
        .map(|dir| {
            create_before_clone(&*cgroups, dir, &config.resources, &explain).map(|fd| (fd, dir))
        })
        .transpose()?;
    if into.is_some() {
        explain.phase("cgroup");
    }
    let cloned = sys::clone_process(
        flags as u64,
        into.as_ref().map(|(fd, dir)| (fd.as_fd(), *dir)),
        &explain,
    );
    let (pid, in_cgroup) = match cloned {
        Ok(sys::Cloned::Child) => child::run(&plan, &exec_arrays),
        Ok(sys::Cloned::Parent { pid, in_cgroup }) => (pid, in_cgroup),
        Err(e) => {
            if into.is_some() {
                let _ = cgroups.remove(&explain);
            }
            return Err(sys_err("clone3")(e));
        }
    };
    let created = into.is_some();
    drop(into);
    // Closes the child's pipe ends here, so EOF on the error pipe means the child is gone
    // or has exec'd.
    drop(plan);
    drop((joins, start_fifo));
    explain.step(format_args!("container init is pid {pid} on the host"));
    let mut running = Running {
        pid,
        reaped: false,
        cleaned: false,
        cgroups,
        console: None,
        network: None,
        explain,
    };
    forward_signals_to(pid)?;
    // The init waits for its go-ahead meanwhile; its namespace is there from the clone on.
    if config.network == Network::Bridge {
        match crate::net::attach(&config.name, pid.as_raw(), &explain) {
            Ok(network) => running.network = Some(network),
            Err(e) => {
                // The child may have failed first (and taken its namespace with it).
                running.kill();
                return Err(child_report(&report_rx)?.unwrap_or(e.into()));
            }
        }
    }

    let placed = Placement {
        created,
        in_cgroup: in_cgroup || self_joins,
    };
    let released = release_child(
        config,
        &*running.cgroups,
        pid,
        maps,
        placed,
        &sync_tx,
        &explain,
    )
    .and_then(|()| before_release(pid))
    .and_then(|()| go_ahead(&sync_tx));
    if let Err(e) = released {
        // The child may have failed first (and made this step fail); its report is the cause.
        running.kill();
        return Err(child_report(&report_rx)?.unwrap_or(e));
    }
    if let Some(console_rx) = &console_rx {
        // Only the container holds the slave, so the master reads EIO once it has ended.
        running.console = tty::receive_master(console_rx)?;
        if running.console.is_none() {
            // The init ended before it had a terminal; its report says why.
            running.kill();
            return Err(child_report(&report_rx)?.unwrap_or(RunError::Sys {
                what: "the container's init ended before opening its terminal",
                source: Errno::ESRCH,
            }));
        }
    }
    if let Some(ready_rx) = &ready_rx {
        let mut byte = [0u8; 1];
        if sys::read_full(ready_rx, &mut byte).map_err(sys_err("reading the ready pipe"))? == 1 {
            explain.step(format_args!("the init is ready and waits for start"));
            return Ok(running);
        }
    }
    if let Some(error) = child_report(&report_rx)? {
        return Err(error);
    }
    explain.step(format_args!(
        "error pipe closed by execve (O_CLOEXEC): the command runs"
    ));
    Ok(running)
}

/// How far the init is in its cgroups when clone returns.
#[derive(Debug, Clone, Copy)]
struct Placement {
    /// The cgroups exist (created before clone for CLONE_INTO_CGROUP).
    created: bool,
    /// The init was created inside them, or moves itself in after the go-ahead.
    in_cgroup: bool,
}

/// Creates the cgroups with their limits and opens `dir`, the one clone3 creates the init
/// in. On failure nothing of them is left, except a cgroup of the same name that is not
/// ours.
fn create_before_clone(
    cgroups: &dyn CgroupManager,
    dir: &Path,
    resources: &cgroups::Resources,
    explain: &Explain,
) -> Result<OwnedFd, RunError> {
    let opened = cgroups.create(resources, explain).and_then(|()| {
        nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| CgroupError::Open {
            path: dir.to_path_buf(),
            source: e.into(),
        })
    });
    match opened {
        Ok(fd) => Ok(fd),
        Err(e @ CgroupError::NameInUse { .. }) => Err(e.into()),
        Err(e) => {
            let _ = cgroups.remove(explain);
            Err(e.into())
        }
    }
}

/// The parent's part while the child sets up: id maps (followed by a go-ahead byte), then
/// cgroups (what clone did not do already); the caller sends the last go-ahead.
fn release_child(
    config: &ContainerConfig,
    cgroups: &dyn CgroupManager,
    pid: Pid,
    maps: Option<(String, String)>,
    placed: Placement,
    sync_tx: &OwnedFd,
    explain: &Explain,
) -> Result<(), RunError> {
    if let Some((uids, gids)) = maps {
        for (file, line) in [("uid_map", uids), ("gid_map", gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            explain.step(format_args!("write {} = {:?}", path.display(), line));
            std::fs::write(&path, &line).map_err(|source| RunError::IdMap { path, source })?;
        }
        go_ahead(sync_tx)?;
    }
    if !placed.created {
        cgroups.create(&config.resources, explain)?;
    }
    if !placed.in_cgroup {
        cgroups.add_process(pid.as_raw(), explain)?;
    }
    Ok(())
}

fn go_ahead(sync_tx: &OwnedFd) -> Result<(), RunError> {
    nix::unistd::write(sync_tx, b"g")
        .map(drop)
        .map_err(sys_err("releasing the container's init"))
}

/// Reads the child's failure report; `None` when the pipe closed without one (execve).
fn child_report(report_rx: &OwnedFd) -> Result<Option<RunError>, RunError> {
    let mut buf = [0u8; child::REPORT_MAX];
    let n = sys::read_full(report_rx, &mut buf).map_err(sys_err("reading the error pipe"))?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(report_error(&buf[..n])))
}

/// The error a container process reported before it could exec (see [`child::fail`]); its
/// exit code is the process's own ([`RunError::exit_code`]).
pub fn report_error(report: &[u8]) -> RunError {
    let Some((stage, errno, message)) = child::parse_report(report) else {
        return RunError::Setup {
            message: String::from_utf8_lossy(report).into_owned(),
            errno: Errno::UnknownErrno,
        };
    };
    match (stage, errno) {
        (Stage::Exec, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => RunError::NotFound {
            command: message,
            errno,
        },
        (Stage::Exec, _) => RunError::CannotExecute {
            command: message,
            errno,
        },
        (Stage::Setup, _) => RunError::Setup { message, errno },
    }
}

fn check_rootfs(path: &Path) -> Result<PathBuf, RunError> {
    let err = |reason: String| RunError::Rootfs {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| err(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(err("not a directory".into()));
    }
    if canonical == Path::new("/") {
        return Err(err("the host's / cannot be a container's root".into()));
    }
    Ok(canonical)
}

/// Docker's defaults (PATH, HOSTNAME, HOME), overridden by `-e`, in a stable order.
fn environment(config: &ContainerConfig) -> Vec<(String, String)> {
    let home = if config.user.uid == 0 { "/root" } else { "/" };
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), config.hostname.clone()),
        ("HOME".into(), home.into()),
    ];
    for (key, value) in &config.env {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    env
}

/// The paths execve will try: the command itself if it has a `/`, else each `PATH` entry.
fn candidates(command: &str, env: &[(String, String)]) -> Result<Vec<CString>, RunError> {
    if command.contains('/') {
        return Ok(vec![cstring(command, "command")?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            cstring(
                format!("{}/{command}", dir.trim_end_matches('/')),
                "command",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            hostname: "h".into(),
            rootfs: "/r".into(),
            overlay: None,
            command: vec!["sh".into()],
            env: vec![
                ("PATH".into(), "/bin:/usr/bin/".into()),
                ("A".into(), "1".into()),
            ],
            workdir: None,
            user: User::default(),
            read_only: false,
            resources: Default::default(),
            network: Network::None,
            userns: false,
            privileged: false,
            seccomp: true,
            seccomp_profile: None,
            tty: false,
            extra: extra::Extra::default(),
        }
    }

    #[test]
    fn env_overrides_defaults_in_place() {
        let env = environment(&config());
        assert_eq!(env[0], ("PATH".into(), "/bin:/usr/bin/".into()));
        assert_eq!(env[1], ("HOSTNAME".into(), "h".into()));
        assert_eq!(env[3], ("A".into(), "1".into()));
    }

    #[test]
    fn commands_are_looked_up_in_the_containers_path() {
        let env = environment(&config());
        assert_eq!(
            candidates("sh", &env).unwrap(),
            [c"/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]
        );
        assert_eq!(candidates("./x", &env).unwrap(), [c"./x".to_owned()]);
    }

    #[test]
    fn exit_codes_follow_dockers_convention() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(
            Outcome::Signaled {
                signal: 9,
                oom_killed: true
            }
            .exit_code(),
            137
        );
        let not_found = RunError::NotFound {
            command: "x".into(),
            errno: Errno::ENOENT,
        };
        assert_eq!(not_found.exit_code(), 127);
        assert_eq!(
            RunError::CannotExecute {
                command: "x".into(),
                errno: Errno::EACCES
            }
            .exit_code(),
            126
        );
        assert_eq!(
            RunError::from(ConfigError::Network("x".into())).exit_code(),
            125
        );
    }

    #[test]
    fn a_missing_rootfs_is_named() {
        let err = check_rootfs(Path::new("/nonexistent/rootfs")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rootfs"), "{err}");
        assert!(check_rootfs(Path::new("/")).is_err());
    }
}
