//! The command-line grammar. Each subcommand's options live beside its implementation.

use clap::{Parser, Subcommand};

use crate::commands::{
    bench, changes, compare, container, doctor, image, kernel, lab, measure, plan, report, run,
    sandbox, setup, vm,
};

/// Container or VM? Measurements instead of folklore.
#[derive(Debug, Parser)]
#[command(name = "isolab", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this host offers and what each isolab feature needs.
    Doctor(doctor::DoctorArgs),
    /// The main job: prepare the host, check it, and measure every target side by side.
    Measure(measure::MeasureArgs),
    /// Run the identical workload on several targets, side by side, and record the results.
    Bench(bench::BenchArgs),
    /// Charts, the classic claims checked, and tables from result files: report.html, summary.md.
    Report(report::ReportArgs),
    /// Compare two result files; exit 1 on a significant regression beyond the threshold.
    Compare(compare::CompareArgs),
    /// How many containers and VMs of a workload fit a host, from measured overheads.
    Plan(plan::PlanArgs),
    /// Run a command in a new container and return its exit status (or start it with -d).
    Run(Box<run::RunArgs>),
    /// List containers: running ones (detached and foreground), with --all exited ones too.
    Ps(container::PsArgs),
    /// Run a command in a running container, hardened as its own command was.
    Exec(container::ExecArgs),
    /// Print a detached container's output.
    Logs(container::NameArgs),
    /// Send a signal to a container's init.
    Kill(container::KillArgs),
    /// Stop a container: SIGTERM, then SIGKILL after --time seconds.
    Stop(container::StopArgs),
    /// Remove containers (-f: kill running ones first).
    Rm(container::RmArgs),
    /// A running container's memory, CPU, pids and OOM kills, from its cgroups.
    Stats(container::StatsArgs),
    /// Clean up after killed isolab processes: dead containers' records, stale cgroups.
    Gc(container::GcArgs),
    /// Wait for a detached container and record how it ended (started by run -d).
    #[command(hide = true)]
    Supervise(container::SuperviseArgs),
    /// The image store: import, build, list, remove, inspect, export, disk use.
    Image(image::ImageArgs),
    /// List what a container started from an image changed: A(dded), C(hanged), D(eleted).
    Diff(changes::DiffArgs),
    /// Make a container's changes a new layer: a new image NAME on top of its image.
    Commit(changes::CommitArgs),
    /// Boot and run micro-VMs.
    Vm(vm::VmArgs),
    /// Guest kernels for Linux VMs: fetch Debian's cloud kernel, or build a minimal one, into the cache.
    Kernel(kernel::KernelArgs),
    /// Guided labs that grade themselves: list, show, start, check, reset, solution.
    Lab(lab::LabArgs),
    /// Install, idempotently, the Debian packages a job needs.
    Setup(setup::SetupArgs),
    /// A QEMU sandbox with standard KVM and pure cgroup v2, for tests this host cannot give.
    Sandbox(sandbox::SandboxArgs),
}

/// The subcommands that follow Docker's exit-code convention, so that even their usage
/// errors exit 125 rather than clap's 2.
const DOCKER_CONVENTION: [&str; 9] = [
    "run", "exec", "ps", "logs", "kill", "stop", "rm", "stats", "gc",
];

/// Whether the command line (program name first) names one of those subcommands.
pub fn follows_docker_convention(args: &[std::ffi::OsString]) -> bool {
    // Global options come before the subcommand; the first other word is the subcommand.
    args.iter()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .is_some_and(|a| DOCKER_CONVENTION.contains(&a.to_string_lossy().as_ref()))
}
