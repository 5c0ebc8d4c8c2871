//! `isolab vm run`: boot a fresh micro-VM, run the workload in it, return its status.
//!
//! `isolab vm run --guest mini --workload MODE ARGS…` runs the static `isolab-workload`
//! ELF under the mini kernel (see `isolab_microvm::mini`): ring 3 in a fresh KVM VM, its
//! system calls served by the monitor. The workload's stdout and stderr are this process's
//! stdout and stderr (a paravirtual channel: the guest's `write(1|2)` is copied straight
//! out, no serial device), so a launcher time-stamps `ISOLAB-READY` exactly as it does for
//! a container. `--explain` prints set-up steps, system calls and VM exits on stderr after
//! the run.
//!
//! # Exit status
//!
//! Like `isolab run` (Docker's convention), plus the timeout and crash codes of `timeout(1)`
//! and the shell:
//! - the workload's own exit status, when it exits;
//! - 124: `--timeout` passed; the VM was stopped (the vCPU is kicked out of KVM_RUN by a
//!   watchdog thread, so this never hangs);
//! - 125: isolab or the monitor failed: no usable /dev/kvm, a KVM ioctl failed, a KVM
//!   internal error, a triple fault, an unexpected VM exit;
//! - 126: the workload file cannot be run (not an ELF, not x86-64, dynamically linked,
//!   does not fit in guest memory, unreadable);
//! - 127: the workload file does not exist;
//! - 128+n: the workload died of signal n: a CPU exception in the guest is reported as
//!   Linux would (page fault or #GP → 139 SIGSEGV, invalid opcode → 132 SIGILL, divide
//!   error → 136 SIGFPE, int3 → 133 SIGTRAP), and `abort()` gives 134 SIGABRT;
//! - 143 / 130: isolab received SIGTERM / SIGINT; the vCPU was stopped (kicked out of
//!   KVM_RUN through `immediate_exit`) and the VM torn down. The signal is not delivered
//!   into the guest: the mini kernel has no signal frames, so a handler the workload
//!   installed does not run;
//! - 2: bad options (as for every isolab command).
//!
//! Every failure other than the workload's own exit prints one line on stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use isolab_microvm::mini::{self, Outcome};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct VmArgs {
    #[command(subcommand)]
    pub command: VmCommand,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot a fresh VM, run the workload in it and exit with its status.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Guest {
    /// isolab's mini kernel: the workload in ring 3, system calls served by the monitor.
    Mini,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which guest kernel to boot.
    #[arg(long, value_enum, default_value = "mini")]
    pub guest: Guest,
    /// Guest memory, e.g. 64M, 1G (bytes without a suffix). Only touched pages cost host
    /// memory.
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    pub mem: u64,
    /// Stop the VM after this many seconds (exit status 124).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
    /// After the run, print set-up steps, system calls and VM exits on stderr.
    #[arg(long)]
    pub explain: bool,
    /// The workload ELF [default: isolab-workload next to the isolab executable].
    #[arg(long, value_name = "PATH")]
    pub workload_bin: Option<PathBuf>,
    /// The workload's mode and arguments; everything after it is passed on.
    #[arg(long, required = true, num_args = 1.., allow_hyphen_values = true, value_name = "MODE ARGS")]
    pub workload: Vec<String>,
}

pub fn run(args: VmArgs) -> Result<(), Failure> {
    match args.command {
        VmCommand::Run(run) => run_vm(run),
    }
}

fn run_vm(args: RunArgs) -> Result<(), Failure> {
    let Guest::Mini = args.guest;
    let workload = match args.workload_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| Failure::Coded(125, anyhow!("locating the isolab executable: {e}")))?
            .with_file_name("isolab-workload"),
    };
    let mut argv = vec!["isolab-workload".to_owned()];
    argv.extend(args.workload);
    let config = mini::Config {
        workload,
        argv,
        mem_size: args.mem,
        timeout: args.timeout,
        measure_memory: args.explain,
    };
    // SIGTERM/SIGINT stop the VM and tear it down cleanly (exit 128+n) instead of killing
    // the monitor mid-run.
    isolab_microvm::vm::stop_on_signals();
    let run = mini::run(&config).map_err(failure)?;
    if args.explain {
        eprint!("{}", run.explanation);
        eprintln!("outcome: {:?}", run.outcome);
    }
    match run.outcome {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(status) => Err(Failure::PassThrough(status)),
        Outcome::Signaled(signal) => Err(Failure::Coded(
            signal_status(signal),
            anyhow!("workload killed by signal {signal} it sent itself"),
        )),
        Outcome::Crashed(crash) => Err(Failure::Coded(
            signal_status(crash.signal()),
            anyhow!("guest crashed: {crash}"),
        )),
        Outcome::Stopped(signal) => Err(Failure::Coded(
            signal_status(signal),
            anyhow!("VM stopped on signal {signal}"),
        )),
        Outcome::TimedOut(after) => Err(Failure::Coded(
            124,
            anyhow!(
                "workload timed out after {} s; VM stopped",
                after.as_secs_f64()
            ),
        )),
    }
}

fn signal_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(255)
}

fn failure(error: mini::Error) -> Failure {
    let code = match &error {
        mini::Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
        mini::Error::Read { .. } | mini::Error::Load { .. } => 126,
        mini::Error::MemSize(_) => return Failure::BadInput(error.into()),
        _ => 125,
    };
    Failure::Coded(code, error.into())
}

/// `64M`, `1G`, `512K`, `1GiB`, or plain bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64M"))?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("unknown size suffix {suffix:?} (use K, M or G)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text} is not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("x").is_err());
    }
}
