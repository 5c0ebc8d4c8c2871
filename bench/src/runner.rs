//! One run: launch, time `ISOLAB-READY` and exit, collect the figures and the memory use.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isolab_reports::schema::{ExitStatus, PhaseTime, RunRecord};
use isolab_runtime::explain::{PHASE_FD_ENV, PhaseMark, monotonic_ns, parse_phase_marks};
use serde_json::Value;

use crate::sampler::PssSampler;
use crate::workload::Mode;

/// The line the workload prints once it is up, in the modes that measure start-up.
pub const READY_LINE: &str = "ISOLAB-READY";
/// How much of a run's stderr is kept for the error report: the end, where the cause usually is.
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// Longer stdout lines are cut; the figures line is a few hundred bytes.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// What to launch and what to expect of it.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The full argv; `argv[0]` is looked up in `PATH` when it has no slash.
    pub argv: &'a [String],
    pub cwd: Option<&'a Path>,
    pub mode: Mode,
    pub timeout: Duration,
    /// The target writes its start-up phase marks to the descriptor `$ISOLAB_PHASE_FD`
    /// names (isolab's container and mini VM; see `isolab_runtime::explain::PhaseLog`).
    pub phases: bool,
}

/// What one successful run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub ready_ns: Option<u64>,
    pub exit_ns: u64,
    pub exit_status: ExitStatus,
    pub figures: Value,
    pub pss_kib: Option<u64>,
    pub max_rss_kib: u64,
    pub phases: Option<Vec<PhaseTime>>,
}

impl Measurement {
    pub fn into_record(self, index: u32) -> RunRecord {
        RunRecord {
            index,
            ready_ns: self.ready_ns,
            exit_ns: self.exit_ns,
            exit_status: self.exit_status,
            figures: self.figures,
            pss_kib: self.pss_kib,
            max_rss_kib: self.max_rss_kib,
            phases: self.phases,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nothing to launch: the command is empty")]
    EmptyCommand,
    #[error("starting {program}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("opening a pidfd for process {pid} (needs Linux 5.3 or later)")]
    Pidfd {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("waiting for the output of process {pid}")]
    Poll {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("reading the output of process {pid}")]
    Read {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("creating the pipe for start-up phase marks")]
    PhasePipe(#[source] io::Error),
    #[error("reaping process {pid}")]
    Reap {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("{verdict}{}", StderrNote(stderr))]
    Failed { verdict: Verdict, stderr: String },
}

/// How a run that started and ended went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Verdict {
    #[error("timed out after {}; its process group was killed", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("ended with {0}")]
    Exited(ExitStatus),
    #[error("exited without printing {READY_LINE}")]
    NoReady,
    #[error("its last stdout line is not the workload's figures ({reason}): {line:?}")]
    BadFigures { line: String, reason: String },
}

/// Appends the captured stderr to an error message, or says there was none.
struct StderrNote<'a>(&'a str);

impl fmt::Display for StderrNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.trim_end() {
            "" => f.write_str(" (stderr was empty)"),
            text => write!(f, "; its stderr ends with:\n{text}"),
        }
    }
}

/// Runs `launch` once in a process group of its own. Time stamps are taken on this thread
/// only: just before spawning, when the `ISOLAB-READY` line is read, and when the process has
/// exited and both its stdout and stderr are at end of file. Memory is sampled by `sampler`.
pub fn run_once(launch: &Launch<'_>, sampler: &PssSampler) -> Result<Measurement, RunError> {
    let (program, args) = launch.argv.split_first().ok_or(RunError::EmptyCommand)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = launch.cwd {
        command.current_dir(cwd);
    }

    let phase_pipe = launch
        .phases
        .then(PhasePipe::open)
        .transpose()
        .map_err(RunError::PhasePipe)?;
    if let Some(pipe) = &phase_pipe {
        command.env(PHASE_FD_ENV, pipe.write.as_raw_fd().to_string());
    }

    let start = Instant::now();
    let start_ns = monotonic_ns();
    let spawned = {
        let _inherited = phase_pipe
            .as_ref()
            .map(PhasePipe::inherit)
            .transpose()
            .map_err(RunError::PhasePipe)?;
        command.spawn()
    };
    let mut child = spawned.map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Only the launched process holds the write end now: its copy closes as it exits.
    let phase_marks = phase_pipe.map(PhasePipe::into_reader);
    let mut process = Spawned {
        pid: child.id(),
        reaped: false,
    };
    let pid = process.pid;
    sampler.watch(pid);
    let pidfd = pidfd_open(pid).map_err(|source| RunError::Pidfd { pid, source })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();

    let deadline = start + launch.timeout;
    let mut lines = Lines::default();
    let mut stderr_tail = Vec::new();
    let mut ready_at = None;
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut timed_out = false;
    while stdout.is_some() || stderr.is_some() || !exited {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        let wait_ms = (deadline - now).as_nanos().div_ceil(1_000_000);
        let mut fds = [
            poll_in(stdout.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
            poll_in(stderr.as_ref().map_or(-1, AsRawFd::as_raw_fd)),
            poll_in(if exited { -1 } else { pidfd.as_raw_fd() }),
        ];
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the whole call;
        // negative fds are ignored by poll.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait_ms.min(i32::MAX as u128) as libc::c_int,
            )
        };
        let at = Instant::now();
        if ready < 0 {
            let source = io::Error::last_os_error();
            if source.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RunError::Poll { pid, source });
        }
        if let (Some(pipe), true) = (&mut stdout, fds[0].revents != 0) {
            match read_some(pipe, &mut buf).map_err(|source| RunError::Read { pid, source })? {
                0 => stdout = None,
                n => {
                    if lines.feed(&buf[..n]) && ready_at.is_none() {
                        ready_at = Some(at);
                        sampler.sample_now();
                    }
                }
            }
        }
        if let (Some(pipe), true) = (&mut stderr, fds[1].revents != 0) {
            match read_some(pipe, &mut buf).map_err(|source| RunError::Read { pid, source })? {
                0 => stderr = None,
                n => keep_tail(&mut stderr_tail, &buf[..n]),
            }
        }
        if fds[2].revents != 0 {
            exited = true;
        }
    }
    let exit_ns = nanos(start.elapsed());
    if timed_out {
        process.kill_group();
    }
    // Released before reaping: until then the pid cannot name another process.
    let pss_kib = sampler.release();
    let (status, usage) = process
        .reap()
        .map_err(|source| RunError::Reap { pid, source })?;
    lines.finish();

    let stderr = || String::from_utf8_lossy(&stderr_tail).into_owned();
    let failed = |verdict| RunError::Failed {
        verdict,
        stderr: stderr(),
    };
    if timed_out {
        return Err(failed(Verdict::TimedOut(launch.timeout)));
    }
    if !status.success() {
        return Err(failed(Verdict::Exited(status)));
    }
    if launch.mode.prints_ready() && ready_at.is_none() {
        return Err(failed(Verdict::NoReady));
    }
    let figures = figures(lines.last.as_deref().unwrap_or(""), launch.mode).map_err(failed)?;
    let ready_ns = ready_at.map(|at| nanos(at - start));
    Ok(Measurement {
        phases: phase_marks
            .map(|mut pipe| {
                let marks = parse_phase_marks(&read_available(&mut pipe));
                phase_times(&marks, start_ns, ready_ns)
            })
            .filter(|phases| !phases.is_empty()),
        ready_ns,
        exit_ns,
        exit_status: status,
        figures,
        pss_kib,
        // ru_maxrss is in KiB on Linux.
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// The workload's figures: its last stdout line, a JSON object whose `mode` is the run's.
fn figures(line: &str, mode: Mode) -> Result<Value, Verdict> {
    let bad = |reason: &str| Verdict::BadFigures {
        line: line.to_owned(),
        reason: reason.to_owned(),
    };
    let value: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
    match value.get("mode") {
        _ if !value.is_object() => Err(bad("not a JSON object")),
        Some(Value::String(m)) if m == mode.name() => Ok(value),
        Some(other) => Err(bad(&format!("mode is {other}, expected \"{mode}\""))),
        None => Err(bad("no \"mode\" key")),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn poll_in(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// One read(2), retried on EINTR; poll said it will not block.
fn read_some(pipe: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match pipe.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn keep_tail(tail: &mut Vec<u8>, bytes: &[u8]) {
    tail.extend_from_slice(bytes);
    if tail.len() > STDERR_TAIL_BYTES {
        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
    }
}

/// Splits stdout into lines, remembering whether `ISOLAB-READY` came and the last other
/// non-blank line.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
    last: Option<String>,
}

impl Lines {
    /// Feeds output; true when it completed an `ISOLAB-READY` line.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut ready = false;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, complete) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
            self.partial
                .extend_from_slice(&text[..text.len().min(room)]);
            if complete {
                ready |= self.end_line();
            }
        }
        ready
    }

    /// Ends a last line that had no newline.
    fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.end_line();
        }
    }

    fn end_line(&mut self) -> bool {
        let line = String::from_utf8_lossy(&self.partial)
            .trim_end_matches('\r')
            .to_owned();
        self.partial.clear();
        if line == READY_LINE {
            return true;
        }
        if !line.trim().is_empty() {
            self.last = Some(line);
        }
        false
    }
}

/// The pipe a target writes its phase marks to: the write end is inherited by the launched
/// process (named by `$ISOLAB_PHASE_FD`), the read end stays here.
struct PhasePipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// The write end is inheritable while this lives (between clearing and restoring its
/// close-on-exec flag around the spawn).
struct Inheritable<'a>(&'a OwnedFd);

impl Drop for Inheritable<'_> {
    fn drop(&mut self) {
        // SAFETY: fcntl only sets the flags of a descriptor this process owns.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

impl PhasePipe {
    fn open() -> io::Result<PhasePipe> {
        let mut fds = [0 as RawFd; 2];
        // Both ends close-on-exec, so no other child ever inherits them; the read end never
        // blocks, so a writer that outlives the run cannot hang the harness.
        // SAFETY: pipe2 writes two descriptors into `fds`, which lives for the call.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just created both descriptors and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // O_NONBLOCK is per open file: the write end gets it too; a blocking write end suits
        // the writers better (a full pipe waits instead of losing a mark).
        // SAFETY: fcntl only sets the status flags of a descriptor this process owns.
        if unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PhasePipe { read, write })
    }

    /// Makes the write end inheritable until the guard is dropped. The harness spawns from
    /// one thread, and a pre_exec hook would cost every run a fork instead of a vfork.
    fn inherit(&self) -> io::Result<Inheritable<'_>> {
        // SAFETY: fcntl only clears the flags of a descriptor this process owns.
        if unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inheritable(&self.write))
    }

    fn into_reader(self) -> std::fs::File {
        std::fs::File::from(self.read)
    }
}

/// Everything written to the non-blocking `pipe` so far: up to end of file, or EAGAIN
/// when something still holds the write end.
fn read_available(pipe: &mut std::fs::File) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = read_some(pipe, &mut buf) {
        bytes.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The phases of a run from its marks (sorted by time) and the spawn time: each mark ends
/// the phase it names, which began at the previous mark (or the spawn); a phase named twice
/// is summed at the place of its first piece. `ready` is the rest, up to `ISOLAB-READY`.
fn phase_times(marks: &[PhaseMark], start_ns: u64, ready_ns: Option<u64>) -> Vec<PhaseTime> {
    let mut phases: Vec<PhaseTime> = Vec::new();
    let mut previous = start_ns;
    let mut add = |name: &str, ns: u64| match phases.iter_mut().find(|p| p.name == name) {
        Some(phase) => phase.ns += ns,
        None => phases.push(PhaseTime {
            name: name.to_owned(),
            ns,
        }),
    };
    for mark in marks {
        add(&mark.phase, mark.at_ns.saturating_sub(previous));
        previous = previous.max(mark.at_ns);
    }
    if let (Some(ready), false) = (ready_ns, marks.is_empty()) {
        add("ready", (start_ns + ready).saturating_sub(previous));
    }
    phases
}

/// A spawned process group whose leader is not reaped yet. Dropping it unreaped (an error or
/// a panic mid-run) kills the group and reaps the leader, so nothing is left running.
struct Spawned {
    pid: u32,
    reaped: bool,
}

impl Spawned {
    fn kill_group(&self) {
        // SAFETY: kill(2) touches no memory of ours. The group id is our unreaped child's pid,
        // so it cannot have been reused for another group.
        unsafe { libc::kill(-(self.pid as libc::pid_t), libc::SIGKILL) };
    }

    /// Waits for the leader with wait4(2), which also returns its resource usage.
    fn reap(&mut self) -> io::Result<(ExitStatus, libc::rusage)> {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `status` and `usage` are live and writable for the whole call.
            let reaped =
                unsafe { libc::wait4(self.pid as libc::pid_t, &mut status, 0, &mut usage) };
            if reaped >= 0 {
                break;
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
        self.reaped = true;
        let status = if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        };
        Ok((status, usage))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            let _ = self.reap();
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits, without reaping it.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes two integers and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, mode: Mode, timeout: Duration) -> Result<Measurement, RunError> {
        let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let sampler = PssSampler::spawn().unwrap();
        run_once(
            &Launch {
                argv: &argv,
                cwd: None,
                mode,
                timeout,
                phases: false,
            },
            &sampler,
        )
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn times_ready_before_exit_and_keeps_the_figures() {
        let m = sh(
            r#"echo ISOLAB-READY; sleep 0.2; echo '{"mode":"ready","n":1}'"#,
            Mode::Ready,
            10 * SECOND,
        )
        .unwrap();
        let ready = m.ready_ns.unwrap();
        assert!(
            ready < m.exit_ns && m.exit_ns - ready >= 200_000_000,
            "{m:?}"
        );
        assert_eq!(m.figures["n"], 1);
        assert_eq!(m.exit_status, ExitStatus::Code(0));
        // The shell lived past a sampling period, so it was sampled.
        assert!(m.pss_kib.unwrap() > 0);
        assert!(m.max_rss_kib > 0);
    }

    #[test]
    fn a_non_zero_exit_fails_with_stderr() {
        let err = sh("echo boom >&2; exit 3", Mode::Cpu, 10 * SECOND).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ended with exit code 3; its stderr ends with:\nboom"
        );
    }

    #[test]
    fn a_ready_mode_without_ready_fails() {
        let err = sh(r#"echo '{"mode":"ready"}'"#, Mode::Ready, 10 * SECOND).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exited without printing ISOLAB-READY (stderr was empty)"
        );
    }

    #[test]
    fn figures_must_be_an_object_of_the_runs_mode() {
        let err = sh(r#"echo '{"mode":"io"}'"#, Mode::Cpu, 10 * SECOND).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"its last stdout line is not the workload's figures (mode is "io", expected "cpu")"#),
            "{err}"
        );
        let err = sh("echo hello", Mode::Cpu, 10 * SECOND).unwrap_err();
        assert!(matches!(
            err,
            RunError::Failed {
                verdict: Verdict::BadFigures { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let started = Instant::now();
        // The background sleep holds stdout open: only killing the group ends the run.
        let err = sh("sleep 30 & sleep 30", Mode::Cpu, SECOND / 4).unwrap_err();
        assert!(started.elapsed() < 5 * SECOND);
        assert!(
            matches!(
                err,
                RunError::Failed {
                    verdict: Verdict::TimedOut(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_missing_program_names_it() {
        let argv = ["/nonexistent/prog".to_owned()];
        let sampler = PssSampler::spawn().unwrap();
        let launch = Launch {
            argv: &argv,
            cwd: None,
            mode: Mode::Ready,
            timeout: SECOND,
            phases: false,
        };
        let err = run_once(&launch, &sampler).unwrap_err();
        assert_eq!(err.to_string(), "starting /nonexistent/prog");
    }

    #[test]
    fn phase_marks_written_to_the_inherited_descriptor_become_phases() {
        // The shell writes marks as a target does, one line per mark.
        let script = format!(
            r#"now() {{ echo "$1 $(date +%s%N)" >&${PHASE_FD_ENV}; }}
               now launch; now mounts; now launch; echo ISOLAB-READY; echo '{{"mode":"ready"}}'"#
        );
        let argv = ["/bin/sh".to_owned(), "-c".to_owned(), script];
        let sampler = PssSampler::spawn().unwrap();
        let launch = |phases| Launch {
            argv: &argv,
            cwd: None,
            mode: Mode::Ready,
            timeout: 10 * SECOND,
            phases,
        };
        let m = run_once(&launch(true), &sampler).unwrap();
        // date's clock is not CLOCK_MONOTONIC: only the names and the sum are checked here;
        // phase_times' arithmetic is checked below.
        let phases = m.phases.expect("marks were written");
        let names: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["launch", "mounts", "ready"]);
        let off = run_once(&launch(false), &sampler);
        assert!(
            off.is_err(),
            "without the descriptor the script's write fails"
        );
    }

    #[test]
    fn phases_are_spans_between_marks_with_repeats_summed() {
        let mark = |phase: &str, at_ns| PhaseMark {
            phase: phase.to_owned(),
            at_ns,
        };
        let marks = [
            mark("launch", 1_010),
            mark("mounts", 1_030),
            mark("cgroup", 1_035),
            mark("mounts", 1_045),
        ];
        let phases = phase_times(&marks, 1_000, Some(100));
        let got: Vec<(&str, u64)> = phases.iter().map(|p| (p.name.as_str(), p.ns)).collect();
        assert_eq!(
            got,
            [("launch", 10), ("mounts", 30), ("cgroup", 5), ("ready", 55)]
        );
        assert_eq!(phases.iter().map(|p| p.ns).sum::<u64>(), 100);
        assert!(phase_times(&[], 1_000, Some(100)).is_empty());
    }

    #[test]
    fn lines_find_ready_across_chunks_and_keep_the_last_line() {
        let mut lines = Lines::default();
        assert!(!lines.feed(b"hello\nISOLAB-"));
        assert!(lines.feed(b"READY\r\n{\"mode\""));
        assert!(!lines.feed(b":\"ready\"}\n\n"));
        lines.finish();
        assert_eq!(lines.last.as_deref(), Some(r#"{"mode":"ready"}"#));
        let mut unterminated = Lines::default();
        unterminated.feed(b"a\nlast");
        unterminated.finish();
        assert_eq!(unterminated.last.as_deref(), Some("last"));
    }

    #[test]
    fn stderr_keeps_its_tail() {
        let mut tail = Vec::new();
        keep_tail(&mut tail, &vec![b'a'; STDERR_TAIL_BYTES]);
        keep_tail(&mut tail, b"end");
        assert_eq!(tail.len(), STDERR_TAIL_BYTES);
        assert!(tail.ends_with(b"aend"));
    }
}
