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
//! - 143 / 130: isolab received SIGTERM / SIGINT and the workload has no handler for it
//!   (or it was the second one): the vCPU was stopped (kicked out of KVM_RUN through
//!   `immediate_exit`) and the VM torn down. A workload with a handler gets the signal
//!   when it next waits for signals (`pause`, `sigsuspend`), as it would natively: `idle`
//!   then ends by itself with its own status (0);
//! - 2: bad options (as for every isolab command).
//!
//! Every failure other than the workload's own exit prints one line on stderr.
//!
//! # Linux guests
//!
//! `isolab vm run --kernel PATH --workload MODE ARGS…` (or `--guest linux`, which defaults
//! to the ELF vmlinux `isolab kernel fetch` stored) boots a standard kernel with
//! `isolab-workload` as `/init` of an initramfs (see `isolab_microvm::linux`). The guest's
//! console is copied to stdout; at the end one JSON line on stderr reports the times to the
//! first guest instruction, the first console line and `ISOLAB-READY`, the total, VM exits
//! by reason, the monitor's PSS and anonymous memory without guest RAM, and the guest RAM
//! touched. `--explain` adds the port I/O exits by port. `--vmm qemu-microvm` boots the
//! same guest under QEMU's microvm machine instead (see `isolab_microvm::linux::peer`),
//! with the same report; `--vm-figures` prints the workload's figures line last with that
//! report added as its `vm` object. Exit status as above,
//! plus:
//! - 3: this host cannot boot standard kernels (PVM, or no KVM);
//! - 121: the guest kernel panicked (other than by init exiting), e.g. no init to run;
//! - 122: triple fault;
//! - 125 also covers a KVM internal error or failed VM entry;
//! - 124: `--timeout` (default 60 s) passed, e.g. the guest never printed `ISOLAB-READY`;
//! - 126: the kernel file is not a bootable kernel; 127: it does not exist;
//! - 2: too little `--mem` for the kernel, a bad `--vcpus`, a command line over the limit,
//!   a missing or unusable `--disk` image or neither virtio modules nor a `config` with the
//!   drivers built in beside the kernel, `--disk` or `--profile` with `--vmm qemu-microvm`,
//!   `--profile` with a mini guest;
//! - 3 also: `--vmm qemu-microvm` without qemu-system-x86_64, `--disk` without busybox.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use isolab_microvm::linux::{self, Outcome as LinuxOutcome};
use isolab_microvm::mini::{self, Outcome};
use isolab_runtime::explain::{PhaseLog, monotonic_ns};

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
    /// A standard Linux kernel (--kernel) with the workload as its init.
    Linux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Vmm {
    /// isolab's own monitor.
    Isolab,
    /// QEMU's microvm machine with KVM (qemu-system-x86_64 -M microvm).
    QemuMicrovm,
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
    /// Linux guests: the kernel, an ELF vmlinux or a bzImage [default: the vmlinux
    /// `isolab kernel fetch` stored]. Implies `--guest linux`.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Linux guests: this initrd instead of the built initramfs with the workload as /init.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Linux guests: the number of vCPUs.
    #[arg(long, default_value = "1")]
    pub vcpus: u8,
    /// Linux guests: appended to the kernel command line.
    #[arg(long, value_name = "STR")]
    pub cmdline: Option<String>,
    /// Linux guests: the monitor that boots them; qemu-microvm boots the same kernel,
    /// initramfs, memory and command line under QEMU's microvm machine, for comparison.
    #[arg(long, value_enum, default_value = "isolab")]
    pub vmm: Vmm,
    /// Linux guests: boot from this image, a read-only virtio block device whose `/init`
    /// is the workload (see README: needs the virtio modules, or a `config` saying they are
    /// built in, beside the kernel).
    #[arg(long, value_name = "IMG")]
    pub disk: Option<PathBuf>,
    /// Linux guests on isolab's monitor: sample the guest's instruction pointer every
    /// millisecond and print on stderr where its time went, by kernel function (named from
    /// an ELF vmlinux's symbols).
    #[arg(long)]
    pub profile: bool,
    /// Linux guests: print the workload's figures line last, with the monitor's figures
    /// added as its `vm` object (how the bench targets record them).
    #[arg(long)]
    pub vm_figures: bool,
    /// The workload's mode and arguments; everything after it is passed on.
    #[arg(long, required = true, num_args = 1.., allow_hyphen_values = true, value_name = "MODE ARGS")]
    pub workload: Vec<String>,
}

pub fn run(args: VmArgs) -> Result<(), Failure> {
    match args.command {
        VmCommand::Run(run) => run_vm(run),
    }
}

/// A VM's start-up phases for the bench harness (see `PhaseLog`): `launch` from the
/// monitor's call at `origin_ns`, then each named phase ending `after` that origin; the
/// harness times the rest until ISOLAB-READY.
fn mark_phases(phases: PhaseLog, origin_ns: u64, ends: &[(&str, Option<Duration>)]) {
    if !phases.is_on() {
        return;
    }
    phases.mark_at("launch", origin_ns);
    for (phase, after) in ends {
        if let Some(after) = after {
            phases.mark_at(phase, origin_ns + after.as_nanos() as u64);
        }
    }
}

fn run_vm(args: RunArgs) -> Result<(), Failure> {
    if args.kernel.is_some() || args.guest == Guest::Linux {
        return run_linux(args);
    }
    if args.profile {
        return Err(Failure::BadInput(anyhow!(
            "--profile samples a Linux guest's kernel; add --guest linux (the mini kernel's \
             time is in --explain's system-call table)"
        )));
    }
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
        // An idle guest leaves the monitor only waiting: give back the binary's resident
        // pages, as a detached container's supervisor does.
        on_block: Some(isolab_runtime::memory::shed),
    };
    // SIGTERM/SIGINT stop the VM and tear it down cleanly (exit 128+n) instead of killing
    // the monitor mid-run.
    isolab_microvm::vm::stop_on_signals();
    let phases = PhaseLog::from_env();
    // mini::run's trace counts from its call: this is its origin on the shared clock.
    let origin_ns = monotonic_ns();
    let run = mini::run(&config).map_err(failure)?;
    // The monitor's set-up ends at the first KVM_RUN, the guest's start at its first exit
    // (the program's first system call).
    let milestone = |name| run.explanation.milestone(name);
    mark_phases(
        phases,
        origin_ns,
        &[
            ("monitor", milestone(mini::ENTER_GUEST)),
            ("boot", milestone(mini::FIRST_EXIT)),
        ],
    );
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

fn run_linux(args: RunArgs) -> Result<(), Failure> {
    let kernel = match args.kernel {
        Some(path) => path,
        None => {
            isolab_microvm::kernel::stored(&isolab_microvm::kernel::default_cache())
                .map_err(|e| Failure::BadInput(e.into()))?
                .vmlinux
        }
    };
    let workload = match args.workload_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| Failure::Coded(125, anyhow!("locating the isolab executable: {e}")))?
            .with_file_name("isolab-workload"),
    };
    let config = linux::Config {
        kernel,
        initrd: args.initrd,
        workload,
        args: args.workload,
        mem_size: args.mem,
        vcpus: args.vcpus,
        cmdline: args.cmdline,
        timeout: args.timeout,
        cache: isolab_microvm::kernel::default_cache().join("initramfs"),
        echo: true,
        hold_figures: args.vm_figures,
        // What set the VM up is not needed to run it: the monitor's PSS drops by most of
        // the binary's resident pages (measured in the sandbox: see README).
        shed: Some(isolab_runtime::memory::shed),
        disk: args.disk,
        profile: args.profile,
    };
    isolab_microvm::vm::stop_on_signals();
    let phases = PhaseLog::from_env();
    let origin_ns = monotonic_ns();
    let run = match args.vmm {
        Vmm::Isolab => linux::run(&config),
        Vmm::QemuMicrovm => linux::peer::run_qemu_microvm(&config),
    }
    .map_err(linux_failure)?;
    // Only isolab's own monitor sees its first KVM_RUN; what follows it, until
    // ISOLAB-READY, is the guest kernel's boot and its init.
    if args.vmm == Vmm::Isolab {
        mark_phases(phases, origin_ns, &[("monitor", run.first_instruction)]);
    }
    if args.explain {
        eprint!("{}", run.explanation);
        eprintln!("port I/O exits by port (reads, writes):");
        for (port, count) in &run.ports {
            eprintln!("  {port:#06x} {:>7} {:>7}", count.reads, count.writes);
        }
        eprintln!("outcome: {:?}", run.outcome);
    }
    if let Some(profile) = &run.profile {
        print_profile(profile);
    }
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
    let exits: serde_json::Map<String, serde_json::Value> = run
        .explanation
        .exits
        .by_reason
        .iter()
        .map(|(reason, (count, _))| ((*reason).to_owned(), (*count).into()))
        .collect();
    let vm = serde_json::json!({
        "vmm": args.vmm.to_possible_value().map(|v| v.get_name().to_owned()),
        "first_instruction_ms": ms(run.first_instruction),
        "first_console_line_ms": ms(run.first_console_line),
        "ready_ms": ms(run.ready),
        "total_ms": ms(Some(run.total)),
        "exits": exits,
        "vmm_pss_bytes": run.vmm_pss,
        "vmm_anon_bytes": run.vmm_anon,
        "guest_ram_touched_bytes": run.guest_ram_touched,
        "disk_requests": run.disk_requests,
        "outcome": format!("{:?}", run.outcome),
    });
    if let Some(line) = &run.figures {
        // Not the workload's JSON after all: it goes out as the guest printed it.
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(mut figures)) => {
                figures.insert("vm".to_owned(), vm.clone());
                println!("{}", serde_json::Value::Object(figures));
            }
            _ => println!("{line}"),
        }
    }
    eprintln!("{}", serde_json::json!({ "vm": vm }));
    let tail = |what: String| anyhow!("{what}; last console lines:\n{}", run.console_tail);
    match run.outcome {
        LinuxOutcome::Exited(0) => Ok(()),
        LinuxOutcome::Exited(status) => Err(Failure::PassThrough(status)),
        LinuxOutcome::Signaled(signal) => Err(Failure::Coded(
            signal_status(signal),
            anyhow!("the workload (init) was killed by signal {signal}"),
        )),
        LinuxOutcome::Panicked(line) => Err(Failure::Coded(
            121,
            tail(format!("guest kernel panic: {line}")),
        )),
        LinuxOutcome::Reset => Err(Failure::Coded(
            125,
            tail("the guest reset itself before its workload ended".to_owned()),
        )),
        LinuxOutcome::TripleFault => Err(Failure::Coded(
            122,
            tail("guest triple fault (the CPU shut down)".to_owned()),
        )),
        LinuxOutcome::KvmFailed(what) => Err(Failure::Coded(125, tail(what))),
        LinuxOutcome::Stopped(signal) => Err(Failure::Coded(
            signal_status(signal),
            anyhow!("VM stopped on signal {signal}"),
        )),
        LinuxOutcome::TimedOut { after, ready } => Err(Failure::Coded(
            124,
            tail(format!(
                "timed out after {} s {}; VM stopped",
                after.as_secs_f64(),
                if ready {
                    "after ISOLAB-READY"
                } else {
                    "without ISOLAB-READY from the guest"
                }
            )),
        )),
    }
}

/// The functions vCPU 0 was sampled in most, on stderr.
fn print_profile(profile: &linux::profile::Profile) {
    const SHOWN: usize = 25;
    eprintln!(
        "guest time by function ({} samples of vCPU 0, one every {} ms{}):",
        profile.samples,
        linux::profile::INTERVAL.as_millis(),
        if profile.symbols {
            ""
        } else {
            "; the kernel file has no symbols: boot an ELF vmlinux to see names"
        }
    );
    for (name, count) in profile.by_function.iter().take(SHOWN) {
        let share = 100.0 * *count as f64 / profile.samples.max(1) as f64;
        eprintln!("  {share:5.1} %  {count:6}  {name}");
    }
    if profile.by_function.len() > SHOWN {
        eprintln!("  ({} more functions)", profile.by_function.len() - SHOWN);
    }
}

fn linux_failure(error: linux::Error) -> Failure {
    use isolab_microvm::linux::boot::Error as Boot;
    let code = match &error {
        linux::Error::Kernel { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
        linux::Error::Kernel { .. }
        | linux::Error::Boot(Boot::NotAKernel(_) | Boot::No64BitEntry | Boot::Read(_)) => 126,
        linux::Error::Boot(Boot::TooLittleMemory { .. } | Boot::Cmdline(..))
        | linux::Error::MemSize(_)
        | linux::Error::Vcpus(_)
        | linux::Error::Initrd { .. }
        | linux::Error::Disk(_)
        | linux::Error::DiskModules(_)
        | linux::Error::Peer(linux::peer::PeerError::NoDisk | linux::peer::PeerError::NoProfile) => {
            return Failure::BadInput(error.into());
        }
        linux::Error::Pvm
        | linux::Error::NoKvm
        | linux::Error::NoBusybox
        | linux::Error::Peer(linux::peer::PeerError::NoQemu) => {
            return Failure::HostLacks(error.into());
        }
        _ => 125,
    };
    Failure::Coded(code, error.into())
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
