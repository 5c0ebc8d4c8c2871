//! Density: how many idle instances of a target fit on this host, and what each one costs.
//!
//! For each target in turn: `count` instances of the `idle` workload are started (all at
//! once, or `step` at a time), each in a process group of its own; once every instance of a
//! step has printed `ISOLAB-READY` and the kernel's memory counters have settled, the host's
//! used memory (MemTotal − MemAvailable, against a baseline taken before the first start)
//! and every instance's PSS are recorded. Then every instance gets SIGTERM, is reaped, and
//! its process group must be empty: a target that leaves anything behind fails.
//!
//! Instances are the target's runs in the result set ([`ResultKind::Density`]): time to
//! `ISOLAB-READY`, time to exit (after the SIGTERM), exit status, PSS while all ran.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use isolab_reports::schema::{
    Density, DensityStep, ExitStatus, ResultKind, ResultSet, RunRecord, SCHEMA_VERSION,
    TargetResult,
};
use isolab_reports::stats::summarize_runs;
use serde_json::Value;

use crate::fingerprint;
use crate::harness::{BenchError, Outcome, free_stem, prepare_out_dir, write_results};
use crate::procfs::{parse_host_used_kib, tree_pss_kib};
use crate::runner::READY_LINE;
use crate::target;
use crate::workload::{Mode, Sizes, Workload};

/// How long the kernel's memory counters are given to settle before they are read: per-CPU
/// counter deltas are folded into MemAvailable every `vm.stat_interval` (1 s by default).
pub const SETTLE: Duration = Duration::from_secs(1);
/// How much of an instance's stderr is kept for an error report.
const STDERR_TAIL_BYTES: usize = 4096;

/// A density measurement; the CLI fills it from `isolab bench --count`.
#[derive(Debug, Clone)]
pub struct DensityConfig {
    pub targets: Vec<String>,
    pub peers: Vec<String>,
    pub workload_bin: Option<PathBuf>,
    /// Instances per target.
    pub count: u32,
    /// Instances started per step; `None` starts all at once.
    pub step: Option<u32>,
    pub out_dir: PathBuf,
    /// For each step to be ready, and for the instances to stop after SIGTERM.
    pub timeout: Duration,
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DensityError {
    #[error("starting instance {index}")]
    Spawn {
        index: u32,
        #[source]
        source: io::Error,
    },
    #[error("waiting for the instances' output")]
    Poll(#[source] io::Error),
    #[error("reading /proc/meminfo")]
    Meminfo(#[source] io::Error),
    #[error("instance {index} ended before printing {READY_LINE}{}", tail(.stderr))]
    EndedEarly { index: u32, stderr: String },
    #[error("{waiting} of {count} instances not ready after {}", humantime::format_duration(*.timeout))]
    NotReady {
        waiting: usize,
        count: usize,
        timeout: Duration,
    },
    #[error("{0} instances still ran {1:?} after SIGTERM; their process groups were killed")]
    NotStopped(usize, Duration),
    #[error("instance {index} ended with {status} after SIGTERM{}", tail(.stderr))]
    BadExit {
        index: u32,
        status: ExitStatus,
        stderr: String,
    },
    #[error("processes of instance {0} were left after it stopped; its group was killed")]
    Leftover(u32),
}

fn tail(stderr: &str) -> String {
    match stderr.trim_end() {
        "" => String::new(),
        text => format!("; its stderr ends with:\n{text}"),
    }
}

/// Measures every target and writes the result set (`density-<date>-idle.{json,csv}`).
pub fn run(config: &DensityConfig) -> Result<Outcome, BenchError> {
    if config.count == 0 || config.step == Some(0) {
        return Err(BenchError::ZeroCount);
    }
    let targets = target::resolve(&config.targets, &config.peers)?;
    let workload = Workload::prepare(
        Mode::Idle,
        &Sizes::default(),
        config.workload_bin.as_deref(),
    )?;
    prepare_out_dir(&config.out_dir)?;
    raise_fd_limit();
    let host = fingerprint::collect();

    let mut results = Vec::new();
    for target in &targets {
        // Kept until the target is measured: it owns the target's root filesystem, if any.
        let prepared = target.prepare(&workload)?;
        let (runs, density) =
            measure(&prepared.argv, config).map_err(|source| BenchError::Density {
                target: target.name().to_owned(),
                source,
            })?;
        results.push(TargetResult {
            name: target.name().to_owned(),
            description: target.description(),
            stats: summarize_runs(&runs),
            runs,
            density: Some(density),
        });
    }
    let results = ResultSet {
        schema_version: SCHEMA_VERSION,
        kind: ResultKind::Density,
        host,
        command: config.command.clone(),
        workload: workload.info(),
        runs_per_target: config.count,
        warmup: 0,
        targets: results,
        footprint: None,
    };
    let stem = free_stem(&config.out_dir, "density", &results.host.date, Mode::Idle);
    let files = write_results(&results, &config.out_dir, &stem)?;
    Ok(Outcome { results, files })
}

/// One running instance, in a process group of its own.
struct Instance {
    index: u32,
    child: Child,
    started: Instant,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Vec<u8>,
    err_tail: Vec<u8>,
    ready_at: Option<Instant>,
    ended: Option<(Instant, ExitStatus, u64)>,
    pss_kib: Option<u64>,
}

impl Instance {
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.err_tail).into_owned()
    }

    /// Reads what is there on one of its pipes; true at end of file.
    fn drain(&mut self, stdout: bool, buf: &mut [u8]) -> bool {
        let pipe: Option<&mut dyn Read> = if stdout {
            self.stdout.as_mut().map(|p| p as &mut dyn Read)
        } else {
            self.stderr.as_mut().map(|p| p as &mut dyn Read)
        };
        let Some(pipe) = pipe else { return true };
        let n = match pipe.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return false,
            Err(_) => 0,
        };
        if n == 0 {
            if stdout {
                self.stdout = None;
            } else {
                self.stderr = None;
            }
            return true;
        }
        if stdout {
            self.out.extend_from_slice(&buf[..n]);
            if self.ready_at.is_none() && has_ready_line(&self.out) {
                self.ready_at = Some(Instant::now());
            }
        } else {
            self.err_tail.extend_from_slice(&buf[..n]);
            let excess = self.err_tail.len().saturating_sub(STDERR_TAIL_BYTES);
            self.err_tail.drain(..excess);
        }
        false
    }

    /// Reaps it if it has exited; true once reaped.
    fn try_reap(&mut self) -> bool {
        if self.ended.is_some() {
            return true;
        }
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are live and writable for the call; the pid is our
        // own unreaped child.
        let reaped = unsafe { libc::wait4(self.pid(), &mut status, libc::WNOHANG, &mut usage) };
        if reaped != self.pid() {
            return false;
        }
        let status = if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        };
        let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
        self.ended = Some((Instant::now(), status, max_rss));
        true
    }

    fn signal_group(&self, signal: libc::c_int) -> bool {
        // SAFETY: kill(2) touches no memory of ours; the group id is our child's pid, and a
        // group id cannot be reused while any member, the unreaped leader included, exists.
        unsafe { libc::kill(-self.pid(), signal) == 0 }
    }

    fn record(&self) -> RunRecord {
        let (ended, status, max_rss_kib) = self.ended.expect("records are made after reaping");
        let figures = String::from_utf8_lossy(&self.out)
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty() && *line != READY_LINE)
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null);
        RunRecord {
            index: self.index,
            ready_ns: self.ready_at.map(|at| nanos(at - self.started)),
            exit_ns: nanos(ended - self.started),
            exit_status: status,
            figures,
            pss_kib: self.pss_kib,
            max_rss_kib,
        }
    }
}

/// Every instance of one target. Dropped with instances still running (an error, a panic),
/// it kills their process groups and reaps them, so a failed measurement leaves nothing.
#[derive(Default)]
struct Fleet(Vec<Instance>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for instance in &mut self.0 {
            if instance.ended.is_none() {
                instance.signal_group(libc::SIGKILL);
                let _ = instance.child.wait();
                instance.ended = Some((Instant::now(), ExitStatus::Signal(libc::SIGKILL), 0));
            }
        }
    }
}

fn measure(
    argv: &[String],
    config: &DensityConfig,
) -> Result<(Vec<RunRecord>, Density), DensityError> {
    let host_used = || {
        fs::read_to_string("/proc/meminfo")
            .map(|text| parse_host_used_kib(&text).unwrap_or(0))
            .map_err(DensityError::Meminfo)
    };
    let baseline = host_used()?;
    let step = config.step.unwrap_or(config.count);
    let mut fleet = Fleet::default();
    let mut steps = Vec::new();
    while fleet.0.len() < config.count as usize {
        let first = fleet.0.len();
        let started = (config.count - first as u32).min(step);
        let step_start = Instant::now();
        for index in first as u32..first as u32 + started {
            fleet.0.push(spawn(argv, index)?);
        }
        wait_ready(&mut fleet.0[first..], config.timeout)?;
        let ready_ns = nanos(step_start.elapsed());
        std::thread::sleep(SETTLE);
        let used = host_used()?;
        let mut pss_sum_kib = 0;
        for instance in &mut fleet.0 {
            instance.pss_kib = tree_pss_kib(instance.child.id());
            pss_sum_kib += instance.pss_kib.unwrap_or(0);
        }
        steps.push(DensityStep {
            started,
            running: fleet.0.len() as u32,
            ready_ns,
            host_used_kib: used - baseline,
            pss_sum_kib,
        });
    }

    let stop_start = Instant::now();
    for instance in &fleet.0 {
        instance.signal_group(libc::SIGTERM);
    }
    let stopped_in_time = wait_stopped(&mut fleet.0, config.timeout)?;
    let stop_ns = nanos(stop_start.elapsed());
    if !stopped_in_time {
        let left = fleet.0.iter().filter(|i| i.ended.is_none()).count();
        return Err(DensityError::NotStopped(left, config.timeout));
    }
    for instance in &fleet.0 {
        // The leader is reaped; any other member of its group is a leftover.
        if instance.signal_group(0) {
            instance.signal_group(libc::SIGKILL);
            return Err(DensityError::Leftover(instance.index));
        }
        let (_, status, _) = instance.ended.expect("all were reaped");
        if !stopped_by_sigterm(status) {
            return Err(DensityError::BadExit {
                index: instance.index,
                status,
                stderr: instance.stderr_text(),
            });
        }
    }
    std::thread::sleep(SETTLE);
    let density = Density {
        steps,
        stop_ns,
        stopped_clean: true,
        host_used_after_stop_kib: host_used()? - baseline,
    };
    Ok((fleet.0.iter().map(Instance::record).collect(), density))
}

/// How an idle instance may end after SIGTERM: its own handler exits 0 (native, container),
/// its monitor reports the signal as 128+15 (`isolab vm run`), or the default action kills it.
fn stopped_by_sigterm(status: ExitStatus) -> bool {
    matches!(
        status,
        ExitStatus::Code(0) | ExitStatus::Signal(libc::SIGTERM)
    ) || status == ExitStatus::Code(128 + libc::SIGTERM)
}

fn spawn(argv: &[String], index: u32) -> Result<Instance, DensityError> {
    let (program, args) = argv.split_first().expect("a target's argv is never empty");
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| DensityError::Spawn { index, source })?;
    Ok(Instance {
        index,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        started,
        out: Vec::new(),
        err_tail: Vec::new(),
        ready_at: None,
        ended: None,
        pss_kib: None,
    })
}

fn poll_in(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Polls the pipes of `instances` once (up to `wait`), draining whatever is readable.
fn pump(instances: &mut [Instance], wait: Duration) -> Result<(), DensityError> {
    let mut fds: Vec<libc::pollfd> = instances
        .iter()
        .flat_map(|i| {
            [
                poll_in(i.stdout.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
                poll_in(i.stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
            ]
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the whole call;
    // negative fds are ignored.
    let ready = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int,
        )
    };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(DensityError::Poll(error));
    }
    let mut buf = [0u8; 8192];
    for (instance, pair) in instances.iter_mut().zip(fds.chunks(2)) {
        for (stdout, fd) in [(true, pair[0]), (false, pair[1])] {
            if fd.revents != 0 {
                instance.drain(stdout, &mut buf);
            }
        }
    }
    Ok(())
}

fn wait_ready(instances: &mut [Instance], timeout: Duration) -> Result<(), DensityError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(gone) = instances
            .iter_mut()
            .find(|i| i.ready_at.is_none() && i.stdout.is_none())
        {
            return Err(DensityError::EndedEarly {
                index: gone.index,
                stderr: gone.stderr_text(),
            });
        }
        let waiting = instances.iter().filter(|i| i.ready_at.is_none()).count();
        if waiting == 0 {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(DensityError::NotReady {
                waiting,
                count: instances.len(),
                timeout,
            });
        }
        pump(instances, deadline - now)?;
    }
}

/// Reaps every instance, draining their pipes meanwhile; false if some still ran at the
/// deadline.
fn wait_stopped(instances: &mut [Instance], timeout: Duration) -> Result<bool, DensityError> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut running = 0;
        for instance in instances.iter_mut() {
            if !instance.try_reap() {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        pump(instances, Duration::from_millis(2))?;
    }
    // Every leader is gone: read what is left up to end of file (a pipe still held open by
    // a leftover process is caught by the group check instead of blocking here).
    for instance in instances.iter_mut() {
        instance
            .stdout
            .take()
            .map(|mut p| p.read_to_end(&mut instance.out));
        let mut rest = Vec::new();
        instance.stderr.take().map(|mut p| p.read_to_end(&mut rest));
        instance.err_tail.extend_from_slice(&rest);
    }
    Ok(true)
}

fn has_ready_line(out: &[u8]) -> bool {
    out.split(|&b| b == b'\n')
        .rev()
        .skip(1)
        .any(|line| line.strip_suffix(b"\r").unwrap_or(line) == READY_LINE.as_bytes())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Two pipes per instance: hundreds of instances need more than the usual 1024
/// descriptors, so the soft limit is raised to the hard one.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_must_be_complete() {
        assert!(!has_ready_line(b"ISOLAB-READY"));
        assert!(has_ready_line(b"ISOLAB-READY\n"));
        assert!(has_ready_line(b"noise\nISOLAB-READY\r\nmore"));
        assert!(!has_ready_line(b"ISOLAB-READY-NOT\n"));
    }

    #[test]
    fn sigterm_endings_are_clean_and_others_are_not() {
        assert!(stopped_by_sigterm(ExitStatus::Code(0)));
        assert!(stopped_by_sigterm(ExitStatus::Code(143)));
        assert!(stopped_by_sigterm(ExitStatus::Signal(libc::SIGTERM)));
        assert!(!stopped_by_sigterm(ExitStatus::Code(1)));
        assert!(!stopped_by_sigterm(ExitStatus::Signal(libc::SIGKILL)));
    }

    fn config(count: u32, step: Option<u32>) -> DensityConfig {
        DensityConfig {
            targets: Vec::new(),
            peers: Vec::new(),
            workload_bin: None,
            count,
            step,
            out_dir: PathBuf::from("."),
            timeout: Duration::from_secs(10),
            command: Vec::new(),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        ["/bin/sh", "-c", script].map(str::to_owned).to_vec()
    }

    #[test]
    fn shell_instances_start_in_steps_and_stop_on_sigterm() {
        let argv = sh("trap 'exit 0' TERM; echo ISOLAB-READY; while :; do sleep 0.05; done");
        let (runs, density) = measure(&argv, &config(3, Some(2))).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(
            density
                .steps
                .iter()
                .map(|s| (s.started, s.running))
                .collect::<Vec<_>>(),
            [(2, 2), (1, 3)]
        );
        assert!(density.stopped_clean);
        assert!(
            runs.iter()
                .all(|r| r.ready_ns.is_some() && r.pss_kib.is_some())
        );
        assert!(density.steps[1].pss_sum_kib > 0);
    }

    #[test]
    fn an_instance_that_never_gets_ready_fails_and_is_killed() {
        let argv = sh("exec sleep 30");
        let mut cfg = config(2, None);
        cfg.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = measure(&argv, &cfg).unwrap_err();
        assert!(
            matches!(err, DensityError::NotReady { waiting: 2, .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_instance_that_ignores_sigterm_is_reported_and_killed() {
        let argv = sh("trap '' TERM; echo ISOLAB-READY; exec sleep 30");
        let mut cfg = config(1, None);
        cfg.timeout = Duration::from_millis(500);
        let err = measure(&argv, &cfg).unwrap_err();
        assert!(matches!(err, DensityError::NotStopped(1, _)), "{err}");
    }
}
