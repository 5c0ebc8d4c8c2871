//! `isolab sandbox`: a throw-away standard-KVM, pure-cgroup-v2 Linux machine for tests that
//! this host cannot give (QEMU under TCG with nested SVM; see `isolab_bench::sandbox`).
//!
//! - `isolab sandbox prepare` installs the Debian packages the test job needs (as `isolab
//!   setup --for tests` does), then fetches Debian's cloud kernel and builds the base
//!   initramfs into the cache (`$ISOLAB_SANDBOX_CACHE`, default /var/cache/isolab/sandbox),
//!   saying what it does. Run again, it finds everything cached.
//! - `isolab sandbox run [--timeout SECS] [--mem 2048M] [--file HOST=GUEST]... -- CMD
//!   [ARGS...]` boots a fresh sandbox with `isolab` and `isolab-workload` (from next to this
//!   executable) in /usr/local/bin, runs CMD as root in it, streams its stdout and stderr,
//!   and exits with its status. It prepares first, so it works on a fresh machine too (the
//!   packages must be installed).
//!
//! - `isolab sandbox peers [--runs N] [--out DIR]` benches the Linux micro-VM targets
//!   `vm-linux` and `qemu-microvm` side by side in one sandbox boot (see
//!   `isolab_bench::sandbox::peers`), writes the result files as `DIR/sandbox-*.json` and
//!   prints boot-to-ready, monitor memory and isolab's ratio to QEMU. With `--count N` it
//!   measures density instead: up to N idle instances of each target, one per step, in the
//!   sandbox's 2 GiB (256 MiB kept free), and prints what each instance cost. Exit status 0,
//!   4 when a target failed, 3 without QEMU, or the `run` codes below for the sandbox itself.
//!
//! # Exit status of `run`
//! - the command's own status (127: not found, 126: not executable, 128+n: signal n);
//! - 124: `--timeout` passed; QEMU was killed;
//! - 125: the sandbox failed: QEMU or busybox missing, the kernel could not be fetched,
//!   init could not set up the guest, or the guest died before the command ended;
//! - 2: bad options, e.g. a `--file` whose guest path init mounts over.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use isolab_bench::sandbox::peers::{self, PeersError, PeersSpec};
use isolab_bench::sandbox::{self, GuestFile, RunSpec, Sandbox, SandboxError};
use isolab_reports::schema::{ResultSet, Summary, TargetResult};

use super::setup::{self, Job};
use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Install the packages, fetch the kernel and build the base image, idempotently.
    Prepare,
    /// Boot a fresh sandbox, run a command in it and exit with its status.
    Run(RunArgs),
    /// Linux micro-VMs side by side on the sandbox's standard KVM: bench vm-linux and
    /// qemu-microvm in one boot, write the result files and print the comparison.
    Peers {
        #[command(flatten)]
        args: PeersArgs,
        /// Density instead of boot-to-ready: start up to N idle instances of each target,
        /// one at a time, in the sandbox's memory (256 MiB kept free); then stop them all.
        #[arg(long, value_name = "N", conflicts_with_all = ["runs", "warmup"], value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Measured runs per target.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Discarded runs per target before the measured ones.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup: u32,
    /// Directory for the result files (created if missing); they are named `sandbox-*`.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Stop the sandbox after this many seconds, boot included (exit status 124).
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop the sandbox after this many seconds, boot included (exit status 124).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Guest memory, e.g. 2048M or 2G (MiB without a suffix).
    #[arg(long, value_name = "SIZE", default_value = "2048M", value_parser = parse_mib)]
    pub mem: u32,
    /// Copy a host file into the guest at an absolute path (repeatable).
    #[arg(long = "file", value_name = "HOST=GUEST", value_parser = parse_file)]
    pub files: Vec<GuestFile>,
    /// The command to run in the guest, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(args: SandboxArgs) -> Result<(), Failure> {
    match args.command {
        SandboxCommand::Prepare => prepare(),
        SandboxCommand::Run(args) => run_command(args),
        SandboxCommand::Peers { args, count } => run_peers(&args, count).map(drop),
    }
}

/// `isolab measure --sandbox`: boot-to-ready of the peers; returns the result files.
pub fn peers(args: &PeersArgs) -> Result<Vec<PathBuf>, Failure> {
    run_peers(args, None)
}

/// `isolab sandbox peers [--count N]`: returns the result files.
fn run_peers(args: &PeersArgs, count: Option<u32>) -> Result<Vec<PathBuf>, Failure> {
    isolab_bench::prepare_out_dir(&args.out)
        .map_err(|e| Failure::BadInput(anyhow::Error::new(e)))?;
    let cache = sandbox::default_cache_dir();
    let sandbox = Sandbox::prepare_in(&cache, &mut |step| eprintln!("sandbox: {step}"))
        .map_err(|e| sandbox_failure(e, "preparing the sandbox"))?;
    let dir = own_dir()?;
    let spec = PeersSpec {
        workload: vec!["ready".to_owned()],
        runs: args.runs,
        warmup: args.warmup,
        count,
        timeout: args.timeout,
    };
    let what = match count {
        Some(count) => format!("density, up to {count} idle instances each"),
        None => format!("{} runs each", args.runs),
    };
    println!(
        "sandbox: benching {} ({what}) in one sandbox boot",
        peers::TARGETS.join(", "),
    );
    let outcome =
        peers::run(&sandbox, &dir, &spec, &args.out, &mut io::stderr()).map_err(|e| match e {
            PeersError::Sandbox(e) => sandbox_failure(e, "running the sandbox"),
            PeersError::NoQemu => Failure::HostLacks(e.into()),
            PeersError::Bench { .. } => Failure::TargetFailed(e.into()),
            other => Failure::Coded(125, other.into()),
        })?;
    for set in &outcome.results {
        match count {
            Some(_) => print!("{}", density_table(set)),
            None => print!("{}", peers_table(set)),
        }
    }
    for (vmm, installed) in peers::other_vmms() {
        if !installed {
            println!("{vmm}: not installed on this host, not compared");
        } else {
            println!("{vmm}: installed, but this build does not drive it yet");
        }
    }
    for file in &outcome.files {
        println!("wrote {}", file.display());
    }
    Ok(outcome.files)
}

/// Boot-to-ready and the monitors' memory per target, and isolab's ratio to QEMU.
fn peers_table(set: &ResultSet) -> String {
    let stat = |target: &TargetResult, key: &str| target.stats.get(key).cloned();
    let mib = |bytes: Option<Summary>| {
        bytes.map_or("-".to_owned(), |s| {
            format!("{:.2} MiB", s.median / f64::from(1 << 20))
        })
    };
    let mut text = format!(
        "\nsandbox ({}, kvm {}), workload `{}`, {} runs per target:\n{:<14} {:>12} {:>12} {:>12} {:>12} {:>14}\n",
        set.host.cpu_model,
        set.host.kvm_kind,
        set.workload.mode,
        set.runs_per_target,
        "target",
        "ready median",
        "ready p95",
        "VMM PSS",
        "VMM anon",
        "guest touched"
    );
    for target in &set.targets {
        let ready = stat(target, "ready_ns");
        let ms = |f: fn(&Summary) -> f64| {
            ready
                .as_ref()
                .map_or("-".to_owned(), |s| format!("{:.1} ms", f(s) / 1e6))
        };
        text.push_str(&format!(
            "{:<14} {:>12} {:>12} {:>12} {:>12} {:>14}\n",
            target.name,
            ms(|s| s.median),
            ms(|s| s.p95),
            mib(stat(target, "figures.vm.vmm_pss_bytes")),
            mib(stat(target, "figures.vm.vmm_anon_bytes")),
            mib(stat(target, "figures.vm.guest_ram_touched_bytes")),
        ));
    }
    let median = |name: &str| {
        set.targets
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| stat(t, "ready_ns"))
            .map(|s| s.median)
    };
    if let (Some(isolab), Some(qemu)) = (median(peers::TARGETS[0]), median(peers::TARGETS[1])) {
        text.push_str(&format!(
            "{} / {} boot-to-ready (medians): {:.2}\n",
            peers::TARGETS[0],
            peers::TARGETS[1],
            isolab / qemu
        ));
    }
    text
}

/// Per target: instances reached and, at the last step, what each cost.
fn density_table(set: &ResultSet) -> String {
    let mut text = format!(
        "\nsandbox ({}, kvm {}, {} MiB), idle instances started one at a time:\n\
         {:<14} {:>8} {:>14} {:>14} {:>14} {:>14} {:>10}\n",
        set.host.cpu_model,
        set.host.kvm_kind,
        set.host.mem_total_kib / 1024,
        "target",
        "reached",
        "host used",
        "runtime PSS",
        "guest RAM",
        "start",
        "stop"
    );
    for target in &set.targets {
        let Some(density) = &target.density else {
            continue;
        };
        let Some(last) = density.steps.last() else {
            text.push_str(&format!("{:<14} {:>8}\n", target.name, 0));
            continue;
        };
        let each = f64::from(last.running.max(1));
        let mib = |kib: Option<u64>| {
            kib.map_or("-".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0 / each)
            })
        };
        let start_ns: u64 = density.steps.iter().map(|s| s.ready_ns).sum();
        text.push_str(&format!(
            "{:<14} {:>8} {:>14} {:>14} {:>14} {:>14} {:>10}\n",
            target.name,
            format!("{}/{}", density.reached(), density.requested.unwrap_or(0)),
            mib(u64::try_from(last.host_used_kib).ok()),
            mib(last.runtime_pss_kib),
            mib(last.instance_pss_kib),
            format!("{:.2} s", start_ns as f64 / 1e9 / each),
            format!("{:.0} ms", density.stop_ns as f64 / 1e6),
        ));
    }
    text.push_str(
        "(per instance at the last step; start: mean time to ISOLAB-READY; stop: all, after SIGTERM)\n",
    );
    text
}

fn own_dir() -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe()
        .context("finding the isolab executable")
        .map_err(|e| Failure::Coded(125, e))?;
    exe.parent()
        .map(PathBuf::from)
        .ok_or_else(|| Failure::Coded(125, anyhow!("{} has no parent directory", exe.display())))
}

fn prepare() -> Result<(), Failure> {
    setup::ensure(Job::Tests, false)?;
    let cache = sandbox::default_cache_dir();
    println!("sandbox: cache {}", cache.display());
    let mut worked = false;
    let sandbox = Sandbox::prepare_in(&cache, &mut |step| {
        worked = true;
        println!("sandbox: {step}");
    })
    .map_err(|e| sandbox_failure(e, "preparing the sandbox"))?;
    if !worked {
        println!("sandbox: the kernel and the base initramfs were cached already");
    }
    println!("sandbox: kernel {}", sandbox.kernel().package);
    for module in &sandbox.kernel().modules {
        println!("sandbox: module {} {}", module.name, module.params);
    }
    println!(
        "sandbox: base initramfs {}",
        sandbox.base_initramfs().display()
    );
    println!("sandbox: ready");
    Ok(())
}

fn run_command(args: RunArgs) -> Result<(), Failure> {
    let cache = sandbox::default_cache_dir();
    let sandbox = Sandbox::prepare_in(&cache, &mut |step| eprintln!("sandbox: {step}"))
        .map_err(|e| sandbox_failure(e, "preparing the sandbox"))?;
    let dir = own_dir()?;
    let mut spec = RunSpec::new(args.command).isolab_binaries(&dir);
    spec.files.extend(args.files);
    spec.mem_mib = args.mem;
    spec.timeout = args.timeout;
    // Ctrl-C reaches QEMU too (same process group), which then exits by itself; this
    // process stays to report that and to remove the run's scratch files. QEMU installs
    // its own SIGINT handler, so it does not inherit the ignoring.
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; nothing
    // else in isolab handles SIGINT.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let output = sandbox
        .run_streaming(&spec, &mut io::stdout(), &mut io::stderr())
        .map_err(|e| sandbox_failure(e, "running the sandbox"))?;
    match output.status {
        0 => Ok(()),
        status => Err(Failure::PassThrough(status)),
    }
}

/// 124 for a timeout (as `timeout(1)`), 2 for a bad guest path, 125 for everything else.
fn sandbox_failure(error: SandboxError, doing: &str) -> Failure {
    let code = match error {
        SandboxError::Timeout { .. } => 124,
        SandboxError::BadGuestPath { .. } => 2,
        _ => 125,
    };
    Failure::Coded(code, anyhow::Error::new(error).context(doing.to_owned()))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

/// QEMU sizes memory in MiB; a size that is not whole MiB is refused rather than rounded.
fn parse_mib(text: &str) -> Result<u32, String> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, factor) = if let Some(n) = upper.strip_suffix('G') {
        (n, 1024)
    } else {
        (upper.strip_suffix('M').unwrap_or(&upper), 1)
    };
    number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&mib| mib >= 128)
        .ok_or_else(|| format!("{text:?} is not a memory size of at least 128M, like 2048M or 2G"))
}

fn parse_file(text: &str) -> Result<GuestFile, String> {
    let (host, guest) = text
        .split_once('=')
        .filter(|(h, g)| !h.is_empty() && !g.is_empty())
        .ok_or_else(|| format!("{text:?} is not HOST=GUEST"))?;
    let host = PathBuf::from(host);
    if !host.is_file() {
        return Err(format!("{} is not a readable file", host.display()));
    }
    Ok(GuestFile {
        host,
        guest: guest.to_owned(),
        strip_debug: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_mib() {
        assert_eq!(parse_mib("2048M"), Ok(2048));
        assert_eq!(parse_mib("2g"), Ok(2048));
        assert_eq!(parse_mib("512"), Ok(512));
        assert!(parse_mib("64M").is_err());
        assert!(parse_mib("1.5G").is_err());
        assert!(parse_mib("lots").is_err());
    }

    #[test]
    fn files_are_host_equals_guest() {
        let file = parse_file("/bin/busybox=/opt/bb").unwrap();
        assert_eq!(file.host, PathBuf::from("/bin/busybox"));
        assert_eq!(file.guest, "/opt/bb");
        assert!(parse_file("/bin/busybox").is_err());
        assert!(parse_file("=/x").is_err());
        assert!(parse_file("/nonexistent/file=/x").is_err());
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-3").is_err());
    }
}
