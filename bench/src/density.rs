//! Density: how many idle instances of a target fit on this host, and what each one costs.
//!
//! For each target in turn, instances of the `idle` workload are started `step` at a time
//! (each in a process group of its own, each with a name of its own where the target keeps
//! state by name) until `count` run, an instance fails to start, or another step would leave
//! less than the reserve of MemAvailable (`--keep-free`). Once every instance of a step has
//! printed `ISOLAB-READY` and the kernel's counters have settled, the step records the host's
//! used memory (MemTotal − MemAvailable) and its kernel side (Slab, KernelStack,
//! PageTables), all against a baseline taken before the first start; every instance's PSS,
//! split into the runtime's side and the instance's own (see [`Sides`]); and how long a
//! probe process takes to start and end, as a measure of the host's responsiveness.
//!
//! Then every instance gets SIGTERM and is reaped, and nothing of any instance may be left:
//! no process of its group or in a cgroup named after it, no cgroup, mount, state directory
//! or engine container carrying its name. A target that leaves anything behind fails, after
//! what was left has been removed.
//!
//! Instances are the target's runs in the result set ([`ResultKind::Density`]): time to
//! `ISOLAB-READY`, time to exit (after the SIGTERM), exit status, PSS while all ran.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use isolab_reports::schema::{
    Density, DensityStep, ExitStatus, KernelMemory, ResultKind, ResultSet, RunRecord,
    SCHEMA_VERSION, StopReason, TargetResult,
};
use isolab_reports::stats::summarize_runs;
use serde_json::Value;

use crate::chain;
use crate::fingerprint;
use crate::harness::{BenchError, Outcome, free_stem, prepare_out_dir, write_results};
use crate::procfs::{parse_host_used_kib, parse_meminfo_kib, parse_pss_kib, process_tree};
use crate::runner::READY_LINE;
use crate::target::{self, Engine, Target};
use crate::workload::{Mode, Sizes, Workload};

/// How long the kernel's memory counters are given to settle before they are read: per-CPU
/// counter deltas are folded into MemAvailable every `vm.stat_interval` (1 s by default).
pub const SETTLE: Duration = Duration::from_secs(1);
/// After the stop, the host's used memory is read every [`SETTLE`] until two readings are
/// this close (freed slabs and page tables go back through RCU and per-CPU lists)...
const STABLE_KIB: i64 = 2048;
/// ...or this long has passed.
const SETTLE_AFTER_STOP_MAX: Duration = Duration::from_secs(5);
/// MemAvailable kept free by default (`--keep-free`).
pub const DEFAULT_KEEP_FREE_KIB: u64 = 2 << 20;
/// Steps a run is split into when `--step` is not given: enough points for a slope...
pub const DEFAULT_STEPS: u32 = 10;
/// ...of at least this many instances each, so that a step's memory stands out of the
/// host's noise.
pub const MIN_DEFAULT_STEP: u32 = 10;
/// A run of adjacent private writable mappings at least this large in a VM monitor is its
/// guest RAM (one mapping of `--mem`, split only where files are mapped into it); the
/// monitor's own heap and stacks are far smaller.
const GUEST_RAM_MIN_KIB: u64 = 16 * 1024;
/// The workload's process name (`comm`, at most 15 bytes): the instance's own side of a
/// container's PSS.
const WORKLOAD_COMM: &str = "isolab-workload";
/// How much of an instance's stderr is kept for an error report.
const STDERR_TAIL_BYTES: usize = 4096;

/// A density measurement; the CLI fills it from `isolab bench --count`.
#[derive(Debug, Clone)]
pub struct DensityConfig {
    pub targets: Vec<String>,
    pub peers: Vec<String>,
    pub workload_bin: Option<PathBuf>,
    /// Instances per target, at most.
    pub count: u32,
    /// Instances started per step; `None`: `count` / [`DEFAULT_STEPS`], rounded up, at
    /// least [`MIN_DEFAULT_STEP`].
    pub step: Option<u32>,
    /// Stop before a step would leave less MemAvailable than this, KiB.
    pub keep_free_kib: u64,
    pub out_dir: PathBuf,
    /// For each step to be ready, and for the instances to stop after SIGTERM.
    pub timeout: Duration,
    pub command: Vec<String>,
}

impl DensityConfig {
    fn step(&self) -> u32 {
        self.step
            .unwrap_or_else(|| self.count.div_ceil(DEFAULT_STEPS).max(MIN_DEFAULT_STEP))
            .max(1)
    }
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
    #[error("/proc/meminfo lacks MemTotal, MemAvailable, Slab, KernelStack or PageTables")]
    MeminfoFields,
    #[error("{what} {path}")]
    Bundle {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
    #[error("left behind after every instance stopped (now removed): {}", .0.join("; "))]
    Leftover(Vec<String>),
}

impl DensityError {
    /// Whether it is an instance failing to start, which ends a run's growth but not the
    /// run: the instances reached so far are measured.
    fn is_start_failure(&self) -> bool {
        matches!(
            self,
            DensityError::Spawn { .. }
                | DensityError::EndedEarly { .. }
                | DensityError::NotReady { .. }
        )
    }
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
        let launcher = Launcher::new(target, prepared.argv.clone());
        let (runs, density) =
            measure(&launcher, config, Some(&workload.path)).map_err(|source| {
                BenchError::Density {
                    target: target.name().to_owned(),
                    source,
                }
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
        blast_radius: None,
    };
    let stem = free_stem(&config.out_dir, "density", &results.host.date, Mode::Idle);
    let files = write_results(&results, &config.out_dir, &stem)?;
    Ok(Outcome { results, files })
}

/// How a target's instances are launched and, when one has to be killed, removed. Each
/// instance is named `<tag>-<index>` where the target keeps state by name (an isolab
/// container's record and cgroup, runc's state and cgroup, an engine's container), so that
/// anything left behind is found by the tag, which no other bench process uses.
#[derive(Debug)]
pub struct Launcher {
    argv: Vec<String>,
    tag: String,
    how: How,
}

#[derive(Debug)]
enum How {
    /// Nothing outlives the process group (native, unshare, a peer command).
    Plain,
    /// A VM monitor: its guest RAM is the instance's side of its PSS.
    Vm,
    Isolab {
        isolab: String,
    },
    /// One bundle directory per instance, sharing the root filesystem of `bundle`.
    Runc {
        runc: String,
        bundle: PathBuf,
    },
    Engine {
        cli: String,
        engine: Engine,
    },
}

impl Launcher {
    pub fn new(target: &Target, argv: Vec<String>) -> Launcher {
        let how = match target {
            Target::VmMini { .. } | Target::VmLinux { .. } => How::Vm,
            Target::Container { isolab, .. } => How::Isolab {
                isolab: isolab.clone(),
            },
            // argv is `runc run --bundle DIR ID`.
            Target::Runc { runc, .. } => How::Runc {
                runc: runc.clone(),
                bundle: PathBuf::from(&argv[3]),
            },
            Target::Engine { engine, cli } => How::Engine {
                cli: cli.clone(),
                engine: *engine,
            },
            _ => How::Plain,
        };
        Launcher {
            argv,
            tag: format!("isolab-d{}-{}", std::process::id(), target.name()),
            how,
        }
    }

    /// A launcher of `argv` whose instances leave nothing but processes behind.
    pub fn plain(argv: Vec<String>) -> Launcher {
        Launcher {
            argv,
            tag: format!("isolab-d{}-plain", std::process::id()),
            how: How::Plain,
        }
    }

    pub(crate) fn name(&self, index: u32) -> String {
        format!("{}-{index}", self.tag)
    }

    /// The argv of instance `index`: the target's, with the instance's name.
    pub(crate) fn argv(&self, index: u32) -> Result<Vec<String>, DensityError> {
        let name = self.name(index);
        let with_name_after = |word: &str| {
            let mut argv = self.argv.clone();
            let at = argv
                .iter()
                .position(|w| w == word)
                .map_or(argv.len(), |p| p + 1);
            argv.splice(at..at, ["--name".to_owned(), name.clone()]);
            argv
        };
        Ok(match &self.how {
            How::Plain | How::Vm => self.argv.clone(),
            How::Isolab { .. } | How::Engine { .. } => with_name_after("run"),
            How::Runc { runc, bundle } => {
                let dir = bundle.join(format!("instance-{index}"));
                let failed = |what, path: &Path| {
                    let path = path.to_path_buf();
                    move |source| DensityError::Bundle { what, path, source }
                };
                fs::create_dir_all(&dir).map_err(failed("creating", &dir))?;
                let template = bundle.join("config.json");
                let text = fs::read(&template).map_err(failed("reading", &template))?;
                let mut config: Value =
                    serde_json::from_slice(&text).map_err(|e| DensityError::Bundle {
                        what: "parsing",
                        path: template.clone(),
                        source: e.into(),
                    })?;
                config["root"]["path"] = bundle.join("rootfs").to_string_lossy().into();
                config["linux"]["cgroupsPath"] = format!("/{name}").into();
                let path = dir.join("config.json");
                fs::write(&path, config.to_string()).map_err(failed("writing", &path))?;
                vec![
                    runc.clone(),
                    "run".to_owned(),
                    "--bundle".to_owned(),
                    dir.to_string_lossy().into_owned(),
                    name,
                ]
            }
        })
    }

    /// The argv that starts instance `index` in the background and returns (`run -d`);
    /// `None` for a target without a detached mode.
    pub(crate) fn detached_argv(&self, index: u32) -> Result<Option<Vec<String>>, DensityError> {
        let mut argv = self.argv(index)?;
        let run = argv.iter().position(|w| w == "run");
        match (&self.how, run) {
            (How::Isolab { .. } | How::Runc { .. }, Some(at)) => {
                argv.insert(at + 1, "-d".to_owned());
            }
            (How::Engine { .. }, Some(_)) => {
                for word in argv.iter_mut().filter(|w| *w == "--rm") {
                    *word = "-d".to_owned();
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(argv))
    }

    /// Removes what the target keeps of a killed instance `index`; quietly, as there may be
    /// nothing left to remove.
    pub(crate) fn remove(&self, index: u32) {
        let name = self.name(index);
        let argv: Vec<&str> = match &self.how {
            How::Plain | How::Vm => return,
            How::Isolab { isolab } => vec![isolab, "rm", "-f", &name],
            How::Runc { runc, .. } => vec![runc, "delete", "--force", &name],
            How::Engine { cli, .. } => vec![cli, "rm", "-f", &name],
        };
        let _ = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Processes outside the instances' trees that hold runtime memory for them: an
    /// engine's daemons and per-container monitors (by `comm`, at most 15 bytes).
    fn daemons(&self) -> &'static [&'static str] {
        match &self.how {
            How::Engine {
                engine: Engine::Docker,
                ..
            } => &["dockerd", "containerd", "containerd-shim"],
            How::Engine {
                engine: Engine::Podman,
                ..
            } => &["conmon"],
            _ => &[],
        }
    }

    /// Finds what is left on the host of the instances (see [`Traces`]), SIGKILLs the
    /// processes found and removes the instances `0..count` by name; returns what was found.
    /// Processes: of the instances' process groups, holding one of their output pipes, in a
    /// cgroup or with a command line carrying the tag. Cgroups, mounts, state directories
    /// and engine containers carrying the tag.
    pub(crate) fn remove_leftovers(&self, traces: &Traces, count: u32) -> Vec<String> {
        let mut found = Vec::new();
        let me = std::process::id();
        for pid in all_pids().into_iter().filter(|&pid| pid != me) {
            // A zombie has let go of everything but its pid; its parent (init, for a
            // container's orphaned init) reaps it.
            let Some(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .filter(|stat| stat_state(stat).is_some_and(|s| s != "Z" && s != "X"))
            else {
                continue;
            };
            let in_group = stat_pgid(&stat).is_some_and(|g| traces.groups.contains(&g));
            let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            // A detached container's supervisor names the container on its command line.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let names_it = String::from_utf8_lossy(&cmdline).contains(&self.tag);
            if in_group || cgroup.contains(&self.tag) || names_it || holds_pipe(pid, &traces.pipes)
            {
                found.push(format!("process {pid} ({})", comm(pid).unwrap_or_default()));
                // SAFETY: kill(2) touches no memory of ours; the process was just found
                // belonging to one of our instances.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        let mut cgroups = Vec::new();
        let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if entry.file_name().to_string_lossy().contains(&self.tag) {
                    found.push(format!("cgroup {}", path.display()));
                    cgroups.push(path);
                } else if depth < 3 {
                    dirs.push((path, depth + 1));
                }
            }
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        found.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&self.tag))
                .map(|l| format!("mount {l}")),
        );
        for dir in ["/run/isolab", "/run/runc"] {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().contains(&self.tag) {
                    found.push(format!("state {}", entry.path().display()));
                }
            }
        }
        if let How::Engine { cli, .. } = &self.how {
            let names = Command::new(cli)
                .args(["ps", "-a", "--format", "{{.Names}}"])
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            found.extend(
                names
                    .lines()
                    .filter(|n| n.contains(&self.tag))
                    .map(|n| format!("{cli} container {n}")),
            );
        }
        if !found.is_empty() {
            for index in 0..count {
                self.remove(index);
            }
        }
        // What the target's own removal did not take: its processes were killed above, so
        // the cgroups are empty, and a cgroup directory goes with rmdir, deepest first.
        cgroups.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for cgroup in cgroups {
            let _ = fs::remove_dir(&cgroup);
        }
        found
    }
}

/// How to recognise an instance's processes once its leader is gone: its process group and
/// its output pipes (by inode), which a process that left the group may still hold.
#[derive(Debug, Default)]
pub(crate) struct Traces {
    pub groups: HashSet<u32>,
    pub pipes: HashSet<u64>,
}

impl Traces {
    pub(crate) fn of(instances: &[Instance]) -> Traces {
        Traces {
            groups: instances.iter().map(|i| i.child.id()).collect(),
            pipes: instances.iter().flat_map(|i| i.pipes).flatten().collect(),
        }
    }
}

/// Whether `pid` has one of `pipes` open.
fn holds_pipe(pid: u32, pipes: &HashSet<u64>) -> bool {
    if pipes.is_empty() {
        return false;
    }
    fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let text = link.to_str()?.strip_prefix("pipe:[")?.strip_suffix(']')?;
            text.parse::<u64>().ok()
        })
        .any(|inode| pipes.contains(&inode))
}

/// The inode of the pipe behind `fd`.
fn pipe_inode(fd: Option<RawFd>) -> Option<u64> {
    let link = fs::read_link(format!("/proc/self/fd/{}", fd?)).ok()?;
    let text = link.to_str()?.strip_prefix("pipe:[")?.strip_suffix(']')?;
    text.parse().ok()
}

pub(crate) fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether `pid` is a live process (not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat).map(|s| s != "Z" && s != "X"))
        .unwrap_or(false)
}

/// The state letter from a `/proc/<pid>/stat` text (the first field after the name).
fn stat_state(stat: &str) -> Option<&str> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().next()
}

/// The process group from a `/proc/<pid>/stat` text (after the name: state, ppid, pgrp).
fn stat_pgid(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

fn pss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .as_deref()
        .and_then(parse_pss_kib)
}

/// PSS split by whom it serves, in KiB. The instance's side is its workload processes
/// (`comm` [`WORKLOAD_COMM`]) and a VM's guest RAM; the runtime's side is the rest: the
/// launcher, a supervisor, a peer's daemons and shims, a VM monitor's own code and data.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sides {
    runtime: u64,
    instance: u64,
}

impl Sides {
    /// Adds `root`'s tree, skipping processes already in `seen`; returns the tree's PSS, or
    /// `None` when `root` itself cannot be read (it has exited).
    fn add_tree(&mut self, root: u32, guest_ram: bool, seen: &mut HashSet<u32>) -> Option<u64> {
        let root_pss = pss_kib(root)?;
        let mut total = 0;
        for pid in process_tree(root) {
            if !seen.insert(pid) {
                continue;
            }
            let pss = if pid == root {
                Some(root_pss)
            } else {
                pss_kib(pid)
            };
            let Some(pss) = pss else {
                continue;
            };
            total += pss;
            if comm(pid).as_deref() == Some(WORKLOAD_COMM) {
                self.instance += pss;
            } else {
                let guest = if guest_ram { guest_ram_pss_kib(pid) } else { 0 };
                self.instance += guest;
                self.runtime += pss.saturating_sub(guest);
            }
        }
        Some(total)
    }

    /// Every process named in `daemons` and its tree.
    fn of_daemons(daemons: &[&str], seen: &mut HashSet<u32>) -> Sides {
        let mut sides = Sides::default();
        if daemons.is_empty() {
            return sides;
        }
        for pid in all_pids() {
            if comm(pid).is_some_and(|c| daemons.contains(&c.as_str())) {
                sides.add_tree(pid, false, seen);
            }
        }
        sides
    }
}

/// The PSS of the guest RAM of VM monitor `pid`, in KiB; 0 when it has none.
fn guest_ram_pss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps"))
        .map(|smaps| guest_ram_in_smaps(&smaps))
        .unwrap_or(0)
}

/// In an `smaps` text: the PSS of the largest run of adjacent private writable mappings
/// (not the heap or a stack) spanning at least [`GUEST_RAM_MIN_KIB`].
fn guest_ram_in_smaps(smaps: &str) -> u64 {
    // (start, end, private and writable, PSS KiB) of each mapping.
    let mut vmas: Vec<(u64, u64, bool, u64)> = Vec::new();
    for line in smaps.lines() {
        if let Some(value) = line.strip_prefix("Pss:") {
            if let Some(last) = vmas.last_mut() {
                last.3 = value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let Some((start, end)) = words
            .next()
            .and_then(|range| range.split_once('-'))
            .and_then(|(s, e)| {
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                ))
            })
        else {
            continue;
        };
        let perms = words.next().unwrap_or_default();
        // After the permissions: offset, device, inode, then the path if any.
        let path = words.nth(3).unwrap_or_default();
        let writable = perms.starts_with("rw") && perms.ends_with('p') && !path.starts_with('[');
        vmas.push((start, end, writable, 0));
    }
    // (end, span in bytes, PSS) of the current run; (span, PSS) of the largest.
    let mut run: Option<(u64, u64, u64)> = None;
    let mut best = (GUEST_RAM_MIN_KIB * 1024, 0);
    for &(start, end, writable, pss) in &vmas {
        run = match run {
            Some((run_end, span, sum)) if writable && run_end == start => {
                Some((end, span + (end - start), sum + pss))
            }
            _ if writable => Some((end, end - start, pss)),
            _ => None,
        };
        if let Some((_, span, sum)) = run.filter(|&(_, span, _)| span >= best.0) {
            best = (span, sum);
        }
    }
    best.1
}

/// The /proc/meminfo figures a step records, in KiB.
#[derive(Debug, Clone, Copy)]
struct Meminfo {
    used: i64,
    available: i64,
    slab: i64,
    kernel_stack: i64,
    page_tables: i64,
}

impl Meminfo {
    fn read() -> Result<Meminfo, DensityError> {
        let text = fs::read_to_string("/proc/meminfo").map_err(DensityError::Meminfo)?;
        let field = |name| parse_meminfo_kib(&text, name).ok_or(DensityError::MeminfoFields);
        Ok(Meminfo {
            used: parse_host_used_kib(&text).ok_or(DensityError::MeminfoFields)?,
            available: field("MemAvailable")?,
            slab: field("Slab")?,
            kernel_stack: field("KernelStack")?,
            page_tables: field("PageTables")?,
        })
    }

    fn kernel_since(&self, base: &Meminfo) -> KernelMemory {
        KernelMemory {
            slab_kib: self.slab - base.slab,
            kernel_stack_kib: self.kernel_stack - base.kernel_stack,
            page_tables_kib: self.page_tables - base.page_tables,
        }
    }
}

/// Host responsiveness: how long the workload's `ready` mode, run natively, takes from
/// spawn to being reaped; `None` if it could not run.
fn probe(workload: &str) -> Option<u64> {
    let start = Instant::now();
    let status = Command::new(workload)
        .arg("ready")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status.success().then(|| nanos(start.elapsed()))
}

/// One running instance, in a process group of its own.
pub(crate) struct Instance {
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
    /// It failed to start and was killed: not one of the runs.
    failed: bool,
    /// The inodes of its stdout and stderr pipes.
    pipes: [Option<u64>; 2],
}

impl Instance {
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.err_tail).into_owned()
    }

    /// Reads what is there on one of its pipes.
    fn drain(&mut self, stdout: bool, buf: &mut [u8]) {
        let pipe: Option<&mut dyn Read> = if stdout {
            self.stdout.as_mut().map(|p| p as &mut dyn Read)
        } else {
            self.stderr.as_mut().map(|p| p as &mut dyn Read)
        };
        let Some(pipe) = pipe else { return };
        let n = match pipe.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            if stdout {
                self.stdout = None;
            } else {
                self.stderr = None;
            }
            return;
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

    pub(crate) fn signal_group(&self, signal: libc::c_int) -> bool {
        // SAFETY: kill(2) touches no memory of ours; the group id is our child's pid, and a
        // group id cannot be reused while any member, the unreaped leader included, exists.
        unsafe { libc::kill(-self.pid(), signal) == 0 }
    }

    /// SIGKILLs its group, reaps it and removes what its target keeps of it.
    pub(crate) fn kill(&mut self, launcher: &Launcher) {
        if self.ended.is_none() {
            self.signal_group(libc::SIGKILL);
            let _ = self.child.wait();
            self.ended = Some((Instant::now(), ExitStatus::Signal(libc::SIGKILL), 0));
        }
        launcher.remove(self.index);
    }

    pub(crate) fn record(&self) -> RunRecord {
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
            phases: None,
        }
    }
}

/// Every instance of one target. Dropped with instances still running (an error, a panic),
/// it kills and removes them, so a failed measurement leaves nothing.
struct Fleet<'l> {
    launcher: &'l Launcher,
    instances: Vec<Instance>,
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            if instance.ended.is_none() {
                instance.kill(self.launcher);
            }
        }
    }
}

impl Fleet<'_> {
    fn running(&self) -> u32 {
        self.instances.iter().filter(|i| !i.failed).count() as u32
    }
}

/// Starts instances of `launcher` step by step (see the module's comment); `probe_with`,
/// the workload's path, is run natively after each step.
fn measure(
    launcher: &Launcher,
    config: &DensityConfig,
    probe_with: Option<&str>,
) -> Result<(Vec<RunRecord>, Density), DensityError> {
    let baseline = Meminfo::read()?;
    let daemons_before = Sides::of_daemons(launcher.daemons(), &mut HashSet::new());
    let step = config.step();
    let mut fleet = Fleet {
        launcher,
        instances: Vec::new(),
    };
    let mut steps = Vec::new();
    let mut stop = (StopReason::Completed, None);
    while fleet.running() < config.count {
        let running = fleet.running();
        let next = (config.count - running).min(step);
        let now = Meminfo::read()?;
        // What an instance costs so far: the host's view, unless the rest of the host's
        // churn hides it below the instances' own PSS.
        let used = u64::try_from(now.used - baseline.used).unwrap_or(0);
        let pss = steps.last().map_or(0, |s: &DensityStep| s.pss_sum_kib);
        let each = used.max(pss) / u64::from(running.max(1));
        let left = u64::try_from(now.available)
            .unwrap_or(0)
            .saturating_sub(each * u64::from(next));
        if left < config.keep_free_kib {
            stop = (
                StopReason::MemoryReserve,
                Some(format!(
                    "MemAvailable {} MiB; {next} more instances at {each} KiB each would leave \
                     {} MiB, below the {} MiB kept free",
                    now.available / 1024,
                    left / 1024,
                    config.keep_free_kib / 1024
                )),
            );
            break;
        }
        let first = fleet.instances.len();
        let step_start = Instant::now();
        let mut failure = None;
        for index in first as u32..first as u32 + next {
            match launcher.argv(index).and_then(|argv| spawn(&argv, index)) {
                Ok(instance) => fleet.instances.push(instance),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if failure.is_none() {
            failure = wait_ready(&mut fleet.instances[first..], config.timeout).err();
        }
        if let Some(error) = failure {
            if !error.is_start_failure() || steps.is_empty() {
                return Err(error);
            }
            // The step's other starts finish first: killed mid-start, a runtime cannot undo
            // what it set up (an `isolab run` SIGKILLed between making its cgroups and
            // starting its init leaves the cgroups). Those that got ready run on until the
            // stop, uncounted, as the step is not complete; the rest, ended or still not
            // ready at the timeout, are killed and removed.
            settle(&mut fleet.instances[first..], config.timeout)?;
            for instance in &mut fleet.instances[first..] {
                if instance.ready_at.is_none() {
                    instance.kill(launcher);
                    instance.failed = true;
                }
            }
            stop = (StopReason::StartFailed, Some(chain(&error)));
            break;
        }
        let ready_ns = nanos(step_start.elapsed());
        std::thread::sleep(SETTLE);
        let now = Meminfo::read()?;
        let mut sides = Sides::default();
        let mut seen = HashSet::new();
        let mut pss_sum_kib = 0;
        for instance in &mut fleet.instances {
            instance.pss_kib = sides.add_tree(
                instance.child.id(),
                matches!(launcher.how, How::Vm),
                &mut seen,
            );
            pss_sum_kib += instance.pss_kib.unwrap_or(0);
        }
        let daemons = Sides::of_daemons(launcher.daemons(), &mut seen);
        sides.runtime += daemons.runtime.saturating_sub(daemons_before.runtime);
        sides.instance += daemons.instance.saturating_sub(daemons_before.instance);
        steps.push(DensityStep {
            started: next,
            running: fleet.running(),
            ready_ns,
            host_used_kib: now.used - baseline.used,
            pss_sum_kib,
            runtime_pss_kib: Some(sides.runtime),
            instance_pss_kib: Some(sides.instance),
            kernel: Some(now.kernel_since(&baseline)),
            probe_ns: probe_with.and_then(probe),
        });
    }

    let stop_start = Instant::now();
    for instance in fleet.instances.iter().filter(|i| i.ended.is_none()) {
        instance.signal_group(libc::SIGTERM);
    }
    let stopped_in_time = wait_stopped(&mut fleet.instances, config.timeout)?;
    let stop_ns = nanos(stop_start.elapsed());
    let not_stopped = fleet.instances.iter().filter(|i| i.ended.is_none()).count();
    // What is still running is killed and removed here, before anything is checked.
    for instance in &mut fleet.instances {
        if instance.ended.is_none() {
            instance.kill(launcher);
        }
    }
    let left =
        launcher.remove_leftovers(&Traces::of(&fleet.instances), fleet.instances.len() as u32);
    if !left.is_empty() {
        return Err(DensityError::Leftover(left));
    }
    if !stopped_in_time {
        return Err(DensityError::NotStopped(not_stopped, config.timeout));
    }
    for instance in fleet.instances.iter().filter(|i| !i.failed) {
        let (_, status, _) = instance.ended.expect("all were reaped");
        if !stopped_by_sigterm(status) {
            return Err(DensityError::BadExit {
                index: instance.index,
                status,
                stderr: instance.stderr_text(),
            });
        }
    }
    let (settle_ns, after) = settle_after_stop()?;
    let density = Density {
        steps,
        stop_ns,
        stopped_clean: true,
        host_used_after_stop_kib: after.used - baseline.used,
        requested: Some(config.count),
        stop_reason: Some(stop.0),
        stop_detail: stop.1,
        keep_free_kib: Some(config.keep_free_kib),
        settle_ns: Some(settle_ns),
    };
    let runs = fleet
        .instances
        .iter()
        .filter(|i| !i.failed)
        .map(Instance::record)
        .collect();
    Ok((runs, density))
}

/// Reads the host's memory every [`SETTLE`] until two readings agree within
/// [`STABLE_KIB`] or [`SETTLE_AFTER_STOP_MAX`] has passed: the time it took, and the last
/// reading.
fn settle_after_stop() -> Result<(u64, Meminfo), DensityError> {
    let start = Instant::now();
    let mut last = Meminfo::read()?;
    loop {
        std::thread::sleep(SETTLE);
        let now = Meminfo::read()?;
        if (now.used - last.used).abs() < STABLE_KIB || start.elapsed() >= SETTLE_AFTER_STOP_MAX {
            return Ok((nanos(start.elapsed()), now));
        }
        last = now;
    }
}

/// How an idle instance may end after SIGTERM: its own handler exits 0 (native, container),
/// its monitor reports the signal as 128+15 (`isolab vm run`), or the default action kills it.
pub(crate) fn stopped_by_sigterm(status: ExitStatus) -> bool {
    matches!(
        status,
        ExitStatus::Code(0) | ExitStatus::Signal(libc::SIGTERM)
    ) || status == ExitStatus::Code(128 + libc::SIGTERM)
}

pub(crate) fn spawn(argv: &[String], index: u32) -> Result<Instance, DensityError> {
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
    let pipes = [
        pipe_inode(child.stdout.as_ref().map(AsRawFd::as_raw_fd)),
        pipe_inode(child.stderr.as_ref().map(AsRawFd::as_raw_fd)),
    ];
    Ok(Instance {
        index,
        pipes,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        started,
        out: Vec::new(),
        err_tail: Vec::new(),
        ready_at: None,
        ended: None,
        pss_kib: None,
        failed: false,
    })
}

fn poll_in(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Polls the pipes of `instances` once (up to `wait`), draining whatever is readable;
/// returns how many pipes were.
fn pump(instances: &mut [Instance], wait: Duration) -> Result<usize, DensityError> {
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
            wait.as_millis().clamp(0, i32::MAX as u128) as libc::c_int,
        )
    };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
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
    Ok(ready as usize)
}

pub(crate) fn wait_ready(
    instances: &mut [Instance],
    timeout: Duration,
) -> Result<(), DensityError> {
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
        pump(instances, (deadline - now).max(Duration::from_millis(1)))?;
    }
}

/// Drains the instances' pipes until each has either printed ISOLAB-READY or ended (closed
/// its stdout), or until `timeout`.
fn settle(instances: &mut [Instance], timeout: Duration) -> Result<(), DensityError> {
    let deadline = Instant::now() + timeout;
    while instances
        .iter()
        .any(|i| i.ready_at.is_none() && i.stdout.is_some())
    {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        pump(instances, deadline - now)?;
    }
    Ok(())
}

/// Reaps every instance, draining their pipes meanwhile; false if some still ran at the
/// deadline.
pub(crate) fn wait_stopped(
    instances: &mut [Instance],
    timeout: Duration,
) -> Result<bool, DensityError> {
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
    // Every leader is gone: read what their pipes still hold without waiting for end of
    // file, which a leftover process holding a pipe open would never give (the leftover
    // check finds it instead).
    while pump(instances, Duration::ZERO)? > 0 {}
    for instance in instances.iter_mut() {
        instance.stdout = None;
        instance.stderr = None;
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
pub(crate) fn raise_fd_limit() {
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
            keep_free_kib: 0,
            out_dir: PathBuf::from("."),
            timeout: Duration::from_secs(10),
            command: Vec::new(),
        }
    }

    fn sh(script: &str) -> Launcher {
        Launcher::plain(["/bin/sh", "-c", script].map(str::to_owned).to_vec())
    }

    const IDLE: &str = "trap 'exit 0' TERM; echo ISOLAB-READY; while :; do sleep 0.05; done";

    #[test]
    fn shell_instances_start_in_steps_and_stop_on_sigterm() {
        let (runs, density) = measure(&sh(IDLE), &config(3, Some(2)), Some("/bin/true")).unwrap();
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
        assert_eq!(density.stop_reason, Some(StopReason::Completed));
        assert_eq!(density.reached(), 3);
        assert!(
            runs.iter()
                .all(|r| r.ready_ns.is_some() && r.pss_kib.is_some())
        );
        let last = &density.steps[1];
        assert!(last.pss_sum_kib > 0);
        // No workload process: the shells are all runtime side.
        assert_eq!(last.instance_pss_kib, Some(0));
        assert_eq!(last.runtime_pss_kib, Some(last.pss_sum_kib));
        assert!(last.kernel.is_some() && last.probe_ns.is_some());
    }

    #[test]
    fn the_default_step_gives_ten_points_of_ten_or_more() {
        assert_eq!(config(1000, None).step(), 100);
        assert_eq!(config(250, None).step(), 25);
        assert_eq!(config(25, None).step(), 10);
        assert_eq!(config(3, None).step(), 10);
        assert_eq!(config(3, Some(1)).step(), 1);
    }

    #[test]
    fn a_start_failing_midway_ends_the_growth_and_keeps_what_was_reached() {
        let tickets = tempfile::tempdir().unwrap();
        // Each start takes the next ticket (mkdir is atomic); the fourth and later fail at
        // once, the third is slow to get ready: a real process either way.
        let script = format!(
            "n=1; while ! mkdir {0}/$n 2>/dev/null; do n=$((n + 1)); done; \
             [ $n -gt 3 ] && {{ echo no room >&2; exit 1; }}; [ $n -eq 3 ] && sleep 0.5; {IDLE}",
            tickets.path().display()
        );
        let (runs, density) = measure(&sh(&script), &config(10, Some(2)), None).unwrap();
        assert_eq!(density.stop_reason, Some(StopReason::StartFailed));
        // Steps of two: 2 ran, then the second step's second start failed.
        assert_eq!(density.reached(), 2);
        assert!(
            density.stop_detail.as_deref().unwrap().contains("no room"),
            "{density:?}"
        );
        // The third start was let finish, not killed when the fourth failed, and ran until
        // the stop (its step is not counted).
        assert_eq!(runs.len(), 3, "{runs:?}");
    }

    #[test]
    fn a_first_step_that_fails_is_an_error() {
        let err = measure(&sh("exit 3"), &config(2, None), None).unwrap_err();
        assert!(matches!(err, DensityError::EndedEarly { .. }), "{err}");
    }

    #[test]
    fn the_memory_reserve_stops_the_growth() {
        let mut cfg = config(4, Some(1));
        cfg.keep_free_kib = u64::MAX / 2;
        let (runs, density) = measure(&sh(IDLE), &cfg, None).unwrap();
        assert!(runs.is_empty());
        assert_eq!(density.stop_reason, Some(StopReason::MemoryReserve));
        assert!(density.stop_detail.unwrap().contains("kept free"));
    }

    #[test]
    fn an_instance_that_never_gets_ready_fails_and_is_killed() {
        let mut cfg = config(2, None);
        cfg.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = measure(&sh("exec sleep 30"), &cfg, None).unwrap_err();
        assert!(
            matches!(err, DensityError::NotReady { waiting: 2, .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_instance_that_ignores_sigterm_is_reported_and_killed() {
        let mut cfg = config(1, None);
        cfg.timeout = Duration::from_millis(500);
        let err = measure(
            &sh("trap '' TERM; echo ISOLAB-READY; exec sleep 30"),
            &cfg,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, DensityError::NotStopped(1, _)), "{err}");
    }

    #[test]
    fn a_process_escaping_its_group_is_found_named_and_killed() {
        // setsid puts the sleeper in a session (and group) of its own, out of the group's
        // reach; it still holds the instance's output pipes.
        let launcher = sh(&format!("setsid sleep 300 & {IDLE}"));
        let mut cfg = config(1, None);
        cfg.timeout = Duration::from_secs(5);
        let err = measure(&launcher, &cfg, None).unwrap_err();
        let DensityError::Leftover(left) = &err else {
            panic!("{err}");
        };
        assert!(left.iter().any(|l| l.contains("(sleep)")), "{left:?}");
        let pid: u32 = left[0]
            .strip_prefix("process ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse().ok())
            .unwrap();
        // Killed: gone once its parent, init, reaps it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    const SMAPS: &str = "\
5555000-5556000 rw-p 00000000 00:00 0 [heap]
Pss:                  40 kB
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
Pss:                 300 kB
7f0004000000-7f0004100000 rw-p 00000000 08:01 42 /w/isolab-workload
Pss:                 200 kB
7f0004100000-7f0008000000 rw-p 00000000 00:00 0
Pss:                  60 kB
7f0009000000-7f0009100000 r-xp 00000000 08:01 43 /bin/isolab
Pss:                 500 kB
7f0009100000-7f0009200000 rw-p 00000000 00:00 0
Pss:                   8 kB
";

    #[test]
    fn guest_ram_is_the_large_writable_run_however_files_split_it() {
        assert_eq!(guest_ram_in_smaps(SMAPS), 560);
        // A process without one has none.
        let small: String = SMAPS
            .lines()
            .take(2)
            .chain(SMAPS.lines().skip(8))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(guest_ram_in_smaps(&small), 0);
    }

    #[test]
    fn pgid_survives_odd_command_names() {
        assert_eq!(stat_pgid("4242 (a) b (c) S 17 4240 4242 0"), Some(4240));
    }
}
