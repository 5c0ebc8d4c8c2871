//! Blast radius: what SIGKILLing one runtime process takes down
//! (`isolab bench --experiment daemon-kill`).
//!
//! Several idle instances of every kind run side by side: isolab containers started with
//! `run -d` (each watched by a supervisor of its own), runc containers started with
//! `run -d` (no runtime process stays), podman and docker containers started with `run -d`,
//! and mini VMs (one monitor process each). Then, at once: dockerd and containerd are
//! SIGKILLed, and so are one podman container's conmon, one isolab container's supervisor
//! and one mini VM's monitor. After a pause the survivors are counted, the killed daemons
//! are started again, and every instance is asked to answer and to be managed (see
//! [`BlastKind`] for the definitions). Everything is removed at the end, and nothing
//! carrying the run's names may be left.

use std::fs;
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use isolab_reports::schema::{
    BlastKind, BlastRadius, BlastSkipped, ExitStatus, ResultKind, ResultSet, RunRecord,
    SCHEMA_VERSION, TargetResult,
};
use isolab_reports::stats::summarize_runs;
use serde_json::{Value, json};

use crate::chain;
use crate::density::{
    self, DensityError, Instance, Launcher, Traces, alive, all_pids, comm, spawn,
    stopped_by_sigterm, wait_ready, wait_stopped,
};
use crate::fingerprint;
use crate::harness::{BenchError, Outcome, free_stem, prepare_out_dir, write_results};
use crate::runner::READY_LINE;
use crate::target::{self, Engine, Target, TargetError};
use crate::workload::{Mode, Sizes, Workload};

/// The kinds the experiment knows, in the order they are started.
pub const KINDS: [&str; 5] = ["container", "runc", "podman", "docker", "vm-mini"];
/// Instances per kind by default, and with `--quick`.
pub const DEFAULT_PER_KIND: u32 = 3;
pub const QUICK_PER_KIND: u32 = 2;
/// How long the kills are given to take effect (a shim noticing its daemon is gone, a
/// container's init reparented) before the survivors are counted.
const AFTER_KILL: Duration = Duration::from_secs(2);
/// How long a started dockerd is given to act on the containers it finds (without
/// live-restore it stops them) before they are counted again.
const AFTER_RESTORE: Duration = Duration::from_secs(3);
/// For each command sent to a manager (start, exec, ps, stop, rm).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// `stop -t`: seconds between SIGTERM and SIGKILL; the idle workload ends on SIGTERM.
const STOP_GRACE: &str = "5";

#[derive(Debug, Clone)]
pub struct BlastConfig {
    /// Kinds to run (see [`KINDS`]); empty: all of them.
    pub targets: Vec<String>,
    pub workload_bin: Option<PathBuf>,
    pub per_kind: u32,
    pub out_dir: PathBuf,
    /// For the mini VMs to be ready, and to stop after SIGTERM.
    pub timeout: Duration,
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlastError {
    #[error("--experiment daemon-kill measures {kinds}; `{0}` is none of them", kinds = KINDS.join(", "))]
    UnknownKind(String),
    #[error("--count must be at least 1")]
    ZeroCount,
    #[error(transparent)]
    Bench(#[from] Box<BenchError>),
    #[error("target `{target}`: starting instance {index}: {detail}")]
    Start {
        target: String,
        index: u32,
        detail: String,
    },
    #[error("target `{target}`: {source}")]
    Instances {
        target: String,
        #[source]
        source: DensityError,
    },
    #[error("restarting dockerd")]
    Restore(#[source] TargetError),
    #[error("left behind after the experiment (now removed): {}", .0.join("; "))]
    Leftover(Vec<String>),
}

impl From<BenchError> for BlastError {
    fn from(error: BenchError) -> BlastError {
        BlastError::Bench(Box::new(error))
    }
}

impl BlastError {
    /// Whether the command line asked for something that cannot be (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, BlastError::UnknownKind(_) | BlastError::ZeroCount)
    }
}

/// Runs the experiment and writes its result set (`blast-<date>-idle.{json,csv}`).
pub fn run(config: &BlastConfig) -> Result<Outcome, BlastError> {
    if config.per_kind == 0 {
        return Err(BlastError::ZeroCount);
    }
    let asked: Vec<&str> = if config.targets.is_empty() {
        KINDS.to_vec()
    } else {
        config.targets.iter().map(|t| t.trim()).collect()
    };
    if let Some(unknown) = asked.iter().find(|t| !KINDS.contains(t)) {
        return Err(BlastError::UnknownKind((*unknown).to_owned()));
    }
    let workload = Workload::prepare(
        Mode::Idle,
        &Sizes::default(),
        config.workload_bin.as_deref(),
    )
    .map_err(BenchError::from)?;
    prepare_out_dir(&config.out_dir).map_err(BlastError::from)?;
    density::raise_fd_limit();
    let host = fingerprint::collect();

    let mut skipped = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    for name in KINDS {
        if !asked.contains(&name) {
            if name != "container" && name != "vm-mini" {
                skipped.push(BlastSkipped {
                    target: name.to_owned(),
                    reason: "not in --target".to_owned(),
                });
            }
            continue;
        }
        let target = match Target::named(name) {
            Ok(target) => target,
            // A peer that is not installed is skipped; isolab's own kinds must run.
            Err(e) if e.host_lacks() && !matches!(name, "container" | "vm-mini") => {
                skipped.push(BlastSkipped {
                    target: name.to_owned(),
                    reason: e.to_string(),
                });
                continue;
            }
            Err(e) => return Err(BenchError::from(e).into()),
        };
        let prepared = target.prepare(&workload).map_err(BenchError::from)?;
        let launcher = Launcher::new(&target, prepared.argv.clone());
        let mut group = Group {
            target,
            launcher,
            _prepared: prepared,
            members: Vec::new(),
            vms: Vec::new(),
            killed: None,
        };
        // Pushed first, so that a failed start still has everything removed below.
        let started = group.start(config);
        groups.push(group);
        if let Err(e) = started {
            cleanup(&groups);
            return Err(e);
        }
    }

    let outcome = experiment(&mut groups, config);
    let left = cleanup(&groups);
    let (killed, restored) = outcome?;
    if !left.is_empty() {
        return Err(BlastError::Leftover(left));
    }

    let kinds: Vec<BlastKind> = groups.iter().map(Group::summary).collect();
    let targets = groups
        .iter()
        .map(|g| {
            let runs: Vec<RunRecord> = g.members.iter().map(Member::record).collect();
            TargetResult {
                name: g.target.name().to_owned(),
                description: g.target.description(),
                stats: summarize_runs(&runs),
                runs,
                density: None,
            }
        })
        .collect();
    let results = ResultSet {
        schema_version: SCHEMA_VERSION,
        kind: ResultKind::BlastRadius,
        host,
        command: config.command.clone(),
        workload: workload.info(),
        runs_per_target: config.per_kind,
        warmup: 0,
        targets,
        footprint: None,
        blast_radius: Some(BlastRadius {
            killed,
            restored,
            settle_ns: AFTER_KILL.as_nanos() as u64,
            kinds,
            skipped,
        }),
    };
    let stem = free_stem(&config.out_dir, "blast", &results.host.date, Mode::Idle);
    let files = write_results(&results, &config.out_dir, &stem).map_err(BenchError::from)?;
    Ok(Outcome { results, files })
}

/// The kills, the counts, the restores, and the questions to every instance. Returns what
/// was killed and what was restarted.
fn experiment(
    groups: &mut [Group],
    config: &BlastConfig,
) -> Result<(Vec<String>, Vec<String>), BlastError> {
    let mut killed = Vec::new();
    let mut docker_cli = None;
    for group in groups.iter_mut() {
        let victims = group.victims();
        for (pid, what) in &victims {
            sigkill(*pid);
            killed.push(format!("{what} (pid {pid})"));
        }
        if let Target::Engine {
            engine: Engine::Docker,
            cli,
        } = &group.target
        {
            docker_cli = Some(cli.clone());
        }
        group.killed = describe(&group.target, &victims);
    }
    std::thread::sleep(AFTER_KILL);
    for group in groups.iter_mut() {
        for member in &mut group.members {
            member.running_after_kill = member.alive();
        }
    }
    let mut restored = Vec::new();
    if let Some(cli) = docker_cli {
        let pid = target::ensure_dockerd(&cli).map_err(BlastError::Restore)?;
        restored.push(match pid {
            Some(pid) => format!("dockerd (pid {pid})"),
            None => "dockerd (already answering)".to_owned(),
        });
        std::thread::sleep(AFTER_RESTORE);
    }
    for group in groups.iter_mut() {
        for member in &mut group.members {
            member.running_after_restore = member.alive();
        }
        group.ask(config)?;
    }
    Ok((killed, restored))
}

/// Removes every instance of every group, then looks for anything left; what it returns
/// was left and has been removed as far as the managers could.
fn cleanup(groups: &[Group]) -> Vec<String> {
    let mut left = Vec::new();
    for group in groups {
        for member in &group.members {
            group.launcher.remove(member.index);
        }
        let traces = Traces::of(&group.vms);
        left.extend(
            group
                .launcher
                .remove_leftovers(&traces, group.members.len() as u32),
        );
    }
    left
}

/// One instance, whatever its kind.
#[derive(Debug)]
struct Member {
    index: u32,
    /// The workload's host pid (a VM: its monitor's), found after the start.
    pid: u32,
    start_ns: u64,
    /// Its own runtime process was killed.
    hit: bool,
    running_after_kill: bool,
    running_after_restore: bool,
    answered: bool,
    managed: bool,
    /// How its stop ended, and when, from its start.
    stop: Option<(ExitStatus, u64)>,
    started: Instant,
}

impl Member {
    fn alive(&self) -> bool {
        alive(self.pid)
    }

    fn record(&self) -> RunRecord {
        let (status, exit_ns) = self.stop.unwrap_or((ExitStatus::Signal(libc::SIGKILL), 0));
        RunRecord {
            index: self.index,
            ready_ns: Some(self.start_ns),
            exit_ns,
            exit_status: status,
            figures: json!({
                "hit": self.hit,
                "running_after_kill": self.running_after_kill,
                "running_after_restore": self.running_after_restore,
                "answered": self.answered,
                "managed": self.managed,
            }),
            pss_kib: None,
            max_rss_kib: 0,
            phases: None,
        }
    }
}

/// The instances of one kind.
struct Group {
    target: Target,
    launcher: Launcher,
    /// Owns the root filesystem or bundle the instances run in.
    _prepared: target::Prepared,
    members: Vec<Member>,
    /// The mini VMs' monitors, children of this process (empty for other kinds).
    vms: Vec<Instance>,
    killed: Option<String>,
}

impl Group {
    fn name(&self) -> &str {
        self.target.name()
    }

    fn start(&mut self, config: &BlastConfig) -> Result<(), BlastError> {
        let target = self.name().to_owned();
        let failed = |index, detail: String| BlastError::Start {
            target: target.clone(),
            index,
            detail,
        };
        for index in 0..config.per_kind {
            let started = Instant::now();
            let argv = self
                .launcher
                .detached_argv(index)
                .map_err(|e| failed(index, chain(&e)))?;
            let pid = match argv {
                Some(argv) => {
                    let out = output(&argv).ok_or_else(|| failed(index, "timed out".into()))?;
                    if !out.0.success() {
                        return Err(failed(index, out.2));
                    }
                    self.workload_pid(index)
                        .ok_or_else(|| failed(index, "its workload process was not found".into()))?
                }
                None => {
                    let argv = self
                        .launcher
                        .argv(index)
                        .map_err(|e| failed(index, chain(&e)))?;
                    let vm = spawn(&argv, index).map_err(|e| failed(index, chain(&e)))?;
                    let pid = vm.pid() as u32;
                    self.vms.push(vm);
                    pid
                }
            };
            self.members.push(Member {
                index,
                pid,
                start_ns: 0,
                hit: false,
                running_after_kill: false,
                running_after_restore: false,
                answered: false,
                managed: false,
                stop: None,
                started,
            });
        }
        if !self.vms.is_empty() {
            wait_ready(&mut self.vms, config.timeout).map_err(|source| BlastError::Instances {
                target: self.name().to_owned(),
                source,
            })?;
        }
        for member in &mut self.members {
            member.start_ns = member.started.elapsed().as_nanos() as u64;
        }
        Ok(())
    }

    /// The host pid of instance `index`'s workload, asked of its manager.
    fn workload_pid(&self, index: u32) -> Option<u32> {
        let name = self.launcher.name(index);
        let text = match &self.target {
            Target::Container { isolab, .. } => {
                let (_, out, _) = output(&[isolab, "ps", "--json"].map(str::to_owned))?;
                let list: Value = serde_json::from_str(&out).ok()?;
                let record = list
                    .as_array()?
                    .iter()
                    .find(|r| r["name"] == name.as_str())?;
                return record["pid"].as_u64().map(|p| p as u32);
            }
            Target::Runc { runc, .. } => {
                let (_, out, _) = output(&[runc.as_str(), "state", &name].map(str::to_owned))?;
                let state: Value = serde_json::from_str(&out).ok()?;
                return state["pid"].as_u64().map(|p| p as u32);
            }
            Target::Engine { cli, .. } => {
                output(
                    &[cli.as_str(), "inspect", "-f", "{{.State.Pid}}", &name].map(str::to_owned),
                )?
                .1
            }
            _ => return None,
        };
        text.trim().parse().ok().filter(|&pid| pid > 0)
    }

    /// The processes to SIGKILL for this kind, with what each is, and marks the members
    /// they hit.
    fn victims(&mut self) -> Vec<(u32, String)> {
        let first = self.launcher.name(0);
        let found: Vec<(u32, String)> = match &self.target {
            Target::Container { isolab, .. } => {
                output(&[isolab, "ps", "--json"].map(str::to_owned))
                    .and_then(|(_, out, _)| serde_json::from_str::<Value>(&out).ok())
                    .and_then(|list| {
                        let record = list
                            .as_array()?
                            .iter()
                            .find(|r| r["name"] == first.as_str())?
                            .clone();
                        record["supervisor_pid"].as_u64()
                    })
                    .map(|pid| {
                        vec![(
                            pid as u32,
                            format!("the supervisor of isolab container {first}"),
                        )]
                    })
                    .unwrap_or_default()
            }
            Target::Engine {
                engine: Engine::Podman,
                cli,
            } => output(
                &[
                    cli.as_str(),
                    "inspect",
                    "-f",
                    "{{.State.ConmonPid}}",
                    &first,
                ]
                .map(str::to_owned),
            )
            .and_then(|(_, out, _)| out.trim().parse::<u32>().ok())
            .map(|pid| vec![(pid, format!("the conmon of podman container {first}"))])
            .unwrap_or_default(),
            Target::Engine {
                engine: Engine::Docker,
                ..
            } => all_pids()
                .into_iter()
                .filter_map(|pid| {
                    let name = comm(pid)?;
                    matches!(name.as_str(), "dockerd" | "containerd").then_some((pid, name))
                })
                .collect(),
            Target::VmMini { .. } => vec![(
                self.members[0].pid,
                format!("the monitor of mini VM {first}"),
            )],
            _ => Vec::new(),
        };
        let daemon = matches!(
            self.target,
            Target::Engine {
                engine: Engine::Docker,
                ..
            }
        );
        for member in &mut self.members {
            member.hit = !found.is_empty() && (daemon || member.index == 0);
        }
        found
    }

    /// Asks every instance to answer, then to be listed, stopped and removed by its
    /// manager (a VM: to end cleanly on SIGTERM, which is both).
    fn ask(&mut self, config: &BlastConfig) -> Result<(), BlastError> {
        if !self.vms.is_empty() {
            for vm in self.vms.iter().filter(|vm| alive(vm.pid() as u32)) {
                vm.signal_group(libc::SIGTERM);
            }
            wait_stopped(&mut self.vms, config.timeout).map_err(|source| {
                BlastError::Instances {
                    target: self.name().to_owned(),
                    source,
                }
            })?;
            // One that ignored SIGTERM is killed: it did not answer.
            for vm in &mut self.vms {
                vm.kill(&self.launcher);
            }
            for (member, vm) in self.members.iter_mut().zip(&self.vms) {
                let record = vm.record();
                let clean = member.running_after_restore
                    && stopped_by_sigterm(record.exit_status)
                    && record.figures["mode"] == "idle";
                member.answered = clean;
                member.managed = clean;
                member.stop = Some((record.exit_status, record.exit_ns));
            }
            return Ok(());
        }
        let (manager, exec, list, stop, rm): (&str, Vec<&str>, Vec<&str>, Vec<&str>, Vec<&str>) =
            match &self.target {
                Target::Container { isolab, .. } => (
                    isolab,
                    vec!["exec", "{}", "--", "/isolab-workload", "ready"],
                    vec!["ps"],
                    vec!["stop", "-t", STOP_GRACE, "{}"],
                    vec!["rm", "{}"],
                ),
                Target::Runc { runc, .. } => (
                    runc,
                    vec!["exec", "{}", "/isolab-workload", "ready"],
                    vec!["list"],
                    vec!["kill", "{}", "TERM"],
                    vec!["delete", "{}"],
                ),
                Target::Engine { cli, .. } => (
                    cli,
                    vec!["exec", "{}", "/isolab-workload", "ready"],
                    vec!["ps", "--format", "{{.Names}}"],
                    vec!["stop", "-t", STOP_GRACE, "{}"],
                    vec!["rm", "{}"],
                ),
                _ => return Ok(()),
            };
        let runc = matches!(self.target, Target::Runc { .. });
        for member in &mut self.members {
            let name = self.launcher.name(member.index);
            let call = |words: &[&str]| {
                let argv: Vec<String> = std::iter::once(manager.to_owned())
                    .chain(words.iter().map(|w| w.replace("{}", &name)))
                    .collect();
                output(&argv)
            };
            member.answered = call(&exec).is_some_and(|(status, out, _)| {
                status.success() && out.lines().any(|l| l == READY_LINE)
            });
            let listed = call(&list).is_some_and(|(status, out, _)| {
                status.success()
                    && out.lines().any(|l| {
                        l.split_whitespace().any(|w| w == name) && (!runc || l.contains("running"))
                    })
            });
            let stop_start = Instant::now();
            let stopped = call(&stop).map(|(status, _, _)| status);
            // runc kill only sends the signal: wait for the init to be gone.
            let deadline = Instant::now() + COMMAND_TIMEOUT;
            while alive(member.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let gone = !alive(member.pid);
            let removed = call(&rm).is_some_and(|(status, _, _)| status.success());
            member.managed = listed && stopped.is_some_and(|s| s.success()) && gone && removed;
            member.stop = Some((
                match stopped.and_then(|s| s.code()) {
                    Some(code) => ExitStatus::Code(code),
                    None => ExitStatus::Signal(libc::SIGKILL),
                },
                member.start_ns + stop_start.elapsed().as_nanos() as u64,
            ));
        }
        Ok(())
    }

    fn summary(&self) -> BlastKind {
        let count =
            |f: &dyn Fn(&Member) -> bool| self.members.iter().filter(|m| f(m)).count() as u32;
        BlastKind {
            target: self.name().to_owned(),
            instances: self.members.len() as u32,
            killed: self.killed.clone(),
            hit: count(&|m| m.hit),
            running_after_kill: count(&|m| m.running_after_kill),
            running_after_restore: count(&|m| m.running_after_restore),
            answered: count(&|m| m.answered),
            managed: count(&|m| m.managed),
        }
    }
}

/// What was killed for a kind, in words; `None` when nothing was.
fn describe(target: &Target, victims: &[(u32, String)]) -> Option<String> {
    if victims.is_empty() {
        return None;
    }
    Some(match target {
        Target::Engine {
            engine: Engine::Docker,
            ..
        } => victims
            .iter()
            .map(|(_, name)| name.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
        _ => victims[0].1.clone(),
    })
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) touches no memory of ours; the pid was just read from the manager or
    // from /proc.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Runs `argv` to its end (killed after [`COMMAND_TIMEOUT`]): its status, stdout and
/// stderr. Output goes to files rather than pipes, so a daemon it leaves holding them (a
/// detached container's init) cannot keep the reader waiting. `None`: it could not run or
/// timed out.
fn output(argv: &[String]) -> Option<(std::process::ExitStatus, String, String)> {
    let mut out = tempfile::tempfile().ok()?;
    let mut err = tempfile::tempfile().ok()?;
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out.try_clone().ok()?)
        .stderr(err.try_clone().ok()?)
        .spawn()
        .ok()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().ok()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |file: &mut fs::File| {
        let mut text = String::new();
        file.rewind().ok()?;
        file.read_to_string(&mut text).ok()?;
        Some(text)
    };
    Some((status, read(&mut out)?, read(&mut err)?))
}
