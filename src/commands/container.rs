//! The commands that act on containers by name: `ps`, `exec`, `logs`, `kill`, `stop`, `rm`,
//! `stats`, `gc`, and the hidden `supervise` a detached `run` becomes. The work is in
//! `isolab_runtime::container::lifecycle`; failures follow Docker's convention (125 isolab,
//! 126/127 the command, else the command's status), as `run` does.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::anyhow;
use clap::Args;
use isolab_runtime::container::config;
use isolab_runtime::container::lifecycle;
use isolab_runtime::container::state::State;
use isolab_runtime::container::{ExecConfig, Outcome, RunError};
use isolab_runtime::explain::Explain;
use nix::sys::signal::Signal;

use crate::failure::Failure;

fn failure(error: RunError) -> Failure {
    Failure::Coded(error.exit_code(), anyhow!(error))
}

fn coded(error: impl std::error::Error + Send + Sync + 'static) -> Failure {
    Failure::Coded(125, anyhow!(error))
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also list containers that have exited.
    #[arg(long, short = 'a')]
    all: bool,
    /// One JSON array of the containers' records.
    #[arg(long)]
    json: bool,
}

pub fn ps(args: PsArgs) -> Result<(), Failure> {
    let containers = lifecycle::list(args.all).map_err(failure)?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &containers)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_table(&mut out, &containers)
    };
    written.map_err(coded)
}

fn write_table(out: &mut impl Write, containers: &[State]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<12} {:>8} {:<26} {:<20} COMMAND",
        "NAME", "ID", "PID", "STATUS", "CREATED"
    )?;
    for c in containers {
        writeln!(
            out,
            "{:<24} {:<12} {:>8} {:<26} {:<20} {}",
            c.name,
            if c.foreground {
                "(foreground)"
            } else {
                c.id.get(..12).unwrap_or(&c.id)
            },
            c.pid,
            status_text(c),
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(c.created)),
            c.command.join(" ")
        )?;
    }
    Ok(())
}

fn status_text(c: &State) -> String {
    match (c.exit_code, &c.exit_reason) {
        (Some(code), Some(reason)) => format!("exited ({code}, {reason})"),
        (None, Some(reason)) => format!("exited ({reason})"),
        _ => c.status.name().to_string(),
    }
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Set an environment variable (repeatable); the container's own are kept.
    #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Working directory inside the container (default: the container's).
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Numeric user (and group) to run as (default: the container's).
    #[arg(long, short = 'u', value_name = "UID[:GID]")]
    user: Option<String>,
    /// The container.
    name: String,
    /// The command to run in the container, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
    /// Print each step with a time stamp in µs to stderr.
    #[arg(long)]
    explain: bool,
}

pub fn exec(args: ExecArgs) -> Result<(), Failure> {
    let explain = if args.explain {
        Explain::on(std::time::Instant::now())
    } else {
        Explain::off()
    };
    let bad = |e: config::ConfigError| Failure::Coded(125, anyhow!(e));
    let config = ExecConfig {
        name: args.name,
        command: args.command,
        env: args
            .env
            .iter()
            .map(|e| config::parse_env(e))
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        workdir: args.workdir,
        user: args
            .user
            .as_deref()
            .map(config::parse_user)
            .transpose()
            .map_err(bad)?,
    };
    match isolab_runtime::container::exec(&config, explain).map_err(failure)? {
        Outcome::Exited(0) => Ok(()),
        outcome => Err(Failure::PassThrough(outcome.exit_code())),
    }
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The container.
    name: String,
}

pub fn logs(args: NameArgs) -> Result<(), Failure> {
    let path = lifecycle::log(&args.name).map_err(failure)?;
    let mut file = std::fs::File::open(&path)
        .map_err(|e| Failure::Coded(125, anyhow!("reading the log {}: {e}", path.display())))?;
    match std::io::copy(&mut file, &mut std::io::stdout().lock()) {
        // The reader stopped early (`isolab logs NAME | head`): not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.map(drop).map_err(coded),
    }
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The container.
    name: String,
    /// The signal, by name (KILL, SIGTERM) or number [default: KILL].
    #[arg(default_value = "KILL", value_parser = parse_signal)]
    signal: Signal,
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
fn parse_signal(text: &str) -> Result<Signal, String> {
    let err = || format!("unknown signal {text:?}: use a name such as TERM or KILL, or a number");
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| err());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse().map_err(|_| err())
}

pub fn kill(args: KillArgs) -> Result<(), Failure> {
    lifecycle::kill(&args.name, args.signal).map_err(failure)
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The container.
    name: String,
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(long, short = 't', default_value_t = 10)]
    time: u64,
}

pub fn stop(args: StopArgs) -> Result<(), Failure> {
    lifecycle::stop(&args.name, Duration::from_secs(args.time)).map_err(failure)
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(long, short = 'f')]
    force: bool,
    /// The containers.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Removes every name it can. One name: its failure is the one line; several: one line per
/// failure, and 125 if any failed.
pub fn rm(args: RmArgs) -> Result<(), Failure> {
    if let [name] = args.names.as_slice() {
        return lifecycle::remove(name, args.force).map_err(failure);
    }
    let mut failed = false;
    for name in &args.names {
        if let Err(e) = lifecycle::remove(name, args.force) {
            eprintln!("isolab: {e}");
            failed = true;
        }
    }
    if failed {
        Err(Failure::PassThrough(125))
    } else {
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The container.
    name: String,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

/// `isolab stats --json`: the cgroup's figures and what the process holding the container
/// costs the host (the supervisor of a detached container, `isolab run` of a foreground one).
#[derive(Debug, serde::Serialize)]
struct StatsReport {
    #[serde(flatten)]
    cgroup: isolab_runtime::cgroups::Stats,
    supervisor_pid: i32,
    /// Proportional set size from /proc/PID/smaps_rollup; `None` when it cannot be read.
    supervisor_pss_kib: Option<u64>,
}

pub fn stats(args: StatsArgs) -> Result<(), Failure> {
    let (state, cgroup) = lifecycle::stats(&args.name).map_err(failure)?;
    let supervisor_pss_kib =
        std::fs::read_to_string(format!("/proc/{}/smaps_rollup", state.supervisor_pid))
            .ok()
            .and_then(|text| isolab_bench::procfs::parse_pss_kib(&text));
    let report = StatsReport {
        cgroup,
        supervisor_pid: state.supervisor_pid,
        supervisor_pss_kib,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(coded)?);
        return Ok(());
    }
    let stats = &report.cgroup;
    let bytes =
        |v: Option<u64>| v.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let number = |v: Option<u64>| v.map_or("-".into(), |n| n.to_string());
    let limit =
        |v: Option<u64>, f: &dyn Fn(Option<u64>) -> String| v.map_or("unlimited".into(), |_| f(v));
    let ms = |v: Option<u64>| v.map_or("-".into(), |ns| format!("{:.1} ms", ns as f64 / 1e6));
    println!("container        {}", args.name);
    println!("memory current   {}", bytes(stats.memory_current_bytes));
    println!("memory peak      {}", bytes(stats.memory_peak_bytes));
    println!(
        "memory limit     {}",
        limit(stats.memory_limit_bytes, &bytes)
    );
    println!("cpu usage        {}", ms(stats.cpu_usage_ns));
    println!(
        "cpu throttled    {} periods, {}",
        number(stats.cpu_throttled_periods),
        ms(stats.cpu_throttled_ns)
    );
    println!(
        "pids             {} (limit {})",
        number(stats.pids_current),
        limit(stats.pids_limit, &number)
    );
    println!("oom kills        {}", number(stats.oom_kills));
    println!(
        "supervisor       pid {}, PSS {}",
        report.supervisor_pid,
        report
            .supervisor_pss_kib
            .map_or("-".into(), |kib| format!("{kib} KiB"))
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct GcArgs {}

pub fn gc(_: GcArgs) -> Result<(), Failure> {
    let removed = lifecycle::gc().map_err(failure)?;
    for line in &removed {
        println!("removed {line}");
    }
    if removed.is_empty() {
        println!("nothing to clean up");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    name: String,
    /// The pty master of a `--tty` container, inherited open: its output goes to the log.
    #[arg(long, value_name = "FD")]
    console_fd: Option<i32>,
}

pub fn supervise(args: SuperviseArgs) -> Result<(), Failure> {
    lifecycle::supervise(&args.name, args.console_fd).map_err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal("KILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("15"), Ok(Signal::SIGTERM));
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("99").is_err());
    }
}
